"""The side-by-side harness (``python -m bench.peers``) runs: one real redis-server, the real
``empq hub`` on it and the null hub, a small bounded load; a peer that is not installed (BullMQ,
arq and Celery are not test dependencies of ``py``) is reported as skipped, not failed; ``tox -e
peers`` installs them all and requires every queue to finish. Proves the harnesses, not anyone's
speed: no timing thresholds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.append(str(REPO))

from bench import module_command  # noqa: E402
from bench.peers.__main__ import PEERS, peer_missing, table  # noqa: E402


@pytest.mark.timeout(120)
def test_side_by_side_runs_empq_and_null_and_reports_missing_peers(tmp_path: Path) -> None:
    out = tmp_path / "peers.json"
    proc = subprocess.run(
        module_command("bench.peers", "--jobs", "150", "--concurrency", "4", "--in-flight", "12",
                       "--seconds", "40", "--json", str(out)),
        cwd=REPO, capture_output=True, text=True, timeout=110,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads(out.read_text())
    runs = {r["peer"]: r for r in data["runs"]}
    assert list(runs) == list(PEERS)
    assert data["redis_version"].startswith("6.2")
    for label in ("empq", "null"):
        r = runs[label]
        assert (r["stopped_by"], r["completed"], r["submitted"], r["failed"]) == ("jobs", 150, 150, 0)
        assert r["errors"] == {}
        assert 0 < r["enqueue_to_start"]["p50_ms"] <= r["enqueue_to_done"]["p50_ms"]
        assert r["config"]["workers"] == 4 and r["config"]["max_jobs"] == 1
    assert runs["empq"]["cpu_us_per_job"]["hub"] > 0 and runs["empq"]["cpu_us_per_job"]["redis"] > 0
    for peer in ("bullmq", "arq", "celery"):
        r = runs[peer]
        if peer_missing(peer) is None or os.environ.get("EMPQ_BENCH_PEERS_REQUIRED"):  # tox -e peers
            assert r["stopped_by"] == "jobs" and r["completed"] == 150, r
        else:
            assert r["skipped"].startswith("not installed: "), r
    lines = proc.stdout.splitlines()
    assert any(line.startswith("jobs/s") for line in lines)
    ratio = next(line for line in lines if line.startswith("empq jobs/s ÷ this"))
    assert ratio.split()[4] == "1.00"  # empq ÷ empq


def test_table_ratio_and_skips() -> None:
    def run(label: str, jobs_per_s: float) -> dict[str, object]:
        lat = {"p50_ms": 1.0, "p99_ms": 2.0}
        return {"label": label, "jobs_per_s": jobs_per_s, "completed": 10, "submitted": 10,
                "stopped_by": "jobs", "enqueue_to_start": lat, "enqueue_to_done": lat}  # fmt: skip

    rows = [
        run("empq", 1000.0),
        run("other", 4000.0),
        {"label": "gone", "skipped": "run `npm ci`"},
        {"label": "broke", "error": "boom"},
    ]  # fmt: skip
    text = table(rows)
    ratio = next(line for line in text.splitlines() if line.startswith("empq jobs/s ÷ this")).split()
    assert ratio[-4:] == ["1.00", "0.25", "-", "-"]
    stopped = next(line for line in text.splitlines() if line.startswith("stopped by")).split()
    assert stopped[-2:] == ["skipped", "error"]
    assert set(PEERS) == {"empq", "null", "bullmq", "arq", "celery"}
