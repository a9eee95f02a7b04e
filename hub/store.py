"""The job store: every job state change is one Lua script on Redis (see hub/README.md).

Methods return plain data; they raise ``StoreError(code)`` when a script refuses (unknown job,
not the holder, wrong state).  Calls go through ``RedisBatch`` so concurrent calls share round
trips.  The class registry (job classes and their queues) is cached here and refreshed when the
claim script reports a newer version.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import dataclass
from typing import Any

import orjson
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
)


class AlreadySubmitted(Exception):
    """A submission's idempotency key was used already (D18): the first job and its position."""

    def __init__(self, job_id: str, position: int) -> None:
        super().__init__(job_id)
        self.job_id = job_id
        self.position = position


class QueueFull(Exception):
    """The queue bound is reached (D19): nothing was queued."""

    def __init__(self, queued: int) -> None:
        super().__init__(queued)
        self.queued = queued


class StoreError(Exception):
    def __init__(self, code: str, status: str = "") -> None:
        super().__init__(code, status)
        self.code = code
        self.status = status


@dataclass(frozen=True)
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


@dataclass(frozen=True)
class ClaimedJob:
    job_id: str
    job_type: str
    priority: int
    payload: dict[str, Any]
    requirements: dict[str, Any] | None
    customer_id: str | None
    retry_count: int
    max_retries: int
    routing: Routing


@dataclass(frozen=True)
class Transition:
    previous: str
    routing: Routing
    extra: tuple[Any, ...] = ()


@dataclass(frozen=True)
class TimerEvent:
    kind: str  # 'claim' (claim timed out, requeued) | 'retry' (claimable again) | 'timeout'
    job_id: str
    worker_id: str
    routing: Routing


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class JobStore:
    def __init__(self, batch: RedisBatch, prefix: str) -> None:
        self.batch = batch
        self.p = prefix
        self.classes: dict[str, JobClass] = {}
        self.classes_version = -1
        self._parsed_capabilities: dict[str, dict[str, Any]] = {}  # capabilities JSON -> parsed

    # keys -------------------------------------------------------------------------------
    def job_key(self, job_id: str) -> str:
        return f"{self.p}:job:{job_id}"

    def queue_key(self, class_id: str) -> str:
        return f"{self.p}:q:{class_id}"

    def worker_jobs_key(self, worker_id: str) -> str:
        return f"{self.p}:wjobs:{worker_id}"

    def key(self, name: str) -> str:
        return f"{self.p}:{name}"

    # job lifecycle ------------------------------------------------------------------------
    async def submit(
        self,
        job_id: str,
        job_class: JobClass,
        priority: int,
        fields: dict[str, Any],
        idempotency: tuple[str, int] | None = None,
        max_queued: int = 0,
    ) -> int:
        """Queue a job; returns its 1-based position. ``idempotency`` = (scoped key, ttl ms): when
        the key was used within the ttl nothing is queued and ``AlreadySubmitted`` names the first
        job and its position (D18). With ``max_queued`` > 0 and that many jobs queued already,
        nothing is queued and ``QueueFull`` says so (D19)."""
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
            [job_class.id, job_class.to_json(), priority, self.p, job_id, ttl_ms, max_queued, *flat],
        )
        if int(r[0]) < 0:
            raise QueueFull(int(r[1]))
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
            eligible = [c for c in self.classes.values() if can_run(capabilities, c)]
            preferred = set(preferred_types or ())
            allowed = capabilities.get("allowed_customers")
            k = self.key
            reply = await self.batch.script(
                "claim",
                [k("claims"), k("counts"), self.worker_jobs_key(worker_id), k("classes:version")]
                + [self.queue_key(c.id) for c in eligible],
                [
                    worker_id,
                    now_ms(),
                    claim_timeout_ms,
                    max_jobs,
                    self.p,
                    orjson.dumps(allowed).decode() if allowed is not None else "",
                    *(1 if c.job_type in preferred else 0 for c in eligible),
                ],
            )
            version, count = int(reply[0]), int(reply[1])
            if version != self.classes_version:
                await self.refresh_classes()
                if count == 0 and attempt == 0:
                    continue  # classes we did not know about may hold jobs for this worker
            return [self._claimed(reply[2 + i * 11 : 13 + i * 11]) for i in range(count)]
        return []

    @staticmethod
    def _claimed(f: list[Any]) -> ClaimedJob:
        (
            job_id,
            job_type,
            priority,
            payload,
            requirements,
            customer,
            retries,
            max_retries,
            origin,
            client,
            cls,
        ) = f
        return ClaimedJob(
            job_id=job_id,
            job_type=job_type,
            priority=int(priority),
            payload=orjson.loads(payload),
            requirements=orjson.loads(requirements) if requirements else None,
            customer_id=customer or None,
            retry_count=int(retries or 0),
            max_retries=int(max_retries or 0),
            routing=Routing(origin, client, customer or None, job_type, int(priority), cls),
        )

    async def refresh_classes(self) -> None:
        version, defs = await asyncio.gather(
            self.batch.command("GET", self.key("classes:version")),
            self.batch.command("HGETALL", self.key("classes")),
        )
        self.classes = {cid: JobClass.from_json(raw) for cid, raw in _pairs(defs)}
        self.classes_version = int(version or 0)

    async def accept(self, worker_id: str, job_id: str) -> Transition:
        k = self.key
        r = await self.batch.script(
            "accept",
            [self.job_key(job_id), k("claims"), k("runs"), k("counts")],
            [worker_id, now_ms(), job_id],
        )
        return self._transition(r, 2)

    async def progress(
        self, worker_id: str, job_id: str, progress: float, fields: dict[str, Any]
    ) -> Transition:
        flat: list[Any] = []
        for name, value in fields.items():
            if value is not None:
                flat += (name, value)
        k = self.key
        r = await self.batch.script(
            "progress",
            [self.job_key(job_id), k("claims"), k("counts")],
            [worker_id, now_ms(), job_id, progress, *flat],
        )
        return self._transition(r, 2)

    async def complete(
        self, worker_id: str, job_id: str, result: bytes, processing_time: float | None
    ) -> Transition:
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
            [worker_id, now_ms(), job_id, result, "" if processing_time is None else processing_time],
        )
        return self._transition(r, 3, extra=(float(r[2]),) if r[0] == "OK" else ())

    async def fail(
        self,
        worker_id: str,
        job_id: str,
        error: str,
        retry: bool,
        base_ms: int,
        cap_ms: int,
        details: bytes | None,
    ) -> Transition:
        """extra = (outcome 'retry'|'failed', delay ms, retry_count)."""
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
            [worker_id, now_ms(), job_id, error, 1 if retry else 0, base_ms, cap_ms, details or ""],
        )
        if r[0] != "OK":
            raise StoreError(r[1], r[2])
        return Transition(r[1], Routing.of(r[5:11]), (r[2], int(r[3]), int(r[4])))

    async def cancel(self, job_id: str, reason: str) -> Transition:
        """extra = (worker id that held it, or '')."""
        k = self.key
        r = await self.batch.script(
            "cancel",
            [self.job_key(job_id), k("claims"), k("runs"), k("counts"), k("delayed"), k("finished")],
            [now_ms(), job_id, self.p, reason],
        )
        if r[0] != "OK":
            raise StoreError(r[1], r[2])
        return Transition(r[1], Routing.of(r[3:9]), (r[2],))

    @staticmethod
    def _transition(r: list[Any], start: int, extra: tuple[Any, ...] = ()) -> Transition:
        if r[0] != "OK":
            raise StoreError(r[1], r[2])
        return Transition(r[1], Routing.of(r[start : start + 6]), extra)

    # reads ------------------------------------------------------------------------------
    async def status(self, job_id: str) -> dict[str, str] | None:
        """The job hash (strings), with ``__position`` (0 unless waiting in a queue); None if unknown."""
        r = await self.batch.script("status", [self.job_key(job_id), self.key("classes")], [self.p, job_id])
        return dict(_pairs(r)) if r else None

    async def fields(self, job_id: str, *names: str) -> list[str | None]:
        return list(await self.batch.command("HMGET", self.job_key(job_id), *names))

    async def mean_processing_time(self) -> float | None:
        total, count = await self.batch.command("HMGET", self.key("ptime"), "sum", "count")
        return float(total) / int(count) if count and int(count) > 0 else None

    async def counts(self) -> dict[str, int]:
        return {name: int(v) for name, v in _pairs(await self.batch.command("HGETALL", self.key("counts")))}

    async def list_jobs(
        self, before: int | None, batch: int, fields: tuple[str, ...]
    ) -> list[tuple[int, str, list[str | None]]]:
        """Up to ``batch`` jobs, newest first, submitted before sequence number ``before`` (None:
        from the newest), from the ``P:jobs`` index: (seq, job id, the requested hash fields)."""
        top = f"({before}" if before is not None else "+inf"
        flat = await self.batch.command(
            "ZRANGE", self.key("jobs"), top, "-inf", "BYSCORE", "REV", "LIMIT", 0, batch, "WITHSCORES"
        )
        page = [(str(job_id), int(float(score))) for job_id, score in _pairs(flat)]
        values = await asyncio.gather(
            *(self.batch.command("HMGET", self.job_key(job_id), *fields) for job_id, _ in page)
        )
        return [(seq, job_id, list(v)) for (job_id, seq), v in zip(page, values, strict=True)]

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

    async def live_workers(self) -> int:
        return int(await self.batch.command("ZCARD", self.key("workers")))

    # workers and hubs (shared registry: stats and liveness across hubs) ------------------------
    def worker_key(self, worker_id: str) -> str:
        return f"{self.p}:worker:{worker_id}"

    async def register_worker(
        self, worker_id: str, owner: str, hub_id: str, capabilities: dict[str, Any]
    ) -> list[str] | None:
        """Record the worker in the shared registry; the jobs it still holds (resumed after a
        reconnect), or None when its id is registered by another token (``owner``)."""
        r = await self.batch.script(
            "register_worker",
            [self.worker_key(worker_id), self.key("workers"), self.worker_jobs_key(worker_id)],
            [worker_id, owner, hub_id, orjson.dumps(capabilities), now_ms()],
        )
        return sorted(r[1:]) if r[0] == "OK" else None

    async def worker_seen(self, worker_id: str, at_ms: int, telemetry: dict[str, Any] | None = None) -> None:
        """A sign of life (or, with a past ``at_ms``, a deadline: a dropped connection's grace)."""
        calls = [self.batch.command("ZADD", self.key("workers"), at_ms, worker_id)]
        if telemetry:
            calls.append(
                self.batch.command("HSET", self.worker_key(worker_id), "telemetry", orjson.dumps(telemetry))
            )
        await asyncio.gather(*calls)

    async def worker_gone(self, worker_id: str) -> None:
        await asyncio.gather(
            self.batch.command("ZREM", self.key("workers"), worker_id),
            self.batch.command("DEL", self.worker_key(worker_id)),
        )

    async def reap_workers(self, deadline_ms: int, limit: int = 100) -> list[str]:
        """Workers last seen at or before ``deadline_ms``, removed from the registry (each to one hub)."""
        return list(await self.batch.script("reap", [self.key("workers")], [deadline_ms, self.p, limit]))

    async def workers(self) -> dict[str, dict[str, Any]]:
        """Every registered worker (all hubs): capabilities, hub, telemetry, last_seen."""
        seen = _pairs(await self.batch.command("ZRANGE", self.key("workers"), 0, -1, "WITHSCORES"))
        if not seen:
            return {}
        rows = await asyncio.gather(*(self.batch.command("HGETALL", self.worker_key(w)) for w, _ in seen))
        out: dict[str, dict[str, Any]] = {}
        for (worker_id, last_seen), row in zip(seen, rows, strict=True):
            fields = dict(_pairs(row))
            out[worker_id] = {
                "hub": fields.get("hub"),
                "capabilities": orjson.loads(fields["capabilities"]) if "capabilities" in fields else {},
                "telemetry": orjson.loads(fields["telemetry"]) if "telemetry" in fields else {},
                "last_seen": int(float(last_seen)),
            }
        return out

    async def worker_capabilities(self) -> dict[str, dict[str, Any]]:
        """Every registered worker (all hubs) with only its capabilities, in one round trip and one
        reply (``workers`` costs a command, a future and a JSON parse per worker: with 10,000
        workers, done every second, that stalled the event loop for hundreds of ms). Identical
        capability documents are parsed once."""
        flat = await self.batch.script("capabilities", [self.key("workers")], [self.p])
        parsed = self._parsed_capabilities
        out: dict[str, dict[str, Any]] = {}
        for worker_id, raw in _pairs(flat):
            capabilities = parsed.get(raw)
            if capabilities is None:
                capabilities = parsed[raw] = orjson.loads(raw) if raw else {}
            out[worker_id] = {"capabilities": capabilities}
        if len(parsed) > 2 * len(out) + 100:  # forget documents no worker has any more
            self._parsed_capabilities = {}
        return out

    async def record_service_request(self, frame: bytes, keep: int = 1000) -> None:
        """Keep the last ``keep`` service_request messages (telemetry)."""
        key = self.key("service_requests")
        await asyncio.gather(
            self.batch.command("LPUSH", key, frame), self.batch.command("LTRIM", key, 0, keep - 1)
        )

    async def hub_alive(self, hub_id: str, info: dict[str, Any]) -> None:
        await self.batch.command("HSET", self.key("hubs"), hub_id, orjson.dumps({**info, "seen": now_ms()}))

    async def hubs(self, within_ms: int) -> dict[str, dict[str, Any]]:
        """Hubs that reported within ``within_ms`` (older entries are dropped)."""
        now = now_ms()
        alive, stale = {}, []
        for hub_id, raw in _pairs(await self.batch.command("HGETALL", self.key("hubs"))):
            info = orjson.loads(raw)
            if now - info["seen"] <= within_ms:
                alive[hub_id] = info
            else:
                stale.append(hub_id)
        if stale:
            await self.batch.command("HDEL", self.key("hubs"), *stale)
        return alive

    async def hub_gone(self, hub_id: str) -> None:
        await self.batch.command("HDEL", self.key("hubs"), hub_id)

    # timers ------------------------------------------------------------------------------
    async def sweep(self, limit: int = 500) -> list[TimerEvent]:
        k = self.key
        r = await self.batch.script(
            "sweep",
            [k("claims"), k("runs"), k("delayed"), k("counts"), k("done"), k("failures"), k("finished")],
            [now_ms(), self.p, limit],
        )
        return _timer_events(r)

    async def forget_finished(self, retention_ms: int, limit: int = 1000) -> int:
        """Retention: drop jobs final for longer than ``retention_ms`` (hash and listing entry)."""
        return int(
            await self.batch.script(
                "forget", [self.key("finished"), self.key("jobs")], [now_ms() - retention_ms, limit, self.p]
            )
        )

    async def release_worker(self, worker_id: str, count_retry: bool) -> list[TimerEvent]:
        """Hand back a worker's jobs. Events: kind 'queued' or 'failed'; worker_id = previous status."""
        k = self.key
        r = await self.batch.script(
            "release",
            [self.worker_jobs_key(worker_id), *map(k, ("claims", "runs", "counts", "failures", "finished"))],
            [worker_id, now_ms(), self.p, 1 if count_retry else 0],
        )
        return _timer_events(r)

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


def _timer_events(r: list[Any]) -> list[TimerEvent]:
    return [TimerEvent(r[i], r[i + 1], r[i + 2], Routing.of(r[i + 3 : i + 9])) for i in range(0, len(r), 9)]


def _pairs(flat: list[Any]) -> list[tuple[Any, Any]]:
    return list(zip(flat[0::2], flat[1::2], strict=True))
