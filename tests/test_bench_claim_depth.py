"""The claim-depth benchmark runs: tiny settings, its own embedded redis-server, then a shared one.

Proves the harness (bench.claim_depth), not the store's speed: no timing thresholds.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    # bench/ is not installed; appended (not prepended) so ``empq`` stays the installed package.
    sys.path.append(str(REPO))

from bench.claim_depth import main  # noqa: E402

TINY = ["--depths", "100,1000", "--classes", "1,3", "--claims", "50", "--warmup", "5"]
TINY += ["--server-claims", "10", "--concurrency", "5", "--concurrent-claims", "50", "--seconds", "10"]


def _check(result: dict[str, Any], server_timing: bool) -> None:
    assert result["problems"] == []
    runs = result["runs"]
    assert [(r["depth"], r["classes"]) for r in runs] == [(100, 1), (1000, 1), (100, 3), (1000, 3)]
    assert len({r["prefix"] for r in runs}) == 4
    for r in runs:
        depth = r["depth"]
        assert r["fill"]["jobs"] == depth and r["fill"]["stopped_by"] == "count"
        assert r["fill"]["jobs_per_s"] > 0
        # Each sequential claim is completed and replaced: the depth the claims saw stays put.
        assert r["depth_reached"] == depth
        assert r["depth_after"] == depth
        seq = r["sequential"]
        assert (seq["claims"], seq["empty"], seq["stopped_by"]) == (50, 0, "count")
        assert seq["n"] == 50
        for q in ("p50_us", "p99_us", "mean_us"):
            assert math.isfinite(seq[q]) and seq[q] > 0
        assert seq["min_us"] <= seq["p50_us"] <= seq["p99_us"] <= seq["max_us"]
        conc = r["concurrent"]
        assert (conc["claims"], conc["empty"], conc["stopped_by"]) == (50, 0, "count")
        assert conc["claimers"] == 5 and conc["blocks"] == 10 and conc["claims_per_s"] > 0
        if server_timing:
            side = r["redis_side"]
            assert (side["claims"], side["empty"]) == (10, 0)
            assert side["per_claim"]["evalsha"]["calls"] == 1
            # the claim script reads the head of every class queue the worker can run
            assert side["per_claim"]["zrange"]["calls"] == r["classes"]
        else:
            assert "redis_side" not in r
        assert r["cleanup"]["complete"] and r["cleanup"]["deleted"] > depth
    assert [(q["classes"], q["depth_low"], q["depth_high"]) for q in result["ratios"]] == [
        (1, 100, 1000),
        (3, 100, 1000),
    ]
    for q in result["ratios"]:
        assert q["p50_ratio"] is not None and q["p50_ratio"] > 0


@pytest.mark.timeout(30)
def test_claim_depth_with_its_own_redis(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out.json"
    assert main([*TINY, "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["redis"]["embedded"] is True and result["redis"]["url"].startswith("unix://")
    _check(result, server_timing=True)
    printed = capsys.readouterr().out
    assert "claim p50 µs" in printed and "classes=3: p50(1,000) / p50(100)" in printed


@pytest.mark.timeout(30)
def test_claim_depth_on_a_given_redis_leaves_no_keys(redis_url: str, tmp_path: Path) -> None:
    import redis

    out = tmp_path / "out.json"
    assert main([*TINY, "--redis-url", redis_url, "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["redis"]["embedded"] is False
    _check(result, server_timing=False)
    client = redis.Redis.from_url(redis_url)
    try:
        for r in result["runs"]:
            assert list(client.scan_iter(match=r["prefix"] + "*", count=1000)) == []
    finally:
        client.close()
