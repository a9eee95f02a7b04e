"""bench/history_cost.py works: a round with the history records it, a round without records
nothing (its own redis-server; no timing asserted)."""

from __future__ import annotations

import sys

import pytest
from conftest import REPO

if str(REPO) not in sys.path:
    sys.path.append(str(REPO))  # bench/ is not installed

from bench.history_cost import one_round  # noqa: E402

pytestmark = pytest.mark.asyncio


async def test_the_history_cost_bench_runs_with_and_without_the_history(tmp_path):
    from empq.hub.embedded_redis import EmbeddedRedis
    from empq.hub.resp import RespClient

    server = EmbeddedRedis(tmp_path)
    url = server.start()
    try:
        client = RespClient(url)
        without = await one_round(url, 50, history=False)
        assert await client.execute("KEYS", "{bench}:hist:*") == []
        with_history = await one_round(url, 50, history=True)
        assert len(await client.execute("KEYS", "{bench}:hist:*")) == 50
        assert set(with_history) == set(without) == {"redis_cpu_us_per_job", "memory_bytes_per_job"}
        await client.close()
    finally:
        server.stop()
