"""hub/access.py: who may see and do what (spec D13, D19) — customers' jobs isolated, monitors by
permission, job clients without a customer see their own — and the submission rate limiter.
In-process on a real redis-server, and the rules on their own."""

from __future__ import annotations

import time

from empq.hub.access import SEES_ALERTS, SEES_WORKERS, SubmissionLimiter, may_cancel, monitor_sees, visible
from empq.hub.session import Role, Session


async def test_clients_see_only_their_customers_jobs(core_hub):
    hub = await core_hub()
    a, a2, b = await hub.client("cust-a"), await hub.client("cust-a"), await hub.client("cust-b")
    job_b = (await b.submit())["job_id"]
    job_a = (await a.submit())["job_id"]
    refused = [
        ("request_job_status", {"job_id": job_b}, "JOB_NOT_FOUND"),
        ("subscribe_job", {"job_id": job_b}, "JOB_NOT_FOUND"),
        ("cancel_job", {"job_id": job_b}, "JOB_NOT_FOUND"),
        ("subscribe_job_notifications", {"filters": {"customer_id": "cust-b"}}, "PERMISSION_DENIED"),
        ("submit_job", {"job_type": "t", "payload": {}, "customer_id": "cust-b"}, "PERMISSION_DENIED"),
    ]
    for kind, fields, code in refused:
        answer = await a.request(kind, **fields)
        assert answer["type"] == "error" and answer["error_code"] == code, (kind, answer)
    assert (await b.status(job_b))["status"] == "queued"  # the refused cancel changed nothing
    assert a.of("job_update", job_id=job_b) == []
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
        answer = await a2.request(kind, **fields)
        assert answer["type"] == reply, (kind, answer)


async def test_monitors_need_view_all_jobs_and_clients_without_customer_see_their_own(core_hub):
    hub = await core_hub()
    x, y = await hub.client(), await hub.client()
    job_x = (await x.submit())["job_id"]
    assert (await x.status(job_x))["status"] == "queued"
    for kind in ("request_job_status", "subscribe_job", "cancel_job"):
        answer = await y.request(kind, job_id=job_x)
        assert answer["error_code"] == "JOB_NOT_FOUND", (kind, answer)
    sub = await y.request("subscribe_job_notifications", filters={})
    assert sub["type"] == "job_notifications_subscribed"
    job_x2 = (await x.submit())["job_id"]
    assert y.of("job_update", job_id=job_x2) == []
    job_y = (await y.submit())["job_id"]
    assert (await y.status(job_y))["status"] == "queued"

    blind = await hub.monitor(permissions=("view_system_stats",))
    denied = await blind.request("subscribe_job_notifications", filters={})
    assert denied["error_code"] == "PERMISSION_DENIED"
    assert (await blind.status(job_x))["error_code"] == "JOB_NOT_FOUND"
    seer = await hub.monitor(permissions=("view_all_jobs",))
    sub = await seer.request("subscribe_job_notifications", filters={})
    assert sub["type"] == "job_notifications_subscribed"
    assert (await seer.status(job_x))["status"] == "queued"
    job_x3 = (await x.submit())["job_id"]
    assert seer.of("job_update", job_id=job_x3, status="queued")


# --- the rules on their own ----------------------------------------------------------------------------


def session(role: Role, customer_id: str | None = None, *permissions: str, client_id: str = "me") -> Session:
    return Session(
        "c", role=role, client_id=client_id, customer_id=customer_id, permissions=frozenset(permissions)
    )


def test_visible_follows_customer_then_permission_then_identity():
    bound = session(Role.JOB_CLIENT, "A")
    assert (
        visible(bound, "A", "someone-else")
        and not visible(bound, "B", "me")
        and not visible(bound, None, "me")
    )
    free = session(Role.JOB_CLIENT)
    assert visible(free, None, "me") and not visible(free, None, "other") and not visible(free, "A", "other")
    bound_monitor = session(Role.MONITOR, "A", "view_all_jobs")
    assert visible(bound_monitor, "A", "x") and not visible(
        bound_monitor, "B", "x"
    )  # whatever its permissions
    assert visible(session(Role.MONITOR, None, "view_all_jobs"), "B", "x")
    assert not visible(session(Role.MONITOR, None, "view_system_stats"), None, "me")
    assert not visible(session(Role.WORKER), None, "me")


def test_monitor_sees_needs_a_permission_and_its_customer():
    assert monitor_sees(session(Role.MONITOR, None, "view_system_stats"), "A", SEES_ALERTS)
    assert monitor_sees(session(Role.MONITOR, None, "view_workers"), None, SEES_WORKERS)
    assert not monitor_sees(session(Role.MONITOR, None, "view_workers"), None, SEES_ALERTS)
    assert monitor_sees(session(Role.MONITOR, "A", "view_system_stats"), "A", SEES_ALERTS)
    assert not monitor_sees(session(Role.MONITOR, "A", "view_system_stats"), None, SEES_ALERTS)
    assert not monitor_sees(session(Role.JOB_CLIENT, None, "view_system_stats"), None, SEES_ALERTS)


def test_job_clients_cancel_what_they_see_and_monitors_need_manage_jobs():
    assert may_cancel(session(Role.JOB_CLIENT))
    assert not may_cancel(session(Role.MONITOR, None, "view_all_jobs"))
    assert may_cancel(session(Role.MONITOR, None, "manage_jobs"))


def test_the_limiter_allows_a_burst_then_the_rate():
    assert SubmissionLimiter(0, 0).wait_ms("anyone") == 0  # off
    limiter = SubmissionLimiter(rate=2, burst=2)
    assert limiter.wait_ms("a") == 0 and limiter.wait_ms("a") == 0
    wait = limiter.wait_ms("a")
    assert 0 < wait <= 500
    assert limiter.wait_ms("b") == 0  # per identity
    time.sleep(wait / 1000 + 0.01)
    assert limiter.wait_ms("a") == 0
    limiter.buckets["idle"] = (2.0, time.monotonic() - 10)
    limiter.forget_full()
    assert "idle" not in limiter.buckets and "a" in limiter.buckets
