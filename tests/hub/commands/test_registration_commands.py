"""hub/commands/registration.py: register_client and register_worker (spec D3, D4, D19) —
what each answers, what it refuses (error_code, details.field) and what it changes. In-process
on a real redis-server; the oracle is spec/README.md."""

from __future__ import annotations

import json

import pytest
from empq.hub.session import Role

TOKENS = [
    {"token": "client-a", "role": "job_client", "customer_id": "A"},
    {"token": "client-free", "role": "job_client"},
    {"token": "worker-a", "role": "worker", "customer_id": "A"},
    {"token": "worker-fleet", "role": "worker"},
    {"token": "worker-other", "role": "worker"},
    {"token": "ops", "role": "monitor", "permissions": ["view_all_jobs", "view_system_stats"]},
]


@pytest.fixture
def auth_file(tmp_path):
    path = tmp_path / "tokens.json"
    path.write_text(json.dumps({"tokens": TOKENS}), encoding="utf-8")
    return str(path)


def fleet_entry(hub, worker_id):
    return hub.redis.execute("HGETALL", hub.core.fleet.worker_key(worker_id))


# --- register_client ------------------------------------------------------------------------------


async def test_register_client_answers_client_registered_and_makes_a_job_client(core_hub):
    hub = await core_hub()
    conn = hub.connect()
    reply = await conn.request("register_client", client_type="job_client", client_id="app-1")
    assert reply["type"] == "client_registered"
    assert (reply["client_id"], reply["status"], reply["client_type"]) == (
        "app-1",
        "registered",
        "job_client",
    )
    assert reply["assigned_connection_id"] == conn.conn_id
    assert "customer_id" not in reply and reply["permissions"] == []  # open mode: what it asked
    session = hub.core.sessions[conn.conn_id]
    assert session.role is Role.JOB_CLIENT and session.client_id == "app-1"
    assert conn.of("system_status") == []  # monitors only
    # D7: a customer named at registration is the client's, and its jobs' by default
    bound = hub.connect()
    reply = await bound.request("register_client", client_type="job_client", client_id="b", customer_id="c-9")
    assert reply["customer_id"] == "c-9"
    job = await bound.submit()
    assert (await bound.status(job["job_id"]))["customer_id"] == "c-9"


async def test_register_client_as_a_monitor_gets_system_status_and_the_permissions_asked(core_hub):
    hub = await core_hub()
    conn = hub.connect()
    frames = await conn.send(
        "register_client", id="m", client_type="monitor", client_id="ops", permissions=["view_workers"]
    )
    assert [f["type"] for f in frames] == ["client_registered", "system_status"]
    assert frames[0]["client_type"] == "monitor" and frames[0]["permissions"] == ["view_workers"]
    assert frames[0]["request_id"] == "m" and "request_id" not in frames[1]
    assert hub.core.sessions[conn.conn_id].role is Role.MONITOR


async def test_register_client_declares_chunk_support(core_hub):
    hub = await core_hub()
    plain, capable = await hub.client(), await hub.client(capabilities={"chunked_messages": True})
    assert not hub.core.sessions[plain.conn_id].chunked_messages
    assert hub.core.sessions[capable.conn_id].chunked_messages


async def test_register_client_with_tokens_needs_its_roles_token(core_hub):
    hub = await core_hub(client_tokens="ct", monitor_tokens="mt")
    for token, reason in ((None, "missing token"), ("nope", "invalid job_client token"), ("mt", None)):
        conn = hub.connect()
        fields = {"auth_token": token} if token else {}
        refused = await conn.request("register_client", client_type="job_client", client_id="x", **fields)
        assert refused["error_code"] == "AUTH_FAILED", (token, refused)
        assert refused["details"]["client_id"] == "x"
        if reason:
            assert refused["details"]["reason"] == reason
        assert conn.closed == 1008 and hub.core.sessions[conn.conn_id].role is Role.NEW
    by_field = hub.connect()
    ok = await by_field.request("register_client", client_type="job_client", client_id="x", auth_token="ct")
    assert ok["type"] == "client_registered" and by_field.closed is None
    by_handshake = hub.connect(token="mt")  # as the transport passes a header or ?token=
    ok = await by_handshake.request(
        "register_client", client_type="monitor", client_id="m", permissions=["view_workers", "manage_jobs"]
    )
    # what a token grants bounds what is asked (monitor tokens: the three view permissions)
    assert ok["permissions"] == ["view_workers"]
    every = await hub.connect(token="mt").request("register_client", client_type="monitor", client_id="m2")
    assert every["permissions"] == ["view_all_jobs", "view_system_stats", "view_workers"]


async def test_register_client_names_only_customers_its_token_may_act_for(core_hub, auth_file):
    """D19: a bound token's customer is the session's; naming another is refused; an unbound token
    may not name a bound customer, but may use other labels."""
    hub = await core_hub(auth_file=auth_file)
    bound = hub.connect(token="client-a")
    reply = await bound.request("register_client", client_type="job_client", client_id="a")
    assert reply["customer_id"] == "A"
    for token, customer in (("client-a", "B"), ("client-free", "A")):
        conn = hub.connect(token=token)
        refused = await conn.request(
            "register_client", client_type="job_client", client_id="x", customer_id=customer
        )
        assert refused["error_code"] == "PERMISSION_DENIED", (token, refused)
        assert refused["details"] == {"field": "customer_id", "provided_value": customer}
        assert hub.core.sessions[conn.conn_id].role is Role.NEW and conn.closed is None  # may try again
    label = hub.connect(token="client-free")
    reply = await label.request(
        "register_client", client_type="job_client", client_id="f", customer_id="team-x"
    )
    assert reply["customer_id"] == "team-x"


async def test_registration_rules(core_hub):
    """D3: before registering only ping, pong and disconnect; one registration per connection;
    a role sends only its own messages; one connection per worker id."""
    hub = await core_hub()
    raw = hub.connect()
    refused = await raw.request("submit_job", job_type="t", payload={})
    assert refused["error_code"] == "NOT_REGISTERED"
    pong = await raw.request("ping")
    assert pong["type"] == "pong"
    client = await hub.client()
    again = await client.request("register_worker", worker_id="w", capabilities={"services": ["x"]})
    assert again["error_code"] == "ALREADY_REGISTERED"
    again = await client.request("register_client", client_type="job_client", client_id="twice")
    assert again["error_code"] == "ALREADY_REGISTERED"
    denied = await client.request("claim_job", worker_id="w")
    assert denied["error_code"] == "PERMISSION_DENIED"
    monitor = await hub.monitor()
    denied = await monitor.request("submit_job", job_type="t", payload={})
    assert denied["error_code"] == "PERMISSION_DENIED"
    worker = await hub.worker()
    denied = await worker.request("submit_job", job_type="t", payload={})
    assert denied["error_code"] == "PERMISSION_DENIED"
    twin = hub.connect()
    dup = await twin.request(
        "register_worker", worker_id=worker.worker_id, capabilities={"services": ["comfyui"]}
    )
    assert dup["error_code"] == "ALREADY_REGISTERED"
    assert hub.core.sessions[twin.conn_id].role is Role.NEW
    other = await worker.request("worker_heartbeat", worker_id="someone-else")
    assert other["error_code"] == "PERMISSION_DENIED"


# --- register_worker ----------------------------------------------------------------------------------


async def test_register_worker_answers_worker_registered_and_records_the_worker(core_hub):
    hub = await core_hub(heartbeat_interval_ms=7000)
    conn = hub.connect()
    caps = {"services": ["comfyui"], "max_concurrent_jobs": 2}
    reply = await conn.request("register_worker", worker_id="w-1", capabilities=caps, status="busy")
    assert reply["type"] == "worker_registered"
    assert (reply["worker_id"], reply["status"], reply["heartbeat_interval"]) == ("w-1", "registered", 7000)
    assert reply["assigned_connection_id"] == conn.conn_id and "resumed_jobs" not in reply
    local = hub.core.workers.get("w-1")
    assert local is not None and local.status == "busy" and local.subscribe and local.slots == 2
    assert hub.core.sessions[conn.conn_id].role is Role.WORKER
    entry = dict(zip(*[iter(await fleet_entry(hub, "w-1"))] * 2, strict=True))
    assert json.loads(entry["capabilities"]) == caps and entry["hub"] == hub.core.hub_id


async def test_register_worker_resumes_the_jobs_it_still_holds(core_hub):
    hub = await core_hub()
    client = await hub.client()
    job = await client.submit()
    worker = await hub.worker("w-resume")
    await worker.claim()
    await hub.drop(worker)  # lost, not said goodbye: within the reconnect grace
    back = hub.connect()
    reply = await back.request(
        "register_worker", worker_id="w-resume", capabilities={"services": ["comfyui"]}
    )
    assert reply["resumed_jobs"] == [job["job_id"]]
    assert hub.core.workers.get("w-resume").held == {job["job_id"]}


async def test_register_worker_capabilities_are_bounded(core_hub):
    hub = await core_hub(max_worker_info_bytes=256)
    conn = hub.connect()
    caps = {"services": ["comfyui"], "notes": "x" * 300}
    refused = await conn.request("register_worker", worker_id="w-big", capabilities=caps)
    assert refused["error_code"] == "INVALID_PARAMETERS"
    assert refused["details"]["field"] == "capabilities"
    assert refused["details"]["provided_value"].endswith(" bytes")
    assert hub.core.workers.get("w-big") is None and await fleet_entry(hub, "w-big") == []
    ok = await conn.request("register_worker", worker_id="w-big", capabilities={"services": ["comfyui"]})
    assert ok["type"] == "worker_registered"


async def test_register_worker_with_a_customers_token_runs_that_customer_only(core_hub, auth_file):
    hub = await core_hub(auth_file=auth_file)
    conn = hub.connect(token="worker-a")
    refused = await conn.request(
        "register_worker",
        worker_id="w-a",
        capabilities={"services": ["comfyui"], "allowed_customers": ["A", "B"]},
    )
    assert refused["error_code"] == "PERMISSION_DENIED"
    assert refused["details"] == {"field": "capabilities.allowed_customers", "provided_value": ["A", "B"]}
    assert hub.core.workers.get("w-a") is None
    ok = await conn.request("register_worker", worker_id="w-a", capabilities={"services": ["comfyui"]})
    assert ok["type"] == "worker_registered"
    assert hub.core.workers.get("w-a").capabilities["allowed_customers"] == ["A"]  # set when omitted
    own = hub.connect(token="worker-a")
    reply = await own.request(
        "register_worker",
        worker_id="w-a2",
        capabilities={"services": ["comfyui"], "allowed_customers": ["A"]},
    )
    assert reply["type"] == "worker_registered"


async def test_register_worker_id_belongs_to_the_token_that_registered_it(core_hub, auth_file):
    hub = await core_hub(auth_file=auth_file)
    client = await hub.client(auth_token="client-free")
    job = await client.submit()
    first = hub.connect(token="worker-fleet")
    await first.request("register_worker", worker_id="w-owned", capabilities={"services": ["comfyui"]})
    first.worker_id = "w-owned"
    assert [j["job_id"] for j in await first.claim()] == [job["job_id"]]
    for connected in (True, False):
        thief = hub.connect(token="worker-other")
        refused = await thief.request(
            "register_worker", worker_id="w-owned", capabilities={"services": ["comfyui"]}
        )
        assert refused["error_code"] == "PERMISSION_DENIED", (connected, refused)
        assert refused["details"] == {"field": "worker_id", "provided_value": "w-owned"}
        assert "resumed_jobs" not in refused and hub.core.sessions[thief.conn_id].role is Role.NEW
        if connected:
            same_token = hub.connect(token="worker-fleet")
            dup = await same_token.request(
                "register_worker", worker_id="w-owned", capabilities={"services": ["comfyui"]}
            )
            assert dup["error_code"] == "ALREADY_REGISTERED"
            await hub.drop(first)  # gone, within its grace: still its token's
    back = hub.connect(token="worker-fleet")
    reply = await back.request("register_worker", worker_id="w-owned", capabilities={"services": ["comfyui"]})
    assert reply["resumed_jobs"] == [job["job_id"]]


async def test_register_worker_with_tokens_needs_a_worker_token(core_hub):
    hub = await core_hub(worker_tokens="wt", client_tokens="ct")
    conn = hub.connect()
    refused = await conn.request(
        "register_worker", worker_id="w-x", capabilities={"services": ["comfyui"]}, auth_token="ct"
    )
    assert refused["error_code"] == "AUTH_FAILED"
    assert refused["details"] == {"reason": "invalid worker token", "worker_id": "w-x"}
    assert conn.closed == 1008 and hub.core.workers.get("w-x") is None
    ok = await hub.connect(token="wt").request(
        "register_worker", worker_id="w-x", capabilities={"services": ["comfyui"]}
    )
    assert ok["type"] == "worker_registered"
