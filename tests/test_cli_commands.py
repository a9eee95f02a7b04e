"""The ``empq`` CLI as a new user runs it: real subprocesses, exit codes and output checked (issue 6).

- ``--help`` of every subcommand fits an 80-column terminal;
- the README walkthrough: ``empq hub``, two ``empq worker`` (simulate), ten ``empq submit`` of
  different priorities, ``empq watch`` seeing them run, ``empq status``, ``empq submit --wait``,
  SIGTERM draining the workers;
- ``submit``/``status``/``cancel`` with ``--json`` (parseable), human output, exit codes of
  ``submit --wait`` (completed 0, failed 1, wait timeout 124), another client's job (4);
- bad input (2) and an unreachable hub (3): one clear line, no traceback;
- the live displays (progress bar, watch) in a pseudo-terminal.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import pty
import signal
import socket
import struct
import sys
import termios
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from empq.client import EmpQueueClient
from empq.connectors import SimulateConnector
from empq.worker import EmpWorker

COMMANDS = ("worker", "submit", "status", "cancel", "watch")
REQUIREMENTS = '{"service_type":"comfyui","component":"text-to-image-xl","hardware":{"gpu_memory_gb":8}}'


def empq_command() -> list[str]:
    script = Path(sys.executable).with_name("empq")
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-c", "import sys; from empq.cli import main; sys.exit(main())"]


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMPQ_")}
    env.update(COLUMNS="80", LINES="24", PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


def free_port() -> int:
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Run:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


async def empq(*args: str, env: dict[str, str] | None = None, timeout: float = 30) -> Run:
    proc = await asyncio.create_subprocess_exec(
        *empq_command(),
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env or clean_env(),
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(f"empq {' '.join(args)} still running after {timeout} s") from None
    assert proc.returncode is not None
    return Run(proc.returncode, out.decode(), err.decode())


async def until(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


class Proc:
    """A long-running ``empq`` process whose stdout lines are collected as they come."""

    def __init__(self, proc: asyncio.subprocess.Process, name: str) -> None:
        self.proc = proc
        self.name = name
        self.lines: list[str] = []
        self.reader = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def start(cls, name: str, *args: str, env: dict[str, str]) -> Proc:
        proc = await asyncio.create_subprocess_exec(
            *empq_command(),
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=env,
        )
        return cls(proc, name)

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            self.lines.append(line.decode().rstrip("\n"))

    def events(self) -> list[dict[str, Any]]:
        out = []
        for line in self.lines:
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
        return out

    async def stop(self, sig: int = signal.SIGTERM, timeout: float = 10) -> int:
        if self.proc.returncode is None:
            self.proc.send_signal(sig)
        try:
            code = await asyncio.wait_for(self.proc.wait(), timeout)
        except TimeoutError:
            self.proc.kill()
            code = await self.proc.wait()
        await self.reader
        return code


# --- help and errors without a hub -----------------------------------------------------------


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


async def test_unreachable_hub_one_clear_line_exit_3():
    url = f"ws://127.0.0.1:{free_port()}"
    runs = await asyncio.gather(
        empq("submit", "--hub", url, "--job-type", "t"),
        empq("status", "--hub", url, "job-x"),
        empq("cancel", "--hub", url, "job-x"),
        empq("watch", "--hub", url, "--seconds", "1"),
        empq("worker", "--hub", url),
        empq("submit", "--job-type", "t", env=clean_env(EMPQ_HUB=url)),
    )
    for run in runs:
        assert run.code == 3, run
        lines = run.err.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in run.err, run.err
        assert f"cannot reach the hub at {url}: connection refused" in lines[0]
        assert "EMPQ_HUB" in lines[0]


async def test_bad_input_exit_2():
    runs = await asyncio.gather(
        empq("submit", "--job-type", "t", "--payload", "{bad"),
        empq("submit", "--job-type", "t", "--requirements", '{"service_typo": "x"}'),
        empq("submit", "--job-type", "t", "--payload", "@/nonexistent/payload.json"),
        empq("submit", "--job-type", "t", "--priority", "101"),
        empq("worker", "--connector", "http"),
        empq("submit", "--payload", "{}"),  # --job-type missing: argparse
        empq("status", "job-x", "--hub", "http://127.0.0.1:3002"),
    )
    bad_json, typo, missing, priority, http, usage, scheme = runs
    assert all(run.code == 2 for run in runs), runs
    assert "--payload is not valid JSON" in bad_json.err
    assert "invalid job: requirements.service_typo" in typo.err
    assert "cannot read /nonexistent/payload.json" in missing.err
    assert "invalid job: priority" in priority.err
    assert "--connector http needs --service-url" in http.err
    assert "--job-type" in usage.err
    assert "--hub http://127.0.0.1:3002: invalid URL" in scheme.err
    assert not any("Traceback" in run.err for run in runs)


# --- against a hub -----------------------------------------------------------------------------


async def test_readme_walkthrough(redis_url, tmp_path):
    """The README walkthrough, as a user pastes it: hub, two simulated workers, ten jobs with
    different priorities, watch them run, all complete; then SIGTERM drains the workers."""
    port = free_port()
    url = f"ws://127.0.0.1:{port}"
    client_id = f"walkthrough-{uuid.uuid4().hex[:6]}"
    env = clean_env(
        EMPQ_KEY_PREFIX=f"{{cli-{uuid.uuid4().hex[:8]}}}",
        EMPQ_SWEEP_INTERVAL_MS="50",
        EMPQ_HEARTBEAT_INTERVAL_MS="500",
        EMPQ_HUB=url,
        EMPQ_CLIENT_ID=client_id,
    )
    hub = await Proc.start("hub", "hub", "--redis-url", redis_url, "--ws-port", str(port), env=env)
    workers: list[Proc] = []
    try:
        await until(lambda: any("listening on" in line for line in hub.lines), 20, "the hub")
        for n in (1, 2):
            workers.append(
                await Proc.start(
                    f"worker{n}",
                    "worker",
                    "--services", "comfyui",
                    "--components", "text-to-image-xl",
                    "--gpu-memory", "16",
                    "--connector", "simulate",
                    "--steps", "3",
                    "--step-seconds", "0.15",
                    "--worker-id", f"gpu-{n}",
                    "--json",
                    env=env,
                )
            )  # fmt: skip
        for w in workers:
            await until(lambda w=w: any(e.get("event") == "registered" for e in w.events()), 20, w.name)

        watch = await Proc.start("watch", "watch", "--json", env=env)
        await until(lambda: watch.lines, 20, "watch's first stats")  # watching before the jobs arrive
        priorities = [10, 20, 30, 40, 50, 60, 70, 80, 90, 100]
        submits = await asyncio.gather(
            *(
                empq(
                    "submit",
                    "--job-type", "text_to_image",
                    "--priority", str(p),
                    "--payload", json.dumps({"prompt": f"mountains #{p}"}),
                    "--requirements", REQUIREMENTS,
                    "--json",
                    env=env,
                )
                for p in priorities
            )
        )  # fmt: skip
        assert all(run.code == 0 for run in submits), submits
        ids = [run.json()["job_id"] for run in submits]
        assert all(run.json()["status"] == "queued" for run in submits)

        async with EmpQueueClient(url, client_id=client_id) as client:  # same client id: sees them
            results = await asyncio.gather(*(client.wait(job_id, timeout=20) for job_id in ids))
        assert [r.metadata["echo"]["prompt"] for r in results] == [f"mountains #{p}" for p in priorities]

        await asyncio.sleep(1.1)  # one more stats update
        assert await watch.stop(signal.SIGINT) == 0, watch.lines  # Ctrl-C ends watch quietly
        frames = watch.events()
        stats = [f["stats"] for f in frames if f.get("type") == "stats"]
        assert any(s["workers"]["total"] == 2 for s in stats)
        assert any(s["workers"]["busy"] >= 1 for s in stats)  # watched them run
        completed = {f["job_id"] for f in frames if f.get("type") == "job_completed"}
        assert completed and completed <= set(ids)
        assert any(f.get("type") == "job_update" and f.get("status") == "in_progress" for f in frames)

        status = await empq("status", ids[0], env=env)
        assert status.code == 0 and "completed" in status.out and ids[0] in status.out
        waited = await empq(
            "submit", "--job-type", "text_to_image", "--payload", '{"prompt": "one more"}', "--wait", env=env
        )
        assert waited.code == 0, waited
        assert "completed job-" in waited.out and '"one more"' in waited.out
        assert "in_progress" in waited.err  # progress lines (no terminal: one per update)

        human = await empq("watch", "--seconds", "1.2", env=env)
        assert human.code == 0 and "workers 2 (idle 2, busy 0" in human.out, human

        for w in workers:
            assert await w.stop(signal.SIGTERM) == 0, w.lines
            events = w.events()
            assert events[-1]["event"] == "stopped" and events[-1]["reason"] == "worker drained"
            assert any(e["event"] == "draining" for e in events)
        done = sum(1 for w in workers for e in w.events() if e["event"] == "job_completed")
        assert done == 11
        assert all(any(e["event"] == "job_completed" for e in w.events()) for w in workers)
    finally:
        for w in workers:
            await w.stop(signal.SIGKILL)
        assert await hub.stop(signal.SIGTERM) == 0, hub.lines


@pytest.fixture
def cli_env(hub):
    return clean_env(EMPQ_HUB=hub.url, EMPQ_CLIENT_ID=f"cli-{uuid.uuid4().hex[:6]}")


async def test_submit_status_cancel_json_and_human(cli_env):
    accepted = await empq(
        "submit", "--job-type", "upscale", "--service", "nobody", "--priority", "70", "--json", env=cli_env
    )
    assert accepted.code == 0, accepted
    job = accepted.json()
    job_id = job["job_id"]
    assert job["type"] == "job_accepted" and job["status"] == "queued" and job["position"] == 1

    as_json, human, stranger = await asyncio.gather(
        empq("status", job_id, "--json", env=cli_env),
        empq("status", job_id, env=cli_env),
        empq("status", job_id, "--client-id", "someone-else", env=cli_env),
    )
    assert as_json.code == 0 and as_json.json()["status"] == "queued" and as_json.json()["priority"] == 70
    assert human.code == 0
    lines = dict(line.split(None, 1) for line in human.out.splitlines() if line.strip())
    assert lines["job"] == job_id and lines["status"] == "queued" and lines["priority"] == "70"
    assert lines["position"] == "1"
    assert stranger.code == 4
    assert f"no job {job_id} visible to client id someone-else" in stranger.err

    cancelled = await empq("cancel", job_id, "--reason", "testing", "--json", env=cli_env)
    assert cancelled.code == 0 and cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["reason"] == "testing"
    again = await empq("cancel", job_id, env=cli_env)
    assert again.code == 4 and "is already cancelled" in again.err

    gave_up = await empq(
        "submit", "--job-type", "t", "--service", "nobody", "--wait", "--wait-timeout", "0.5", env=cli_env
    )
    assert gave_up.code == 124 and "gave up waiting after 0.5 s" in gave_up.err


async def test_submit_wait_exit_codes(hub, cli_env):
    worker = EmpWorker(
        hub.url,
        connectors=[SimulateConnector("comfyui", steps=2, step_seconds=0.05)],
        max_concurrent=2,
        claim_interval=0.5,
    )
    await worker.start()
    try:
        ok, failed = await asyncio.gather(
            empq("submit", "--job-type", "t", "--payload", '{"steps": 2}', "--wait", "--json", env=cli_env),
            empq(
                "submit",
                "--job-type",
                "t",
                "--payload",
                '{"fail": true}',
                "--max-retries",
                "0",
                "--wait",
                env=cli_env,
            ),
        )
    finally:
        await worker.stop()
    assert ok.code == 0, ok
    outcome = ok.json()
    assert outcome["status"] == "completed" and outcome["result"]["output_files"]
    assert failed.code == 1, failed
    assert "failed job-" in failed.out and "simulated failure" in failed.out


def _pty_run(
    args: list[str], env: dict[str, str], columns: int = 100, timeout: float = 30
) -> tuple[int, str]:
    """Run in a pseudo-terminal of ``columns`` columns (rich sees a real terminal)."""
    import subprocess

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, columns, 0, 0))
    proc = subprocess.Popen(
        [*empq_command(), *args],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env={**env, "TERM": "xterm-256color", "COLUMNS": str(columns)},
        close_fds=True,
    )
    os.close(slave)
    chunks = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    try:
        code = proc.wait(timeout=max(0.1, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        proc.kill()
        code = proc.wait()
    return code, b"".join(chunks).decode("utf-8", "replace")


async def test_live_displays_in_a_terminal(hub, cli_env):
    worker = EmpWorker(
        hub.url, connectors=[SimulateConnector("comfyui", steps=4, step_seconds=0.1)], claim_interval=0.5
    )
    await worker.start()
    try:
        (code, screen), (watch_code, watch_screen) = await asyncio.gather(
            asyncio.to_thread(_pty_run, ["submit", "--job-type", "t", "--wait"], cli_env),
            asyncio.to_thread(_pty_run, ["watch", "--seconds", "1.5"], cli_env),
        )
    finally:
        await worker.stop()
    assert code == 0, screen
    assert "\x1b[" in screen and "━━━━" in screen  # colours and a progress bar
    text = plain(screen)
    assert "completed job-" in text and "100%" in text and "in_progress step 2/4" in text
    assert watch_code == 0, watch_screen
    text = plain(watch_screen)
    assert "workers 1 (idle" in text and "comfyui:" in text and "job events" in text
    assert max(len(line) for line in text.splitlines()) <= 100  # fits the terminal


def plain(screen: str) -> str:
    """Terminal output without escape sequences and carriage returns."""
    import re

    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen)
    return text.replace("\r\n", "\n").replace("\r", "\n")
