"""``empq status``: a bad JOB_ID is refused before connecting (exit 2, one line); JSON and human
output; another client's job is not visible (exit 4, explained)."""

from __future__ import annotations

import asyncio

from cli_support import cli_env, closed_hub, empq, one_line_error


async def test_bad_arguments_exit_2_before_connecting():
    hub = closed_hub()  # never reached: the input is refused first
    empty, long, client_id, scheme = await asyncio.gather(
        empq("status", "", "--hub", hub),
        empq("status", "j" * 257, "--hub", hub),
        empq("status", "job-1", "--hub", hub, "--client-id", ""),
        empq("status", "job-x", "--hub", "http://127.0.0.1:3002"),
    )
    assert one_line_error(empty) == "empq status: JOB_ID: String should have at least 1 character (got '')"
    assert one_line_error(long).startswith("empq status: JOB_ID: String should have at most 256 characters")
    assert "257 characters" in long.err
    assert "--client-id: String should have at least 1 character" in one_line_error(client_id)
    assert "--hub http://127.0.0.1:3002: invalid URL" in one_line_error(scheme)


async def test_status_json_human_and_another_clients_job(hub):
    env = cli_env(hub)
    accepted = await empq(
        "submit", "--job-type", "upscale", "--service", "nobody", "--priority", "70", "--json", env=env
    )
    assert accepted.code == 0, accepted
    job_id = accepted.json()["job_id"]

    as_json, human, stranger = await asyncio.gather(
        empq("status", job_id, "--json", env=env),
        empq("status", job_id, env=env),
        empq("status", job_id, "--client-id", "someone-else", env=env),
    )
    assert as_json.code == 0 and as_json.json()["status"] == "queued" and as_json.json()["priority"] == 70
    assert human.code == 0
    lines = dict(line.split(None, 1) for line in human.out.splitlines() if line.strip())
    assert lines["job"] == job_id and lines["status"] == "queued" and lines["priority"] == "70"
    assert lines["position"] == "1"
    assert stranger.code == 4
    assert f"no job {job_id} visible to client id someone-else" in stranger.err
