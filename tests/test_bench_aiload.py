"""bench.aiload works end to end with tiny sizes, on empq (embedded Redis) and on the null hub:
workers in two driver processes, monitors subscribed to every job's notifications, clients at a
fixed rate, progress updates stamped and measured, a baseline run without updates. Proves the
harness (counts, every job done, the null hub's fan-out to monitors), never the hub's speed."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.append(str(REPO))

pytest.importorskip("picows", reason="bench.aiload's driver uses picows (empq[fast])")

from bench.aiload import main_async, parse_args, table  # noqa: E402

pytestmark = pytest.mark.timeout(300)


def test_aiload_tiny_on_empq_and_the_null_hub():
    args = parse_args(
        ["--workers", "12", "--monitors", "2", "--clients", "2", "--steps", "3", "--min-s", "0.1",
         "--max-s", "0.3", "--rates", "4", "--seconds", "2", "--baseline-rate", "4", "--driver-procs", "2"]
    )  # fmt: skip
    results = asyncio.run(main_async(args))
    print(table(results))
    assert [r["label"] for r in results] == ["empq", "null hub"]
    for result in results:
        (row,) = result["rounds"]
        assert row["submitted"] == 8 and row["completed"] == 8, row
        assert row["failed"] == row["refused"] == 0
        # every progress update reached its client, stamped by the worker's clock
        assert row["updates_received"] == 8 * 3 and row["update_latency"]["n"] == 8 * 3
        assert row["submit_to_assigned"]["n"] == 8
        # each monitor saw each job's events: assigned, accepted, 3 in_progress, completed
        assert row["monitor_frames"] >= 2 * 8 * 6, row["monitor_frames"]
        assert row["cpu_us_per_job"]["hub"] >= 0 and row["cpu_us_per_job"]["driver"] > 0
        assert result["baseline"]["completed"] == 8 and result["baseline"]["updates_received"] == 0
        assert result["worker_stats"]["completed"] == 16 and result["worker_stats"]["progress_sent"] == 24
        assert not [k for k in result["worker_stats"] if k.startswith("error")], result["worker_stats"]
    assert results[0]["rounds"][0]["cpu_us_per_job"]["redis"] >= 0  # empq's embedded Redis is measured
