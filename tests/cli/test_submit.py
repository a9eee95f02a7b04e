"""``empq submit``: bad input (exit 2, one line naming the argument), JSON and human output, the
exit codes of ``--wait`` (completed 0, failed 1, wait timeout 124), the live progress bar."""

from __future__ import annotations

import asyncio

from cli_support import cli_env, closed_hub, empq, one_line_error, plain, pty_run

from empq.connectors import SimulateConnector
from empq.worker import EmpWorker


async def test_bad_input_exit_2():
    hub = closed_hub()  # never reached: the input is refused first
    runs = await asyncio.gather(
        empq("submit", "--hub", hub, "--job-type", "t", "--payload", "{bad"),
        empq("submit", "--hub", hub, "--job-type", "t", "--requirements", '{"service_typo": "x"}'),
        empq("submit", "--hub", hub, "--job-type", "t", "--payload", "@/nonexistent/payload.json"),
        empq("submit", "--hub", hub, "--job-type", "t", "--priority", "101"),
        empq("submit", "--hub", hub, "--payload", "{}"),  # --job-type missing: argparse
        empq("submit", "--hub", hub, "--job-type", ""),
        empq("submit", "--hub", hub, "--job-type", "t", "--payload", "[1]"),
        empq("submit", "--hub", hub, "--job-type", "t", "--service", "x", "--requirements", "[1]"),
        empq("submit", "--hub", hub, "--job-type", "t", "--wait", "--wait-timeout", "0"),
    )
    bad_json, typo, missing, priority, usage, empty, listed, service, wait = map(one_line_error, runs)
    assert "--payload is not valid JSON" in bad_json
    assert "--requirements: service_typo: Extra inputs are not permitted" in typo
    assert "cannot read /nonexistent/payload.json" in missing
    assert "--priority: Input should be less than or equal to 100 (got 101)" in priority
    assert "--job-type" in usage
    assert "--job-type: String should have at least 1 character (got '')" in empty
    assert "--payload: Input should be a valid dictionary" in listed
    assert "--service: --requirements must be a JSON object" in service
    assert "--wait-timeout: 0 is not a duration" in wait


async def test_submit_json_and_wait_timeout(hub):
    env = cli_env(hub)
    accepted = await empq(
        "submit", "--job-type", "upscale", "--service", "nobody", "--priority", "70", "--json", env=env
    )
    assert accepted.code == 0, accepted
    job = accepted.json()
    assert job["type"] == "job_accepted" and job["status"] == "queued" and job["position"] == 1
    human = await empq("submit", "--job-type", "upscale", "--service", "nobody", env=env)
    assert human.code == 0 and "queued at position 2, no idle worker can run it yet" in human.out

    gave_up = await empq(
        "submit", "--job-type", "t", "--service", "nobody", "--wait", "--wait-timeout", "0.5", env=env
    )
    assert gave_up.code == 124 and "gave up waiting after 0.5 s" in gave_up.err


async def test_submit_wait_exit_codes(hub):
    env = cli_env(hub)
    worker = EmpWorker(
        hub.url,
        connectors=[SimulateConnector("comfyui", steps=2, step_seconds=0.05)],
        max_concurrent=2,
        claim_interval=0.5,
    )
    await worker.start()
    try:
        ok, failed = await asyncio.gather(
            empq("submit", "--job-type", "t", "--payload", '{"steps": 2}', "--wait", "--json", env=env),
            empq(
                "submit",
                "--job-type",
                "t",
                "--payload",
                '{"fail": true}',
                "--max-retries",
                "0",
                "--wait",
                env=env,
            ),
        )
    finally:
        await worker.stop()
    assert ok.code == 0, ok
    outcome = ok.json()
    assert outcome["status"] == "completed" and outcome["result"]["output_files"]
    assert failed.code == 1, failed
    assert "failed job-" in failed.out and "simulated failure" in failed.out


async def test_progress_bar_in_a_terminal(hub):
    worker = EmpWorker(
        hub.url, connectors=[SimulateConnector("comfyui", steps=4, step_seconds=0.1)], claim_interval=0.5
    )
    await worker.start()
    try:
        code, screen = await asyncio.to_thread(pty_run, ["submit", "--job-type", "t", "--wait"], cli_env(hub))
    finally:
        await worker.stop()
    assert code == 0, screen
    assert "\x1b[" in screen and "━━━━" in screen  # colours and a progress bar
    text = plain(screen)
    assert "completed job-" in text and "100%" in text and "in_progress step 2/4" in text
