"""Chaos driver: a job stream through two ``empq hub`` processes on one redis-server while faults
are injected at random (seeded), then invariants checked from the client's records, the workers'
logs and Redis (read-only).

    python -m tests.chaos.driver [--jobs 2000] [--faults 200] [--seed 1] [--workers 6] [--out DIR]
        [--transport websockets|picows]

Processes (all on 127.0.0.1, all killed in ``finally``): a redis-server (``EmbeddedRedis`` on a TCP
port, AOF, so it can be restarted), hubs A and B (``empq hub --redis-url ... --http-port -1``, short
timers through ``EMPQ_*``), ``--workers`` workers (``tests/chaos/worker.py``: ``proc_worker`` plus
an ``assigned`` log line and SIGUSR1 = drop the connection), each connecting to either hub and
failing over to the other. The job client runs in this process: it submits N jobs (payload
``{"n": n}``, unique), records every ``job_accepted`` / ``job_update`` / ``job_completed``, fails
over to the other hub when its connection drops and then ``subscribe_job``s every accepted job it
has no final message for (spec D14: a final job's message is sent at once), so no final message is
missed.

Faults (one at a time, ``gap`` seconds apart on average):

- ``worker_kill9``: SIGKILL a worker, start a replacement (new worker id);
- ``worker_drop``: SIGUSR1 a worker: its socket is aborted, it reconnects (either hub);
- ``hub_kill9``: SIGKILL hub A or B, restart it on the same port after 0.2-1 s;
- ``redis_restart``: SIGTERM redis-server (it writes its AOF), start it again after 0.2-1 s.

Every ``submit_job`` carries ``idempotency_key`` ``chaos-<n>`` (spec D18). One answered
SERVICE_UNAVAILABLE, or in flight when the connection dropped, is "in doubt" (it may have been
applied) and is sent again with the same key until it is accepted (at most ``RESUBMITS`` times);
the invariants then cover it like any other: at most one job per submission ``n``, and a repeat
must name the job the first acceptance named. What is still in doubt at the end is left out of the
client-side checks (Redis-side invariants still cover whatever Redis holds).

Invariants (``Report.violations``; empty = pass):

1. every accepted job ends exactly once in a final state: its Redis status is completed or failed
   and the client got exactly one final message (job_completed, or job_update failed) for it —
   no job lost;
2. no job completed twice: at most one job_completed per job at the client, at most one
   completion ack per job over all workers' logs, at most one job hash per submission ``n``;
3. no worker holds a job it was not assigned: every job a worker completed, or got back through
   ``resumed_jobs``, was assigned to that worker earlier; a completed job's ``worker_id`` was
   assigned that job; no ``wjobs`` set holds anything at the end;
4. retry counts respected: ``retry_count <= max_retries`` for every job;
5. nothing stuck: after the last fault every job in Redis is final within the settle bound
   (claim timeout + heartbeat timeout + grace + margin without progress), and no claim, run or
   retry timer is left.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import dataclasses
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis
from empq.conformance.peer import Peer, PeerError
from empq.hub.embedded_redis import EmbeddedRedis

HERE = Path(__file__).resolve().parent
PREFIX = "{empq}"
HUB_ENV = {
    "EMPQ_HEARTBEAT_TIMEOUT_MS": "1500",
    "EMPQ_RECONNECT_GRACE_MS": "500",
    "EMPQ_SWEEP_INTERVAL_MS": "50",
    "EMPQ_HEARTBEAT_INTERVAL_MS": "300",
    "EMPQ_CLAIM_TIMEOUT_MS": "2000",
    "EMPQ_RETRY_BASE_SECONDS": "0.05",
    "EMPQ_RETRY_MAX_SECONDS": "0.2",
    "EMPQ_LOG_LEVEL": "warning",
}
# no progress for this long after the last fault = stuck (claim timeout + heartbeat timeout +
# reconnect grace + sweeps + a retry delay + margin)
STALL_S = (2000 + 1500 + 500 + 200) / 1000 + 3.0
START_TIMEOUT = 20.0
FINAL_STATES = {"completed", "failed", "timeout", "cancelled"}
RESUBMITS = 100  # times one in-doubt submission is sent again (with its idempotency key)
FAULT_KINDS = ("worker_kill9", "worker_drop", "hub_kill9", "redis_restart")
FAULT_WEIGHTS = (0.35, 0.35, 0.15, 0.15)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def empq_command() -> list[str]:
    script = Path(sys.executable).with_name("empq")
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-c", "import sys; from empq.cli import main; sys.exit(main())"]


async def until(predicate: Any, timeout: float, what: str, step: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise RuntimeError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(step)


# --- processes ----------------------------------------------------------------------------------


class Hub:
    def __init__(self, name: str, redis_url: str, run_dir: Path, transport: str = "websockets") -> None:
        self.name = name
        self.transport = transport  # the hub's WebSocket I/O layer (--transport)
        self.redis_url = redis_url
        self.port = free_port()
        self.url = f"ws://127.0.0.1:{self.port}"
        self.log = run_dir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    async def start(self) -> None:
        self.starts += 1
        with open(self.log, "ab") as out:
            out.write(f"--- start {self.starts} at {time.time():.3f}\n".encode())
            out.flush()
            env = {k: v for k, v in os.environ.items() if not k.startswith("EMPQ_")}
            self.proc = subprocess.Popen(
                [*empq_command(), "hub", "--redis-url", self.redis_url]
                + ["--ws-port", str(self.port), "--http-port", "-1", "--host", "127.0.0.1"]
                + ["--transport", self.transport],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**env, **HUB_ENV},
                cwd=self.log.parent,
            )
        await self.ready()

    async def ready(self) -> None:
        """Listening: a TCP connect succeeds (the hub binds once Redis answered)."""
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                tail = self.log.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{tail}")
            try:
                _, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", self.port), 1)
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
                return
            except (OSError, TimeoutError):
                await asyncio.sleep(0.05)
        raise RuntimeError(f"{self.name} not listening within {START_TIMEOUT} s")

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def cleanup(self) -> None:
        self.kill9()


class Worker:
    def __init__(self, worker_id: str, run_dir: Path) -> None:
        self.worker_id = worker_id
        self.log = run_dir / f"worker-{worker_id}.jsonl"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, urls: list[str], job_ms: float, max_seconds: float) -> None:
        args = [sys.executable, str(HERE / "worker.py"), "--worker-id", self.worker_id]
        args += ["--job-ms", str(job_ms), "--max-seconds", str(max_seconds)]
        for url in urls:
            args += ["--url", url]
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=self.log.parent
            )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def registered(self) -> bool:
        return self.log.is_file() and b'"registered"' in self.log.read_bytes()

    def signal(self, sig: int) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(sig)

    def cleanup(self) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.kill()
            self.proc.wait(5)

    def events(self) -> list[dict[str, Any]]:
        out = []
        if self.log.is_file():
            for line in self.log.read_text(errors="replace").splitlines():
                with contextlib.suppress(ValueError):
                    event = json.loads(line)
                    if isinstance(event, dict) and "event" in event:
                        out.append(event)
        return out


# --- the job client ------------------------------------------------------------------------------


class Client:
    """One job client (a fixed client_id) that fails over between the hubs."""

    def __init__(self, urls: list[str], client_id: str) -> None:
        self.urls = urls
        self.client_id = client_id
        self.peer: Peer | None = None
        self.connected = asyncio.Event()
        self.stop = False
        self.rid = 0
        self.pending_submits: dict[str, int] = {}  # request id -> n, on the live connection
        self.pending_subs: dict[str, str] = {}  # request id -> job id
        self.job_of: dict[int, str] = {}  # n -> job id (job_accepted)
        self.n_of: dict[str, int] = {}
        self.in_doubt: dict[int, str] = {}  # n -> why (resubmitted with its key until accepted)
        self.resubmits: collections.Counter[int] = collections.Counter()
        self.conflicting_accepts: list[str] = []  # a repeat that named another job (D18 broken)
        self.refused: dict[int, str] = {}  # n -> error code (other than SERVICE_UNAVAILABLE)
        self.completed: collections.Counter[str] = collections.Counter()  # job_completed frames
        # where each final frame came from: "<hub url> session <n> at <s>" (for a duplicate's report)
        self.final_from: collections.defaultdict[str, list[str]] = collections.defaultdict(list)
        self.session_url = ""
        self.started = time.monotonic()
        self.failed: collections.Counter[str] = collections.Counter()  # job_update failed/timeout
        self.updates: collections.Counter[str] = collections.Counter()
        self.errors: collections.Counter[str] = collections.Counter()
        self.reconnects = 0
        self.resubscribed = 0
        self.schema_violations: list[str] = []
        self.unknown_finals: set[str] = set()
        self.last_final = time.monotonic()

    def next_id(self, kind: str) -> str:
        self.rid += 1
        return f"{kind}-{self.rid}"

    def final(self, job_id: str) -> bool:
        return bool(self.completed[job_id] or self.failed[job_id])

    async def run(self) -> None:
        """Connect, register, (re)subscribe, read; on any drop fail over. Ends when ``stop``."""
        attempt = 0
        while not self.stop:
            url = self.urls[attempt % len(self.urls)]
            attempt += 1
            try:
                peer = await Peer.connect(url, "chaos-client", timeout=3.0)
            except (PeerError, OSError, TimeoutError) as exc:
                del exc
                await asyncio.sleep(0.1)
                continue
            self.session_url = url
            try:
                await self.session(peer)
            except (PeerError, OSError, TimeoutError, AssertionError):
                pass
            finally:
                self.connected.clear()
                self.peer = None
                for n in self.pending_submits.values():
                    self.in_doubt[n] = "connection dropped before the reply"
                    self.resubmit_later(n)
                self.pending_submits.clear()
                self.pending_subs.clear()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(peer.close(), 1)
            if not self.stop:
                self.reconnects += 1
                await asyncio.sleep(0.05)

    async def session(self, peer: Peer) -> None:
        await peer.expect("connection_established", timeout=3)
        reply = await peer.request(
            "register_client", "client_registered", client_type="job_client", client_id=self.client_id
        )
        if reply["type"] != "client_registered":
            raise AssertionError(f"register_client: {reply}")
        self.peer = peer
        self.connected.set()
        await self.resubscribe()
        while not self.stop:
            try:
                frame = await peer.recv(timeout=0.5)
            except PeerError as exc:
                if "nothing received" in str(exc):
                    continue
                if "schema" in str(exc).lower() or "violat" in str(exc).lower():
                    self.schema_violations.append(str(exc)[:300])
                raise
            self.on(frame)

    async def resubscribe(self, job_ids: list[str] | None = None) -> None:
        """subscribe_job every accepted job with no final message yet (or the given ones)."""
        if self.peer is None:
            return
        for job_id in job_ids if job_ids is not None else list(self.n_of):
            if self.final(job_id) or job_id in self.pending_subs.values():
                continue
            rid = self.next_id("sub")
            self.pending_subs[rid] = job_id
            self.resubscribed += 1
            await self.peer.send("subscribe_job", id=rid, job_id=job_id)

    def on(self, frame: dict[str, Any]) -> None:
        kind, rid = frame["type"], frame.get("request_id") or ""
        if rid in self.pending_submits:
            n = self.pending_submits.pop(rid)
            if kind == "job_accepted":
                known = self.job_of.get(n)
                if known is not None and known != frame["job_id"]:
                    self.conflicting_accepts.append(f"submission {n}: {known} then {frame['job_id']}")
                self.job_of[n] = frame["job_id"]
                self.n_of[frame["job_id"]] = n
                self.in_doubt.pop(n, None)
                if n in self.resubmits:  # its events went to the connection that first sent it
                    asyncio.ensure_future(self.resubscribe([frame["job_id"]]))
            elif kind == "error" and frame.get("error_code") == "SERVICE_UNAVAILABLE":
                self.in_doubt[n] = "SERVICE_UNAVAILABLE"  # maybe applied: sent again with its key
                self.errors["submit:SERVICE_UNAVAILABLE"] += 1
                self.resubmit_later(n)
            else:
                self.refused[n] = frame.get("error_code") or kind
            return
        if rid in self.pending_subs:
            job_id = self.pending_subs.pop(rid)
            if kind == "error":
                self.errors[f"subscribe:{frame.get('error_code')}"] += 1
                if frame.get("error_code") == "SERVICE_UNAVAILABLE":
                    asyncio.get_running_loop().call_later(
                        0.2, lambda: asyncio.ensure_future(self.resubscribe([job_id]))
                    )
            return
        if kind == "job_completed" or (kind == "job_update" and frame.get("status") in FINAL_STATES):
            self.final_from[frame["job_id"]].append(
                f"{kind} from {self.session_url} session {self.reconnects} at "
                f"{time.monotonic() - self.started:.2f} s"
            )
        if kind == "job_completed":
            self.completed[frame["job_id"]] += 1
            self.last_final = time.monotonic()
            if frame["job_id"] not in self.n_of:
                self.unknown_finals.add(frame["job_id"])
        elif kind == "job_update":
            self.updates[frame["job_id"]] += 1
            if frame.get("status") in FINAL_STATES:
                self.failed[frame["job_id"]] += 1
                self.last_final = time.monotonic()
        elif kind == "error":
            self.errors[str(frame.get("error_code"))] += 1

    def resubmit_later(self, n: int) -> None:
        if self.stop or self.resubmits[n] >= RESUBMITS:
            return
        self.resubmits[n] += 1
        asyncio.get_running_loop().call_later(0.2, lambda: asyncio.ensure_future(self.submit(n)))

    async def submit(self, n: int) -> None:
        await until(lambda: self.connected.is_set(), 30, "the client connected to a hub")
        assert self.peer is not None
        rid = self.next_id("submit")
        self.pending_submits[rid] = n
        try:
            await self.peer.send(
                "submit_job",
                id=rid,
                job_type="noop",
                payload={"n": n},
                requirements={"service_type": "sim"},
                idempotency_key=f"chaos-{n}",
            )
        except (PeerError, OSError, Exception):  # noqa: BLE001 - the socket went away mid-send
            if self.pending_submits.pop(rid, None) is not None:
                self.in_doubt[n] = "send failed"
                self.resubmit_later(n)


# --- the run -------------------------------------------------------------------------------------


@dataclasses.dataclass
class Config:
    jobs: int = 150
    faults: int = 25
    seed: int = 1
    workers: int = 6
    gap: float = 0.5  # mean seconds between faults
    job_ms: float = 20.0
    settle_max: float = 60.0  # absolute cap on the settle period
    out: Path | None = None
    transport: str = "websockets"  # the hubs' WebSocket I/O layer


@dataclasses.dataclass
class Report:
    config: dict[str, Any]
    faults: dict[str, int]
    jobs: int = 0
    accepted: int = 0
    in_doubt: int = 0
    resubmitted: int = 0
    refused: int = 0
    completed: int = 0
    failed: int = 0
    lost: int = 0
    duplicated: int = 0
    stuck: int = 0
    retries: int = 0
    late_finals: int = 0
    client_reconnects: int = 0
    worker_registrations: int = 0
    resumed: int = 0
    duration_s: float = 0.0
    settle_s: float = 0.0
    violations: list[str] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)

    def table(self) -> str:
        rows = [("faults injected", sum(self.faults.values()))]
        rows += [(f"  {k}", v) for k, v in self.faults.items()]
        rows += [
            ("jobs submitted", self.jobs),
            ("  accepted (job_accepted)", self.accepted),
            ("  resubmitted in doubt (same idempotency key)", self.resubmitted),
            ("  still in doubt at the end", self.in_doubt),
            ("  refused", self.refused),
            ("completed", self.completed),
            ("failed (retries exhausted)", self.failed),
            ("lost", self.lost),
            ("duplicated", self.duplicated),
            ("stuck", self.stuck),
            ("retries counted", self.retries),
            ("finals learnt only by final re-subscribe", self.late_finals),
            ("client fail-overs", self.client_reconnects),
            ("worker registrations", self.worker_registrations),
            ("jobs resumed on re-registration", self.resumed),
            ("run / settle seconds", f"{self.duration_s:.1f} / {self.settle_s:.1f}"),
            ("invariant violations", len(self.violations)),
        ]
        width = max(len(k) for k, _ in rows)
        lines = [f"chaos summary (seed {self.config.get('seed')})", "-" * (width + 12)]
        lines += [f"{k:<{width}}  {v:>8}" for k, v in rows]
        lines += [f"NOTE: {n}" for n in self.notes]
        lines += [f"VIOLATION: {v}" for v in self.violations[:30]]
        return "\n".join(lines)


class Run:
    def __init__(self, cfg: Config, run_dir: Path) -> None:
        self.cfg = cfg
        self.dir = run_dir
        self.rng = random.Random(cfg.seed)
        self.redis = EmbeddedRedis(run_dir / "redis", port=free_port())
        self.hubs: list[Hub] = []
        self.workers: list[Worker] = []
        self.live: list[Worker] = []
        self.worker_seq = 0
        self.faults: collections.Counter[str] = collections.Counter({k: 0 for k in FAULT_KINDS})
        self.max_seconds = 30 + cfg.faults * cfg.gap * 4 + cfg.settle_max * 2

    def urls(self, first: int) -> list[str]:
        return [self.hubs[first % 2].url, self.hubs[(first + 1) % 2].url]

    def new_worker(self) -> Worker:
        self.worker_seq += 1
        worker = Worker(f"cw{self.worker_seq}", self.dir)
        self.workers.append(worker)
        self.live.append(worker)
        worker.start(self.urls(self.worker_seq), self.cfg.job_ms, self.max_seconds)
        return worker

    async def inject(self, kind: str) -> None:
        rng = self.rng
        if kind == "worker_kill9":
            victim = self.live.pop(rng.randrange(len(self.live)))
            victim.cleanup()
            self.new_worker()
        elif kind == "worker_drop":
            rng.choice(self.live).signal(signal.SIGUSR1)
        elif kind == "hub_kill9":
            hub = rng.choice(self.hubs)
            hub.kill9()
            await asyncio.sleep(rng.uniform(0.2, 1.0))
            await hub.start()
        elif kind == "redis_restart":
            await asyncio.to_thread(self.redis.stop)  # SIGTERM: AOF written, then exit
            await asyncio.sleep(rng.uniform(0.2, 1.0))
            await asyncio.to_thread(self.redis.start)
        self.faults[kind] += 1

    async def chaos(self) -> None:
        for _ in range(self.cfg.faults):
            await asyncio.sleep(self.rng.uniform(0.5 * self.cfg.gap, 1.5 * self.cfg.gap))
            kind = self.rng.choices(FAULT_KINDS, FAULT_WEIGHTS)[0]
            await self.inject(kind)

    async def execute(self) -> Report:
        cfg = self.cfg
        started = time.monotonic()
        await asyncio.to_thread(self.redis.start)
        for name in ("hub-a", "hub-b"):
            hub = Hub(name, self.redis.url, self.dir, self.cfg.transport)
            self.hubs.append(hub)
            await hub.start()
        for _ in range(cfg.workers):
            self.new_worker()
        await until(lambda: all(w.registered() for w in self.live), START_TIMEOUT, "workers registered")
        await asyncio.sleep(1.1)  # both hubs' registries list every worker

        client = Client([h.url for h in self.hubs], f"chaos-client-{cfg.seed}")
        reader = asyncio.create_task(client.run())
        try:
            await until(client.connected.is_set, 10, "client connected")
            interval = cfg.faults * cfg.gap / max(1, cfg.jobs)

            async def stream() -> None:
                for n in range(cfg.jobs):
                    await client.submit(n)
                    await asyncio.sleep(interval)

            submitter = asyncio.create_task(stream())
            try:
                await self.chaos()
                await asyncio.wait_for(submitter, 60 + cfg.jobs * interval)
            finally:
                submitter.cancel()
            faults_done = time.monotonic()
            await self.settle(client)
            settle_s = time.monotonic() - faults_done
            # a final message lost with a connection or a cross-hub relay: ask once more (D14)
            missing = [j for j in client.n_of if not client.final(j)]
            if missing and client.connected.is_set():
                await client.resubscribe(missing)
                with contextlib.suppress(RuntimeError):
                    await until(lambda: all(client.final(j) for j in missing), 5, "late finals")
            await asyncio.sleep(0.5)  # a duplicate would arrive by now
            late = sum(1 for j in missing if client.final(j))
            return self.check(client, time.monotonic() - started, settle_s, late)
        finally:
            client.stop = True
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(reader, 3)

    def redis_jobs(self) -> dict[str, dict[str, str]]:
        r = redis.Redis.from_url(self.redis.url, socket_timeout=5, decode_responses=True)
        try:
            jobs = {}
            fields = ("status", "retry_count", "max_retries", "worker_id", "payload")
            for key in r.scan_iter(match=f"{PREFIX}:job:*", count=1000):
                values = r.hmget(key, fields)
                jobs[key.split(":job:", 1)[1]] = dict(zip(fields, values, strict=True))
            return jobs
        finally:
            r.close()

    def redis_leftovers(self) -> dict[str, int]:
        r = redis.Redis.from_url(self.redis.url, socket_timeout=5, decode_responses=True)
        try:
            out = {name: int(r.zcard(f"{PREFIX}:{name}")) for name in ("claims", "runs", "delayed", "queued")}
            held = 0
            for key in r.scan_iter(match=f"{PREFIX}:wjobs:*", count=1000):
                held += int(r.scard(key))
            out["wjobs"] = held
            return out
        finally:
            r.close()

    async def settle(self, client: Client) -> None:
        """Until every job in Redis is final and the client has every final message; give up when
        nothing progressed for ``STALL_S`` or after ``settle_max``."""
        deadline = time.monotonic() + self.cfg.settle_max
        last_change, last_state = time.monotonic(), None
        while time.monotonic() < deadline:
            try:
                jobs = await asyncio.to_thread(self.redis_jobs)
            except redis.RedisError:
                await asyncio.sleep(0.2)
                continue
            open_jobs = sum(1 for j in jobs.values() if j["status"] not in FINAL_STATES)
            unnotified = sum(1 for j in client.n_of if not client.final(j))
            pending = len(client.pending_submits) + len(client.in_doubt)
            if open_jobs == 0 and unnotified == 0 and pending == 0:
                return
            state = (open_jobs, unnotified, pending)
            if state != last_state:
                last_change, last_state = time.monotonic(), state
            elif time.monotonic() - last_change > STALL_S:
                return
            await asyncio.sleep(0.2)

    def check(self, client: Client, duration: float, settle_s: float, late: int) -> Report:
        cfg = self.cfg
        violations: list[str] = []
        notes: list[str] = []
        jobs = self.redis_jobs()
        leftovers = self.redis_leftovers()

        # the workers' logs
        acks: collections.Counter[str] = collections.Counter()
        assigned: dict[str, set[str]] = collections.defaultdict(set)  # worker -> jobs
        registrations = resumed = resumed_unlogged = 0
        for w in self.workers:
            for e in w.events():
                ev, job_id = e["event"], e.get("job_id")
                if ev == "assigned":
                    assigned[w.worker_id].add(job_id)
                elif ev == "registered":
                    registrations += 1
                    for j in e.get("resumed") or []:
                        # resumed_jobs is the hub assigning it too: a claim applied in Redis
                        # whose job_assigned was lost with the connection (hub killed) comes back so
                        resumed += 1
                        if j not in assigned[w.worker_id]:
                            resumed_unlogged += 1
                            assigned[w.worker_id].add(j)
                elif ev in ("completed", "already_completed"):
                    if job_id not in assigned[w.worker_id]:
                        violations.append(f"{w.worker_id} completed {job_id} it was never assigned")
                    if ev == "completed":
                        acks[job_id] += 1

        # Redis: one hash per submission, final, retries within bounds, holder was assigned
        by_n: dict[int, list[str]] = collections.defaultdict(list)
        completed = failed = stuck = retries = 0
        for job_id, j in jobs.items():
            with contextlib.suppress(ValueError, TypeError):
                by_n[int(json.loads(j["payload"] or "{}").get("n"))].append(job_id)
            status = j["status"]
            retry_count, max_retries = int(j["retry_count"] or 0), int(j["max_retries"] or 0)
            retries += retry_count
            if retry_count > max_retries:
                violations.append(f"{job_id}: retry_count {retry_count} > max_retries {max_retries}")
            if status == "completed":
                completed += 1
                holder = j["worker_id"] or ""
                if holder and job_id not in assigned.get(holder, set()):
                    violations.append(f"{job_id} completed by {holder}, which was never assigned it")
            elif status in FINAL_STATES:
                failed += 1
                if status != "failed":
                    violations.append(f"{job_id}: unexpected final status {status}")
            else:
                stuck += 1
                violations.append(f"{job_id} stuck in {status} after the settle period")
        for name, count in leftovers.items():
            if count:
                violations.append(f"Redis {PREFIX}:{name} still holds {count} entries at the end")
        duplicated = 0
        for n, ids in by_n.items():
            if len(ids) > 1:
                duplicated += 1
                violations.append(f"submission {n} stored {len(ids)} times: {ids}")
        for job_id, count in acks.items():
            if count > 1:
                duplicated += 1
                violations.append(f"{job_id}: {count} completion acks over the workers")
            if jobs.get(job_id, {}).get("status") != "completed":
                violations.append(f"{job_id} acked complete but Redis says {jobs.get(job_id)}")

        # the client's records, for every accepted job
        lost = 0
        for n, job_id in client.job_of.items():
            j = jobs.get(job_id)
            if j is None:
                lost += 1
                violations.append(f"accepted job {job_id} (n={n}) missing from Redis")
                continue
            finals = client.completed[job_id] + client.failed[job_id]
            if finals == 0:
                lost += 1
                violations.append(f"accepted job {job_id} (n={n}, Redis {j['status']}): no final message")
            elif finals > 1:
                duplicated += 1
                violations.append(
                    f"job {job_id}: {client.completed[job_id]} job_completed + "
                    f"{client.failed[job_id]} final job_update at the client: "
                    + "; ".join(client.final_from[job_id])
                )
            if client.completed[job_id] and j["status"] != "completed":
                violations.append(f"job {job_id}: job_completed at the client, Redis {j['status']}")
        for job_id in client.unknown_finals:
            if job_id not in jobs:
                violations.append(f"job_completed for {job_id}, which Redis does not know")
        if client.schema_violations:
            violations += [f"schema: {s}" for s in client.schema_violations[:5]]
        violations += [f"idempotency: {c}" for c in client.conflicting_accepts]

        doubt_in_redis = sum(1 for n in client.in_doubt if n in by_n)
        if client.in_doubt:
            reasons = collections.Counter(client.in_doubt.values())
            notes.append(
                f"{len(client.in_doubt)} submission(s) still in doubt ({dict(reasons)}) after resubmitting, "
                f"left out of the client-side checks; {doubt_in_redis} of them were applied "
                f"(checked Redis-side only)"
            )
        if resumed_unlogged:
            notes.append(
                f"{resumed_unlogged} job(s) reached a worker only through resumed_jobs (claim applied, "
                f"job_assigned lost with the connection): counted as assigned to that worker"
            )
        if client.refused:
            notes.append(f"refused submissions: {dict(collections.Counter(client.refused.values()))}")
        if late:
            notes.append(
                f"{late} final message(s) reached the client only through the final subscribe_job "
                f"(lost with a connection or a cross-hub relay during a fault)"
            )
        if client.errors:
            notes.append(f"client errors: {dict(client.errors)}")

        report = Report(
            config={k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(cfg).items()},
            faults=dict(self.faults),
            jobs=cfg.jobs,
            accepted=len(client.job_of),
            in_doubt=len(client.in_doubt),
            resubmitted=len(client.resubmits),
            refused=len(client.refused),
            completed=completed,
            failed=failed,
            lost=lost,
            duplicated=duplicated,
            stuck=stuck,
            retries=retries,
            late_finals=late,
            client_reconnects=client.reconnects,
            worker_registrations=registrations,
            resumed=resumed,
            duration_s=duration,
            settle_s=settle_s,
            violations=violations,
            notes=notes,
        )
        return report

    def cleanup(self) -> None:
        for w in self.workers:
            with contextlib.suppress(Exception):
                w.cleanup()
        for h in self.hubs:
            with contextlib.suppress(Exception):
                h.cleanup()
        with contextlib.suppress(Exception):
            self.redis.stop()
        if self.redis.process is not None and self.redis.process.poll() is None:
            self.redis.process.kill()


async def run(cfg: Config) -> Report:
    """One chaos run; every process it started is killed before it returns."""
    if cfg.out is None:
        run_dir = Path(tempfile.mkdtemp(prefix="empq-chaos-"))
    else:
        run_dir = Path(cfg.out)
        run_dir.mkdir(parents=True, exist_ok=True)
    chaos = Run(cfg, run_dir)
    try:
        report = await asyncio.wait_for(chaos.execute(), chaos.max_seconds)
    finally:
        await asyncio.to_thread(chaos.cleanup)
    (run_dir / "report.json").write_text(json.dumps(dataclasses.asdict(report), indent=2))
    report.notes.append(f"logs and report.json in {run_dir}")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--faults", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workers", type=int, default=6)
    parser.add_argument("--gap", type=float, default=0.5, help="mean seconds between faults")
    parser.add_argument("--settle-max", type=float, default=60.0)
    parser.add_argument("--out", type=Path, default=None, help="run directory (default: a temp dir)")
    parser.add_argument("--transport", default="websockets", help="the hubs' I/O layer: websockets | picows")
    args = parser.parse_args(argv)
    cfg = Config(
        jobs=args.jobs,
        faults=args.faults,
        seed=args.seed,
        workers=args.workers,
        gap=args.gap,
        settle_max=args.settle_max,
        out=args.out,
        transport=args.transport,
    )
    report = asyncio.run(run(cfg))
    print(report.table())
    return 1 if report.violations else 0


if __name__ == "__main__":
    sys.exit(main())
