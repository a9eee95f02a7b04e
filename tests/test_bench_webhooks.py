"""The webhook benchmark runs (tiny settings, its own embedded redis-server and receiver process).

Proves the harness (bench.webhooks), not the speed: no timing thresholds.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.append(str(REPO))  # bench/ is not installed; appended so ``empq`` stays the installed one

from bench.webhooks import main  # noqa: E402


def test_the_webhook_bench_measures_every_phase(tmp_path, capsys):
    out = tmp_path / "webhooks.json"
    tiny = ["--jobs", "20", "--rounds", "1", "--in-flight", "5", "--latency-jobs", "3", "--sweep-ms", "20"]
    code = main([*tiny, "--seconds", "60", "--json", str(out)])
    result = json.loads(out.read_text())
    assert code == 0 and result["problems"] == []
    assert result["deliveries"] == 20  # every job of the webhook round, sent once
    for key in ("plain_hub_cpu_us_per_job", "webhook_redis_cpu_us_per_job", "sender_hub_cpu_us_per_delivery"):
        assert result[key] > 0
    assert result["latency_ms"]["max"] >= result["latency_ms"]["p50"] > 0
    assert "latency, transition to receiver" in capsys.readouterr().out
