"""What an operator does from the job browser (spec D20), with who may do it (D13, D19): see a
job in full, retry it, cancel many at once. The transitions themselves are the job manager's
(``JobManager.retry``, ``JobManager.cancel``); the reads are ``browse.py``'s.

Each function takes the registered session of the request and raises ``Refused`` (an ``error``
message: its code maps to an HTTP status) when the session may not, exactly as the WebSocket
would answer: another's job is JOB_NOT_FOUND, an action without ``manage_jobs`` PERMISSION_DENIED.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import TYPE_CHECKING, Any

from empq.generated.messages.error import Error
from empq.hub import lifecycle as states
from empq.hub.access import SEES_STATS, may_cancel, visible
from empq.hub.browse import Browser, JobFilter, detail, last_hour
from empq.hub.openapi_browse import MAX_BULK  # jobs one bulk cancel cancels at most
from empq.hub.session import Role, Session, error
from empq.hub.store import NotRetryable, QueueFull, StoreError

from empq import protocol

if TYPE_CHECKING:
    from empq.hub.core import HubCore

CANCELLABLE = states.sources("cancel")


class Refused(Exception):
    def __init__(self, code: str, text: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(text)
        self.message: Error = error(code, text, None, details)

    def to_dict(self) -> dict[str, Any]:
        return protocol.to_dict(self.message)


async def _visible_job(hub: HubCore, session: Session, job_id: str) -> dict[str, str]:
    job = await hub.jobs.status(job_id)
    if job is None or not visible(session, job.get("customer_id") or None, job.get("client_id")):
        raise Refused("JOB_NOT_FOUND", f"no job {job_id}", {"job_id": job_id})  # D13: not disclosed
    return job


def _may_manage(session: Session, what: str) -> None:
    if not may_cancel(session):
        raise Refused("PERMISSION_DENIED", f"{what} needs manage_jobs")


async def job_detail(hub: HubCore, session: Session, job_id: str) -> dict[str, Any]:
    """The job in full with its timeline and, for a job with a webhook, each delivery and its
    attempts (as ``response_job_status`` has them, D21), if the session may see it."""
    job = await _visible_job(hub, session, job_id)
    if not job.get("webhook_url"):
        return detail(job_id, job, await Browser(hub.store).history(job_id))
    timeline, deliveries = await asyncio.gather(
        Browser(hub.store).history(job_id), hub.webhooks.deliveries(job_id)
    )
    return detail(job_id, job, timeline, [protocol.to_dict(d) for d in deliveries])


async def retry(hub: HubCore, session: Session, job_id: str) -> dict[str, Any]:
    """Retry a failed, cancelled or timed-out job (D20): job clients the jobs they see, monitors
    with manage_jobs. The new job's ``job_accepted`` with ``retry_of``."""
    original = await _visible_job(hub, session, job_id)
    _may_manage(session, "retrying")
    if original["status"] not in states.RETRYABLE:
        raise _not_retryable(job_id, original["status"], original.get("retried_as") or "")
    try:
        accepted = await hub.jobs.retry(job_id, original, session.conn_id)
    except NotRetryable as refused:
        if not refused.status:
            raise Refused("JOB_NOT_FOUND", f"no job {job_id}", {"job_id": job_id}) from None
        raise _not_retryable(job_id, refused.status, refused.retried_as) from None
    except QueueFull as full:
        reason = "customer_queue_full" if full.per_customer else "queue_full"
        raise Refused(
            "RATE_LIMITED", f"the queue is full ({full.queued} jobs waiting): retry later", {"reason": reason}
        ) from None
    return {**protocol.to_dict(accepted), "retry_of": job_id}


def _not_retryable(job_id: str, status: str, retried_as: str) -> Refused:
    if retried_as:
        text = f"job {job_id} was retried already, as {retried_as}"
        return Refused("INVALID_STATE", text, {"job_id": job_id, "status": status, "retried_as": retried_as})
    allowed = ", ".join(sorted(states.RETRYABLE))
    return Refused(
        "INVALID_STATE",
        f"job {job_id} is {status}: only {allowed} jobs are retried",
        {"job_id": job_id, "status": status},
    )


async def bulk_cancel(
    hub: HubCore,
    session: Session,
    filt: JobFilter,
    reason: str,
    limit: int,
    cursor: int | None,
    max_scanned: int,
) -> dict[str, Any]:
    """Cancel up to ``limit`` (at most ``MAX_BULK``) of the jobs the session sees that match
    ``filt`` and may still be cancelled. What was cancelled, what had ended meanwhile, and the
    cursor to go on from (None: no more matched)."""
    _may_manage(session, "cancelling")
    statuses = CANCELLABLE if filt.statuses is None else filt.statuses & CANCELLABLE
    if not statuses:
        return {"cancelled": [], "skipped": [], "next_cursor": None}
    wanted = dataclasses.replace(filt, statuses=frozenset(statuses))
    found, next_cursor = await Browser(hub.store).scan(
        session, wanted, cursor, min(limit, MAX_BULK), max_scanned
    )
    results = await asyncio.gather(
        *(hub.jobs.cancel(job_id, reason, by=session.conn_id) for job_id, _ in found), return_exceptions=True
    )
    cancelled, skipped = [], []
    for (job_id, _), result in zip(found, results, strict=True):
        if isinstance(result, StoreError):  # it ended (or went) between the scan and the cancel
            skipped.append({"job_id": job_id, "status": result.status or "gone"})
        elif isinstance(result, BaseException):
            raise result
        else:
            cancelled.append(job_id)
    return {"cancelled": cancelled, "skipped": skipped, "next_cursor": next_cursor}


async def hour_stats(hub: HubCore, session: Session) -> dict[str, Any]:
    """The last hour per job type over the jobs the session sees (monitors need
    view_system_stats, as for stats); queue depths for whoever sees a whole queue: every job
    (view_all_jobs, no customer) or one customer's."""
    if session.role is Role.MONITOR and not session.permissions & SEES_STATS:
        raise Refused("PERMISSION_DENIED", "stats need view_system_stats")
    whole = session.customer_id is None and "view_all_jobs" in session.permissions
    return await last_hour(Browser(hub.store), session, whole, session.customer_id)
