"""The hub on a real Redis Cluster (Debian's redis-server 7: 3 primaries, and a replica of the
first): pointed at a node that does not own its slot, through a slot migration (ASK, TRYAGAIN,
then MOVED) and a primary's failure (the replica promoted) — jobs run end to end each time,
with SDK workers and clients over real sockets; two hubs of one group meet on the bus
(cluster-wide pub/sub); a prefix without hash tag is refused."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import uuid
from collections.abc import Iterator

import httpx
import pytest
from conftest import hub_config
from empq.hub.redis_url import key_slot
from empq.hub.resp import RedisConfigError, RedisConnectionError, RespClient
from empq.hub.server import HubServer
from redis_rig import Rig, until

from bench.redis_servers import Cluster, RedisProcess, redis7_missing

pytestmark = pytest.mark.skipif(bool(redis7_missing()), reason=redis7_missing() or "")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with Cluster(tmp_path_factory.mktemp("cluster"), masters=3, replicas=1) as c:
        yield c


def prefix_on(cluster: Cluster, node: RedisProcess) -> str:
    """A fresh key prefix whose slot ``node`` serves."""
    while True:
        prefix = f"{{t-{uuid.uuid4().hex[:10]}}}"
        if cluster.owner(key_slot(f"{prefix}:x")) is node:
            return prefix


async def test_a_job_through_a_node_that_does_not_own_the_slot(cluster: Cluster) -> None:
    """Seeded with a non-owner node (its MOVED once killed the hub), the hub finds the owner; two
    hubs of one group seeded with different nodes exchange job events over pub/sub."""
    prefix = prefix_on(cluster, cluster.nodes[1])
    owner = cluster.nodes[1]
    seeds = [cluster.url(n) for n in (cluster.nodes[0], cluster.nodes[2])]
    async with Rig("", urls=seeds, key_prefix=prefix) as rig:
        for hub in rig.hubs:
            assert hub.redis is not None and hub.redis.mode == "cluster"
            assert hub.redis.address == owner.address
        core = rig.hubs[0].core
        assert core is not None
        await until(lambda: core.fanout.peer_hubs == 1, "the first hub to see the second")
        # the worker is on the first hub and the client on the second: the bus carries the events
        job_id = await rig.job()
        stored = owner.connection().hget(f"{prefix}:job:{job_id}", "status")
        assert stored == "completed"
        assert rig.hub.http is not None
        async with httpx.AsyncClient() as http:
            health = (await http.get(f"http://127.0.0.1:{rig.hub.http.port}/health")).json()
        assert health["status"] == "ok" and health["redis"] == "ok"


async def test_hub_groups_with_their_own_prefixes_spread_over_the_shards(cluster: Cluster) -> None:
    prefixes = [prefix_on(cluster, node) for node in cluster.nodes[:3]]
    async with contextlib.AsyncExitStack() as stack:
        rigs = [
            await stack.enter_async_context(Rig(cluster.url(cluster.nodes[0]), key_prefix=p))
            for p in prefixes
        ]
        assert {rig.hub.redis.address for rig in rigs if rig.hub.redis} == {
            n.address for n in cluster.nodes[:3]
        }
        await asyncio.gather(*(rig.jobs(3, concurrency=1) for rig in rigs))


async def test_a_slot_migration_is_followed(cluster: Cluster) -> None:
    """The hub's slot moves to another primary while jobs are submitted and the hub's timers
    run: the hub is sent ASK (keys already moved) and TRYAGAIN (some moved, some not) during the
    migration, MOVED after it, and follows each; every job completes once."""
    source = cluster.nodes[1]
    prefix = prefix_on(cluster, source)
    slot = key_slot(f"{prefix}:x")
    target = cluster.nodes[2]
    async with Rig(cluster.url(cluster.nodes[0]), key_prefix=prefix) as rig:
        await rig.jobs(5)
        flowing = asyncio.create_task(rig.jobs(30, concurrency=3))
        await asyncio.sleep(0.2)
        await asyncio.to_thread(cluster.start_migration, slot, target)
        await asyncio.sleep(0.3)  # the hub's timers and the jobs in flight meet the half-moved slot
        await asyncio.to_thread(cluster.finish_migration, slot, target)
        done = await asyncio.wait_for(flowing, 60)
        assert len(set(done)) == 30
        await rig.job()  # its first call meets MOVED
        redis = rig.hub.redis
        assert redis is not None and redis.address == target.address
        assert redis.redirects["MOVED"] >= 1, redis.redirects
        assert redis.redirects["ASK"] + redis.redirects["TRYAGAIN"] >= 1, redis.redirects
        counts = target.connection().hgetall(f"{prefix}:counts")
        assert int(counts["completed"]) == 36


async def test_calls_redirected_where_nobody_answers_fail(cluster: Cluster) -> None:
    """A MOVED to a node that does not answer: the calls fail (SERVICE_UNAVAILABLE in the hub),
    they do not hang; once the node answers the next call goes through."""
    source, target = cluster.nodes[1], cluster.nodes[2]
    prefix = prefix_on(cluster, source)
    slot = key_slot(f"{prefix}:x")
    client = RespClient(cluster.url(cluster.nodes[0]), slot_key=prefix, connect_timeout=0.3)
    try:
        assert await client.execute("SET", f"{prefix}:k", "v") == "OK"
        await asyncio.to_thread(cluster.start_migration, slot, target)
        await asyncio.to_thread(cluster.finish_migration, slot, target)
        target.connection().execute_command("CLIENT", "PAUSE", 1000, "ALL")  # answers nothing for 1 s
        with pytest.raises(RedisConnectionError, match="did not answer"):
            await asyncio.wait_for(client.execute("GET", f"{prefix}:k"), 10)
        assert await client.execute("GET", f"{prefix}:k") == "v"  # (once the pause is over)
        assert client.address == target.address and client.redirects["MOVED"] == 1
    finally:
        await client.close()


async def test_a_failover_is_followed(cluster: Cluster) -> None:
    """The primary that owns the hub's slot dies (SIGKILL); the cluster promotes its replica and
    the hub, finding its connection gone, asks the other nodes for the slot's new owner."""
    primary = cluster.nodes[0]  # the one with a replica
    replica = cluster.nodes[3]
    prefix = prefix_on(cluster, primary)
    async with Rig(cluster.url(cluster.nodes[1]), key_prefix=prefix) as rig:
        await rig.jobs(5)
        primary.connection().execute_command("WAIT", 1, 2000)
        primary.stop(signal.SIGKILL)
        await rig.jobs(5, timeout=60)  # submitted while the cluster fails over, retried by the SDK
        redis = rig.hub.redis
        assert redis is not None and redis.address == replica.address
        assert cluster.owner(key_slot(f"{prefix}:x")) is replica


async def test_a_prefix_without_hash_tag_is_refused(cluster: Cluster) -> None:
    server = HubServer(hub_config(cluster.url(cluster.nodes[1]), key_prefix="empq-no-tag"))
    with pytest.raises(RedisConfigError, match="hash tag"):
        await server.start()
    assert server.redis is None
