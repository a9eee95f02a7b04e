"""The AI workload: many workers (most idle), long jobs with progress updates, monitors watching all.

    python -m bench.aiload [--workers 1000] [--monitors 10] [--clients 10] [--steps 20]
        [--min-s 1] [--max-s 3] [--rates 50,100,200,300] [--seconds 15] [--baseline-rate 200]
        [--only empq,null] [--driver-procs 2] [--json out.json]
    python -m bench.aiload --url ws://127.0.0.1:3002 ...      # a hub already running

For each hub (``empq hub`` with its embedded Redis, then the null hub, ``bench/null_hub.py``):
``--workers`` workers connect and register (subscribe_to_jobs; split over ``--driver-procs``
processes), ``--monitors`` monitors register and ``subscribe_job_notifications`` (every job's
events), ``--clients`` job clients register. Then, for each rate of ``--rates``, the clients
submit jobs open-loop at that rate for ``--seconds`` (each job says how long it runs, uniform in
``--min-s``..``--max-s``, seeded) and wait for them. A worker told ``job_available`` claims;
it accepts, sends ``--steps`` ``update_job_progress`` spread over the job's time (each stamped with
the sender's CLOCK_MONOTONIC in ``message``), completes, and claims again; an idle worker also
claims every 5 s (as the SDK does) and heartbeats at the hub's interval.

Reported per rate: jobs completed / submitted, hub (and Redis) CPU µs per job, the driver's CPU
(all its processes), worker update → client ``job_update`` latency p50/p99/max (one clock: the
machine's monotonic clock, shared by the processes), submit → ``job_assigned`` p50/p99 (queueing),
frames the monitors received; and the largest rate sustained: every job done and update latency
p99 under ``--p99-ms`` (50). At ``--baseline-rate`` a second run with jobs of no progress updates
gives the hub's CPU per progress update: (CPU per job with N updates − without) ÷ N.

The driver uses picows' client (frames parsed in C) so that it takes as little of the two cores
as it can; every loop is bounded in count and time; everything listens on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import random
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson
from picows import WSFrame, WSListener, WSTransport

from bench.aiload_workers import SERVICE, TEXT, AiConfig, connect, frame, worker_process
from bench.lifecycle import cpu_seconds_of, empq_hub_subprocess, null_hub_subprocess, percentile

# -- monitors and clients (this process) -----------------------------------------------------------


class MonitorConn(WSListener):
    def __init__(self, stats: Counter[str]) -> None:
        super().__init__()
        self.stats = stats
        self.t: WSTransport | None = None
        self.subscribed = asyncio.get_running_loop().create_future()

    def on_ws_frame(self, transport: WSTransport, f: WSFrame) -> None:
        if f.msg_type is not TEXT:
            return
        self.stats["monitor_frames"] += 1
        if not self.subscribed.done():
            msg = orjson.loads(f.get_payload_as_bytes())
            if msg["type"] == "job_notifications_subscribed":
                self.subscribed.set_result(msg)
            elif msg["type"] == "error":
                self.subscribed.set_exception(RuntimeError(f"monitor refused: {msg}"))


@dataclass
class Round:
    """What one rate's clients saw."""

    submit_t: dict[str, float] = field(default_factory=dict)  # request id -> submit time
    job_of: dict[str, str] = field(default_factory=dict)  # request id -> job id
    assigned: list[float] = field(default_factory=list)  # submit -> job_assigned update, s
    latency_ns: list[int] = field(default_factory=list)  # worker progress -> client job_update
    completed: int = 0
    failed: int = 0
    refused: int = 0
    updates: int = 0


class ClientConn(WSListener):
    def __init__(self, client_id: str) -> None:
        super().__init__()
        self.client_id = client_id
        self.t: WSTransport | None = None
        self.registered = asyncio.get_running_loop().create_future()
        self.round = Round()
        self.sent_at: dict[str, float] = {}  # job id -> its submit time
        self.n = 0

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.t = transport

    def submit(self, ms: int, steps: int) -> None:
        assert self.t is not None
        self.n += 1
        rid = f"{self.client_id}-{self.n}"
        self.round.submit_t[rid] = time.perf_counter()
        self.t.send(
            TEXT,
            frame(
                "submit_job",
                id=rid,
                job_type="ai",
                payload={"ms": ms, "steps": steps},
                requirements={"service_type": SERVICE},
            ),
        )

    def on_ws_frame(self, transport: WSTransport, f: WSFrame) -> None:
        if f.msg_type is not TEXT:
            return
        msg = orjson.loads(f.get_payload_as_bytes())
        kind = msg["type"]
        r = self.round
        if kind == "job_update":
            status = msg.get("status")
            if status == "in_progress":
                r.updates += 1
                text = msg.get("message") or ""
                if text.startswith("@"):
                    r.latency_ns.append(time.monotonic_ns() - int(text[1:]))
            elif status == "assigned":
                sent = self.sent_at.get(msg["job_id"])
                if sent is not None:
                    r.assigned.append(time.perf_counter() - sent)
            elif status in ("failed", "cancelled", "timeout"):
                r.failed += 1
        elif kind == "job_completed":
            r.completed += 1
            self.sent_at.pop(msg["job_id"], None)
        elif kind == "job_accepted":
            rid = msg.get("request_id")
            if rid in r.submit_t:
                r.job_of[rid] = msg["job_id"]
                self.sent_at[msg["job_id"]] = r.submit_t[rid]
        elif kind == "client_registered":
            if not self.registered.done():
                self.registered.set_result(msg)
        elif kind == "error":
            if msg.get("request_id") in r.submit_t:
                r.refused += 1
            elif not self.registered.done():
                self.registered.set_exception(RuntimeError(f"client refused: {msg}"))


def stats_ms(values_s: list[float]) -> dict[str, float]:
    ms = sorted(v * 1000 for v in values_s)
    nan = float("nan")
    return {
        "n": len(ms),
        "p50_ms": round(percentile(ms, 50), 2) if ms else nan,
        "p99_ms": round(percentile(ms, 99), 2) if ms else nan,
        "max_ms": round(ms[-1], 2) if ms else nan,
    }


async def run_rate(
    clients: list[ClientConn],
    rate: float,
    steps: int,
    cfg: AiConfig,
    rng: random.Random,
    pids: dict[str, Any],
) -> dict[str, Any]:
    """Submit at ``rate`` for cfg.seconds (open loop), wait for the jobs; the figures."""
    for c in clients:
        c.round = Round()
    total = max(1, int(rate * cfg.seconds))
    cpu0 = {name: cpu_seconds_of(pid) for name, pid in pids.items()}
    own0 = time.process_time()
    t0 = time.perf_counter()
    for i in range(total):
        due = t0 + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        ms = int(rng.uniform(cfg.min_s, cfg.max_s) * 1000)
        clients[i % len(clients)].submit(ms, steps)
    drain_until = time.perf_counter() + cfg.max_s + 30
    while time.perf_counter() < drain_until:
        done = sum(c.round.completed + c.round.failed + c.round.refused for c in clients)
        if done >= total:
            break
        await asyncio.sleep(0.05)
    wall = time.perf_counter() - t0
    cpu1 = {name: cpu_seconds_of(pid) for name, pid in pids.items()}
    own = time.process_time() - own0
    completed = sum(c.round.completed for c in clients)
    latency = [n / 1e9 for c in clients for n in c.round.latency_ns]
    assigned = [a for c in clients for a in c.round.assigned]
    cpu_s = {k: end - v for k, v in cpu0.items() if v is not None and (end := cpu1.get(k)) is not None}
    cpu_s["driver"] = own + sum(v for k, v in cpu_s.items() if k.startswith("driver-"))
    shown = {k: v for k, v in cpu_s.items() if not k.startswith("driver-")}
    per_job = {k: round(v / completed * 1e6) for k, v in shown.items()} if completed else {}
    lat = stats_ms(latency)
    return {
        "rate": rate,
        "steps": steps,
        "submitted": total,
        "completed": completed,
        "failed": sum(c.round.failed for c in clients),
        "refused": sum(c.round.refused for c in clients),
        "wall_s": round(wall, 2),
        "updates_received": sum(c.round.updates for c in clients),
        "update_latency": lat,
        "submit_to_assigned": stats_ms(assigned),
        "cpu_us_per_job": per_job,
        "cpu_pct": {k: round(100 * v / wall, 1) for k, v in cpu_s.items() if not k.startswith("driver-")},
        "sustained": completed == total and lat["p99_ms"] == lat["p99_ms"] and lat["p99_ms"] < cfg.p99_ms
        if steps
        else completed == total,
    }


@dataclass
class Peers:
    """The connected workers (in driver processes), monitors and clients of one run."""

    clients: list[ClientConn]
    monitors: list[MonitorConn]
    stats: Counter[str]  # monitor_frames
    driver_pids: list[int]
    tag: str
    connect_s: float = 0.0
    worker_stats: dict[str, int] = field(default_factory=dict)  # filled when the drivers stop


@contextlib.asynccontextmanager
async def connected(url: str, cfg: AiConfig) -> AsyncIterator[Peers]:
    """``cfg.workers`` workers (split over ``cfg.driver_procs`` processes), ``cfg.monitors``
    monitors subscribed to every job's notifications and ``cfg.clients`` job clients, connected
    and registered to ``url``; at exit the drivers stop (their counts in ``worker_stats``) and
    every connection closes."""
    cfg.check()
    tag = f"ai{os.getpid() % 10000}-{int(time.time()) % 100000}"
    ctx = multiprocessing.get_context("spawn")
    ids = [f"{tag}-w{i}" for i in range(cfg.workers)]
    procs, pipes = [], []
    for k in range(cfg.driver_procs):
        parent, child = ctx.Pipe()
        mine = ids[k :: cfg.driver_procs]
        p = ctx.Process(target=worker_process, args=(url, mine, cfg, child), daemon=True)
        p.start()
        procs.append(p)
        pipes.append(parent)
    peers = Peers([], [], Counter(), [p.pid for p in procs if p.pid is not None], tag)
    stats, monitors, clients = peers.stats, peers.monitors, peers.clients
    try:
        t_connect = time.perf_counter()
        for pipe in pipes:
            reply = await asyncio.to_thread(_recv, pipe, 300)
            if "error" in reply:
                raise RuntimeError(f"worker driver: {reply['error']}")
        for i in range(cfg.monitors):
            transport, m = await connect(url, lambda: MonitorConn(stats))
            m.t = transport
            m_frames = [
                frame("register_client", id=f"m{i}", client_type="monitor", client_id=f"{tag}-m{i}",
                      permissions=["view_all_jobs", "view_system_stats"]),
                frame("subscribe_job_notifications", id=f"m{i}-sub", enabled=True),
            ]  # fmt: skip
            for data in m_frames:
                transport.send(TEXT, data)
            await asyncio.wait_for(m.subscribed, 30)
            monitors.append(m)
        for i in range(cfg.clients):
            t, c = await connect(url, lambda i=i: ClientConn(f"{tag}-c{i}"))
            register = frame("register_client", id=f"c{i}", client_type="job_client", client_id=c.client_id)
            t.send(TEXT, register)
            await asyncio.wait_for(c.registered, 30)
            clients.append(c)
        peers.connect_s = round(time.perf_counter() - t_connect, 2)
        yield peers
    finally:
        for pipe in pipes:
            with contextlib.suppress(Exception):
                pipe.send("stop")
        worker_stats: Counter[str] = Counter()
        for pipe in pipes:
            with contextlib.suppress(Exception):
                reply = await asyncio.to_thread(_recv, pipe, 30)
                worker_stats.update(reply.get("stats", {}))
        peers.worker_stats = dict(worker_stats)
        for p in procs:
            p.join(10)
            if p.is_alive():
                p.kill()
        for conn in [*monitors, *clients]:
            link = getattr(conn, "t", None)
            if link is not None:
                link.disconnect()


async def run_aiload(
    url: str,
    cfg: AiConfig,
    label: str,
    hub_pid: int | None = None,
    redis_pid: int | None = None,
) -> dict[str, Any]:
    """Connect the workers, monitors and clients to ``url``; run every rate; the figures."""
    cfg.check()
    result: dict[str, Any] = {"label": label, "url": url, "config": asdict(cfg), "rounds": []}
    async with connected(url, cfg) as peers:
        clients, stats = peers.clients, peers.stats
        result["connect_s"] = peers.connect_s
        await asyncio.sleep(1.0)  # the workers' first claims are answered
        pids: dict[str, Any] = {"hub": hub_pid, "redis": redis_pid}
        pids.update({f"driver-{k}": pid for k, pid in enumerate(peers.driver_pids)})
        rng = random.Random(cfg.seed)
        for rate in cfg.rates:
            row = await run_rate(clients, rate, cfg.steps, cfg, rng, pids)
            row["monitor_frames"] = stats["monitor_frames"]
            stats["monitor_frames"] = 0
            print(round_line(label, row), flush=True)
            result["rounds"].append(row)
        if cfg.baseline_rate and cfg.steps:
            row = await run_rate(clients, cfg.baseline_rate, 0, cfg, rng, pids)
            row["monitor_frames"] = stats["monitor_frames"]
            print(round_line(label, row) + "  (baseline: no progress updates)", flush=True)
            result["baseline"] = row
            full = next((r for r in result["rounds"] if r["rate"] == cfg.baseline_rate), None)
            if full and full["cpu_us_per_job"].get("hub") and row["cpu_us_per_job"].get("hub"):
                result["hub_cpu_us_per_update"] = round(
                    (full["cpu_us_per_job"]["hub"] - row["cpu_us_per_job"]["hub"]) / cfg.steps, 1
                )
        ok = [r["rate"] for r in result["rounds"] if r["sustained"]]
        result["max_sustained_rate"] = max(ok) if ok else 0
    result["worker_stats"] = peers.worker_stats
    return result


def _recv(pipe: Any, timeout: float) -> Any:
    if not pipe.poll(timeout):
        raise RuntimeError(f"no answer from a driver process in {timeout:.0f} s")
    return pipe.recv()


def round_line(label: str, r: dict[str, Any]) -> str:
    lat, per = r["update_latency"], r["cpu_us_per_job"]
    cpu = " + ".join(f"{v} {k}" for k, v in per.items())
    return (
        f"{label:10} {r['rate']:>6g} jobs/s x{r['steps']:<2} done {r['completed']}/{r['submitted']}  "
        f"update→client p50/p99/max {lat['p50_ms']}/{lat['p99_ms']}/{lat['max_ms']} ms  "
        f"assigned p99 {r['submit_to_assigned']['p99_ms']} ms  CPU µs/job {cpu}  "
        f"hub {r['cpu_pct'].get('hub', '-')} %  {'ok' if r['sustained'] else 'NOT sustained'}"
    )


def table(results: list[dict[str, Any]]) -> str:
    lines = [
        f"{'hub':10} {'rate':>6} {'done':>11} {'upd p50':>8} {'upd p99':>8} {'asg p99':>8} "
        f"{'hub µs/job':>10} {'redis':>6} {'driver':>7} {'hub %':>6}  sustained"
    ]
    for res in results:
        for r in [*res["rounds"], *([res["baseline"]] if "baseline" in res else [])]:
            per = r["cpu_us_per_job"]
            lines.append(
                f"{res['label']:10} {r['rate']:>6g} {r['completed']:>5}/{r['submitted']:<5} "
                f"{r['update_latency']['p50_ms']:>8} {r['update_latency']['p99_ms']:>8} "
                f"{r['submit_to_assigned']['p99_ms']:>8} {per.get('hub', '-'):>10} "
                f"{per.get('redis', '-'):>6} "
                f"{per.get('driver', '-'):>7} {r['cpu_pct'].get('hub', '-'):>6}  "
                f"{'yes' if r['sustained'] else 'no'}{'  (no updates)' if not r['steps'] else ''}"
            )
        lines.append(
            f"{res['label']}: largest rate sustained (p99 < {res['config']['p99_ms']:g} ms, all done) "
            f"{res.get('max_sustained_rate', 0):g} jobs/s; hub CPU per progress update "
            f"{res.get('hub_cpu_us_per_update', '-')} µs"
        )
    return "\n".join(lines)


async def main_async(args: argparse.Namespace) -> list[dict[str, Any]]:
    cfg = AiConfig(
        workers=args.workers,
        monitors=args.monitors,
        clients=args.clients,
        steps=args.steps,
        min_s=args.min_s,
        max_s=args.max_s,
        rates=[float(r) for r in args.rates.split(",")],
        seconds=args.seconds,
        baseline_rate=args.baseline_rate,
        driver_procs=args.driver_procs,
        p99_ms=args.p99_ms,
    )
    cfg.check()
    bound = len(cfg.rates) * (cfg.seconds + cfg.max_s + 30) + 600
    results = []
    if args.url:
        results.append(await run_aiload(args.url, cfg, "hub"))
        return results
    for kind in args.only.split(","):
        if kind == "empq":
            extra = tuple(args.hub_args.split())
            async with empq_hub_subprocess(bound, extra_args=extra) as (url, pid, rpid):
                results.append(await run_aiload(url, cfg, "empq", pid, rpid))
        elif kind == "null":
            async with null_hub_subprocess(bound) as (url, pid):
                results.append(await run_aiload(url, cfg, "null hub", pid))
        else:
            raise ValueError(f"--only: unknown hub {kind!r}")
    return results


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", help="load a hub already running here instead of starting empq and the null hub")
    p.add_argument("--only", default="empq,null", help="comma list of empq,null")
    p.add_argument("--hub-args", default="", help="more `empq hub` flags, e.g. '--transport picows'")
    p.add_argument("--workers", type=int, default=1000)
    p.add_argument("--monitors", type=int, default=10)
    p.add_argument("--clients", type=int, default=10)
    p.add_argument("--steps", type=int, default=20, help="progress updates per job")
    p.add_argument("--min-s", type=float, default=1.0, help="shortest job, seconds")
    p.add_argument("--max-s", type=float, default=3.0, help="longest job, seconds")
    p.add_argument("--rates", default="50,100,200,300", help="job rates to try, jobs/s")
    p.add_argument("--seconds", type=float, default=15.0, help="seconds of submissions per rate")
    p.add_argument("--baseline-rate", type=float, default=200.0, help="rate of the no-update run (0: none)")
    p.add_argument("--driver-procs", type=int, default=2, help="processes the workers are split over")
    p.add_argument("--p99-ms", type=float, default=50.0, help="update latency p99 a sustained rate keeps")
    p.add_argument("--json", dest="json_out", type=Path)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    results = asyncio.run(main_async(args))
    print(table(results))
    if args.json_out:
        args.json_out.write_text(json.dumps(results, indent=2, default=str))
    clean = all(r["rounds"] and all(x["completed"] == x["submitted"] for x in r["rounds"]) for r in results)
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
