"""The worker runtime: ``EmpWorker`` pulls jobs from the hub and runs them.

    worker = EmpWorker("ws://127.0.0.1:3002", services=["comfyui"], max_concurrent=2)

    @worker.handler("text_to_image")
    async def generate(job: Job, progress: Progress) -> dict:
        for step in range(1, 11):
            await do_one_step(job.payload)
            await progress(step * 10, f"step {step}/10")
        return {"output_files": ["https://.../image.png"]}      # success defaults to true

    await worker.run()        # until SIGTERM/SIGINT: then drain (finish, or hand jobs back)

Handlers run on the worker's event loop: run blocking work (CPU-bound code, sync HTTP clients)
with ``await asyncio.to_thread(...)`` so heartbeats and progress keep flowing.

What it does, following the spec (``spec/README.md``):

- registers with its capabilities (services, components, hardware, ``max_concurrent_jobs``) and
  heartbeats at the cadence the hub gives (``worker_registered.heartbeat_interval``, D16), with
  ``load``, ``current_jobs``, ``system_info`` and each connector's ``connector_status``;
- claims (D10) right after registering and after each job, on ``job_available`` and on a timer,
  never more jobs than its free slots; confirms each with ``job_accepted_by_worker``;
- runs the handler for the job's type, else for its ``requirements.service_type``, else the
  connector of that service, else the default handler; ``progress(percent, message)`` sends
  ``update_job_progress``; the return value is the ``complete_job`` result, an exception a
  ``fail_job`` (retried by the hub unless ``JobError(retry=False)``, D12);
- cancels the handler's task when the job is cancelled (``job_cancelled``, D13) or taken back
  (``job_update`` queued after a claim timeout, ``timeout`` past the run limit);
- on SIGTERM drains: stops claiming (``worker_status`` draining), lets running jobs finish within
  ``drain_timeout``, then sends ``disconnect``, which hands any job still running back to the
  queue without counting a retry;
- when the connection drops it reconnects with backoff and registers again with the same
  worker_id: within the hub's grace period it keeps its jobs (``resumed_jobs``) and finishes
  them, reporting results it could not send while away; jobs the hub no longer gives it are
  stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from empq import __version__, protocol
from empq.connection import (
    Backoff,
    ConnectionLost,
    EmpqError,
    HubConnection,
    HubError,
    Link,
    RequestTimeout,
)
from empq.connectors import Connector, JobError, Progress
from empq.generated.defs.base import BaseMessage
from empq.generated.defs.job_result import JobResult
from empq.generated.defs.requirements import Requirements
from empq.generated.messages.ack import Ack
from empq.generated.messages.claim_job import ClaimJob
from empq.generated.messages.complete_job import CompleteJob
from empq.generated.messages.connector_ws_status import ConnectorWsStatus
from empq.generated.messages.disconnect import Disconnect
from empq.generated.messages.fail_job import FailJob
from empq.generated.messages.job_accepted_by_worker import JobAcceptedByWorker
from empq.generated.messages.job_assigned import JobAssigned
from empq.generated.messages.job_available import JobAvailable
from empq.generated.messages.job_cancelled import JobCancelled
from empq.generated.messages.job_completed_ack import JobCompletedAck
from empq.generated.messages.job_failed_ack import JobFailedAck
from empq.generated.messages.job_update import JobUpdate
from empq.generated.messages.register_worker import RegisterWorker
from empq.generated.messages.service_request import ServiceRequest
from empq.generated.messages.update_job_progress import UpdateJobProgress
from empq.generated.messages.worker_heartbeat import WorkerHeartbeat
from empq.generated.messages.worker_heartbeat_ack import WorkerHeartbeatAck
from empq.generated.messages.worker_registered import WorkerRegistered
from empq.generated.messages.worker_status import WorkerStatus

log = logging.getLogger("empq.worker")

R = TypeVar("R", bound=BaseMessage)
HandlerResult = Mapping[str, Any] | JobResult | None
Handler = Callable[["Job", Progress], Awaitable[HandlerResult]]
EventCallback = Callable[[str, dict[str, Any]], Any]
GONE_CODES = frozenset({"NOT_JOB_HOLDER", "JOB_NOT_FOUND"})
RELEASED_STATES = frozenset({"queued", "timeout", "failed", "cancelled", "completed"})


class JobGone(EmpqError):
    """The hub no longer gives this job to this worker (cancelled, timed out, requeued)."""


class _Past(EmpqError):
    """INVALID_STATE: the job is already past what the message asks (e.g. completed by an earlier
    attempt whose ack was lost)."""

    def __init__(self, status: str | None) -> None:
        super().__init__(f"job is {status}")
        self.status = status


@dataclass(eq=False)
class Job:
    """One job in this worker's hands: the ``job_assigned`` message and what the worker tracks."""

    assignment: JobAssigned
    worker: EmpWorker = field(repr=False)
    state: str = "assigned"  # assigned -> running -> reporting
    lost: bool = False  # the hub took it back (cancelled, timed out, released while away)
    lost_reason: str | None = None
    task: asyncio.Task[None] | None = field(default=None, repr=False)
    started: float = 0.0
    sending: set[asyncio.Task[None]] = field(default_factory=set, repr=False)  # progress in flight

    @property
    def job_id(self) -> str:
        return self.assignment.job_id

    @property
    def job_type(self) -> str:
        return self.assignment.job_type

    @property
    def payload(self) -> dict[str, Any]:
        return self.assignment.payload

    @property
    def priority(self) -> int:
        return self.assignment.priority

    @property
    def requirements(self) -> Requirements | None:
        return self.assignment.requirements

    @property
    def service(self) -> str | None:
        return self.assignment.requirements.service_type if self.assignment.requirements else None

    @property
    def customer_id(self) -> str | None:
        return self.assignment.customer_id

    @property
    def retry_count(self) -> int:
        return self.assignment.retry_count or 0

    @property
    def max_retries(self) -> int | None:
        return self.assignment.max_retries

    def progress(self, percent: float, message: str | None = None, **fields: Any) -> asyncio.Task[None]:
        """Report progress (``update_job_progress``). Sent at once; await the returned task to
        wait for the hub's ack. ``fields``: current_step, estimated_completion, connector_details."""
        task = self.worker._spawn(self.worker._progress(self, percent, message, fields))
        self.sending.add(task)
        task.add_done_callback(self.sending.discard)
        return task

    async def report_service_request(
        self,
        service_type: str,
        *,
        method: str = "POST",
        url: str | None = None,
        endpoint: str | None = None,
        payload: dict[str, Any] | None = None,
    ) -> None:
        """Tell the hub (and its monitors) about a request made to the service (telemetry)."""
        fields = {"method": method, "url": url, "endpoint": endpoint, "payload": payload}
        msg = protocol.make(
            ServiceRequest,
            job_id=self.job_id,
            worker_id=self.worker.worker_id,
            service_type=service_type,
            **{k: v for k, v in fields.items() if v is not None},
        )
        with contextlib.suppress(EmpqError):
            await self.worker.ask(msg, Ack, timeout=min(self.worker.request_timeout, 5))


def _result_dict(result: HandlerResult) -> dict[str, Any]:
    if result is None:
        return {"success": True}
    if isinstance(result, BaseModel):
        return protocol.to_dict(result)
    out = dict(result)
    out.setdefault("success", True)
    return out


def _system_info(started: float) -> dict[str, Any]:
    info: dict[str, Any] = {"uptime": round(time.monotonic() - started, 3)}
    with contextlib.suppress(OSError, AttributeError):
        info["cpu_usage"] = round(min(100.0, os.getloadavg()[0] / (os.cpu_count() or 1) * 100), 1)
    with contextlib.suppress(OSError, ValueError, KeyError, ZeroDivisionError):
        with open("/proc/meminfo", encoding="ascii") as f:
            mem = {line.split(":")[0]: int(line.split()[1]) for line in f if line.split()[1:2]}
        info["memory_usage"] = round(100 * (1 - mem["MemAvailable"] / mem["MemTotal"]), 1)
    return info


class EmpWorker(HubConnection):
    """A worker: see the module documentation.

    ``services``/``components``/``hardware``: capabilities the hub matches jobs against (D8);
    services default to the connectors' services. ``max_concurrent``: slots (jobs at once).
    ``connectors``: ``Connector`` instances run jobs of their service when no handler matches.
    ``token``: worker token (``Authorization: Bearer`` and ``auth_token``).
    ``claim_interval``: seconds between claims when idle and not told of a job (job_available).
    ``drain_timeout``: seconds a drain waits for running jobs before handing them back.
    ``report_timeout``: how long a result waits (across reconnects) to reach the hub.
    """

    peer_kind = "worker"

    def __init__(
        self,
        url: str | None = None,
        *,
        worker_id: str | None = None,
        services: Iterable[str] | None = None,
        components: Iterable[str] | None = None,
        hardware: Mapping[str, Any] | None = None,
        max_concurrent: int = 1,
        connectors: Iterable[Connector] = (),
        handler: Handler | None = None,
        token: str | None = None,
        allowed_customers: Iterable[str] | None = None,
        preferred_types: Iterable[str] | None = None,
        claim_interval: float = 5.0,
        claim_timeout_ms: int | None = None,
        drain_timeout: float = 30.0,
        report_timeout: float = 120.0,
        subscribe_to_jobs: bool = True,
        request_timeout: float = 10.0,
        connect_timeout: float = 5.0,
        reconnect: bool = True,
        backoff: Backoff | None = None,
        extra_capabilities: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(
            url,
            token=token,
            request_timeout=request_timeout,
            connect_timeout=connect_timeout,
            reconnect=reconnect,
            backoff=backoff,
        )
        # max_concurrent (1-1000) and an explicit worker_id are checked by the register_worker model
        # at the end: ValidationError, a ValueError
        if worker_id is None:
            worker_id = f"worker-{socket.gethostname()}-{uuid.uuid4().hex[:6]}"
        self.worker_id = worker_id
        self.connectors = list(connectors)
        service_list = list(services or ())
        for connector in self.connectors:
            if connector.service not in service_list:
                service_list.append(connector.service)
        if not service_list:
            raise ValueError("a worker needs at least one service (or a connector)")
        self.max_concurrent = max_concurrent
        capabilities: dict[str, Any] = {"services": service_list, "max_concurrent_jobs": max_concurrent}
        if components:
            capabilities["components"] = list(components)
        if hardware:
            capabilities["hardware"] = dict(hardware)
        if allowed_customers is not None:
            capabilities["allowed_customers"] = list(allowed_customers)
        capabilities.update(extra_capabilities or {})
        self.capabilities = capabilities
        self.preferred_types = list(preferred_types) if preferred_types else None
        self.claim_interval = claim_interval
        self.claim_timeout_ms = claim_timeout_ms
        self.drain_timeout = drain_timeout
        self.report_timeout = report_timeout
        self.subscribe_to_jobs = subscribe_to_jobs
        self.registration: WorkerRegistered | None = None
        self.heartbeat_interval = 20.0  # seconds; the hub's value once registered
        self.jobs: dict[str, Job] = {}
        self.counts: Counter[str] = Counter()  # completed, failed, cancelled, lost, handed_back
        self.draining = False
        self._by_type: dict[str, Handler] = {}
        self._by_service: dict[str, Handler] = {}
        self._default: Handler | None = handler
        self._event_callbacks: list[EventCallback] = []
        self._wake = asyncio.Event()
        self._jobs_changed = asyncio.Event()
        self._stopped = asyncio.Event()
        self._loops: list[asyncio.Task[None]] = []
        self._started_at = time.monotonic()
        self._stopping = False
        self._drain_task: asyncio.Task[None] | None = None
        # validate the registration now: a bad capability fails here, not on the wire
        self._registration()

    # handlers --------------------------------------------------------------------------------
    def handler(
        self, job_type: str | None = None, *, service: str | None = None
    ) -> Callable[[Handler], Handler]:
        """Decorator: ``@worker.handler("text_to_image")``, ``@worker.handler(service="a1111")``,
        ``@worker.handler()`` (default)."""

        def register(fn: Handler) -> Handler:
            self.add_handler(fn, job_type, service=service)
            return fn

        return register

    def add_handler(self, fn: Handler, job_type: str | None = None, *, service: str | None = None) -> None:
        if job_type is not None:
            self._by_type[job_type] = fn
        elif service is not None:
            self._by_service[service] = fn
        else:
            self._default = fn

    def handler_for(self, job: Job) -> Handler | None:
        """The job type's handler, else its service's, else that service's connector, else the
        default handler, else (job without service) the first connector."""
        if job.job_type in self._by_type:
            return self._by_type[job.job_type]
        service = job.service
        if service is not None:
            if service in self._by_service:
                return self._by_service[service]
            for connector in self.connectors:
                if connector.service == service:
                    return connector
        if self._default is not None:
            return self._default
        if service is None and self.connectors:
            return self.connectors[0]
        return None

    def on_event(self, callback: EventCallback) -> None:
        """``callback(event, info)`` for what the worker does: registered, reconnected,
        disconnected, job_started, job_completed, job_failed, job_cancelled, job_lost,
        draining, stopped."""
        self._event_callbacks.append(callback)

    def _emit(self, event: str, **info: Any) -> None:
        for callback in self._event_callbacks:
            self._call(callback, event, info)

    @property
    def free(self) -> int:
        return 0 if self.draining or self._stopping else max(0, self.max_concurrent - len(self.jobs))

    # lifecycle ---------------------------------------------------------------------------------
    async def start(self, url: str | None = None) -> None:
        """Start the connectors, connect and register, start heartbeating and claiming."""
        self._started_at = time.monotonic()
        self._stopped.clear()
        for connector in self.connectors:
            connector.attach(self._connector_changed)
            await connector.start()
        await self.connect(url)
        loop = asyncio.get_running_loop()
        self._loops = [loop.create_task(self._claim_loop()), loop.create_task(self._heartbeat_loop())]
        await self._announce()

    async def run(self, url: str | None = None, *, handle_signals: bool = True) -> None:
        """``start``, then work until stopped; SIGTERM/SIGINT drain (a second one stops at once)."""
        await self.start(url)
        loop = asyncio.get_running_loop()
        installed = []
        if handle_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.add_signal_handler(sig, self._on_signal, sig)
                    installed.append(sig)
        try:
            await self._stopped.wait()
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)
            if not self._stopped.is_set():
                await self.stop()

    def _on_signal(self, sig: int) -> None:
        if self._drain_task is None:
            log.info(
                "%s: draining (finishing running jobs, up to %g s)",
                signal.Signals(sig).name,
                self.drain_timeout,
            )
            self._drain_task = self._spawn(self.drain())
        else:
            log.info("%s again: stopping now, handing running jobs back", signal.Signals(sig).name)
            self._spawn(self.stop())

    async def wait_stopped(self) -> None:
        await self._stopped.wait()

    async def drain(self, timeout: float | None = None) -> None:
        """Stop claiming, let running jobs finish (up to ``timeout``, default ``drain_timeout``),
        then ``stop`` — which hands back whatever is still running."""
        timeout = self.drain_timeout if timeout is None else timeout
        if not self.draining:
            self.draining = True
            self._wake.set()
            self._emit("draining", running=sorted(self.jobs), timeout=timeout)
            if self.connected:
                msg = protocol.make(
                    WorkerStatus, worker_id=self.worker_id, status="draining", available_slots=0
                )
                with contextlib.suppress(EmpqError):
                    await self.ask(msg, Ack, timeout=min(self.request_timeout, 5))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.jobs and loop.time() < deadline:
            changed = self._jobs_changed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), deadline - loop.time())
        await self.stop("worker drained" if not self.jobs else "drain timeout: handing jobs back")

    async def stop(self, reason: str = "worker shutdown") -> None:
        """Stop at once: ``disconnect`` (the hub requeues held jobs without counting a retry,
        spec D16), cancel running handlers, stop the connectors."""
        if self._stopping:
            await self._stopped.wait()
            return
        self._stopping = True
        for task in self._loops:
            task.cancel()
        handed_back = [job for job in self.jobs.values() if not job.lost]
        for job in handed_back:
            job.lost, job.lost_reason = True, "handed back (worker stopping)"
        await self._shutdown(protocol.make(Disconnect, reason=reason, cleanup_subscriptions=True))
        tasks = [job.task for job in handed_back if job.task is not None and not job.task.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5)
        self.counts["handed_back"] += len(handed_back)
        for connector in self.connectors:
            with contextlib.suppress(Exception):
                await connector.stop()
        self._emit("stopped", reason=reason, handed_back=[job.job_id for job in handed_back])
        self._stopped.set()

    # registration --------------------------------------------------------------------------------
    def _registration(self) -> BaseMessage:
        fields: dict[str, Any] = {
            "worker_id": self.worker_id,
            "capabilities": self.capabilities,
            "subscribe_to_jobs": self.subscribe_to_jobs,
            "status": "draining" if self.draining else "idle",
            "version": __version__,
        }
        if self.token:
            fields["auth_token"] = self.token
        return protocol.make(RegisterWorker, **fields)

    async def _registered(self, reply: BaseMessage, first: bool) -> None:
        if not isinstance(reply, WorkerRegistered):
            raise EmpqError(f"unexpected reply {reply.type} to register_worker")
        self.registration = reply
        if reply.heartbeat_interval:
            self.heartbeat_interval = reply.heartbeat_interval / 1000
        resumed = {job_id.root for job_id in reply.resumed_jobs or ()}
        for job in list(self.jobs.values()):
            if job.job_id not in resumed:
                self._lose(job, "released by the hub while the worker was away")
        for job_id in sorted(resumed - set(self.jobs)):
            # held by this worker id but unknown here (this process restarted): give it back
            self._spawn(self._fail_unknown(job_id))
        self._emit(
            "registered" if first else "reconnected",
            url=self.url,
            worker_id=self.worker_id,
            heartbeat_interval=self.heartbeat_interval,
            resumed_jobs=sorted(resumed),
        )

    async def _resumed(self) -> None:
        await self._announce()

    def _lost(self, link: Link) -> None:
        if not self._stopping:
            self._emit("disconnected", url=self.url)

    def _gone(self) -> None:
        if not self._stopping:  # closed for good without stop(): e.g. AUTH_FAILED on reconnect
            self._spawn(self.stop("connection closed for good"))

    async def _announce(self) -> None:
        """After (re)registering: connector states, a heartbeat, a claim."""
        for connector in self.connectors:
            await self._send_connector_status(connector)
        with contextlib.suppress(EmpqError):
            await self._heartbeat()
        self._wake.set()

    # frames from the hub -----------------------------------------------------------------------
    def _handle(self, msg: BaseMessage) -> None:
        if isinstance(msg, JobAssigned):
            self._assigned(msg)
        elif isinstance(msg, JobAvailable):
            self._wake.set()
        elif isinstance(msg, JobCancelled):
            job = self.jobs.get(msg.job_id)
            if job is not None:
                self.counts["cancelled"] += 1
                self._lose(
                    job, f"cancelled: {msg.reason}" if msg.reason else "cancelled", event="job_cancelled"
                )
        elif isinstance(msg, JobUpdate):
            job = self.jobs.get(msg.job_id)
            if job is not None and msg.status.value in RELEASED_STATES:
                self._lose(job, msg.message or msg.error or f"job is {msg.status.value} now")

    def _assigned(self, msg: JobAssigned) -> None:
        if msg.job_id in self.jobs:
            return
        job = Job(msg, self)
        self.jobs[msg.job_id] = job
        self._pulse()
        job.task = asyncio.get_running_loop().create_task(self._run_job(job), name=f"job {msg.job_id}")

    def _lose(self, job: Job, reason: str, event: str = "job_lost") -> None:
        if job.lost:
            return
        job.lost, job.lost_reason = True, reason
        if event == "job_lost":
            self.counts["lost"] += 1
        self._emit(event, job_id=job.job_id, reason=reason)
        if job.task is not None and not job.task.done() and job.state != "reporting":
            job.task.cancel()

    def _pulse(self) -> None:
        self._jobs_changed.set()
        self._jobs_changed = asyncio.Event()

    # claiming ------------------------------------------------------------------------------------
    async def _claim_loop(self) -> None:
        while not self.draining:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.claim_interval)
            self._wake.clear()
            while self.free > 0 and self.connected and not self.draining:
                want = min(self.free, 100)
                try:
                    got = await self.claim(want)
                except EmpqError as exc:
                    log.debug("claim failed: %s", exc)
                    break
                if got < want:
                    break

    async def claim(self, max_jobs: int) -> int:
        """One ``claim_job``; returns how many jobs were assigned (each is started at once)."""
        fields: dict[str, Any] = {
            "worker_id": self.worker_id,
            "max_jobs": max_jobs,
            "current_load": round(len(self.jobs) / self.max_concurrent, 3),
            "available_resources": {"concurrent_slots": self.free},
        }
        if self.preferred_types:
            fields["preferred_types"] = self.preferred_types
        if self.claim_timeout_ms:
            fields["claim_timeout"] = self.claim_timeout_ms

        def done(frames: list[BaseMessage]) -> bool:
            return isinstance(frames[-1], Ack) or sum(isinstance(f, JobAssigned) for f in frames) >= max_jobs

        frames = await self.request(protocol.make(ClaimJob, **fields), done_when=done)
        return sum(isinstance(f, JobAssigned) for f in frames)

    # running a job -------------------------------------------------------------------------------
    async def _run_job(self, job: Job) -> None:
        try:
            try:
                accept = protocol.make(JobAcceptedByWorker, job_id=job.job_id, worker_id=self.worker_id)
                await self._report(job, accept, Ack)
            except _Past as exc:  # accepted by an attempt whose ack the dropped connection lost
                if exc.status not in ("accepted", "in_progress"):
                    raise JobGone(str(exc)) from exc
            if job.lost:
                return
            handler = self.handler_for(job)
            job.state, job.started = "running", time.monotonic()
            self._emit(
                "job_started",
                job_id=job.job_id,
                job_type=job.job_type,
                priority=job.priority,
                retry_count=job.retry_count,
            )
            if handler is None:
                error = JobError(
                    f"no handler for job type {job.job_type!r} (service {job.service!r})", retry=False
                )
                await self._fail(job, error, 0.0)
                return
            try:
                result = await handler(job, job.progress)
            except Exception as exc:
                if not job.lost:
                    await self._fail(job, exc, time.monotonic() - job.started)
                return
            if not job.lost:
                await self._complete(job, result, time.monotonic() - job.started)
        except asyncio.CancelledError:
            if not job.lost:
                raise
        except JobGone as exc:
            self._lose(job, str(exc))
        except EmpqError as exc:
            log.warning("job %s: could not report to the hub: %s", job.job_id, exc)
        finally:
            if self.jobs.get(job.job_id) is job:
                del self.jobs[job.job_id]
            self._pulse()
            self._wake.set()

    async def _flush_progress(self, job: Job) -> None:
        """Progress reports still in flight go before the outcome (the hub refuses them after)."""
        if job.sending:
            await asyncio.wait(set(job.sending), timeout=self.request_timeout)

    async def _complete(self, job: Job, result: HandlerResult, elapsed: float) -> None:
        try:
            msg = protocol.make(
                CompleteJob,
                job_id=job.job_id,
                worker_id=self.worker_id,
                result=_result_dict(result),
                processing_time=round(elapsed, 6),
            )
        except (ValidationError, TypeError, ValueError) as exc:
            await self._fail(
                job, JobError(f"the handler returned an invalid result: {exc}", retry=False), elapsed
            )
            return
        await self._flush_progress(job)
        job.state = "reporting"
        with contextlib.suppress(_Past):
            await self._report(job, msg, JobCompletedAck)
        self.counts["completed"] += 1
        self._emit("job_completed", job_id=job.job_id, job_type=job.job_type, processing_time=elapsed)

    async def _fail(self, job: Job, exc: BaseException, elapsed: float) -> None:
        retry = exc.retry if isinstance(exc, JobError) else True
        details: dict[str, Any] = {"error_type": type(exc).__name__}
        if isinstance(exc, JobError):
            details.update(exc.details)
        else:
            details["traceback"] = "".join(traceback.format_exception(exc))[-2000:]
        text = (str(exc) or type(exc).__name__)[:2000]
        msg = protocol.make(
            FailJob,
            job_id=job.job_id,
            worker_id=self.worker_id,
            error=text,
            retry=retry,
            error_details=details,
            processing_time=round(elapsed, 6),
        )
        await self._flush_progress(job)
        job.state = "reporting"
        ack = None
        with contextlib.suppress(_Past):
            ack = await self._report(job, msg, JobFailedAck)
        self.counts["failed"] += 1
        self._emit(
            "job_failed",
            job_id=job.job_id,
            job_type=job.job_type,
            error=text,
            retry_scheduled=bool(ack and ack.retry_scheduled),
            retry_delay=ack.retry_delay if ack else None,
        )

    async def _report(self, job: Job | None, msg: BaseMessage, reply: type[R]) -> R:
        """Send a job message until the hub answers, across reconnects (within
        ``report_timeout``). ``_Past`` when the hub says the job is already past it
        (INVALID_STATE); ``JobGone`` when the job is no longer this worker's."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.report_timeout
        while True:
            if job is not None and job.lost and job.state != "reporting":
                raise JobGone(job.lost_reason or "job taken back")
            try:
                return await self.ask(
                    msg, reply, timeout=max(0.001, min(self.request_timeout, deadline - loop.time()))
                )
            except HubError as exc:
                if exc.code in GONE_CODES:
                    raise JobGone(f"the hub says {exc.code} for {msg.job_id}") from exc
                if exc.code == "INVALID_STATE":
                    raise _Past(exc.details.get("status")) from exc
                if exc.code != "SERVICE_UNAVAILABLE" or loop.time() >= deadline:
                    raise
                await asyncio.sleep(0.2)
            except (ConnectionLost, RequestTimeout):
                if self._stopping or loop.time() >= deadline:
                    raise

    async def _fail_unknown(self, job_id: str) -> None:
        msg = protocol.make(
            FailJob,
            job_id=job_id,
            worker_id=self.worker_id,
            error="the worker restarted and lost this job",
            retry=True,
            error_details={"error_type": "WorkerRestarted"},
        )
        with contextlib.suppress(EmpqError):
            await self._report(None, msg, JobFailedAck)
        self._emit("job_lost", job_id=job_id, reason="unknown to this process: handed back with fail_job")

    async def _progress(self, job: Job, percent: float, message: str | None, fields: dict[str, Any]) -> None:
        if job.lost or self._stopping:
            return
        extra = {k: v for k, v in fields.items() if v is not None}
        if message is not None:
            extra["message"] = message
        msg = protocol.make(
            UpdateJobProgress,
            job_id=job.job_id,
            worker_id=self.worker_id,
            progress=max(0.0, min(100.0, float(percent))),
            **extra,
        )
        try:
            await self.ask(msg, Ack, timeout=self.request_timeout)
        except HubError as exc:
            if exc.code in GONE_CODES and job.state == "running" and self.jobs.get(job.job_id) is job:
                self._lose(job, f"the hub says {exc.code}")
        except EmpqError as exc:
            log.debug("progress of %s not acknowledged: %s", job.job_id, exc)

    # heartbeats and connectors -----------------------------------------------------------------
    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_interval)
            if self.connected:
                try:
                    await self._heartbeat()
                except EmpqError as exc:
                    log.debug("heartbeat not acknowledged: %s", exc)

    async def _heartbeat(self) -> WorkerHeartbeatAck:
        running = sorted(job_id for job_id, job in self.jobs.items() if not job.lost)
        status = "draining" if self.draining else ("busy" if len(running) >= self.max_concurrent else "idle")
        fields: dict[str, Any] = {
            "worker_id": self.worker_id,
            "status": status,
            "load": round(min(1.0, len(running) / self.max_concurrent), 3),
            "current_jobs": running,
            "system_info": _system_info(self._started_at),
        }
        if self.connectors:
            fields["connector_status"] = {c.service: c.health() for c in self.connectors}
        msg = protocol.make(WorkerHeartbeat, **fields)
        return await self.ask(
            msg, WorkerHeartbeatAck, timeout=min(self.request_timeout, max(1.0, self.heartbeat_interval))
        )

    def _connector_changed(self, connector: Connector) -> None:
        if self.connected:
            self._spawn(self._send_connector_status(connector))

    async def _send_connector_status(self, connector: Connector) -> None:
        details = {"connector": connector.type, **connector.details}
        msg = protocol.make(
            ConnectorWsStatus,
            worker_id=self.worker_id,
            connector_type=connector.service,
            status=connector.ws_status,
            details=details,
        )
        with contextlib.suppress(EmpqError):
            await self.ask(msg, Ack, timeout=min(self.request_timeout, 5))


__all__ = ["EmpWorker", "Handler", "Job", "JobError", "JobGone", "Progress"]
