"""hub/store.py (and its Lua scripts): claim order over Redis — priority, then preferred types,
then FIFO; positions across job classes; claims atomic under a race; an expired claim back at
its place; retention of final jobs (D9); idempotent submission (D18). In-process on a real
redis-server."""

from __future__ import annotations

import asyncio

from peer_steps import now_ms


async def test_priority_then_fifo_over_1000_jobs(core_hub):
    hub = await core_hub()
    client = await hub.client()
    expected = []
    for i in range(1000):
        priority = (i * 37) % 5 * 20  # 0, 20, 40, 60, 80 interleaved
        reply = await client.submit(
            priority=priority, payload={"i": i}, requirements={"service_type": "order"}
        )
        expected.append((-priority, i, reply["job_id"]))
    worker = await hub.worker(services=["order"], max_concurrent_jobs=100)
    order = []
    while len(order) < 1000:
        jobs = await worker.claim(max_jobs=100)
        assert jobs
        for job in jobs:
            order.append(job["job_id"])
            await worker.complete(job["job_id"])
    assert order == [job_id for _, _, job_id in sorted(expected)]


async def test_positions_count_jobs_ahead_across_classes(core_hub):
    hub = await core_hub()
    client = await hub.client()
    a = await client.submit(priority=50, requirements={"service_type": "pos-a"})
    b = await client.submit(priority=50, requirements={"service_type": "pos-b"})
    c = await client.submit(priority=90, requirements={"service_type": "pos-a"})
    d = await client.submit(priority=10, requirements={"service_type": "pos-b"})
    assert [a["position"], b["position"], c["position"], d["position"]] == [1, 2, 1, 4]
    status = await client.status(a["job_id"])
    assert status["position"] == 2 and status["status"] == "queued"


async def test_20_workers_race_for_200_jobs_none_assigned_twice(core_hub):
    hub = await core_hub()
    client = await hub.client()
    ids = {(await client.submit(requirements={"service_type": "race"}))["job_id"] for _ in range(200)}
    workers = [await hub.worker(services=["race"], max_concurrent_jobs=3) for _ in range(20)]

    async def drain(worker):
        got = []
        while True:
            jobs = await worker.claim(max_jobs=3)
            if not jobs:
                return got
            for job in jobs:
                got.append(job["job_id"])
                await worker.send("job_accepted_by_worker", job_id=job["job_id"], worker_id=worker.worker_id)
                await worker.complete(job["job_id"])

    results = await asyncio.gather(*(drain(w) for w in workers))
    everything = [job for got in results for job in got]
    assert len(everything) == len(set(everything)) == 200
    assert set(everything) == ids
    assert sum(1 for got in results if got) > 1  # the work was shared


async def test_preferred_types_break_ties_within_a_priority(core_hub):
    hub = await core_hub()
    client = await hub.client()
    first = await client.submit(job_type="text_to_image", priority=50, requirements={"service_type": "pref"})
    second = await client.submit(job_type="upscaling", priority=50, requirements={"service_type": "pref"})
    urgent = await client.submit(job_type="text_to_image", priority=60, requirements={"service_type": "pref"})
    worker = await hub.worker(services=["pref"], max_concurrent_jobs=3)
    jobs = await worker.claim(max_jobs=3, preferred_types=["upscaling"])
    assert [j["job_id"] for j in jobs] == [urgent["job_id"], second["job_id"], first["job_id"]]


async def test_claim_timeout_requeues_at_original_place(core_hub):
    hub = await core_hub()
    client = await hub.client()
    first = await client.submit(requirements={"service_type": "slow"})
    second = await client.submit(requirements={"service_type": "slow"})
    lazy = await hub.worker(services=["slow"])
    (job,) = await lazy.claim(claim_timeout=150)
    assert job["job_id"] == first["job_id"]
    (told,) = await hub.until(lambda: lazy.of("job_update", job_id=first["job_id"], status="queued"))
    assert told["previous_status"] == "assigned"
    late = await lazy.act("job_accepted_by_worker", first["job_id"])
    assert late["error_code"] == "NOT_JOB_HOLDER"
    other = await hub.worker(services=["slow"], max_concurrent_jobs=2)
    jobs = await other.claim(max_jobs=2)
    assert [j["job_id"] for j in jobs] == [first["job_id"], second["job_id"]]


# --- retention (D9) --------------------------------------------------------------------------------


async def test_finished_jobs_are_forgotten_after_the_retention(core_hub):
    """D9 retention: completed, failed and cancelled jobs go (hash and listing entry) once final for
    longer than job_retention_s; queued and running jobs stay; totals by status stay."""
    hub = await core_hub(job_retention_s=0.6)
    client = await hub.client("retention")
    worker = await hub.worker()
    done, failed, cancelled, running, queued = [(await client.submit())["job_id"] for _ in range(5)]
    assert [j["job_id"] for j in await worker.claim()] == [done]
    await worker.accept(done)
    await worker.complete(done)
    assert [j["job_id"] for j in await worker.claim()] == [failed]
    ack = await worker.act("fail_job", failed, error="boom", retry=False)
    assert ack["retry_scheduled"] is False
    await client.request("cancel_job", job_id=cancelled)
    assert [j["job_id"] for j in await worker.claim()] == [running]
    await worker.accept(running)

    store = hub.core.store
    await hub.core.tick()  # a registry round (where retention runs) within the retention
    for job in (done, failed, cancelled):  # within the retention: still there
        assert (await client.status(job))["status"] in ("completed", "failed", "cancelled")

    async def forgotten() -> bool:
        return not await hub.redis.execute("EXISTS", store.job_key(done))

    await hub.until(forgotten, within=4, every=0.1)
    for job in (done, failed, cancelled):
        reply = await client.status(job)
        assert (reply["type"], reply["error_code"]) == ("error", "JOB_NOT_FOUND"), reply
        assert await hub.redis.execute("ZSCORE", store.key("jobs"), job) is None
    assert (await client.status(running))["status"] == "accepted"
    assert (await client.status(queued))["status"] == "queued"
    assert await hub.redis.execute("ZCARD", store.key("finished")) == 0
    counts = dict(zip(*[iter(await hub.redis.execute("HGETALL", store.key("counts")))] * 2, strict=True))
    assert (counts["completed"], counts["failed"], counts["cancelled"]) == ("1", "1", "1")
    await worker.complete(running)  # a job that ends later is kept for its own retention
    assert (await client.status(running))["status"] == "completed"


async def test_retention_zero_keeps_finished_jobs(core_hub):
    hub = await core_hub(job_retention_s=0)
    client = await hub.client("forever")
    worker = await hub.worker()
    job = (await client.submit())["job_id"]
    await worker.claim()
    await worker.complete(job)
    await hub.redis.execute("ZADD", hub.core.store.key("finished"), 0, job)  # as if final long ago
    await hub.core.tick()  # the first tick runs a registry round (where retention runs)
    assert (await client.status(job))["status"] == "completed"


# --- idempotent submission (D18) -----------------------------------------------------------------------


async def test_idempotency_key_applies_a_submission_once_per_client(core_hub):
    """D18: a repeated submit_job with the same idempotency_key (same client, also after a
    reconnect) gets the first job_accepted again and queues nothing; another key or another
    client is another job; after idempotency_ttl_s the key is free again."""
    hub = await core_hub(idempotency_ttl_s=1.0)
    client = await hub.client("idem", client_id="idem-a")
    first = await client.submit(idempotency_key="order-1")
    again = await client.submit(idempotency_key="order-1")
    assert (again["job_id"], again["position"], again["notified_workers"]) == (
        first["job_id"],
        first["position"],
        0,
    )
    other_key = await client.submit(idempotency_key="order-2")
    other_client = await hub.client("idem")
    same_key_elsewhere = await other_client.submit(idempotency_key="order-1")
    assert len({first["job_id"], other_key["job_id"], same_key_elsewhere["job_id"]}) == 3
    reconnected = await hub.client("idem", client_id="idem-a")  # reconnect
    assert (await reconnected.submit(idempotency_key="order-1"))["job_id"] == first["job_id"]
    store = hub.core.store
    assert await hub.redis.execute("ZCARD", store.key("jobs")) == 3
    await asyncio.sleep(1.1)
    later = await client.submit(idempotency_key="order-1")
    assert later["job_id"] != first["job_id"]
    (refused,) = await client.send_raw(
        {"type": "submit_job", "id": "long", "timestamp": now_ms(), "job_type": "t", "payload": {},
         "idempotency_key": "x" * 129}
    )  # fmt: skip
    assert refused["request_id"] == "long"
    assert (refused["error_code"], refused["details"]["field"]) == ("INVALID_PARAMETERS", "idempotency_key")
