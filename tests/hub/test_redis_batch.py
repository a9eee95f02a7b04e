"""hub/redis_batch.py: the calls of one event-loop tick written together, and the scripts loaded
again when Redis lost them. On a real redis-server."""

from __future__ import annotations

import asyncio


async def test_the_calls_of_one_tick_go_in_one_batch_and_answer_in_order(core_hub):
    hub = await core_hub()
    batch = hub.core.store.batch
    key = hub.core.store.key("batch-test")
    batches, sent = batch.batches, batch.sent
    replies = await asyncio.gather(
        batch.command("SET", key, "1"), batch.command("INCR", key), batch.command("GET", key)
    )
    assert replies == ["OK", 2, "2"]
    assert (batch.batches - batches, batch.sent - sent) == (1, 3)


async def test_scripts_lost_by_redis_are_loaded_again(core_hub):
    hub = await core_hub()
    client = await hub.client()
    job = await client.submit()
    await hub.redis.execute("SCRIPT", "FLUSH")  # what a restarted Redis forgets
    status = await client.status(job["job_id"])
    assert status["status"] == "queued"
    assert (await client.submit())["position"] == 2
