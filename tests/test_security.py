"""Tenant isolation and hardening (spec D19), tried as an attacker would: a real hub over real
sockets on a real redis-server, with an auth file binding tokens to two customers, A and B.

Each test names what it refuses or bounds; each failed on the hub before D19: a worker id taken
over across customers, job ids leaking through alerts and stats, worker tokens not bound to their
customer, client ids shared across tokens, unbounded idle connections, outbound buffers, worker
telemetry and subscriptions, no submission rate limit or queue bound, /metrics open to anyone.
(The dashboard's script injection is tested in test_dashboard.py; an embedded redis-server left
dead, in hub/test_embedded_redis.py.)
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
import uuid
from typing import Any

import httpx
import orjson
import pytest
from conftest import REPO, TRANSPORTS, Peers
from empq.conformance.peer import Peer, PeerError
from empq.hub.server import HubServer
from websockets.client import ClientProtocol
from websockets.uri import parse_uri

# every test here runs on both WebSocket I/O layers (--transport websockets | picows)
pytestmark = [pytest.mark.asyncio, pytest.mark.parametrize("transport", TRANSPORTS)]

TOKENS = [
    {"token": "client-a", "role": "job_client", "customer_id": "A"},
    {"token": "client-b", "role": "job_client", "customer_id": "B"},
    {"token": "client-free-1", "role": "job_client"},
    {"token": "client-free-2", "role": "job_client"},
    {"token": "worker-a", "role": "worker", "customer_id": "A"},
    {"token": "worker-b", "role": "worker", "customer_id": "B"},
    {"token": "worker-fleet", "role": "worker"},
    {
        "token": "ops",
        "role": "monitor",
        "permissions": ["view_all_jobs", "view_system_stats", "view_workers"],
    },
    {"token": "blind", "role": "monitor", "permissions": []},
    {
        "token": "mon-a",
        "role": "monitor",
        "customer_id": "A",
        "permissions": ["view_all_jobs", "view_system_stats", "view_workers", "manage_jobs"],
    },
    {
        "token": "mon-b",
        "role": "monitor",
        "customer_id": "B",
        "permissions": ["view_all_jobs", "view_system_stats", "view_workers"],
    },
]


@pytest.fixture
def auth_file(tmp_path):
    path = tmp_path / "tokens.json"
    path.write_text(json.dumps({"tokens": TOKENS}), encoding="utf-8")
    return str(path)


@pytest.fixture
def tenant_hub(start_hub, auth_file):
    async def start(**overrides: Any) -> HubServer:
        return await start_hub(auth_file=auth_file, **overrides)

    return start


async def client(hub: HubServer, token: str, client_id: str | None = None) -> Peer:
    peer = await hub.peers.raw(token)
    reply = await peer.request(
        "register_client",
        "client_registered",
        client_type="job_client",
        client_id=client_id or f"{token}-{uuid.uuid4().hex[:6]}",
        auth_token=token,
    )
    assert reply["type"] == "client_registered", reply
    return peer


async def monitor(hub: HubServer, token: str) -> tuple[Peer, dict[str, Any]]:
    peer = await hub.peers.raw(token)
    reply = await peer.request(
        "register_client",
        "client_registered",
        client_type="monitor",
        client_id=f"{token}-{uuid.uuid4().hex[:6]}",
        permissions=["view_all_jobs", "view_system_stats", "view_workers", "manage_jobs"],
        auth_token=token,
    )
    assert reply["type"] == "client_registered", reply
    status = await peer.expect("system_status")
    return peer, status


async def register_worker(
    hub: HubServer | Peers, token: str, worker_id: str, **caps: Any
) -> tuple[Peer, dict[str, Any]]:
    peers = hub.peers if isinstance(hub, HubServer) else hub
    peer = await peers.raw(worker_id)
    peer.worker_id = worker_id
    reply = await peer.request(
        "register_worker",
        "worker_registered",
        worker_id=worker_id,
        capabilities={"services": ["comfyui"], **caps},
        auth_token=token,
    )
    return peer, reply


async def submit(peer: Peer, **fields: Any) -> dict[str, Any]:
    fields.setdefault("job_type", "text_to_image")
    fields.setdefault("payload", {"prompt": "a lighthouse"})
    return await peer.request("submit_job", "job_accepted", **fields)


async def claim(worker: Peer) -> dict[str, Any]:
    return await worker.request("claim_job", ("job_assigned", "ack"), worker_id=worker.worker_id)


async def drop(peer: Peer) -> None:
    """The connection goes away without ``disconnect`` (a crash, a network cut)."""
    peer.ws.transport.abort()
    await asyncio.sleep(0.1)


# --- 1. a worker id cannot be taken over by another token -------------------------------------


async def test_a_worker_id_is_bound_to_the_token_that_registered_it(tenant_hub):
    hub = await tenant_hub(reconnect_grace_ms=5_000)
    a = await client(hub, "client-a")
    job = await submit(a)
    worker, reply = await register_worker(hub, "worker-a", "gpu-a")
    assert reply["type"] == "worker_registered", reply
    assigned = await claim(worker)
    assert assigned["type"] == "job_assigned" and assigned["job_id"] == job["job_id"]
    await worker.request("job_accepted_by_worker", "ack", job_id=job["job_id"], worker_id="gpu-a")
    await drop(worker)  # within the reconnect grace, A's worker keeps its job

    # B's worker token, then an uncustomered fleet token, claim A's worker id: refused, nothing resumed
    for token in ("worker-b", "worker-fleet"):
        thief, refused = await register_worker(hub, token, "gpu-a")
        assert refused["type"] == "error" and refused["error_code"] == "PERMISSION_DENIED", refused
        assert refused["details"]["field"] == "worker_id"
        assert job["job_id"] not in orjson.dumps(refused).decode()
        forged = await thief.request(
            "complete_job",
            "job_completed_ack",
            job_id=job["job_id"],
            worker_id="gpu-a",
            result={"success": True, "forged": 1},
        )
        assert forged["error_code"] == "NOT_REGISTERED", forged
    status = await a.request("request_job_status", "response_job_status", job_id=job["job_id"])
    assert status["status"] == "accepted" and "result" not in status

    # A's own worker comes back with its token: it gets its job back and completes it
    back, resumed = await register_worker(hub, "worker-a", "gpu-a")
    assert resumed["type"] == "worker_registered" and resumed["resumed_jobs"] == [job["job_id"]], resumed
    done = await back.request(
        "complete_job",
        "job_completed_ack",
        job_id=job["job_id"],
        worker_id="gpu-a",
        result={"success": True, "ok": True},
    )
    assert done["type"] == "job_completed_ack", done
    completed = await a.expect("job_completed", job_id=job["job_id"])
    assert completed["result"] == {"success": True, "ok": True}


async def test_a_worker_id_connected_to_one_hub_cannot_be_registered_on_another(tenant_hub):
    one = await tenant_hub()
    two = await tenant_hub(key_prefix=one.config.key_prefix)  # same Redis keys: one system
    worker, reply = await register_worker(one, "worker-a", "gpu-shared")
    assert reply["type"] == "worker_registered"
    _, refused = await register_worker(two, "worker-b", "gpu-shared")
    assert refused["error_code"] == "PERMISSION_DENIED", refused
    # after a graceful disconnect the id is free again
    await worker.send("disconnect", reason="shutdown")
    await asyncio.sleep(0.2)
    _, reply = await register_worker(two, "worker-b", "gpu-shared")
    assert reply["type"] == "worker_registered", reply


# --- 4. a worker token's customer bounds what it may claim ------------------------------------


async def test_a_customer_bound_worker_token_runs_only_that_customers_jobs(tenant_hub):
    hub = await tenant_hub()
    a, b = await client(hub, "client-a"), await client(hub, "client-b")
    b_job = await submit(b, priority=90)
    # allowed_customers omitted: the token's customer applies
    worker, reply = await register_worker(hub, "worker-a", f"wa-{uuid.uuid4().hex[:6]}")
    assert reply["type"] == "worker_registered", reply
    nothing = await claim(worker)
    assert nothing["type"] == "ack" and nothing["status"] == "no_job_available", nothing
    a_job = await submit(a, priority=10)
    got = await claim(worker)
    assert got["type"] == "job_assigned" and got["job_id"] == a_job["job_id"], got
    assert got["customer_id"] == "A"
    # declaring other customers is refused, at registration and in worker_status
    for declared in (["B"], ["A", "B"], []):
        _, refused = await register_worker(
            hub, "worker-a", f"wa-{uuid.uuid4().hex[:6]}", allowed_customers=declared
        )
        assert refused["error_code"] == "PERMISSION_DENIED", (declared, refused)
        assert refused["details"]["field"] == "capabilities.allowed_customers"
    changed = await worker.request(
        "worker_status",
        "ack",
        worker_id=worker.worker_id,
        status="idle",
        capabilities={"services": ["comfyui"], "allowed_customers": ["B"]},
    )
    assert changed["error_code"] == "PERMISSION_DENIED", changed
    status = await b.request("request_job_status", "response_job_status", job_id=b_job["job_id"])
    assert status["status"] == "queued"
    # declaring its own customer is fine
    _, ok = await register_worker(hub, "worker-a", f"wa-{uuid.uuid4().hex[:6]}", allowed_customers=["A"])
    assert ok["type"] == "worker_registered", ok


# --- 2. job ids do not leak through alerts, stats, monitors or HTTP ----------------------------


async def test_alerts_and_stats_show_each_viewer_only_what_it_may_see(tenant_hub):
    hub = await tenant_hub()
    base = f"http://127.0.0.1:{hub.http.port}"
    ops, _ = await monitor(hub, "ops")
    mon_a, _ = await monitor(hub, "mon-a")
    mon_b, _ = await monitor(hub, "mon-b")
    blind, _ = await monitor(hub, "blind")
    a, b = await client(hub, "client-a"), await client(hub, "client-b")
    # no worker can run it: an alert naming the job
    job = await submit(a, requirements={"service_type": "nobody-runs-this"})
    job_id = job["job_id"]
    alert = await ops.expect("system_alert", category="no_capable_worker")
    assert job_id in alert["message"]
    assert (await mon_a.expect("system_alert", category="no_capable_worker"))["details"]["job_id"] == job_id
    await mon_b.expect_none("system_alert", within=0.5)
    await blind.expect_none("system_alert", within=0.1)

    def leaks(frame: Any) -> bool:
        return job_id in orjson.dumps(frame).decode()

    # stats, by request and by subscription, for B's client and B's monitor: no trace of it
    for peer in (b, mon_b):
        stats = await peer.request("request_stats", "stats_response")
        assert stats["type"] == "stats_response" and not leaks(stats), stats
        await peer.request("subscribe_stats", "subscription_confirmed", interval_seconds=1)
        update = await peer.expect("stats_update")
        assert not leaks(update), update
    # A's own client sees counts, not alerts; A's monitor and the operator see the alert
    own = await a.request("request_stats", "stats_response")
    assert own["stats"]["system"]["alerts"] == []
    for peer in (mon_a, ops):
        stats = await peer.request("request_stats", "stats_response")
        assert leaks(stats["stats"]["system"]["alerts"]), stats
    # a monitor with no permissions: system_status on registration carries no alerts
    _, status = await monitor(hub, "blind")
    assert status["alerts"] == [] and not leaks(status)
    refused = await blind.request("request_stats", "stats_response")
    assert refused["error_code"] == "PERMISSION_DENIED"
    # the same over HTTP
    async with httpx.AsyncClient(base_url=base, timeout=10) as api:
        for token in ("client-b", "mon-b", "blind", "client-a"):
            r = await api.get("/api/stats", headers={"Authorization": f"Bearer {token}"})
            assert not leaks(r.text), (token, r.text)
        r = await api.get("/api/stats", headers={"Authorization": "Bearer ops"})
        assert r.status_code == 200 and leaks(r.text)
    # a monitor bound to B with view_all_jobs still cannot read or cancel A's job
    for kind, reply in (("request_job_status", "response_job_status"), ("cancel_job", "job_cancelled")):
        denied = await mon_b.request(kind, reply, job_id=job_id)
        assert denied["error_code"] == "JOB_NOT_FOUND", denied
    assert (await mon_a.request("request_job_status", "response_job_status", job_id=job_id))["status"]


async def test_worker_lists_and_relays_follow_the_viewers_binding(tenant_hub):
    hub = await tenant_hub()
    ops, _ = await monitor(hub, "ops")
    mon_b, _ = await monitor(hub, "mon-b")
    blind, _ = await monitor(hub, "blind")
    a = await client(hub, "client-a")
    job = await submit(a)
    worker, _ = await register_worker(hub, "worker-a", "gpu-list")
    assert (await claim(worker))["job_id"] == job["job_id"]
    # the operator sees the job each worker holds; B's monitor does not see A's worker at all
    listed = await ops.request("request_stats", "stats_response", include_sections=["workers"])
    (row,) = [w for w in listed["stats"]["workers"]["workers"] if w["worker_id"] == "gpu-list"]
    assert row["current_jobs"] == [job["job_id"]]
    seen_by_b = await mon_b.request("request_stats", "stats_response", include_sections=["workers"])
    assert not [w for w in seen_by_b["stats"]["workers"]["workers"] if w["worker_id"] == "gpu-list"]
    assert job["job_id"] not in orjson.dumps(seen_by_b).decode()
    # a worker's service_request reaches the operator, not B's monitor (the worker is A's), not a
    # monitor without view_workers / view_system_stats
    sent = await worker.request(
        "service_request",
        "ack",
        worker_id="gpu-list",
        job_id=job["job_id"],
        service_type="comfyui",
        endpoint="/prompt",
        method="POST",
        status="sent",
    )
    assert sent["type"] == "ack", sent
    await ops.expect("service_request", job_id=job["job_id"])
    await mon_b.expect_none("service_request", within=0.4)
    await blind.expect_none("service_request", within=0.1)


async def test_metrics_need_an_unbound_monitor_token(tenant_hub):
    hub = await tenant_hub()
    base = f"http://127.0.0.1:{hub.http.port}"
    async with httpx.AsyncClient(base_url=base, timeout=10) as api:
        assert (await api.get("/metrics")).status_code == 401
        for token, code in (("client-a", 403), ("mon-a", 403), ("blind", 403), ("nope", 401), ("ops", 200)):
            r = await api.get("/metrics", headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == code, (token, r.status_code, r.text)
        assert "empq_messages_in_total" in r.text
    public = await tenant_hub(metrics_public=True)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{public.http.port}", timeout=10) as api:
        assert (await api.get("/metrics")).status_code == 200


# --- client identities --------------------------------------------------------------------------


async def test_a_client_id_chosen_under_another_token_sees_nothing(tenant_hub):
    hub = await tenant_hub()
    first = await client(hub, "client-free-1", client_id="shop")
    job = await submit(first, idempotency_key="order-1")
    same_name = await client(hub, "client-free-2", client_id="shop")
    for kind, reply in (
        ("request_job_status", "response_job_status"),
        ("subscribe_job", "subscription_confirmed"),
        ("cancel_job", "job_cancelled"),
    ):
        denied = await same_name.request(kind, reply, job_id=job["job_id"])
        assert denied["error_code"] == "JOB_NOT_FOUND", (kind, denied)
    # the same idempotency key under another token is another submission, not the first job
    other = await submit(same_name, idempotency_key="order-1")
    assert other["type"] == "job_accepted" and other["job_id"] != job["job_id"]
    mine = await first.request("request_job_status", "response_job_status", job_id=job["job_id"])
    assert mine["status"] == "queued"


# --- bounded resources --------------------------------------------------------------------------


async def test_a_connection_that_never_registers_is_closed(start_hub):
    hub = await start_hub(registration_timeout_ms=300)
    idle = await hub.peers.raw("idle")
    registered = await hub.peers.client("busy")
    told = await idle.expect("error", timeout=3)
    assert told["error_code"] == "NOT_REGISTERED" and told["details"]["reason"] == "registration_timeout"
    assert await idle.closed(timeout=3) == 1008
    await asyncio.sleep(0.4)
    assert (await registered.request("ping", "pong"))["type"] == "pong"  # registered ones stay


async def test_a_monitor_that_does_not_read_is_dropped_and_the_others_are_served(start_hub):
    hub = await start_hub(max_outbound_buffer=256 * 1024)
    reader = await hub.peers.monitor("reader", permissions=("view_workers",))
    stalled = await StalledMonitor.open(hub.port)
    worker = await hub.peers.worker("chatty")
    detail = "x" * 60_000  # each relay ~60 kB, to every monitor that may see the worker
    sent = 0
    deadline = time.monotonic() + 20
    while hub.outbox.dropped == 0 and sent < 400 and time.monotonic() < deadline:
        reply = await worker.request(
            "service_request",
            "ack",
            worker_id="chatty",
            job_id=f"job-{sent}",
            service_type="comfyui",
            endpoint="/prompt",
            method="POST",
            status="sent",
            details=detail,
        )
        assert reply["type"] == "ack", reply
        sent += 1
    assert hub.outbox.dropped == 1, f"not dropped after {sent} relays of 60 kB"
    assert sent * 60_000 < 64 * 1024 * 1024  # well before what it used to take (64 MB)
    assert stalled.conn_id not in hub.outbox.conns
    for i in range(sent):
        await reader.expect("service_request", job_id=f"job-{i}")  # the reading monitor got them all
    stalled.close()


class StalledMonitor:
    """A monitor over a real socket that registers, then never reads again (a tiny receive
    buffer so the hub's writes back up quickly)."""

    def __init__(self, sock: socket.socket, conn_id: str) -> None:
        self.sock, self.conn_id = sock, conn_id

    @classmethod
    async def open(cls, port: int) -> StalledMonitor:
        def blocking() -> StalledMonitor:
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(("127.0.0.1", port))
            sock.settimeout(5)
            proto = ClientProtocol(parse_uri(f"ws://127.0.0.1:{port}/"), max_size=None)
            proto.send_request(proto.connect())
            sock.sendall(b"".join(proto.data_to_send()))
            greeting = None
            while greeting is None:
                proto.receive_data(sock.recv(65536))
                for event in proto.events_received():
                    if getattr(event, "opcode", None) is not None:
                        greeting = orjson.loads(event.data)
            register = {
                "type": "register_client",
                "timestamp": int(time.time() * 1000),
                "client_type": "monitor",
                "client_id": "stalled",
                "permissions": ["view_workers"],
            }
            proto.send_text(orjson.dumps(register))
            sock.sendall(b"".join(proto.data_to_send()))
            return cls(sock, greeting["connection_id"])

        return await asyncio.to_thread(blocking)

    def close(self) -> None:
        self.sock.close()


async def test_worker_telemetry_and_capabilities_are_bounded(start_hub):
    hub = await start_hub(max_worker_info_bytes=4096)
    peers = hub.peers
    big = {"gpu_model": "x" * 5000}
    peer = await peers.raw("huge-caps")
    refused = await peer.request(
        "register_worker",
        "worker_registered",
        worker_id="huge-caps",
        capabilities={"services": ["comfyui"], "components": ["c" * 100] * 50},
    )
    assert refused["error_code"] == "INVALID_PARAMETERS" and refused["details"]["field"] == "capabilities"
    worker = await peers.worker("bounded")
    ack = await worker.request(
        "worker_heartbeat", "worker_heartbeat_ack", worker_id="bounded", system_info=big
    )
    assert ack["error_code"] == "INVALID_PARAMETERS" and ack["details"]["field"] == "system_info", ack
    flood = 0
    for i in range(200):  # one connector type after another: the record stays bounded
        reply = await worker.request(
            "connector_ws_status",
            "ack",
            worker_id="bounded",
            connector_type=f"connector-{i:03d}-" + "y" * 40,
            status="connected",
        )
        if reply["type"] == "error":
            flood = i
            break
    assert 0 < flood < 200 and reply["error_code"] == "INVALID_PARAMETERS", reply
    ok = await worker.request("worker_heartbeat", "worker_heartbeat_ack", worker_id="bounded", load=0.5)
    assert ok["type"] == "worker_heartbeat_ack"


async def test_subscriptions_per_connection_are_bounded(start_hub, monkeypatch):
    import empq.hub.subscriptions as subscriptions

    monkeypatch.setattr(subscriptions, "MAX_JOB", 3)
    hub = await start_hub()
    c = await hub.peers.client("subscriber")
    jobs = [await submit(c) for _ in range(4)]
    for job in jobs[:3]:
        ok = await c.request("subscribe_job", "subscription_confirmed", job_id=job["job_id"])
        assert ok["type"] == "subscription_confirmed"
    full = await c.request("subscribe_job", "subscription_confirmed", job_id=jobs[3]["job_id"])
    assert full["error_code"] == "RATE_LIMITED" and full["details"]["limit"] == 3
    # a job that ends frees its subscription
    await c.request("cancel_job", "job_cancelled", job_id=jobs[0]["job_id"])
    ok = await c.request("subscribe_job", "subscription_confirmed", job_id=jobs[3]["job_id"])
    assert ok["type"] == "subscription_confirmed", ok
    for i in range(subscriptions.MAX_NOTIFICATION):
        ok = await c.request("subscribe_job_notifications", "job_notifications_subscribed")
        assert ok["type"] == "job_notifications_subscribed", (i, ok)
    full = await c.request("subscribe_job_notifications", "job_notifications_subscribed")
    assert full["error_code"] == "RATE_LIMITED"


async def test_submissions_are_rate_limited_per_client_when_asked(start_hub):
    hub = await start_hub(submit_rate=4, submit_burst=4)
    greedy, other = await hub.peers.client("greedy"), await hub.peers.client("other")
    replies = [await submit(greedy) for _ in range(8)]
    accepted = [r for r in replies if r["type"] == "job_accepted"]
    limited = [r for r in replies if r["type"] == "error"]
    assert 4 <= len(accepted) <= 5 and limited, replies  # the burst, plus what refilled meanwhile
    assert all(r["error_code"] == "RATE_LIMITED" and r["details"]["retry_after_ms"] > 0 for r in limited)
    assert (await submit(other))["type"] == "job_accepted"  # another client is not slowed down
    await asyncio.sleep(limited[-1]["details"]["retry_after_ms"] / 1000 + 0.05)
    assert (await submit(greedy))["type"] == "job_accepted"


async def test_the_sdk_waits_out_the_rate_limit_and_its_jobs_all_go_in(start_hub):
    from empq.client import EmpQueueClient

    hub = await start_hub(submit_rate=10, submit_burst=2)
    async with EmpQueueClient(hub.url) as sdk:
        accepted = [await sdk.submit({"job_type": "t", "payload": {"i": i}}) for i in range(6)]
    assert len({a.job_id for a in accepted}) == 6


async def test_the_queue_bound_refuses_submissions_until_jobs_leave(start_hub):
    hub = await start_hub(max_queued_jobs=3)
    c = await hub.peers.client("filler")
    for _ in range(3):
        assert (await submit(c))["type"] == "job_accepted"
    full = await submit(c)
    assert full["error_code"] == "RATE_LIMITED" and full["details"] == {
        "reason": "queue_full",
        "queued": 3,
        "limit": 3,
    }
    worker = await hub.peers.worker("drain")
    assert (await claim(worker))["type"] == "job_assigned"
    assert (await submit(c))["type"] == "job_accepted"


# --- found by an independent attack battery (second round) ---------------------------------------


async def test_an_unbound_client_token_cannot_name_a_customer(tenant_hub):
    hub = await tenant_hub()
    a = await client(hub, "client-a")
    a_job = await submit(a)
    peer = await hub.peers.raw("free")
    named = await peer.request(
        "register_client",
        "client_registered",
        client_type="job_client",
        client_id="evil",
        customer_id="A",
        auth_token="client-free-1",
    )
    assert named["error_code"] == "PERMISSION_DENIED" and named["details"]["field"] == "customer_id"
    free = await client(hub, "client-free-1")
    tagged = await submit(free, customer_id="A")
    assert tagged["error_code"] == "PERMISSION_DENIED", tagged
    denied = await free.request("request_job_status", "response_job_status", job_id=a_job["job_id"])
    assert denied["error_code"] == "JOB_NOT_FOUND"
    labelled = await submit(free, customer_id="shop-42")  # a customer no token is bound to: a label
    assert labelled["type"] == "job_accepted", labelled
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{hub.http.port}", timeout=10) as api:
        body = {"job_type": "t", "payload": {}, "customer_id": "A"}
        r = await api.post("/api/jobs", json=body, headers={"Authorization": "Bearer client-free-1"})
        assert r.status_code == 403, r.text


async def test_processing_time_and_non_json_numbers_cannot_poison_the_hub(start_hub):
    hub = await start_hub()
    c, worker = await hub.peers.client("c"), await hub.peers.worker("w")
    for _ in range(2):
        await submit(c)
    job = (await claim(worker))["job_id"]
    frame = {  # raw: the models refuse to build it
        "type": "complete_job",
        "id": "huge",
        "timestamp": 1,
        "job_id": job,
        "worker_id": "w",
        "result": {"success": True},
        "processing_time": 1e300,
    }
    await worker.send_raw(frame)
    refused = await worker.expect("error", request_id="huge")
    assert refused["error_code"] == "INVALID_PARAMETERS" and refused["details"]["field"] == "processing_time"
    await worker.send_raw(orjson.dumps(frame).replace(b"1e+300", b"Infinity").replace(b"huge", b"inf"))
    refused = await worker.expect("error")
    assert refused["error_code"] == "INVALID_PARAMETERS" and refused["details"]["reason"] == "invalid_json"
    # the job is untouched and completes normally; submissions keep working with positions > 1
    done = await worker.request(
        "complete_job", "job_completed_ack", job_id=job, worker_id="w", result={"success": True}
    )
    assert done["type"] == "job_completed_ack", done
    assert (await submit(c))["type"] == "job_accepted"
    big = await c.request("submit_job", "job_accepted", job_type="t", payload={"n": 2**70})
    assert big["error_code"] == "INVALID_PARAMETERS", big


async def test_one_customers_flood_does_not_starve_another_customers_bound_worker(tenant_hub):
    hub = await tenant_hub()
    a, b = await client(hub, "client-a"), await client(hub, "client-b")
    for _ in range(130):  # deeper than any bounded scan
        assert (await submit(b, priority=100))["type"] == "job_accepted"
    mine = await submit(a, priority=10)
    worker, _ = await register_worker(hub, "worker-a", "wa-starved")
    got = await claim(worker)
    assert got["type"] == "job_assigned" and got["job_id"] == mine["job_id"], got


async def test_the_queue_bound_per_customer(tenant_hub):
    hub = await tenant_hub(max_queued_per_customer=2)
    a, b = await client(hub, "client-a"), await client(hub, "client-b")
    assert [(await submit(a))["type"] for _ in range(2)] == ["job_accepted"] * 2
    full = await submit(a)
    assert full["error_code"] == "RATE_LIMITED" and full["details"]["reason"] == "customer_queue_full"
    assert (await submit(b))["type"] == "job_accepted"  # another customer is not held back
    worker, _ = await register_worker(hub, "worker-a", "wa-drain")
    assert (await claim(worker))["type"] == "job_assigned"
    assert (await submit(a))["type"] == "job_accepted"


async def test_unregistered_connections_send_small_frames_and_are_few(start_hub):
    hub = await start_hub(max_unregistered_frame=4096, max_unregistered_connections=3)
    stranger = await hub.peers.raw("stranger")
    await stranger.send_raw({"type": "ping", "timestamp": 1, "pad": "x" * 5000})
    assert await stranger.closed(timeout=3) == 1009
    registered = await hub.peers.client("big-after-registering")
    pong = await registered.request("ping", "pong", pad="y" * 50_000)  # the full limit once registered
    assert pong["type"] == "pong"
    idle = [await hub.peers.raw(f"idle-{i}") for i in range(3)]
    with pytest.raises(PeerError, match="1013"):  # the fourth is refused before it is greeted
        await hub.peers.raw("one-too-many")
    await idle[0].close()
    await asyncio.sleep(0.2)
    assert (await hub.peers.raw("room-again")) is not None


async def test_another_token_cannot_tell_a_worker_id_is_online(tenant_hub):
    hub = await tenant_hub()
    _, ok = await register_worker(hub, "worker-a", "gpu-online")
    assert ok["type"] == "worker_registered"
    _, refused = await register_worker(hub, "worker-b", "gpu-online")
    assert refused["error_code"] == "PERMISSION_DENIED"  # not ALREADY_REGISTERED
    _, same = await register_worker(hub, "worker-a", "gpu-online")
    assert same["error_code"] == "ALREADY_REGISTERED"  # its own token learns it is connected


async def test_the_dashboard_may_open_only_its_hubs_websocket(start_hub):
    hub = await start_hub()
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{hub.http.port}", timeout=10) as api:
        csp = (await api.get("/")).headers["content-security-policy"]
    connect = next(p for p in csp.split(";") if p.strip().startswith("connect-src")).split()[1:]
    assert connect == ["'self'", f"ws://127.0.0.1:{hub.port}"], csp
    script = (REPO / "hub" / "static" / "dashboard.js").read_text()
    assert 'params.get("ws")' not in script


async def test_job_classes_without_live_jobs_are_forgotten(start_hub):
    hub = await start_hub()
    c = await hub.peers.client("types")
    jobs = [await submit(c, job_type=f"one-off-{i}") for i in range(30)]
    for job in jobs:
        await c.request("cancel_job", "job_cancelled", job_id=job["job_id"])
    kept = await submit(c, job_type="kept")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and len(hub.core.store.classes) > 1:
        await asyncio.sleep(0.2)
        await hub.core.store.refresh_classes()
    assert [cls.job_type for cls in hub.core.store.classes.values()] == ["kept"]
    worker = await hub.peers.worker("after-gc", services=("comfyui",), max_concurrent_jobs=2)
    assert (await claim(worker))["job_id"] == kept["job_id"]
    again = await submit(c, job_type="one-off-3")  # a forgotten class comes back with its next job
    assert (await claim(worker))["job_id"] == again["job_id"]


async def test_connection_ids_differ_across_restarts_of_a_hub_with_a_fixed_id(start_hub):
    first = await start_hub(hub_id="fixed")
    old = {first.core.new_conn_id() for _ in range(3)}
    second = await start_hub(hub_id="fixed", key_prefix=first.config.key_prefix)
    assert not old & {second.core.new_conn_id() for _ in range(3)}


async def test_a_bound_monitor_sees_its_customers_workers_only(tenant_hub):
    hub = await tenant_hub()
    await register_worker(hub, "worker-a", "gpu-of-a")
    await register_worker(hub, "worker-b", "gpu-of-b")
    await register_worker(hub, "worker-fleet", "gpu-of-fleet")
    mon_b, _ = await monitor(hub, "mon-b")
    listed = await mon_b.request("request_stats", "stats_response", include_sections=["workers"])
    ids = [w["worker_id"] for w in listed["stats"]["workers"]["workers"]]
    assert ids == ["gpu-of-b"], listed
    assert listed["stats"]["workers"]["total"] == 3  # the counts are the fleet's
    ops, _ = await monitor(hub, "ops")
    everyone = await ops.request("request_stats", "stats_response", include_sections=["workers"])
    assert len(everyone["stats"]["workers"]["workers"]) == 3


async def test_ids_with_control_characters_are_refused(start_hub):
    hub = await start_hub()
    peer = await hub.peers.raw("forger")
    await peer.send_raw(  # raw: the models refuse to build it
        {
            "type": "register_worker",
            "id": "forged",
            "timestamp": 1,
            "worker_id": "ok\n2026-01-01 00:00:00,000 CRITICAL empq.hub: FAKE",
            "capabilities": {"services": ["comfyui"]},
        }
    )
    refused = await peer.expect("error", request_id="forged")
    assert refused["error_code"] == "INVALID_PARAMETERS" and refused["details"]["field"] == "worker_id"


async def test_frames_after_disconnect_are_ignored_and_a_worker_not_holding_a_job_learns_no_state(
    start_hub,
):
    hub = await start_hub()
    c, holder, other = await hub.peers.client("c"), await hub.peers.worker("h"), await hub.peers.worker("o")
    job = (await submit(c))["job_id"]
    assert (await claim(holder))["job_id"] == job
    nosy = await other.request("job_accepted_by_worker", "ack", job_id=job, worker_id="o")
    assert nosy["error_code"] == "NOT_JOB_HOLDER" and "status" not in nosy["details"], nosy
    await holder.ws.send(orjson.dumps({"type": "disconnect", "timestamp": 1}).decode())
    await holder.ws.send(orjson.dumps({"type": "claim_job", "timestamp": 1, "id": "late"}).decode())
    assert await holder.closed(timeout=3) == 1000
    assert not [f for f in holder.backlog if f.get("request_id") == "late"]


async def test_a_connection_that_leaves_is_owed_nothing(start_hub):
    hub = await start_hub()
    c = await hub.peers.client("leaver")
    job = (await submit(c))["job_id"]
    assert hub.core.subs.awaiting.get(job)
    await c.close()
    await asyncio.sleep(0.2)
    assert job not in hub.core.subs.awaiting and not hub.core.subs.awaiting_of


async def test_listing_jobs_does_bounded_work_per_request(start_hub, monkeypatch):
    import empq.hub.http as http

    monkeypatch.setattr(http, "MAX_SCANNED", 150)
    hub = await start_hub()
    mine, theirs = await hub.peers.client("mine"), await hub.peers.client("theirs")
    own = (await submit(mine))["job_id"]
    for _ in range(300):
        await submit(theirs)
    headers = {"X-Client-Id": mine.registered["client_id"]}
    seen, cursor, requests = [], None, 0
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{hub.http.port}", timeout=10) as api:
        while requests < 10:
            params = {"cursor": cursor} if cursor else {}
            page = (await api.get("/api/jobs", params=params, headers=headers)).json()
            requests += 1
            seen += [j["job_id"] for j in page["jobs"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
    assert seen == [own] and requests >= 2  # short pages, then the job, then the end


async def test_a_monitor_with_view_workers_gets_the_workers_section(start_hub):
    hub = await start_hub()
    await hub.peers.worker("seen")
    watcher = await hub.peers.monitor("watcher", permissions=("view_workers",))
    listed = await watcher.request("request_stats", "stats_response")
    assert list(listed["stats"]) == ["workers"] and listed["stats"]["workers"]["workers"]
    refused = await watcher.request("request_stats", "stats_response", include_sections=["jobs"])
    assert refused["error_code"] == "PERMISSION_DENIED"
