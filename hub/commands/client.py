"""What job clients (and, to see and cancel, monitors) send: spec D7, D13, D14, D18, D19."""

from __future__ import annotations

from typing import Any

import orjson
from empq.generated.messages.cancel_job import CancelJob
from empq.generated.messages.job_notifications_subscribed import JobNotificationsSubscribed
from empq.generated.messages.request_job_status import RequestJobStatus
from empq.generated.messages.response_job_status import ResponseJobStatus
from empq.generated.messages.submit_job import SubmitJob
from empq.generated.messages.subscribe_job import SubscribeJob
from empq.generated.messages.subscribe_job_notifications import SubscribeJobNotifications
from empq.generated.messages.subscription_confirmed import SubscriptionConfirmed
from empq.hub import lifecycle as states
from empq.hub import subscriptions
from empq.hub.access import may_cancel, visible
from empq.hub.commands.request import Handler, Request
from empq.hub.session import Role
from empq.hub.store import QueueFull, StoreError
from empq.hub.webhooks import WebhookRefused

from empq import protocol


async def submit_job(req: Request[SubmitJob]) -> None:
    msg, session, hub = req.message, req.session, req.hub
    if msg.job_id is not None:
        req.refuse(
            "INVALID_PARAMETERS",
            "job ids are assigned by the hub",
            {"field": "job_id", "provided_value": msg.job_id},
        )
        return
    customer_id = msg.customer_id or session.customer_id
    named_other = session.customer_id is not None and customer_id != session.customer_id
    if named_other or not hub.auth.may_name(session.grant, customer_id):  # D19
        whose = f"for customer {session.customer_id}" if session.customer_id else "for its own customers"
        req.refuse(
            "PERMISSION_DENIED",
            f"this client submits {whose}",
            {"field": "customer_id", "provided_value": msg.customer_id},
        )
        return
    # a token's customer shares one bucket; otherwise the client identity (a label it names
    # for its jobs does not give it another bucket)
    bucket = session.grant.customer_id or session.identity
    wait_ms = hub.limiter.wait_ms(bucket)
    if wait_ms:
        req.refuse(
            "RATE_LIMITED",
            f"over {hub.config.submit_rate:g} submissions per second: retry in {wait_ms} ms",
            {"reason": "rate", "retry_after_ms": wait_ms, "limit_per_second": hub.config.submit_rate},
        )
        return
    try:
        webhook = await hub.webhooks.job_fields(msg, customer_id)
    except WebhookRefused as refused:  # D21
        value = msg.webhook_url if refused.field == "webhook_url" else None
        req.refuse(
            "INVALID_PARAMETERS",
            f"{refused.field}: {refused.text}",
            {"field": refused.field, "provided_value": value, "reason": refused.reason},
        )
        return
    try:
        req.reply(await hub.jobs.submit(session, msg, customer_id, webhook))
    except QueueFull as full:
        if full.per_customer:
            limit, whose = hub.config.max_queued_per_customer, f"customer {customer_id}'s"
        else:
            limit, whose = hub.config.max_queued_jobs, "the"
        req.refuse(
            "RATE_LIMITED",
            f"{whose} queue is full ({full.queued} jobs waiting): retry later",
            {
                "reason": "customer_queue_full" if full.per_customer else "queue_full",
                "queued": full.queued,
                "limit": limit,
            },
        )


async def request_job_status(req: Request[RequestJobStatus]) -> None:
    job = _visible(req, await req.hub.jobs.status(req.message.job_id))
    fields: dict[str, Any] = {
        "job_id": req.message.job_id,
        "status": job["status"],
        "job_type": job["job_type"],
        "priority": int(job["priority"]),
        "progress": float(job.get("progress") or 0),
        "retry_count": int(job.get("retry_count") or 0),
        "max_retries": int(job.get("max_retries") or 0),
        "created_at": int(job["created_at"]),
    }
    if job.get("worker_id"):
        fields["worker_id"] = job["worker_id"]
    for name in ("started_at", "completed_at"):
        if job.get(name):
            fields[name] = int(job[name])
    for name in ("message", "customer_id", "error", "estimated_completion"):
        if job.get(name):
            fields[name] = job[name]
    if job.get("result"):
        fields["result"] = orjson.loads(job["result"])
    position = int(job.get("__position") or 0)
    if position:
        fields["position"] = position
    if job.get("webhook_url"):  # D21: each delivery and its latest attempts
        fields["webhook_deliveries"] = await req.hub.webhooks.deliveries(req.message.job_id)
    req.reply(protocol.make(ResponseJobStatus, **fields))


async def cancel_job(req: Request[CancelJob]) -> None:
    msg = req.message
    customer_id, client_id = await req.hub.store.fields(msg.job_id, "customer_id", "client_id")
    if client_id is None or not visible(req.session, customer_id or None, client_id):
        raise StoreError("JOB_NOT_FOUND")  # D13: existence is not disclosed
    if not may_cancel(req.session):
        req.refuse("PERMISSION_DENIED", "cancelling needs manage_jobs")
        return
    req.reply(await req.hub.jobs.cancel(msg.job_id, msg.reason or "cancelled by client", by=req.conn_id))


async def subscribe_job(req: Request[SubscribeJob]) -> None:
    msg, hub = req.message, req.hub
    subs = hub.subs
    if msg.enabled is False:
        subs.remove_job(req.conn_id, msg.job_id)
        req.reply(_confirmed(msg.job_id, enabled=False))
        return
    if not subs.job_room(req.conn_id, msg.job_id):
        limit = subscriptions.MAX_JOB
        req.refuse(
            "RATE_LIMITED",
            f"at most {limit} job subscriptions per connection (a final job frees one)",
            {"reason": "too_many_subscriptions", "limit": limit},
        )
        return
    job = _visible(req, await hub.jobs.status(msg.job_id))
    if req.conn_id not in hub.sessions:
        return  # gone while the job was read
    subs.add_job(req.conn_id, msg.job_id)
    req.reply(_confirmed(msg.job_id, enabled=True))
    if job["status"] not in states.FINAL:
        # it may have finished between the read and the subscription: read again, so the final
        # message is never missed (and not sent twice if its event got here meanwhile)
        job = await hub.jobs.status(msg.job_id) or job
    if job["status"] not in states.FINAL:
        subs.await_final(msg.job_id, req.conn_id)
        return
    final = hub.jobs.final_message(msg.job_id, job)
    # a connection gets a job's final message once (D14): a client that subscribes while the
    # final is on its way to it (e.g. after resubmitting with its idempotency key) gets no second
    if final is not None and subs.not_yet_final(msg.job_id, [req.conn_id]):
        hub.fanout.send(req.conn_id, final)
        subs.final_sent(msg.job_id, [req.conn_id])
    subs.remove_job(req.conn_id, msg.job_id)  # final: nothing more will come


def _confirmed(job_id: str, enabled: bool) -> SubscriptionConfirmed:
    return protocol.make(SubscriptionConfirmed, subscription_type="job", job_id=job_id, enabled=enabled)


def _visible(req: Request[Any], job: dict[str, str] | None) -> dict[str, str]:
    if job is None or not visible(req.session, job.get("customer_id") or None, job.get("client_id")):
        raise StoreError("JOB_NOT_FOUND")  # D13: existence is not disclosed
    return job


async def subscribe_job_notifications(req: Request[SubscribeJobNotifications]) -> None:
    msg, session, subs = req.message, req.session, req.hub.subs
    if msg.enabled is False:
        subs.remove_notifications(req.conn_id, msg.subscription_id)
        req.reply(
            protocol.make(
                JobNotificationsSubscribed,
                subscription_id=msg.subscription_id or "all",
                filters_applied={},
                enabled=False,
            )
        )
        return
    filters = protocol.to_dict(msg.filters) if msg.filters is not None else {}
    if session.role is Role.MONITOR and "view_all_jobs" not in session.permissions:
        req.refuse("PERMISSION_DENIED", "job notifications need view_all_jobs")
        return
    if session.customer_id is not None:  # D19: a session bound to a customer hears only of its jobs
        if filters.get("customer_id", session.customer_id) != session.customer_id:
            req.refuse(
                "PERMISSION_DENIED",
                f"this connection sees only customer {session.customer_id}'s jobs",
                {"field": "filters.customer_id", "provided_value": filters.get("customer_id")},
            )
            return
        filters["customer_id"] = session.customer_id
    if not subs.notification_room(req.conn_id):
        limit = subscriptions.MAX_NOTIFICATION
        req.refuse(
            "RATE_LIMITED",
            f"at most {limit} notification subscriptions per connection",
            {"reason": "too_many_subscriptions", "limit": limit},
        )
        return
    sub_id = subs.add_notification(req.conn_id, filters)
    req.reply(
        protocol.make(
            JobNotificationsSubscribed, subscription_id=sub_id, filters_applied=filters, enabled=True
        )
    )


HANDLERS: dict[str, Handler] = {
    "submit_job": submit_job,
    "request_job_status": request_job_status,
    "cancel_job": cancel_job,
    "subscribe_job": subscribe_job,
    "subscribe_job_notifications": subscribe_job_notifications,
}
