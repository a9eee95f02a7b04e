"""The hub's protocol core: a command table mapping each message type to one handler.

No sockets here.  The transport (``server.py``) calls ``connect``, ``receive(conn_id, frame)``,
``disconnected`` and ``tick``; the core answers through an ``Outbox`` (send bytes to a connection,
close a connection).  State that must survive or be shared lives in Redis via ``JobStore``; what
lives here is per-process routing: sessions, local workers, subscriptions.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson
from empq.generated.defs.base import BaseMessage
from empq.generated.messages.ack import Ack
from empq.generated.messages.chunked_message_complete import ChunkedMessageComplete
from empq.generated.messages.client_registered import ClientRegistered
from empq.generated.messages.connection_established import ConnectionEstablished
from empq.generated.messages.job_accepted import JobAccepted
from empq.generated.messages.job_assigned import JobAssigned
from empq.generated.messages.job_available import JobAvailable
from empq.generated.messages.job_cancelled import JobCancelled
from empq.generated.messages.job_completed import JobCompleted
from empq.generated.messages.job_completed_ack import JobCompletedAck
from empq.generated.messages.job_failed_ack import JobFailedAck
from empq.generated.messages.job_notifications_subscribed import JobNotificationsSubscribed
from empq.generated.messages.job_update import JobUpdate
from empq.generated.messages.pong import Pong
from empq.generated.messages.response_job_status import ResponseJobStatus
from empq.generated.messages.stats_response import StatsResponse
from empq.generated.messages.stats_update import StatsUpdate
from empq.generated.messages.subscription_confirmed import SubscriptionConfirmed
from empq.generated.messages.worker_heartbeat_ack import WorkerHeartbeatAck
from empq.generated.messages.worker_registered import WorkerRegistered
from empq.hub.config import HubConfig
from empq.hub.matching import JobClass, can_run, customer_allowed
from empq.hub.resp import RedisReplyError
from empq.hub.session import Accepted, Refused, Role, Session, error
from empq.hub.store import JobStore, Routing, StoreError, TimerEvent
from pydantic import BaseModel

from empq import protocol

log = logging.getLogger("empq.hub")

FINAL = {"completed", "failed", "cancelled", "timeout"}
ALL_SECTIONS = ("jobs", "workers", "throughput", "system")
MAX_CHUNK_STREAMS = 8
MAX_CHUNKED_BYTES = 64 * 1024 * 1024
CHUNK_STREAM_TTL_MS = 60_000


class Outbox(Protocol):
    def send(self, conn_id: str, data: bytes) -> None: ...

    def close(self, conn_id: str, code: int, reason: str) -> None: ...


@dataclass
class LocalWorker:
    worker_id: str
    conn_id: str
    capabilities: dict[str, Any]
    subscribe: bool = True
    status: str = "idle"
    held: set[str] = field(default_factory=set)
    notified: bool = False  # sent job_available since its last claim_job
    last_heartbeat: int = 0
    load: float | None = None
    system_info: dict[str, Any] | None = None
    connector_status: dict[str, Any] | None = None

    @property
    def slots(self) -> int:
        return int(self.capabilities.get("max_concurrent_jobs") or 1)

    @property
    def free(self) -> int:
        if self.status in ("draining", "offline"):
            return 0
        return max(0, self.slots - len(self.held))


@dataclass
class NotificationSub:
    conn_id: str
    filters: dict[str, Any]


@dataclass
class StatsSub:
    interval_ms: int
    sections: tuple[str, ...]
    next_at: int


@dataclass
class ChunkStream:
    total: int
    original_type: str
    data_hash: str | None
    started: int
    parts: dict[int, bytes] = field(default_factory=dict)
    size: int = 0


Handler = Callable[["HubCore", Session, Any], Awaitable[None]]


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def iso(ms: float) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class HubCore:
    def __init__(self, config: HubConfig, store: JobStore, outbox: Outbox, hub_id: str | None = None) -> None:
        self.config = config
        self.store = store
        self.outbox = outbox
        self.hub_id = hub_id or config.hub_id or uuid.uuid4().hex[:8]
        self.started = now_ms()
        self.sessions: dict[str, Session] = {}
        self.workers: dict[str, LocalWorker] = {}
        self.job_subs: dict[str, set[str]] = {}
        self.notification_subs: dict[str, NotificationSub] = {}
        self.stats_subs: dict[str, StatsSub] = {}
        self.chunks: dict[str, dict[str, ChunkStream]] = {}
        self.mean_processing_time: float | None = None
        self._conn_ids = itertools.count(1)
        self._sub_ids = itertools.count(1)

    # transport entry points --------------------------------------------------------------
    def new_conn_id(self) -> str:
        return f"conn-{self.hub_id}-{next(self._conn_ids)}"

    def connect(self, conn_id: str) -> None:
        """A connection opened (the outbox can already send to it): greet it."""
        self.sessions[conn_id] = Session(conn_id)
        self.send(
            conn_id,
            protocol.make(
                ConnectionEstablished,
                message="Connected to EmProps Job Queue Hub",
                server_version=self.config.server_version,
                connection_id=conn_id,
                max_message_size=self.config.max_message_size,
                chunk_threshold=self.config.chunk_threshold,
            ),
        )

    async def receive(self, conn_id: str, frame: bytes | str) -> None:
        session = self.sessions.get(conn_id)
        if session is None:
            return
        outcome = session.receive(frame)
        if isinstance(outcome, Refused):
            self.send(conn_id, outcome.reply)
            if outcome.close:
                self.outbox.close(conn_id, 1008, "refused")
            return
        await self.dispatch(session, outcome)

    async def dispatch(self, session: Session, accepted: Accepted) -> None:
        message = accepted.message
        try:
            await COMMANDS[message.type](self, session, message)
        except StoreError as exc:
            text = {
                "JOB_NOT_FOUND": f"no job {message.job_id}",
                "NOT_JOB_HOLDER": f"worker {session.worker_id} does not hold job {message.job_id}",
                "INVALID_STATE": f"job {message.job_id} is {exc.status}",
            }.get(exc.code, exc.code)
            details = (
                {"job_id": message.job_id, "status": exc.status} if exc.status else {"job_id": message.job_id}
            )
            self.reply(session, accepted, error(exc.code, text, accepted.request_id, details))
        except (RedisReplyError, OSError) as exc:
            log.warning("storage error on %s: %s", message.type, exc)
            self.reply(
                session,
                accepted,
                error("SERVICE_UNAVAILABLE", "storage unavailable, retry", accepted.request_id),
            )
        except Exception:
            log.exception("handler for %s failed", message.type)
            self.reply(session, accepted, error("INTERNAL_ERROR", "internal error", accepted.request_id))

    async def disconnected(self, conn_id: str) -> None:
        session = self.sessions.pop(conn_id, None)
        self._drop_subscriptions(conn_id)
        self.chunks.pop(conn_id, None)
        if session and session.worker_id and self.workers.get(session.worker_id, None):
            worker = self.workers[session.worker_id]
            if worker.conn_id == conn_id:
                del self.workers[session.worker_id]

    async def tick(self) -> None:
        """Timers: sweep Redis deadlines, stats broadcasts, chunk stream expiry (called periodically)."""
        try:
            for event in await self.store.sweep():
                self._timer_event(event)
            self.mean_processing_time = await self.store.mean_processing_time()
        except (RedisReplyError, OSError) as exc:
            log.warning("sweep failed: %s", exc)
        now = now_ms()
        for conn_id, sub in list(self.stats_subs.items()):
            if now >= sub.next_at and conn_id in self.sessions:
                sub.next_at = now + sub.interval_ms
                try:
                    stats = await self.stats(sub.sections)
                except (RedisReplyError, OSError):
                    continue
                self.send(conn_id, protocol.make(StatsUpdate, stats=stats, next_broadcast=sub.next_at))
        for conn_id, streams in list(self.chunks.items()):
            for chunk_id, stream in list(streams.items()):
                if now - stream.started > CHUNK_STREAM_TTL_MS:
                    del streams[chunk_id]
                    self.send(
                        conn_id,
                        error(
                            "CHUNK_ERROR",
                            f"chunk stream {chunk_id} expired",
                            None,
                            {"chunk_id": chunk_id, "reason": "expired"},
                        ),
                    )

    # output helpers ---------------------------------------------------------------------
    def send(self, conn_id: str, message: BaseModel) -> None:
        self.outbox.send(conn_id, protocol.encode(message))

    def reply(self, session: Session, accepted: Accepted, message: BaseMessage) -> None:
        if accepted.request_id and message.request_id is None:
            message.request_id = accepted.request_id
        self.send(session.conn_id, message)

    def ack(self, session: Session, accepted: Accepted, status: str = "processed") -> None:
        msg = accepted.message
        if status == "processed" and msg.id is None:
            return  # D6: plain acks only for messages that carry an id
        self.reply(
            session,
            accepted,
            protocol.make(
                Ack,
                message_id=msg.id or f"msg-{uuid.uuid4().hex[:12]}",
                original_type=msg.type,
                status=status,
            ),
        )

    def publish(
        self, job_id: str, routing: Routing, message: BaseModel, status: str, exclude: str | None = None
    ) -> None:
        """Send a job event to the submitting connection, the job's subscribers and matching
        notification subscribers — each once."""
        targets: set[str] = set()
        if routing.origin in self.sessions:
            targets.add(routing.origin)
        targets.update(self.job_subs.get(job_id, ()))
        for sub in self.notification_subs.values():
            if sub.conn_id not in targets and _matches(sub.filters, routing, status):
                session = self.sessions.get(sub.conn_id)
                if session is not None and self.visible(session, routing.customer_id, routing.client_id):
                    targets.add(sub.conn_id)
        targets.discard(exclude or "")
        if targets:
            data = protocol.encode(message)
            for conn_id in targets:
                self.outbox.send(conn_id, data)

    def visible(self, session: Session, customer_id: str | None, client_id: str | None) -> bool:
        """D13: may this session see (subscribe to, cancel) a job of this customer / client?"""
        if "view_all_jobs" in session.permissions:
            return True
        if session.role is Role.JOB_CLIENT:
            if session.customer_id is not None:
                return customer_id == session.customer_id
            return client_id == session.client_id
        return False

    # workers ----------------------------------------------------------------------------
    def notify_workers(self, job_id: str, job_class: JobClass, customer_id: str | None, priority: int) -> int:
        """Send job_available to up to ``notify_fanout`` idle local workers that can run the job."""
        sent = 0
        message: bytes | None = None
        for worker in self.workers.values():
            if sent >= self.config.notify_fanout:
                break
            if worker.notified or not worker.subscribe or worker.free <= 0:
                continue
            if not can_run(worker.capabilities, job_class) or not customer_allowed(
                worker.capabilities, customer_id
            ):
                continue
            if message is None:
                message = protocol.encode(
                    protocol.make(
                        JobAvailable,
                        job_id=job_id,
                        job_type=job_class.job_type,
                        priority=priority,
                        requirements_summary=job_class.summary(),
                    )
                )
            worker.notified = True
            self.outbox.send(worker.conn_id, message)
            sent += 1
        return sent

    def _timer_event(self, event: TimerEvent) -> None:
        routing = event.routing
        if event.kind == "claim":
            update = protocol.make(
                JobUpdate,
                job_id=event.job_id,
                status="queued",
                previous_status="assigned",
                worker_id=event.worker_id,
                message="claim timed out: job returned to the queue",
            )
            worker = self.workers.get(event.worker_id)
            if worker is not None:
                worker.held.discard(event.job_id)
                self.send(worker.conn_id, update)
            self.publish(event.job_id, routing, update, "queued")
        elif event.kind == "timeout":
            update = protocol.make(
                JobUpdate,
                job_id=event.job_id,
                status="timeout",
                previous_status="in_progress",
                worker_id=event.worker_id,
                error="job exceeded its time limit",
            )
            worker = self.workers.get(event.worker_id)
            if worker is not None:
                worker.held.discard(event.job_id)
                self.send(worker.conn_id, update)
            self.publish(event.job_id, routing, update, "timeout")
            return
        self.notify_requeued(event.job_id, routing)

    def notify_requeued(self, job_id: str, routing: Routing) -> None:
        """A job became claimable again: tell idle workers as for a new job."""
        job_class = self.store.classes.get(routing.class_id)
        if job_class is not None:
            self.notify_workers(job_id, job_class, routing.customer_id, routing.priority)

    # stats --------------------------------------------------------------------------------
    async def stats(self, sections: tuple[str, ...] | list[str] | None) -> dict[str, Any]:
        wanted = tuple(sections) if sections else ALL_SECTIONS
        out: dict[str, Any] = {}
        if "jobs" in wanted:
            counts = await self.store.counts()
            out["jobs"] = {
                state: max(0, counts.get(state, 0))
                for state in (
                    "queued",
                    "assigned",
                    "accepted",
                    "in_progress",
                    "completed",
                    "failed",
                    "cancelled",
                    "timeout",
                )
            }
        if "workers" in wanted:
            by_status = {"idle": 0, "busy": 0, "draining": 0, "offline": 0}
            summaries = []
            for w in self.workers.values():
                state = (
                    w.status if w.status in ("draining", "offline") else ("busy" if w.free <= 0 else "idle")
                )
                by_status[state] += 1
                summary: dict[str, Any] = {
                    "worker_id": w.worker_id,
                    "status": state,
                    "current_jobs": sorted(w.held),
                    "capabilities": w.capabilities,
                }
                if w.last_heartbeat:
                    summary["last_heartbeat"] = w.last_heartbeat
                for key in ("load", "system_info", "connector_status"):
                    if getattr(w, key) is not None:
                        summary[key] = getattr(w, key)
                summaries.append(summary)
            out["workers"] = {"total": len(self.workers), **by_status, "workers": summaries}
        if "throughput" in wanted:
            out["throughput"] = {
                **await self.store.throughput(),
                "avg_processing_time": self.mean_processing_time,
            }
        if "system" in wanted:
            connections: dict[str, int] = {"job_client": 0, "monitor": 0, "worker": 0, "new": 0}
            for s in self.sessions.values():
                connections[s.role.value] += 1
            out["system"] = {
                "uptime_seconds": (now_ms() - self.started) / 1000,
                "hubs": 1,
                "connections": connections,
                "system_health": "healthy",
            }
        return out

    def _drop_subscriptions(self, conn_id: str) -> None:
        for job_id in [j for j, conns in self.job_subs.items() if conn_id in conns]:
            conns = self.job_subs[job_id]
            conns.discard(conn_id)
            if not conns:
                del self.job_subs[job_id]
        for sub_id in [s for s, sub in self.notification_subs.items() if sub.conn_id == conn_id]:
            del self.notification_subs[sub_id]
        self.stats_subs.pop(conn_id, None)


def _matches(filters: dict[str, Any], routing: Routing, status: str) -> bool:
    if "customer_id" in filters and filters["customer_id"] != routing.customer_id:
        return False
    if "job_types" in filters and routing.job_type not in filters["job_types"]:
        return False
    if "priority_min" in filters and routing.priority < filters["priority_min"]:
        return False
    return not ("status" in filters and status not in filters["status"])


# ---------------------------------------------------------------------------------------------
# Handlers: one per inbound message type.  Each gets the session and the parsed message.
# ---------------------------------------------------------------------------------------------


async def on_register_client(hub: HubCore, session: Session, msg: Any) -> None:
    session.role = Role.MONITOR if msg.client_type == "monitor" else Role.JOB_CLIENT
    session.client_id = msg.client_id
    session.customer_id = msg.customer_id
    session.permissions = frozenset(p.value for p in (msg.permissions or ()))
    session.chunked_messages = bool(
        msg.capabilities and (msg.capabilities.model_extra or {}).get("chunked_messages")
    ) or bool(msg.capabilities and msg.capabilities.chunked_messages)
    fields: dict[str, Any] = {
        "client_id": msg.client_id,
        "status": "registered",
        "assigned_connection_id": session.conn_id,
        "client_type": session.role.value,
        "permissions": sorted(session.permissions),
    }
    if msg.customer_id:
        fields["customer_id"] = msg.customer_id
    hub.reply(session, Accepted(msg, msg.id), protocol.make(ClientRegistered, **fields))


async def on_register_worker(hub: HubCore, session: Session, msg: Any) -> None:
    existing = hub.workers.get(msg.worker_id)
    if existing is not None and existing.conn_id in hub.sessions:
        hub.reply(
            session,
            Accepted(msg, msg.id),
            error("ALREADY_REGISTERED", f"worker {msg.worker_id} is connected already", msg.id),
        )
        return
    capabilities = protocol.to_dict(msg.capabilities)
    held = await hub.store.worker_jobs(msg.worker_id)
    session.role = Role.WORKER
    session.worker_id = msg.worker_id
    session.capabilities = capabilities
    session.chunked_messages = bool(capabilities.get("chunked_messages"))
    hub.workers[msg.worker_id] = LocalWorker(
        worker_id=msg.worker_id,
        conn_id=session.conn_id,
        capabilities=capabilities,
        subscribe=msg.subscribe_to_jobs is not False,
        status=msg.status.value if msg.status else "idle",
        held=set(held),
        last_heartbeat=now_ms(),
    )
    fields: dict[str, Any] = {
        "worker_id": msg.worker_id,
        "status": "registered",
        "assigned_connection_id": session.conn_id,
        "heartbeat_interval": hub.config.heartbeat_interval_ms,
    }
    if held:
        fields["resumed_jobs"] = held
    hub.reply(session, Accepted(msg, msg.id), protocol.make(WorkerRegistered, **fields))


async def on_submit_job(hub: HubCore, session: Session, msg: Any) -> None:
    accepted = Accepted(msg, msg.id)
    if msg.job_id is not None:
        hub.reply(
            session,
            accepted,
            error(
                "INVALID_PARAMETERS",
                "job ids are assigned by the hub",
                msg.id,
                {"field": "job_id", "provided_value": msg.job_id},
            ),
        )
        return
    customer_id = msg.customer_id or session.customer_id
    if session.customer_id is not None and customer_id != session.customer_id:
        hub.reply(
            session,
            accepted,
            error(
                "PERMISSION_DENIED",
                f"this client submits for {session.customer_id}",
                msg.id,
                {"field": "customer_id", "provided_value": msg.customer_id},
            ),
        )
        return
    requirements = protocol.to_dict(msg.requirements) if msg.requirements is not None else None
    job_class = JobClass.of(msg.job_type, requirements)
    job_id = f"job-{uuid.uuid4().hex}"
    priority = msg.priority if msg.priority is not None else 50
    max_retries = msg.max_retries if msg.max_retries is not None else hub.config.default_max_retries
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
            "client_id": session.client_id,
            "origin": session.conn_id,
            "max_retries": max_retries,
            "retry_count": 0,
            "timeout_ms": int(msg.timeout_seconds * 1000) if msg.timeout_seconds else None,
            "metadata": orjson.dumps(msg.metadata) if msg.metadata is not None else None,
            "created_at": now_ms(),
        },
    )
    notified = hub.notify_workers(job_id, job_class, customer_id, priority)
    estimate = None
    if hub.mean_processing_time is not None:
        ahead = (position - 1) / max(1, len(hub.workers))
        estimate = iso(now_ms() + ahead * hub.mean_processing_time * 1000)
    hub.reply(
        session,
        accepted,
        protocol.make(
            JobAccepted,
            job_id=job_id,
            status="queued",
            position=position,
            notified_workers=notified,
            estimated_start=estimate,
        ),
    )
    if hub.notification_subs:
        routing = Routing(
            session.conn_id, session.client_id or "", customer_id, msg.job_type, priority, job_class.id
        )
        update = protocol.make(
            JobUpdate, job_id=job_id, status="queued", job_type=msg.job_type, priority=priority
        )
        hub.publish(job_id, routing, update, "queued", exclude=session.conn_id)


async def _visible_job(hub: HubCore, session: Session, job_id: str) -> bool:
    customer_id, client_id = await hub.store.fields(job_id, "customer_id", "client_id")
    if client_id is None:
        raise StoreError("JOB_NOT_FOUND")
    if not hub.visible(session, customer_id or None, client_id):
        raise StoreError("JOB_NOT_FOUND")  # D13: existence is not disclosed
    return True


async def on_request_job_status(hub: HubCore, session: Session, msg: Any) -> None:
    job = await hub.store.status(msg.job_id)
    if job is None or not hub.visible(session, job.get("customer_id") or None, job.get("client_id")):
        raise StoreError("JOB_NOT_FOUND")
    fields: dict[str, Any] = {
        "job_id": msg.job_id,
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
    hub.reply(session, Accepted(msg, msg.id), protocol.make(ResponseJobStatus, **fields))


async def on_cancel_job(hub: HubCore, session: Session, msg: Any) -> None:
    await _visible_job(hub, session, msg.job_id)
    if session.role is Role.MONITOR and "manage_jobs" not in session.permissions:
        hub.reply(
            session, Accepted(msg, msg.id), error("PERMISSION_DENIED", "cancelling needs manage_jobs", msg.id)
        )
        return
    reason = msg.reason or "cancelled by client"
    t = await hub.store.cancel(msg.job_id, reason)
    cancelled = protocol.make(
        JobCancelled, job_id=msg.job_id, status="cancelled", cancelled_at=now_ms(), reason=reason
    )
    hub.reply(session, Accepted(msg, msg.id), cancelled)
    holder = t.extra[0]
    worker = hub.workers.get(holder) if holder else None
    if worker is not None:
        worker.held.discard(msg.job_id)
        hub.send(
            worker.conn_id,
            protocol.make(
                JobCancelled,
                job_id=msg.job_id,
                status="cancelled",
                cancelled_at=cancelled.cancelled_at,
                reason=reason,
                worker_id=holder,
            ),
        )
    hub.publish(msg.job_id, t.routing, cancelled, "cancelled", exclude=session.conn_id)


async def on_claim_job(hub: HubCore, session: Session, msg: Any) -> None:
    worker = hub.workers[session.worker_id or ""]
    worker.notified = False
    want = min(msg.max_jobs or 1, worker.free) if worker.free > 0 else 0
    claim_timeout = msg.claim_timeout or hub.config.claim_timeout_ms
    claimed = []
    if want > 0:
        preferred = [getattr(t, "root", t) for t in msg.preferred_types or ()]
        claimed = await hub.store.claim(worker.worker_id, worker.capabilities, want, claim_timeout, preferred)
    for job in claimed:
        worker.held.add(job.job_id)
        fields: dict[str, Any] = {
            "job_id": job.job_id,
            "worker_id": worker.worker_id,
            "job_type": job.job_type,
            "priority": job.priority,
            "payload": job.payload,
            "claim_timeout": claim_timeout,
            "retry_count": job.retry_count,
            "max_retries": job.max_retries,
        }
        if job.requirements is not None:
            fields["requirements"] = job.requirements
        if job.customer_id is not None:
            fields["customer_id"] = job.customer_id
        hub.reply(session, Accepted(msg, msg.id), protocol.make(JobAssigned, **fields))
        update = protocol.make(
            JobUpdate,
            job_id=job.job_id,
            status="assigned",
            previous_status="queued",
            worker_id=worker.worker_id,
        )
        hub.publish(job.job_id, job.routing, update, "assigned")
    if len(claimed) < (msg.max_jobs or 1):
        hub.ack(session, Accepted(msg, msg.id), "no_job_available")  # D10: ends a partly satisfied claim


async def on_job_accepted_by_worker(hub: HubCore, session: Session, msg: Any) -> None:
    t = await hub.store.accept(session.worker_id or "", msg.job_id)
    hub.ack(session, Accepted(msg, msg.id))
    update = protocol.make(
        JobUpdate,
        job_id=msg.job_id,
        status="accepted",
        previous_status=t.previous,
        worker_id=session.worker_id,
        message="Job accepted by worker",
    )
    hub.publish(msg.job_id, t.routing, update, "accepted")


async def on_update_job_progress(hub: HubCore, session: Session, msg: Any) -> None:
    extra = {
        "message": msg.message,
        "current_step": msg.current_step,
        "estimated_completion": msg.estimated_completion,
    }
    t = await hub.store.progress(session.worker_id or "", msg.job_id, msg.progress, extra)
    hub.ack(session, Accepted(msg, msg.id))
    fields = {k: v for k, v in extra.items() if v is not None}
    update = protocol.make(
        JobUpdate,
        job_id=msg.job_id,
        status="in_progress",
        previous_status=t.previous,
        worker_id=session.worker_id,
        progress=msg.progress,
        **fields,
    )
    hub.publish(msg.job_id, t.routing, update, "in_progress")


async def on_complete_job(hub: HubCore, session: Session, msg: Any) -> None:
    worker_id = session.worker_id or ""
    result = protocol.to_dict(msg.result)
    t = await hub.store.complete(worker_id, msg.job_id, orjson.dumps(result), msg.processing_time)
    _release_slot(hub, worker_id, msg.job_id)
    hub.reply(
        session, Accepted(msg, msg.id), protocol.make(JobCompletedAck, job_id=msg.job_id, worker_id=worker_id)
    )
    done = protocol.make(
        JobCompleted,
        job_id=msg.job_id,
        status="completed",
        worker_id=worker_id,
        result=result,
        priority=t.routing.priority,
        processing_time=t.extra[0],
        job_type=t.routing.job_type,
    )
    hub.publish(msg.job_id, t.routing, done, "completed")


async def on_fail_job(hub: HubCore, session: Session, msg: Any) -> None:
    worker_id = session.worker_id or ""
    details = orjson.dumps(msg.error_details) if msg.error_details is not None else None
    t = await hub.store.fail(
        worker_id,
        msg.job_id,
        msg.error,
        msg.retry is not False,
        int(hub.config.retry_base_seconds * 1000),
        int(hub.config.retry_max_seconds * 1000),
        details,
    )
    outcome, delay_ms, retries = t.extra
    _release_slot(hub, worker_id, msg.job_id)
    retry = outcome == "retry"
    hub.reply(
        session,
        Accepted(msg, msg.id),
        protocol.make(
            JobFailedAck,
            job_id=msg.job_id,
            worker_id=worker_id,
            retry_scheduled=retry,
            retry_delay=delay_ms / 1000 if retry else None,
            retry_count=retries,
        ),
    )
    if retry:
        update = protocol.make(
            JobUpdate,
            job_id=msg.job_id,
            status="queued",
            previous_status=t.previous,
            worker_id=worker_id,
            retry_count=retries,
            error=msg.error,
            message=f"retry {retries} scheduled in {delay_ms / 1000:g}s",
        )
        hub.publish(msg.job_id, t.routing, update, "queued")
    else:
        update = protocol.make(
            JobUpdate,
            job_id=msg.job_id,
            status="failed",
            previous_status=t.previous,
            worker_id=worker_id,
            retry_count=retries,
            error=msg.error,
        )
        hub.publish(msg.job_id, t.routing, update, "failed")


def _release_slot(hub: HubCore, worker_id: str, job_id: str) -> None:
    worker = hub.workers.get(worker_id)
    if worker is not None:
        worker.held.discard(job_id)


async def on_worker_heartbeat(hub: HubCore, session: Session, msg: Any) -> None:
    worker = hub.workers[session.worker_id or ""]
    now = now_ms()
    worker.last_heartbeat = now
    if msg.status is not None:
        worker.status = msg.status.value
    if msg.load is not None:
        worker.load = msg.load
    if msg.system_info is not None:
        worker.system_info = protocol.to_dict(msg.system_info)
    if msg.connector_status is not None:
        worker.connector_status = {k: protocol.to_dict(v) for k, v in msg.connector_status.items()}
    hub.reply(
        session,
        Accepted(msg, msg.id),
        protocol.make(
            WorkerHeartbeatAck,
            worker_id=worker.worker_id,
            status="acknowledged",
            next_heartbeat_expected=now + hub.config.heartbeat_interval_ms,
        ),
    )


async def on_worker_status(hub: HubCore, session: Session, msg: Any) -> None:
    worker = hub.workers[session.worker_id or ""]
    worker.status = msg.status.value
    if msg.capabilities is not None:
        worker.capabilities = protocol.to_dict(msg.capabilities)
        session.capabilities = worker.capabilities
    hub.ack(session, Accepted(msg, msg.id))


async def on_subscribe_job(hub: HubCore, session: Session, msg: Any) -> None:
    accepted = Accepted(msg, msg.id)
    if msg.enabled is False:
        conns = hub.job_subs.get(msg.job_id)
        if conns:
            conns.discard(session.conn_id)
        hub.reply(
            session,
            accepted,
            protocol.make(SubscriptionConfirmed, subscription_type="job", job_id=msg.job_id, enabled=False),
        )
        return
    job = await hub.store.status(msg.job_id)
    if job is None or not hub.visible(session, job.get("customer_id") or None, job.get("client_id")):
        raise StoreError("JOB_NOT_FOUND")
    hub.job_subs.setdefault(msg.job_id, set()).add(session.conn_id)
    hub.reply(
        session,
        accepted,
        protocol.make(SubscriptionConfirmed, subscription_type="job", job_id=msg.job_id, enabled=True),
    )
    status = job["status"]
    if status == "completed":
        hub.send(
            session.conn_id,
            protocol.make(
                JobCompleted,
                job_id=msg.job_id,
                status="completed",
                worker_id=job.get("worker_id") or None,
                result=orjson.loads(job["result"]),
                priority=int(job["priority"]),
                processing_time=float(job.get("processing_time") or 0),
                job_type=job["job_type"],
            ),
        )
    elif status == "cancelled":
        hub.send(
            session.conn_id,
            protocol.make(
                JobCancelled,
                job_id=msg.job_id,
                status="cancelled",
                cancelled_at=int(job.get("cancelled_at") or job["completed_at"]),
            ),
        )
    elif status in FINAL:
        hub.send(
            session.conn_id,
            protocol.make(JobUpdate, job_id=msg.job_id, status=status, error=job.get("error") or None),
        )


async def on_subscribe_job_notifications(hub: HubCore, session: Session, msg: Any) -> None:
    accepted = Accepted(msg, msg.id)
    if msg.enabled is False:
        removed = [
            s
            for s, sub in hub.notification_subs.items()
            if sub.conn_id == session.conn_id and msg.subscription_id in (None, s)
        ]
        for sub_id in removed:
            del hub.notification_subs[sub_id]
        hub.reply(
            session,
            accepted,
            protocol.make(
                JobNotificationsSubscribed,
                subscription_id=msg.subscription_id or "all",
                filters_applied={},
                enabled=False,
            ),
        )
        return
    filters = protocol.to_dict(msg.filters) if msg.filters is not None else {}
    if session.role is Role.MONITOR and "view_all_jobs" not in session.permissions:
        hub.reply(
            session, accepted, error("PERMISSION_DENIED", "job notifications need view_all_jobs", msg.id)
        )
        return
    if "view_all_jobs" not in session.permissions and session.customer_id is not None:
        if filters.get("customer_id", session.customer_id) != session.customer_id:
            hub.reply(
                session,
                accepted,
                error(
                    "PERMISSION_DENIED",
                    "a job client sees only its own customer's jobs",
                    msg.id,
                    {"field": "filters.customer_id", "provided_value": filters.get("customer_id")},
                ),
            )
            return
        filters["customer_id"] = session.customer_id
    sub_id = f"sub-{hub.hub_id}-{next(hub._sub_ids)}"
    hub.notification_subs[sub_id] = NotificationSub(session.conn_id, filters)
    hub.reply(
        session,
        accepted,
        protocol.make(
            JobNotificationsSubscribed, subscription_id=sub_id, filters_applied=filters, enabled=True
        ),
    )


async def on_subscribe_stats(hub: HubCore, session: Session, msg: Any) -> None:
    accepted = Accepted(msg, msg.id)
    if msg.enabled is False:
        hub.stats_subs.pop(session.conn_id, None)
        hub.reply(
            session, accepted, protocol.make(SubscriptionConfirmed, subscription_type="stats", enabled=False)
        )
        return
    interval = msg.interval_seconds if msg.interval_seconds is not None else 5
    sections = tuple(s.value for s in msg.include_sections) if msg.include_sections else ALL_SECTIONS
    next_at = now_ms() + int(interval * 1000)
    hub.stats_subs[session.conn_id] = StatsSub(int(interval * 1000), sections, next_at)
    hub.reply(
        session,
        accepted,
        protocol.make(
            SubscriptionConfirmed,
            subscription_type="stats",
            update_interval=interval,
            next_broadcast=next_at,
            enabled=True,
            include_sections=list(sections),
        ),
    )


async def on_request_stats(hub: HubCore, session: Session, msg: Any) -> None:
    sections = [s.value for s in msg.include_sections] if msg.include_sections else None
    hub.reply(session, Accepted(msg, msg.id), protocol.make(StatsResponse, stats=await hub.stats(sections)))


async def on_relay_to_monitors(hub: HubCore, session: Session, msg: Any) -> None:
    """service_request and connector_ws_status: recorded and relayed to monitors."""
    worker = hub.workers.get(session.worker_id or "")
    if worker is not None and msg.type == "connector_ws_status":
        status = dict(worker.connector_status or {})
        status[msg.connector_type] = {
            "status": "active" if msg.status.value == "connected" else msg.status.value
        }
        worker.connector_status = status
    data = protocol.encode(msg)
    for conn_id, other in hub.sessions.items():
        if other.role is Role.MONITOR:
            hub.outbox.send(conn_id, data)
    hub.ack(session, Accepted(msg, msg.id))


async def on_chunked_message(hub: HubCore, session: Session, msg: Any) -> None:
    accepted = Accepted(msg, msg.id)
    streams = hub.chunks.setdefault(session.conn_id, {})

    def refuse(reason: str, text: str) -> None:
        streams.pop(msg.chunk_id, None)
        hub.reply(
            session,
            accepted,
            error("CHUNK_ERROR", text, msg.id, {"chunk_id": msg.chunk_id, "reason": reason}),
        )

    stream = streams.get(msg.chunk_id)
    if stream is None:
        if len(streams) >= MAX_CHUNK_STREAMS:
            return refuse("too_many_streams", f"at most {MAX_CHUNK_STREAMS} chunk streams per connection")
        stream = streams[msg.chunk_id] = ChunkStream(
            msg.total_chunks, msg.original_type, msg.data_hash, now_ms()
        )
    if msg.total_chunks != stream.total or msg.original_type != stream.original_type:
        return refuse("inconsistent", "total_chunks or original_type changed within the stream")
    if msg.chunk_index >= msg.total_chunks:
        return refuse(
            "index_out_of_range", f"chunk_index {msg.chunk_index} >= total_chunks {msg.total_chunks}"
        )
    if msg.chunk_index in stream.parts:
        return refuse("duplicate_chunk", f"chunk {msg.chunk_index} received twice")
    try:
        part = base64.b64decode(msg.data, validate=True)
    except ValueError:
        return refuse("bad_base64", "data is not valid base64")
    stream.size += len(part)
    if stream.size > MAX_CHUNKED_BYTES or sum(s.size for s in streams.values()) > MAX_CHUNKED_BYTES:
        return refuse("too_large", f"chunked data over {MAX_CHUNKED_BYTES} bytes")
    stream.parts[msg.chunk_index] = part
    if msg.data_hash and not stream.data_hash:
        stream.data_hash = msg.data_hash
    if len(stream.parts) < stream.total:
        hub.ack(session, accepted)
        return
    whole = b"".join(stream.parts[i] for i in range(stream.total))
    del streams[msg.chunk_id]
    if stream.data_hash and hashlib.sha256(whole).hexdigest() != stream.data_hash.lower():
        hub.reply(
            session,
            accepted,
            error(
                "CHUNK_ERROR",
                "sha256 of the reassembled data does not match data_hash",
                msg.id,
                {"chunk_id": msg.chunk_id, "reason": "bad_hash"},
            ),
        )
        return
    hub.reply(
        session,
        accepted,
        protocol.make(
            ChunkedMessageComplete,
            chunk_id=msg.chunk_id,
            total_size=len(whole),
            original_type=stream.original_type,
        ),
    )
    await hub.receive(session.conn_id, whole)


async def on_nothing(hub: HubCore, session: Session, msg: Any) -> None:
    """pong and chunked_message_complete: receipts, no reply."""


async def on_ping(hub: HubCore, session: Session, msg: Any) -> None:
    hub.reply(session, Accepted(msg, msg.id), protocol.make(Pong))


async def on_disconnect(hub: HubCore, session: Session, msg: Any) -> None:
    if session.role is Role.WORKER and session.worker_id:
        hub.workers.pop(session.worker_id, None)  # not offered its own jobs back
        for event in await hub.store.release_worker(session.worker_id, count_retry=False):
            update = protocol.make(
                JobUpdate,
                job_id=event.job_id,
                status=event.kind,
                previous_status=event.worker_id,
                message="worker disconnected: job returned to the queue",
            )
            hub.publish(event.job_id, event.routing, update, event.kind)
            hub.notify_requeued(event.job_id, event.routing)
    if msg.cleanup_subscriptions is not False:
        hub._drop_subscriptions(session.conn_id)
    hub.outbox.close(session.conn_id, 1000, "disconnect")


COMMANDS: dict[str, Handler] = {
    "register_client": on_register_client,
    "register_worker": on_register_worker,
    "submit_job": on_submit_job,
    "request_job_status": on_request_job_status,
    "cancel_job": on_cancel_job,
    "claim_job": on_claim_job,
    "job_accepted_by_worker": on_job_accepted_by_worker,
    "update_job_progress": on_update_job_progress,
    "complete_job": on_complete_job,
    "fail_job": on_fail_job,
    "worker_heartbeat": on_worker_heartbeat,
    "worker_status": on_worker_status,
    "subscribe_job": on_subscribe_job,
    "subscribe_job_notifications": on_subscribe_job_notifications,
    "subscribe_stats": on_subscribe_stats,
    "request_stats": on_request_stats,
    "service_request": on_relay_to_monitors,
    "connector_ws_status": on_relay_to_monitors,
    "chunked_message": on_chunked_message,
    "chunked_message_complete": on_nothing,
    "ping": on_ping,
    "pong": on_nothing,
    "disconnect": on_disconnect,
}

__all__ = ["COMMANDS", "HubCore", "Outbox"]
