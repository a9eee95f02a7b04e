"""The workers connected to this hub, and what the hub knows of every hub's workers.

``WorkerRegistry`` owns the local workers (their slots, status, telemetry, liveness), the set of
those that may be idle (``job_available`` goes through these, not through a busy fleet, D7), and
a snapshot of every hub's workers' capabilities (refreshed each second) to answer "can anyone
run this class?" without scanning the fleet on every submission.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from empq.generated.messages.job_available import JobAvailable
from empq.hub.matching import JobClass, can_run, customer_allowed

from empq import protocol

if TYPE_CHECKING:
    from empq.hub.core import HubCore


def now_ms() -> int:
    return time.time_ns() // 1_000_000


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


class WorkerRegistry:
    def __init__(self, hub: HubCore) -> None:
        self.hub = hub
        self.local: dict[str, LocalWorker] = {}
        # local workers that may be idle (subscribed, not notified since their claim, a free slot):
        # (re)added whenever one may have become idle, dropped when found not to be
        self.maybe_idle: dict[str, None] = {}
        self.everywhere: dict[str, dict[str, Any]] = {}  # every hub's workers, refreshed each second
        self._capable: dict[tuple[str, str | None], bool] = {}  # see someone_can_run

    # membership ---------------------------------------------------------------------------
    def get(self, worker_id: str) -> LocalWorker | None:
        return self.local.get(worker_id)

    def connected(self, worker_id: str) -> bool:
        worker = self.local.get(worker_id)
        return worker is not None and worker.conn_id in self.hub.sessions

    def add(self, worker: LocalWorker) -> None:
        self.local[worker.worker_id] = worker
        self._capable.clear()  # a new worker may run classes nobody could
        self.maybe_idle[worker.worker_id] = None

    def remove(self, worker_id: str, conn_id: str | None = None) -> LocalWorker | None:
        """Forget a local worker (only if still on ``conn_id``, when given)."""
        worker = self.local.get(worker_id)
        if worker is None or (conn_id is not None and worker.conn_id != conn_id):
            return None
        del self.local[worker_id]
        return worker

    # slots and status -----------------------------------------------------------------------
    def hold(self, worker_id: str, job_id: str) -> None:
        worker = self.local.get(worker_id)
        if worker is not None:
            worker.held.add(job_id)

    def release(self, worker_id: str, job_id: str) -> None:
        """The worker no longer holds the job: its slot is free."""
        worker = self.local.get(worker_id)
        if worker is not None:
            worker.held.discard(job_id)
            self.maybe_idle[worker_id] = None

    def claiming(self, worker: LocalWorker) -> None:
        """It asked for work: it may be notified again."""
        worker.notified = False
        self.maybe_idle[worker.worker_id] = None

    def set_status(self, worker: LocalWorker, status: str) -> None:
        worker.status = status
        self.maybe_idle[worker.worker_id] = None

    def set_capabilities(self, worker: LocalWorker, capabilities: dict[str, Any]) -> None:
        worker.capabilities = capabilities
        self._capable.clear()

    def heartbeat(self, worker: LocalWorker, at: int, load: float | None, telemetry: dict[str, Any]) -> None:
        worker.last_heartbeat = at
        if load is not None:
            worker.load = load
        for name, value in telemetry.items():
            setattr(worker, name, value)

    def set_connector(self, worker: LocalWorker, status: dict[str, Any]) -> None:
        worker.connector_status = status

    def seen(self, worker_id: str) -> None:
        """Any frame from a worker is a sign of life."""
        worker = self.local.get(worker_id)
        if worker is not None:
            worker.last_seen = now_ms()

    # job_available ---------------------------------------------------------------------------
    def notify(self, job_id: str, job_class: JobClass, customer_id: str | None, priority: int) -> int:
        """Send job_available to up to ``notify_fanout`` idle local workers that can run the job."""
        sent = 0
        message: bytes | None = None
        for worker_id in list(self.maybe_idle):
            if sent >= self.hub.config.notify_fanout:
                break
            worker = self.local.get(worker_id)
            if worker is None or worker.notified or not worker.subscribe or worker.free <= 0:
                del self.maybe_idle[worker_id]  # back when it claims, frees a slot or changes status
                continue
            if not can_run(worker.capabilities, job_class) or not customer_allowed(
                worker.capabilities, customer_id
            ):
                continue
            if message is None:
                message = protocol.encode(
                    protocol.outgoing(
                        JobAvailable,
                        job_id=job_id,
                        job_type=job_class.job_type,
                        priority=priority,
                        requirements_summary=job_class.summary(),
                    )
                )
            worker.notified = True
            del self.maybe_idle[worker_id]
            self.hub.fanout.deliver(worker.conn_id, message)
            sent += 1
        return sent

    def someone_can_run(self, job_class: JobClass, customer_id: str | None) -> bool:
        """Can any worker (every hub's as of the last refresh, ours as they are now) run jobs of
        this class? Memoised per (class, customer) until the worker set changes, so a busy fleet
        of thousands is not scanned on every submission."""
        key = (job_class.id, customer_id)
        known = self._capable.get(key)
        if known is None:
            known = self._capable[key] = any(
                can_run(caps, job_class) and customer_allowed(caps, customer_id)
                for caps in [
                    *(w["capabilities"] for w in self.everywhere.values()),
                    *(w.capabilities for w in self.local.values()),
                ]
            )
        return known

    # shared registry --------------------------------------------------------------------------
    async def refresh(self) -> None:
        """Every hub's workers, in one round trip however many there are."""
        self.everywhere = await self.hub.fleet.worker_capabilities()
        self._capable.clear()

    async def record_signs_of_life(self) -> None:
        """The latest frame of each local worker, written to Redis (before reaping: a worker that
        keeps talking is never reaped)."""
        seen = [(w.worker_id, w.last_seen) for w in self.local.values() if w.last_seen > w.recorded_seen]
        for worker_id, at in seen:
            self.local[worker_id].recorded_seen = at
        if seen:
            await asyncio.gather(*(self.hub.fleet.worker_seen(worker_id, at) for worker_id, at in seen))
