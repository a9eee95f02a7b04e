"""``empq cancel``: a bad JOB_ID is refused before connecting (exit 2, one line); cancelling with
a reason (JSON); cancelling a job already final exits 4."""

from __future__ import annotations

import asyncio

from cli_support import cli_env, closed_hub, empq, one_line_error


async def test_bad_job_id_exit_2_before_connecting():
    hub = closed_hub()  # never reached: the input is refused first
    empty, long = await asyncio.gather(
        empq("cancel", "", "--hub", hub), empq("cancel", "j" * 300, "--hub", hub)
    )
    assert one_line_error(empty) == "empq cancel: JOB_ID: String should have at least 1 character (got '')"
    assert "JOB_ID: String should have at most 256 characters" in one_line_error(long)


async def test_cancel_json_then_already_cancelled(hub):
    env = cli_env(hub)
    accepted = await empq("submit", "--job-type", "upscale", "--service", "nobody", "--json", env=env)
    assert accepted.code == 0, accepted
    job_id = accepted.json()["job_id"]

    cancelled = await empq("cancel", job_id, "--reason", "testing", "--json", env=env)
    assert cancelled.code == 0 and cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["reason"] == "testing"
    again = await empq("cancel", job_id, env=env)
    assert again.code == 4 and "is already cancelled" in again.err
