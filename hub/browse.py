"""The read side of the job browser (spec D20): jobs paged from Redis with filters, one job in
full with its history, and the last hour per job type. Every hub reads the same Redis, so every
hub shows the same; every answer keeps only what the viewer may see (``access.visible``, D19).

Work per request is bounded: a listing looks at ``max_scanned`` jobs of the ``P:jobs`` index at
most (a page may be short: follow ``next_cursor``), the hour's figures at ``SAMPLE_COMPLETED`` +
``SAMPLE_FAILED`` recent jobs.
"""

from __future__ import annotations

import asyncio
import re
from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
from empq.hub.access import visible
from empq.hub.lifecycle import STATUSES
from empq.hub.store import JobStore, now_ms, pairs

if TYPE_CHECKING:
    from empq.hub.session import Session

LIST_FIELDS = (
    "status",
    "job_type",
    "priority",
    "customer_id",
    "client_id",
    "worker_id",
    "progress",
    "created_at",
    "started_at",
    "completed_at",
    "retry_count",
    "error",
    "retry_of",
    "retried_as",
)
SUMMARY_ERROR_CHARS = 300  # a listed job's error, cut (the detail has it whole)
CLOCK_SKEW_MS = 60_000  # hubs' clocks may differ: a created_from scan stops this much past it
SAMPLE_COMPLETED = 2000  # the last hour's figures: the most recent completions read at most
SAMPLE_FAILED = 1000  # ... and failures
HOUR_MS = 3_600_000
JOB_ID = re.compile(r"^job-[0-9a-f]{32}$")
DIGITS = re.compile(r"^[0-9]{1,16}$")
MAX_MS = 2**53 - 1
OWNER = re.compile(r"^tok:[0-9a-f]{24}/")  # a client identity's token scope (Session.identity)


class BadFilter(ValueError):
    """A filter parameter that cannot be used: its name and the value given."""

    def __init__(self, text: str, field: str, value: Any) -> None:
        super().__init__(text)
        self.field = field
        self.value = value


@dataclass(frozen=True)
class JobFilter:
    """Which jobs a listing (or a bulk cancel) is about; every given criterion must match."""

    statuses: frozenset[str] | None = None
    job_type: str | None = None
    customer_id: str | None = None
    worker_id: str | None = None
    created_from: int | None = None  # ms, inclusive
    created_to: int | None = None  # ms, inclusive
    q: str | None = None  # a job id, or the start of one (with or without "job-")

    @classmethod
    def parse(cls, params: Any, query: bool = True) -> JobFilter:
        """From query parameters (``query``: every value a string) or a JSON body's fields:
        ``status`` one or several comma-separated, ``job_type``, ``customer_id``, ``worker_id``,
        ``q`` (strings), ``created_from``, ``created_to`` (Unix ms)."""
        statuses = None
        raw = params.get("status")
        if raw is not None:
            if not isinstance(raw, str):
                raise BadFilter("status must be a string", "status", raw)
            statuses = frozenset(raw.split(","))
            if not statuses <= set(STATUSES):
                raise BadFilter(f"status must be among {', '.join(STATUSES)}, comma-separated", "status", raw)
        for name in ("job_type", "customer_id", "worker_id", "q"):
            value = params.get(name)
            if value is not None and (not isinstance(value, str) or not 0 < len(value) <= 256):
                raise BadFilter(f"{name} must be a string of 1 to 256 characters", name, value)
        return cls(
            statuses,
            job_type=params.get("job_type"),
            customer_id=params.get("customer_id"),
            worker_id=params.get("worker_id"),
            created_from=_ms(params.get("created_from"), "created_from", query),
            created_to=_ms(params.get("created_to"), "created_to", query),
            q=params.get("q"),
        )

    def matches(self, job_id: str, job: dict[str, Any]) -> bool:
        if self.statuses is not None and job["status"] not in self.statuses:
            return False
        for name in ("job_type", "customer_id", "worker_id"):
            wanted = getattr(self, name)
            if wanted is not None and (job.get(name) or None) != wanted:
                return False
        created = int(job.get("created_at") or 0)
        if self.created_from is not None and created < self.created_from:
            return False
        if self.created_to is not None and created > self.created_to:
            return False
        return self.q is None or job_id.startswith(self.q) or job_id.startswith("job-" + self.q)


def _ms(raw: Any, name: str, query: bool) -> int | None:
    if raw is None:
        return None
    if query and isinstance(raw, str) and DIGITS.match(raw):
        value = int(raw)
    elif not query and isinstance(raw, int) and not isinstance(raw, bool):
        value = raw
    else:
        raise BadFilter(f"{name} must be Unix milliseconds (an integer)", name, raw)
    if not 0 <= value <= MAX_MS:
        raise BadFilter(f"{name} must be between 0 and {MAX_MS}", name, value)
    return value


def summary(job_id: str, job: dict[str, Any]) -> dict[str, Any]:
    """One row of a listing (``JobSummary`` in the OpenAPI document)."""
    out: dict[str, Any] = {
        "job_id": job_id,
        "status": job["status"],
        "job_type": job["job_type"],
        "priority": int(job["priority"] or 0),
        "progress": float(job["progress"] or 0),
        "created_at": int(job["created_at"] or 0),
        "retry_count": int(job["retry_count"] or 0),
    }
    for name in ("customer_id", "worker_id", "retry_of", "retried_as"):
        if job[name]:
            out[name] = job[name]
    for name in ("started_at", "completed_at"):
        if job[name]:
            out[name] = int(job[name])
    if job["error"]:
        out["error"] = job["error"][:SUMMARY_ERROR_CHARS]
    return out


class Browser:
    """Reads for the job browser, over one hub group's keys."""

    def __init__(self, store: JobStore) -> None:
        self.store = store
        self.batch = store.batch

    # listing --------------------------------------------------------------------------------
    async def page(
        self, before: int | None, size: int, fields: tuple[str, ...] = LIST_FIELDS
    ) -> list[tuple[int, str, dict[str, Any]]]:
        """Up to ``size`` jobs of the ``P:jobs`` index, newest first, submitted before sequence
        number ``before`` (None: from the newest): (seq, job id, the hash fields asked)."""
        top = f"({before}" if before is not None else "+inf"
        flat = await self.batch.command(
            "ZRANGE", self.store.key("jobs"), top, "-inf", "BYSCORE", "REV", "LIMIT", 0, size, "WITHSCORES"
        )
        index = [(str(job_id), int(float(score))) for job_id, score in pairs(flat)]
        values = await asyncio.gather(
            *(self.batch.command("HMGET", self.store.job_key(job_id), *fields) for job_id, _ in index)
        )
        return [
            (seq, job_id, dict(zip(fields, v, strict=True)))
            for (job_id, seq), v in zip(index, values, strict=True)
        ]

    async def scan(
        self, session: Session, filt: JobFilter, cursor: int | None, limit: int, max_scanned: int
    ) -> tuple[list[tuple[str, dict[str, Any]]], str | None]:
        """The jobs ``session`` may see that match ``filt``, newest first: up to ``limit`` of
        them and the cursor to go on from (None: no more), looking at ``max_scanned`` jobs of
        the index at most."""
        if filt.q is not None and JOB_ID.match(filt.q):  # one id: read it, no scan
            return await self._one(session, filt, filt.q), None
        if cursor is None and filt.created_to is not None:
            cursor = await self._newest_before(filt.created_to)
            if cursor == 0:
                return [], None
        found: list[tuple[str, dict[str, Any]]] = []
        before, scanned, batch = cursor, 0, max(100, 2 * limit)
        while True:
            if scanned >= max_scanned:  # bounded work per request: the page ends here, go on from it
                return found, str(before) if before is not None else None
            size = min(batch, max_scanned - scanned)
            page = await self.page(before, size)
            scanned += len(page)
            for seq, job_id, job in page:
                before = seq
                if job["status"] is None or job["client_id"] is None:
                    continue  # gone, or a hash without its fields
                created = int(job["created_at"] or 0)
                if filt.created_from is not None and created < filt.created_from - CLOCK_SKEW_MS:
                    return found, None  # older ones were submitted before the range
                if not filt.matches(job_id, job) or not visible(
                    session, job["customer_id"] or None, job["client_id"]
                ):
                    continue
                found.append((job_id, job))
                if len(found) == limit:
                    return found, str(seq)
            if len(page) < size:
                return found, None

    async def _one(self, session: Session, filt: JobFilter, job_id: str) -> list[tuple[str, dict[str, Any]]]:
        values = await self.batch.command("HMGET", self.store.job_key(job_id), *LIST_FIELDS)
        job = dict(zip(LIST_FIELDS, values, strict=True))
        if job["status"] is None or job["client_id"] is None:
            return []
        if not filt.matches(job_id, job) or not visible(
            session, job["customer_id"] or None, job["client_id"]
        ):
            return []
        return [(job_id, job)]

    async def _newest_before(self, created_to: int) -> int | None:
        """A cursor at the newest job created at or before ``created_to`` (0: none is), found by
        bisecting the index (jobs are in submission order; ~log2(n) reads)."""
        key = self.store.key("jobs")
        n = int(await self.batch.command("ZCARD", key))
        lo, hi = 0, n  # ranks, newest first: find the first rank created at or before created_to
        seq_at: dict[int, int] = {}
        while lo < hi:
            mid = (lo + hi) // 2
            got = await self.batch.command("ZRANGE", key, mid, mid, "REV", "WITHSCORES")
            if not got:
                hi = mid
                continue
            seq_at[mid] = int(float(got[1]))
            created = await self.batch.command("HGET", self.store.job_key(got[0]), "created_at")
            if created is not None and int(created) <= created_to + CLOCK_SKEW_MS:
                hi = mid
            else:
                lo = mid + 1
        if lo >= n:
            return 0
        if lo not in seq_at:
            got = await self.batch.command("ZRANGE", key, lo, lo, "REV", "WITHSCORES")
            if not got:
                return 0
            seq_at[lo] = int(float(got[1]))
        return seq_at[lo] + 1  # the cursor is exclusive

    # one job ------------------------------------------------------------------------------------
    async def history(self, job_id: str) -> list[dict[str, Any]]:
        """The job's transitions, oldest first: event, status, at (ms), worker_id, note."""
        raw = await self.batch.command("LRANGE", self.store.key(f"hist:{job_id}"), 0, -1)
        out = []
        for entry in raw:
            try:
                event, status, at, worker, note = entry.split("\t", 4)
                at = int(float(at))
            except ValueError:
                continue
            step: dict[str, Any] = {"event": event, "status": status, "at": at}
            if worker:
                step["worker_id"] = worker
            if note:
                step["note"] = note
            out.append(step)
        return out


def detail(
    job_id: str,
    job: dict[str, str],
    timeline: list[dict[str, Any]],
    webhook_deliveries: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Everything known about a job (``JobDetail`` in the OpenAPI document), from its hash (as
    ``JobStore.status`` reads it), its history and, with a webhook, its deliveries (D21: where
    they go is said as ``scheme://host:port`` only, the URL's path and query may carry a token)."""
    out: dict[str, Any] = {
        "job_id": job_id,
        "status": job["status"],
        "job_type": job.get("job_type", ""),
        "priority": int(job.get("priority") or 0),
        "progress": float(job.get("progress") or 0),
        "retry_count": int(job.get("retry_count") or 0),
        "max_retries": int(job.get("max_retries") or 0),
        "created_at": int(job.get("created_at") or 0),
    }
    client = job.get("client_id") or ""
    out["client_id"] = OWNER.sub("", client)  # the token's digest is no one's business
    for name in ("payload", "requirements", "metadata", "result", "error_details"):
        if job.get(name):
            try:
                out[name] = orjson.loads(job[name])
            except orjson.JSONDecodeError:
                out[name] = job[name]
    for name in ("assigned_at", "started_at", "completed_at", "cancelled_at", "retry_at"):
        if job.get(name):
            out[name] = int(float(job[name]))
    for name in ("customer_id", "worker_id", "message", "error", "cancel_reason", "retry_of", "retried_as"):
        if job.get(name):
            out[name] = job[name]
    if job.get("processing_time"):
        out["processing_time"] = float(job["processing_time"])
    if job.get("timeout_ms"):
        out["timeout_seconds"] = int(job["timeout_ms"]) / 1000
    if int(job.get("__position") or 0):
        out["position"] = int(job["__position"])
    out["timeline"] = timeline or _timeline_from_hash(out)
    if job.get("webhook_target"):
        out["webhook_target"] = job["webhook_target"]
        out["webhook_events"] = [e for e in (job.get("webhook_events") or "").split(",") if e]
        out["webhook_deliveries"] = webhook_deliveries or []
    return out


def _timeline_from_hash(job: dict[str, Any]) -> list[dict[str, Any]]:
    """A job submitted before histories were recorded: what its times tell."""
    steps = [("submit", "queued", "created_at"), ("claim", "assigned", "assigned_at")]
    steps += [("accept", "accepted", "started_at"), ("end", job["status"], "completed_at")]
    return [{"event": e, "status": s, "at": job[f]} for e, s, f in steps if job.get(f)]


def percentiles(values: list[float]) -> dict[str, float] | None:
    """p50, p95, p99 (nearest rank) of ``values``; None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    n = len(ordered)
    return {f"p{p}": ordered[min(n - 1, max(0, -(-p * n // 100) - 1))] for p in (50, 95, 99)}


async def last_hour(browser: Browser, session: Session, whole: bool, customer: str | None) -> dict[str, Any]:
    """The last hour per job type (throughput, queue depth, wait and run time percentiles) over
    the jobs ``session`` may see, and completions and failures per minute (aggregates, D19).
    Queues counted: every job's (``whole``), else one ``customer``'s, else none (null)."""
    store, batch = browser.store, browser.batch
    now = now_ms()
    since = now + 1 - HOUR_MS  # 60 minutes, the last one up to now included
    done, failures = store.key("done"), store.key("failures")
    minutes = [since + i * 60_000 for i in range(60)]
    counted = await asyncio.gather(
        *(batch.command("ZCOUNT", log, m, f"({m + 60_000}") for log in (done, failures) for m in minutes),
        batch.command(
            "ZRANGE", done, "+inf", since, "BYSCORE", "REV", "LIMIT", 0, SAMPLE_COMPLETED, "WITHSCORES"
        ),
        batch.command(
            "ZRANGE", failures, "+inf", since, "BYSCORE", "REV", "LIMIT", 0, SAMPLE_FAILED, "WITHSCORES"
        ),
        batch.command("HGETALL", store.key("classes")),
    )
    series = [int(c) for c in counted[:120]]
    done_ids, failed_ids = pairs(counted[120]), pairs(counted[121])
    fields = ("job_type", "customer_id", "client_id", "created_at", "started_at", "completed_at", "status")
    sampled = [*done_ids, *failed_ids]
    rows = await asyncio.gather(*(batch.command("HMGET", store.job_key(j), *fields) for j, _ in sampled))
    types: dict[str, dict[str, Any]] = defaultdict(
        lambda: {"completed": 0, "failed": 0, "wait": [], "run": []}
    )
    for row in rows:
        job = dict(zip(fields, row, strict=True))
        if job["job_type"] is None or not visible(session, job["customer_id"] or None, job["client_id"]):
            continue
        t = types[job["job_type"]]
        t["completed" if job["status"] == "completed" else "failed"] += 1
        created, started, ended = (int(job[f] or 0) for f in ("created_at", "started_at", "completed_at"))
        if started and created:
            t["wait"].append((started - created) / 1000)
        if job["status"] == "completed" and started and ended:
            t["run"].append((ended - started) / 1000)
    # the completions sampled cover the whole hour unless there were more than the sample holds
    window_ms = HOUR_MS
    if len(done_ids) >= SAMPLE_COMPLETED:
        window_ms = max(60_000, now - int(float(done_ids[-1][1])))
    queued = await _queued_by_type(browser, pairs(counted[122]), whole, customer)
    for job_type, n in (queued or {}).items():
        if n:
            types[job_type]  # noqa: B018 - a type with jobs queued is listed even without finished ones
    out = []
    for job_type, t in sorted(types.items()):
        out.append(
            {
                "job_type": job_type,
                "queued": None if queued is None else queued.get(job_type, 0),
                "completed": t["completed"],
                "failed": t["failed"],
                "completed_per_minute": round(t["completed"] / (window_ms / 60_000), 3),
                "wait_seconds": percentiles(t["wait"]),
                "run_seconds": percentiles(t["run"]),
            }
        )
    return {
        "now": now,
        "window_seconds": window_ms / 1000,
        "sampled": {"completed": len(done_ids), "failed": len(failed_ids)},
        "per_minute": {"start": since, "completed": series[:60], "failed": series[60:]},
        "job_types": out,
    }


async def _queued_by_type(
    browser: Browser, classes: list[tuple[str, str]], whole: bool, customer: str | None
) -> dict[str, int] | None:
    """Claimable jobs per job type (every class of the type): all of them, or one customer's."""
    if not whole and customer is None:
        return None
    store = browser.store
    job_types = []
    for class_id, raw in classes:
        try:
            job_types.append((class_id, str(orjson.loads(raw)["job_type"])))
        except (orjson.JSONDecodeError, KeyError, TypeError):
            continue
    keys = [
        store.queue_key(c) if whole or customer is None else store.customer_queue_key(c, customer)
        for c, _ in job_types
    ]
    counts = await asyncio.gather(*(browser.batch.command("ZCARD", k) for k in keys))
    out: dict[str, int] = defaultdict(int)
    for (_, job_type), n in zip(job_types, counts, strict=True):
        out[job_type] += int(n)
    return dict(out)
