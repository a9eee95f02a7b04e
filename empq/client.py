"""The Python SDK for job clients: ``EmpQueueClient`` (asyncio).

It has exactly the interface of the protocol reference's "Client Libraries" section::

    client = EmpQueueClient()
    await client.connect("ws://127.0.0.1:3002")
    job_id = await client.submit_job(JobSubmission("text_to_image", {"prompt": "mountains"}))
    await client.subscribe_to_job(job_id, print)
    await client.subscribe_to_stats(print)
    client.on_error(print)
    await client.disconnect()

and on top of it what users of job queues expect::

    async with EmpQueueClient("ws://127.0.0.1:3002", token="...") as client:
        job_id = await client.submit_job({"job_type": "upscale", "payload": {...}, "priority": 80})
        async for update in client.updates(job_id):        # job_update ... job_completed
            print(update.status, update.progress)
        result = await client.wait(job_id, timeout=60)     # JobResult, or JobFailed / JobCancelled
        status = await client.request_status(job_id)       # ResponseJobStatus
        await client.cancel_job(job_id)

Every message is built and parsed with the generated models (``empq.protocol``). Every request
carries an ``id`` and its replies are matched by ``request_id`` (spec D2), so concurrent callers
never read each other's replies, and every request has a timeout. When the connection drops the
client reconnects with exponential backoff (honouring ``server_disconnect.reconnect_after``),
registers again and renews its job, stats and notification subscriptions; ``wait()`` and
``updates()`` carry on across the reconnect (a job already final is reported at once on
re-subscription, spec D14).

``HubConnection``, the connection core it shares with the worker runtime (``empq.worker``), and
the SDK's errors live in ``empq.connection``; they are importable from here too. Message classes
are imported when first used, so ``import empq.client`` stays light.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import logging
import uuid
from collections import OrderedDict
from collections.abc import AsyncGenerator, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from empq import __version__, protocol
from empq.connection import (
    DEFAULT_HUB_URL,
    AuthFailed,
    Backoff,
    Callback,
    ConnectionLost,
    EmpqError,
    HubConnection,
    HubError,
    HubUnreachable,
    Link,
    M,
    RequestTimeout,
)
from empq.generated.defs.base import BaseMessage

if TYPE_CHECKING:
    from empq.generated.defs.job_result import JobResult
    from empq.generated.defs.requirements import Requirements
    from empq.generated.defs.stats import Stats
    from empq.generated.messages.client_registered import ClientRegistered
    from empq.generated.messages.job_accepted import JobAccepted
    from empq.generated.messages.job_cancelled import JobCancelled as JobCancelledMessage
    from empq.generated.messages.job_completed import JobCompleted
    from empq.generated.messages.job_notifications_subscribed import JobNotificationsSubscribed
    from empq.generated.messages.job_update import JobUpdate
    from empq.generated.messages.response_job_status import ResponseJobStatus
    from empq.generated.messages.submit_job import SubmitJob
    from empq.generated.messages.subscription_confirmed import SubscriptionConfirmed

    JobEvent = JobUpdate | JobCompleted | JobCancelledMessage
    """What a job subscription delivers: progress and state changes, completion, cancellation."""

log = logging.getLogger("empq.client")

FINAL_STATES = frozenset({"completed", "failed", "cancelled", "timeout"})
JOB_EVENTS = frozenset({"job_update", "job_completed", "job_cancelled"})
MAX_FINALS_KEPT = 10_000  # final job events remembered, so wait() after the fact still answers


def __getattr__(name: str) -> Any:
    """``JobEvent`` at run time (its classes are imported on first use)."""
    if name == "JobEvent":
        from empq.generated.messages.job_cancelled import JobCancelled as JobCancelledMessage
        from empq.generated.messages.job_completed import JobCompleted
        from empq.generated.messages.job_update import JobUpdate

        globals()[name] = JobUpdate | JobCompleted | JobCancelledMessage
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# --- errors of jobs (connection errors: empq.connection) ---------------------------------------


class JobFailed(EmpqError):
    """The job ended in state ``failed`` (retries exhausted) or ``timeout`` (over its run limit)."""

    def __init__(self, job_id: str, status: str, error: str | None, event: JobEvent | None = None) -> None:
        super().__init__(f"job {job_id} {status}: {error or 'no error text'}")
        self.job_id = job_id
        self.status = status
        self.error = error
        self.event = event


class JobCancelled(EmpqError):
    """The job was cancelled."""

    def __init__(self, job_id: str, reason: str | None = None, event: JobEvent | None = None) -> None:
        super().__init__(f"job {job_id} cancelled" + (f": {reason}" if reason else ""))
        self.job_id = job_id
        self.reason = reason
        self.event = event


# --- helpers -----------------------------------------------------------------------------------


@dataclass
class JobSubmission:
    """A job to submit: the fields of ``submit_job`` (the hub assigns the job id)."""

    job_type: str
    payload: dict[str, Any] = field(default_factory=dict)
    priority: int | None = None
    requirements: Requirements | Mapping[str, Any] | None = None
    customer_id: str | None = None
    max_retries: int | None = None
    metadata: dict[str, Any] | None = None
    timeout_seconds: float | None = None
    webhook_url: str | None = None  # spec D21: the job's events POSTed there too, signed
    webhook_events: list[str] | None = None  # default: completed, failed, cancelled, timeout

    def to_message(self) -> SubmitJob:
        from empq.generated.messages.submit_job import SubmitJob

        fields = {k: v for k, v in self.__dict__.items() if v is not None}
        return protocol.make(SubmitJob, **fields)


def submission_message(job: JobSubmission | SubmitJob | Mapping[str, Any], **overrides: Any) -> SubmitJob:
    """A validated ``submit_job`` from a ``JobSubmission``, a ``SubmitJob`` or a plain mapping."""
    from empq.generated.messages.submit_job import SubmitJob

    if isinstance(job, SubmitJob):
        fields = protocol.to_dict(job)
    elif isinstance(job, JobSubmission):
        fields = protocol.to_dict(job.to_message())
    else:
        fields = dict(job)
    fields.update({k: v for k, v in overrides.items() if v is not None})
    for key in ("type", "timestamp", "id"):
        fields.pop(key, None)
    return protocol.make(SubmitJob, **fields)


def is_final(event: BaseMessage) -> bool:
    """Is this the last event of its job (completed, cancelled, or a final ``job_update``)?"""
    if event.type in ("job_completed", "job_cancelled"):
        return True
    return event.type == "job_update" and cast("JobUpdate", event).status.value in FINAL_STATES


def outcome(event: JobEvent) -> JobResult:
    """The result of a final job event, or the exception it stands for."""
    if event.type == "job_completed":
        return cast("JobCompleted", event).result
    if event.type == "job_cancelled":
        cancelled = cast("JobCancelledMessage", event)
        raise JobCancelled(cancelled.job_id, cancelled.reason, event)
    event = cast("JobUpdate", event)
    status = event.status.value
    if status == "completed":  # a bare job_update (completion normally comes as job_completed)
        from empq.generated.defs.job_result import JobResult

        return JobResult(success=True)
    if status == "cancelled":
        raise JobCancelled(event.job_id, event.message, event)
    raise JobFailed(event.job_id, status, event.error or event.message, event)


def default_client_id() -> str:
    """``empq-cli-<user>``: stable per user, so a later CLI call sees the jobs an earlier one
    submitted (a job client without customer sees only its client_id's jobs, spec D13)."""
    try:
        user = getpass.getuser()
    except Exception:  # no user name in this environment
        user = "user"
    return f"empq-cli-{user}"


_LOST = object()  # put in waiters' queues when the client is closed for good


# --- the job client ----------------------------------------------------------------------------


class EmpQueueClient(HubConnection):
    """A job client (or, with ``client_type="monitor"``, a monitor) of the EmProps Job Queue hub.

    ``client_id``: a job client without customer sees only the jobs its client_id submitted
    (spec D13), so give the same id to every connection that must see the same jobs.
    ``token``: sent as ``Authorization: Bearer`` on the handshake and as ``auth_token``.
    """

    peer_kind = "client"

    def __init__(
        self,
        url: str | None = None,
        *,
        client_id: str | None = None,
        customer_id: str | None = None,
        token: str | None = None,
        client_type: str = "job_client",
        permissions: Iterable[str] | None = None,
        request_timeout: float = 10.0,
        connect_timeout: float = 5.0,
        reconnect: bool = True,
        backoff: Backoff | None = None,
    ) -> None:
        super().__init__(
            url,
            token=token,
            request_timeout=request_timeout,
            connect_timeout=connect_timeout,
            reconnect=reconnect,
            backoff=backoff,
        )
        self.client_id = client_id or f"empq-client-{uuid.uuid4().hex[:8]}"
        self.customer_id = customer_id
        self.client_type = client_type
        self.permissions = list(permissions) if permissions is not None else None
        self.registration: ClientRegistered | None = None
        self._job_callbacks: dict[str, list[Callback]] = {}
        self._job_queues: dict[str, set[asyncio.Queue[Any]]] = {}
        self._subscribed: set[str] = set()  # jobs subscribed on the current connection
        self._finals: OrderedDict[str, JobEvent] = OrderedDict()
        self._stats_callbacks: list[Callback] = []
        self._stats_fields: dict[str, Any] | None = None
        self._notification_callbacks: list[Callback] = []
        self._notification_filters: dict[str, Any] | None = None

    async def __aenter__(self) -> EmpQueueClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.disconnect()

    # connection ----------------------------------------------------------------------------
    def _registration(self) -> BaseMessage:
        from empq.generated.messages.register_client import RegisterClient

        fields: dict[str, Any] = {
            "client_type": self.client_type,
            "client_id": self.client_id,
            "version": __version__,
        }
        if self.customer_id:
            fields["customer_id"] = self.customer_id
        if self.permissions is not None:
            fields["permissions"] = self.permissions
        if self.token:
            fields["auth_token"] = self.token
        return protocol.make(RegisterClient, **fields)

    async def _registered(self, reply: BaseMessage, first: bool) -> None:
        if reply.type != "client_registered":
            raise EmpqError(f"unexpected reply {reply.type} to register_client")
        self.registration = cast("ClientRegistered", reply)

    def _lost(self, link: Link) -> None:
        self._subscribed.clear()

    def _gone(self) -> None:
        for queues in self._job_queues.values():
            for queue in queues:
                queue.put_nowait(_LOST)

    async def _resumed(self) -> None:
        """Renew every subscription: jobs being watched, stats, notifications."""
        jobs = [
            job_id
            for job_id in {*self._job_callbacks, *self._job_queues}
            if job_id not in self._finals
            and (self._job_callbacks.get(job_id) or self._job_queues.get(job_id))
        ]
        results = await asyncio.gather(*(self._ensure_subscribed(j) for j in jobs), return_exceptions=True)
        for job_id, result in zip(jobs, results, strict=True):
            if isinstance(result, Exception):
                log.warning("could not renew the subscription to %s: %s", job_id, result)
        if self._stats_fields is not None:
            await self._subscribe_stats(self._stats_fields)
        if self._notification_filters is not None:
            await self._subscribe_notifications(self._notification_filters)

    async def disconnect(self) -> None:
        """Say goodbye (``disconnect``) and close; pending requests and waits end with
        ``ConnectionLost``."""
        from empq.generated.messages.disconnect import Disconnect

        await self._shutdown(protocol.make(Disconnect, reason="client shutdown", cleanup_subscriptions=True))

    # frames ------------------------------------------------------------------------------------
    def _handle(self, msg: BaseMessage) -> None:
        if msg.type in JOB_EVENTS:
            event = cast("JobEvent", msg)
            job_id = event.job_id
            if is_final(event):
                self._finals[job_id] = event
                self._finals.move_to_end(job_id)
                while len(self._finals) > MAX_FINALS_KEPT:
                    self._finals.popitem(last=False)
            for callback in list(self._job_callbacks.get(job_id, ())):
                self._call(callback, event)
            for queue in list(self._job_queues.get(job_id, ())):
                queue.put_nowait(event)
            for callback in list(self._notification_callbacks):
                self._call(callback, event)
        elif msg.type == "stats_update":
            for callback in list(self._stats_callbacks):
                self._call(callback, msg)

    # jobs ----------------------------------------------------------------------------------------
    async def submit(
        self,
        job: JobSubmission | SubmitJob | Mapping[str, Any],
        *,
        timeout: float | None = None,
        **fields: Any,
    ) -> JobAccepted:
        """Submit a job; returns the hub's ``job_accepted`` (job_id, position, estimated_start,
        notified_workers). ``fields`` override the job's fields. Invalid fields raise pydantic's
        ``ValidationError`` before anything is sent.

        Every submission carries an ``idempotency_key`` (a fresh one unless given; spec D18), so
        it is sent again — and never applied twice — when the connection drops before the reply or
        the hub answers SERVICE_UNAVAILABLE (Redis unreachable), until ``timeout``. Over the hub's
        submission rate (RATE_LIMITED, reason ``rate``) it waits ``retry_after_ms`` and submits
        again within ``timeout``; a full queue (reason ``queue_full``) raises ``HubError``."""
        from empq.generated.messages.job_accepted import JobAccepted

        msg = submission_message(job, **fields)
        if msg.idempotency_key is None:
            msg = submission_message(msg, idempotency_key=uuid.uuid4().hex)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (self.request_timeout if timeout is None else timeout)
        delay = 0.05
        while True:
            try:
                remaining = max(0.001, deadline - loop.time())
                return await self.ask(msg, JobAccepted, timeout=remaining, retry=True)
            except HubError as exc:
                wait = delay
                if exc.code == "RATE_LIMITED" and exc.details.get("reason") == "rate":
                    wait = float(exc.details.get("retry_after_ms", 100)) / 1000
                elif exc.code != "SERVICE_UNAVAILABLE":
                    raise
                if loop.time() + wait >= deadline:
                    raise
                await asyncio.sleep(wait)
            delay = min(delay * 2, 1.0)

    async def submit_job(self, job: JobSubmission | SubmitJob | Mapping[str, Any], **fields: Any) -> str:
        """Submit a job; returns its job id."""
        return (await self.submit(job, **fields)).job_id

    async def request_status(self, job_id: str, *, timeout: float | None = None) -> ResponseJobStatus:
        """The job's state now (any state, including final ones)."""
        from empq.generated.messages.request_job_status import RequestJobStatus
        from empq.generated.messages.response_job_status import ResponseJobStatus

        msg = protocol.make(RequestJobStatus, job_id=job_id)
        return await self.ask(msg, ResponseJobStatus, timeout=timeout, retry=True)

    async def cancel_job(
        self, job_id: str, reason: str | None = None, *, timeout: float | None = None
    ) -> JobCancelledMessage:
        """Cancel a job that is not final yet (``HubError`` INVALID_STATE for a final one)."""
        from empq.generated.messages.cancel_job import CancelJob
        from empq.generated.messages.job_cancelled import JobCancelled as JobCancelledMessage

        fields = {"reason": reason} if reason else {}
        msg = protocol.make(CancelJob, job_id=job_id, **fields)
        return await self.ask(msg, JobCancelledMessage, timeout=timeout)

    async def subscribe_to_job(self, job_id: str, callback: Callback) -> None:
        """``callback(event)`` for each ``job_update``/``job_completed``/``job_cancelled`` of the
        job (sync or async). A job already final is reported at once."""
        self._job_callbacks.setdefault(job_id, []).append(callback)
        try:
            await self._ensure_subscribed(job_id)
        except BaseException:
            self._remove_callback(job_id, callback)
            raise

    async def unsubscribe_from_job(self, job_id: str, callback: Callback | None = None) -> None:
        """Remove one callback (or all) of the job; unsubscribes when nothing else watches it."""
        if callback is None:
            self._job_callbacks.pop(job_id, None)
        else:
            self._remove_callback(job_id, callback)
        await self._maybe_unsubscribe(job_id)

    async def wait(self, job_id: str, timeout: float | None = None) -> JobResult:
        """Wait until the job is final: its ``JobResult`` when completed; ``JobFailed`` (failed or
        timeout), ``JobCancelled``; ``TimeoutError`` after ``timeout`` seconds."""
        async with contextlib.aclosing(self.updates(job_id)) as events, asyncio.timeout(timeout):
            async for event in events:
                if is_final(event):
                    return outcome(event)
        raise ConnectionLost(f"stopped waiting for {job_id}")  # pragma: no cover - updates() ends on final

    async def updates(self, job_id: str) -> AsyncGenerator[JobEvent, None]:
        """Every event of the job from now on, ending with the final one (completion,
        failure, timeout or cancellation). Continues across reconnects."""
        queue: asyncio.Queue[Any] = asyncio.Queue()
        self._job_queues.setdefault(job_id, set()).add(queue)
        try:
            final = self._finals.get(job_id)
            if final is not None:
                yield final
                return
            await self._ensure_subscribed(job_id)
            while True:
                event = await queue.get()
                if event is _LOST:
                    raise ConnectionLost(f"connection to {self.url} closed while watching {job_id}")
                yield event
                if is_final(event):
                    return
        finally:
            queues = self._job_queues.get(job_id)
            if queues is not None:
                queues.discard(queue)
                if not queues:
                    del self._job_queues[job_id]
            if not self._closing and self._link is not None:
                with contextlib.suppress(RuntimeError):  # finalised after the loop stopped
                    self._spawn(self._maybe_unsubscribe(job_id))

    async def _subscribe(self, kind: type[M], *, retry: bool = False, **fields: Any) -> SubscriptionConfirmed:
        """Send a subscription message (subscribe_job, subscribe_stats) and wait for its confirmation."""
        from empq.generated.messages.subscription_confirmed import SubscriptionConfirmed

        return await self.ask(protocol.make(kind, **fields), SubscriptionConfirmed, retry=retry)

    async def _ensure_subscribed(self, job_id: str) -> None:
        from empq.generated.messages.subscribe_job import SubscribeJob

        if job_id in self._subscribed:
            return
        from empq.generated.messages.subscription_confirmed import SubscriptionConfirmed

        msg = protocol.make(SubscribeJob, job_id=job_id)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.request_timeout
        delay = 0.05
        while True:  # again while the hub cannot reach Redis (e.g. a failover), as submit does
            try:
                await self.ask(
                    msg, SubscriptionConfirmed, timeout=max(0.001, deadline - loop.time()), retry=True
                )
                break
            except HubError as exc:
                if exc.code != "SERVICE_UNAVAILABLE" or loop.time() + delay >= deadline:
                    raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)
        if self._link is not None:
            self._subscribed.add(job_id)

    async def _maybe_unsubscribe(self, job_id: str) -> None:
        from empq.generated.messages.subscribe_job import SubscribeJob

        if self._job_callbacks.get(job_id) or self._job_queues.get(job_id) or job_id not in self._subscribed:
            return
        self._subscribed.discard(job_id)
        with contextlib.suppress(EmpqError):
            await self._subscribe(SubscribeJob, job_id=job_id, enabled=False)

    def _remove_callback(self, job_id: str, callback: Callback) -> None:
        callbacks = self._job_callbacks.get(job_id, [])
        with contextlib.suppress(ValueError):
            callbacks.remove(callback)
        if not callbacks:
            self._job_callbacks.pop(job_id, None)

    # stats and notifications ---------------------------------------------------------------------
    async def subscribe_to_stats(
        self,
        callback: Callback,
        interval_seconds: float = 5.0,
        sections: Iterable[str] | None = None,
    ) -> SubscriptionConfirmed:
        """``callback(update: StatsUpdate)`` every ``interval_seconds`` (≥ 1). Job clients get
        the counts; monitors with view_system_stats also the per-worker list (spec D14)."""
        from empq.generated.messages.subscribe_stats import SubscribeStats

        fields: dict[str, Any] = {"enabled": True, "interval_seconds": interval_seconds}
        if sections:
            fields["include_sections"] = list(sections)
        protocol.make(SubscribeStats, **fields)  # invalid fields: ValidationError, nothing registered
        self._stats_callbacks.append(callback)
        try:
            reply = await self._subscribe_stats(fields)
        except BaseException:
            self._stats_callbacks.remove(callback)
            raise
        self._stats_fields = fields
        return reply

    async def _subscribe_stats(self, fields: dict[str, Any]) -> SubscriptionConfirmed:
        from empq.generated.messages.subscribe_stats import SubscribeStats

        return await self._subscribe(SubscribeStats, retry=True, **fields)

    async def unsubscribe_from_stats(self) -> None:
        from empq.generated.messages.subscribe_stats import SubscribeStats

        self._stats_callbacks.clear()
        self._stats_fields = None
        await self._subscribe(SubscribeStats, enabled=False)

    async def request_stats(self, sections: Iterable[str] | None = None) -> Stats:
        """Stats now (``request_stats`` → ``stats_response``)."""
        from empq.generated.messages.request_stats import RequestStats
        from empq.generated.messages.stats_response import StatsResponse

        fields = {"include_sections": list(sections)} if sections else {}
        reply = await self.ask(protocol.make(RequestStats, **fields), StatsResponse, retry=True)
        return reply.stats

    async def subscribe_to_notifications(
        self, callback: Callback, **filters: Any
    ) -> JobNotificationsSubscribed:
        """``callback(event)`` for the events of every job the filters match (customer_id,
        job_types, priority_min, status) that this peer may see (spec D13/D14)."""
        self._notification_callbacks.append(callback)
        try:
            reply = await self._subscribe_notifications(filters)
        except BaseException:
            self._notification_callbacks.remove(callback)
            raise
        self._notification_filters = filters
        return reply

    async def _subscribe_notifications(self, filters: dict[str, Any]) -> JobNotificationsSubscribed:
        from empq.generated.messages.job_notifications_subscribed import JobNotificationsSubscribed
        from empq.generated.messages.subscribe_job_notifications import SubscribeJobNotifications

        fields: dict[str, Any] = {"enabled": True}
        if filters:
            fields["filters"] = filters
        msg = protocol.make(SubscribeJobNotifications, **fields)
        return await self.ask(msg, JobNotificationsSubscribed, retry=True)


__all__ = [
    "DEFAULT_HUB_URL",
    "AuthFailed",
    "Backoff",
    "ConnectionLost",
    "EmpQueueClient",
    "EmpqError",
    "HubConnection",
    "HubError",
    "HubUnreachable",
    "JobCancelled",
    "JobEvent",
    "JobFailed",
    "JobSubmission",
    "RequestTimeout",
    "default_client_id",
    "is_final",
    "outcome",
    "submission_message",
]
