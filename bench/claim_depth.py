"""Claim latency versus queue depth: a claim's cost must not grow with the number of queued jobs.

    python -m bench.claim_depth [--depths 1000,1000000] [--classes 1,100] [--claims 2000]
        [--concurrency 50] [--concurrent-claims 10000] [--rounds 10] [--seconds 60]
        [--fill-seconds 900] [--redis-url URL] [--json out.json]

The queue is one sorted set per job class (hub/matching.py), so a claim reads the head of each
class the worker can run: its cost should grow with the number of classes, not of jobs. This
drives the store directly (``RespClient`` + ``RedisBatch`` + ``JobStore``, no WebSocket) against
its own embedded redis-server (a unix socket in a temporary dir; nothing on the network, stopped
and deleted at the end) unless ``--redis-url`` is given. Each (depth, classes) configuration has
its own key prefix ``{bench-<hex>}``.

For each class count:

1. fill: for each depth, ``depth`` jobs submitted in chunks of ``--chunk`` concurrent
   ``store.submit`` calls (pipelined by the RedisBatch), round-robin over ``classes`` job types
   that all need service ``sim``; jobs/s (and per tenth of the fill). The depths' queues then
   sit side by side in Redis;
2. sequential claims: one worker that can run every class; ``store.claim`` (max_jobs=1; only
   this call is timed, ``time.perf_counter``), then ``store.complete`` of the job and the submit
   of a replacement of the same class (untimed), so every claim sees exactly ``depth`` queued
   jobs; ``--claims`` per depth, p50/p99/mean µs;
3. Redis-side cost (own server only, or ``--server-timing``): ``--server-claims`` more claims per
   depth, each between two ``INFO commandstats``: the claim script's time inside Redis and the
   commands it spent it on (where growth with depth would show);
4. concurrent claims: ``--concurrency`` loops of claim + complete; before each block the queue is
   topped up (untimed) by the block's claims, so the depth goes from depth + block back to
   depth; ``--concurrent-claims`` per depth, claims/s over the timed blocks;
5. cleanup: the prefixes' keys deleted (SCAN + UNLINK).

Phases 2-4 run in ``--rounds`` blocks per depth, the depths taking turns, so a slower or busier
stretch of the machine (a shared 2-core box) reaches every depth alike. Before measuring, the
run waits (bounded) for a background AOF rewrite of the server to end. Every loop is bounded in
count and in time (``--seconds`` per measuring phase, ``--fill-seconds`` per fill). Prints a
table and p50(deepest) / p50(shallowest) per class count (target <= 1.5); exit status 1 when
the run was incomplete (a fill or phase cut by time, a claim that found no job).

The defaults take about 13 minutes on a 2-core machine, 10 of them filling 1,000,000 jobs over
100 classes: submit.lua computes each job's queue position with one ZCOUNT per class, so a
submit costs O(classes x log depth) inside Redis (about 1,500 jobs/s there, against 12,000 with
one class). 1,000,000 queued jobs take about 530 MB in Redis. For a quicker run use e.g.
``--depths 1000,100000`` or ``--classes 1,10``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson
from empq.hub.embedded_redis import EmbeddedRedis
from empq.hub.matching import JobClass
from empq.hub.redis_batch import RedisBatch
from empq.hub.resp import RespClient
from empq.hub.store import SCRIPTS, ClaimedJob, JobStore, now_ms

SERVICE = "sim"
REQUIREMENTS = {"service_type": SERVICE}
CAPABILITIES = {"services": [SERVICE]}  # can run every class of the benchmark
CLAIM_TIMEOUT_MS = 600_000  # nothing sweeps in the benchmark; the claims are completed at once
RESULT = b'{"success":true}'
TARGET_RATIO = 1.5


@dataclass
class BenchConfig:
    depths: list[int] = field(default_factory=lambda: [1000, 1_000_000])
    classes: list[int] = field(default_factory=lambda: [1, 100])
    claims: int = 2000  # sequential, timed
    warmup: int = 50  # sequential, untimed, before the timed ones
    server_claims: int = 500  # sequential, between INFO commandstats (0: skip)
    concurrency: int = 50
    concurrent_claims: int = 10_000  # total over the concurrent loops
    rounds: int = 10  # blocks per depth, the depths taking turns
    seconds: float = 60.0  # time cap of each measuring phase
    fill_seconds: float = 900.0  # time cap of each fill
    chunk: int = 2000  # concurrent submits per gather while filling
    seed: int = 1
    redis_url: str | None = None
    server_timing: bool | None = None  # None: only with the embedded server

    def check(self) -> None:
        if not self.depths or not self.classes or min(self.depths) < 1 or min(self.classes) < 1:
            raise ValueError("--depths and --classes need positive integers")
        if min(self.claims, self.concurrency, self.concurrent_claims, self.chunk, self.rounds) < 1:
            raise ValueError("--claims, --concurrency, --concurrent-claims, --chunk, --rounds must be >= 1")
        if min(self.warmup, self.server_claims) < 0 or min(self.seconds, self.fill_seconds) <= 0:
            raise ValueError("--warmup/--server-claims must be >= 0, --seconds/--fill-seconds > 0")


# -- figures --------------------------------------------------------------------------------------


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list (q in 0..100)."""
    if not sorted_values:
        return float("nan")
    rank = max(1, -(-len(sorted_values) * q // 100))
    return sorted_values[int(rank) - 1]


def micro_stats(seconds: list[float]) -> dict[str, float | int]:
    us = sorted(v * 1e6 for v in seconds)
    if not us:
        return {"n": 0, "p50_us": float("nan"), "p99_us": float("nan"), "mean_us": float("nan")}
    return {
        "n": len(us),
        "p50_us": round(percentile(us, 50), 1),
        "p90_us": round(percentile(us, 90), 1),
        "p99_us": round(percentile(us, 99), 1),
        "mean_us": round(statistics.fmean(us), 1),
        "min_us": round(us[0], 1),
        "max_us": round(us[-1], 1),
    }


def parse_info(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        name, sep, value = line.partition(":")
        if sep and not line.startswith("#"):
            out[name] = value.strip()
    return out


def parse_commandstats(text: str) -> dict[str, tuple[int, int]]:
    """``INFO commandstats`` -> {command: (calls, usec)}."""
    out = {}
    for name, value in parse_info(text).items():
        if name.startswith("cmdstat_"):
            fields = dict(kv.split("=", 1) for kv in value.split(","))
            out[name[len("cmdstat_") :]] = (int(fields["calls"]), int(fields["usec"]))
    return out


# -- the store under test -------------------------------------------------------------------------


class Bench:
    """One configuration (depth, classes): one key prefix, its figures accumulated over the rounds."""

    def __init__(
        self, client: RespClient, cfg: BenchConfig, depth: int, nclasses: int, rng: random.Random
    ) -> None:
        self.client = client
        self.cfg = cfg
        self.depth = depth
        self.rng = rng
        self.prefix = f"{{bench-{uuid.uuid4().hex[:12]}}}"
        self.batch = RedisBatch(client, SCRIPTS)
        self.store = JobStore(self.batch, self.prefix)
        self.job_classes = [JobClass.of(f"bench-{i:03d}", REQUIREMENTS) for i in range(nclasses)]
        self.by_type = {c.job_type: c for c in self.job_classes}
        self.next_class = 0
        self.run: dict[str, Any] = {"depth": depth, "classes": nclasses, "prefix": self.prefix}
        # sequential claims (client side), the Redis-side pass, the concurrent claims
        self.latencies: list[float] = []
        self.empty = 0
        self.server_us: list[float] = []
        self.server_empty = 0
        self.by_command: dict[str, list[int]] = {}  # command -> [calls, usec] summed over the claims
        self.conc_latencies: list[float] = []
        self.conc_empty = 0
        self.conc_seconds = 0.0
        self.conc_cpu = 0.0
        self.conc_redis_cpu = 0.0
        self.conc_blocks = 0

    async def start(self) -> None:
        await self.batch.load_scripts()

    def submit(self, job_class: JobClass | None = None) -> Any:
        """One job like the hub's ``on_submit_job`` makes it (a coroutine); classes round-robin."""
        if job_class is None:
            job_class = self.job_classes[self.next_class]
            self.next_class = (self.next_class + 1) % len(self.job_classes)
        job_id = f"job-{uuid.uuid4().hex}"
        priority = self.rng.randint(0, 100)
        return self.store.submit(
            job_id,
            job_class,
            priority,
            {
                "id": job_id,
                "job_type": job_class.job_type,
                "priority": priority,
                "payload": b"{}",
                "requirements": orjson.dumps(REQUIREMENTS),
                "customer_id": None,
                "client_id": "bench",
                "origin": "bench",
                "max_retries": 3,
                "retry_count": 0,
                "created_at": now_ms(),
            },
        )

    async def fill(self, count: int, deadline: float) -> dict[str, Any]:
        """Submit ``count`` jobs, ``chunk`` concurrent calls at a time, until ``deadline``."""
        cpu0, redis_cpu0 = time.process_time(), await redis_cpu(self.client)
        start = time.perf_counter()
        done, stopped_by = 0, "count"
        marks = [(0, start)]  # (jobs, time) after each chunk
        while done < count:
            if time.perf_counter() > deadline:
                stopped_by = "seconds"
                break
            size = min(self.cfg.chunk, count - done)
            await asyncio.gather(*(self.submit() for _ in range(size)))
            done += size
            marks.append((done, time.perf_counter()))
        elapsed = time.perf_counter() - start
        cpu, rcpu = time.process_time() - cpu0, await redis_cpu(self.client) - redis_cpu0
        out = {
            "jobs": done,
            "seconds": round(elapsed, 3),
            "jobs_per_s": round(done / elapsed, 1) if elapsed > 0 else 0.0,
            "stopped_by": stopped_by,
            "bench_cpu_pct": round(100 * cpu / elapsed, 1) if elapsed > 0 else None,
            "redis_cpu_pct": round(100 * rcpu / elapsed, 1) if elapsed > 0 else None,
        }
        if len(marks) > 10:  # the rate over each tenth of the fill: does submit slow down with depth?
            tenths = [marks[round(i * (len(marks) - 1) / 10)] for i in range(11)]
            out["jobs_per_s_by_tenth"] = [
                round((j1 - j0) / (t1 - t0)) if t1 > t0 else None
                for (j0, t0), (j1, t1) in zip(tenths, tenths[1:], strict=False)
            ]
        return out

    async def claim_one(self, worker_id: str) -> tuple[float, ClaimedJob | None]:
        t0 = time.perf_counter()
        jobs = await self.store.claim(worker_id, CAPABILITIES, 1, CLAIM_TIMEOUT_MS, None)
        elapsed = time.perf_counter() - t0
        return elapsed, jobs[0] if jobs else None

    async def sequential(self, count: int, deadline: float, record: bool = True) -> bool:
        """``count`` claims by one worker, each job completed and replaced by one of its class
        (untimed), so every claim sees the same depth. False when stopped by ``deadline``."""
        worker_id = "bench-worker"
        for _ in range(count):
            if time.perf_counter() > deadline:
                return False
            elapsed, job = await self.claim_one(worker_id)
            if job is None:
                self.empty += record
                continue
            if record:
                self.latencies.append(elapsed)
            await self._replace(worker_id, job)
        return True

    async def server_side(self, count: int, deadline: float) -> bool:
        """Like ``sequential``, each claim between two ``INFO commandstats``: the claim script's
        time inside Redis and the commands it spent it on."""
        worker_id = "bench-worker"
        for _ in range(count):
            if time.perf_counter() > deadline:
                return False
            before = parse_commandstats(await self.client.execute("INFO", "commandstats"))
            _, job = await self.claim_one(worker_id)
            after = parse_commandstats(await self.client.execute("INFO", "commandstats"))
            for name, (calls, usec) in after.items():
                c0, u0 = before.get(name, (0, 0))
                if name != "info" and calls != c0:
                    acc = self.by_command.setdefault(name, [0, 0])
                    acc[0] += calls - c0
                    acc[1] += usec - u0
            self.server_us.append((after["evalsha"][1] - before.get("evalsha", (0, 0))[1]) / 1e6)
            if job is None:
                self.server_empty += 1
                continue
            await self._replace(worker_id, job)
        return True

    async def _replace(self, worker_id: str, job: ClaimedJob) -> None:
        await asyncio.gather(
            self.store.complete(worker_id, job.job_id, RESULT, 0.0),
            self.submit(self.by_type[job.routing.job_type]),
        )

    async def concurrent(self, count: int, deadline: float) -> bool:
        """Top up the queue by ``count`` jobs (untimed), then ``concurrency`` loops of claim +
        complete take ``count`` claims (timed as a whole): the depth goes from depth + count back
        to depth. False when stopped by ``deadline``."""
        topped = (await self.fill(count, deadline))["jobs"]
        concurrency = self.cfg.concurrency
        timed_out = topped < count

        async def loop(idx: int, quota: int) -> None:
            nonlocal timed_out
            worker_id = f"bench-worker-{idx}"
            for _ in range(quota):
                if time.perf_counter() > deadline:
                    timed_out = True
                    return
                elapsed, job = await self.claim_one(worker_id)
                if job is None:
                    self.conc_empty += 1
                    continue
                self.conc_latencies.append(elapsed)
                await self.store.complete(worker_id, job.job_id, RESULT, 0.0)

        quotas = [topped // concurrency + (i < topped % concurrency) for i in range(concurrency)]
        cpu0, redis_cpu0 = time.process_time(), await redis_cpu(self.client)
        start = time.perf_counter()
        await asyncio.gather(*(loop(i, q) for i, q in enumerate(quotas) if q > 0))
        self.conc_seconds += time.perf_counter() - start
        self.conc_cpu += time.process_time() - cpu0
        self.conc_redis_cpu += await redis_cpu(self.client) - redis_cpu0
        self.conc_blocks += 1
        return not timed_out

    async def queued(self) -> int:
        return int((await self.store.counts()).get("queued", 0))

    async def cleanup(self, seconds: float = 300.0) -> dict[str, Any]:
        """Delete the prefix's keys: SCAN + UNLINK (pipelined batches)."""
        start = time.perf_counter()
        deadline = start + seconds
        cursor, deleted, pending = "0", 0, []
        pattern = self.prefix.replace("[", "\\[") + "*"
        while True:
            cursor, keys = await self.client.execute("SCAN", cursor, "MATCH", pattern, "COUNT", 10_000)
            for i in range(0, len(keys), 1000):
                pending.append(self.batch.command("UNLINK", *keys[i : i + 1000]))
            if len(pending) > 20 or cursor == "0":
                deleted += sum(int(n) for n in await asyncio.gather(*pending))
                pending = []
            if cursor == "0" or time.perf_counter() > deadline:
                break
        return {
            "deleted": deleted,
            "seconds": round(time.perf_counter() - start, 3),
            "complete": cursor == "0",
        }

    def summary(self, stopped: dict[str, str]) -> dict[str, Any]:
        run = self.run
        run["sequential"] = {
            "claims": len(self.latencies),
            "empty": self.empty,
            "stopped_by": stopped["sequential"],
            **micro_stats(self.latencies),
        }
        if "redis_side" in stopped:
            n = max(1, len(self.server_us))
            run["redis_side"] = {
                "claims": len(self.server_us) - self.server_empty,
                "empty": self.server_empty,
                "stopped_by": stopped["redis_side"],
                **micro_stats(self.server_us),
                "per_claim": {
                    name: {"calls": round(calls / n, 2), "usec": round(usec / n, 2)}
                    for name, (calls, usec) in sorted(self.by_command.items(), key=lambda kv: -kv[1][1])
                },
            }
        secs = self.conc_seconds
        run["concurrent"] = {
            "claimers": self.cfg.concurrency,
            "claims": len(self.conc_latencies),
            "empty": self.conc_empty,
            "stopped_by": stopped["concurrent"],
            "blocks": self.conc_blocks,
            "seconds": round(secs, 3),
            "claims_per_s": round(len(self.conc_latencies) / secs, 1) if secs > 0 else 0.0,
            "bench_cpu_pct": round(100 * self.conc_cpu / secs, 1) if secs > 0 else None,
            "redis_cpu_pct": round(100 * self.conc_redis_cpu / secs, 1) if secs > 0 else None,
            "latency": micro_stats(self.conc_latencies),
        }
        return run


# -- the server ------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def redis_server(url: str | None) -> AsyncIterator[tuple[str, bool]]:
    """Yields (url, own server): an embedded redis-server in a temp dir unless ``url`` is given."""
    if url:
        yield url, False
        return
    data_dir = Path(tempfile.mkdtemp(prefix="empq-claim-depth-"))
    server = EmbeddedRedis(data_dir)
    try:
        yield server.start(), True
    finally:
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


async def info(client: RespClient, section: str) -> dict[str, str]:
    return parse_info(await client.execute("INFO", section))


async def redis_cpu(client: RespClient) -> float:
    """CPU seconds the Redis server has used (main thread and background threads)."""
    cpu = await info(client, "cpu")
    return float(cpu.get("used_cpu_user", 0)) + float(cpu.get("used_cpu_sys", 0))


async def forks(client: RespClient) -> int:
    return int((await info(client, "stats")).get("total_forks", 0))


async def wait_quiet(client: RespClient, seconds: float = 180.0) -> float:
    """Wait (bounded) until Redis has no background work that competes for the CPUs: an AOF
    rewrite or RDB save (a forked child), or objects of UNLINKed keys still being freed."""
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        p, m = await info(client, "persistence"), await info(client, "memory")
        if (
            p.get("aof_rewrite_in_progress", "0") == "0"
            and p.get("rdb_bgsave_in_progress", "0") == "0"
            and m.get("lazyfree_pending_objects", "0") == "0"
        ):
            break
        await asyncio.sleep(0.2)
    return round(time.perf_counter() - start, 3)


async def interleaved(
    benches: list[Bench], total: int, rounds: int, seconds: float, step: Callable[..., Any]
) -> str:
    """``total`` claims per bench in ``rounds`` blocks, the benches taking turns (the order reversed
    every other round), so drift in the machine's speed reaches every depth alike."""
    deadline = time.perf_counter() + seconds
    rounds = max(1, min(rounds, total))
    for r in range(rounds):
        n = total // rounds + (r < total % rounds)
        for bench in benches if r % 2 == 0 else benches[::-1]:
            if not await step(bench, n, deadline):
                return "seconds"
    return "count"


async def run_class_count(
    client: RespClient, cfg: BenchConfig, nclasses: int, server_timing: bool, log: Callable[[str], None]
) -> list[dict[str, Any]]:
    """Fill every depth (one prefix each, side by side), then measure them in turns; clean up."""
    benches: list[Bench] = []
    stopped: dict[str, str] = {}
    try:
        for depth in cfg.depths:
            bench = Bench(client, cfg, depth, nclasses, random.Random(f"{cfg.seed}-{depth}-{nclasses}"))
            benches.append(bench)
            await bench.start()
            await wait_quiet(client)  # the previous class count's keys may still be being freed
            log(f"classes={nclasses} depth={depth:,}: filling ...")
            mem0 = int((await info(client, "memory")).get("used_memory", 0))
            fill = await bench.fill(depth, time.perf_counter() + cfg.fill_seconds)
            mem1 = int((await info(client, "memory")).get("used_memory", 0))
            fill["memory_mb"] = round((mem1 - mem0) / 2**20, 1)
            bench.run["fill"] = fill
            bench.run["depth_reached"] = await bench.queued()
            log(
                f"  {fill['jobs']:,} jobs in {fill['seconds']:.1f} s: {fill['jobs_per_s']:,.0f} jobs/s "
                f"(Redis CPU {fill['redis_cpu_pct']}%, bench CPU {fill['bench_cpu_pct']}%), "
                f"{fill['memory_mb']} MB"
            )
        waited = await wait_quiet(client)
        for bench in benches:
            bench.run["waited_for_fork_s"] = waited
            await bench.store.refresh_classes()  # else the first claim fetches the class registry
            await bench.sequential(cfg.warmup, time.perf_counter() + cfg.seconds, record=False)
        gc.collect()
        forks0 = await forks(client)
        log(f"classes={nclasses}: {cfg.claims} sequential claims per depth ...")
        stopped["sequential"] = await interleaved(
            benches, cfg.claims, cfg.rounds, cfg.seconds, lambda b, n, dl: b.sequential(n, dl)
        )
        if server_timing and cfg.server_claims:
            log(f"classes={nclasses}: {cfg.server_claims} claims timed inside Redis per depth ...")
            stopped["redis_side"] = await interleaved(
                benches, cfg.server_claims, cfg.rounds, cfg.seconds, lambda b, n, dl: b.server_side(n, dl)
            )
        forks1 = await forks(client)
        await wait_quiet(client)
        gc.collect()
        log(f"classes={nclasses}: {cfg.concurrent_claims} claims by {cfg.concurrency} claimers per depth ...")
        stopped["concurrent"] = await interleaved(
            benches, cfg.concurrent_claims, cfg.rounds, cfg.seconds, lambda b, n, dl: b.concurrent(n, dl)
        )
        forks2 = await forks(client)
        for bench in benches:
            bench.run["depth_after"] = await bench.queued()
            bench.run["forks_while_measuring"] = {
                "sequential": forks1 - forks0,
                "concurrent": forks2 - forks1,
            }
    finally:
        for bench in benches:
            bench.run["cleanup"] = await bench.cleanup()
    return [bench.summary(stopped) for bench in benches]


def ratios(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """p50 at the deepest depth / p50 at the shallowest, per class count."""
    out = []
    for nclasses in sorted({r["classes"] for r in runs}):
        same = sorted((r for r in runs if r["classes"] == nclasses), key=lambda r: r["depth"])
        if len(same) < 2:
            continue
        low, high = same[0], same[-1]
        entry: dict[str, Any] = {
            "classes": nclasses,
            "depth_low": low["depth"],
            "depth_high": high["depth"],
            "p50_ratio": _ratio(high["sequential"]["p50_us"], low["sequential"]["p50_us"]),
            "mean_ratio": _ratio(high["sequential"]["mean_us"], low["sequential"]["mean_us"]),
            "claims_per_s_ratio": _ratio(
                high["concurrent"]["claims_per_s"], low["concurrent"]["claims_per_s"]
            ),
        }
        if "redis_side" in low and "redis_side" in high:
            entry["redis_p50_ratio"] = _ratio(high["redis_side"]["p50_us"], low["redis_side"]["p50_us"])
        entry["target"] = TARGET_RATIO
        entry["ok"] = entry["p50_ratio"] is not None and entry["p50_ratio"] <= TARGET_RATIO
        out.append(entry)
    return out


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 3) if b and a == a and b == b else None


async def run_bench(cfg: BenchConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    cfg.check()
    started = time.perf_counter()
    async with redis_server(cfg.redis_url) as (url, own):
        server_timing = own if cfg.server_timing is None else cfg.server_timing
        client = RespClient(url)
        try:
            await client.connect()
            server = await info(client, "server")
            runs = []
            for nclasses in cfg.classes:
                runs += await run_class_count(client, cfg, nclasses, server_timing, log)
        finally:
            await client.close()
    return {
        "config": asdict(cfg),
        "redis": {"url": url, "embedded": own, "version": server.get("redis_version")},
        "loop": type(asyncio.get_running_loop()).__module__.split(".")[0],
        "runs": runs,
        "ratios": ratios(runs),
        "wall_s": round(time.perf_counter() - started, 1),
    }


# -- output ----------------------------------------------------------------------------------------


def table(result: dict[str, Any]) -> str:
    def num(v: Any, fmt: str = "{:.1f}") -> str:
        return "-" if v is None or v != v else fmt.format(v)

    rows: list[tuple[str, ...]] = [
        (
            "depth",
            "classes",
            "fill jobs/s",
            "claim p50 µs",
            "p99 µs",
            "mean µs",
            "redis p50 µs",
            "claims/s (conc)",
        )
    ]
    for r in result["runs"]:
        s, c = r["sequential"], r["concurrent"]
        rows.append(
            (
                f"{r['depth']:,}"
                + ("" if r["depth_reached"] >= r["depth"] else f" ({r['depth_reached']:,})"),
                str(r["classes"]),
                num(r["fill"]["jobs_per_s"], "{:,.0f}"),
                num(s["p50_us"]),
                num(s["p99_us"]),
                num(s["mean_us"]),
                num(r.get("redis_side", {}).get("p50_us")),
                num(c["claims_per_s"], "{:,.0f}"),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    for q in result["ratios"]:
        redis = f", redis-side {num(q.get('redis_p50_ratio'), '{:.2f}')}" if "redis_p50_ratio" in q else ""
        lines.append(
            f"classes={q['classes']}: p50({q['depth_high']:,}) / p50({q['depth_low']:,}) = "
            f"{num(q['p50_ratio'], '{:.2f}')} (target <= {q['target']}: {'ok' if q['ok'] else 'OVER'})"
            f"{redis}; claims/s ratio {num(q['claims_per_s_ratio'], '{:.2f}')}"
        )
    return "\n".join(lines)


def problems(result: dict[str, Any]) -> list[str]:
    """What makes the run incomplete: a depth not reached, a phase cut by time, an empty claim."""
    out = []
    for r in result["runs"]:
        name = f"depth={r['depth']} classes={r['classes']}"
        if r["fill"]["stopped_by"] != "count" or r["depth_reached"] < r["depth"]:
            out.append(f"{name}: fill stopped at {r['depth_reached']} jobs (--fill-seconds)")
        for phase in ("sequential", "redis_side", "concurrent"):
            p = r.get(phase)
            if p is None:
                continue
            if p["stopped_by"] != "count":
                out.append(f"{name}: {phase} stopped by time after {p['claims']} claims (--seconds)")
            if p["empty"]:
                out.append(f"{name}: {phase}: {p['empty']} claims returned no job")
        if not r["cleanup"]["complete"]:
            out.append(f"{name}: cleanup did not finish")
    return out


def parse_ints(text: str) -> list[int]:
    return [int(x.replace("_", "")) for x in text.split(",") if x.strip()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--depths", type=parse_ints, default=[1000, 100_000, 1_000_000], help="default 1000,100000,1000000"
    )
    parser.add_argument("--classes", type=parse_ints, default=[1, 100], help="job classes; default 1,100")
    parser.add_argument("--claims", type=int, default=2000, help="timed sequential claims per depth")
    parser.add_argument("--warmup", type=int, default=50, help="untimed claims before them")
    parser.add_argument(
        "--server-claims", type=int, default=500, help="claims timed inside Redis (INFO commandstats)"
    )
    parser.add_argument("--concurrency", type=int, default=50, help="concurrent claim loops")
    parser.add_argument("--concurrent-claims", type=int, default=10_000, help="claims over the loops")
    parser.add_argument("--rounds", type=int, default=10, help="blocks per depth, the depths taking turns")
    parser.add_argument("--seconds", type=float, default=60.0, help="time cap of each measuring phase")
    parser.add_argument("--fill-seconds", type=float, default=900.0, help="time cap of each fill")
    parser.add_argument("--chunk", type=int, default=2000, help="concurrent submits per gather (fill)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--redis-url", help="use this Redis instead of an embedded redis-server")
    timing = parser.add_mutually_exclusive_group()
    timing.add_argument("--server-timing", dest="server_timing", action="store_true", default=None)
    timing.add_argument("--no-server-timing", dest="server_timing", action="store_false")
    parser.add_argument("--json", dest="json_out", help="write the results here")
    return parser.parse_args(argv)


def config_of(args: argparse.Namespace) -> BenchConfig:
    return BenchConfig(
        depths=args.depths,
        classes=args.classes,
        claims=args.claims,
        warmup=args.warmup,
        server_claims=args.server_claims,
        concurrency=args.concurrency,
        concurrent_claims=args.concurrent_claims,
        rounds=args.rounds,
        seconds=args.seconds,
        fill_seconds=args.fill_seconds,
        chunk=args.chunk,
        seed=args.seed,
        redis_url=args.redis_url,
        server_timing=args.server_timing,
    )


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop when installed, as the hub runs (hub/cli.py)."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def main(argv: list[str] | None = None) -> int:
    """Exit status 1 when the run is incomplete (see ``problems``)."""
    args = parse_args(argv)
    cfg = config_of(args)
    cfg.check()

    def log(line: str) -> None:
        print(line, flush=True)

    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        result = runner.run(run_bench(cfg, log))
    result["problems"] = problems(result)
    print(table(result))
    for line in result["problems"]:
        print(f"problem: {line}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(result, indent=2, default=str))
    return 1 if result["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
