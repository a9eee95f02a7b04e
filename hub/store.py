"""The job store: every job state change is one Lua script on Redis (see hub/README.md).

Each method makes one script call and decodes its reply into a named result (``Moved`` and its
kinds); a refusal raises ``StoreError(code, status)`` (unknown job, not the holder, wrong state).
Calls go through ``RedisBatch`` so concurrent calls share round trips. The class registry (job
classes and their queues) is cached here and refreshed when the claim script reports a newer
version. Payloads stay opaque JSON text from ``submit`` to ``ClaimedJob.payload``.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import dataclass
from typing import Any

from empq.hub.matching import JobClass, can_run
from empq.hub.redis_batch import RedisBatch

SCRIPTS = (
    "submit",
    "claim",
    "accept",
    "progress",
    "complete",
    "fail",
    "cancel",
    "sweep",
    "status",
    "release",
    "reap",
    "capabilities",
    "forget",
    "register_worker",
    "gc_classes",
    "webhook_claim",
    "webhook_done",
)
ROUTING_SIZE = 6  # fields of Routing, in every transition reply after the previous status


class AlreadySubmitted(Exception):
    """A submission's idempotency key was used already (D18): the first job and its position."""

    def __init__(self, job_id: str, position: int) -> None:
        super().__init__(job_id)
        self.job_id = job_id
        self.position = position


class QueueFull(Exception):
    """The queue bound is reached (D19): nothing was queued."""

    def __init__(self, queued: int, per_customer: bool = False) -> None:
        super().__init__(queued)
        self.queued = queued
        self.per_customer = per_customer  # the bound per customer, not the global one


class NotRetryable(Exception):
    """A retry's original is gone (``status`` ''), not in a retryable state, or was retried already
    (``retried_as``): nothing was queued (D20)."""

    def __init__(self, status: str, retried_as: str) -> None:
        super().__init__(status, retried_as)
        self.status = status
        self.retried_as = retried_as


class StoreError(Exception):
    """A script refused: ``code`` (JOB_NOT_FOUND, NOT_JOB_HOLDER, INVALID_STATE), the job's
    ``status`` when it has one."""

    def __init__(self, code: str, status: str = "") -> None:
        super().__init__(code, status)
        self.code = code
        self.status = status


@dataclass(frozen=True, slots=True)
class Routing:
    """Who hears about a job: its submitter's connection, and what notification filters see."""

    origin: str
    client_id: str
    customer_id: str | None
    job_type: str
    priority: int
    class_id: str

    @classmethod
    def of(cls, values: list[Any]) -> Routing:
        origin, client_id, customer_id, job_type, priority, class_id = values
        return cls(origin, client_id, customer_id or None, job_type, int(priority or 0), class_id)


@dataclass(frozen=True, slots=True)
class Moved:
    """A job changed state (a transition script's reply)."""

    previous: str
    routing: Routing


@dataclass(frozen=True, slots=True)
class Completed(Moved):
    processing_time: float


@dataclass(frozen=True, slots=True)
class Failed(Moved):
    retry: bool  # queued again after delay_ms; else failed for good
    delay_ms: int
    retry_count: int


@dataclass(frozen=True, slots=True)
class Cancelled(Moved):
    holder: str | None  # the worker that held it


@dataclass(frozen=True, slots=True)
class JobEvent:
    """A transition made without a message (a timer, a worker released): ``event`` names its row
    in ``hub/lifecycle.py`` (claim_expired, time_limit, release, lost), or 'retry_ready' (a
    delayed retry became claimable: still queued)."""

    event: str
    job_id: str
    worker_id: str  # '' for retry
    previous: str
    routing: Routing


@dataclass(frozen=True, slots=True)
class ClaimedJob:
    job_id: str
    routing: Routing
    payload: str  # JSON text, as submitted: sent on without being parsed again
    requirements: str | None  # JSON text
    retry_count: int
    max_retries: int


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def _moved(r: list[Any]) -> tuple[str, Routing, list[Any]]:
    """Decode {'OK', previous, routing..., extras...}; raise the refusal {'ERR', code, status}."""
    if r[0] != "OK":
        raise StoreError(r[1], r[2])
    return r[1], Routing.of(r[2 : 2 + ROUTING_SIZE]), r[2 + ROUTING_SIZE :]


def _events(r: list[Any]) -> list[JobEvent]:
    """Decode flat records of (event, job id, worker id, previous status, routing...)."""
    size = 4 + ROUTING_SIZE
    return [
        JobEvent(r[i], r[i + 1], r[i + 2], r[i + 3], Routing.of(r[i + 4 : i + size]))
        for i in range(0, len(r), size)
    ]


def pairs(flat: list[Any]) -> list[tuple[Any, Any]]:
    return list(zip(flat[0::2], flat[1::2], strict=True))


class JobStore:
    def __init__(self, batch: RedisBatch, prefix: str) -> None:
        self.batch = batch
        self.p = prefix
        self.classes: dict[str, JobClass] = {}
        self.classes_version = -1

    # keys -------------------------------------------------------------------------------
    def job_key(self, job_id: str) -> str:
        return f"{self.p}:job:{job_id}"

    def queue_key(self, class_id: str) -> str:
        return f"{self.p}:q:{class_id}"

    def customer_queue_key(self, class_id: str, customer_id: str) -> str:
        return f"{self.p}:q:{class_id}:c:{customer_id}"

    def worker_jobs_key(self, worker_id: str) -> str:
        return f"{self.p}:wjobs:{worker_id}"

    def key(self, name: str) -> str:
        return f"{self.p}:{name}"

    # job lifecycle (lifecycle.py names each step) -------------------------------------------
    async def submit(
        self,
        job_id: str,
        job_class: JobClass,
        priority: int,
        fields: dict[str, Any],
        idempotency: tuple[str, int] | None = None,
        max_queued: int = 0,
        customer_id: str | None = None,
        max_queued_per_customer: int = 0,
        retry_of: str = "",
    ) -> int:
        """Queue a job; returns its 1-based position. ``idempotency`` = (scoped key, ttl ms): when
        the key was used within the ttl nothing is queued and ``AlreadySubmitted`` names the first
        job and its position (D18). With ``max_queued`` > 0 and that many jobs queued already,
        nothing is queued and ``QueueFull`` says so (D19); the same for ``max_queued_per_customer``
        jobs of ``customer_id``. With ``retry_of`` the job retries that one (D20): unless it is
        retryable (``lifecycle.RETRYABLE``) and not retried yet, nothing is queued and
        ``NotRetryable`` says why; else it is linked to the new job (``retried_as``)."""
        self.classes.setdefault(job_class.id, job_class)
        flat: list[Any] = []
        for name, value in fields.items():
            if value is not None:
                flat += (name, value)
        k = self.key
        keys = [
            self.job_key(job_id),
            self.queue_key(job_class.id),
            k("classes"),
            k("classes:version"),
            k("seq"),
            k("counts"),
        ]
        ttl_ms = 0
        if idempotency is not None:
            digest = hashlib.sha256(idempotency[0].encode()).hexdigest()
            keys.append(k(f"idem:{digest}"))
            ttl_ms = idempotency[1]
        r = await self.batch.script(
            "submit",
            keys,
            [
                job_class.id,
                job_class.to_json(),
                priority,
                self.p,
                job_id,
                ttl_ms,
                max_queued,
                customer_id or "",
                max_queued_per_customer,
                fields.get("created_at") or now_ms(),
                retry_of,
                *flat,
            ],
        )
        if int(r[0]) == -3:
            raise NotRetryable(r[1], r[2])
        if int(r[0]) < 0:
            raise QueueFull(int(r[1]), per_customer=int(r[0]) == -2)
        if int(r[0]) == 0:
            raise AlreadySubmitted(r[3], int(r[1]))
        return int(r[1])

    async def claim(
        self,
        worker_id: str,
        capabilities: dict[str, Any],
        max_jobs: int,
        claim_timeout_ms: int,
        preferred_types: list[str] | None,
    ) -> list[ClaimedJob]:
        for attempt in range(2):
            known = self.classes_version  # the classes the queues below are built from
            preferred = set(preferred_types or ())
            queues: list[tuple[str, int]] = []  # (queue key, preferred flag)
            allowed = capabilities.get("allowed_customers")
            for c in self.classes.values():
                if can_run(capabilities, c):
                    flag = 1 if c.job_type in preferred else 0
                    if allowed is None:
                        queues.append((self.queue_key(c.id), flag))
                    else:  # a worker bound to customers takes from their queues of the class
                        queues += [(self.customer_queue_key(c.id, customer), flag) for customer in allowed]
            k = self.key
            reply = await self.batch.script(
                "claim",
                [k("claims"), k("counts"), self.worker_jobs_key(worker_id), k("classes:version")]
                + [key for key, _ in queues],
                [worker_id, now_ms(), claim_timeout_ms, max_jobs, self.p, *(flag for _, flag in queues)],
            )
            version, count = int(reply[0]), int(reply[1])
            if version != known:  # compared with what the queues were built from, not the cache now
                if version != self.classes_version:
                    await self.refresh_classes()
                if count == 0 and attempt == 0:
                    continue  # classes we did not know about may hold jobs for this worker
            size = 1 + ROUTING_SIZE + 4
            return [_claimed(reply[2 + i * size : 2 + (i + 1) * size]) for i in range(count)]
        return []

    async def refresh_classes(self) -> None:
        version, defs = await asyncio.gather(
            self.batch.command("GET", self.key("classes:version")),
            self.batch.command("HGETALL", self.key("classes")),
        )
        self.classes = {cid: JobClass.from_json(raw) for cid, raw in pairs(defs)}
        self.classes_version = int(version or 0)

    async def accept(self, worker_id: str, job_id: str) -> Moved:
        k = self.key
        r = await self.batch.script(
            "accept",
            [self.job_key(job_id), k("claims"), k("runs"), k("counts")],
            [worker_id, now_ms(), job_id, self.p],
        )
        previous, routing, _ = _moved(r)
        return Moved(previous, routing)

    def progress_call(
        self, updates: list[tuple[str, str, float, dict[str, Any]]]
    ) -> tuple[list[str], list[Any]]:
        """Keys and arguments of the ``progress`` script for these updates (worker id, job id,
        progress, fields: None values left out), any number of jobs."""
        keys = [self.key("claims"), self.key("counts")]
        args: list[Any] = [now_ms(), self.p]
        for worker_id, job_id, progress, fields in updates:
            keys.append(self.job_key(job_id))
            flat: list[Any] = []
            for name, value in fields.items():
                if value is not None:
                    flat += (name, value)
            args += (worker_id, job_id, progress, len(flat), *flat)
        return keys, args

    @staticmethod
    def progress_replies(replies: list[Any]) -> list[Moved | StoreError]:
        """Per update, its move, or the refusal (``StoreError``, not raised)."""
        out: list[Moved | StoreError] = []
        for r in replies:
            if r[0] != "OK":
                out.append(StoreError(r[1], r[2]))
            else:
                out.append(Moved(r[1], Routing.of(r[2 : 2 + ROUTING_SIZE])))
        return out

    async def complete(
        self, worker_id: str, job_id: str, result: bytes, processing_time: float | None
    ) -> Completed:
        k = self.key
        r = await self.batch.script(
            "complete",
            [
                self.job_key(job_id),
                k("claims"),
                k("runs"),
                k("counts"),
                self.worker_jobs_key(worker_id),
                k("ptime"),
                k("done"),
                k("finished"),
            ],
            [worker_id, now_ms(), job_id, result, "" if processing_time is None else processing_time, self.p],
        )
        previous, routing, (ptime,) = _moved(r)
        return Completed(previous, routing, float(ptime))

    async def fail(
        self,
        worker_id: str,
        job_id: str,
        error: str,
        retry: bool,
        base_ms: int,
        cap_ms: int,
        details: bytes | None,
    ) -> Failed:
        k = self.key
        r = await self.batch.script(
            "fail",
            [
                self.job_key(job_id),
                k("claims"),
                k("runs"),
                k("counts"),
                self.worker_jobs_key(worker_id),
                k("delayed"),
                k("failures"),
                k("finished"),
            ],
            [worker_id, now_ms(), job_id, error, 1 if retry else 0, base_ms, cap_ms, details or "", self.p],
        )
        previous, routing, (outcome, delay_ms, retries) = _moved(r)
        return Failed(previous, routing, outcome == "retry", int(delay_ms), int(retries))

    async def cancel(self, job_id: str, reason: str, at: int | None = None) -> Cancelled:
        k = self.key
        r = await self.batch.script(
            "cancel",
            [self.job_key(job_id), k("claims"), k("runs"), k("counts"), k("delayed"), k("finished")],
            [now_ms() if at is None else at, job_id, self.p, reason],
        )
        previous, routing, (holder,) = _moved(r)
        return Cancelled(previous, routing, holder or None)

    async def release_worker(self, worker_id: str, count_retry: bool) -> list[JobEvent]:
        """Hand back a worker's jobs (events 'release', or 'lost' for a job out of retries)."""
        k = self.key
        r = await self.batch.script(
            "release",
            [self.worker_jobs_key(worker_id), *map(k, ("claims", "runs", "counts", "failures", "finished"))],
            [worker_id, now_ms(), self.p, 1 if count_retry else 0],
        )
        return _events(r)

    # timers ------------------------------------------------------------------------------
    async def sweep(self, limit: int = 500) -> list[JobEvent]:
        """Fire due timers (events 'claim_expired', 'retry_ready', 'time_limit') and trim the hour logs."""
        k = self.key
        r = await self.batch.script(
            "sweep",
            [k("claims"), k("runs"), k("delayed"), k("counts"), k("done"), k("failures"), k("finished")],
            [now_ms(), self.p, limit],
        )
        return _events(r)

    async def forget_idle_classes(self, limit: int = 1000) -> int:
        """Job classes with no live job left leave the registry (claims stop looking at them)."""
        k = self.key
        return int(
            await self.batch.script(
                "gc_classes",
                [k("classes"), k("class_live"), k("classes_idle"), k("classes:version")],
                [self.p, limit],
            )
        )

    async def forget_finished(self, retention_ms: int, limit: int = 1000) -> int:
        """Retention: drop jobs final for longer than ``retention_ms`` (hash and listing entry)."""
        return int(
            await self.batch.script(
                "forget", [self.key("finished"), self.key("jobs")], [now_ms() - retention_ms, limit, self.p]
            )
        )

    # reads ------------------------------------------------------------------------------
    async def status(self, job_id: str) -> dict[str, str] | None:
        """The job hash (strings), with ``__position`` (0 unless waiting in a queue); None if unknown."""
        r = await self.batch.script("status", [self.job_key(job_id), self.key("classes")], [self.p, job_id])
        return dict(pairs(r)) if r else None

    async def fields(self, job_id: str, *names: str) -> list[str | None]:
        return list(await self.batch.command("HMGET", self.job_key(job_id), *names))

    async def mean_processing_time(self) -> float | None:
        total, count = await self.batch.command("HMGET", self.key("ptime"), "sum", "count")
        return float(total) / int(count) if count and int(count) > 0 else None

    async def counts(self) -> dict[str, int]:
        return {name: int(v) for name, v in pairs(await self.batch.command("HGETALL", self.key("counts")))}

    async def queue_depths(self, bands: list[tuple[int, int]]) -> list[int]:
        """Claimable jobs (every class, all hubs) per priority band (lo, hi inclusive), from
        ``P:queued`` whose score is (100 - priority) * 2^40 + seq."""
        unit = 1 << 40
        return [
            int(n)
            for n in await asyncio.gather(
                *(
                    self.batch.command(
                        "ZCOUNT", self.key("queued"), (100 - hi) * unit, f"({(101 - lo) * unit}"
                    )
                    for lo, hi in bands
                )
            )
        ]

    async def throughput(self) -> dict[str, int]:
        now = now_ms()
        done, failures = self.key("done"), self.key("failures")
        minute, hour, failed = await asyncio.gather(
            self.batch.command("ZCOUNT", done, now - 60_000, "+inf"),
            self.batch.command("ZCOUNT", done, now - 3_600_000, "+inf"),
            self.batch.command("ZCOUNT", failures, now - 3_600_000, "+inf"),
        )
        return {
            "completed_last_minute": int(minute),
            "completed_last_hour": int(hour),
            "failed_last_hour": int(failed),
        }


def _claimed(f: list[Any]) -> ClaimedJob:
    job_id, routing = f[0], Routing.of(f[1 : 1 + ROUTING_SIZE])
    payload, requirements, retries, max_retries = f[1 + ROUTING_SIZE :]
    return ClaimedJob(
        job_id=job_id,
        routing=routing,
        payload=payload,
        requirements=requirements or None,
        retry_count=int(retries or 0),
        max_retries=int(max_retries or 0),
    )
