"""bench.processes works: `empq hub --processes 2` (a real supervisor, two hub processes on one
port, the embedded redis-server), a short job stream, CPU per job read for each process. No timing."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.append(str(REPO))  # bench/ is not installed; empq stays the installed package

from bench.lifecycle import LoadConfig  # noqa: E402
from bench.processes import run  # noqa: E402


def test_two_hub_processes_run_the_stream_and_each_ones_cpu_is_reported():
    cfg = LoadConfig(clients=4, workers=8, jobs=80, in_flight=5, seconds=60.0)
    row = run(2, cfg, "websockets")
    assert row["completed"] == 80 and row["processes"] == 2
    assert set(row["cpu_us_per_job"]) == {"hub0", "hub1", "redis", "driver"}
    assert all(v >= 0 for v in row["cpu_us_per_job"].values())
