"""hub/commands/connection.py: ping, pong, disconnect, chunked_message, chunked_message_complete
(spec D3, D6, D15, D16) — what each answers, what it refuses and what it changes. In-process on a
real redis-server."""

from __future__ import annotations

from chunking import big_submit, chunk_frames


async def test_ping_pong_and_unknown_before_registration(core_hub):
    hub = await core_hub()
    raw = hub.connect()
    pong = await raw.request("ping")
    assert pong["type"] == "pong" and pong["request_id"]
    (unknown,) = await raw.send_raw({"type": "bogus", "timestamp": 1})
    assert unknown["type"] == "unknown" and unknown["content"]
    (pong,) = await raw.send("ping")
    assert pong["type"] == "pong" and "request_id" not in pong


async def test_pong_and_chunked_message_complete_are_receipts_without_a_reply(core_hub):
    hub = await core_hub()
    raw = hub.connect()
    assert await raw.send("pong", id="p-1") == []  # allowed before registering (D3)
    refused = await raw.request("chunked_message_complete", chunk_id="c", total_size=1)
    assert refused["error_code"] == "NOT_REGISTERED"
    client = await hub.client()
    assert await client.send("pong", id="p-2") == []
    assert await client.send("chunked_message_complete", id="r", chunk_id="c", total_size=1) == []


async def test_worker_disconnect_hands_jobs_back(core_hub):
    hub = await core_hub()
    client = await hub.client()
    job = await client.submit(requirements={"service_type": "bye"})
    worker = await hub.worker(services=["bye"])
    await worker.claim()
    await worker.send("job_accepted_by_worker", job_id=job["job_id"], worker_id=worker.worker_id)
    await worker.send("disconnect", reason="Client shutdown")
    assert worker.closed == 1000
    (update,) = client.of("job_update", job_id=job["job_id"], status="queued")
    assert update["previous_status"] == "accepted"
    # its registration is gone with it: frames after the goodbye are moot
    assert hub.core.workers.get(worker.worker_id) is None
    assert not await hub.redis.execute("EXISTS", hub.core.fleet.worker_key(worker.worker_id))
    assert await worker.send("ping", id="late") == []
    other = await hub.worker(services=["bye"])
    (again,) = await other.claim()
    assert again["job_id"] == job["job_id"] and again["retry_count"] == 0  # no retry counted (D16)


async def test_disconnect_drops_subscriptions_unless_asked_to_keep_them(core_hub):
    hub = await core_hub()
    submitter = await hub.client("cust-d")
    job = (await submitter.submit())["job_id"]
    keeper, leaver = await hub.client("cust-d"), await hub.client("cust-d")
    for conn in (keeper, leaver):
        await conn.request("subscribe_job", job_id=job)
    await keeper.send("disconnect", cleanup_subscriptions=False)
    await leaver.send("disconnect")
    assert keeper.closed == leaver.closed == 1000
    assert hub.core.subs.jobs[job] == {keeper.conn_id}
    await hub.drop(keeper)  # the transport then reports the connection gone: everything goes
    assert job not in hub.core.subs.jobs


async def test_disconnect_before_registering_closes_the_connection(core_hub):
    hub = await core_hub()
    raw = hub.connect()
    assert await raw.send("disconnect", reason="changed my mind") == []
    assert raw.closed == 1000


async def test_chunked_message_acks_parts_and_processes_the_whole(core_hub):
    hub = await core_hub()
    client = await hub.client()
    message = big_submit("inner", "chunk-cmd")
    first, second = chunk_frames(message, 2)
    (ack,) = await client.send("chunked_message", id="part-0", **first)
    assert (ack["type"], ack["status"], ack["request_id"]) == ("ack", "processed", "part-0")
    receipt, accepted = await client.send("chunked_message", id="part-1", **second)
    assert receipt["type"] == "chunked_message_complete" and receipt["request_id"] == "part-1"
    assert (receipt["chunk_id"], receipt["original_type"]) == (first["chunk_id"], "submit_job")
    assert receipt["total_size"] == first["total_size"] and "assembled_message" not in receipt
    assert accepted["type"] == "job_accepted" and accepted["request_id"] == "inner"
    refused = await client.request("chunked_message", **{**first, "data": "!!!"})
    assert refused["error_code"] == "CHUNK_ERROR"
    assert refused["details"] == {"chunk_id": first["chunk_id"], "reason": "bad_base64"}
    raw = hub.connect()
    assert (await raw.request("chunked_message", **first))["error_code"] == "NOT_REGISTERED"
