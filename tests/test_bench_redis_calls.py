"""bench.redis_calls works: a real redis-server and `empq hub`, a short job stream, the commands
the hub sent counted by MONITOR (script calls by name, what scripts ran apart). No timing."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.append(str(REPO))  # bench/ is not installed; empq stays the installed package

from bench.lifecycle import LoadConfig  # noqa: E402
from bench.redis_calls import measure  # noqa: E402


def test_the_hubs_redis_calls_per_job_are_counted_by_script(tmp_path):
    cfg = LoadConfig(clients=1, workers=2, jobs=20, in_flight=4, progress_steps=1, seconds=60.0)
    row = measure(cfg, warmup=4, transport="websockets", out=tmp_path)
    assert row["completed"] == 20
    sent = row["sent_per_job"]
    # every job is submitted, claimed, accepted and completed with one script call each
    for step in ("submit", "claim", "accept", "complete"):
        assert sent[f"EVALSHA {step}"] >= 1, sent
    assert 0 < sent["EVALSHA progress"] <= 1  # the progress updates of a tick share one call
    assert row["in_scripts_per_job"]["HSET"] > 0  # what the scripts ran, counted apart
