"""bench.aiload's simulated workers (in driver processes), its settings and the wire helpers the
driver's peers share: see bench/aiload.py."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import orjson
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

TEXT = WSMsgType.TEXT
SERVICE = "sim"
IDLE_CLAIM_S = 5.0  # an idle worker claims this often even without job_available (the SDK's timer)


@dataclass
class AiConfig:
    workers: int = 1000
    monitors: int = 10
    clients: int = 10
    steps: int = 20
    min_s: float = 1.0
    max_s: float = 3.0
    rates: list[float] = field(default_factory=lambda: [50.0, 100.0, 200.0, 300.0])
    seconds: float = 15.0  # submitting, per rate
    baseline_rate: float = 200.0  # also run with 0 progress updates here (0 = no baseline)
    driver_procs: int = 2
    p99_ms: float = 50.0
    seed: int = 19
    idle_claim_s: float = IDLE_CLAIM_S  # an idle worker's claim timer (0: only on job_available)
    heartbeats: bool = True  # workers heartbeat at the hub's interval

    def check(self) -> None:
        if min(self.workers, self.clients, self.driver_procs) < 1 or self.monitors < 0:
            raise ValueError("--workers, --clients and --driver-procs must be >= 1, --monitors >= 0")
        if not 0 < self.min_s <= self.max_s or self.steps < 0 or self.seconds <= 0:
            raise ValueError("need 0 < --min-s <= --max-s, --steps >= 0, --seconds > 0")
        if not self.rates or min(self.rates) <= 0:
            raise ValueError("--rates must be positive")


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def frame(kind: str, **fields: Any) -> bytes:
    return orjson.dumps({"type": kind, "timestamp": now_ms(), **fields})


async def connect(url: str, factory: Any, tries: int = 5) -> tuple[WSTransport, Any]:
    for attempt in range(tries):
        try:
            return await ws_connect(factory, url, websocket_handshake_timeout=30, enable_auto_pong=True)
        except OSError:
            if attempt == tries - 1:
                raise
            await asyncio.sleep(0.2 * (attempt + 1))
    raise RuntimeError("unreachable")


# -- workers (in driver processes) ----------------------------------------------------------------


class WorkerConn(WSListener):
    """One worker: claims on job_available (or every IDLE_CLAIM_S), runs each job it is given."""

    def __init__(self, worker_id: str, stats: Counter[str], cfg: AiConfig) -> None:
        super().__init__()
        self.worker_id = worker_id
        self.cfg = cfg
        self.stats = stats
        self.t: WSTransport | None = None
        self.registered = asyncio.get_running_loop().create_future()
        self.claiming = False
        self.busy = 0
        self.claims = 0
        self.heartbeat_s = 20.0
        self.last_claim = time.monotonic()

    def send(self, kind: str, **fields: Any) -> None:
        if self.t is not None and not self.t.is_disconnected:
            self.t.send(TEXT, frame(kind, **fields))

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.t = transport

    def claim(self) -> None:
        self.claiming, self.last_claim = True, time.monotonic()
        self.claims += 1
        self.send("claim_job", id=f"{self.worker_id}-c{self.claims}", worker_id=self.worker_id, max_jobs=1)
        self.stats["claims"] += 1

    def on_ws_frame(self, transport: WSTransport, f: WSFrame) -> None:
        if f.msg_type is not TEXT:
            return
        msg = orjson.loads(f.get_payload_as_bytes())
        kind = msg["type"]
        if kind == "job_available":
            if not self.claiming and not self.busy:
                self.claim()
        elif kind == "job_assigned":
            self.claiming = False
            self.busy += 1
            asyncio.get_running_loop().create_task(self.run_job(msg))
        elif kind == "ack":
            if msg.get("status") == "no_job_available":
                self.claiming = False
                self.stats["no_job"] += 1
        elif kind == "job_completed_ack":
            self.busy -= 1
            self.stats["completed"] += 1
            if not self.busy:
                self.claim()
        elif kind == "worker_registered":
            self.heartbeat_s = max(1.0, float(msg.get("heartbeat_interval", 20_000)) / 1000)
            if not self.registered.done():
                self.registered.set_result(msg)
        elif kind == "error":
            self.stats[f"error:{msg.get('error_code')}"] += 1
            if str(msg.get("request_id", "")).startswith(f"{self.worker_id}-c"):
                self.claiming = False

    async def run_job(self, job: dict[str, Any]) -> None:
        job_id, wid = job["job_id"], self.worker_id
        payload = job.get("payload") or {}
        seconds = float(payload.get("ms", 1000)) / 1000
        steps = int(payload.get("steps", 0))
        try:
            self.send("job_accepted_by_worker", job_id=job_id, worker_id=wid)
            pause = seconds / (steps + 1)
            for k in range(1, steps + 1):
                await asyncio.sleep(pause)
                pct = round(100 * k / (steps + 1), 2)
                self.send(
                    "update_job_progress",
                    job_id=job_id,
                    worker_id=wid,
                    progress=pct,
                    message=f"@{time.monotonic_ns()}",
                )
                self.stats["progress_sent"] += 1
            await asyncio.sleep(pause)
            self.send(
                "complete_job",
                id=f"cmp-{job_id}",
                job_id=job_id,
                worker_id=wid,
                result={"success": True},
                processing_time=seconds,
            )
        except Exception:  # noqa: BLE001 - a dropped connection: the bench reports it
            self.stats["job_errors"] += 1

    async def idle_loop(self, stop: asyncio.Event) -> None:
        """Heartbeats at the hub's interval; a claim every IDLE_CLAIM_S while idle."""
        rng = random.Random(self.worker_id)
        next_beat = time.monotonic() + rng.uniform(0, self.heartbeat_s)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), rng.uniform(0.5, 1.5))
            now = time.monotonic()
            if now >= next_beat and self.cfg.heartbeats:
                next_beat = now + self.heartbeat_s
                status = "busy" if self.busy else "idle"
                self.send("worker_heartbeat", worker_id=self.worker_id, status=status)
            idle_claim = self.cfg.idle_claim_s
            if idle_claim and not self.busy and not self.claiming and now - self.last_claim >= idle_claim:
                self.claim()


async def worker_process_main(url: str, ids: list[str], cfg: AiConfig, conn: Any) -> None:
    stats: Counter[str] = Counter()
    stop = asyncio.Event()
    workers: list[WorkerConn] = []
    sem = asyncio.Semaphore(50)

    async def one(worker_id: str) -> None:
        async with sem:
            transport, listener = await connect(url, lambda: WorkerConn(worker_id, stats, cfg))
            listener.send(
                "register_worker",
                id=f"{worker_id}-reg",
                worker_id=worker_id,
                capabilities={"services": [SERVICE], "components": [], "max_concurrent_jobs": 1},
                subscribe_to_jobs=True,
                status="idle",
                version="bench-aiload",
            )
            await asyncio.wait_for(listener.registered, 60)
            workers.append(listener)

    try:
        await asyncio.gather(*(one(w) for w in ids))
    except Exception as exc:  # noqa: BLE001 - reported to the parent
        conn.send({"error": repr(exc)})
        return
    loops = [asyncio.create_task(w.idle_loop(stop)) for w in workers]
    for w in workers:
        w.claim()
    conn.send({"ready": len(workers)})
    while not await asyncio.to_thread(conn.poll, 0.5):
        pass
    conn.recv()  # stop
    stop.set()
    await asyncio.gather(*loops, return_exceptions=True)
    for w in workers:
        if w.t is not None:
            w.t.send_close()
            w.t.disconnect()
    conn.send({"stats": dict(stats), "cpu_s": time.process_time()})


def worker_process(url: str, ids: list[str], cfg: AiConfig, conn: Any) -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(worker_process_main(url, ids, cfg, conn))
