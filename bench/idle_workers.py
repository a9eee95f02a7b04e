"""Connection scale: N idle workers connected to one hub, heartbeating; the hub's memory and the
heartbeat acknowledgement latency.

    python -m bench.idle_workers [--workers 10000] [--heartbeat 20] [--seconds 60]
        [--client-procs 1] [--url ws://HOST:PORT] [--json out.json]

Without ``--url`` it starts ``empq hub`` as a subprocess on 127.0.0.1 (a free port) with its
embedded redis-server in a temporary data dir, its open-files limit raised (``setrlimit`` in the
child) and ``EMPQ_HEARTBEAT_INTERVAL_MS`` set to the heartbeat period, and stops it at the end.

Phases:

1. connect: each worker opens a WebSocket (``compression=None``, no client-side keepalive pings),
   reads ``connection_established``, sends ``register_worker`` (``subscribe_to_jobs`` false) and
   waits for ``worker_registered``; at most ``--connect-concurrency`` handshakes at a time per
   client process. The hub's RSS (``/proc/<pid>/status`` VmRSS) is read before and after.
2. heartbeat: for ``--seconds``, every worker sends ``worker_heartbeat`` (with an ``id``) every
   ``--heartbeat`` seconds, the workers' phases spread evenly over the period; the latency of each
   ``worker_heartbeat_ack`` (matched by ``request_id``) is measured in the client (one clock,
   ``time.perf_counter``). The hub's RSS is sampled every second. Acks still missing
   ``--drain`` seconds after the window count as lost (and not within 1 s).

The workers run in ``--client-procs`` processes (one asyncio event loop each, uvloop when
installed), the connections split between them. A client process holding thousands of
connections has the hub's problem too: a full garbage collection stalls it for most of a second,
which would be measured as hub latency; so its GC is tuned like the hub's (``--client-default-gc``
leaves it alone) and its pauses over 100 ms are counted. ``slow_acks_by_second`` (JSON) counts
the acks over 100 ms by the second of the window their heartbeat was sent in: periodic stalls
show up there. Loopback only; bounded in count and time; stops by itself. Prints a table;
``--json`` writes the figures. Targets: hub RSS <= 600 MB with 10,000 workers, every heartbeat
acknowledged within 1 s (exit status 1 when missed).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import multiprocessing
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
from empq.generated.messages.register_worker import RegisterWorker
from empq.generated.messages.worker_heartbeat import WorkerHeartbeat
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from empq import protocol

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.append(str(REPO))

from bench.lifecycle import cpu_seconds_of, latency_stats  # noqa: E402

HUB_START_TIMEOUT = 30.0
STOP_TIMEOUT = 30.0  # the hub closes every connection on SIGTERM
SLOW_S = 0.1  # acks slower than this are counted per second of the window (where stalls are)


# -- process facts (Linux /proc) ----------------------------------------------------------------


def status_kb(pid: int, field: str) -> int | None:
    """A ``/proc/<pid>/status`` figure in kB (VmRSS, VmHWM); None if the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def children_of(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except (OSError, ValueError):
        return []


def raise_nofile(wanted: int) -> int:
    """Raise this process's soft open-files limit towards ``wanted`` (up to the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        return target
    return soft


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def mb(kb: int | None) -> str:
    return "-" if kb is None else f"{kb / 1024:.1f}"


# -- the hub as a subprocess --------------------------------------------------------------------


class HubProcess:
    """``empq hub`` with an embedded redis-server in ``data_dir``; log in ``data_dir/hub.log``."""

    def __init__(self, data_dir: Path, workers: int, heartbeat_s: float, log_level: str) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"ws://127.0.0.1:{self.port}"
        self.log = data_dir / "hub.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("EMPQ_")}
        env.update(
            EMPQ_HEARTBEAT_INTERVAL_MS=str(int(heartbeat_s * 1000)),
            EMPQ_LOG_LEVEL=log_level,
        )
        script = Path(sys.executable).with_name("empq")
        command = (
            [str(script)]
            if script.is_file()
            else [sys.executable, "-c", "import sys; from empq.cli import main; sys.exit(main())"]
        )
        fds = workers + 1024
        self._out = open(self.log, "wb")  # closed in stop()
        self.proc = subprocess.Popen(
            [*command, "hub", "--ws-port", str(self.port), "--data-dir", str(data_dir / "redis")],
            stdin=subprocess.DEVNULL,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=data_dir,
            preexec_fn=lambda: raise_nofile(fds),  # only setrlimit between fork and exec
        )

    def wait_ready(self) -> None:
        deadline = time.monotonic() + HUB_START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"hub exited with {self.proc.returncode}: {self.text()[-2000:]}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 0.2):
                return  # listening (its log may be quiet: --hub-log-level)
            time.sleep(0.05)
        raise RuntimeError(f"hub not listening within {HUB_START_TIMEOUT:.0f} s: {self.text()[-2000:]}")

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def redis_rss_kb(self) -> int | None:
        pids = children_of(self.proc.pid)
        return status_kb(pids[0], "VmRSS") if pids else None

    def stop(self) -> int | None:
        """SIGTERM (the hub stops its redis-server), SIGKILL if it hangs; then no redis left."""
        code = None
        redis_pids = children_of(self.proc.pid)
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                code = self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        else:
            code = self.proc.returncode
        for pid in redis_pids:  # a killed hub leaves its redis-server (own session) behind
            with contextlib.suppress(OSError):
                if "redis-server" in Path(f"/proc/{pid}/cmdline").read_text(errors="replace"):
                    os.kill(pid, signal.SIGKILL)
        self._out.close()
        return code


# -- the workers (in client processes) ------------------------------------------------------------


class Fleet:
    """One client process's share of the workers: global indexes ``first`` .. ``first + count - 1``."""

    def __init__(self, url: str, first: int, count: int, total: int, args: dict[str, Any]) -> None:
        self.url, self.first, self.count, self.total = url, first, count, total
        self.heartbeat_s: float = args["heartbeat"]
        self.tag: str = args["tag"]
        self.concurrency: int = args["connect_concurrency"]
        self.conns: dict[int, ClientConnection] = {}
        self.readers: list[asyncio.Task[None]] = []
        self.sent: dict[str, float] = {}  # heartbeat id -> send time
        self.latencies: list[float] = []
        self.errors: Counter[str] = Counter()
        self.connect_failures: list[str] = []
        self.closed_during_run = 0
        self.frames: Counter[str] = Counter()
        self.running = False
        self.t0 = 0.0  # start of the heartbeat window (perf_counter)
        self.slow: Counter[int] = Counter()  # second of the window -> acks slower than SLOW_S

    def worker_id(self, i: int) -> str:
        return f"idle-{self.tag}-{i}"

    async def open_all(self) -> float:
        sem = asyncio.Semaphore(self.concurrency)
        t0 = time.perf_counter()
        await asyncio.gather(*(self._open(i, sem) for i in range(self.first, self.first + self.count)))
        return time.perf_counter() - t0

    async def _open(self, i: int, sem: asyncio.Semaphore) -> None:
        async with sem:
            try:
                ws = await connect(
                    self.url,
                    compression=None,
                    ping_interval=None,  # the hub pings; answering is automatic
                    open_timeout=60,
                    close_timeout=1,
                    max_queue=4,
                    max_size=1 << 20,
                )
                established = orjson.loads(await asyncio.wait_for(ws.recv(decode=False), 30))
                assert established["type"] == "connection_established", established
                message = protocol.make(
                    RegisterWorker,
                    id=f"reg-{i}",
                    worker_id=self.worker_id(i),
                    capabilities={"services": ["idle"], "max_concurrent_jobs": 1},
                    subscribe_to_jobs=False,
                    status="idle",
                    version="bench",
                )
                await ws.send(protocol.encode(message), text=True)
                reply = orjson.loads(await asyncio.wait_for(ws.recv(decode=False), 30))
                if reply.get("type") != "worker_registered":
                    raise RuntimeError(f"register_worker answered {reply}")
            except Exception as exc:  # counted; the run goes on with the others
                self.connect_failures.append(repr(exc)[:200])
                return
        self.conns[i] = ws
        self.readers.append(asyncio.create_task(self._read(ws)))

    async def _read(self, ws: ClientConnection) -> None:
        perf = time.perf_counter
        try:
            async for raw in ws:
                now = perf()
                msg = orjson.loads(raw)
                kind = msg.get("type")
                self.frames[kind] += 1
                if kind == "worker_heartbeat_ack":
                    sent = self.sent.pop(msg.get("request_id"), None)
                    if sent is not None:
                        self.latencies.append(now - sent)
                        if now - sent > SLOW_S:
                            self.slow[int(sent - self.t0)] += 1
                elif kind == "error":
                    self.errors[str(msg.get("error_code"))] += 1
        except ConnectionClosed:
            pass
        if self.running:
            self.closed_during_run += 1

    async def heartbeat(self, seconds: float) -> int:
        """Every worker heartbeats every period, phases spread evenly; returns heartbeats sent."""
        period, total = self.heartbeat_s, self.total
        t0 = self.t0 = time.perf_counter()
        schedule: list[tuple[float, int]] = []
        for i in self.conns:
            at = (i + 0.5) / total * period
            while at < seconds:
                schedule.append((at, i))
                at += period
        schedule.sort()
        sent = 0
        perf = time.perf_counter
        for at, i in schedule:
            delay = t0 + at - perf()
            if delay > 0.0005:
                await asyncio.sleep(delay)
            rid = f"hb-{i}-{sent}"
            frame = protocol.encode(
                protocol.make(WorkerHeartbeat, id=rid, worker_id=self.worker_id(i), status="idle")
            )
            self.sent[rid] = perf()
            try:
                await self.conns[i].send(frame, text=True)
                sent += 1
            except ConnectionClosed:
                self.sent.pop(rid, None)
                self.errors["send_on_closed"] += 1
        return sent

    async def drain(self, seconds: float) -> None:
        deadline = time.perf_counter() + seconds
        while self.sent and time.perf_counter() < deadline:
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        self.running = False
        for task in self.readers:
            task.cancel()
        await asyncio.gather(*self.readers, return_exceptions=True)
        for ws in self.conns.values():
            ws.transport.abort()


class GcPauses:
    """This process's garbage-collection pauses over ``SLOW_S`` (they delay reading acks too)."""

    def __init__(self) -> None:
        self.started = 0.0
        self.slow: list[float] = []
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self.started = time.perf_counter()
        elif time.perf_counter() - self.started > SLOW_S:
            self.slow.append(time.perf_counter() - self.started)


GC_PAUSES: GcPauses | None = None


def client_main(url: str, first: int, count: int, total: int, args: dict[str, Any], pipe: Any, go: Any):
    """A client process: connect its share, report, wait for ``go``, heartbeat, report results.

    Its garbage collector is tuned like the hub's (``empq.hub.server.tune_gc``): with thousands of
    connections a full collection at the default thresholds would stall this process for most of
    a second every few seconds, and that would be measured as hub latency."""
    global GC_PAUSES
    raise_nofile(count + 1024)
    GC_PAUSES = GcPauses()
    if not args["client_default_gc"]:
        gc.collect()
        gc.freeze()
        gc.set_threshold(50_000, 20, 100)
    try:
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:
        runner = asyncio.Runner()
    with runner:
        runner.run(_client(url, first, count, total, args, pipe, go))


async def _client(url: str, first: int, count: int, total: int, args: dict[str, Any], pipe: Any, go: Any):
    fleet = Fleet(url, first, count, total, args)
    cpu0 = time.process_time()
    try:
        connect_s = await fleet.open_all()
        pipe.send(
            {
                "phase": "connected",
                "connected": len(fleet.conns),
                "failures": fleet.connect_failures[:5],
                "failed": len(fleet.connect_failures),
                "connect_s": connect_s,
            }
        )
        # wait for the parent's go (all client processes connected), without blocking the loop
        while not go.is_set():
            await asyncio.sleep(0.05)
        fleet.running = True
        cpu1, t1 = time.process_time(), time.perf_counter()
        sent = await fleet.heartbeat(args["seconds"])
        window = time.perf_counter() - t1
        await fleet.drain(args["drain"])
        cpu2 = time.process_time()
        pipe.send(
            {
                "phase": "done",
                "sent": sent,
                "latencies": fleet.latencies,
                "missing": len(fleet.sent),
                "errors": dict(fleet.errors),
                "closed_during_run": fleet.closed_during_run,
                "frames": dict(fleet.frames),
                "slow_by_second": dict(fleet.slow),
                "window_s": window,
                "client_cpu_pct": round(100 * (cpu2 - cpu1) / max(window, 1e-9), 1),
                "connect_cpu_s": round(cpu1 - cpu0, 2),
                "client_rss_kb": status_kb(os.getpid(), "VmRSS"),
                "client_gc_pauses_s": [round(x, 3) for x in GC_PAUSES.slow] if GC_PAUSES else [],
            }
        )
    finally:
        await fleet.close()


# -- the run --------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, Any]:
    raise_nofile(args.workers + 1024)
    tmp = None
    hub: HubProcess | None = None
    procs: list[multiprocessing.process.BaseProcess] = []
    try:
        if args.url:
            url, hub_pid = args.url, args.hub_pid
        else:
            tmp = tempfile.TemporaryDirectory(prefix="empq-idle-")
            hub = HubProcess(Path(tmp.name), args.workers, args.heartbeat, args.hub_log_level)
            hub.wait_ready()
            url, hub_pid = hub.url, hub.proc.pid
        rss_idle = status_kb(hub_pid, "VmRSS") if hub_pid else None
        ctx = multiprocessing.get_context("spawn")
        go = ctx.Event()
        shared = {
            "heartbeat": args.heartbeat,
            "seconds": args.seconds,
            "drain": args.drain,
            "connect_concurrency": args.connect_concurrency,
            "tag": uuid.uuid4().hex[:6],
            "client_default_gc": args.client_default_gc,
        }
        pipes = []
        n = args.client_procs
        for k in range(n):
            first = k * args.workers // n
            count = (k + 1) * args.workers // n - first
            parent_end, child_end = ctx.Pipe()
            p = ctx.Process(
                target=client_main, args=(url, first, count, args.workers, shared, child_end, go), daemon=True
            )
            p.start()
            procs.append(p)
            pipes.append(parent_end)
        print(f"connecting {args.workers} workers to {url} from {n} client process(es)...", flush=True)
        connected = [_receive(p, args.connect_timeout, "connected") for p in pipes]
        rss_connected = status_kb(hub_pid, "VmRSS") if hub_pid else None
        print(
            f"connected {sum(c['connected'] for c in connected)} in "
            f"{max(c['connect_s'] for c in connected):.1f} s; hub RSS {mb(rss_connected)} MB; "
            f"heartbeating for {args.seconds:g} s...",
            flush=True,
        )
        hub_cpu0 = cpu_seconds_of(hub_pid)
        t0 = time.perf_counter()
        go.set()
        samples: list[int] = []
        deadline = time.monotonic() + args.seconds + args.drain + 60
        done: list[dict[str, Any] | None] = [None] * n
        while any(d is None for d in done):
            if time.monotonic() > deadline:
                raise RuntimeError("client processes did not report within the time bound")
            for k, pipe in enumerate(pipes):
                if done[k] is None and pipe.poll(0):
                    done[k] = _receive(pipe, 1, "done")
            if time.perf_counter() - t0 <= args.seconds and hub_pid:
                rss = status_kb(hub_pid, "VmRSS")
                if rss is not None:
                    samples.append(rss)
            time.sleep(1.0 if time.perf_counter() - t0 < args.seconds else 0.1)
        elapsed = time.perf_counter() - t0
        hub_cpu1 = cpu_seconds_of(hub_pid)
        results = [d for d in done if d is not None]
        return summarise(
            args,
            url,
            connected,
            results,
            rss_idle=rss_idle,
            rss_connected=rss_connected,
            samples=samples,
            rss_peak=status_kb(hub_pid, "VmHWM") if hub_pid else None,
            redis_rss=hub.redis_rss_kb() if hub else None,
            hub_cpu_pct=round(100 * (hub_cpu1 - hub_cpu0) / elapsed, 1)
            if hub_cpu0 is not None and hub_cpu1 is not None
            else None,
        )
    finally:
        for p in procs:
            p.join(10)
            if p.is_alive():
                p.kill()
                p.join(5)
        if hub is not None:
            code = hub.stop()
            if code not in (0, None):
                print(f"hub exited with {code}; log tail:\n{hub.text()[-2000:]}", file=sys.stderr)
        if tmp is not None:
            tmp.cleanup()


def _receive(pipe: Any, timeout: float, phase: str) -> dict[str, Any]:
    if not pipe.poll(timeout):
        raise RuntimeError(f"a client process did not report '{phase}' within {timeout:.0f} s")
    message = pipe.recv()
    if message.get("phase") != phase:
        raise RuntimeError(f"expected {phase}, got {message}")
    return dict(message)


def summarise(
    args: argparse.Namespace,
    url: str,
    connected: list[dict[str, Any]],
    results: list[dict[str, Any]],
    **hub: Any,
) -> dict[str, Any]:
    latencies = [x for r in results for x in r["latencies"]]
    sent = sum(r["sent"] for r in results)
    within = sum(1 for x in latencies if x <= 1.0)
    samples = hub.pop("samples")
    n_connected = sum(c["connected"] for c in connected)
    per_conn = None
    if hub["rss_connected"] is not None and hub["rss_idle"] is not None and n_connected:
        per_conn = round((hub["rss_connected"] - hub["rss_idle"]) / n_connected, 1)
    errors: Counter[str] = Counter()
    for r in results:
        errors.update(r["errors"])
    return {
        "url": url,
        "config": {
            "workers": args.workers,
            "heartbeat_s": args.heartbeat,
            "seconds": args.seconds,
            "client_procs": args.client_procs,
            "connect_concurrency": args.connect_concurrency,
            "client_default_gc": args.client_default_gc,
        },
        "connected": n_connected,
        "connect_failed": sum(c["failed"] for c in connected),
        "connect_failures": [f for c in connected for f in c["failures"]][:5],
        "connect_s": round(max(c["connect_s"] for c in connected), 2),
        "hub_rss_idle_kb": hub["rss_idle"],
        "hub_rss_connected_kb": hub["rss_connected"],
        "hub_rss_heartbeating_max_kb": max(samples) if samples else None,
        "hub_rss_heartbeating_last_kb": samples[-1] if samples else None,
        "hub_rss_peak_kb": hub["rss_peak"],
        "hub_kb_per_connection": per_conn,
        "redis_rss_kb": hub["redis_rss"],
        "heartbeats_sent": sent,
        "heartbeats_acked": len(latencies),
        "heartbeats_missing": sum(r["missing"] for r in results),
        "acked_within_1s": within,
        "acked_within_1s_fraction": round(within / sent, 6) if sent else None,
        "ack_latency": latency_stats(latencies),
        "window_s": round(max(r["window_s"] for r in results), 2) if results else None,
        "hub_cpu_pct": hub["hub_cpu_pct"],
        "client_cpu_pct": [r["client_cpu_pct"] for r in results],
        "client_rss_kb": [r["client_rss_kb"] for r in results],
        "client_gc_pauses_over_100ms_s": [x for r in results for x in r["client_gc_pauses_s"]],
        "closed_during_run": sum(r["closed_during_run"] for r in results),
        "errors": dict(errors),
        "frames_received": dict(sum((Counter(r["frames"]) for r in results), Counter())),
        # acks slower than SLOW_S, by the second of the window their heartbeat was sent in
        "slow_acks_by_second": dict(
            sorted(sum((Counter(r["slow_by_second"]) for r in results), Counter()).items())
        ),
    }


def table(r: dict[str, Any]) -> str:
    lat = r["ack_latency"]
    frac = r["acked_within_1s_fraction"]
    per_conn = r["hub_kb_per_connection"]
    heartbeats = f"{r['heartbeats_sent']} / {r['heartbeats_acked']} / {r['heartbeats_missing']}"
    latency = f"{lat['p50_ms']:.2f} / {lat['p99_ms']:.2f} / {lat['max_ms']:.2f}"
    rows = [
        ("workers connected / asked", f"{r['connected']} / {r['config']['workers']}"),
        ("connect + register time s", f"{r['connect_s']:.1f}"),
        ("hub RSS idle MB", mb(r["hub_rss_idle_kb"])),
        ("hub RSS all connected MB", mb(r["hub_rss_connected_kb"])),
        ("hub RSS heartbeating max MB", mb(r["hub_rss_heartbeating_max_kb"])),
        ("hub RSS peak (VmHWM) MB", mb(r["hub_rss_peak_kb"])),
        ("hub kB per connection", "-" if per_conn is None else str(per_conn)),
        ("redis-server RSS MB", mb(r["redis_rss_kb"])),
        ("heartbeats sent / acked / missing", heartbeats),
        ("ack latency p50 / p99 / max ms", latency),
        ("acked within 1 s", "-" if frac is None else f"{100 * frac:.3f} %"),
        ("hub CPU % (heartbeat window)", str(r["hub_cpu_pct"])),
        ("client CPU % per process", ", ".join(str(c) for c in r["client_cpu_pct"])),
        ("client RSS MB per process", ", ".join(mb(c) for c in r["client_rss_kb"])),
        ("client GC pauses > 100 ms", str(len(r["client_gc_pauses_over_100ms_s"]))),
        ("connections closed during run", str(r["closed_during_run"])),
        ("errors", str(r["errors"] or "none")),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=10_000, help="idle worker connections")
    parser.add_argument("--heartbeat", type=float, default=20.0, help="seconds between a worker's heartbeats")
    parser.add_argument("--seconds", type=float, default=60.0, help="heartbeat window measured")
    parser.add_argument("--drain", type=float, default=5.0, help="wait this long for the last acks")
    parser.add_argument("--client-procs", type=int, default=1, help="client processes sharing the workers")
    parser.add_argument(
        "--connect-concurrency", type=int, default=100, help="handshakes at a time per process"
    )
    parser.add_argument("--connect-timeout", type=float, default=600.0, help="bound on the connect phase")
    parser.add_argument(
        "--client-default-gc", action="store_true", help="leave client processes' GC thresholds as they are"
    )
    parser.add_argument("--url", help="an already running hub (default: start one with an embedded Redis)")
    parser.add_argument("--hub-pid", type=int, help="with --url: the hub's pid, for its RSS and CPU")
    parser.add_argument("--hub-log-level", default="warning", help="log level of the hub started here")
    parser.add_argument("--json", dest="json_out", help="write the figures here")
    args = parser.parse_args(argv)
    if args.workers < 1 or args.client_procs < 1 or args.heartbeat <= 0 or args.seconds <= 0:
        parser.error("--workers, --client-procs must be >= 1; --heartbeat, --seconds > 0")
    if args.client_procs > args.workers:
        parser.error("--client-procs must not exceed --workers")
    return args


def main(argv: list[str] | None = None) -> int:
    """Exit status 1 when a target was missed (RSS > 600 MB, a heartbeat not acked within 1 s)."""
    args = parse_args(argv)
    result = run(args)
    print(table(result))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(result, indent=2))
    rss = result["hub_rss_heartbeating_max_kb"] or result["hub_rss_connected_kb"]
    ok = (
        result["connected"] == args.workers
        and result["acked_within_1s"] == result["heartbeats_sent"]
        and (rss is None or rss <= 600 * 1024)
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
