"""The hub on a Sentinel-managed primary (Debian's redis-server and redis-sentinel 7): the primary
is killed while jobs run, the Sentinel promotes a replica, the hub follows it without a restart,
jobs submitted after the failover go through, and no job acknowledged as completed (to the
worker by ``job_completed_ack``, to the client by ``job_completed``) is missing on the new primary.

Two ways, as README.md "Redis Sentinel" explains:
- asynchronous replication (the default) and a clean stop of the primary (SIGTERM: Redis 7 lets
  its replicas catch up before it exits), so nothing acknowledged can be lost;
- ``--redis-wait-replicas 1`` with its one replica and a crash (SIGKILL, no goodbye): every
  call was answered only after the replica had its writes, so again nothing acknowledged can be
  lost. The promoted replica has no replica of its own, so calls fail (SERVICE_UNAVAILABLE,
  retried by the SDK) until the old primary is back as its replica. (Asynchronous replication
  and a crash can lose the last writes acknowledged before it: no test can assert either way on
  that, it is a race.)
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

import pytest
from empq.hub.resp import RedisNotReplicated, RespClient
from redis_rig import Rig

from bench.redis_servers import SentinelSet, free_port, sentinel_missing

pytestmark = pytest.mark.skipif(bool(sentinel_missing()), reason=sentinel_missing() or "")


@pytest.mark.parametrize(
    "crash, wait",
    [(signal.SIGTERM, False), (signal.SIGKILL, True)],
    ids=["async-replication-clean-stop", "wait-1-replica-crash"],
)
async def test_a_primary_killed_during_a_run(tmp_path: Path, crash: signal.Signals, wait: bool) -> None:
    overrides: dict[str, Any] = {"redis_wait_replicas": 1, "redis_wait_timeout_ms": 2000} if wait else {}
    with SentinelSet(tmp_path, replicas=1) as sentinels:
        # the first Sentinel named in the URL is down: the next one is asked
        url = sentinels.url(extra_sentinels=(f"127.0.0.1:{free_port()}",))
        # a claim whose reply the crash lost is handed back after the claim timeout: a short one
        async with Rig(url, claim_timeout_ms=1500, **overrides) as rig:
            assert rig.worker is not None and rig.hub.redis is not None
            acked: list[str] = []
            rig.worker.on_event(
                lambda event, info: acked.append(info["job_id"]) if event == "job_completed" else None
            )
            before = await rig.jobs(10)
            old = sentinels.primary()
            assert rig.hub.redis.address == old.address
            flowing = asyncio.create_task(rig.jobs(40, concurrency=4, timeout=90))
            while len(acked) < 15:  # mid-run
                await asyncio.sleep(0.005)
            await asyncio.to_thread(old.stop, crash)
            new = await asyncio.to_thread(sentinels.wait_failover, old.port)
            if wait:  # the promoted replica has no replica to WAIT for until the old primary is back
                await asyncio.to_thread(sentinels.rejoin, old)
            during = await asyncio.wait_for(flowing, 120)
            after = await rig.jobs(5)
            current = sentinels.primary()  # the new one (or, after a second failover, the old one again)
            assert current is new or (wait and current is old)
            assert rig.hub.redis.address == current.address
            completed = set(before + during + after)
            assert len(completed) == 55
            assert set(acked) >= completed
            prefix = rig.configs[0].key_prefix
            survivor = current.connection()
            statuses = {job_id: survivor.hget(f"{prefix}:job:{job_id}", "status") for job_id in acked}
            lost = sorted(job_id for job_id, status in statuses.items() if status != "completed")
            assert not lost, (
                f"{len(lost)} job(s) acknowledged as completed are not on the new primary: {lost}"
            )


async def test_wait_without_enough_replicas_is_an_error(tmp_path: Path) -> None:
    """WAIT for more replicas than there are: the commands ran, and the caller is told they are
    not replicated (the hub answers SERVICE_UNAVAILABLE)."""
    with SentinelSet(tmp_path, replicas=1) as sentinels:
        client = RespClient(sentinels.url(), slot_key="{t-wait}", wait=(2, 200))
        try:
            with pytest.raises(RedisNotReplicated, match=r"[01] of 2 replica"):
                await client.execute("SET", "{t-wait}:k", "v")
            assert sentinels.primary().connection().get("{t-wait}:k") == "v"
            ok = RespClient(sentinels.url(), slot_key="{t-wait}", wait=(1, 1000))
            try:
                assert await ok.execute("INCR", "{t-wait}:n") == 1
            finally:
                await ok.close()
        finally:
            await client.close()
