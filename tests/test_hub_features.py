"""The hub's part-2 features over real sockets on a real redis-server: worker liveness
(heartbeats, reconnect grace), stats, monitors and alerts, the frame size limit, chunking both
ways, auth, per-customer isolation, two hubs sharing one Redis, graceful shutdown (spec D1, D4,
D13-D17).  Each behaviour is checked both ways: what is allowed works, what is not is refused.

Every test starts its own hub(s) with small timers so the whole file runs in seconds.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import math
import time
import uuid
from typing import Any

import orjson
import pytest
from empq.conformance.peer import Peer, PeerError
from empq.hub.server import HubServer

# --- helpers ----------------------------------------------------------------------------------


def now_ms() -> int:
    return time.time_ns() // 1_000_000


async def submit(client: Peer, **fields: Any) -> dict[str, Any]:
    fields.setdefault("job_type", "text_to_image")
    fields.setdefault("payload", {"prompt": "mountains"})
    reply = await client.request("submit_job", "job_accepted", **fields)
    assert reply["type"] == "job_accepted", reply
    return reply


async def claim(worker: Peer, max_jobs: int = 1) -> list[dict[str, Any]]:
    """Claim and collect the job_assigned frames up to the claim's end (D10)."""
    rid = worker.next_id()
    await worker.send("claim_job", id=rid, worker_id=worker.worker_id, max_jobs=max_jobs)
    jobs = []
    while len(jobs) < max_jobs:
        frame = await worker.expect(("job_assigned", "ack", "error"), request_id=rid)
        if frame["type"] != "job_assigned":
            assert frame["type"] == "ack" and frame["status"] == "no_job_available", frame
            break
        jobs.append(frame)
    return jobs


async def claim_eventually(worker: Peer, job_id: str, within: float = 3.0) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        for job in await claim(worker):
            assert job["job_id"] == job_id, job
            return job
        await asyncio.sleep(0.03)
    raise AssertionError(f"{worker.name} could not claim {job_id} within {within}s")


async def accept(worker: Peer, job_id: str) -> None:
    ack = await worker.request("job_accepted_by_worker", "ack", job_id=job_id, worker_id=worker.worker_id)
    assert ack["type"] == "ack", ack


async def progress(worker: Peer, job_id: str, pct: float) -> None:
    ack = await worker.request(
        "update_job_progress", "ack", job_id=job_id, worker_id=worker.worker_id, progress=pct
    )
    assert ack["type"] == "ack", ack


async def complete(worker: Peer, job_id: str, result: dict[str, Any] | None = None, **fields: Any) -> dict:
    return await worker.request(
        "complete_job",
        "job_completed_ack",
        job_id=job_id,
        worker_id=worker.worker_id,
        result=result or {"success": True},
        **fields,
    )


async def status_of(peer: Peer, job_id: str) -> dict[str, Any]:
    return await peer.request("request_job_status", "response_job_status", job_id=job_id)


async def still_works(peer: Peer) -> None:
    assert (await peer.request("ping", "pong"))["type"] == "pong"


def chunk_frames(
    message: dict[str, Any], parts: int, data_hash: str | None = None, chunk_id: str | None = None
) -> list[dict[str, Any]]:
    """``message`` as ``parts`` chunked_message fields (D15), chunk_index 0-based."""
    text = orjson.dumps(message)
    size = math.ceil(len(text) / parts)
    chunk_id = chunk_id or f"chunk-{uuid.uuid4().hex[:12]}"
    digest = data_hash or hashlib.sha256(text).hexdigest()
    return [
        {
            "chunk_id": chunk_id,
            "chunk_index": i,
            "total_chunks": parts,
            "data": base64.b64encode(text[i * size : (i + 1) * size]).decode(),
            "data_hash": digest,
            "original_type": message["type"],
            "total_size": len(text),
        }
        for i in range(parts)
    ]


# --- 1. heartbeats (D16) ----------------------------------------------------------------------


async def test_heartbeat_ack_names_the_next_expected_heartbeat(start_hub):
    hub = await start_hub(heartbeat_interval_ms=400)
    worker = await hub.peers.worker()
    assert worker.registered["heartbeat_interval"] == 400
    before = now_ms()
    ack = await worker.request("worker_heartbeat", "worker_heartbeat_ack", worker_id=worker.worker_id)
    after = now_ms()
    assert ack["status"] == "acknowledged" and ack["worker_id"] == worker.worker_id
    assert before + 400 <= ack["next_heartbeat_expected"] <= after + 400
    # refused: another worker's id, and a heartbeat from a job client
    other = await worker.request("worker_heartbeat", "worker_heartbeat_ack", worker_id="someone-else")
    assert other["error_code"] == "PERMISSION_DENIED"
    client = await hub.peers.client()
    denied = await client.request("worker_heartbeat", "worker_heartbeat_ack", worker_id=worker.worker_id)
    assert denied["error_code"] == "PERMISSION_DENIED"


async def test_silent_worker_is_reaped_and_its_job_requeued_while_a_chatty_one_stays(start_hub):
    hub = await start_hub(heartbeat_interval_ms=200, heartbeat_timeout_ms=600, reconnect_grace_ms=300)
    monitor = await hub.peers.monitor()
    client = await hub.peers.client()
    job = await submit(client, requirements={"service_type": "hb"})
    silent = await hub.peers.worker(services=("hb",))
    chatty = await hub.peers.worker(services=("hb",))
    chatty_since = time.monotonic()
    (assigned,) = await claim(silent)
    assert assigned["job_id"] == job["job_id"] and assigned["retry_count"] == 0
    await accept(silent, job["job_id"])

    async def keep_talking() -> None:  # any frame is a sign of life, not only heartbeats
        while True:
            await chatty.send("ping")
            await asyncio.sleep(0.15)

    talker = asyncio.create_task(keep_talking())
    try:
        requeued = await client.expect("job_update", job_id=job["job_id"], status="queued", timeout=3)
        assert requeued["previous_status"] == "accepted"
        alert = await monitor.expect("system_alert", category="worker_lost", timeout=3)
        assert alert["details"]["worker_id"] == silent.worker_id
        assert alert["details"]["jobs_requeued"] == [job["job_id"]]
        assert await silent.closed(timeout=2) is not None  # the hub closed the silent worker
        status = await status_of(client, job["job_id"])
        assert status["status"] == "queued" and status["retry_count"] == 1  # counts as a retry
        # the chatty worker outlives two heartbeat timeouts and takes the job over
        await asyncio.sleep(max(0.0, 1.6 - (time.monotonic() - chatty_since)))
        await monitor.expect_none("system_alert", category="worker_lost", within=0.3)
    finally:
        talker.cancel()
    again = await claim_eventually(chatty, job["job_id"])
    assert again["retry_count"] == 1
    await accept(chatty, job["job_id"])
    assert (await complete(chatty, job["job_id"]))["type"] == "job_completed_ack"
    await client.expect("job_completed", job_id=job["job_id"])


# --- 2. reconnect grace (D16) -------------------------------------------------------------------


async def drop(worker: Peer) -> None:
    """Lose the connection without saying ``disconnect``."""
    worker.ws.transport.abort()
    with pytest.raises(PeerError):
        await worker.expect("pong", timeout=2)  # until the reader sees the connection gone


async def reregister(hub: HubServer, worker_id: str, services: tuple[str, ...]) -> Peer:
    """Register again under the same id; the hub may not have noticed the drop yet."""
    for _ in range(50):
        peer = await hub.peers.raw(worker_id)
        peer.worker_id = worker_id
        reply = await peer.request(
            "register_worker",
            "worker_registered",
            worker_id=worker_id,
            capabilities={"services": list(services)},
            subscribe_to_jobs=False,
        )
        if reply["type"] == "worker_registered":
            peer.registered = reply
            return peer
        assert reply["error_code"] == "ALREADY_REGISTERED", reply
        await peer.close()
        await asyncio.sleep(0.02)
    raise AssertionError(f"could not register {worker_id} again")


async def test_worker_reconnecting_within_the_grace_keeps_its_job(start_hub):
    hub = await start_hub(reconnect_grace_ms=300)
    client = await hub.peers.client()
    job = await submit(client, requirements={"service_type": "grace"})
    worker = await hub.peers.worker(services=("grace",))
    assert "resumed_jobs" not in worker.registered
    await claim(worker)
    await accept(worker, job["job_id"])
    await progress(worker, job["job_id"], 10)
    await drop(worker)
    back = await reregister(hub, worker.worker_id, ("grace",))
    assert back.registered["resumed_jobs"] == [job["job_id"]]
    await asyncio.sleep(0.5)  # past the grace: coming back cancelled the departure
    await client.expect_none("job_update", job_id=job["job_id"], status="queued", within=0.1)
    await progress(back, job["job_id"], 60)
    await client.expect("job_update", job_id=job["job_id"], status="in_progress", progress=60)
    assert (await complete(back, job["job_id"]))["type"] == "job_completed_ack"
    done = await client.expect("job_completed", job_id=job["job_id"])
    assert done["worker_id"] == worker.worker_id
    assert (await status_of(client, job["job_id"]))["retry_count"] == 0


async def test_worker_back_after_the_grace_has_lost_its_job(start_hub):
    hub = await start_hub(reconnect_grace_ms=300)
    client = await hub.peers.client()
    job = await submit(client, requirements={"service_type": "late"})
    worker = await hub.peers.worker(services=("late",))
    await claim(worker)
    await accept(worker, job["job_id"])
    standby = await hub.peers.worker(services=("late",), subscribe=True)
    await drop(worker)
    requeued = await client.expect("job_update", job_id=job["job_id"], status="queued", timeout=3)
    assert requeued["previous_status"] == "accepted"
    await standby.expect("job_available", job_id=job["job_id"], timeout=2)
    taken = await claim_eventually(standby, job["job_id"])
    assert taken["retry_count"] == 1
    back = await reregister(hub, worker.worker_id, ("late",))
    assert "resumed_jobs" not in back.registered
    late = await complete(back, job["job_id"])
    assert late["error_code"] == "NOT_JOB_HOLDER"
    await accept(standby, job["job_id"])
    await complete(standby, job["job_id"])
    done = await client.expect("job_completed", job_id=job["job_id"])
    assert done["worker_id"] == standby.worker_id


# --- 3. stats (D14) ---------------------------------------------------------------------------


async def test_stats_subscription_sends_the_asked_sections_every_interval_until_disabled(start_hub):
    hub = await start_hub()
    client = await hub.peers.client()
    before = now_ms()
    confirmed = await client.request(
        "subscribe_stats", "subscription_confirmed", interval_seconds=1, include_sections=["jobs"]
    )
    assert confirmed["type"] == "subscription_confirmed", confirmed
    assert confirmed["subscription_type"] == "stats" and confirmed["update_interval"] == 1
    assert confirmed["include_sections"] == ["jobs"]
    assert before + 1000 <= confirmed["next_broadcast"] <= now_ms() + 1000
    first = await client.expect("stats_update", timeout=1.6)
    second = await client.expect("stats_update", timeout=1.6)
    for update in (first, second):
        assert set(update["stats"]) == {"jobs"}
        assert update["stats"]["jobs"]["queued"] == 0
    assert abs(first["timestamp"] - confirmed["next_broadcast"]) < 300
    assert 800 <= second["timestamp"] - first["timestamp"] <= 1300
    assert second["next_broadcast"] - second["timestamp"] == pytest.approx(1000, abs=50)
    off = await client.request("subscribe_stats", "subscription_confirmed", enabled=False)
    assert off["enabled"] is False and off["subscription_type"] == "stats"
    await client.expect_none("stats_update", within=1.3)
    # workers may not subscribe to stats
    worker = await hub.peers.worker()
    denied = await worker.request("subscribe_stats", "subscription_confirmed", interval_seconds=1)
    assert denied["error_code"] == "PERMISSION_DENIED"


async def test_request_stats_counts_a_known_sequence_of_jobs(start_hub):
    hub = await start_hub()
    client = await hub.peers.client(permissions=["view_workers"])  # D14: sees the fleet
    worker = await hub.peers.worker(services=("st",), max_concurrent_jobs=3)
    jobs = [(await submit(client, requirements={"service_type": "st"}))["job_id"] for _ in range(7)]
    done, failed = (j["job_id"] for j in await claim(worker, max_jobs=2))
    assert [done, failed] == jobs[:2]
    await accept(worker, done)
    await complete(worker, done, processing_time=2.0)
    ack = await worker.request(
        "fail_job", "job_failed_ack", job_id=failed, worker_id=worker.worker_id, error="x", retry=False
    )
    assert ack["retry_scheduled"] is False
    running, accepted, assigned = (j["job_id"] for j in await claim(worker, max_jobs=3))
    await accept(worker, running)
    await progress(worker, running, 50)
    await accept(worker, accepted)
    assert (await client.request("cancel_job", "job_cancelled", job_id=jobs[5]))["type"] == "job_cancelled"
    await asyncio.sleep(0.1)  # a timer tick refreshes the mean processing time

    reply = await client.request("request_stats", "stats_response")
    stats = reply["stats"]
    assert set(stats) == {"jobs", "workers", "throughput", "system"}  # all sections by default
    assert stats["jobs"] == {
        "queued": 1,
        "assigned": 1,
        "accepted": 1,
        "in_progress": 1,
        "completed": 1,
        "failed": 1,
        "cancelled": 1,
        "timeout": 0,
    }
    assert stats["throughput"] == {
        "completed_last_minute": 1,
        "completed_last_hour": 1,
        "failed_last_hour": 1,
        "avg_processing_time": 2.0,
    }
    workers = stats["workers"]
    assert workers["total"] == 1 and workers["busy"] == 1 and workers["idle"] == 0
    (entry,) = workers["workers"]
    assert entry["worker_id"] == worker.worker_id and entry["status"] == "busy"
    assert sorted(entry["current_jobs"]) == sorted([running, accepted, assigned])
    system = stats["system"]
    assert system["hubs"] == 1 and system["uptime_seconds"] > 0
    assert system["connections"] == {"job_client": 1, "monitor": 0, "worker": 1, "new": 0}
    only = await client.request("request_stats", "stats_response", include_sections=["throughput"])
    assert set(only["stats"]) == {"throughput"}


async def test_stats_show_worker_telemetry(start_hub):
    hub = await start_hub()
    worker = await hub.peers.worker(services=("tele",))
    ack = await worker.request(
        "worker_heartbeat",
        "worker_heartbeat_ack",
        worker_id=worker.worker_id,
        load=0.5,
        system_info={"cpu_usage": 45, "gpu_usage": 85, "uptime": 100},
        connector_status={"comfyui": {"status": "active", "queue_length": 2}},
    )
    assert ack["type"] == "worker_heartbeat_ack"
    relayed = await worker.request(
        "connector_ws_status", "ack", worker_id=worker.worker_id, connector_type="a1111", status="error"
    )
    assert relayed["status"] == "processed" and relayed["original_type"] == "connector_ws_status"
    client = await hub.peers.client(permissions=["view_workers"])
    stats = (await client.request("request_stats", "stats_response", include_sections=["workers"]))["stats"]
    assert set(stats) == {"workers"}
    (entry,) = stats["workers"]["workers"]
    assert entry["system_info"] == {"cpu_usage": 45, "gpu_usage": 85, "uptime": 100}
    assert entry["load"] == 0.5 and entry["last_heartbeat"] <= ack["timestamp"]
    assert entry["connector_status"] == {
        "comfyui": {"status": "active", "queue_length": 2},
        "a1111": {"status": "error"},
    }
    assert entry["capabilities"]["services"] == ["tele"]


# --- 4. monitors (D14) ------------------------------------------------------------------------


async def test_monitor_gets_system_status_on_registration_and_periodically(start_hub):
    hub = await start_hub(status_interval_ms=200)
    monitor = await hub.peers.raw("monitor")
    rid = monitor.next_id()
    await monitor.send("register_client", id=rid, client_type="monitor", client_id="mon")
    registered = await monitor.recv()
    assert registered["type"] == "client_registered" and registered["request_id"] == rid
    first = await monitor.recv()  # right after registration
    assert first["type"] == "system_status"
    assert first["active_workers"] == 0 and first["pending_jobs"] == 0
    assert first["system_health"] == "healthy" and first["alerts"] == []
    stamps = [(await monitor.expect("system_status", timeout=1))["timestamp"] for _ in range(3)]
    gaps = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
    assert all(100 <= gap <= 500 for gap in gaps), gaps
    # job clients get no system_status
    client = await hub.peers.client()
    await client.expect_none("system_status", within=0.5)


async def test_worker_service_requests_and_connector_status_are_relayed_to_monitors(start_hub):
    hub = await start_hub()
    monitors = [await hub.peers.monitor("mon-a"), await hub.peers.monitor("mon-b")]
    client = await hub.peers.client()
    worker = await hub.peers.worker(services=("relay",))
    ack = await worker.request(
        "service_request",
        "ack",
        job_id="job-123",
        worker_id=worker.worker_id,
        service_type="comfyui",
        endpoint="/prompt",
        method="POST",
        payload={"steps": 30},
    )
    assert ack["status"] == "processed" and ack["original_type"] == "service_request"
    await worker.send(
        "connector_ws_status",
        worker_id=worker.worker_id,
        connector_type="comfyui",
        status="disconnected",
        details={"error": "refused"},
    )
    for monitor in monitors:
        relayed = await monitor.expect("service_request", job_id="job-123")
        assert relayed["worker_id"] == worker.worker_id and relayed["payload"] == {"steps": 30}
        ws_status = await monitor.expect("connector_ws_status", worker_id=worker.worker_id)
        assert ws_status["status"] == "disconnected" and ws_status["details"] == {"error": "refused"}
    await worker.expect_none("ack", original_type="connector_ws_status")  # no id: no ack (D6)
    await client.expect_none(("service_request", "connector_ws_status"))
    # only workers send them
    denied = await client.request(
        "service_request", "ack", job_id="job-1", worker_id="w", service_type="comfyui"
    )
    assert denied["error_code"] == "PERMISSION_DENIED"


async def test_alert_when_no_connected_worker_can_run_a_job(start_hub):
    hub = await start_hub()
    monitor = await hub.peers.monitor()
    client = await hub.peers.client()
    await hub.peers.worker(services=("early",))
    await asyncio.sleep(1.1)  # the hub's view of every hub's workers now holds the early one
    # a worker that just registered (busy or not subscribed: not notified) still counts
    await hub.peers.worker(services=("capable",), hardware={"gpu_memory_gb": 16})
    runnable = await submit(
        client, requirements={"service_type": "capable", "hardware": {"gpu_memory_gb": 8}}
    )
    assert runnable["notified_workers"] == 0
    await monitor.expect_none("system_alert", category="no_capable_worker", within=0.3)
    for requirements in (
        {"service_type": "nobody-runs-this"},
        {"service_type": "capable", "hardware": {"gpu_memory_gb": 48}},
    ):
        orphan = await submit(client, requirements=requirements)
        assert orphan["notified_workers"] == 0 and orphan["status"] == "queued"
        alert = await monitor.expect("system_alert", category="no_capable_worker")
        assert alert["details"]["job_id"] == orphan["job_id"]
        assert alert["details"]["requirements"] == requirements
        assert alert["severity"] == "warning" and alert["actions_recommended"]
    assert runnable["status"] == "queued"


async def test_alert_when_the_queue_outgrows_the_workers(start_hub):
    hub = await start_hub(status_interval_ms=100, queue_alert_per_worker=2)
    monitor = await hub.peers.monitor()
    client = await hub.peers.client()
    await hub.peers.worker(services=("deep",))
    for _ in range(2):
        await submit(client, requirements={"service_type": "deep"})
    await monitor.expect_none("system_alert", category="resource_constraint", within=0.4)  # 2 <= 2 x 1
    await submit(client, requirements={"service_type": "deep"})
    alert = await monitor.expect("system_alert", category="resource_constraint", timeout=1)
    assert alert["details"] == {"current_queue_depth": 3, "normal_threshold": 2, "available_workers": 1}
    status = await monitor.expect("system_status", pending_jobs=3, timeout=1)
    assert status["system_health"] == "degraded"
    assert any(a["category"] == "resource_constraint" for a in status["alerts"])
    # raised once when crossing, not on every round
    await monitor.expect_none("system_alert", category="resource_constraint", within=0.4)


# --- 5. frame size limit (D1) -----------------------------------------------------------------


async def test_frame_over_the_size_limit_closes_only_that_connection(start_hub):
    hub = await start_hub(max_message_size=64 * 1024)
    big = await hub.peers.client("big")
    other = await hub.peers.client("other")
    near = await submit(other, payload={"blob": "x" * 60_000})  # under the limit: fine
    assert near["status"] == "queued"
    await big.send("submit_job", job_type="t", payload={"blob": "x" * 70_000})
    assert await big.closed(timeout=3) == 1009
    await still_works(other)
    assert (await submit(other))["status"] == "queued"
    fresh = await hub.peers.raw()
    assert fresh.wire[-1].frame["max_message_size"] == 64 * 1024


# --- 6. chunking (D15) ------------------------------------------------------------------------


def big_submit(rid: str, service: str) -> dict[str, Any]:
    return {
        "type": "submit_job",
        "timestamp": now_ms(),
        "id": rid,
        "job_type": "text_to_image",
        "payload": {"prompt": "é" * 1500 + "mountains"},  # multi-byte UTF-8 cut across chunks
        "requirements": {"service_type": service},
    }


async def test_chunked_submit_is_processed_as_if_sent_whole(start_hub):
    hub = await start_hub()
    client = await hub.peers.client()
    worker = await hub.peers.worker(services=("chunked",), max_concurrent_jobs=2)
    for order in ([0, 1, 2], [2, 0, 1]):
        message = big_submit(client.next_id(), "chunked")
        frames = chunk_frames(message, 3)
        for i in order:
            await client.send("chunked_message", **frames[i])
        receipt = await client.expect("chunked_message_complete", chunk_id=frames[0]["chunk_id"])
        assert receipt["original_type"] == "submit_job"
        assert receipt["total_size"] == frames[0]["total_size"]
        accepted = await client.expect(("job_accepted", "error"), request_id=message["id"])
        assert accepted["type"] == "job_accepted", accepted
        (job,) = await claim(worker)
        assert job["job_id"] == accepted["job_id"] and job["payload"] == message["payload"]
    await client.expect_none("ack")  # chunks without an id are not acked


async def test_broken_chunk_streams_are_refused_and_the_connection_survives(start_hub):
    hub = await start_hub()
    client = await hub.peers.client()
    message = big_submit("broken-1", "chunk-err")

    frames = chunk_frames(message, 3, data_hash=hashlib.sha256(b"something else").hexdigest())
    for frame in frames:
        await client.send("chunked_message", **frame)
    err = await client.expect("error", timeout=2)
    assert err["error_code"] == "CHUNK_ERROR" and err["details"]["reason"] == "bad_hash"
    await client.expect_none(("job_accepted", "chunked_message_complete"))
    await still_works(client)

    frames = chunk_frames(message, 3)
    rid = client.next_id()
    await client.send("chunked_message", **frames[0])
    await client.send("chunked_message", id=rid, **frames[0])
    err = await client.expect("error", request_id=rid)
    assert err["error_code"] == "CHUNK_ERROR" and err["details"]["reason"] == "duplicate_chunk"
    await still_works(client)

    rid = client.next_id()
    await client.send("chunked_message", id=rid, **{**frames[1], "chunk_index": 3})
    err = await client.expect("error", request_id=rid)
    assert err["error_code"] == "CHUNK_ERROR" and err["details"]["reason"] == "index_out_of_range"
    await still_works(client)

    frames = chunk_frames(message, 3)
    await client.send("chunked_message", **frames[0])
    await client.send("chunked_message", **frames[2])
    await client.expect_none(("job_accepted", "chunked_message_complete", "error"), within=0.4)
    await still_works(client)
    await client.send("chunked_message", **frames[1])  # the missing piece completes it
    await client.expect("chunked_message_complete", chunk_id=frames[0]["chunk_id"])
    accepted = await client.expect(("job_accepted", "error"), request_id="broken-1")
    assert accepted["type"] == "job_accepted", accepted


def reassemble(frames: list[dict[str, Any]]) -> dict[str, Any]:
    first = frames[0]
    assert sorted(f["chunk_index"] for f in frames) == list(range(first["total_chunks"]))
    assert {f["chunk_id"] for f in frames} == {first["chunk_id"]}
    whole = b"".join(base64.b64decode(f["data"]) for f in sorted(frames, key=lambda f: f["chunk_index"]))
    assert hashlib.sha256(whole).hexdigest() == first["data_hash"]
    assert len(whole) == first["total_size"]
    message = orjson.loads(whole)
    assert message["type"] == first["original_type"]
    return message


async def test_large_messages_reach_chunk_capable_peers_as_chunks(start_hub):
    hub = await start_hub(chunk_threshold=2048)
    capable = await hub.peers.client("capable", customer_id="cz", capabilities={"chunked_messages": True})
    plain = await hub.peers.client("plain", customer_id="cz")
    job = await submit(capable, requirements={"service_type": "bigres"})
    await plain.request("subscribe_job", "subscription_confirmed", job_id=job["job_id"])
    worker = await hub.peers.worker(services=("bigres",))
    await claim(worker)
    await accept(worker, job["job_id"])
    result = {"success": True, "output_files": [f"https://cdn.example.com/{i:04}.png" for i in range(200)]}
    await complete(worker, job["job_id"], result)

    whole = await plain.expect("job_completed", job_id=job["job_id"])
    assert whole["result"] == result
    await plain.expect_none("chunked_message")
    first = await capable.expect("chunked_message", original_type="job_completed")
    assert first["total_chunks"] > 1
    frames = [first]
    for _ in range(first["total_chunks"] - 1):
        frames.append(await capable.expect("chunked_message", chunk_id=first["chunk_id"]))
    message = reassemble(frames)
    assert message["job_id"] == job["job_id"] and message["result"] == result
    assert message == {**whole, "timestamp": message["timestamp"]}
    await capable.expect_none("job_completed")
    # replies too: the status carries the big result, so it comes chunked
    rid = capable.next_id()
    await capable.send("request_job_status", id=rid, job_id=job["job_id"])
    first = await capable.expect("chunked_message", original_type="response_job_status")
    frames = [first]
    for _ in range(first["total_chunks"] - 1):
        frames.append(await capable.expect("chunked_message", chunk_id=first["chunk_id"]))
    status = reassemble(frames)
    assert status["request_id"] == rid and status["result"] == result
    # small messages still arrive whole
    assert (await capable.request("ping", "pong"))["type"] == "pong"
    assert (await status_of(plain, job["job_id"]))["result"] == result


# --- 7. auth (D4) -----------------------------------------------------------------------------

ROLE = {
    "job_client": ("register_client", "client_registered"),
    "monitor": ("register_client", "client_registered"),
    "worker": ("register_worker", "worker_registered"),
}

# (role, how the token is presented, token, registers?)
AUTH_TABLE = [
    ("job_client", None, None, False),
    ("job_client", "field", "nope", False),
    ("job_client", "field", "wt", False),  # a worker token for a job client
    ("worker", "field", "ct", False),  # a client token for a worker
    ("worker", "header", "nope", False),
    ("monitor", "query", "ct", False),
    ("monitor", None, None, False),
    ("job_client", "header", "ct", True),
    ("job_client", "query", "ct", True),
    ("job_client", "field", "ct", True),
    ("worker", "header", "wt", True),
    ("worker", "query", "wt", True),
    ("worker", "field", "wt", True),
    ("monitor", "field", "mt", True),
    ("monitor", "header", "mt", True),
]


async def register_with(hub: HubServer, role: str, how: str | None, token: str | None) -> tuple[Peer, dict]:
    path, headers, fields = "", None, {}
    if how == "header":
        headers = {"Authorization": f"Bearer {token}"}
    elif how == "query":
        path = f"/?token={token}"
    elif how == "field":
        fields["auth_token"] = token
    peer = await hub.peers.raw(role, path=path, headers=headers)
    kind, reply = ROLE[role]
    if role == "worker":
        fields.update(worker_id=f"w-{uuid.uuid4().hex[:6]}", capabilities={"services": ["comfyui"]})
    else:
        fields.update(client_type=role, client_id=f"c-{uuid.uuid4().hex[:6]}")
    return peer, await peer.request(kind, reply, **fields)


@pytest.fixture
def auth_file(tmp_path):
    path = tmp_path / "tokens.json"
    tokens = [
        {"token": "acme-token", "role": "job_client", "customer_id": "acme"},
        {"token": "viewer", "role": "monitor", "permissions": ["view_all_jobs"]},
        {"token": "manager", "role": "monitor", "permissions": ["view_all_jobs", "manage_jobs"]},
    ]
    path.write_text(json.dumps({"tokens": tokens}), encoding="utf-8")
    return str(path)


async def test_tokens_per_role(start_hub):
    hub = await start_hub(client_tokens="ct", worker_tokens="wt", monitor_tokens="mt")
    for role, how, token, ok in AUTH_TABLE:
        case = (role, how, token)
        peer, reply = await register_with(hub, role, how, token)
        if ok:
            assert reply["type"] == ROLE[role][1], (case, reply)
            await still_works(peer)
        else:
            assert reply["type"] == "error" and reply["error_code"] == "AUTH_FAILED", (case, reply)
            assert await peer.closed(timeout=2) == 1008, case


async def test_auth_file_binds_customers_and_permissions(start_hub, auth_file):
    hub = await start_hub(client_tokens="ct", monitor_tokens="mt", auth_file=auth_file)
    acme, registered = await register_with(hub, "job_client", "header", "acme-token")
    assert registered["customer_id"] == "acme"
    job = await submit(acme)
    status = await status_of(acme, job["job_id"])
    assert status["customer_id"] == "acme"
    denied = await acme.request("submit_job", "job_accepted", job_type="t", payload={}, customer_id="globex")
    assert denied["error_code"] == "PERMISSION_DENIED"
    # the token fixes the customer: registering as another one is refused
    _, other = await register_with(hub, "job_client", "field", "acme-token")
    assert other["type"] == "client_registered"
    peer = await hub.peers.raw()
    refused = await peer.request(
        "register_client",
        "client_registered",
        client_type="job_client",
        client_id="x",
        customer_id="globex",
        auth_token="acme-token",
    )
    assert refused["error_code"] == "PERMISSION_DENIED"
    # monitors: seeing needs view_all_jobs, cancelling needs manage_jobs
    for token in ("viewer", "mt"):
        monitor, reply = await register_with(hub, "monitor", "field", token)
        assert "manage_jobs" not in reply["permissions"], reply
        assert (await status_of(monitor, job["job_id"]))["status"] == "queued"
        no = await monitor.request("cancel_job", "job_cancelled", job_id=job["job_id"])
        assert no["error_code"] == "PERMISSION_DENIED", (token, no)
    assert (await status_of(acme, job["job_id"]))["status"] == "queued"
    manager, reply = await register_with(hub, "monitor", "query", "manager")
    assert reply["permissions"] == ["manage_jobs", "view_all_jobs"]
    yes = await manager.request("cancel_job", "job_cancelled", job_id=job["job_id"])
    assert yes["type"] == "job_cancelled"
    await acme.expect("job_cancelled", job_id=job["job_id"])


# --- 8. isolation (D13) -----------------------------------------------------------------------


async def test_clients_see_only_their_customers_jobs(start_hub):
    hub = await start_hub()
    peers = hub.peers
    a, a2, b = (
        await peers.client("a", customer_id="cust-a"),
        await peers.client("a2", customer_id="cust-a"),
        await peers.client("b", customer_id="cust-b"),
    )
    job_b = (await submit(b))["job_id"]
    job_a = (await submit(a))["job_id"]
    refused = [
        ("request_job_status", "response_job_status", {"job_id": job_b}, "JOB_NOT_FOUND"),
        ("subscribe_job", "subscription_confirmed", {"job_id": job_b}, "JOB_NOT_FOUND"),
        ("cancel_job", "job_cancelled", {"job_id": job_b}, "JOB_NOT_FOUND"),
        (
            "subscribe_job_notifications",
            "job_notifications_subscribed",
            {"filters": {"customer_id": "cust-b"}},
            "PERMISSION_DENIED",
        ),
        (
            "submit_job",
            "job_accepted",
            {"job_type": "t", "payload": {}, "customer_id": "cust-b"},
            "PERMISSION_DENIED",
        ),
    ]
    for kind, reply, fields, code in refused:
        answer = await a.request(kind, reply, **fields)
        assert answer["type"] == "error" and answer["error_code"] == code, (kind, answer)
    assert (await status_of(b, job_b))["status"] == "queued"  # the refused cancel changed nothing
    await a.expect_none("job_update", job_id=job_b)
    # the same requests for its own customer's job (submitted by another connection) work
    allowed = [
        ("request_job_status", "response_job_status", {"job_id": job_a}),
        ("subscribe_job", "subscription_confirmed", {"job_id": job_a}),
        (
            "subscribe_job_notifications",
            "job_notifications_subscribed",
            {"filters": {"customer_id": "cust-a"}},
        ),
        ("submit_job", "job_accepted", {"job_type": "t", "payload": {}, "customer_id": "cust-a"}),
        ("cancel_job", "job_cancelled", {"job_id": job_a}),
    ]
    for kind, reply, fields in allowed:
        answer = await a2.request(kind, reply, **fields)
        assert answer["type"] == reply, (kind, answer)


async def test_monitors_need_view_all_jobs_and_clients_without_customer_see_their_own(start_hub):
    hub = await start_hub()
    peers = hub.peers
    x, y = await peers.client("x"), await peers.client("y")
    job_x = (await submit(x))["job_id"]
    assert (await status_of(x, job_x))["status"] == "queued"
    for kind, reply in (
        ("request_job_status", "response_job_status"),
        ("subscribe_job", "subscription_confirmed"),
        ("cancel_job", "job_cancelled"),
    ):
        answer = await y.request(kind, reply, job_id=job_x)
        assert answer["error_code"] == "JOB_NOT_FOUND", (kind, answer)
    sub = await y.request("subscribe_job_notifications", "job_notifications_subscribed", filters={})
    assert sub["type"] == "job_notifications_subscribed"
    job_x2 = (await submit(x))["job_id"]
    await y.expect_none("job_update", job_id=job_x2)
    job_y = (await submit(y))["job_id"]
    assert (await status_of(y, job_y))["status"] == "queued"

    blind = await peers.monitor("blind", permissions=("view_system_stats",))
    denied = await blind.request("subscribe_job_notifications", "job_notifications_subscribed", filters={})
    assert denied["error_code"] == "PERMISSION_DENIED"
    assert (await status_of(blind, job_x))["error_code"] == "JOB_NOT_FOUND"
    seer = await peers.monitor("seer", permissions=("view_all_jobs",))
    sub = await seer.request("subscribe_job_notifications", "job_notifications_subscribed", filters={})
    assert sub["type"] == "job_notifications_subscribed"
    assert (await status_of(seer, job_x))["status"] == "queued"
    job_x3 = (await submit(x))["job_id"]
    await seer.expect("job_update", job_id=job_x3, status="queued")


async def test_finished_jobs_are_forgotten_after_the_retention(start_hub):
    """D9 retention: completed, failed and cancelled jobs go (hash and listing entry) once final for
    longer than job_retention_s; queued and running jobs stay; totals by status stay."""
    hub = await start_hub(job_retention_s=0.6)
    client = await hub.peers.client("keeper-retention", customer_id="retention")
    worker = await hub.peers.worker()
    done, failed, cancelled, running, queued = [(await submit(client))["job_id"] for _ in range(5)]
    await claim_eventually(worker, done)
    await accept(worker, done)
    await complete(worker, done)
    await claim_eventually(worker, failed)
    ack = await worker.request(
        "fail_job", "job_failed_ack", job_id=failed, worker_id=worker.worker_id, error="boom", retry=False
    )
    assert ack["retry_scheduled"] is False
    await client.request("cancel_job", "job_cancelled", job_id=cancelled)
    await claim_eventually(worker, running)
    await accept(worker, running)

    store = hub.core.store
    for job in (done, failed, cancelled):  # within the retention: still there
        assert (await status_of(client, job))["status"] in ("completed", "failed", "cancelled")
    deadline = time.monotonic() + 4
    while time.monotonic() < deadline and await hub.redis.execute("EXISTS", store.job_key(done)):
        await asyncio.sleep(0.1)
    for job in (done, failed, cancelled):
        reply = await client.request("request_job_status", "error", job_id=job)
        assert (reply["type"], reply["error_code"]) == ("error", "JOB_NOT_FOUND"), reply
        assert await hub.redis.execute("ZSCORE", store.key("jobs"), job) is None
    assert (await status_of(client, running))["status"] == "accepted"
    assert (await status_of(client, queued))["status"] == "queued"
    assert await hub.redis.execute("ZCARD", store.key("finished")) == 0
    counts = dict(zip(*[iter(await hub.redis.execute("HGETALL", store.key("counts")))] * 2, strict=True))
    assert (counts["completed"], counts["failed"], counts["cancelled"]) == ("1", "1", "1")
    await complete(worker, running)  # a job that ends later is kept for its own retention
    assert (await status_of(client, running))["status"] == "completed"


async def test_retention_zero_keeps_finished_jobs(start_hub):
    hub = await start_hub(job_retention_s=0)
    client = await hub.peers.client("keeper-forever", customer_id="forever")
    worker = await hub.peers.worker()
    job = (await submit(client))["job_id"]
    await claim_eventually(worker, job)
    await complete(worker, job)
    await hub.redis.execute("ZADD", hub.core.store.key("finished"), 0, job)  # as if final long ago
    await asyncio.sleep(1.3)  # a registry round (where retention runs) has passed
    assert (await status_of(client, job))["status"] == "completed"


async def test_idempotency_key_applies_a_submission_once_per_client(start_hub):
    """D18: a repeated submit_job with the same idempotency_key (same client, also after a
    reconnect) gets the first job_accepted again and queues nothing; another key or another
    client is another job; after idempotency_ttl_s the key is free again."""
    hub = await start_hub(idempotency_ttl_s=1.0)
    client = await hub.peers.client("idem-a", customer_id="idem", client_id="idem-a")
    first = await submit(client, idempotency_key="order-1")
    again = await submit(client, idempotency_key="order-1")
    assert (again["job_id"], again["position"], again["notified_workers"]) == (
        first["job_id"],
        first["position"],
        0,
    )
    other_key = await submit(client, idempotency_key="order-2")
    other_client = await hub.peers.client("idem-b", customer_id="idem")
    same_key_elsewhere = await submit(other_client, idempotency_key="order-1")
    assert len({first["job_id"], other_key["job_id"], same_key_elsewhere["job_id"]}) == 3
    reconnected = await hub.peers.client("idem-a2", customer_id="idem", client_id="idem-a")  # reconnect
    assert (await submit(reconnected, idempotency_key="order-1"))["job_id"] == first["job_id"]
    store = hub.core.store
    assert await hub.redis.execute("ZCARD", store.key("jobs")) == 3
    await asyncio.sleep(1.1)
    later = await submit(client, idempotency_key="order-1")
    assert later["job_id"] != first["job_id"]
    await client.send_raw(
        {"type": "submit_job", "id": "long", "timestamp": now_ms(), "job_type": "t", "payload": {},
         "idempotency_key": "x" * 129}
    )  # fmt: skip
    refused = await client.expect("error", request_id="long")
    assert (refused["error_code"], refused["details"]["field"]) == ("INVALID_PARAMETERS", "idempotency_key")


# --- 9. two hubs on one Redis -----------------------------------------------------------------


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


# --- 10. graceful shutdown (D17) --------------------------------------------------------------


async def test_shutdown_tells_every_peer_and_keeps_jobs(start_hub):
    hub = await start_hub()
    client = await hub.peers.client("keeper", customer_id="shut")
    job = (await submit(client))["job_id"]
    everyone = [client, await hub.peers.worker(), await hub.peers.monitor(), await hub.peers.raw()]
    before = now_ms()
    await hub.stop(reason="Server maintenance", downtime=30)
    hub.stopped = True
    for peer in everyone:
        notice = await peer.expect("server_disconnect", timeout=2)
        assert notice["reason"] == "Server maintenance" and notice["estimated_downtime"] == 30
        assert before + 30_000 <= notice["reconnect_after"] <= now_ms() + 30_000
        assert await peer.closed(timeout=2) == 1001
    # the job outlives the hub
    again = await start_hub(key_prefix=hub.config.key_prefix)
    other = await again.peers.client("keeper-2", customer_id="shut")
    assert (await status_of(other, job))["status"] == "queued"


async def test_job_available_reaches_a_worker_again_once_it_has_a_free_slot(start_hub):
    """job_available goes through the workers that may be idle (not every worker): a busy or
    draining worker is skipped, and told again once it completes its job or reports itself idle."""
    hub = await start_hub()
    client = await hub.peers.client("idle-again", customer_id="idle")
    worker = await hub.peers.worker(subscribe=True)
    first = (await submit(client))["job_id"]
    await worker.expect("job_available", job_id=first)
    await claim_eventually(worker, first)
    await accept(worker, first)
    busy_job = (await submit(client))["job_id"]  # one slot, held: not told
    await worker.expect_none("job_available", job_id=busy_job, within=0.3)
    await complete(worker, first)  # a free slot again; still waiting for its claim: tell it
    later = (await submit(client))["job_id"]
    await worker.expect("job_available", job_id=later)
    await claim_eventually(worker, busy_job)  # FIFO: the job it was not told about comes first
    await accept(worker, busy_job)
    await worker.request(
        "worker_heartbeat", "worker_heartbeat_ack", worker_id=worker.worker_id, status="draining"
    )
    await complete(worker, busy_job)
    drained = (await submit(client))["job_id"]  # draining: no free slot
    await worker.expect_none("job_available", job_id=drained, within=0.3)
    await worker.request(
        "worker_heartbeat", "worker_heartbeat_ack", worker_id=worker.worker_id, status="idle"
    )
    another = (await submit(client))["job_id"]  # idle again, not told since its last claim: told
    await worker.expect("job_available", job_id=another, timeout=2)
    assert worker.worker_id not in hub.core.workers.maybe_idle  # told: out until it claims again


async def test_a_workers_frames_sent_back_to_back_keep_their_order(start_hub):
    """PIPELINABLE frames (accept, progress, complete) are dispatched without waiting for each
    other's Redis reply; their effects and replies keep the frames' order, and the next other
    frame (here claim_job) sees all of them (the freed slot)."""
    hub = await start_hub()
    client = await hub.peers.client("pipelined", customer_id="pipe")
    worker = await hub.peers.worker()
    first, second = [(await submit(client))["job_id"] for _ in range(2)]
    await claim_eventually(worker, first)
    wid = worker.worker_id
    await worker.send("job_accepted_by_worker", id="a", job_id=first, worker_id=wid)
    for pct in range(10, 100, 10):
        await worker.send("update_job_progress", id=f"p{pct}", job_id=first, worker_id=wid, progress=pct)
    await worker.send("complete_job", id="c", job_id=first, worker_id=wid, result={"success": True})
    await worker.send("claim_job", id="next", worker_id=wid, max_jobs=1)
    order = []
    for _ in range(11):
        frame = await worker.expect(("ack", "job_completed_ack"))
        order.append(frame["request_id"])
    assert order == ["a", *(f"p{p}" for p in range(10, 100, 10)), "c"]
    assigned = await worker.expect(("job_assigned", "ack", "error"), request_id="next")
    assert (assigned["type"], assigned["job_id"]) == ("job_assigned", second)  # the slot was free
    seen = []
    while True:
        frame = await client.expect(("job_update", "job_completed"), job_id=first)
        seen.append(frame["status"] if frame["type"] == "job_update" else "completed")
        if frame["type"] == "job_completed":
            break
        if frame["status"] == "in_progress":
            seen[-1] = f"in_progress:{frame['progress']:g}"
    assert seen == ["assigned", "accepted", *(f"in_progress:{p}" for p in range(10, 100, 10)), "completed"]
