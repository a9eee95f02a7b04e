"""The Redis benchmark harnesses run: ``bench.resp_client`` (tiny, against this checkout and
HEAD's client) and ``bench.redis_deployments wait`` (tiny, on Debian's redis-server 7 with a
replica). Proves the harnesses, not speed: no timing thresholds. (``spread`` shares the load
code of ``wait``; its cluster is exercised by tests/test_redis_cluster.py.)"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.append(str(REPO))  # bench/ is not installed; appended so ``empq`` stays the installed one

from bench import redis_deployments, resp_client  # noqa: E402
from bench.redis_servers import redis7_missing  # noqa: E402


def test_resp_client_bench(tmp_path: Path) -> None:
    out = tmp_path / "resp.json"
    compare = ["--compare", "HEAD"] if shutil.which("git") and (REPO / ".git").exists() else []
    assert (
        resp_client.main(["--calls", "400", "--batch", "20", "--rounds", "1", "--json", str(out), *compare])
        == 0
    )
    results = json.loads(out.read_text())
    assert set(results) == {"tcp", "unix"}
    for by_name in results.values():
        assert len(by_name) == (2 if compare else 1)
        for (run,) in by_name.values():
            assert run["cpu_us_per_call"] > 0 and run["calls_per_s"] > 0


@pytest.mark.skipif(bool(redis7_missing()), reason=redis7_missing() or "")
def test_wait_bench(tmp_path: Path) -> None:
    out = tmp_path / "wait.json"
    assert redis_deployments.main(["wait", "--jobs", "40", "--rounds", "1", "--json", str(out)]) == 0
    runs = json.loads(out.read_text())
    assert [r["label"] for r in runs] == ["single, async", "single, WAIT 1", "load, async", "load, WAIT 1"]
    assert all(r["errors"] == 0 and r["completed"] == (20 if "single" in r["label"] else 40) for r in runs)
    assert all(len(r["redis_cpu_s_per_node"]) == 2 for r in runs)
