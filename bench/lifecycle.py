"""Load harness for the whole job lifecycle against any hub (and against the null hub, the ceiling).

    python -m bench.lifecycle --url ws://127.0.0.1:3002 [--clients 4] [--workers 8] [--jobs 5000]
        [--seconds 60] [--max-jobs 1] [--in-flight 50] [--progress-steps 1] [--json out.json]
    python -m bench.lifecycle --null ...            # start bench.null_hub (subprocess) and load it
    python -m bench.lifecycle --compare URL ...     # load URL, then the null hub; print the ratio
    python -m bench.lifecycle --single [--null | --url URL] --jobs 2000   # one job in flight
    python -m bench.lifecycle --matrix --jobs 5000   # 1/10/100 workers × 1/10 clients, max_jobs 1 and 4

Job clients (``register_client``) submit ``noop`` jobs (requirements service_type ``sim``), keep at
most ``--in-flight`` unfinished jobs each and count ``job_completed``. Workers
(``register_worker``, subscribe_to_jobs) loop: ``claim_job`` (max_jobs) -> for each
``job_assigned``: ``job_accepted_by_worker``, N x ``update_job_progress``, ``complete_job`` ->
wait for every ``job_completed_ack`` -> claim again; on ``ack`` no_job_available they wait for
``job_available`` or a short timer. Outgoing frames are built with the generated models
(``protocol.make`` + ``protocol.encode``); incoming frames are read with ``orjson.loads``.

Measured (one process, one clock, ``time.perf_counter``): jobs/s = completed jobs / time from the
first submit to the last ``job_completed``; submit -> ``job_assigned`` latency (the client's send
time per submit ``id``, ``job_accepted.request_id`` maps it to the job, the worker's receive time
of ``job_assigned``) and submit -> ``job_completed`` latency, p50/p99. The run stops by itself
when ``--jobs`` jobs are done or ``--seconds`` have passed, whichever is first.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson
from empq.generated.messages.claim_job import ClaimJob
from empq.generated.messages.complete_job import CompleteJob
from empq.generated.messages.job_accepted_by_worker import JobAcceptedByWorker
from empq.generated.messages.register_client import RegisterClient
from empq.generated.messages.register_worker import RegisterWorker
from empq.generated.messages.submit_job import SubmitJob
from empq.generated.messages.update_job_progress import UpdateJobProgress
from websockets.asyncio.client import ClientConnection, connect

from bench import REPO, empq_command, module_command
from empq import protocol

MAX_MESSAGE_SIZE = 10 * 1024 * 1024
SERVICE = "sim"
FAILED_STATES = frozenset({"failed", "cancelled", "timeout"})


@dataclass
class LoadConfig:
    clients: int = 4
    workers: int = 8
    jobs: int = 5000
    seconds: float = 60.0
    max_jobs: int = 1
    in_flight: int = 50
    progress_steps: int = 1
    # A worker told no_job_available claims again on job_available, or after this (the SDK: 5 s).
    wake_ms: float = 1000.0
    token: str | None = None

    def check(self) -> None:
        if min(self.clients, self.workers, self.jobs, self.in_flight) < 1:
            raise ValueError("--clients, --workers, --jobs and --in-flight must be at least 1")
        if not 1 <= self.max_jobs <= 100:
            raise ValueError("--max-jobs must be 1..100 (the claim_job schema's bounds)")
        if self.progress_steps < 0 or self.seconds <= 0 or self.wake_ms <= 0:
            raise ValueError("--progress-steps must be >= 0, --seconds and the wake timer > 0")


@dataclass
class Measure:
    """What every client and worker task records; joined after the run."""

    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    submit_t: dict[str, float] = field(default_factory=dict)  # submit id -> send time
    request_job: dict[str, str] = field(default_factory=dict)  # submit id -> job_id (job_accepted)
    assigned_t: dict[str, float] = field(default_factory=dict)  # job_id -> job_assigned received
    completed_t: dict[str, float] = field(default_factory=dict)  # job_id -> job_completed received
    frames: Counter[str] = field(default_factory=Counter)  # received, by type (job_update by status)
    errors: Counter[str] = field(default_factory=Counter)  # error_code -> count
    first_errors: list[dict[str, Any]] = field(default_factory=list)
    refused: int = 0  # submits answered with error
    failed: int = 0  # jobs that ended failed/cancelled/timeout
    claims: int = 0
    no_job: int = 0
    wakeups: int = 0  # claims sent because of job_available while waiting
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def record(self, msg: dict[str, Any]) -> str:
        kind = str(msg.get("type"))
        if kind == "job_update":
            self.frames[f"job_update:{msg.get('status')}"] += 1
        else:
            self.frames[kind] += 1
        if kind == "error":
            self.errors[str(msg.get("error_code"))] += 1
            if len(self.first_errors) < 5:
                self.first_errors.append(msg)
        return kind


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list (q in 0..100)."""
    if not sorted_values:
        return float("nan")
    rank = max(1, -(-len(sorted_values) * q // 100))  # ceil(n*q/100), at least 1
    return sorted_values[int(rank) - 1]


def latency_stats(values: list[float]) -> dict[str, float | int]:
    ms = sorted(v * 1000 for v in values)
    return {
        "n": len(ms),
        "p50_ms": round(percentile(ms, 50), 3),
        "p99_ms": round(percentile(ms, 99), 3),
        "max_ms": round(ms[-1], 3) if ms else float("nan"),
    }


async def send(ws: ClientConnection, msg: Any) -> None:
    await ws.send(protocol.encode(msg), text=True)  # D1: text frames


async def expect(ws: ClientConnection, kind: str, m: Measure) -> dict[str, Any]:
    """Read frames until one of type ``kind``; an ``error`` first is fatal (registration failed)."""
    for _ in range(1000):
        msg = orjson.loads(await ws.recv(decode=False))
        got = m.record(msg)
        if got == kind:
            return dict(msg)
        if got == "error":
            raise RuntimeError(f"expected {kind}, hub answered error: {msg}")
    raise RuntimeError(f"no {kind} in 1000 frames")


async def open_peer(url: str) -> ClientConnection:
    return await connect(url, compression=None, max_size=MAX_MESSAGE_SIZE, open_timeout=10)


# -- job clients ---------------------------------------------------------------------------------


class JobClient:
    def __init__(self, idx: int, quota: int, cfg: LoadConfig, m: Measure) -> None:
        self.client_id = f"bench-{m.tag}-c{idx}"
        self.quota, self.cfg, self.m = quota, cfg, m
        self.ws: ClientConnection | None = None

    async def setup(self, url: str) -> None:
        self.ws = await open_peer(url)
        await expect(self.ws, "connection_established", self.m)
        extra = {"auth_token": self.cfg.token} if self.cfg.token else {}
        await send(
            self.ws,
            protocol.make(
                RegisterClient,
                id=f"{self.client_id}-reg",
                client_type="job_client",
                client_id=self.client_id,
                version="bench",
                **extra,
            ),
        )
        await expect(self.ws, "client_registered", self.m)

    async def run(self) -> None:
        ws, m, cfg = self.ws, self.m, self.cfg
        assert ws is not None
        submitted = finished = 0
        perf = time.perf_counter
        while finished < self.quota:
            while submitted - finished < cfg.in_flight and submitted < self.quota:
                rid = f"{self.client_id}-{submitted}"
                frame = protocol.encode(
                    protocol.make(
                        SubmitJob,
                        id=rid,
                        job_type="noop",
                        payload={"n": submitted},
                        requirements={"service_type": SERVICE},
                    )
                )
                m.submit_t[rid] = perf()
                await ws.send(frame, text=True)
                submitted += 1
            msg = orjson.loads(await ws.recv(decode=False))
            kind = m.record(msg)
            if kind == "job_completed":
                m.completed_t[msg["job_id"]] = perf()
                finished += 1
            elif kind == "job_accepted":
                rid = msg.get("request_id")
                if rid is None:  # D2 broken: this job cannot be joined for latency
                    m.frames["job_accepted without request_id"] += 1
                else:
                    m.request_job[rid] = msg["job_id"]
            elif kind == "job_update":
                if msg.get("status") in FAILED_STATES:
                    m.failed += 1
                    finished += 1
            elif kind == "job_cancelled":
                m.failed += 1
                finished += 1
            elif kind == "error" and msg.get("request_id") in m.submit_t:
                m.refused += 1  # a refused submit: its slot is free again
                finished += 1


# -- workers -------------------------------------------------------------------------------------


class Worker:
    def __init__(self, idx: int, cfg: LoadConfig, m: Measure) -> None:
        self.worker_id = f"bench-{m.tag}-w{idx}"
        self.cfg, self.m = cfg, m
        self.ws: ClientConnection | None = None
        self.claim_no = 0
        steps = cfg.progress_steps
        self.progress = [float(round(100 * k / (steps + 1), 2)) for k in range(1, steps + 1)]

    async def setup(self, url: str) -> None:
        self.ws = await open_peer(url)
        await expect(self.ws, "connection_established", self.m)
        extra = {"auth_token": self.cfg.token} if self.cfg.token else {}
        await send(
            self.ws,
            protocol.make(
                RegisterWorker,
                id=f"{self.worker_id}-reg",
                worker_id=self.worker_id,
                capabilities={
                    "services": [SERVICE],
                    "components": [],
                    "max_concurrent_jobs": self.cfg.max_jobs,
                },
                subscribe_to_jobs=True,
                status="idle",
                version="bench",
                **extra,
            ),
        )
        await expect(self.ws, "worker_registered", self.m)

    async def claim(self) -> str:
        assert self.ws is not None
        claim_id = f"{self.worker_id}-claim-{self.claim_no}"
        self.claim_no += 1
        self.m.claims += 1
        await send(
            self.ws,
            protocol.make(ClaimJob, id=claim_id, worker_id=self.worker_id, max_jobs=self.cfg.max_jobs),
        )
        return claim_id

    async def work(self, job_id: str) -> None:
        """Accept, report progress, complete: pipelined; the ack is awaited by the main loop."""
        ws, wid = self.ws, self.worker_id
        assert ws is not None
        await ws.send(
            protocol.encode(protocol.make(JobAcceptedByWorker, job_id=job_id, worker_id=wid)), text=True
        )
        for pct in self.progress:
            await ws.send(
                protocol.encode(protocol.make(UpdateJobProgress, job_id=job_id, worker_id=wid, progress=pct)),
                text=True,
            )
        # An id on complete_job costs no extra frame (it has its own reply) and lets an error be
        # matched to the job.
        await ws.send(
            protocol.encode(
                protocol.make(
                    CompleteJob,
                    id=f"cmp-{job_id}",
                    job_id=job_id,
                    worker_id=wid,
                    processing_time=0.0,
                    result={"success": True},
                )
            ),
            text=True,
        )

    async def run(self) -> None:
        """One state machine over one connection.

        ``claiming``: a claim_job is unanswered. It ends with ``max_jobs`` job_assigned, or with
        ``ack`` no_job_available, which the hub sends after the job_assigned frames whenever it
        assigned fewer than ``max_jobs`` (spec D10).
        """
        ws, m = self.ws, self.m
        assert ws is not None
        perf = time.perf_counter
        wake = self.cfg.wake_ms / 1000
        claim_id = await self.claim()
        claiming, got, held, woken = True, 0, 0, False
        wait_until: float | None = None
        while not m.done.is_set():
            if wait_until is not None:
                try:
                    async with asyncio.timeout(max(0.0, wait_until - perf())):
                        raw = await ws.recv(decode=False)
                except TimeoutError:
                    wait_until = None
                    claim_id = await self.claim()
                    claiming, got, woken = True, 0, False
                    continue
            else:
                raw = await ws.recv(decode=False)
            msg = orjson.loads(raw)
            kind = m.record(msg)
            round_over = False
            if kind == "job_assigned":
                job_id = msg["job_id"]
                m.assigned_t[job_id] = perf()
                got += 1
                held += 1
                if got >= self.cfg.max_jobs:
                    claiming = False
                await self.work(job_id)
            elif kind == "job_completed_ack":
                if held > 0:
                    held -= 1
                    round_over = held == 0 and got > 0
            elif kind == "ack" and msg.get("status") == "no_job_available":
                if msg.get("request_id", claim_id) == claim_id and claiming:
                    claiming = False
                    m.no_job += 1
                    if held == 0:
                        if woken:
                            m.wakeups += 1
                            claim_id = await self.claim()
                            claiming, got, woken = True, 0, False
                        else:
                            wait_until = perf() + wake
            elif kind == "job_available":
                if wait_until is not None:
                    m.wakeups += 1
                    wait_until = None
                    claim_id = await self.claim()
                    claiming, got, woken = True, 0, False
                elif claiming:
                    woken = True
            elif kind == "error":
                rid = str(msg.get("request_id", ""))
                if rid == claim_id and claiming:  # a refused claim: wait, then try again
                    claiming = False
                    if held == 0:
                        wait_until = perf() + wake
                elif rid.startswith("cmp-") and held > 0:  # a refused complete_job: give up the job
                    held -= 1
                    round_over = held == 0
            if round_over:
                wait_until = None
                claim_id = await self.claim()
                claiming, got, woken = True, 0, False


# -- one run -------------------------------------------------------------------------------------


def cpu_seconds_of(pid: int | None) -> float | None:
    """utime + stime of another process (Linux /proc), for the hub's CPU share."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


async def run_load(
    url: str, cfg: LoadConfig, *, label: str = "hub", hub_pid: int | None = None, redis_pid: int | None = None
) -> dict[str, Any]:
    """Run the lifecycle load against ``url``; returns the figures (see ``summarise``)."""
    cfg.check()
    m = Measure()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + cfg.seconds
    per_client = [
        cfg.jobs // cfg.clients + (1 if i < cfg.jobs % cfg.clients else 0) for i in range(cfg.clients)
    ]
    clients = [JobClient(i, q, cfg, m) for i, q in enumerate(per_client) if q > 0]
    workers = [Worker(i, cfg, m) for i in range(cfg.workers)]
    worker_tasks: list[asyncio.Task[None]] = []
    worker_errors: list[str] = []
    stopped_by = "jobs"
    # CPU shares are measured over the load phase (after registration); None if it never began.
    cpu0, hub_cpu0, redis_cpu0, t0 = 0.0, None, None, None
    try:
        async with asyncio.timeout_at(deadline):
            # Workers first, so they are registered and waiting when the first job arrives.
            async with asyncio.TaskGroup() as tg:
                for w in workers:
                    tg.create_task(w.setup(url))
            async with asyncio.TaskGroup() as tg:
                for c in clients:
                    tg.create_task(c.setup(url))
            cpu0, hub_cpu0 = time.process_time(), cpu_seconds_of(hub_pid)
            redis_cpu0 = cpu_seconds_of(redis_pid)
            t0 = time.perf_counter()
            worker_tasks = [asyncio.create_task(w.run()) for w in workers]
            async with asyncio.TaskGroup() as tg:
                for c in clients:
                    tg.create_task(c.run())
    except TimeoutError:
        stopped_by = "seconds"
    except Exception as exc:  # a refused registration, a dropped connection...
        stopped_by = f"error: {exc!r}"
        if isinstance(exc, BaseExceptionGroup):
            stopped_by = f"error: {exc.exceptions[0]!r}"
    finally:
        t_end = time.perf_counter()
        cpu1, hub_cpu1 = time.process_time(), cpu_seconds_of(hub_pid)
        redis_cpu1 = cpu_seconds_of(redis_pid)
        m.done.set()
        if worker_tasks:  # they leave at their next frame or timer; then they are cancelled
            _, pending = await asyncio.wait(worker_tasks, timeout=1.0)
            for task in pending:
                task.cancel()
            outcomes = await asyncio.gather(*worker_tasks, return_exceptions=True)
            worker_errors = [
                repr(o)
                for o in outcomes
                if isinstance(o, BaseException) and not isinstance(o, asyncio.CancelledError)
            ]
        sockets = [p.ws for p in clients] + [p.ws for p in workers]
        for ws in sockets:
            if ws is not None:
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(2):
                        await ws.close()
    elapsed = t_end - t0 if t0 is not None else 0.0
    result = summarise(m, cfg, url, label, stopped_by)
    result["worker_errors"] = worker_errors
    result["driver_cpu_pct"] = round(100 * (cpu1 - cpu0) / elapsed, 1) if elapsed > 0 else "-"
    if hub_cpu0 is not None and hub_cpu1 is not None and elapsed > 0:
        result["hub_cpu_pct"] = round(100 * (hub_cpu1 - hub_cpu0) / elapsed, 1)
    if redis_cpu0 is not None and redis_cpu1 is not None and elapsed > 0:
        result["redis_cpu_pct"] = round(100 * (redis_cpu1 - redis_cpu0) / elapsed, 1)
    if result["completed"]:  # where the machine's time goes
        spans = {"driver": (cpu0, cpu1), "hub": (hub_cpu0, hub_cpu1), "redis": (redis_cpu0, redis_cpu1)}
        result["cpu_us_per_job"] = cpu_per_job(result["completed"], spans)
    return result


def cpu_per_job(done: int, spans: dict[str, tuple[float | None, float | None]]) -> dict[str, int]:
    """CPU microseconds per completed job by process, from (before, after) CPU seconds; a process
    whose CPU could not be read is left out."""
    return {k: round((b - a) / done * 1e6) for k, (a, b) in spans.items() if a is not None and b is not None}


def summarise(m: Measure, cfg: LoadConfig, url: str, label: str, stopped_by: str) -> dict[str, Any]:
    completed = len(m.completed_t)
    first = min(m.submit_t.values(), default=None)
    last = max(m.completed_t.values(), default=None)
    wall = (last - first) if first is not None and last is not None else 0.0
    to_assigned, to_completed = [], []
    for rid, job_id in m.request_job.items():
        sent = m.submit_t.get(rid)
        if sent is None:
            continue
        if job_id in m.assigned_t:
            to_assigned.append(m.assigned_t[job_id] - sent)
        if job_id in m.completed_t:
            to_completed.append(m.completed_t[job_id] - sent)
    return {
        "label": label,
        "url": url,
        "config": {k: v for k, v in asdict(cfg).items() if k != "token"},
        "stopped_by": stopped_by,
        "submitted": len(m.submit_t),
        "accepted": len(m.request_job),
        "assigned": len(m.assigned_t),
        "completed": completed,
        "refused": m.refused,
        "failed": m.failed,
        "wall_s": round(wall, 3),
        "jobs_per_s": round(completed / wall, 1) if wall > 0 else 0.0,
        "submit_to_assigned": latency_stats(to_assigned),
        "submit_to_completed": latency_stats(to_completed),
        "claims": m.claims,
        "no_job_available": m.no_job,
        "job_available_wakeups": m.wakeups,
        "errors": dict(m.errors),
        "first_errors": m.first_errors,
        "frames_received": dict(sorted(m.frames.items())),
    }


# -- the null hub as a subprocess ----------------------------------------------------------------


@contextlib.asynccontextmanager
async def null_hub_subprocess(max_seconds: float) -> AsyncIterator[tuple[str, int]]:
    """Start ``python -m bench.null_hub --port 0`` (127.0.0.1, a free port); yields (url, pid)."""
    proc = await asyncio.create_subprocess_exec(
        *module_command("bench.null_hub", "--port", "0", "--max-seconds", str(max_seconds)),
        cwd=str(REPO),
        stdout=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL,
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode().strip()
        if "ws://" not in line:
            raise RuntimeError(f"null hub did not start (said {line!r})")
        yield line[line.index("ws://") :], proc.pid
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 5)
            except TimeoutError:
                proc.kill()
                await proc.wait()


@contextlib.asynccontextmanager
async def empq_hub_subprocess(
    max_seconds: float, redis_url: str | None = None, extra_args: tuple[str, ...] = ()
) -> AsyncIterator[tuple[str, int, int | None]]:
    """Start ``empq hub`` on a free port (HTTP off) with an embedded Redis in a temporary data dir,
    or on ``redis_url`` (``extra_args``: more ``empq hub`` flags); yields (url, hub pid, embedded
    redis-server pid or None) so their CPU can be measured."""
    with tempfile.TemporaryDirectory(prefix="empq-bench-") as data_dir:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        redis = ["--redis-url", redis_url] if redis_url else ["--data-dir", data_dir]
        proc = await asyncio.create_subprocess_exec(
            *empq_command("hub", "--ws-port", str(port), "--http-port", "-1", *redis, *extra_args),
            "--log-level", "warning", stdin=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    _, writer = await asyncio.open_connection("127.0.0.1", port)
                    writer.close()
                    break
                except OSError:
                    await asyncio.sleep(0.05)
            else:
                raise RuntimeError("empq hub did not start within 30 s")
            redis_pid = next(
                (int(p.name) for p in Path("/proc").iterdir() if _is_redis_of(p, data_dir)), None
            )
            await asyncio.sleep(0.5)  # let the hub's first registry round settle
            yield f"ws://127.0.0.1:{port}", proc.pid, redis_pid
        finally:
            if proc.returncode is None:
                proc.terminate()
                try:
                    await asyncio.wait_for(proc.wait(), 10)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()


def _cmdline(p: Path) -> str:
    try:
        return (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _is_redis_of(p: Path, data_dir: str) -> bool:
    if not p.name.isdigit():
        return False
    cmdline = _cmdline(p)
    return "redis-server" in cmdline and data_dir in cmdline


async def run_empq(cfg: LoadConfig, label: str = "empq") -> dict[str, Any]:
    async with empq_hub_subprocess(max_seconds=cfg.seconds + 60) as (url, pid, redis_pid):
        return await run_load(url, cfg, label=label, hub_pid=pid, redis_pid=redis_pid)


async def run_null(cfg: LoadConfig, label: str = "null hub") -> dict[str, Any]:
    async with null_hub_subprocess(max_seconds=cfg.seconds + 60) as (url, pid):
        return await run_load(url, cfg, label=label, hub_pid=pid)


# -- output --------------------------------------------------------------------------------------


def table(results: list[dict[str, Any]], ratio: dict[str, Any] | None = None) -> str:
    def lat(r: dict[str, Any], key: str, q: str) -> str:
        v = r[key][q]
        return f"{v:.2f}" if v == v else "-"

    rows: list[tuple[str, ...]] = [
        ("", *(r["label"] for r in results)),
        ("url", *(r["url"] for r in results)),
        ("completed / submitted", *(f"{r['completed']} / {r['submitted']}" for r in results)),
        ("stopped by", *(r["stopped_by"][:60] for r in results)),
        ("wall s (first submit → last completed)", *(f"{r['wall_s']:.2f}" for r in results)),
        ("jobs/s", *(f"{r['jobs_per_s']:.1f}" for r in results)),
        ("submit→job_assigned p50 ms", *(lat(r, "submit_to_assigned", "p50_ms") for r in results)),
        ("submit→job_assigned p99 ms", *(lat(r, "submit_to_assigned", "p99_ms") for r in results)),
        ("submit→job_completed p50 ms", *(lat(r, "submit_to_completed", "p50_ms") for r in results)),
        ("submit→job_completed p99 ms", *(lat(r, "submit_to_completed", "p99_ms") for r in results)),
        ("claims / no_job_available", *(f"{r['claims']} / {r['no_job_available']}" for r in results)),
        ("errors", *(str(sum(r["errors"].values())) for r in results)),
        ("driver CPU %", *(str(r.get("driver_cpu_pct", "-")) for r in results)),
        ("hub CPU %", *(str(r.get("hub_cpu_pct", "-")) for r in results)),
        ("redis CPU %", *(str(r.get("redis_cpu_pct", "-")) for r in results)),
        ("CPU µs/job driver/hub/redis", *(_per_job(r) for r in results)),
    ]
    if ratio:
        rows.append(("jobs/s ÷ null ceiling", f"{ratio['jobs_per_s']:.3f}", ""))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for n, row in enumerate(rows):
        lines.append(
            "  ".join(
                cell.ljust(w) if i == 0 else cell.rjust(w)
                for i, (cell, w) in enumerate(zip(row, widths, strict=True))
            )
        )
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _per_job(r: dict[str, Any]) -> str:
    per = r.get("cpu_us_per_job", {})
    return " / ".join(str(per.get(k, "-")) for k in ("driver", "hub", "redis"))


def config_line(cfg: LoadConfig) -> str:
    return (
        f"clients={cfg.clients} workers={cfg.workers} jobs={cfg.jobs} seconds={cfg.seconds:g} "
        f"max_jobs={cfg.max_jobs} in_flight={cfg.in_flight} progress_steps={cfg.progress_steps}"
    )


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    cfg = LoadConfig(
        clients=args.clients,
        workers=args.workers,
        jobs=args.jobs,
        seconds=args.seconds,
        max_jobs=args.max_jobs,
        in_flight=args.in_flight,
        progress_steps=args.progress_steps,
        wake_ms=args.wake_ms,
        token=args.token or os.environ.get("EMPQ_BENCH_TOKEN"),
    )
    if args.matrix:
        return await run_matrix(cfg, args)
    if args.single:
        cfg.clients, cfg.workers, cfg.in_flight = 1, 1, 1
    cfg.check()
    mode = "single (one job in flight)" if args.single else "load"
    print(f"{mode}: {config_line(cfg)}", flush=True)
    results: list[dict[str, Any]] = []
    ratio = None
    if args.compare or args.empq:
        if args.empq:
            results.append(await run_empq(cfg))
        else:
            results.append(await run_load(args.compare, cfg, label="empq"))
        results.append(await run_null(cfg))
        base = results[1]["jobs_per_s"]
        ratio = {
            "jobs_per_s": results[0]["jobs_per_s"] / base if base else 0.0,
            "submit_to_assigned_p50": _ratio(results, "submit_to_assigned", "p50_ms"),
            "submit_to_completed_p50": _ratio(results, "submit_to_completed", "p50_ms"),
        }
    elif args.null:
        results.append(await run_null(cfg))
    else:
        results.append(await run_load(args.url, cfg, label="hub"))
    print(table(results, ratio))
    for r in results:
        if r["errors"]:
            print(f"{r['label']}: errors {r['errors']}; first: {r['first_errors'][:2]}")
    out = {"mode": mode, "runs": results, "ratio_to_null": ratio}
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(out, indent=2, default=str))
    return out


# (workers, clients, max_jobs): 1, 10, 100 workers × 1, 10 clients with max_jobs 1, then max_jobs 4.
MATRIX = [
    (1, 1, 1),
    (10, 1, 1),
    (100, 1, 1),
    (1, 10, 1),
    (10, 10, 1),
    (100, 10, 1),
    (10, 10, 4),
    (100, 10, 4),
]


async def run_matrix(base: LoadConfig, args: argparse.Namespace) -> dict[str, Any]:
    """Every MATRIX shape on a fresh ``empq hub`` (embedded Redis, as ``empq hub`` starts) and on
    the null hub; the in-flight window (``--in-flight`` × 4 by default) is split among the clients."""
    total_in_flight = args.matrix_in_flight
    rows: list[dict[str, Any]] = []
    print(f"matrix: jobs={base.jobs} per run, {total_in_flight} in flight in all, seconds={base.seconds:g}")
    for workers, clients, max_jobs in MATRIX:
        cfg = LoadConfig(**{**asdict(base), "workers": workers, "clients": clients, "max_jobs": max_jobs})
        cfg.in_flight = max(1, total_in_flight // clients)
        cfg.check()
        empq = await run_empq(cfg)
        null = await run_null(cfg)
        rows.append(
            {"workers": workers, "clients": clients, "max_jobs": max_jobs, "empq": empq, "null": null}
        )
        print(matrix_table(rows[-1:], header=len(rows) == 1), flush=True)
    return {"mode": "matrix", "rows": rows}


def matrix_table(rows: list[dict[str, Any]], header: bool = True) -> str:
    def lat(r: dict[str, Any], key: str) -> str:
        v = r[key]
        return f"{v['p50_ms']:.1f}/{v['p99_ms']:.1f}" if v["p50_ms"] == v["p50_ms"] else "-"

    out = []
    if header:
        out.append(
            f"{'workers':>7} {'clients':>7} {'max_jobs':>8} | {'empq jobs/s':>11} {'null jobs/s':>11} "
            f"{'ratio':>5} | {'empq assigned p50/p99 ms':>24} {'empq completed p50/p99 ms':>25} | "
            f"{'empq CPU µs/job drv/hub/redis':>29}"
        )
    for row in rows:
        e, n = row["empq"], row["null"]
        ratio = e["jobs_per_s"] / n["jobs_per_s"] if n["jobs_per_s"] else 0.0
        done = "" if e["stopped_by"] == "jobs" and n["stopped_by"] == "jobs" else "  (not all done)"
        out.append(
            f"{row['workers']:>7} {row['clients']:>7} {row['max_jobs']:>8} | {e['jobs_per_s']:>11.0f} "
            f"{n['jobs_per_s']:>11.0f} {ratio:>5.2f} | {lat(e, 'submit_to_assigned'):>24} "
            f"{lat(e, 'submit_to_completed'):>25} | {_per_job(e):>29}{done}"
        )
    return "\n".join(out)


def _ratio(results: list[dict[str, Any]], key: str, q: str) -> float | None:
    a, b = results[0][key][q], results[1][key][q]
    return a / b if b and b == b and a == a else None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--url", default="ws://127.0.0.1:3002", help="hub to load (default %(default)s)")
    target.add_argument("--null", action="store_true", help="start the null hub (subprocess) and load it")
    target.add_argument("--compare", metavar="URL", help="load URL, then the null hub; print the ratio")
    target.add_argument(
        "--empq", action="store_true",
        help="start `empq hub` (embedded Redis, temp dir), load it, then the null hub; ratio and CPU per job",
    )  # fmt: skip
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--jobs", type=int, default=5000, help="total jobs (the run stops after them)")
    parser.add_argument("--seconds", type=float, default=60.0, help="time bound of each run")
    parser.add_argument("--max-jobs", type=int, default=1, help="claim_job max_jobs")
    parser.add_argument("--in-flight", type=int, default=50, help="unfinished jobs per client")
    parser.add_argument("--progress-steps", type=int, default=1, help="update_job_progress per job")
    parser.add_argument("--wake-ms", type=float, default=1000.0, help="re-claim timer after no_job_available")
    parser.add_argument("--single", action="store_true", help="1 client, 1 worker, 1 job in flight")
    parser.add_argument(
        "--matrix", action="store_true",
        help="1/10/100 workers × 1/10 clients (max_jobs 1, then 4), each on a fresh empq hub and null hub",
    )  # fmt: skip
    parser.add_argument("--matrix-in-flight", type=int, default=200, help="in flight in all (matrix)")
    parser.add_argument("--token", help="auth_token for the register messages (or $EMPQ_BENCH_TOKEN)")
    parser.add_argument("--json", dest="json_out", help="write the figures here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Exit status 1 when a run did not finish its jobs (time bound, refused jobs, errors)."""
    args = parse_args(argv)
    out = asyncio.run(main_async(args))
    if args.matrix:
        if args.json_out:
            Path(args.json_out).write_text(json.dumps(out, indent=2, default=str))
        runs = [row[k] for row in out["rows"] for k in ("empq", "null")]
    else:
        runs = out["runs"]
    clean = all(r["stopped_by"] == "jobs" and not r["errors"] for r in runs)
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
