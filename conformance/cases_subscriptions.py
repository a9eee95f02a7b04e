"""Subscription Messages: one job, job notifications with filters, stats."""

from __future__ import annotations

import time
from typing import Any

from empq.conformance import causes
from empq.conformance.ctx import Ctx, expect_field
from empq.conformance.model import INFO, MUST, SHOULD, case
from empq.conformance.wire import SuitePeer, summary

JOBS = "Subscription Messages › Job Subscriptions"
STATS = "Subscription Messages › Stats Subscriptions"

NOTIFICATIONS_REFERENCE = """
// Subscribe to job notifications
{"type": "subscribe_job_notifications", "enabled": true,
 "filters": {"customer_id": "customer-123", "job_types": ["text_to_image", "upscaling"], "priority_min": 70,
             "status": ["queued", "in_progress"]}}
// Subscription confirmation
{"type": "job_notifications_subscribed", "subscription_id": "sub-abc123",
 "filters_applied": {"customer_id": "customer-123", "job_types": ["text_to_image", "upscaling"]}}
"""


async def _run_to_progress(
    ctx: Ctx, worker: SuitePeer, job_ids: list[str], progress: int = 30, complete: bool = True
) -> None:
    """Have ``worker`` claim each of ``job_ids`` (in whatever order the hub assigns them), accept
    it and report progress on it; then complete it, which frees the worker for the next one."""
    pending = set(job_ids)
    while pending:
        jobs = await ctx.claim(worker)
        ctx.check(
            jobs and jobs[0]["job_id"] in pending,
            "a queued job of this case was not assigned",
            expected=f"job_assigned for one of {sorted(pending)}",
            received=[summary(j) for j in jobs] or "no job_assigned",
        )
        job_id = jobs[0]["job_id"]
        pending.discard(job_id)
        await ctx.send(worker, "job_accepted_by_worker", job_id=job_id, worker_id=worker.worker_id)
        await ctx.send(
            worker, "update_job_progress", job_id=job_id, worker_id=worker.worker_id, progress=progress
        )
        if complete:
            await ctx.complete(worker, job_id)


async def _notifications(ctx: Ctx, peer: SuitePeer, **fields: Any) -> dict[str, Any]:
    reply = await ctx.request(peer, "subscribe_job_notifications", "job_notifications_subscribed", **fields)
    if reply["type"] == "error":
        ctx.fail(
            f"subscribe_job_notifications was refused: {reply.get('error_code')} {reply.get('error')}",
            expected="job_notifications_subscribed",
            received=reply,
            cause=causes.refused("subscribe_job_notifications", reply.get("error_code")),
        )
    return reply


def _about(job_id: str) -> Any:
    return lambda f: (
        f.get("job_id") == job_id and f.get("type") in ("job_update", "job_completed", "job_available")
    )


@case(
    "SUB-JOB-001",
    section=JOBS,
    title="subscribe_job is confirmed and the subscriber receives the job's updates and completion",
    tier=MUST,
    reference="""
// Subscribe to specific job
{"type": "subscribe_job", "job_id": "job-abc123"}
Connection Flow: Client->>Hub: Subscribe to Updates; Hub-->>Client: Subscription Confirmed
// Job status change notification
{"type": "job_update", "job_id": "job-abc123", "status": "in_progress", ...}
""",
    messages=("subscribe_job", "subscription_confirmed", "job_update", "job_completed"),
)
async def subscribe_job(ctx: Ctx) -> None:
    client = await ctx.client()
    monitor = await ctx.monitor()
    job_id = (await ctx.submit(client))["job_id"]
    reply = await ctx.request(monitor, "subscribe_job", ("subscription_confirmed", "ack"), job_id=job_id)
    ctx.check(
        reply["type"] != "error",
        f"subscribe_job was refused: {reply.get('error_code')}",
        expected="a confirmation (empq: subscription_confirmed)",
        received=summary(reply),
        cause=causes.refused("subscribe_job", reply.get("error_code")),
    )
    ctx.note(f"confirmed with {reply['type']} {reply.get('subscription_type', '')}".strip())
    worker = await ctx.worker()
    await _run_to_progress(ctx, worker, [job_id], progress=30, complete=False)
    update = await ctx.expect(monitor, "job_update", job_id=job_id, progress=30)
    expect_field(ctx, update, "status", "in_progress")
    await ctx.complete(worker, job_id)
    await ctx.expect(monitor, "job_completed", job_id=job_id)


@case(
    "SUB-JOB-002",
    section=JOBS,
    title="Subscribing to a job that already completed (recorded)",
    tier=INFO,
    reference='{"type": "subscribe_job", "job_id": "job-abc123"}',
    messages=("subscribe_job", "job_completed"),
)
async def subscribe_finished_job(ctx: Ctx) -> None:
    client = await ctx.client()
    worker = await ctx.worker()
    job_id = (await ctx.submit(client))["job_id"]
    await ctx.claim_one(worker, job_id)
    await ctx.complete(worker, job_id)
    await ctx.expect(client, "job_completed", job_id=job_id)
    late = await ctx.client()
    reply = await ctx.request(late, "subscribe_job", ("subscription_confirmed", "ack"), job_id=job_id)
    final = await late.quiet(_about(job_id), 1.0)
    ctx.note(f"reply {reply['type']}; final message {'sent: ' + final['type'] if final else 'not sent'}")


@case(
    "SUB-JOB-003",
    section=JOBS,
    title="subscribe_job for a job that does not exist answers an error",
    tier=SHOULD,
    reference='{"type": "subscribe_job", "job_id": "job-abc123"}',
    messages=("subscribe_job", "error"),
)
async def subscribe_unknown_job(ctx: Ctx) -> None:
    client = await ctx.client()
    reply = await ctx.request(
        client, "subscribe_job", ("subscription_confirmed", "ack"), job_id=f"job-{ctx.service}-none"
    )
    ctx.check(
        reply["type"] == "error",
        f"subscribing to a job that does not exist answered {reply['type']}",
        expected="error (empq: JOB_NOT_FOUND)",
        received=summary(reply),
    )


@case(
    "SUB-NOTIF-001",
    section=JOBS,
    title="subscribe_job_notifications is confirmed with job_notifications_subscribed",
    tier=MUST,
    reference=NOTIFICATIONS_REFERENCE,
    messages=("subscribe_job_notifications", "job_notifications_subscribed"),
)
async def notifications_subscribed(ctx: Ctx) -> None:
    monitor = await ctx.monitor()
    filters = {
        "customer_id": ctx.customer,
        "job_types": [ctx.job_type, "upscaling"],
        "priority_min": 70,
        "status": ["queued", "in_progress"],
    }
    reply = await _notifications(ctx, monitor, enabled=True, filters=filters)
    expect_field(ctx, reply, "type", "job_notifications_subscribed")
    ctx.check(
        bool(reply.get("subscription_id")),
        "job_notifications_subscribed has no subscription_id",
        expected="subscription_id",
        received=summary(reply),
    )


@case(
    "SUB-NOTIF-002",
    section=JOBS,
    title="filters_applied reflects the customer_id and job_types filters asked for",
    tier=SHOULD,
    reference=NOTIFICATIONS_REFERENCE,
    messages=("subscribe_job_notifications", "job_notifications_subscribed"),
)
async def notifications_filters_applied(ctx: Ctx) -> None:
    monitor = await ctx.monitor()
    filters = {"customer_id": ctx.customer, "job_types": [ctx.job_type, "upscaling"], "priority_min": 70}
    reply = await _notifications(ctx, monitor, enabled=True, filters=filters)
    applied = reply.get("filters_applied") or {}
    for key in ("customer_id", "job_types"):
        ctx.check(
            applied.get(key) == filters[key],
            f"filters_applied.{key} is {applied.get(key)!r}",
            expected={key: filters[key]},
            received=applied,
        )
    ctx.note(f"filters_applied {applied!r}")


@case(
    "SUB-NOTIF-003",
    section=JOBS,
    title="Notifications honour job_types and priority_min: matching jobs only",
    tier=SHOULD,
    reference=NOTIFICATIONS_REFERENCE,
    messages=("subscribe_job_notifications", "job_notifications_subscribed", "job_update"),
)
async def notifications_type_priority(ctx: Ctx) -> None:
    monitor = await ctx.monitor()
    await _notifications(
        ctx, monitor, enabled=True, filters={"job_types": [ctx.job_type], "priority_min": 70}
    )
    client = await ctx.client()
    hit = (await ctx.submit(client, priority=80))["job_id"]
    low = (await ctx.submit(client, priority=10))["job_id"]
    other = (await ctx.submit(client, priority=90, job_type=f"{ctx.job_type}-other"))["job_id"]
    worker = await ctx.worker()
    await _run_to_progress(ctx, worker, [hit, low, other])
    await ctx.expect(monitor, "job_update", job_id=hit, status="in_progress")
    for job_id, why in ((low, "priority 10 < priority_min 70"), (other, "job_type not in job_types")):
        leaked = await monitor.quiet(_about(job_id), 0.3)
        ctx.check(
            leaked is None,
            f"a notification for a job outside the filters arrived ({why})",
            expected="no notification",
            received=leaked and summary(leaked),
        )


@case(
    "SUB-NOTIF-004",
    section=JOBS,
    title="Notifications honour customer_id: another customer's jobs are not sent",
    tier=SHOULD,
    reference=NOTIFICATIONS_REFERENCE,
    messages=("subscribe_job_notifications", "job_notifications_subscribed", "job_update"),
)
async def notifications_customer(ctx: Ctx) -> None:
    monitor = await ctx.monitor()
    await _notifications(
        ctx, monitor, enabled=True, filters={"customer_id": ctx.customer, "job_types": [ctx.job_type]}
    )
    mine = await ctx.client()
    theirs = await ctx.client(customer_id=f"{ctx.customer}-other")
    hit = (await ctx.submit(mine))["job_id"]
    miss = (await ctx.submit(theirs))["job_id"]
    worker = await ctx.worker()
    await _run_to_progress(ctx, worker, [hit, miss])
    await ctx.expect(monitor, "job_update", job_id=hit, status="in_progress")
    leaked = await monitor.quiet(_about(miss), 0.3)
    ctx.check(
        leaked is None,
        "a notification for another customer's job arrived",
        expected="no notification",
        received=leaked and summary(leaked),
    )


@case(
    "SUB-NOTIF-005",
    section=JOBS,
    title="Notifications honour the status filter: only the states asked for",
    tier=SHOULD,
    reference=NOTIFICATIONS_REFERENCE,
    messages=("subscribe_job_notifications", "job_notifications_subscribed", "job_update"),
)
async def notifications_status(ctx: Ctx) -> None:
    monitor = await ctx.monitor()
    await _notifications(
        ctx, monitor, enabled=True, filters={"job_types": [ctx.job_type], "status": ["in_progress"]}
    )
    client = await ctx.client()
    job_id = (await ctx.submit(client))["job_id"]
    worker = await ctx.worker()
    await _run_to_progress(ctx, worker, [job_id])
    await ctx.expect(monitor, "job_update", job_id=job_id, status="in_progress")
    others = [f for f in monitor.backlog if f.get("job_id") == job_id and f.get("type") == "job_update"]
    ctx.check(
        not others,
        "job_update frames in states outside the status filter arrived",
        expected="only status in_progress",
        received=[summary(f) for f in others],
    )


@case(
    "SUB-NOTIF-006",
    section=JOBS,
    title="enabled false ends job notifications",
    tier=SHOULD,
    reference='{"type": "subscribe_job_notifications", "enabled": true, ...}',
    messages=("subscribe_job_notifications", "job_notifications_subscribed"),
)
async def notifications_disabled(ctx: Ctx) -> None:
    monitor = await ctx.monitor()
    await _notifications(ctx, monitor, enabled=True, filters={"job_types": [ctx.job_type]})
    client = await ctx.client()
    first = (await ctx.submit(client))["job_id"]
    worker = await ctx.worker()
    await _run_to_progress(ctx, worker, [first])
    await ctx.expect(monitor, "job_update", job_id=first, status="in_progress")
    await _notifications(ctx, monitor, enabled=False)
    second = (await ctx.submit(client))["job_id"]
    await _run_to_progress(ctx, worker, [second])
    await ctx.expect(client, "job_update", job_id=second, status="in_progress")
    leaked = await monitor.quiet(_about(second), 0.3)
    ctx.check(
        leaked is None,
        "notifications still arrive after enabled false",
        expected="no notification",
        received=leaked and summary(leaked),
    )


STATS_REFERENCE = """
// Subscribe to system stats
{"type": "subscribe_stats", "enabled": true, "interval_seconds": 5,
 "include_sections": ["jobs", "workers", "system"]}
// Stats subscription confirmation
{"type": "subscription_confirmed", "subscription_type": "stats", "update_interval": 5,
 "next_broadcast": 1705312350000}
"""


@case(
    "SUB-STATS-001",
    section=STATS,
    title="subscribe_stats is confirmed with subscription_confirmed (stats, update_interval)",
    tier=MUST,
    reference=STATS_REFERENCE,
    messages=("subscribe_stats", "subscription_confirmed"),
)
async def stats_subscribed(ctx: Ctx) -> None:
    monitor = await ctx.monitor()
    reply = await ctx.request(
        monitor,
        "subscribe_stats",
        "subscription_confirmed",
        enabled=True,
        interval_seconds=5,
        include_sections=["jobs", "workers", "system"],
    )
    expect_field(ctx, reply, "type", "subscription_confirmed", "reply to subscribe_stats")
    expect_field(ctx, reply, "subscription_type", "stats")
    expect_field(ctx, reply, "update_interval", 5)
    ctx.note(f"next_broadcast {reply.get('next_broadcast')!r}")


@case(
    "SUB-STATS-002",
    section=STATS,
    title="The periodic stats broadcast (its type is not named by the reference: recorded)",
    tier=INFO,
    reference=STATS_REFERENCE,
    messages=("subscribe_stats", "subscription_confirmed", "stats_update"),
)
async def stats_broadcast(ctx: Ctx) -> None:
    client = await ctx.client()  # a job client: nothing else is sent to it unasked
    reply = await ctx.request(
        client,
        "subscribe_stats",
        "subscription_confirmed",
        enabled=True,
        interval_seconds=1,
        include_sections=["jobs"],
    )
    expect_field(ctx, reply, "type", "subscription_confirmed", "reply to subscribe_stats")
    start = time.monotonic()
    first = await client.quiet(lambda f: True, 2.5)
    if first is None:
        ctx.note("no broadcast within 2.5 s of a 1 s interval")
        return
    second = await client.quiet(lambda f: f.get("type") == first.get("type"), 2.5)
    took = time.monotonic() - start
    ctx.note(
        f"broadcast type {first.get('type')!r}; "
        + (f"two broadcasts in {took:.1f} s" if second else "no second broadcast within 2.5 s")
    )


@case(
    "SUB-STATS-003",
    section=STATS,
    title="subscribe_stats with enabled false ends the broadcasts",
    tier=SHOULD,
    reference=STATS_REFERENCE,
    messages=("subscribe_stats", "subscription_confirmed"),
)
async def stats_unsubscribe(ctx: Ctx) -> None:
    client = await ctx.client()
    await ctx.request(client, "subscribe_stats", "subscription_confirmed", enabled=True, interval_seconds=1)
    reply = await ctx.request(client, "subscribe_stats", "subscription_confirmed", enabled=False)
    ctx.check(
        reply["type"] != "error",
        "enabled false was refused",
        expected="a confirmation",
        received=summary(reply),
    )
    client.backlog.clear()
    late = await client.quiet(lambda f: True, 1.6)
    ctx.check(
        late is None,
        "stats broadcasts go on after enabled false",
        expected="nothing for 1.6 s (interval 1 s)",
        received=late and summary(late),
    )


@case(
    "STATS-REQ-001",
    section=STATS,
    title="request_stats is answered (the reply's type is not named by the reference: recorded)",
    tier=SHOULD,
    reference='{"type": "request_stats", "include_sections": ["jobs", "workers"]}',
    messages=("request_stats", "stats_response"),
)
async def request_stats(ctx: Ctx) -> None:
    client = await ctx.client()
    rid = "conf-stats-1"
    await ctx.send(client, "request_stats", id=rid, include_sections=["jobs", "workers"])
    ctx.step = "waiting for the reply to request_stats"
    reply = await client.wait("a reply to request_stats", lambda f: True, ctx.timeout)
    ctx.check(
        reply.get("type") != "error",
        f"request_stats was refused: {reply.get('error_code')}",
        expected="stats",
        received=summary(reply),
    )
    stats = reply.get("stats")
    sections = sorted(stats) if isinstance(stats, dict) else None
    ctx.note(f"answered with {reply.get('type')!r}; sections {sections}")
