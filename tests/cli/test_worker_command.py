"""``empq worker`` (empq/cli/worker.py; named so it does not clash with tests/sdk/test_worker.py):
bad input exits 2 with one line naming the argument, before connecting. The worker at work:
test_walkthrough.py."""

from __future__ import annotations

import asyncio

from cli_support import closed_hub, empq, one_line_error


async def test_bad_input_exit_2():
    hub = closed_hub()  # never reached: the input is refused first
    http, memory, worker_id, slots, steps, rate = await asyncio.gather(
        empq("worker", "--hub", hub, "--connector", "http"),
        empq("worker", "--hub", hub, "--gpu-memory", "-3"),
        empq("worker", "--hub", hub, "--worker-id", ""),
        empq("worker", "--hub", hub, "--max-concurrent", "0"),
        empq("worker", "--hub", hub, "--steps", "0"),
        empq("worker", "--hub", hub, "--failure-rate", "2"),
    )
    assert "--connector http needs --service-url" in one_line_error(http)
    assert "--gpu-memory: Input should be greater than 0 (got -3.0)" in one_line_error(memory)
    assert "--worker-id: String should have at least 1 character (got '')" in one_line_error(worker_id)
    assert "--max-concurrent: Input should be greater than or equal to 1 (got 0)" in one_line_error(slots)
    assert "--steps: must be at least 1" in one_line_error(steps)
    assert "--failure-rate: must be between 0 and 1" in one_line_error(rate)
