"""hub/commands/client.py: submit_job, request_job_status, cancel_job, subscribe_job,
subscribe_job_notifications (spec D7, D13, D14, D18, D19) — what each answers, what it refuses
(error_code, details) and what it changes. In-process on a real redis-server."""

from __future__ import annotations

import re

from empq.hub import subscriptions


async def queued(hub) -> int:
    return int(await hub.redis.execute("ZCARD", hub.core.store.key("queued")))


# --- submit_job ------------------------------------------------------------------------------------


async def test_submit_job_answers_job_accepted_and_queues_the_job(core_hub):
    hub = await core_hub()
    client = await hub.client("cust-1")
    accepted = await client.submit(payload={"prompt": "x"})
    assert re.fullmatch(r"job-[0-9a-f]{32}", accepted["job_id"])  # D7: the hub's ids
    assert (accepted["status"], accepted["position"], accepted["notified_workers"]) == ("queued", 1, 0)
    assert accepted["estimated_start"] is None
    stored = await hub.core.store.status(accepted["job_id"])
    assert stored["status"] == "queued" and stored["customer_id"] == "cust-1"  # the client's customer
    assert (stored["priority"], stored["max_retries"]) == ("50", "3")  # defaults
    second = await client.submit(priority=80)
    assert second["position"] == 1 and await queued(hub) == 2  # higher priority: served first


async def test_submit_job_refuses_a_job_id(core_hub):
    hub = await core_hub()
    client = await hub.client()
    refused = await client.request("submit_job", job_type="t", payload={}, job_id="mine")
    assert refused["error_code"] == "INVALID_PARAMETERS"
    assert refused["details"] == {"field": "job_id", "provided_value": "mine"}
    assert await queued(hub) == 0


async def test_submit_job_for_another_customer_is_refused(core_hub):
    hub = await core_hub()
    client = await hub.client("cust-a")
    refused = await client.request("submit_job", job_type="t", payload={}, customer_id="cust-b")
    assert refused["error_code"] == "PERMISSION_DENIED"
    assert refused["details"] == {"field": "customer_id", "provided_value": "cust-b"}
    assert await queued(hub) == 0
    own = await client.submit(customer_id="cust-a")
    assert own["status"] == "queued"


async def test_submit_job_over_the_rate_is_refused_with_when_to_retry(core_hub):
    hub = await core_hub(submit_rate=1, submit_burst=1)
    client = await hub.client()
    await client.submit()
    refused = await client.request("submit_job", job_type="t", payload={})
    assert refused["error_code"] == "RATE_LIMITED"
    details = refused["details"]
    assert details["reason"] == "rate" and details["limit_per_second"] == 1
    assert 0 < details["retry_after_ms"] <= 1000
    assert await queued(hub) == 1
    other = await hub.client()  # per client identity
    await other.submit()


async def test_submit_job_beyond_the_queue_bounds_is_refused(core_hub):
    hub = await core_hub(max_queued_jobs=3, max_queued_per_customer=1)
    a, b, c = await hub.client("a"), await hub.client("b"), await hub.client("c")
    await a.submit()
    refused = await a.request("submit_job", job_type="t", payload={})
    assert refused["error_code"] == "RATE_LIMITED"
    assert refused["details"] == {"reason": "customer_queue_full", "queued": 1, "limit": 1}
    await b.submit()
    job_c = (await c.submit())["job_id"]
    d = await hub.client("d")
    full = await d.request("submit_job", job_type="t", payload={})
    assert full["error_code"] == "RATE_LIMITED"
    assert full["details"] == {"reason": "queue_full", "queued": 3, "limit": 3}
    assert await queued(hub) == 3
    await c.request("cancel_job", job_id=job_c)  # a job leaves the queue: room again
    assert (await d.submit())["status"] == "queued"


# --- request_job_status --------------------------------------------------------------------------


async def test_request_job_status_answers_the_jobs_state(core_hub):
    hub = await core_hub()
    client = await hub.client("cust-s")
    ahead = await client.submit(priority=60)
    job = await client.submit(job_type="upscaling", priority=40, max_retries=1)
    status = await client.status(job["job_id"])
    assert status["type"] == "response_job_status"
    assert (status["job_id"], status["status"], status["job_type"]) == (job["job_id"], "queued", "upscaling")
    assert (status["priority"], status["progress"], status["retry_count"], status["max_retries"]) == (
        40,
        0,
        0,
        1,
    )
    assert status["position"] == 2 and status["customer_id"] == "cust-s" and status["created_at"] > 0
    assert "worker_id" not in status and "result" not in status
    worker = await hub.worker(max_concurrent_jobs=2)
    await worker.claim(max_jobs=2)
    await worker.accept(job["job_id"])
    await worker.act("update_job_progress", job["job_id"], progress=30, message="halfway-ish")
    running = await client.status(job["job_id"])
    assert (running["status"], running["worker_id"], running["progress"]) == (
        "in_progress",
        worker.worker_id,
        30,
    )
    assert running["message"] == "halfway-ish" and "position" not in running and running["started_at"] > 0
    await worker.complete(job["job_id"], {"success": True, "n": 1})
    done = await client.status(job["job_id"])
    assert (done["status"], done["progress"], done["result"]) == ("completed", 100, {"success": True, "n": 1})
    assert done["completed_at"] >= done["started_at"]
    assert (await client.status(ahead["job_id"]))["status"] == "assigned"


async def test_request_job_status_of_an_unknown_job_is_job_not_found(core_hub):
    hub = await core_hub()
    client = await hub.client()
    refused = await client.status("job-does-not-exist")
    assert refused["error_code"] == "JOB_NOT_FOUND" and refused["details"] == {"job_id": "job-does-not-exist"}


# --- cancel_job ------------------------------------------------------------------------------------


async def test_cancel_queued_job(core_hub):
    hub = await core_hub()
    client = await hub.client()
    job = await client.submit(requirements={"service_type": "cancel-q"})
    cancelled = await client.request("cancel_job", job_id=job["job_id"], reason="User requested")
    assert cancelled["type"] == "job_cancelled" and cancelled["reason"] == "User requested"
    assert cancelled["status"] == "cancelled" and cancelled["cancelled_at"] > 0
    assert len(client.of("job_cancelled")) == 1  # the reply; not told again as its submitter
    worker = await hub.worker(services=["cancel-q"])
    assert await worker.claim() == []
    again = await client.request("cancel_job", job_id=job["job_id"])
    assert again["error_code"] == "INVALID_STATE"
    assert again["details"] == {"job_id": job["job_id"], "status": "cancelled"}
    missing = await client.request("cancel_job", job_id="job-does-not-exist")
    assert missing["error_code"] == "JOB_NOT_FOUND"


async def test_cancel_job_by_a_monitor_needs_manage_jobs(core_hub):
    hub = await core_hub()
    client = await hub.client()
    job = await client.submit()
    viewer = await hub.monitor(permissions=("view_all_jobs",))
    refused = await viewer.request("cancel_job", job_id=job["job_id"])
    assert refused["error_code"] == "PERMISSION_DENIED"
    assert (await client.status(job["job_id"]))["status"] == "queued"  # changed nothing
    manager = await hub.monitor(permissions=("view_all_jobs", "manage_jobs"))
    assert (await manager.request("cancel_job", job_id=job["job_id"]))["type"] == "job_cancelled"
    (told,) = client.of("job_cancelled", job_id=job["job_id"])  # the submitter hears of it
    assert told["status"] == "cancelled"
    blind = await hub.monitor(permissions=("manage_jobs",))  # cannot see it: not found (D13)
    assert (await blind.request("cancel_job", job_id=job["job_id"]))["error_code"] == "JOB_NOT_FOUND"


# --- subscribe_job ---------------------------------------------------------------------------------


async def test_subscribe_job_confirms_and_enabled_false_stops_the_updates(core_hub):
    hub = await core_hub()
    owner, watcher = await hub.client("cust-w"), await hub.client("cust-w")
    job = await owner.submit()
    confirmed = await watcher.request("subscribe_job", job_id=job["job_id"])
    assert confirmed["type"] == "subscription_confirmed"
    assert (confirmed["subscription_type"], confirmed["job_id"], confirmed["enabled"]) == (
        "job",
        job["job_id"],
        True,
    )
    worker = await hub.worker()
    await worker.claim()
    assert watcher.of("job_update", job_id=job["job_id"], status="assigned")
    off = await watcher.request("subscribe_job", job_id=job["job_id"], enabled=False)
    assert (off["type"], off["enabled"]) == ("subscription_confirmed", False)
    await worker.accept(job["job_id"])
    await worker.complete(job["job_id"])
    assert watcher.of("job_update", job_id=job["job_id"], status="accepted") == []
    assert watcher.of("job_completed") == []
    assert owner.of("job_completed", job_id=job["job_id"])  # the submitter still hears


async def test_a_connection_gets_a_jobs_final_message_once_and_a_new_one_gets_it_at_subscribe(core_hub):
    """D14: subscribing to a final job sends its final message at once, unless this connection
    already had it (the chaos run's client re-subscribes after resubmitting with its idempotency
    key, while the final is on its way: it got job_completed twice)."""
    hub = await core_hub()
    owner = await hub.client("cust-f")
    job = await owner.submit()
    worker = await hub.worker()
    await worker.claim()
    await worker.accept(job["job_id"])
    await worker.complete(job["job_id"])
    assert len(owner.of("job_completed", job_id=job["job_id"])) == 1
    again = await owner.request("subscribe_job", job_id=job["job_id"])
    assert again["type"] == "subscription_confirmed"
    await hub.ticks(0.1)
    assert len(owner.of("job_completed", job_id=job["job_id"])) == 1  # not a second time
    late = await hub.client("cust-f")
    await late.request("subscribe_job", job_id=job["job_id"])
    assert len(late.of("job_completed", job_id=job["job_id"])) == 1  # a new connection learns it


async def test_subscribe_job_refuses_unknown_jobs_and_too_many_subscriptions(core_hub, monkeypatch):
    hub = await core_hub()
    client = await hub.client()
    refused = await client.request("subscribe_job", job_id="job-nope")
    assert refused["error_code"] == "JOB_NOT_FOUND"
    assert not hub.core.subs.jobs_of
    monkeypatch.setattr(subscriptions, "MAX_JOB", 2)
    jobs = [(await client.submit())["job_id"] for _ in range(3)]
    for job_id in jobs[:2]:
        assert (await client.request("subscribe_job", job_id=job_id))["type"] == "subscription_confirmed"
    over = await client.request("subscribe_job", job_id=jobs[2])
    assert over["error_code"] == "RATE_LIMITED"
    assert over["details"] == {"reason": "too_many_subscriptions", "limit": 2}
    assert (await client.request("subscribe_job", job_id=jobs[0]))[
        "type"
    ] == "subscription_confirmed"  # again
    await client.request("subscribe_job", job_id=jobs[0], enabled=False)  # frees one
    assert (await client.request("subscribe_job", job_id=jobs[2]))["type"] == "subscription_confirmed"


# --- subscribe_job_notifications -----------------------------------------------------------------------


async def test_subscribe_job_notifications_answers_with_the_filters_applied(core_hub):
    hub = await core_hub()
    monitor = await hub.monitor(permissions=("view_all_jobs",))
    filters = {"job_types": ["upscaling"], "priority_min": 10, "status": ["queued"]}
    sub = await monitor.request("subscribe_job_notifications", filters=filters)
    assert sub["type"] == "job_notifications_subscribed"
    assert sub["filters_applied"] == filters and sub["enabled"] is True and sub["subscription_id"]
    other = await monitor.request("subscribe_job_notifications", filters={"job_types": ["t"]})
    client = await hub.client()
    await client.submit(job_type="upscaling")
    off = await monitor.request(
        "subscribe_job_notifications", enabled=False, subscription_id=sub["subscription_id"]
    )
    assert (off["subscription_id"], off["filters_applied"], off["enabled"]) == (
        sub["subscription_id"],
        {},
        False,
    )
    await client.submit(job_type="upscaling")
    await client.submit(job_type="t")
    assert len(monitor.of("job_update", job_type="upscaling")) == 1  # before it was removed
    assert len(monitor.of("job_update", job_type="t")) == 1  # the other one stays
    everything = await monitor.request("subscribe_job_notifications", enabled=False)
    assert (everything["subscription_id"], everything["enabled"]) == ("all", False)
    assert not hub.core.subs.notifications and other["subscription_id"]


async def test_subscribe_job_notifications_refusals(core_hub, monkeypatch):
    hub = await core_hub()
    blind = await hub.monitor(permissions=("view_system_stats",))
    denied = await blind.request("subscribe_job_notifications", filters={})
    assert denied["error_code"] == "PERMISSION_DENIED"
    bound = await hub.client("cust-n")
    denied = await bound.request("subscribe_job_notifications", filters={"customer_id": "cust-m"})
    assert denied["error_code"] == "PERMISSION_DENIED"
    assert denied["details"] == {"field": "filters.customer_id", "provided_value": "cust-m"}
    assert not hub.core.subs.notifications
    for _ in range(subscriptions.MAX_NOTIFICATION):
        await bound.request("subscribe_job_notifications", filters={})
    over = await bound.request("subscribe_job_notifications", filters={})
    assert over["error_code"] == "RATE_LIMITED"
    assert over["details"] == {"reason": "too_many_subscriptions", "limit": subscriptions.MAX_NOTIFICATION}
