"""hub/auth.py: tokens per role, presented on the handshake (Authorization header, ?token=) or in
the register message (spec D4); an auth file binding tokens to customers and permissions. The
presentations need the transport: real sockets on a real redis-server."""

from __future__ import annotations

import json
import time
import uuid

import pytest
from empq.conformance.peer import Peer
from empq.hub.auth import Authenticator, handshake_token
from empq.hub.config import HubConfig
from empq.hub.server import HubServer
from peer_steps import status_of, still_works, submit

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


# --- the parts without a socket ----------------------------------------------------------------


def test_the_handshake_token_is_the_bearer_header_else_the_query():
    assert handshake_token("/", "Bearer abc") == "abc"
    assert handshake_token("/?token=q", "bearer  h ") == "h"  # the header wins, any case
    assert handshake_token("/?token=q&x=1", None) == "q"
    assert handshake_token("/?token=q", "Basic xyz") == "q"  # not a bearer token
    assert handshake_token("/", None) is None and handshake_token("/", "Bearer ") is None


def test_no_token_anywhere_is_open_mode_and_grants_what_is_asked():
    auth = Authenticator.from_config(HubConfig())
    assert auth.open
    grant = auth.check("monitor", None)
    assert grant is not None and grant.role == "monitor" and grant.owner == ""
    assert auth.may_name(grant, "anyone")


def test_a_token_registers_only_its_role(tmp_path):
    auth = Authenticator.from_config(HubConfig(client_tokens="ct, ct2", worker_tokens="wt"))
    assert not auth.open
    assert auth.check("job_client", "ct2") is not None and auth.check("job_client", "wt") is None
    assert auth.check("worker", "wt") is not None and auth.check("worker", None) is None
    one, two = auth.check("job_client", "ct"), auth.check("job_client", "ct2")
    assert one is not None and two is not None and one.owner != two.owner and "ct" not in one.owner


def test_an_auth_file_binds_customers_and_only_names_known_roles_and_permissions(tmp_path):
    path = tmp_path / "tokens.json"
    tokens = [
        {"token": "a", "role": "job_client", "customer_id": "A"},
        {"token": "free", "role": "job_client"},
        {"token": "ops", "role": "monitor", "permissions": ["view_workers"]},
    ]
    path.write_text(json.dumps({"tokens": tokens}))
    auth = Authenticator.from_config(HubConfig(auth_file=str(path)))
    bound, free, ops = (
        auth.check("job_client", "a"),
        auth.check("job_client", "free"),
        auth.check("monitor", "ops"),
    )
    assert bound is not None and free is not None and ops is not None
    assert bound.customer_id == "A" and ops.permissions == frozenset({"view_workers"})
    # D19: a bound customer is named by its tokens only; an unbound token may use other labels
    assert auth.may_name(bound, "A") and auth.may_name(bound, None) and not auth.may_name(bound, "B")
    assert not auth.may_name(free, "A") and auth.may_name(free, "my-label")
    for entry, what in (
        ({"token": "x", "role": "monitor", "permissions": ["root"]}, "unknown permissions"),
        ({"token": "x", "role": "admin"}, "unknown role"),
    ):
        path.write_text(json.dumps({"tokens": [entry]}))
        with pytest.raises(ValueError, match=what):
            Authenticator.from_config(HubConfig(auth_file=str(path)))


async def test_failed_authentications_hold_an_address_back_on_every_path(start_hub, caplog):
    """D19: after ``auth_failures_per_minute`` failures from one address (WebSocket registrations,
    the HTTP API and /metrics count together), its next attempts are refused with RATE_LIMITED —
    even with a good token, which is not checked then — until the oldest failure is a minute old."""
    import httpx

    hub = await start_hub(client_tokens="ct", monitor_tokens="mt", auth_failures_per_minute=3)
    base = f"http://127.0.0.1:{hub.http.port}"
    async with httpx.AsyncClient(base_url=base, timeout=10) as api:
        _, first = await register_with(hub, "job_client", "field", "guess-1")
        assert first["error_code"] == "AUTH_FAILED"
        denied = await api.get("/api/jobs", headers={"Authorization": "Bearer guess-2"})
        assert denied.status_code == 401
        denied = await api.get("/metrics", headers={"Authorization": "Bearer guess-3"})
        assert denied.status_code == 401
        # the fourth attempt: refused before its (good) token is looked at, on every path
        peer, held = await register_with(hub, "job_client", "field", "ct")
        assert held["error_code"] == "RATE_LIMITED", held
        said = [r.getMessage() for r in caplog.records if getattr(r, "event", "") == "auth_throttled"]
        assert said == [
            "127.0.0.1 failed authentication 3 times within 60 s: refused until the oldest is that old"
        ]
        assert (
            held["details"]["reason"] == "auth_failures" and 0 < held["details"]["retry_after_ms"] <= 60_000
        )
        assert await peer.closed(timeout=2) == 1008
        for path in ("/api/jobs", "/metrics"):
            refused = await api.get(path, headers={"Authorization": "Bearer mt"})
            assert refused.status_code == 429, (path, refused.text)
            assert 1 <= int(refused.headers["Retry-After"]) <= 60
            assert refused.json()["error_code"] == "RATE_LIMITED"
    # a minute later the address may try again (the throttle's clock moved on instead of waiting)
    throttle = hub.core.auth_throttle
    throttle.clock = lambda: time.monotonic() + 61
    _, again = await register_with(hub, "job_client", "field", "ct")
    assert again["type"] == "client_registered"


def test_the_throttle_counts_per_host_within_its_window_and_forgets_the_oldest_addresses():
    from empq.hub.auth_throttle import FailedAuthThrottle, host_of

    now = [0.0]
    throttle = FailedAuthThrottle(3, 60.0, max_addresses=2, clock=lambda: now[0])
    assert [throttle.failed("10.0.0.1:5000") for _ in range(3)] == [False, False, True]
    assert throttle.retry_after("10.0.0.1:6000") == 60.0  # the host, whatever its port
    assert throttle.retry_after("10.0.0.2:5000") == 0.0
    now[0] = 45.0
    assert throttle.retry_after("10.0.0.1:1") == 15.0
    now[0] = 60.5  # the oldest failure is a minute old: free again; one more does not hold it
    assert throttle.retry_after("10.0.0.1:1") == 0.0
    assert throttle.failed("10.0.0.1:1") is False and throttle.retry_after("10.0.0.1:1") == 0.0
    throttle.failed("10.0.0.2:1")
    throttle.failed("10.0.0.3:1")  # a third address: the least recently failing one is forgotten
    assert set(throttle.failures) == {"10.0.0.2", "10.0.0.3"}
    assert FailedAuthThrottle(0).retry_after("x:1") == 0.0  # 0: off
    assert (host_of("::1:5555"), host_of("[::1]:80"), host_of("")) == ("::1", "[::1]", "")
