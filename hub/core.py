"""The hub's protocol core, without sockets: frames in, frames and Redis calls out.

The transport (``server.py``, and the HTTP API's in-process connections) calls ``connect``,
``receive(conn_id, frame)``, ``disconnected`` and ``tick``; the core answers through an
``Outbox`` (send bytes to a connection, close one). A frame is parsed and checked against the
role table by its ``Session`` (``session.py``), then handled by its command (``commands/``),
which calls the job manager (``jobs.py``) or a component:

    workers        WorkerRegistry   local workers, slots, who may be idle, the fleet snapshot
    subs           Subscriptions    job, notification and stats subscriptions; who awaits a final
    fanout         Fanout           sending to connections, job events, workers, monitors; the bus
    monitoring     Monitoring       alerts, system_status, stats
    chunks         ChunkStreams     reassembly of chunked messages
    jobs           JobManager       every job transition (Lua call, messages, slots, metrics)
    webhooks       Webhooks         webhook checks at submission, the sender (spec D21)

State that must survive or be shared lives in Redis (``store.py``: jobs; ``fleet.py``: workers
and hubs); what lives here is per-process routing, rebuilt on restart.
"""

from __future__ import annotations

import itertools
import logging
import time
import uuid
from collections.abc import Collection
from typing import Protocol

import orjson
from empq.generated.messages.connection_established import ConnectionEstablished
from empq.generated.messages.stats_update import StatsUpdate
from empq.hub.access import SubmissionLimiter
from empq.hub.auth import Authenticator
from empq.hub.auth_throttle import FailedAuthThrottle
from empq.hub.chunks import ChunkStreams
from empq.hub.commands import COMMANDS, PIPELINABLE, Request
from empq.hub.config import HubConfig
from empq.hub.fanout import Fanout
from empq.hub.fleet import FleetStore
from empq.hub.jobs import JobManager
from empq.hub.logs import event
from empq.hub.metrics import HubMetrics
from empq.hub.monitoring import Monitoring
from empq.hub.resp import RedisReplyError
from empq.hub.session import Accepted, Refused, Role, Session, error
from empq.hub.store import JobStore, StoreError
from empq.hub.subscriptions import Subscriptions
from empq.hub.webhooks import Webhooks
from empq.hub.workers import WorkerRegistry

from empq import protocol

log = logging.getLogger("empq.hub")

__all__ = ["PIPELINABLE", "HubCore", "Outbox", "now_ms"]


class Outbox(Protocol):
    def send(self, conn_id: str, data: bytes) -> None: ...

    def send_many(self, conn_ids: Collection[str], data: bytes) -> None: ...  # a fan-out: one frame

    def close(self, conn_id: str, code: int, reason: str) -> None: ...


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class HubCore:
    def __init__(self, config: HubConfig, store: JobStore, outbox: Outbox, hub_id: str | None = None) -> None:
        self.config = config
        self.store = store
        self.fleet = FleetStore(store.batch, store.p)
        self.outbox = outbox
        self.hub_id = hub_id or config.hub_id or uuid.uuid4().hex[:8]
        self.started = now_ms()
        self.sessions: dict[str, Session] = {}
        self.unregistered: set[str] = set()  # connections that have not registered yet
        self.auth = Authenticator.from_config(config)
        self.auth_throttle = FailedAuthThrottle(config.auth_failures_per_minute)  # D19
        self.metrics = HubMetrics()  # /metrics: the job manager and the outbox report to it
        self.limiter = SubmissionLimiter(config.submit_rate, config.submit_burst)
        self.mean_processing_time: float | None = None
        self.hub_count = 1
        self.redis_down_since: float | None = None  # monotonic time Redis became unreachable
        self.workers = WorkerRegistry(self)
        self.subs = Subscriptions(self.hub_id)
        self.fanout = Fanout(self)
        self.monitoring = Monitoring(self)
        self.chunks = ChunkStreams()
        self.jobs = JobManager(self)
        self.webhooks = Webhooks(self)
        # connection ids are unique across restarts too: a job's origin in Redis must never name
        # a connection of a later process (a fixed hub_id would otherwise reuse conn-<hub>-1)
        self._incarnation = uuid.uuid4().hex[:6]
        self._conn_ids = itertools.count(1)
        self._next_registry = 0
        self._next_status = 0
        self._next_seen = 0

    # the transport's entry points ---------------------------------------------------------------
    def new_conn_id(self) -> str:
        return f"conn-{self.hub_id}-{self._incarnation}-{next(self._conn_ids)}"

    def unregistered_conn(self, conn_id: str) -> bool:
        return conn_id in self.unregistered

    def full(self) -> bool:
        """Too many connections have not registered yet: a new one is refused (D19)."""
        return len(self.unregistered) >= self.config.max_unregistered_connections

    def connect(self, conn_id: str, token: str | None = None, address: str = "") -> None:
        """A connection opened (the outbox can already send to it): greet it. ``token``: what the
        peer presented on the handshake (Authorization header or ?token=); ``address``: its
        host:port, for the log."""
        session = Session(conn_id, handshake_token=token, connected_at=now_ms(), address=address)
        self.sessions[conn_id] = session
        log.debug("%s connected from %s", conn_id, address or "?", extra={"event": "connected"})
        self.unregistered.add(conn_id)
        self.fanout.send(
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
        if session is None or session.said_goodbye:
            return None  # gone, or closing (it said disconnect, or was closed): later frames are moot
        if session.worker_id is not None:
            self.workers.seen(session.worker_id)
        outcome = session.receive(frame)
        if isinstance(outcome, Refused):
            self.fanout.send(conn_id, outcome.reply)
            if outcome.close:
                self.outbox.close(conn_id, 1008, "refused")
            return None
        return session, outcome

    async def dispatch(self, session: Session, accepted: Accepted) -> None:
        message = accepted.message
        self.metrics.message_in(message.type)
        request = Request(self, session, message)
        try:
            await COMMANDS[message.type](request)
        except StoreError as exc:
            job_id = getattr(message, "job_id", None)
            text = {
                "JOB_NOT_FOUND": f"no job {job_id}",
                "NOT_JOB_HOLDER": f"worker {session.worker_id} does not hold job {job_id}",
                "INVALID_STATE": f"job {job_id} is {exc.status}",
            }.get(exc.code, exc.code)
            # the state is told only to who may act on the job (not to a worker that does not hold it)
            shown = exc.status and exc.code == "INVALID_STATE"
            details = {"job_id": job_id, "status": exc.status} if shown else {"job_id": job_id}
            request.refuse(exc.code, text, details)
        except orjson.JSONEncodeError as exc:  # e.g. an integer beyond 64 bits in a payload or result
            request.refuse("INVALID_PARAMETERS", f"cannot store this message: {exc}", {"field": "(message)"})
        except (RedisReplyError, OSError) as exc:
            self.redis_lost(exc, message.type)
            request.refuse("SERVICE_UNAVAILABLE", "storage unavailable, retry")
        except Exception:
            log.exception("handler for %s failed", message.type)
            request.refuse("INTERNAL_ERROR", "internal error")
        if session.role is not Role.NEW:
            self.unregistered.discard(session.conn_id)

    async def disconnected(self, conn_id: str) -> None:
        """The connection is gone. A worker that left without ``disconnect`` keeps its jobs for
        the reconnect grace period (D16): its liveness deadline is set so the reaper takes it then."""
        session = self.sessions.pop(conn_id, None)
        self.unregistered.discard(conn_id)
        if session is not None:
            log.debug("%s closed (%s %s)", conn_id, session.role.value, session.peer_id or "-")
        self.subs.drop(conn_id)
        self.chunks.drop(conn_id)
        if session is None or not session.worker_id:
            return
        if self.workers.remove(session.worker_id, conn_id) is not None and not session.said_goodbye:
            grace = self.config.reconnect_grace_ms
            log.info(
                "worker %s dropped its connection: its jobs wait %g s for it to come back",
                session.worker_id,
                grace / 1000,
                extra=event(session, "dropped"),
            )
            deadline = now_ms() - self.config.heartbeat_timeout_ms + grace
            try:
                await self.fleet.worker_seen(session.worker_id, deadline)
            except (RedisReplyError, OSError) as exc:
                log.warning("could not record %s's departure: %s", session.worker_id, exc)

    # timers -----------------------------------------------------------------------------------
    async def tick(self) -> None:
        """Timers: sweep Redis deadlines, due webhooks, reap lost workers, hub registry, system
        status, stats broadcasts, chunk stream expiry, unregistered connections (every
        ``sweep_interval_ms``)."""
        now = now_ms()
        try:
            for fired in await self.store.sweep():
                self.jobs.on_timer(fired)
            await self.webhooks.poll()
            self.mean_processing_time = await self.store.mean_processing_time()
            if now >= self._next_seen:  # before reaping: a recent frame keeps a worker alive
                self._next_seen = now + min(1000, self.config.heartbeat_timeout_ms // 4)
                await self.workers.record_signs_of_life()
            for worker_id in await self.fleet.reap_workers(now - self.config.heartbeat_timeout_ms):
                await self.worker_lost(worker_id)
            if now >= self._next_registry:
                self._next_registry = now + 1000
                await self._refresh_registry()
                if self.config.job_retention_s > 0:
                    await self.store.forget_finished(int(self.config.job_retention_s * 1000))
                await self.store.forget_idle_classes()
                await self.monitoring.review()
                self.limiter.forget_full()
            if now >= self._next_status:
                self._next_status = now + self.config.status_interval_ms
                await self.monitoring.status_round()
            self.redis_restored()
        except (RedisReplyError, OSError) as exc:
            self.redis_lost(exc)
        await self._stats_round(now)
        for conn_id, chunk_id in self.chunks.expired(now):
            text = f"chunk stream {chunk_id} expired"
            self.fanout.send(
                conn_id, error("CHUNK_ERROR", text, None, {"chunk_id": chunk_id, "reason": "expired"})
            )
        self._close_unregistered(now)

    def redis_lost(self, exc: BaseException, during: str = "timers") -> None:
        """Said once when Redis goes away (then at DEBUG), and once when it is back."""
        if self.redis_down_since is None:
            self.redis_down_since = time.monotonic()
            log.warning("Redis unreachable (%s: %s): answering SERVICE_UNAVAILABLE", during, exc,
                        extra={"event": "redis_lost"})  # fmt: skip
        else:
            log.debug("storage error on %s: %s", during, exc)

    def redis_restored(self) -> None:
        if self.redis_down_since is not None:
            down = time.monotonic() - self.redis_down_since
            self.redis_down_since = None
            log.warning("Redis reachable again after %.1f s", down, extra={"event": "redis_restored"})

    async def _stats_round(self, now: int) -> None:
        """stats_update to the subscriptions due; viewers who may see the same get one computation."""
        computed: dict[tuple[object, ...], dict[str, object]] = {}
        for conn_id, sub in list(self.subs.stats.items()):
            session = self.sessions.get(conn_id)
            if now >= sub.next_at and session is not None:
                sub.next_at = now + sub.interval_ms
                key = (sub.sections, session.role, session.customer_id, session.permissions)
                if key not in computed:
                    try:
                        computed[key] = await self.monitoring.stats(sub.sections, session)
                    except (RedisReplyError, OSError):
                        continue
                update = protocol.make(StatsUpdate, stats=computed[key], next_broadcast=sub.next_at)
                self.fanout.send(conn_id, update)

    def _close_unregistered(self, now: int) -> None:
        """D19: a connection that has not registered within ``registration_timeout_ms`` is told
        (NOT_REGISTERED) and closed (1008), so idle sockets cannot pile up."""
        deadline = now - self.config.registration_timeout_ms
        for conn_id, session in list(self.sessions.items()):
            if session.role is Role.NEW and session.connected_at <= deadline and not session.said_goodbye:
                session.said_goodbye = True
                text = f"no registration within {self.config.registration_timeout_ms} ms"
                reason = {"reason": "registration_timeout"}
                self.fanout.send(conn_id, error("NOT_REGISTERED", text, None, reason))
                self.outbox.close(conn_id, 1008, "registration timeout")

    async def worker_lost(self, worker_id: str) -> None:
        """A worker stopped heartbeating or did not come back within the grace period: its jobs
        are requeued (a retry each), monitors told, its connection closed if it is still here."""
        events = await self.jobs.release_worker(worker_id, lost=True)
        await self.fleet.worker_gone(worker_id)  # its jobs are back: the id is free now
        log.warning(
            "worker %s lost (no sign of life): %d job(s) handed back",
            worker_id,
            len(events),
            extra={"event": "lost", "role": "worker", "peer_id": worker_id},
        )
        self.monitoring.alert(
            f"worker_lost:{worker_id}",
            "warning",
            "worker_lost",
            f"worker {worker_id} is gone",
            {
                "worker_id": worker_id,
                "jobs_requeued": [e.job_id for e in events if e.event == "release"],
                "jobs_failed": [e.job_id for e in events if e.event == "lost"],
            },
            ["Check the worker machine", "Restart the worker"],
        )
        local = self.workers.remove(worker_id)
        if local is not None:
            session = self.sessions.get(local.conn_id)
            if session is not None:
                session.said_goodbye = True
            self.outbox.close(local.conn_id, 4000, "heartbeat timeout")

    async def _refresh_registry(self) -> None:
        counts = {"job_client": 0, "monitor": 0, "worker": 0, "new": 0}
        for session in self.sessions.values():
            counts[session.role.value] += 1
        await self.fleet.hub_alive(self.hub_id, {"connections": counts, "started": self.started})
        hubs = await self.fleet.hubs(within_ms=max(5000, 5 * self.config.sweep_interval_ms))
        self.hub_count = max(1, len(hubs))
        gone = self.fanout.hubs_changed({h for h in hubs if h != self.hub_id})
        if gone:  # a hub vanished: it may have died between a transition and its publish
            await self.jobs.resync_finals(f"hub {', '.join(sorted(gone))} gone")
        await self.workers.refresh()
