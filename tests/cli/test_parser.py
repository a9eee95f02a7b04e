"""``empq.cli``: the parser and dispatch. Every subcommand's help fits 80 columns; usage errors are
one line; a command loads only what it uses (``--version`` no command at all, parsing a client
command's arguments none of the heavy modules)."""

from __future__ import annotations

import asyncio

from cli_support import (
    COMMANDS,
    cli_env,
    closed_hub,
    empq,
    heavy_in,
    messages_in,
    modules_of,
    one_line_error,
)

from empq.cli import MODULES


async def test_help_of_every_subcommand_fits_80_columns():
    runs = await asyncio.gather(empq("--help"), *(empq(name, "--help") for name in COMMANDS))
    top, *subs = runs
    assert top.code == 0
    for name in COMMANDS:
        assert f"\n    {name} " in top.out, top.out
    for name, run in zip(COMMANDS, subs, strict=True):
        assert run.code == 0 and run.err == ""
        assert run.out.startswith(f"usage: empq {name}")
        assert "--hub URL" in run.out and "EMPQ_HUB" in run.out
        wide = [line for line in run.out.splitlines() if len(line) > 80]
        assert not wide, f"empq {name} --help is wider than 80 columns: {wide}"
    submit = subs[COMMANDS.index("submit")].out
    for flag in (
        "--job-type",
        "--payload",
        "--priority",
        "--requirements",
        "--wait",
        "--json",
        "--client-id",
    ):
        assert flag in submit
    worker = subs[COMMANDS.index("worker")].out
    for flag in ("--services", "--components", "--gpu-memory", "--connector", "--max-concurrent", "--token"):
        assert flag in worker


async def test_every_command_is_listed_and_version():
    top, version, bare = await asyncio.gather(empq("--help"), empq("--version"), empq())
    section = top.out.split("positional arguments:")[1].split("options:")[0]
    listed = [line.split()[0] for line in section.splitlines() if line[:4] == "    " and line[4:5] != " "]
    assert listed == list(MODULES), top.out
    assert version.code == 0 and version.out.startswith("empq ")
    assert bare.code == 2 and "COMMAND" in bare.out  # no command: the help


async def test_usage_errors_are_one_line_naming_the_argument():
    missing, typo, not_a_number, negative = await asyncio.gather(
        empq("status"),
        empq("statsu"),
        empq("submit", "--job-type", "t", "--priority", "abc"),
        empq("status", "job-1", "--timeout", "-1"),
    )
    assert "empq status: the following arguments are required: JOB_ID" in one_line_error(missing)
    assert "invalid choice: 'statsu'" in one_line_error(typo)
    assert "--priority: invalid int value: 'abc'" in one_line_error(not_a_number)
    assert "--timeout: -1 is not a duration" in one_line_error(negative)


def test_version_loads_no_command():
    code, modules = modules_of("--version")
    assert code == 0
    assert not [m for m in modules if m.startswith("empq.") and m != "empq.cli"], sorted(modules)
    assert "pydantic" not in modules
    assert not heavy_in(modules)


def test_parsing_a_client_command_loads_no_heavy_module():
    for argv in (
        ["status", "job-1"],
        ["cancel", "job-1", "--reason", "r"],
        ["submit", "--job-type", "t", "--payload", "{}"],
        ["watch", "--seconds", "1"],
    ):
        code, modules = modules_of("--parse-only", *argv)
        assert code == 0, argv
        assert not heavy_in(modules), (argv, heavy_in(modules))
        assert not messages_in(modules), argv
        assert "pydantic" not in modules, argv
        assert f"empq.cli.{argv[0]}" in modules
        assert not {f"empq.cli.{other}" for other in MODULES if other != argv[0]} & modules


def test_a_bad_argument_is_refused_before_the_sdk_is_loaded():
    code, modules = modules_of("status", "", "--hub", closed_hub())
    assert code == 2
    assert not heavy_in(modules), heavy_in(modules)
    assert messages_in(modules) == {"request_job_status"}  # the model that checked JOB_ID
    assert "empq.client" not in modules


def test_status_loads_only_the_messages_it_uses():
    code, modules = modules_of("status", "job-1", "--hub", closed_hub())
    assert code == 3  # nothing listens: it got as far as connecting
    assert heavy_in(modules) == sorted(m for m in modules if m == "websockets" or m.startswith("websockets."))
    assert messages_in(modules) == {"request_job_status", "register_client"}


async def test_status_against_a_hub_loads_no_envelope(hub):
    code, modules = await asyncio.to_thread(modules_of, "status", "job-unknown", env=cli_env(hub))
    assert code == 4  # not found: the whole round trip happened
    assert not [m for m in modules if m.startswith("empq.generated.envelopes")]
    assert not [
        m for m in modules if m.startswith(("empq.hub", "redis", "starlette", "uvicorn", "jsonschema"))
    ]
    used = {"register_client", "client_registered", "connection_established", "request_job_status"}
    assert (
        used | {"response_job_status", "error", "disconnect", "server_disconnect", "ping", "pong"}
        >= (messages_in(modules))
        >= used
    )
