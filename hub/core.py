"""The hub's protocol core: a command table mapping each message type to one handler.

No sockets here.  The transport (``server.py``) calls ``connect``, ``receive(conn_id, frame)``,
``disconnected`` and ``tick``; the core answers through an ``Outbox`` (send bytes to a connection,
close a connection).  State that must survive or be shared lives in Redis via ``JobStore``; what
lives here is per-process routing: sessions, local workers, subscriptions.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import astuple, dataclass, field
from typing import Any, Protocol

import orjson
from empq.generated.defs.base import BaseMessage
from empq.generated.defs.job_status import JobStatus
from empq.generated.messages.ack import Ack
from empq.generated.messages.chunked_message import ChunkedMessage
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
from empq.generated.messages.system_alert import SystemAlert
from empq.generated.messages.system_status import SystemStatus
from empq.generated.messages.worker_heartbeat_ack import WorkerHeartbeatAck
from empq.generated.messages.worker_registered import WorkerRegistered
from empq.hub.auth import Authenticator
from empq.hub.config import HubConfig
from empq.hub.matching import JobClass, can_run, customer_allowed
from empq.hub.metrics import HubMetrics
from empq.hub.resp import RedisReplyError
from empq.hub.session import Accepted, Refused, Role, Session, error
from empq.hub.store import AlreadySubmitted, JobStore, QueueFull, Routing, StoreError, TimerEvent
from pydantic import BaseModel

from empq import protocol

log = logging.getLogger("empq.hub")

FINAL = {"completed", "failed", "cancelled", "timeout"}
# Messages whose handler makes exactly one Redis call and then only sends: a transport may dispatch
# a connection's next one while the previous one's call is in flight. Redis runs the calls in the
# order they were written and answers in that order, so the effects and the replies keep the order
# of the frames (a worker's accept, progress and complete no longer wait for each other).
PIPELINABLE = frozenset({"job_accepted_by_worker", "update_job_progress", "complete_job"})
JOB_STATUSES = tuple(status.value for status in JobStatus)  # from the schema's enum
ALL_SECTIONS = ("jobs", "workers", "throughput", "system")
MAX_CHUNK_STREAMS = 8
MAX_CHUNKED_BYTES = 64 * 1024 * 1024  # per connection
MAX_CHUNKED_BYTES_ALL = 256 * 1024 * 1024  # all connections of this hub together
CHUNK_STREAM_TTL_MS = 60_000
MAX_JOB_SUBSCRIPTIONS = 10_000  # subscribe_job per connection (D19)
MAX_NOTIFICATION_SUBSCRIPTIONS = 16  # subscribe_job_notifications per connection (D19)
SEES_WORKERS = frozenset({"view_workers", "view_system_stats"})
SEES_ALERTS = frozenset({"view_system_stats"})


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
    last_seen: int = 0  # last frame from it (any frame is a sign of life)
    recorded_seen: int = 0  # last_seen as written to Redis
    load: float | None = None
    system_info: dict[str, Any] | None = None
    connector_status: dict[str, Any] | None = None

    def telemetry(self) -> dict[str, Any]:
        """What stats show about this worker on any hub."""
        out: dict[str, Any] = {
            "status": self.status,
            "current_jobs": sorted(self.held),
            "last_heartbeat": self.last_heartbeat,
        }
        for key in ("load", "system_info", "connector_status"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out

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
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms / 1000))


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
        # local workers that may be idle (subscribed, not notified since their claim, a free slot):
        # job_available goes through these, not through every worker (most are busy in a big fleet);
        # a worker is (re)added whenever it may have become idle and dropped when found not to be
        self.maybe_idle: dict[str, None] = {}
        # job id -> local connections owed its final message (the submitter, subscribers), until
        # it is delivered; re-read from Redis when an event may have been lost (resync_finals)
        self.awaiting: dict[str, set[str]] = {}
        self.peer_ids: set[str] = set()  # other live hubs on this Redis (the registry, each second)
        self.notification_subs: dict[str, NotificationSub] = {}
        self.stats_subs: dict[str, StatsSub] = {}
        self.chunks: dict[str, dict[str, ChunkStream]] = {}
        self.mean_processing_time: float | None = None
        self._conn_ids = itertools.count(1)
        self._sub_ids = itertools.count(1)
        self.auth = Authenticator.from_config(config)
        self.metrics = HubMetrics()  # /metrics: the handlers below report their events to it
        self.bus_channel = f"{store.p}:bus"
        self.hub_count = 1
        self.global_workers: dict[str, dict[str, Any]] = {}  # every hub's workers, refreshed each second
        # recent alerts, shown in system_status and stats: (customer concerned or None, alert)
        self.alerts: list[tuple[str | None, dict[str, Any]]] = []
        self.submit_buckets: dict[str, tuple[float, float]] = {}  # identity -> (tokens, at s)
        self.queue_alert_active = False
        self._capable: dict[tuple[str, str | None], bool] = {}  # see someone_can_run
        self._next_registry = 0
        self._next_status = 0
        self._next_seen = 0
        self._next_prune = 0

    # transport entry points --------------------------------------------------------------
    def new_conn_id(self) -> str:
        return f"conn-{self.hub_id}-{next(self._conn_ids)}"

    def connect(self, conn_id: str, token: str | None = None) -> None:
        """A connection opened (the outbox can already send to it): greet it.  ``token``: what
        the peer presented on the handshake (Authorization header or ?token=)."""
        self.sessions[conn_id] = Session(conn_id, handshake_token=token, connected_at=now_ms())
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
        admitted = self.admit(conn_id, frame)
        if admitted is not None:
            await self.dispatch(*admitted)

    def admit(self, conn_id: str, frame: bytes | str) -> tuple[Session, Accepted] | None:
        """The synchronous half of ``receive``: a sign of life, parsing and the validity table; a
        refusal is answered here (None). ``dispatch`` does the rest."""
        session = self.sessions.get(conn_id)
        if session is None:
            return None
        if session.worker_id is not None:
            worker = self.workers.get(session.worker_id)
            if worker is not None:
                worker.last_seen = now_ms()
        outcome = session.receive(frame)
        if isinstance(outcome, Refused):
            self.send(conn_id, outcome.reply)
            if outcome.close:
                self.outbox.close(conn_id, 1008, "refused")
            return None
        return session, outcome

    async def dispatch(self, session: Session, accepted: Accepted) -> None:
        message = accepted.message
        self.metrics.message_in(message.type)
        try:
            await COMMANDS[message.type](self, session, message)
        except StoreError as exc:
            held = exc.code == "INVALID_STATE" and exc.status in ("assigned", "accepted", "in_progress")
            if session.worker_id and message.job_id and not held:
                # Redis says the worker does not hold the job (any more): neither may its slot
                # here, e.g. a complete_job retried after a reply lost in a Redis restart
                _release_slot(self, session.worker_id, message.job_id)
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
        """The connection is gone.  A worker that left without ``disconnect`` keeps its jobs for
        the reconnect grace period (D16): its liveness deadline is set so the reaper takes it then."""
        session = self.sessions.pop(conn_id, None)
        self._drop_subscriptions(conn_id, session.job_subs if session else set())
        self.chunks.pop(conn_id, None)
        if session and session.worker_id:
            worker = self.workers.get(session.worker_id)
            if worker is not None and worker.conn_id == conn_id:
                del self.workers[session.worker_id]
                if not session.said_goodbye:
                    deadline = now_ms() - self.config.heartbeat_timeout_ms + self.config.reconnect_grace_ms
                    try:
                        await self.store.worker_seen(session.worker_id, deadline)
                    except (RedisReplyError, OSError) as exc:
                        log.warning("could not record %s's departure: %s", session.worker_id, exc)

    async def tick(self) -> None:
        """Timers: sweep Redis deadlines, reap lost workers, hub registry, system status, stats
        broadcasts, chunk stream expiry (called every ``sweep_interval_ms``)."""
        now = now_ms()
        try:
            for event in await self.store.sweep():
                self._timer_event(event)
            self.mean_processing_time = await self.store.mean_processing_time()
            if now >= self._next_seen:  # before reaping: a recent frame keeps a worker alive
                self._next_seen = now + min(1000, self.config.heartbeat_timeout_ms // 4)
                await self._record_signs_of_life()
            for worker_id in await self.store.reap_workers(now - self.config.heartbeat_timeout_ms):
                await self.worker_lost(worker_id)
            if now >= self._next_registry:
                self._next_registry = now + 1000
                await self._refresh_registry()
                if self.config.job_retention_s > 0:
                    await self.store.forget_finished(int(self.config.job_retention_s * 1000))
            if now >= self._next_status:
                self._next_status = now + self.config.status_interval_ms
                await self._status_round()
        except (RedisReplyError, OSError) as exc:
            log.warning("timers failed: %s", exc)
        for conn_id, sub in list(self.stats_subs.items()):
            if now >= sub.next_at and conn_id in self.sessions:
                sub.next_at = now + sub.interval_ms
                try:
                    stats = await self.stats(sub.sections, self.sessions[conn_id])
                except (RedisReplyError, OSError):
                    continue
                self.send(conn_id, protocol.make(StatsUpdate, stats=stats, next_broadcast=sub.next_at))
        self._close_unregistered(now)
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

    def _close_unregistered(self, now: int) -> None:
        """D19: a connection that has not registered within ``registration_timeout_ms`` is told
        (NOT_REGISTERED) and closed (1008), so idle sockets cannot pile up."""
        deadline = now - self.config.registration_timeout_ms
        for conn_id, session in list(self.sessions.items()):
            if session.role is Role.NEW and session.connected_at <= deadline and not session.said_goodbye:
                session.said_goodbye = True
                self.send(
                    conn_id,
                    error(
                        "NOT_REGISTERED",
                        f"no registration within {self.config.registration_timeout_ms} ms",
                        None,
                        {"reason": "registration_timeout"},
                    ),
                )
                self.outbox.close(conn_id, 1008, "registration timeout")
        if self.submit_buckets and now >= self._next_prune:  # forget full buckets
            self._next_prune = now + 10_000
            rate = self.config.submit_rate
            burst = self.config.submit_burst or max(1.0, 2 * rate)
            at_least = time.monotonic() - (burst / rate if rate > 0 else 0)
            self.submit_buckets = {k: v for k, v in self.submit_buckets.items() if v[1] > at_least}

    # output helpers ---------------------------------------------------------------------
    def send(self, conn_id: str, message: BaseModel) -> None:
        self.deliver(conn_id, protocol.encode(message))

    def deliver(self, conn_id: str, data: bytes) -> None:
        """Send an encoded message; over the chunk threshold, as chunks to peers that declared
        support for them (D15)."""
        if len(data) > self.config.chunk_threshold:
            session = self.sessions.get(conn_id)
            if session is not None and session.chunked_messages:
                for chunk in self._chunks_of(data):
                    self.outbox.send(conn_id, chunk)
                return
        self.outbox.send(conn_id, data)

    def _chunks_of(self, data: bytes) -> list[bytes]:
        size = max(1, self.config.chunk_threshold // 2)  # base64 grows the data by 4/3
        parts = [data[i : i + size] for i in range(0, len(data), size)]
        chunk_id = f"chunk-{uuid.uuid4().hex[:16]}"
        digest = hashlib.sha256(data).hexdigest()
        original_type = orjson.loads(data).get("type", "unknown")
        return [
            protocol.encode(
                protocol.make(
                    ChunkedMessage,
                    chunk_id=chunk_id,
                    chunk_index=i,
                    total_chunks=len(parts),
                    data=base64.b64encode(part).decode(),
                    data_hash=digest,
                    original_type=original_type,
                    total_size=len(data),
                )
            )
            for i, part in enumerate(parts)
        ]

    @property
    def peer_hubs(self) -> int:
        """Other live hubs on this Redis: job events go over the bus when > 0."""
        return len(self.peer_ids)

    def broadcast(self, kind: str, **fields: Any) -> None:
        """Tell the other hubs on this Redis (pub/sub); nothing when this hub is alone."""
        if self.peer_hubs > 0:
            payload = orjson.dumps({"hub": self.hub_id, "kind": kind, **fields})
            future = self.store.batch.command("PUBLISH", self.bus_channel, payload)
            future.add_done_callback(_log_failure)

    def on_bus(self, data: bytes) -> None:
        """An event from another hub."""
        event = orjson.loads(data)
        if event.get("hub") == self.hub_id:
            return
        kind = event["kind"]
        if kind == "job":
            routing = Routing(*event["routing"])
            self._deliver_job_event(event["job_id"], routing, event["frame"].encode(), event["status"], None)
        elif kind == "worker":
            worker = self.workers.get(event["worker_id"])
            if worker is not None:
                for job_id in event.get("release", ()):
                    worker.held.discard(job_id)
                self.maybe_idle[worker.worker_id] = None
                self.deliver(worker.conn_id, event["frame"].encode())
        elif kind == "available":
            job_class = self.store.classes.get(event["class_id"])
            if job_class is None and event.get("class"):  # a class first submitted on that hub
                job_class = self.store.classes.setdefault(
                    event["class_id"], JobClass.from_json(event["class"])
                )
            if job_class is not None:
                self.notify_workers(event["job_id"], job_class, event.get("customer_id"), event["priority"])
        elif kind == "monitors":
            self._to_monitors(event["frame"].encode(), event.get("customer_id"), frozenset(event["needs"]))

    def to_worker(self, worker_id: str, message: BaseModel, release: str | None = None) -> None:
        """Send to a worker wherever it is connected (this hub, or another one via the bus)."""
        worker = self.workers.get(worker_id)
        if worker is not None:
            if release:
                worker.held.discard(release)
                self.maybe_idle[worker_id] = None
            self.send(worker.conn_id, message)
        else:
            frame = protocol.encode(message).decode()
            self.broadcast("worker", worker_id=worker_id, frame=frame, release=[release] if release else [])

    def to_monitors(self, message: BaseModel, customer_id: str | None, needs: frozenset[str]) -> None:
        """To the monitors (all hubs) that may see it: see ``monitor_sees``."""
        data = protocol.encode(message)
        self._to_monitors(data, customer_id, needs)
        self.broadcast("monitors", frame=data.decode(), customer_id=customer_id, needs=sorted(needs))

    def _to_monitors(self, data: bytes, customer_id: str | None, needs: frozenset[str]) -> None:
        for conn_id, session in self.sessions.items():
            if session.role is Role.MONITOR and monitor_sees(session, customer_id, needs):
                self.deliver(conn_id, data)

    def alert(
        self,
        severity: str,
        category: str,
        message: str,
        details: dict[str, Any],
        actions: list[str],
        customer_id: str | None = None,
    ) -> None:
        """system_alert to the monitors that may see it (all hubs); kept for system_status.
        ``customer_id``: the customer whose job it names (its monitors see it too); None for
        an operator alert (the fleet, the queue), seen by unbound monitors only (D19)."""
        alert = protocol.make(
            SystemAlert,
            severity=severity,
            category=category,
            message=message,
            details=details,
            actions_recommended=actions,
        )
        record = {
            "severity": severity,
            "category": category,
            "message": message,
            "timestamp": alert.timestamp,
        }
        self.alerts = [*self.alerts[-49:], (customer_id, record)]
        log.warning("alert %s/%s: %s", severity, category, message)
        self.to_monitors(alert, customer_id, SEES_ALERTS)

    def alerts_for(self, session: Session) -> list[dict[str, Any]]:
        """The recent alerts this session may see (D19), newest last."""
        if session.role is not Role.MONITOR:
            return []
        return [a for c, a in self.alerts if monitor_sees(session, c, SEES_ALERTS)][-10:]

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
        notification subscribers — each once, on every hub."""
        data = protocol.encode(message)
        self._deliver_job_event(job_id, routing, data, status, exclude)
        if self.peer_hubs > 0:  # the submitter or subscribers may be on another hub
            self.broadcast(
                "job", job_id=job_id, routing=list(astuple(routing)), frame=data.decode(), status=status
            )

    def _deliver_job_event(
        self, job_id: str, routing: Routing, data: bytes, status: str, exclude: str | None
    ) -> None:
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
        for conn_id in targets:
            self.deliver(conn_id, data)
        if status in FINAL:
            self._job_ended(job_id)

    def _job_ended(self, job_id: str) -> None:
        """A final job has no more events: nobody waits on it or stays subscribed to it."""
        self.awaiting.pop(job_id, None)
        for conn_id in self.job_subs.pop(job_id, ()):
            session = self.sessions.get(conn_id)
            if session is not None:
                session.job_subs.discard(job_id)

    async def resync_finals(self, reason: str) -> int:
        """Deliver the final message of every job that local connections still wait on and that
        ended meanwhile, read from Redis. Job events cross hubs over pub/sub after the transition:
        a hub that died in between, or a bus subscription lost in a Redis restart, loses them."""
        job_ids = list(self.awaiting)
        sent = 0
        for start in range(0, len(job_ids), 500):
            chunk = job_ids[start : start + 500]
            jobs = await asyncio.gather(*(self.store.status(j) for j in chunk), return_exceptions=True)
            for job_id, job in zip(chunk, jobs, strict=True):
                if isinstance(job, BaseException) or job is None or job["status"] not in FINAL:
                    continue
                for conn_id in self.awaiting.pop(job_id, ()):
                    if conn_id in self.sessions:
                        _send_final_message(self, conn_id, job_id, job)
                        sent += 1
                self._job_ended(job_id)
        if sent:
            log.info("%s: %d final job message(s) re-read from Redis and delivered", reason, sent)
        return sent

    def visible(self, session: Session, customer_id: str | None, client_id: str | None) -> bool:
        """D13/D19: may this session see (subscribe to, cancel) a job of this customer / client?
        A session bound to a customer sees that customer's jobs only, whatever its permissions."""
        if session.customer_id is not None and customer_id != session.customer_id:
            return False
        if "view_all_jobs" in session.permissions:
            return True
        if session.role is Role.JOB_CLIENT:
            if session.customer_id is not None:
                return True
            return client_id == session.identity
        return False

    def submission_wait_ms(self, identity: str) -> int:
        """D19: 0 when ``identity`` may submit now (and count it), else the ms until it may:
        a token bucket per client identity (its customer, else its client id) and hub, refilled
        at ``submit_rate`` per second up to ``submit_burst``."""
        rate = self.config.submit_rate
        if rate <= 0:
            return 0
        burst = self.config.submit_burst or max(1.0, 2 * rate)
        now = time.monotonic()
        tokens, at = self.submit_buckets.get(identity, (burst, now))
        tokens = min(burst, tokens + (now - at) * rate)
        if tokens < 1:
            self.submit_buckets[identity] = (tokens, now)
            return max(1, int((1 - tokens) / rate * 1000))
        self.submit_buckets[identity] = (tokens - 1, now)
        return 0

    # workers ----------------------------------------------------------------------------
    def notify_workers(self, job_id: str, job_class: JobClass, customer_id: str | None, priority: int) -> int:
        """Send job_available to up to ``notify_fanout`` idle local workers that can run the job."""
        sent = 0
        message: bytes | None = None
        for worker_id in list(self.maybe_idle):
            if sent >= self.config.notify_fanout:
                break
            worker = self.workers.get(worker_id)
            if worker is None or worker.notified or not worker.subscribe or worker.free <= 0:
                del self.maybe_idle[worker_id]  # back when it claims, frees a slot or changes status
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
            del self.maybe_idle[worker_id]
            self.deliver(worker.conn_id, message)
            sent += 1
        return sent

    def _timer_event(self, event: TimerEvent) -> None:
        """A Redis timer fired: a claim not accepted in time (back to the queue), a job past its
        time limit (timeout), or a retry whose delay passed (claimable again)."""
        if event.kind == "retry":
            self.notify_requeued(event.job_id, event.routing)
            return
        status, previous, text = {
            "claim": ("queued", "assigned", {"message": "claim timed out: job returned to the queue"}),
            "timeout": ("timeout", "in_progress", {"error": "job exceeded its time limit"}),
        }[event.kind]
        update = protocol.make(
            JobUpdate,
            job_id=event.job_id,
            status=status,
            previous_status=previous,
            worker_id=event.worker_id,
            **text,
        )
        self.to_worker(event.worker_id, update, release=event.job_id)
        self.publish(event.job_id, event.routing, update, status)
        if status == "queued":
            self.notify_requeued(event.job_id, event.routing)

    def notify_requeued(self, job_id: str, routing: Routing) -> None:
        """A job became claimable again: tell idle workers (of every hub) as for a new job."""
        self.job_claimable(job_id, routing.class_id, routing.customer_id, routing.priority)

    def job_claimable(self, job_id: str, class_id: str, customer_id: str | None, priority: int) -> int:
        """Notify idle local workers; when fewer than the fan-out were found, ask the other hubs."""
        job_class = self.store.classes.get(class_id)
        sent = 0
        if job_class is not None:
            sent = self.notify_workers(job_id, job_class, customer_id, priority)
        if sent < self.config.notify_fanout:
            self.broadcast(
                "available",
                job_id=job_id,
                class_id=class_id,
                customer_id=customer_id,
                priority=priority,
                **({"class": job_class.to_json().decode()} if job_class is not None else {}),
            )
        return sent

    async def worker_lost(self, worker_id: str) -> None:
        """A worker stopped heartbeating or did not come back within the grace period: requeue
        its jobs (a retry each), tell subscribers and monitors, close it if it is still here."""
        events = await self.store.release_worker(worker_id, count_retry=True)
        for event in events:
            update = protocol.make(
                JobUpdate,
                job_id=event.job_id,
                status=event.kind,
                previous_status=event.worker_id,
                message=f"worker {worker_id} lost: job returned to the queue"
                if event.kind == "queued"
                else f"worker {worker_id} lost and no retries left",
                **({} if event.kind == "queued" else {"error": "worker lost"}),  # unset, not null
            )
            self.publish(event.job_id, event.routing, update, event.kind)
            self.metrics.job_failed(event.routing.job_type, retry=event.kind == "queued")
            if worker_id not in self.workers:  # connected to another hub: it frees the slot, tells it
                self.to_worker(worker_id, update, release=event.job_id)
            if event.kind == "queued":
                self.notify_requeued(event.job_id, event.routing)
        self.alert(
            "warning",
            "worker_lost",
            f"worker {worker_id} is gone",
            {
                "worker_id": worker_id,
                "jobs_requeued": [e.job_id for e in events if e.kind == "queued"],
                "jobs_failed": [e.job_id for e in events if e.kind == "failed"],
            },
            ["Check the worker machine", "Restart the worker"],
        )
        local = self.workers.pop(worker_id, None)
        if local is not None:
            session = self.sessions.get(local.conn_id)
            if session is not None:
                session.said_goodbye = True
            self.outbox.close(local.conn_id, 4000, "heartbeat timeout")

    async def _refresh_registry(self) -> None:
        counts = {"job_client": 0, "monitor": 0, "worker": 0, "new": 0}
        for session in self.sessions.values():
            counts[session.role.value] += 1
        await self.store.hub_alive(self.hub_id, {"connections": counts, "started": self.started})
        hubs = await self.store.hubs(within_ms=max(5000, 5 * self.config.sweep_interval_ms))
        self.hub_count = max(1, len(hubs))
        peers = {h for h in hubs if h != self.hub_id}
        gone, self.peer_ids = self.peer_ids - peers, peers
        if gone:  # a hub vanished: it may have died between a transition and its publish
            await self.resync_finals(f"hub {', '.join(sorted(gone))} gone")
        self.global_workers = await self.store.worker_capabilities()  # one reply, whatever the count
        self._capable.clear()

    def someone_can_run(self, job_class: JobClass, customer_id: str | None) -> bool:
        """Can any worker (every hub's as of the last registry refresh, ours as they are now) run
        jobs of this class?  Memoised per (class, customer) until the worker set changes, so a
        busy fleet of thousands is not scanned on every submission."""
        key = (job_class.id, customer_id)
        known = self._capable.get(key)
        if known is None:
            known = self._capable[key] = any(
                can_run(caps, job_class) and customer_allowed(caps, customer_id)
                for caps in [
                    *(w["capabilities"] for w in self.global_workers.values()),
                    *(w.capabilities for w in self.workers.values()),
                ]
            )
        return known

    async def _record_signs_of_life(self) -> None:
        # any frame from a worker is a sign of life: record the latest every min(1 s, heartbeat
        # timeout / 4), so a worker that keeps talking is never reaped
        seen = [(w.worker_id, w.last_seen) for w in self.workers.values() if w.last_seen > w.recorded_seen]
        for worker_id, at in seen:
            self.workers[worker_id].recorded_seen = at
        if seen:
            await asyncio.gather(*(self.store.worker_seen(worker_id, at) for worker_id, at in seen))

    async def system_status(self, viewer: Session | None = None) -> SystemStatus:
        """Aggregates (for every monitor), with the recent alerts ``viewer`` may see (D19)."""
        fields = await self._system_status_fields()
        return protocol.make(SystemStatus, **fields, alerts=self.alerts_for(viewer) if viewer else [])

    async def _system_status_fields(self) -> dict[str, Any]:
        counts = await self.store.counts()
        throughput = await self.store.throughput()
        pending = max(0, counts.get("queued", 0))
        active = sum(max(0, counts.get(k, 0)) for k in ("assigned", "accepted", "in_progress"))
        workers = len(self.global_workers) or len(self.workers)
        threshold = self.config.queue_alert_per_worker * max(1, workers)
        health = "healthy"
        if pending > threshold:
            health = "degraded"
        if pending and not workers:
            health = "critical"
        return {
            "active_workers": workers,
            "pending_jobs": pending,
            "active_jobs": active,
            "completed_jobs_last_hour": throughput["completed_last_hour"],
            "system_health": health,
        }

    async def _status_round(self) -> None:
        """system_status to local monitors; queue-depth alert when crossing the threshold."""
        fields = await self._system_status_fields()
        threshold = self.config.queue_alert_per_worker * max(1, fields["active_workers"])
        over = fields["pending_jobs"] > threshold
        if over and not self.queue_alert_active:
            self.alert(
                "warning",
                "resource_constraint",
                "Queue depth exceeding normal capacity",
                {
                    "current_queue_depth": fields["pending_jobs"],
                    "normal_threshold": threshold,
                    "available_workers": fields["active_workers"],
                },
                ["Consider scaling up workers", "Review job priorities"],
            )
        self.queue_alert_active = over
        frames: dict[bytes, bytes] = {}  # monitors that see the same alerts share one frame
        for conn_id, session in list(self.sessions.items()):
            if session.role is Role.MONITOR:
                alerts = self.alerts_for(session)
                key = orjson.dumps(alerts)
                if key not in frames:
                    frames[key] = protocol.encode(protocol.make(SystemStatus, **fields, alerts=alerts))
                self.deliver(conn_id, frames[key])

    # stats --------------------------------------------------------------------------------
    async def stats(self, sections: tuple[str, ...] | list[str] | None, viewer: Session) -> dict[str, Any]:
        """The stats sections ``viewer`` may see (D14, D19): aggregates for every viewer; the
        per-worker list for holders of view_workers or view_system_stats (without the jobs each
        holds for a viewer bound to a customer); alerts as ``alerts_for``."""
        wanted = tuple(sections) if sections else ALL_SECTIONS
        out: dict[str, Any] = {}
        if "jobs" in wanted:
            counts = await self.store.counts()
            out["jobs"] = {state: max(0, counts.get(state, 0)) for state in JOB_STATUSES}
        if "workers" in wanted:
            out["workers"] = await self._worker_stats()
            if not viewer.permissions & SEES_WORKERS:
                del out["workers"]["workers"]
            elif viewer.customer_id is not None:
                for summary in out["workers"]["workers"]:
                    summary.pop("current_jobs", None)
        if "throughput" in wanted:
            out["throughput"] = {
                **await self.store.throughput(),
                "avg_processing_time": self.mean_processing_time,
            }
        if "system" in wanted:
            # connections of every hub (as each reported within the last seconds), ours live
            hubs = await self.store.hubs(within_ms=max(5000, 5 * self.config.sweep_interval_ms))
            connections: dict[str, int] = {"job_client": 0, "monitor": 0, "worker": 0, "new": 0}
            hubs.pop(self.hub_id, None)
            for info in hubs.values():
                for role, n in info.get("connections", {}).items():
                    connections[role] = connections.get(role, 0) + n
            for session in self.sessions.values():
                connections[session.role.value] += 1
            status = await self.system_status()
            out["system"] = {
                "uptime_seconds": (now_ms() - self.started) / 1000,
                "hubs": len(hubs) + 1,
                "connections": connections,
                "system_health": status.system_health.value,
                "alerts": self.alerts_for(viewer),
            }
        return out

    async def _worker_stats(self) -> dict[str, Any]:
        """Workers of every hub, from the shared registry (telemetry as of their last heartbeat)."""
        by_status = {"idle": 0, "busy": 0, "draining": 0, "offline": 0}
        summaries = []
        for worker_id, entry in sorted((await self.store.workers()).items()):
            local = self.workers.get(worker_id)
            telemetry = local.telemetry() if local is not None else entry["telemetry"]
            capabilities = entry["capabilities"]
            held = telemetry.get("current_jobs", [])
            declared = telemetry.get("status", "idle")
            slots = int(capabilities.get("max_concurrent_jobs") or 1)
            state = (
                declared
                if declared in ("draining", "offline")
                else ("busy" if len(held) >= slots else "idle")
            )
            by_status[state] += 1
            summary = {
                "worker_id": worker_id,
                "status": state,
                "current_jobs": held,
                "capabilities": capabilities,
            }
            for key in ("load", "system_info", "connector_status"):
                if key in telemetry:
                    summary[key] = telemetry[key]
            if telemetry.get("last_heartbeat"):
                summary["last_heartbeat"] = telemetry["last_heartbeat"]
            summaries.append(summary)
        return {"total": len(summaries), **by_status, "workers": summaries}

    def chunked_bytes(self) -> int:
        """Bytes of chunk streams being reassembled, all connections (bounded, D15/D19)."""
        return sum(stream.size for streams in self.chunks.values() for stream in streams.values())

    def _drop_subscriptions(self, conn_id: str, job_ids: set[str]) -> None:
        for job_id in job_ids:
            conns = self.job_subs.get(job_id)
            if conns is not None:
                conns.discard(conn_id)
                if not conns:
                    del self.job_subs[job_id]
        job_ids.clear()
        for sub_id in [s for s, sub in self.notification_subs.items() if sub.conn_id == conn_id]:
            del self.notification_subs[sub_id]
        self.stats_subs.pop(conn_id, None)


def monitor_sees(session: Session, customer_id: str | None, needs: frozenset[str]) -> bool:
    """D19: may this monitor see an alert or relay concerning ``customer_id`` (None: the fleet or
    the system)?  It needs one of ``needs``; a monitor bound to a customer sees only what concerns
    that customer."""
    if not session.permissions & needs:
        return False
    return session.customer_id is None or session.customer_id == customer_id


def _log_failure(future: Any) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.warning("bus publish failed: %s", future.exception())


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


def _authenticate(hub: HubCore, session: Session, msg: Any, role: str) -> Any:
    """D4: the grant for this registration, or None after refusing it (AUTH_FAILED, then close)."""
    grant = hub.auth.check(role, msg.auth_token or session.handshake_token)
    if grant is None:
        who = {"worker_id": msg.worker_id} if role == "worker" else {"client_id": msg.client_id}
        reason = (
            "missing token" if not (msg.auth_token or session.handshake_token) else f"invalid {role} token"
        )
        hub.reply(
            session,
            Accepted(msg, msg.id),
            error("AUTH_FAILED", "Authentication failed", msg.id, {"reason": reason, **who}),
        )
        hub.outbox.close(session.conn_id, 1008, "authentication failed")
    return grant


async def on_register_client(hub: HubCore, session: Session, msg: Any) -> None:
    role = "monitor" if msg.client_type == "monitor" else "job_client"
    grant = _authenticate(hub, session, msg, role)
    if grant is None:
        return
    if grant.customer_id is not None and msg.customer_id not in (None, grant.customer_id):
        hub.reply(
            session,
            Accepted(msg, msg.id),
            error(
                "PERMISSION_DENIED",
                f"this token is for customer {grant.customer_id}",
                msg.id,
                {"field": "customer_id", "provided_value": msg.customer_id},
            ),
        )
        return
    asked = frozenset(p.value for p in (msg.permissions or ()))
    session.role = Role.MONITOR if role == "monitor" else Role.JOB_CLIENT
    session.client_id = msg.client_id
    session.owner = grant.owner
    session.customer_id = grant.customer_id or msg.customer_id
    session.permissions = (
        (asked & grant.permissions) if asked else (grant.permissions if not hub.auth.open else asked)
    )
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
    if session.customer_id:
        fields["customer_id"] = session.customer_id
    hub.reply(session, Accepted(msg, msg.id), protocol.make(ClientRegistered, **fields))
    if session.role is Role.MONITOR:
        hub.send(session.conn_id, await hub.system_status(session))


async def on_register_worker(hub: HubCore, session: Session, msg: Any) -> None:
    grant = _authenticate(hub, session, msg, "worker")
    if grant is None:
        return
    existing = hub.workers.get(msg.worker_id)
    if existing is not None and existing.conn_id in hub.sessions:
        hub.reply(
            session,
            Accepted(msg, msg.id),
            error("ALREADY_REGISTERED", f"worker {msg.worker_id} is connected already", msg.id),
        )
        return
    capabilities = _bound_capabilities(
        hub, session, msg, protocol.to_dict(msg.capabilities), grant.customer_id
    )
    if capabilities is None:
        return
    held = await hub.store.register_worker(msg.worker_id, grant.owner, hub.hub_id, capabilities)
    if held is None:  # D19: the id is registered by another token (connected, in its grace, or holding jobs)
        hub.reply(
            session,
            Accepted(msg, msg.id),
            error(
                "PERMISSION_DENIED",
                f"worker id {msg.worker_id} is registered with another token",
                msg.id,
                {"field": "worker_id", "provided_value": msg.worker_id},
            ),
        )
        return
    session.owner = grant.owner
    session.customer_id = grant.customer_id
    session.role = Role.WORKER
    session.worker_id = msg.worker_id
    session.capabilities = capabilities
    session.chunked_messages = bool(capabilities.get("chunked_messages"))
    hub._capable.clear()  # a new worker may run classes nobody could
    hub.workers[msg.worker_id] = LocalWorker(
        worker_id=msg.worker_id,
        conn_id=session.conn_id,
        capabilities=capabilities,
        subscribe=msg.subscribe_to_jobs is not False,
        status=msg.status.value if msg.status else "idle",
        held=set(held),
        last_heartbeat=now_ms(),
    )
    hub.maybe_idle[msg.worker_id] = None
    fields: dict[str, Any] = {
        "worker_id": msg.worker_id,
        "status": "registered",
        "assigned_connection_id": session.conn_id,
        "heartbeat_interval": hub.config.heartbeat_interval_ms,
    }
    if held:
        fields["resumed_jobs"] = held
    hub.reply(session, Accepted(msg, msg.id), protocol.make(WorkerRegistered, **fields))


def _bound_capabilities(
    hub: HubCore, session: Session, msg: Any, capabilities: dict[str, Any], customer_id: str | None
) -> dict[str, Any] | None:
    """D19: a worker's capabilities within its bounds (None after refusing them): at most
    ``max_worker_info_bytes`` of JSON, and, for a token bound to a customer, ``allowed_customers``
    that customer only (set when omitted; anything else is refused)."""
    field = "capabilities"
    if len(orjson.dumps(capabilities)) > hub.config.max_worker_info_bytes:
        hub.reply(
            session,
            Accepted(msg, msg.id),
            error(
                "INVALID_PARAMETERS",
                f"capabilities over {hub.config.max_worker_info_bytes} bytes of JSON",
                msg.id,
                {"field": field, "provided_value": f"{len(orjson.dumps(capabilities))} bytes"},
            ),
        )
        return None
    if customer_id is None:
        return capabilities
    declared = capabilities.get("allowed_customers")
    if declared is not None and set(declared) != {customer_id}:
        hub.reply(
            session,
            Accepted(msg, msg.id),
            error(
                "PERMISSION_DENIED",
                f"this token runs jobs of customer {customer_id} only",
                msg.id,
                {"field": f"{field}.allowed_customers", "provided_value": declared},
            ),
        )
        return None
    return {**capabilities, "allowed_customers": [customer_id]}


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
    wait_ms = hub.submission_wait_ms(customer_id or session.identity)
    if wait_ms:
        hub.reply(
            session,
            accepted,
            error(
                "RATE_LIMITED",
                f"over {hub.config.submit_rate:g} submissions per second: retry in {wait_ms} ms",
                msg.id,
                {"reason": "rate", "retry_after_ms": wait_ms, "limit_per_second": hub.config.submit_rate},
            ),
        )
        return
    requirements = protocol.to_dict(msg.requirements) if msg.requirements is not None else None
    job_class = JobClass.of(msg.job_type, requirements)
    job_id = f"job-{uuid.uuid4().hex}"
    priority = msg.priority if msg.priority is not None else 50
    max_retries = msg.max_retries if msg.max_retries is not None else hub.config.default_max_retries
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
            },
            idempotency,
            hub.config.max_queued_jobs,
        )
    except QueueFull as full:
        hub.reply(
            session,
            accepted,
            error(
                "RATE_LIMITED",
                f"the queue is full ({full.queued} jobs waiting): retry later",
                msg.id,
                {"reason": "queue_full", "queued": full.queued, "limit": hub.config.max_queued_jobs},
            ),
        )
        return
    except AlreadySubmitted as first:  # a repeat: the first reply again, nothing queued
        hub.reply(
            session,
            accepted,
            protocol.make(
                JobAccepted, job_id=first.job_id, status="queued", position=first.position, notified_workers=0
            ),
        )
        return
    hub.awaiting.setdefault(job_id, set()).add(session.conn_id)
    hub.metrics.job_submitted(msg.job_type)
    notified = hub.job_claimable(job_id, job_class.id, customer_id, priority)
    if notified == 0 and not hub.someone_can_run(job_class, customer_id):
        hub.alert(
            "warning",
            "no_capable_worker",
            f"No connected worker can run job {job_id}",
            {"job_id": job_id, "job_type": msg.job_type, "requirements": requirements or {}},
            [
                "Start a worker with the required service, component and hardware",
                "Review the job's requirements",
            ],
            customer_id,
        )
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
            session.conn_id, session.identity, customer_id, msg.job_type, priority, job_class.id
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
    if holder:
        hub.to_worker(
            holder,
            protocol.make(
                JobCancelled,
                job_id=msg.job_id,
                status="cancelled",
                cancelled_at=cancelled.cancelled_at,
                reason=reason,
                worker_id=holder,
            ),
            release=msg.job_id,
        )
    hub.publish(msg.job_id, t.routing, cancelled, "cancelled", exclude=session.conn_id)


async def on_claim_job(hub: HubCore, session: Session, msg: Any) -> None:
    worker = hub.workers[session.worker_id or ""]
    worker.notified = False
    hub.maybe_idle[worker.worker_id] = None
    want = min(msg.max_jobs or 1, worker.free) if worker.free > 0 else 0
    # the model fills the schema's default (30000) when absent: the hub's configured default wins then
    sent = "claim_timeout" in msg.model_fields_set and msg.claim_timeout
    claim_timeout = sent or hub.config.claim_timeout_ms
    claimed = []
    if want > 0:
        preferred = [getattr(t, "root", t) for t in msg.preferred_types or ()]
        started = time.perf_counter()
        claimed = await hub.store.claim(worker.worker_id, worker.capabilities, want, claim_timeout, preferred)
        hub.metrics.claim_served(time.perf_counter() - started)
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
    hub.metrics.job_completed(t.routing.job_type, t.extra[0])
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
    hub.metrics.job_failed(t.routing.job_type, retry)
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
        hub.maybe_idle[worker_id] = None


async def on_worker_heartbeat(hub: HubCore, session: Session, msg: Any) -> None:
    worker = hub.workers[session.worker_id or ""]
    telemetry: dict[str, Any] = {}
    if msg.system_info is not None:
        telemetry["system_info"] = protocol.to_dict(msg.system_info)
    if msg.connector_status is not None:
        telemetry["connector_status"] = {k: protocol.to_dict(v) for k, v in msg.connector_status.items()}
    for name, value in telemetry.items():
        size = len(orjson.dumps(value))
        if size > hub.config.max_worker_info_bytes:  # D19: shown to every monitor, every second
            hub.reply(
                session,
                Accepted(msg, msg.id),
                error(
                    "INVALID_PARAMETERS",
                    f"{name} over {hub.config.max_worker_info_bytes} bytes of JSON",
                    msg.id,
                    {"field": name, "provided_value": f"{size} bytes"},
                ),
            )
            return
    now = now_ms()
    worker.last_heartbeat = now
    if msg.status is not None:
        worker.status = msg.status.value
        hub.maybe_idle[worker.worker_id] = None
    if msg.load is not None:
        worker.load = msg.load
    for name, value in telemetry.items():
        setattr(worker, name, value)
    await hub.store.worker_seen(worker.worker_id, now, worker.telemetry())
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
    capabilities = None
    if msg.capabilities is not None:
        capabilities = _bound_capabilities(
            hub, session, msg, protocol.to_dict(msg.capabilities), session.customer_id
        )
        if capabilities is None:
            return
    worker.status = msg.status.value
    hub.maybe_idle[worker.worker_id] = None
    if capabilities is not None:
        worker.capabilities = capabilities
        hub._capable.clear()
        session.capabilities = worker.capabilities
    hub.ack(session, Accepted(msg, msg.id))


async def on_subscribe_job(hub: HubCore, session: Session, msg: Any) -> None:
    accepted = Accepted(msg, msg.id)
    if msg.enabled is False:
        conns = hub.job_subs.get(msg.job_id)
        if conns:
            conns.discard(session.conn_id)
        session.job_subs.discard(msg.job_id)
        hub.reply(
            session,
            accepted,
            protocol.make(SubscriptionConfirmed, subscription_type="job", job_id=msg.job_id, enabled=False),
        )
        return
    if len(session.job_subs) >= MAX_JOB_SUBSCRIPTIONS and msg.job_id not in session.job_subs:
        hub.reply(
            session,
            accepted,
            error(
                "RATE_LIMITED",
                f"at most {MAX_JOB_SUBSCRIPTIONS} job subscriptions per connection (a final job frees one)",
                msg.id,
                {"reason": "too_many_subscriptions", "limit": MAX_JOB_SUBSCRIPTIONS},
            ),
        )
        return
    job = await hub.store.status(msg.job_id)
    if job is None or not hub.visible(session, job.get("customer_id") or None, job.get("client_id")):
        raise StoreError("JOB_NOT_FOUND")
    if session.conn_id not in hub.sessions:
        return  # gone while its status was read
    hub.job_subs.setdefault(msg.job_id, set()).add(session.conn_id)
    session.job_subs.add(msg.job_id)
    hub.reply(
        session,
        accepted,
        protocol.make(SubscriptionConfirmed, subscription_type="job", job_id=msg.job_id, enabled=True),
    )
    if job["status"] not in FINAL:
        # it may have finished between the read and the subscription: read again, so the final
        # message is never missed (in that race it may arrive twice)
        job = await hub.store.status(msg.job_id) or job
    if job["status"] not in FINAL:
        hub.awaiting.setdefault(msg.job_id, set()).add(session.conn_id)
        return
    _send_final_message(hub, session.conn_id, msg.job_id, job)
    hub._drop_subscriptions(session.conn_id, {msg.job_id})  # final: nothing more will come
    session.job_subs.discard(msg.job_id)


def _send_final_message(hub: HubCore, conn_id: str, job_id: str, job: dict[str, Any]) -> None:
    """A final job's last message (job_completed, job_cancelled or job_update), from its hash."""
    status = job["status"]
    worker = {"worker_id": job["worker_id"]} if job.get("worker_id") else {}
    if status == "completed":
        hub.send(
            conn_id,
            protocol.make(
                JobCompleted,
                job_id=job_id,
                status="completed",
                result=orjson.loads(job["result"]),
                priority=int(job["priority"]),
                processing_time=float(job.get("processing_time") or 0),
                job_type=job["job_type"],
                **worker,
            ),
        )
    elif status == "cancelled":
        cancelled_at = int(job.get("cancelled_at") or job["completed_at"])
        hub.send(
            conn_id, protocol.make(JobCancelled, job_id=job_id, status="cancelled", cancelled_at=cancelled_at)
        )
    elif status in FINAL:
        error = {"error": job["error"]} if job.get("error") else {}
        hub.send(conn_id, protocol.make(JobUpdate, job_id=job_id, status=status, **worker, **error))


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
    mine = sum(1 for sub in hub.notification_subs.values() if sub.conn_id == session.conn_id)
    if mine >= MAX_NOTIFICATION_SUBSCRIPTIONS:
        hub.reply(
            session,
            accepted,
            error(
                "RATE_LIMITED",
                f"at most {MAX_NOTIFICATION_SUBSCRIPTIONS} notification subscriptions per connection",
                msg.id,
                {"reason": "too_many_subscriptions", "limit": MAX_NOTIFICATION_SUBSCRIPTIONS},
            ),
        )
        return
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
    if msg.enabled is not False and _stats_refused(hub, session, msg):
        return
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


def _stats_refused(hub: HubCore, session: Session, msg: Any) -> bool:
    """D14: monitors need view_system_stats; job clients get stats without the per-worker list."""
    if session.role is Role.MONITOR and "view_system_stats" not in session.permissions:
        hub.reply(
            session, Accepted(msg, msg.id), error("PERMISSION_DENIED", "stats need view_system_stats", msg.id)
        )
        return True
    return False


async def on_request_stats(hub: HubCore, session: Session, msg: Any) -> None:
    if _stats_refused(hub, session, msg):
        return
    sections = [s.value for s in msg.include_sections] if msg.include_sections else None
    stats = await hub.stats(sections, session)
    hub.reply(session, Accepted(msg, msg.id), protocol.make(StatsResponse, stats=stats))


async def on_relay_to_monitors(hub: HubCore, session: Session, msg: Any) -> None:
    """service_request and connector_ws_status: recorded and relayed to the monitors that may see
    the worker (D19: like its stats, to holders of view_workers or view_system_stats)."""
    # a known field sent as null passes the models but not the schemas: neither kept nor relayed
    msg.__pydantic_fields_set__ -= {k for k in type(msg).model_fields if getattr(msg, k) is None}
    data = protocol.encode(msg)
    worker = hub.workers.get(session.worker_id or "")
    status = None
    if worker is not None and msg.type == "connector_ws_status":
        status = dict(worker.connector_status or {})
        status[msg.connector_type] = {
            "status": "active" if msg.status.value == "connected" else msg.status.value
        }
    size = len(orjson.dumps(status)) if status is not None else len(data)
    if size > hub.config.max_worker_info_bytes:  # D19: kept in Redis and shown to every monitor
        hub.reply(
            session,
            Accepted(msg, msg.id),
            error(
                "INVALID_PARAMETERS",
                f"{msg.type} over {hub.config.max_worker_info_bytes} bytes of JSON",
                msg.id,
                {"field": "(message)", "provided_value": f"{size} bytes"},
            ),
        )
        return
    if worker is not None and status is not None:
        worker.connector_status = status
        await hub.store.worker_seen(worker.worker_id, now_ms(), worker.telemetry())
    elif msg.type == "service_request":
        await hub.store.record_service_request(data)
    hub.to_monitors(msg, session.customer_id, SEES_WORKERS)
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
    if hub.chunked_bytes() > MAX_CHUNKED_BYTES_ALL:
        return refuse("hub_busy", "the hub holds too much chunked data: retry later")
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
    session.said_goodbye = True
    if session.role is Role.WORKER and session.worker_id:
        hub.workers.pop(session.worker_id, None)  # not offered its own jobs back
        await hub.store.worker_gone(session.worker_id)
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
        hub._drop_subscriptions(session.conn_id, session.job_subs)
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
