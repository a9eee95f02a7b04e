"""The job manager: each job transition from start to end, one method each.

A method makes the transition's one Lua call (``store.py``), gets a named result, and does
everything that follows from it: the ``job_update`` or final message to whoever listens, the
worker's slot, the "claimable again" notice, the metrics. Commands (``commands/``), timers,
lost or departing workers and the HTTP API all go through these methods. The steps and the
states they start from are ``lifecycle.py``'s table.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import TYPE_CHECKING, Any

import orjson
from empq.generated.messages.job_accepted import JobAccepted
from empq.generated.messages.job_assigned import JobAssigned
from empq.generated.messages.job_cancelled import JobCancelled
from empq.generated.messages.job_completed import JobCompleted
from empq.generated.messages.submit_job import SubmitJob
from empq.hub import job_messages as messages
from empq.hub import lifecycle as states
from empq.hub.job_messages import job_update
from empq.hub.matching import JobClass
from empq.hub.progress import Pending, ProgressWriter
from empq.hub.session import Session
from empq.hub.store import (
    AlreadySubmitted,
    ClaimedJob,
    Completed,
    Failed,
    JobEvent,
    Moved,
    Routing,
    StoreError,
)
from pydantic import BaseModel

from empq import protocol
from empq.protocol import Outgoing

if TYPE_CHECKING:
    from empq.hub.core import HubCore
    from empq.hub.workers import LocalWorker

log = logging.getLogger("empq.hub")
job_log = logging.getLogger("empq.hub.jobs")  # one line per job that ends (silence: set it to WARNING)


def ended(job_id: str, routing: Routing, status: str, worker_id: str | None, detail: object) -> None:
    """A job reached a final state: the log says which, what kind, how and who ran it."""
    if not job_log.isEnabledFor(logging.INFO):
        return
    job_log.info(
        "job %s (%s) %s%s%s",
        job_id,
        routing.job_type,
        status,
        f" by worker {worker_id}" if worker_id else "",
        f": {detail}" if detail else "",
        extra={
            "event": "job_final",
            "job_id": job_id,
            "job_type": routing.job_type,
            "status": status,
            "worker_id": worker_id,
            "customer": routing.customer_id,
        },
    )


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def iso(ms: float) -> str | None:
    """RFC 3339 UTC; None for a time that is not one (out of range)."""
    try:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms / 1000))
    except (OverflowError, ValueError, OSError):
        return None


class Seconds(float):
    """A duration, written as such only if the log line is written."""

    def __str__(self) -> str:
        return f"in {float(self):.3g} s"


class JobManager:
    def __init__(self, hub: HubCore) -> None:
        self.hub = hub
        self.progress_writer = ProgressWriter(hub, self._progress_written, hub.config.coalesce_progress)

    async def status(self, job_id: str) -> dict[str, str] | None:
        """The job's hash with its live queue position (``__position``); None if unknown."""
        return await self.hub.store.status(job_id)

    # submit -----------------------------------------------------------------------------------
    async def submit(
        self, session: Session, msg: SubmitJob, customer_id: str | None, webhook: dict[str, str] | None = None
    ) -> Outgoing:
        """Queue a job (``store.QueueFull`` when the queue bound is reached); its ``job_accepted``.
        ``webhook``: the job hash fields of its webhook (``Webhooks.job_fields``, spec D21)."""
        hub = self.hub
        requirements = protocol.to_dict(msg.requirements) if msg.requirements is not None else None
        job_class = JobClass.of(msg.job_type, requirements)
        job_id = f"job-{uuid.uuid4().hex}"
        priority = msg.priority if msg.priority is not None else 50
        # the model fills the schema's default when absent: the hub's configured default wins then
        sent = "max_retries" in msg.model_fields_set and msg.max_retries is not None
        max_retries = msg.max_retries if sent else hub.config.default_max_retries
        idempotency = None
        if msg.idempotency_key is not None:  # D18: once per key and client identity
            scope = f"{session.identity}\0{customer_id or ''}\0{msg.idempotency_key}"
            idempotency = (scope, int(hub.config.idempotency_ttl_s * 1000))
        try:
            position = await hub.store.submit(
                job_id,
                job_class,
                priority,
                {
                    "id": job_id,
                    "job_type": msg.job_type,
                    "priority": priority,
                    "payload": orjson.dumps(msg.payload),
                    "requirements": orjson.dumps(requirements) if requirements is not None else None,
                    "customer_id": customer_id,
                    "client_id": session.identity,
                    "origin": session.conn_id,
                    "max_retries": max_retries,
                    "retry_count": 0,
                    "timeout_ms": int(msg.timeout_seconds * 1000) if msg.timeout_seconds else None,
                    "metadata": orjson.dumps(msg.metadata) if msg.metadata is not None else None,
                    "created_at": now_ms(),
                    **(webhook or {}),
                },
                idempotency,
                hub.config.max_queued_jobs,
                customer_id,
                hub.config.max_queued_per_customer,
            )
        except AlreadySubmitted as first:  # a repeat: the first reply again, nothing queued
            return protocol.outgoing(
                JobAccepted, job_id=first.job_id, status="queued", position=first.position, notified_workers=0
            )
        hub.subs.await_final(job_id, session.conn_id)
        routing = Routing(
            session.conn_id, session.identity, customer_id, msg.job_type, priority, job_class.id
        )
        notified = self._queued(job_id, job_class, routing, requirements)
        return self._accepted(job_id, position, notified)

    def _queued(
        self, job_id: str, job_class: JobClass, routing: Routing, requirements: dict[str, Any] | None
    ) -> int:
        """A new job is queued: idle workers that can run it are told (else an alert says nobody
        can), notification subscribers hear of it; the number of workers told."""
        hub = self.hub
        hub.metrics.job_submitted(routing.job_type)
        notified = 0
        if hub.workers.someone_can_run(job_class, routing.customer_id):
            notified = hub.fanout.job_claimable(job_id, job_class.id, routing.customer_id, routing.priority)
        else:
            hub.monitoring.alert(
                f"no_capable_worker:{job_id}",
                "warning",
                "no_capable_worker",
                f"No connected worker can run job {job_id}",
                {"job_id": job_id, "job_type": routing.job_type, "requirements": requirements or {}},
                [
                    "Start a worker with the required service, component and hardware",
                    "Review the job's requirements",
                ],
                routing.customer_id,
            )
        if hub.subs.notifications or hub.fanout.peer_hubs:  # subscribers here, or maybe on another hub
            queued = job_update(job_id, states.QUEUED, job_type=routing.job_type, priority=routing.priority)
            hub.fanout.publish(job_id, routing, queued, states.QUEUED, exclude=routing.origin)
        return notified

    def _accepted(self, job_id: str, position: int, notified: int) -> Outgoing:
        hub = self.hub
        estimate = None
        if hub.mean_processing_time is not None:
            ahead = (position - 1) / max(1, len(hub.workers.local))
            estimate = iso(now_ms() + ahead * hub.mean_processing_time * 1000)
        return protocol.outgoing(
            JobAccepted,
            job_id=job_id,
            status="queued",
            position=position,
            notified_workers=notified,
            estimated_start=estimate,
        )

    async def retry(self, job_id: str, original: dict[str, str], origin: str) -> Outgoing:
        """Submit again a job that failed, was cancelled or timed out (D20): a new job with its
        type, payload, requirements, priority, limits, metadata, customer, submitter and webhook
        (D21: its URL is checked again at each attempt), linked
        both ways (``retry_of`` on the new one, ``retried_as`` on the original, which stays as
        it ended). ``original``: its hash as ``status`` reads it; ``origin``: the connection
        asking. ``store.NotRetryable`` when it may not be retried (any more), ``QueueFull``."""
        hub = self.hub
        requirements = orjson.loads(original["requirements"]) if original.get("requirements") else None
        job_type, customer_id = original["job_type"], original.get("customer_id") or None
        job_class = JobClass.of(job_type, requirements)
        new_id = f"job-{uuid.uuid4().hex}"
        priority = int(original.get("priority") or 50)
        fields: dict[str, Any] = {"id": new_id, "job_type": job_type, "priority": priority}
        for name in (
            "payload",
            "requirements",
            "customer_id",
            "client_id",
            "max_retries",
            "timeout_ms",
            "metadata",
            "webhook_url",
            "webhook_events",
            "webhook_target",
        ):
            fields[name] = original.get(name) or None
        fields.update(origin=origin, retry_count=0, created_at=now_ms(), retry_of=job_id)
        position = await hub.store.submit(
            new_id,
            job_class,
            priority,
            fields,
            None,
            hub.config.max_queued_jobs,
            customer_id,
            hub.config.max_queued_per_customer,
            retry_of=job_id,
        )
        routing = Routing(origin, original["client_id"], customer_id, job_type, priority, job_class.id)
        notified = self._queued(new_id, job_class, routing, requirements)
        log.info("job %s (%s) retried as %s", job_id, job_type, new_id, extra={"event": "job_retried"})
        return self._accepted(new_id, position, notified)

    # a worker's steps ---------------------------------------------------------------------------
    async def claim(
        self, worker: LocalWorker, max_jobs: int, claim_timeout: int, preferred: list[str]
    ) -> list[ClaimedJob]:
        """Up to ``max_jobs`` jobs for the worker, within its free slots (D10)."""
        hub = self.hub
        hub.workers.claiming(worker)
        want = min(max_jobs, worker.free)
        if want <= 0:
            return []
        started = time.perf_counter()
        claimed = await hub.store.claim(worker.worker_id, worker.capabilities, want, claim_timeout, preferred)
        hub.metrics.claim_served(time.perf_counter() - started)
        for job in claimed:
            hub.workers.hold(worker.worker_id, job.job_id)
            update = messages.assigned(job.job_id, worker.worker_id)
            hub.fanout.publish(job.job_id, job.routing, update, states.ASSIGNED)
        return claimed

    async def accept(self, worker_id: str, job_id: str) -> None:
        self.progress_writer.seal(worker_id)  # its later updates run after this, in Redis too
        try:
            moved = await self.hub.store.accept(worker_id, job_id)
        except StoreError as refused:
            self._not_held(worker_id, job_id, refused)
            raise
        update = messages.accepted(job_id, moved.previous, worker_id)
        self.hub.fanout.publish(job_id, moved.routing, update, states.ACCEPTED)

    async def progress(self, worker_id: str, job_id: str, progress: float, fields: dict[str, Any]) -> None:
        """Written with the other updates of this tick (``progress.py``: the latest per job)."""
        try:
            await self.progress_writer.update(worker_id, job_id, progress, fields)
        except StoreError as refused:
            self._not_held(worker_id, job_id, refused)
            raise

    def _progress_written(self, entry: Pending, moved: Moved) -> None:
        update = messages.progressed(
            entry.job_id, moved.previous, entry.worker_id, entry.progress, entry.latest
        )
        self.hub.fanout.publish(entry.job_id, moved.routing, update, states.IN_PROGRESS)

    async def complete(
        self, worker_id: str, job_id: str, result: dict[str, Any], processing_time: float | None
    ) -> Completed:
        hub = self.hub
        self.progress_writer.seal(worker_id)  # after the updates this worker sent before
        try:
            done = await hub.store.complete(worker_id, job_id, orjson.dumps(result), processing_time)
        except StoreError as refused:
            self._not_held(worker_id, job_id, refused)
            raise
        hub.metrics.job_completed(done.routing.job_type, done.processing_time)
        hub.workers.release(worker_id, job_id)
        routing = done.routing
        message = messages.completed(
            job_id, worker_id, result, routing.priority, done.processing_time, routing.job_type
        )
        hub.fanout.publish(job_id, routing, message, states.COMPLETED)
        ended(job_id, done.routing, states.COMPLETED, worker_id, Seconds(done.processing_time))
        return done

    async def fail(
        self, worker_id: str, job_id: str, error: str, retry: bool, details: dict[str, Any] | None
    ) -> Failed:
        hub, config = self.hub, self.hub.config
        self.progress_writer.seal(worker_id)  # after the updates this worker sent before
        try:
            failed = await hub.store.fail(
                worker_id,
                job_id,
                error,
                retry,
                int(config.retry_base_seconds * 1000),
                int(config.retry_max_seconds * 1000),
                orjson.dumps(details) if details is not None else None,
            )
        except StoreError as refused:
            self._not_held(worker_id, job_id, refused)
            raise
        hub.workers.release(worker_id, job_id)
        hub.metrics.job_failed(failed.routing.job_type, failed.retry)
        status = states.QUEUED if failed.retry else states.FAILED
        if failed.retry:  # queued again once the delay has passed (the sweep then says claimable)
            update = job_update(
                job_id,
                states.QUEUED,
                failed.previous,
                worker_id=worker_id,
                retry_count=failed.retry_count,
                error=error,
                message=f"retry {failed.retry_count} scheduled in {failed.delay_ms / 1000:g}s",
            )
        else:
            update = messages.failed(job_id, failed.previous, worker_id, failed.retry_count, error)
        hub.fanout.publish(job_id, failed.routing, update, status)
        if not failed.retry:
            detail = f"{error} (retries: {failed.retry_count})"
            ended(job_id, failed.routing, states.FAILED, worker_id, detail)
        return failed

    def _not_held(self, worker_id: str, job_id: str, refused: StoreError) -> None:
        """A worker's step was refused: when Redis says it does not hold the job (any more),
        neither does its slot here (e.g. a complete_job retried after a reply lost in a Redis
        restart)."""
        if not (refused.code == "INVALID_STATE" and refused.status in states.HELD):
            self.hub.workers.release(worker_id, job_id)

    # cancel -------------------------------------------------------------------------------------
    async def cancel(self, job_id: str, reason: str, by: str | None = None) -> Outgoing:
        """Cancel wherever the job is; the worker holding it is told to stop (D13)."""
        hub = self.hub
        self.progress_writer.seal()  # after the updates of this tick (the job's, if any)
        at = now_ms()
        cancelled = await hub.store.cancel(job_id, reason, at)
        message = messages.cancelled(job_id, at, reason)
        if cancelled.holder:
            stop = messages.cancelled(job_id, at, reason, worker_id=cancelled.holder)
            hub.fanout.to_worker(cancelled.holder, stop, release=job_id)
        hub.fanout.publish(job_id, cancelled.routing, message, states.CANCELLED, exclude=by)
        ended(job_id, cancelled.routing, states.CANCELLED, cancelled.holder, reason)
        return message

    # transitions without a message: timers, workers leaving ------------------------------------
    def on_timer(self, event: JobEvent) -> None:
        """A Redis timer fired (``store.sweep``)."""
        if event.event == "retry_ready":
            self.claimable(event.job_id, event.routing)
            return
        if event.event == "claim_expired":
            status = states.QUEUED
            update = job_update(
                event.job_id,
                status,
                event.previous,
                worker_id=event.worker_id,
                message="claim timed out: job returned to the queue",
            )
        else:  # time_limit
            status = states.TIMEOUT
            update = messages.timed_out(event.job_id, event.previous, event.worker_id)
        self.hub.fanout.to_worker(event.worker_id, update, release=event.job_id)
        self.hub.fanout.publish(event.job_id, event.routing, update, status)
        if status == states.TIMEOUT:
            ended(event.job_id, event.routing, states.TIMEOUT, event.worker_id, "past its time limit")
        else:
            self.claimable(event.job_id, event.routing)

    async def release_worker(self, worker_id: str, lost: bool) -> list[JobEvent]:
        """Hand back every job a worker holds: it disconnected (no retry counted) or is lost (a
        retry each; a job out of retries fails)."""
        hub = self.hub
        events = await hub.store.release_worker(worker_id, count_retry=lost)
        for event in events:
            status = states.QUEUED if event.event == "release" else states.FAILED
            if status == states.FAILED:
                text = messages.lost_text(worker_id)
                update = messages.lost(event.job_id, event.previous, worker_id)
            else:
                text = (
                    f"worker {worker_id} lost: job returned to the queue"
                    if lost
                    else "worker disconnected: job returned to the queue"
                )
                update = job_update(event.job_id, status, event.previous, message=text)
            hub.fanout.publish(event.job_id, event.routing, update, status)
            if status == states.FAILED:
                ended(event.job_id, event.routing, status, worker_id, text)
            if lost:
                hub.metrics.job_failed(event.routing.job_type, retry=status == states.QUEUED)
                if hub.workers.get(worker_id) is None:  # connected to another hub: it frees the slot
                    hub.fanout.to_worker(worker_id, update, release=event.job_id)
            if status == states.QUEUED:
                self.claimable(event.job_id, event.routing)
        return events

    def claimable(self, job_id: str, routing: Routing) -> None:
        """A job became claimable again: idle workers (of every hub) hear of it as of a new job."""
        self.hub.fanout.job_claimable(job_id, routing.class_id, routing.customer_id, routing.priority)

    # final messages -------------------------------------------------------------------------------
    def assignment(
        self, job: ClaimedJob, worker_id: str, claim_timeout: int, request_id: str | None
    ) -> bytes:
        """A claimed job's ``job_assigned``, its payload sent on as stored (not parsed again)."""
        routing = job.routing
        message = protocol.outgoing(
            JobAssigned,
            job_id=job.job_id,
            worker_id=worker_id,
            job_type=routing.job_type,
            priority=routing.priority,
            payload=orjson.Fragment(job.payload),
            claim_timeout=claim_timeout,
            retry_count=job.retry_count,
            max_retries=job.max_retries,
        )
        if routing.customer_id is not None:
            message.fields["customer_id"] = routing.customer_id
        if request_id:
            message.fields["request_id"] = request_id
        if job.requirements is not None:
            message.fields["requirements"] = orjson.Fragment(job.requirements)
        return message.encode()

    def final_message(self, job_id: str, job: dict[str, Any]) -> BaseModel | Outgoing | None:
        """A final job's last message (job_completed, job_cancelled or job_update), from its hash."""
        status = job["status"]
        worker = {"worker_id": job["worker_id"]} if job.get("worker_id") else {}
        if status == states.COMPLETED:
            return protocol.make(
                JobCompleted,
                job_id=job_id,
                status=status,
                result=orjson.loads(job["result"]),
                priority=int(job["priority"]),
                processing_time=float(job.get("processing_time") or 0),
                job_type=job["job_type"],
                **worker,
            )
        if status == states.CANCELLED:
            cancelled_at = int(job.get("cancelled_at") or job["completed_at"])
            return protocol.make(JobCancelled, job_id=job_id, status=status, cancelled_at=cancelled_at)
        if status in states.FINAL:
            return job_update(job_id, status, error=job.get("error") or None, **worker)
        return None

    async def resync_finals(self, reason: str) -> int:
        """Deliver the final message of every job that local connections still wait on and that
        ended meanwhile, read from Redis. Job events cross hubs over pub/sub after the transition:
        a hub that died in between, or a bus subscription lost in a Redis restart, loses them."""
        hub = self.hub
        job_ids = list(hub.subs.awaiting)
        sent = 0
        for start in range(0, len(job_ids), 500):
            chunk = job_ids[start : start + 500]
            jobs = await asyncio.gather(*(hub.store.status(j) for j in chunk), return_exceptions=True)
            for job_id, job in zip(chunk, jobs, strict=True):
                if isinstance(job, BaseException) or job is None or job["status"] not in states.FINAL:
                    continue
                message = self.final_message(job_id, job)
                owed = hub.subs.not_yet_final(job_id, hub.subs.awaiting.get(job_id, ()))
                owed &= hub.sessions.keys()
                if message is not None:
                    for conn_id in owed:
                        hub.fanout.send(conn_id, message)
                    sent += len(owed)
                    hub.subs.final_sent(job_id, owed)
                hub.subs.job_ended(job_id)
        if sent:
            log.info("%s: %d final job message(s) re-read from Redis and delivered", reason, sent)
        return sent
