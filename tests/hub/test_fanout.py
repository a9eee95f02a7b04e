"""hub/fanout.py: frames to the right connections — as chunks to peers that asked for them (D15),
job events across hubs over the bus, workers and monitors wherever they are connected, and the
final message re-read after a hub or the bus was lost (D14). Chunking in-process; two hubs on
one Redis over real sockets (the bus is the server's subscription)."""

from __future__ import annotations

import asyncio

import orjson
from chunking import reassemble
from peer_steps import accept, claim, claim_eventually, complete, progress, submit

# --- a fan-out: encoded once, handed to the outbox once for all its recipients ------------------


async def test_a_job_event_is_encoded_once_for_all_its_recipients(core_hub):
    hub = await core_hub()
    client = await hub.client()
    watchers = [await hub.monitor(client_id=f"m{i}") for i in range(2)]
    for watcher in watchers:
        await watcher.request("subscribe_job_notifications")
        watcher.new()
    worker = await hub.worker()
    job_id = (await client.submit())["job_id"]
    hub.outbox.fanouts.clear()
    (assigned,) = await worker.claim()
    # the worker's job_assigned is its own (its request id): sent to it alone
    assert assigned["job_id"] == job_id and worker.of("job_update") == []
    # the job_update to the submitter and both monitors: one frame, one hand-over, three copies
    (frame,) = hub.outbox.fanouts
    for peer in (client, *watchers):
        (update,) = peer.of("job_update", job_id=job_id, status="assigned")
        assert update == orjson.loads(frame)


# --- outbound chunking (D15), in-process -----------------------------------------------------------


async def test_large_messages_reach_chunk_capable_peers_as_chunks(core_hub):
    hub = await core_hub(chunk_threshold=2048)
    capable = await hub.client("cz", capabilities={"chunked_messages": True})
    plain = await hub.client("cz")
    job = await capable.submit(requirements={"service_type": "bigres"})
    await plain.request("subscribe_job", job_id=job["job_id"])
    worker = await hub.worker(services=["bigres"])
    await worker.claim()
    await worker.accept(job["job_id"])
    result = {"success": True, "output_files": [f"https://cdn.example.com/{i:04}.png" for i in range(200)]}
    await worker.complete(job["job_id"], result)

    (whole,) = plain.of("job_completed", job_id=job["job_id"])
    assert whole["result"] == result
    assert plain.of("chunked_message") == []
    frames = capable.of("chunked_message", original_type="job_completed")
    assert frames[0]["total_chunks"] > 1 and len(frames) == frames[0]["total_chunks"]
    message = reassemble(frames)
    assert message["job_id"] == job["job_id"] and message["result"] == result
    assert message == {**whole, "timestamp": message["timestamp"]}
    assert capable.of("job_completed") == []
    # replies too: the status carries the big result, so it comes chunked
    capable.new()
    frames = await capable.send("request_job_status", id="big-status", job_id=job["job_id"])
    assert {f["type"] for f in frames} == {"chunked_message"}
    assert {f["original_type"] for f in frames} == {"response_job_status"}
    status = reassemble(frames)
    assert status["request_id"] == "big-status" and status["result"] == result
    # small messages still arrive whole
    assert (await capable.request("ping"))["type"] == "pong"
    assert (await plain.status(job["job_id"]))["result"] == result


async def test_a_job_event_reaches_each_listener_once(core_hub):
    """The submitter, a subscriber and a matching notification subscriber on one connection:
    one frame per event (D9, D14)."""
    hub = await core_hub()
    client = await hub.client("once")
    job = await client.submit()
    await client.request("subscribe_job", job_id=job["job_id"])
    await client.request("subscribe_job_notifications", filters={})
    worker = await hub.worker()
    await worker.claim()
    await worker.accept(job["job_id"])
    await worker.complete(job["job_id"])
    steps = [f["status"] for f in client.of("job_update", job_id=job["job_id"])]
    assert steps == ["assigned", "accepted"]
    assert len(client.of("job_completed", job_id=job["job_id"])) == 1


# --- two hubs on one Redis (the bus), real sockets ---------------------------------------------------


async def test_two_hubs_share_jobs_workers_and_events(start_hub):
    hub_a = await start_hub()
    hub_b = await start_hub(key_prefix=hub_a.config.key_prefix)
    client = await hub_a.peers.client("client-a", customer_id="two", permissions=["view_workers"])
    worker_b = await hub_b.peers.worker(services=("far",), subscribe=True)
    worker_a = await hub_a.peers.worker(services=("near",))
    watcher_b = await hub_b.peers.client("watcher-b", customer_id="two", permissions=["view_workers"])
    await asyncio.sleep(1.2)  # the hubs find each other through the registry

    # a job submitted on A is announced to and run by a worker on B
    job = (await submit(client, requirements={"service_type": "far"}))["job_id"]
    await worker_b.expect("job_available", job_id=job, timeout=2)
    await watcher_b.request("subscribe_job", "subscription_confirmed", job_id=job)
    (assigned,) = await claim(worker_b)
    assert assigned["job_id"] == job
    await accept(worker_b, job)
    await progress(worker_b, job, 40)
    for peer in (client, watcher_b):
        update = await peer.expect("job_update", job_id=job, status="in_progress", timeout=2)
        assert update["progress"] == 40 and update["worker_id"] == worker_b.worker_id
    await complete(worker_b, job, {"success": True, "output_files": ["b.png"]})
    for peer in (client, watcher_b):
        done = await peer.expect("job_completed", job_id=job, timeout=2)
        assert done["result"]["output_files"] == ["b.png"]
    for peer in (client, watcher_b):  # each once, though both hubs heard of it
        await peer.expect_none("job_completed", job_id=job, within=0.1)
        await peer.expect_none("job_update", job_id=job, status="in_progress", within=0.1)

    # a job run on A is followed by a subscriber on B
    near = (await submit(client, requirements={"service_type": "near"}))["job_id"]
    await watcher_b.request("subscribe_job", "subscription_confirmed", job_id=near)
    await claim(worker_a)
    await accept(worker_a, near)
    await progress(worker_a, near, 70)
    await watcher_b.expect("job_update", job_id=near, status="in_progress", progress=70, timeout=2)
    await complete(worker_a, near)
    await watcher_b.expect("job_completed", job_id=near, timeout=2)

    # cancelling on A stops the worker on B
    doomed = (await submit(client, requirements={"service_type": "far"}))["job_id"]
    await claim_eventually(worker_b, doomed)
    await accept(worker_b, doomed)
    cancelled = await client.request("cancel_job", "job_cancelled", job_id=doomed, reason="stop")
    assert cancelled["type"] == "job_cancelled"
    stop = await worker_b.expect("job_cancelled", job_id=doomed, timeout=2)
    assert stop["reason"] == "stop"
    assert (await complete(worker_b, doomed))["error_code"] == "NOT_JOB_HOLDER"

    # stats from either hub see both hubs and the workers of both (to viewers that see the fleet:
    # the clients above are bound to a customer, D19)
    viewers = [
        await hub.peers.monitor("ops", permissions=("view_workers", "view_system_stats"))
        for hub in (hub_a, hub_b)
    ]
    for peer in viewers:
        stats = (
            await peer.request("request_stats", "stats_response", include_sections=["system", "workers"])
        )["stats"]
        assert stats["system"]["hubs"] == 2
        ids = {w["worker_id"] for w in stats["workers"]["workers"]}
        assert ids == {worker_a.worker_id, worker_b.worker_id}
        assert stats["system"]["connections"]["worker"] == 2
        assert stats["system"]["connections"]["job_client"] == 2


async def test_a_hub_that_starts_gets_the_others_job_events_at_once(start_hub):
    """A starting hub says hello on the bus before it serves: the hubs already running publish
    their job events from then on, without waiting for the registry (read once a second; here
    hub A never reads it again) to tell them of the newcomer."""
    hub_a = await start_hub()
    worker_a = await hub_a.peers.worker(services=("early",))
    assert hub_a._ticker is not None
    hub_a._ticker.cancel()  # A's registry is never refreshed: only the hello tells it of B
    hub_b = await start_hub(key_prefix=hub_a.config.key_prefix)
    client_b = await hub_b.peers.client("client-b")
    job = (await submit(client_b, requirements={"service_type": "early"}))["job_id"]
    await claim_eventually(worker_a, job)
    await accept(worker_a, job)
    await complete(worker_a, job, {"success": True})
    done = await client_b.expect("job_completed", job_id=job, timeout=3)
    assert done["worker_id"] == worker_a.worker_id


# --- the final message is not lost (D14) -------------------------------------------------------------


async def test_final_message_survives_a_hub_dying_between_transition_and_publish(start_hub):
    """Regression (chaos run, two-hub kill -9): hub B completes a job in Redis and dies before it
    publishes the event; the client on hub A must still get job_completed — A re-reads the jobs
    its connections wait on when a peer hub vanishes from the registry."""
    hub_a = await start_hub()
    hub_b = await start_hub(key_prefix=hub_a.config.key_prefix)
    client = await hub_a.peers.client("client-resync", customer_id="resync")
    watcher = await hub_a.peers.client("watcher-resync", customer_id="resync")
    worker_b = await hub_b.peers.worker(services=("far",))
    await asyncio.sleep(1.2)  # the hubs find each other through the registry
    assert hub_a.core.fanout.peer_hubs == 1

    jobs = [(await submit(client, requirements={"service_type": "far"}))["job_id"] for _ in range(2)]
    await watcher.request("subscribe_job", "subscription_confirmed", job_id=jobs[1])
    # From here B "dies" right after each transition: its events never reach the bus; then its
    # timers stop and its registry entry goes (as it expires ~5 s after a kill -9).
    hub_b.core.fanout.broadcast = lambda kind, **fields: None
    for job in jobs:
        await claim_eventually(worker_b, job)
        await accept(worker_b, job)
        await complete(worker_b, job, {"success": True, "output_files": [f"{job}.png"]})
    await client.expect_none("job_completed", within=0.5)
    assert hub_b._ticker is not None
    hub_b._ticker.cancel()
    await hub_b.core.fleet.hub_gone(hub_b.core.hub_id)

    for job in jobs:  # A's next registry round (each second) sees B gone and re-reads the jobs
        done = await client.expect("job_completed", job_id=job, timeout=3)
        assert done["result"]["output_files"] == [f"{job}.png"]
    await watcher.expect("job_completed", job_id=jobs[1], timeout=1)
    assert hub_a.core.fanout.peer_hubs == 0 and not hub_a.core.subs.awaiting
    for peer in (client, watcher):  # once each
        await peer.expect_none("job_completed", within=1.2)


async def test_final_message_survives_a_lost_bus_subscription(start_hub):
    """Events published while a hub's bus subscription is down (Redis restart) are lost; when it
    re-subscribes the hub re-reads the jobs its connections wait on."""
    hub_a = await start_hub()
    hub_b = await start_hub(key_prefix=hub_a.config.key_prefix)
    client = await hub_a.peers.client("client-bus", customer_id="bus")
    worker_b = await hub_b.peers.worker(services=("far",))
    await asyncio.sleep(1.2)
    job = (await submit(client, requirements={"service_type": "far"}))["job_id"]
    await claim_eventually(worker_b, job)
    await accept(worker_b, job)
    await client.expect("job_update", job_id=job, status="accepted", timeout=2)

    subscriber = hub_a.subscriber
    assert subscriber is not None and hub_a.redis is not None
    on_bus = subscriber.on_message
    subscriber.on_message = lambda data: None  # the next subscription hears nothing: the gap
    await hub_a.redis.execute("CLIENT", "KILL", "TYPE", "pubsub")
    await asyncio.sleep(0.3)
    await complete(worker_b, job)
    await client.expect_none("job_completed", within=0.3)
    subscriber.on_message = on_bus
    await hub_a.redis.execute("CLIENT", "KILL", "TYPE", "pubsub")  # back: re-subscribed, re-read
    await client.expect("job_completed", job_id=job, timeout=3)
    await client.expect_none("job_completed", within=0.5)
