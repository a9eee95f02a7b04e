"""bench.idle_workers works end to end on a small fleet: it starts ``empq hub`` (embedded Redis),
connects and registers the workers from two client processes, heartbeats, measures, stops
everything. Proves the harness, not the hub's speed: no timing thresholds."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.append(str(REPO))

from bench.idle_workers import parse_args, run, table  # noqa: E402


def test_idle_workers_small_fleet():
    args = parse_args(
        ["--workers", "60", "--heartbeat", "0.5", "--seconds", "2", "--drain", "3", "--client-procs", "2"]
    )
    result = run(args)
    print(table(result))
    assert result["connected"] == 60 and result["connect_failed"] == 0, result["connect_failures"]
    assert result["heartbeats_sent"] == 60 * 4  # 2 s window, one every 0.5 s, phases spread
    assert result["heartbeats_acked"] == result["heartbeats_sent"] and result["heartbeats_missing"] == 0
    assert result["ack_latency"]["n"] == result["heartbeats_sent"]
    assert result["errors"] == {} and result["closed_during_run"] == 0
    assert result["frames_received"]["worker_heartbeat_ack"] == result["heartbeats_sent"]
    for key in ("hub_rss_idle_kb", "hub_rss_connected_kb", "hub_rss_heartbeating_max_kb", "redis_rss_kb"):
        assert isinstance(result[key], int) and result[key] > 0, key
