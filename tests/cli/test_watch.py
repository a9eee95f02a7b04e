"""``empq watch``: bad options exit 2; the live view in a terminal shows the workers, their
connectors and the job events as they happen, and Ctrl-C ends it quietly."""

from __future__ import annotations

import asyncio
import re

from cli_support import Terminal, cli_env, closed_hub, empq, one_line_error, plain, pty_run

from empq.connectors import SimulateConnector
from empq.worker import EmpWorker


async def test_bad_options_exit_2():
    hub = closed_hub()  # never reached: the input is refused first
    interval, seconds = await asyncio.gather(
        empq("watch", "--hub", hub, "--interval", "0.5"), empq("watch", "--hub", hub, "--seconds", "0")
    )
    assert "--interval: Input should be greater than or equal to 1 (got 0.5)" in one_line_error(interval)
    assert "--seconds: 0 is not a duration" in one_line_error(seconds)


async def test_live_view_in_a_terminal(hub):
    """No timing: watch runs until the screen has shown what the test waits for (each wait bounded),
    then Ctrl-C ends it with exit 0 and its last frame."""
    env = cli_env(hub)
    worker = EmpWorker(
        hub.url, connectors=[SimulateConnector("comfyui", steps=4, step_seconds=0.1)], claim_interval=0.5
    )
    await worker.start()
    watch = Terminal(["watch"], env)
    try:
        await watch.shows("workers 1 (idle", "comfyui:")  # the workers table, connector states
        code, screen = await asyncio.to_thread(pty_run, ["submit", "--job-type", "t", "--wait"], env)
        assert code == 0, screen
        job_id = re.search(r"completed (job-\S+)", plain(screen)).group(1)
        await watch.shows("job events", f"{job_id} completed")  # seen while it happened
    finally:
        watch.interrupt()
        watch_code, watch_screen = await asyncio.to_thread(watch.finish)
        await worker.stop()
    assert watch_code == 0, watch_screen
    text = watch.text()
    assert "workers 1 (idle" in text and "comfyui:" in text and "job events" in text
    assert max(len(line) for line in text.splitlines()) <= 100  # fits the terminal
