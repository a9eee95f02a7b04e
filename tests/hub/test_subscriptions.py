"""hub/subscriptions.py: who hears of a job (spec D9, D14) — its subscribers (a final job's message
at once), notification subscribers whose filters all match and who may see the job — and the
per-connection bookkeeping (bounds, what a connection is owed, what goes when it goes).
In-process on a real redis-server, and ``Subscriptions`` on its own."""

from __future__ import annotations

from empq.hub import subscriptions
from empq.hub.session import Role, Session
from empq.hub.store import Routing
from empq.hub.subscriptions import NotificationSub, StatsSub, Subscriptions


async def test_subscribe_job_gets_updates_and_final_message(core_hub):
    hub = await core_hub()
    owner = await hub.client("cust-sub")
    watcher = await hub.client("cust-sub")
    job = await owner.submit(requirements={"service_type": "sub"})
    confirmed = await watcher.request("subscribe_job", job_id=job["job_id"])
    assert confirmed["subscription_type"] == "job" and confirmed["job_id"] == job["job_id"]
    worker = await hub.worker(services=["sub"])
    await worker.claim()
    await worker.accept(job["job_id"])
    await worker.act("update_job_progress", job["job_id"], progress=40)
    await worker.complete(job["job_id"])
    assert watcher.of("job_update", job_id=job["job_id"], status="in_progress", progress=40)
    assert len(watcher.of("job_completed", job_id=job["job_id"])) == 1
    late = await hub.client("cust-sub")
    await late.request("subscribe_job", job_id=job["job_id"])
    assert late.of("job_completed", job_id=job["job_id"])  # already final: sent at once
    stranger = await hub.client("someone-else")
    refused = await stranger.request("subscribe_job", job_id=job["job_id"])
    assert refused["error_code"] == "JOB_NOT_FOUND"
    assert not hub.core.subs.jobs  # a final job keeps no subscription


async def test_job_notifications_with_filters(core_hub):
    hub = await core_hub()
    monitor = await hub.monitor()
    sub = await monitor.request(
        "subscribe_job_notifications",
        filters={"job_types": ["upscaling"], "priority_min": 70, "status": ["queued", "in_progress"]},
    )
    assert sub["subscription_id"] and sub["filters_applied"]["priority_min"] == 70
    client = await hub.client()
    low = await client.submit(job_type="upscaling", priority=10, requirements={"service_type": "nf"})
    other = await client.submit(job_type="text_to_image", priority=90, requirements={"service_type": "nf"})
    hit = await client.submit(job_type="upscaling", priority=80, requirements={"service_type": "nf"})
    (update,) = monitor.of("job_update", job_id=hit["job_id"], status="queued")
    assert update["priority"] == 80
    worker = await hub.worker(services=["nf"], max_concurrent_jobs=3)
    jobs = await worker.claim(max_jobs=3)
    for j in jobs:
        await worker.send("update_job_progress", job_id=j["job_id"], worker_id=worker.worker_id, progress=5)
    assert monitor.of("job_update", job_id=hit["job_id"], status="in_progress")
    for job in (low, other):
        assert monitor.of("job_update", job_id=job["job_id"]) == []
    assert monitor.of("job_update", job_id=hit["job_id"], status="assigned") == []  # status filter
    off = await monitor.request("subscribe_job_notifications", enabled=False)
    assert off["enabled"] is False
    after = await client.submit(job_type="upscaling", priority=80, requirements={"service_type": "nf"})
    assert monitor.of("job_update", job_id=after["job_id"]) == []


async def test_job_client_notifications_stay_within_its_customer(core_hub):
    hub = await core_hub()
    mine = await hub.client("c-1")
    sub = await mine.request("subscribe_job_notifications", filters={})
    assert sub["filters_applied"] == {"customer_id": "c-1"}
    refused = await mine.request("subscribe_job_notifications", filters={"customer_id": "c-2"})
    assert refused["error_code"] == "PERMISSION_DENIED"
    theirs = await hub.client("c-2")
    job = await theirs.submit()
    assert mine.of("job_update", job_id=job["job_id"]) == []
    own = await (await hub.client("c-1")).submit()
    assert mine.of("job_update", job_id=own["job_id"], status="queued")


# --- Subscriptions on its own ------------------------------------------------------------------------

ROUTING = Routing("conn-origin", "me", "A", "upscaling", 60, "class-1")


def test_a_notification_matches_when_every_filter_does():
    assert NotificationSub("c", {}).matches(ROUTING, "queued")
    every = {"customer_id": "A", "job_types": ["upscaling"], "priority_min": 60, "status": ["queued"]}
    assert NotificationSub("c", every).matches(ROUTING, "queued")
    for miss in ({"customer_id": "B"}, {"job_types": ["t"]}, {"priority_min": 61}, {"status": ["failed"]}):
        assert not NotificationSub("c", {**every, **miss}).matches(ROUTING, "queued"), miss


def test_targets_are_the_origin_the_subscribers_and_matching_viewers():
    subs = Subscriptions("h")
    sessions = {
        "conn-origin": Session("conn-origin", role=Role.JOB_CLIENT, client_id="me"),
        "sub": Session("sub", role=Role.JOB_CLIENT, customer_id="A"),
        "seer": Session("seer", role=Role.MONITOR, permissions=frozenset({"view_all_jobs"})),
        "blind": Session("blind", role=Role.MONITOR),
        "other-customer": Session("other-customer", role=Role.JOB_CLIENT, customer_id="B"),
    }
    subs.add_job("sub", "job-1")
    for conn_id in ("seer", "blind", "other-customer"):
        subs.add_notification(conn_id, {})
    assert subs.targets("job-1", ROUTING, "queued", sessions) == {"conn-origin", "sub", "seer"}
    gone = {k: v for k, v in sessions.items() if k != "conn-origin"}
    assert subs.targets("job-1", ROUTING, "queued", gone) == {"sub", "seer"}  # origin not connected here


def test_job_subscriptions_are_bounded_per_connection(monkeypatch):
    monkeypatch.setattr(subscriptions, "MAX_JOB", 2)
    subs = Subscriptions("h")
    subs.add_job("c", "j1")
    assert subs.job_room("c", "j2")
    subs.add_job("c", "j2")
    assert not subs.job_room("c", "j3") and subs.job_room("c", "j1")  # one it has is no more
    assert subs.job_room("other", "j3")
    subs.job_ended("j1")  # a final job frees its own
    assert subs.job_room("c", "j3")
    for _ in range(subscriptions.MAX_NOTIFICATION):
        assert subs.notification_room("c")
        subs.add_notification("c", {})
    assert not subs.notification_room("c") and subs.notification_room("other")


def test_a_final_message_is_owed_once_per_connection_and_remembered_boundedly(monkeypatch):
    subs = Subscriptions("h")
    subs.await_final("j1", "a")
    subs.await_final("j1", "b")
    assert subs.not_yet_final("j1", ["a", "b"]) == {"a", "b"}
    subs.final_sent("j1", ["a"])
    assert subs.not_yet_final("j1", ["a", "b"]) == {"b"}
    subs.job_ended("j1")
    assert subs.awaiting == {} and subs.awaiting_of == {}
    monkeypatch.setattr(subscriptions, "RECENT_FINALS", 2)
    for job in ("j2", "j3", "j4"):
        subs.final_sent(job, ["a"])
    assert list(subs.finals) == ["j3", "j4"]  # the oldest forgotten


def test_a_connection_that_goes_leaves_nothing_behind():
    subs = Subscriptions("h")
    subs.add_job("c", "j1")
    subs.add_job("d", "j1")
    subs.add_notification("c", {})
    subs.set_stats("c", StatsSub(1000, ("jobs",), 0))
    subs.await_final("j1", "c")
    subs.drop("c")
    assert subs.jobs == {"j1": {"d"}} and subs.jobs_of == {"d": {"j1"}}
    assert subs.notifications == {} and subs.stats == {}
    assert subs.awaiting == {} and subs.awaiting_of == {}
    subs.remove_job("d", "j1")
    assert subs.jobs == {} and subs.jobs_of == {}
