"""Failures with real processes: ``empq hub`` subprocesses on a redis-server the test owns (so it
can restart it), workers as subprocesses (``tests/proc_worker.py``) killed with SIGKILL mid-job.

1. a worker killed mid-job: its job is requeued after the reconnect grace and completed by
   another worker, once (spec D16);
2. two hubs on one Redis, one of them killed mid-run: its workers fail over to the other hub and
   all 200 jobs complete, each exactly once;
3. redis-server restarted mid-run (down longer than the heartbeat timeout): the hub reconnects
   by itself, no accepted job is lost, and no worker that kept talking is taken for lost;
4. SIGTERM to a hub: every peer gets ``server_disconnect``, the hub exits 0, and a hub started
   again on the same Redis still has the queued job and gets it processed (spec D17);
5. a silent worker reaped by the other hub: the hub it is connected to frees its slot, so it can
   claim again when it speaks (and, in process, the same after a refused complete_job).

Everything listens on 127.0.0.1; hub timeouts are shortened through ``EMPQ_*`` variables; every
wait is bounded and every process is killed at teardown. Figures (recovery times) are printed
(``pytest -s``), never asserted.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
from empq.conformance.peer import Peer, PeerError
from empq.hub.config import HubConfig
from empq.hub.embedded_redis import EmbeddedRedis
from waiting import until

TESTS = Path(__file__).resolve().parent.parent  # tests/
START_TIMEOUT = 20.0  # a hub or worker process up and ready
STOP_TIMEOUT = 5.0

HEARTBEAT_TIMEOUT_MS = 1500
RECONNECT_GRACE_MS = 500
SWEEP_INTERVAL_MS = 50
HEARTBEAT_INTERVAL_MS = 300  # workers heartbeat well inside the timeout
CLAIM_TIMEOUT_MS = 3000
OUTAGE_S = 2.0  # Redis down longer than the heartbeat timeout: workers that kept talking stay


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def empq_command() -> list[str]:
    script = Path(sys.executable).with_name("empq")
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-c", "import sys; from empq.cli import main; sys.exit(main())"]


def hub_env(prefix: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMPQ_")}
    env.update(
        EMPQ_KEY_PREFIX=prefix,
        EMPQ_HEARTBEAT_TIMEOUT_MS=str(HEARTBEAT_TIMEOUT_MS),
        EMPQ_RECONNECT_GRACE_MS=str(RECONNECT_GRACE_MS),
        EMPQ_SWEEP_INTERVAL_MS=str(SWEEP_INTERVAL_MS),
        EMPQ_HEARTBEAT_INTERVAL_MS=str(HEARTBEAT_INTERVAL_MS),
        EMPQ_CLAIM_TIMEOUT_MS=str(CLAIM_TIMEOUT_MS),
        EMPQ_LOG_LEVEL="info",
    )
    return env


# --- processes ---------------------------------------------------------------------------------


class HubProc:
    """One ``empq hub --redis-url ...`` process; its log goes to a file."""

    def __init__(
        self,
        name: str,
        redis_url: str,
        prefix: str,
        log_dir: Path,
        port: int | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.port = port or free_port()
        self.url = f"ws://127.0.0.1:{self.port}"
        self.log = log_dir / f"{name}.log"
        self._out = open(self.log, "ab")  # closed in cleanup()
        self.proc = subprocess.Popen(
            [*empq_command(), "hub", "--redis-url", redis_url, "--ws-port", str(self.port)],
            stdin=subprocess.DEVNULL,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            env={**hub_env(prefix), **(env or {})},
            cwd=log_dir,
        )

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    async def ready(self) -> HubProc:
        def listening() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited with {self.proc.returncode}:\n{self.text()}")
            return f"listening on {self.url}" in self.text()

        await until(listening, START_TIMEOUT, f"{self.name} listening", step=0.05)
        return self

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)

    async def terminate(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return await asyncio.to_thread(self.proc.wait, STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.name} still running after SIGTERM:\n{self.text()}") from None

    def cleanup(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(STOP_TIMEOUT)
        self._out.close()


class WorkerProc:
    """``tests/proc_worker.py`` in its own process; its JSON-line events are collected."""

    def __init__(self, worker_id: str) -> None:
        self.worker_id = worker_id
        self.events: list[dict[str, Any]] = []
        self.proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None

    async def start(self, urls: list[str], mode: str = "work", job_ms: float = 20, max_seconds: float = 60):
        args = [str(TESTS / "proc_worker.py"), "--worker-id", self.worker_id, "--mode", mode]
        args += ["--job-ms", str(job_ms), "--max-seconds", str(max_seconds)]
        for url in urls:
            args += ["--url", url]
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, *args, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE
        )
        self._reader = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        async for line in self.proc.stdout:
            self.events.append(orjson.loads(line))

    def of(self, event: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == event]

    async def wait_event(self, event: str, timeout: float = START_TIMEOUT, **match: Any) -> dict[str, Any]:
        def found() -> dict[str, Any] | None:
            return next((e for e in self.of(event) if all(e.get(k) == v for k, v in match.items())), None)

        return await until(found, timeout, f"{self.worker_id}: {event} {match} (events: {self.events[-5:]})")

    def kill9(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)

    async def cleanup(self) -> None:
        if self.proc is None:
            return
        self.kill9()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.proc.wait(), STOP_TIMEOUT)
        if self._reader is not None:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(self._reader, 1)


class Processes:
    """What a test started; the fixture kills all of it, whatever happened."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.prefix = f"{{pt-{uuid.uuid4().hex[:8]}}}"
        self.redis_server: EmbeddedRedis | None = None
        self.hubs: list[HubProc] = []
        self.workers: list[WorkerProc] = []
        self.peers: list[Peer] = []

    async def redis(self) -> EmbeddedRedis:
        self.redis_server = EmbeddedRedis(self.tmp / "redis", port=free_port())
        await asyncio.to_thread(self.redis_server.start)
        return self.redis_server

    async def hub(self, name: str, port: int | None = None, **env: str) -> HubProc:
        assert self.redis_server is not None
        hub = HubProc(name, self.redis_server.url, self.prefix, self.tmp, port, env)
        self.hubs.append(hub)
        return await hub.ready()

    async def worker(self, urls: list[str], worker_id: str, **options: Any) -> WorkerProc:
        worker = WorkerProc(worker_id)
        self.workers.append(worker)
        return await worker.start(urls, **options)

    async def client(self, url: str, client_id: str | None = None) -> Client:
        peer = await Peer.connect(url, "client", timeout=10.0)
        self.peers.append(peer)
        await peer.expect("connection_established")
        reply = await peer.request(
            "register_client",
            "client_registered",
            client_type="job_client",
            client_id=client_id or f"client-{uuid.uuid4().hex[:6]}",
        )
        assert reply["type"] == "client_registered", reply
        return Client(peer)

    async def held_jobs(self, url: str) -> dict[str, list[str]]:
        """Worker id -> jobs it holds, as the per-worker stats show them (a monitor may see them)."""
        peer = await Peer.connect(url, "monitor", timeout=10.0)
        self.peers.append(peer)
        await peer.expect("connection_established")
        reply = await peer.request(
            "register_client",
            "client_registered",
            client_type="monitor",
            client_id=f"monitor-{uuid.uuid4().hex[:6]}",
            permissions=["view_system_stats", "view_workers"],
        )
        assert reply["type"] == "client_registered", reply
        stats = await peer.request("request_stats", "stats_response", include_sections=["workers"])
        assert stats["type"] == "stats_response", stats
        return {w["worker_id"]: w.get("current_jobs") or [] for w in stats["stats"]["workers"]["workers"]}

    async def cleanup(self) -> None:
        for peer in self.peers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(peer.close(), 2)
        await asyncio.gather(*(w.cleanup() for w in self.workers), return_exceptions=True)
        for hub in self.hubs:
            hub.cleanup()
        if self.redis_server is not None:
            await asyncio.to_thread(self.redis_server.stop)


@pytest.fixture
async def procs(tmp_path):
    running = Processes(tmp_path)
    try:
        yield running
    finally:
        await running.cleanup()


# --- a job client that follows every frame ---------------------------------------------------------


class Client:
    """Reads every frame (schema-checked by ``Peer``) and keeps what the tests count."""

    def __init__(self, peer: Peer) -> None:
        self.peer = peer
        self.ids = itertools.count(1)
        self.submits: dict[str, int] = {}  # submit request id -> logical job number
        self.job_of: dict[int, str] = {}  # logical job number -> job id (job_accepted)
        self.completed: collections.Counter[str] = collections.Counter()  # job_completed per job id
        self.updates: dict[str, list[tuple[float, dict[str, Any]]]] = collections.defaultdict(list)
        self.errors: collections.Counter[str] = collections.Counter()
        self.kinds: collections.Counter[str] = collections.Counter()  # every frame, by type
        self.resubmitted = 0
        self.replies: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.failure: Exception | None = None
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            try:
                frame = await self.peer.recv(timeout=3600)
            except PeerError as exc:  # closed, or a frame that violates the schemas
                self.failure = exc
                return
            self._on(frame)

    def _on(self, frame: dict[str, Any]) -> None:
        kind, rid = frame["type"], frame.get("request_id")
        self.kinds[kind] += 1
        if kind == "job_completed":
            self.completed[frame["job_id"]] += 1
        elif kind == "job_update":
            self.updates[frame["job_id"]].append((time.time(), frame))
        if rid in self.replies:
            self.replies.pop(rid).set_result(frame)
        elif rid in self.submits:
            n = self.submits.pop(rid)
            if kind == "job_accepted":
                self.job_of[n] = frame["job_id"]
            elif kind != "error":
                self.failure = AssertionError(f"submit answered with {frame}")
            else:
                self.errors[frame["error_code"]] += 1
                if frame["error_code"] == "SERVICE_UNAVAILABLE":  # not applied: submit again
                    asyncio.get_running_loop().call_later(0.1, self._resubmit, n)
        elif kind == "error":
            self.errors[frame["error_code"]] += 1

    def _resubmit(self, n: int) -> None:
        self.resubmitted += 1
        asyncio.create_task(self.submit(n))

    async def submit(self, n: int, service: str = "sim") -> None:
        rid = f"submit-{n}-{next(self.ids)}"
        self.submits[rid] = n
        await self.peer.send(
            "submit_job", id=rid, job_type="noop", payload={"n": n}, requirements={"service_type": service}
        )

    async def submit_one(self, n: int = 0, service: str = "sim") -> str:
        await self.submit(n, service)
        return await until(lambda: self.job_of.get(n), 10, f"job_accepted for job {n}")

    async def request(self, kind: str, **fields: Any) -> dict[str, Any]:
        rid = f"req-{next(self.ids)}"
        future = asyncio.get_running_loop().create_future()
        self.replies[rid] = future
        await self.peer.send(kind, id=rid, **fields)
        return await asyncio.wait_for(future, 10)

    def update(self, job_id: str, **match: Any) -> tuple[float, dict[str, Any]] | None:
        return next(
            ((t, f) for t, f in self.updates[job_id] if all(f.get(k) == v for k, v in match.items())), None
        )

    def check(self) -> None:
        if self.failure is not None:
            raise self.failure


# --- 1. a worker killed mid-job ------------------------------------------------------------------


async def test_killed_worker_job_is_requeued_and_completed_once(procs):
    await procs.redis()
    hub = await procs.hub("hub")
    client = await procs.client(hub.url)
    stuck = await procs.worker([hub.url], "w-stuck", mode="hang")
    await stuck.wait_event("registered")

    job_id = await client.submit_one()
    assigned = await stuck.wait_event("assigned", job_id=job_id, timeout=10)
    assert assigned["claim_timeout"] == CLAIM_TIMEOUT_MS  # the hub's configured default (D10)
    await stuck.wait_event("holding", job_id=job_id, timeout=10)  # accepted, progress acked
    await until(lambda: client.update(job_id, status="in_progress"), 5, "job_update in_progress")

    rescuer = await procs.worker([hub.url], "w-rescuer")
    await rescuer.wait_event("registered")
    killed_at = time.time()
    stuck.kill9()

    requeued_at, requeued = await until(
        lambda: client.update(job_id, status="queued"), 10, "job_update queued after the kill"
    )
    assert requeued["previous_status"] == "in_progress", requeued
    await until(lambda: client.completed[job_id], 10, "job_completed")
    await asyncio.sleep(0.5)  # a second job_completed would arrive by now
    assert client.completed[job_id] == 1, client.completed
    assert [e["job_id"] for e in rescuer.of("completed")] == [job_id]

    status = await client.request("request_job_status", job_id=job_id)
    assert status["type"] == "response_job_status", status
    assert status["status"] == "completed" and status["retry_count"] == 1, status
    assert status["worker_id"] == "w-rescuer", status
    client.check()

    recovery = requeued_at - killed_at
    d = HubConfig()
    print(
        f"\n[worker kill] job requeued {recovery:.2f} s after SIGKILL "
        f"(reconnect_grace_ms={RECONNECT_GRACE_MS}, sweep_interval_ms={SWEEP_INTERVAL_MS})"
        f"\n[worker kill] with the default settings: requeued "
        f"{d.reconnect_grace_ms / 1000:.1f}-{(d.reconnect_grace_ms + d.sweep_interval_ms) / 1000:.1f} s "
        f"after the connection drops (reconnect_grace_ms + up to one sweep_interval_ms); a worker that "
        f"hangs with its socket open: {d.heartbeat_timeout_ms / 1000:.0f} s after its last frame "
        f"(heartbeat_timeout_ms)"
    )


# --- 2. two hubs on one Redis, one killed ------------------------------------------------------------


async def test_two_hubs_one_killed_all_jobs_complete_exactly_once(procs):
    jobs = 200
    await procs.redis()
    hub_a = await procs.hub("hub-a")
    hub_b = await procs.hub("hub-b")  # started after A: it sees A at its first tick
    client = await procs.client(hub_a.url)
    workers_a = [await procs.worker([hub_a.url, hub_b.url], f"wa{i}", job_ms=30) for i in range(3)]
    workers_b = [await procs.worker([hub_b.url, hub_a.url], f"wb{i}", job_ms=30) for i in range(3)]
    for w in workers_a + workers_b:
        await w.wait_event("registered")
    await asyncio.sleep(1.1)  # both hubs' registries list both (refreshed every second)

    started = time.time()
    for n in range(jobs):
        await client.submit(n)
    await until(lambda: len(client.completed) >= jobs // 3, 20, f"{jobs // 3} jobs completed")
    assert all(w.of("completed") for w in workers_b), "hub B's workers did not take part"
    killed_at = time.time()
    hub_b.kill9()
    done_before = len(client.completed)

    await until(lambda: len(client.job_of) == jobs, 10, "every submit accepted")
    wanted = set(client.job_of.values())
    # A job event published by hub B is lost when B is killed between the job's transition in
    # Redis and the publish; hub A re-reads the jobs its clients wait on when B's registry entry
    # expires (~5 s), so every job_completed arrives without the client asking (regression for
    # the gap the chaos runs found: 2 of 200 lost in ~1 of 6 runs).
    await until(lambda: wanted <= set(client.completed), 20, f"all {jobs} jobs completed")
    await asyncio.sleep(0.5)  # duplicates would arrive by now
    client.check()

    assert set(client.completed) == wanted  # no job_completed for a job nobody submitted
    assert all(n == 1 for n in client.completed.values()), {
        j: n for j, n in client.completed.items() if n != 1
    }
    # the workers' side: each job acknowledged complete (job_completed_ack) once at most, and each
    # acknowledged: by that ack, or, when the hub that applied the completion was killed before
    # its ack went out, by the INVALID_STATE (completed) the worker's retry got on the other hub
    acked = collections.Counter(e["job_id"] for w in procs.workers for e in w.of("completed"))
    late = {e["job_id"] for w in procs.workers for e in w.of("already_completed")}
    assert set(acked) | late == wanted and set(acked.values()) <= {1}, (acked.most_common(3), late)

    # hub B's workers re-registered on hub A with the same worker_id
    for w in workers_b:
        again = [e for e in w.of("registered") if e["t"] > killed_at]
        assert again and again[0]["url"] == hub_a.url, w.events[-5:]
    resumed = [j for w in workers_b for e in w.of("registered") if e["t"] > killed_at for j in e["resumed"]]

    statuses = await asyncio.gather(*(client.request("request_job_status", job_id=j) for j in wanted))
    assert {s["status"] for s in statuses} == {"completed"}, [
        s for s in statuses if s["status"] != "completed"
    ]
    held = await procs.held_jobs(hub_a.url)
    assert not any(held.values()), held  # every job is finished: no worker still holds one

    failover = min(e["t"] for w in workers_b for e in w.of("registered") if e["t"] > killed_at) - killed_at
    print(
        f"\n[hub kill] {jobs} jobs in {time.time() - started:.2f} s; hub B killed after {done_before} "
        f"completions; its workers re-registered on hub A after {failover:.2f} s and resumed "
        f"{len(resumed)} job(s); retries: {sum(s['retry_count'] for s in statuses)}"
    )


# --- 3. redis-server restarted mid-run --------------------------------------------------------------


async def test_redis_restart_loses_no_accepted_job(procs):
    jobs = 150
    redis = await procs.redis()
    hub = await procs.hub("hub")
    client = await procs.client(hub.url)
    workers = [await procs.worker([hub.url], f"w{i}") for i in range(3)]
    for w in workers:
        await w.wait_event("registered")

    async def submit_all() -> None:
        for n in range(jobs):
            await client.submit(n)
            await asyncio.sleep(0.01)

    submitter = asyncio.create_task(submit_all())
    try:
        await until(lambda: len(client.job_of) >= 40, 10, "40 jobs accepted")
        down_at = time.time()
        await asyncio.to_thread(redis.stop)  # SIGTERM: redis-server writes its AOF and exits
        await asyncio.sleep(OUTAGE_S)
        await asyncio.to_thread(redis.start)
        up_at = time.time()
        await asyncio.wait_for(submitter, 10)
    finally:
        submitter.cancel()

    await until(lambda: len(client.job_of) == jobs, 15, "every job accepted (refused submits retried)")
    assert set(client.job_of) == set(range(jobs))
    wanted = set(client.job_of.values())

    # Wait for the job_completed frames; stop waiting when none came for longer than a claim timeout.
    last, seen = time.monotonic(), 0
    while not wanted <= set(client.completed):
        now_done = len(wanted & set(client.completed))
        if now_done != seen:
            last, seen = time.monotonic(), now_done
        assert time.monotonic() - last < CLAIM_TIMEOUT_MS / 1000 + 3, "jobs stopped completing"
        await asyncio.sleep(0.05)
        if time.monotonic() - last > CLAIM_TIMEOUT_MS / 1000 + 1:
            break
    unnotified = sorted(wanted - set(client.completed))
    # A job whose completion Redis applied but whose reply was lost in the restart is completed
    # without a job_completed frame; subscribe_job sends a final job's message at once (D14).
    for job_id in unnotified:
        reply = await client.request("subscribe_job", job_id=job_id)
        assert reply["type"] == "subscription_confirmed", reply
    await until(lambda: wanted <= set(client.completed), 5, "every accepted job completed")
    await asyncio.sleep(0.3)
    client.check()
    assert all(client.completed[j] == 1 for j in wanted), {j: client.completed[j] for j in wanted}

    statuses = await asyncio.gather(*(client.request("request_job_status", job_id=j) for j in wanted))
    assert {s["status"] for s in statuses} == {"completed"}
    held = await procs.held_jobs(hub.url)
    assert not any(held.values()), held

    # The workers talked to the hub all along (their heartbeats failed with SERVICE_UNAVAILABLE):
    # none is taken for lost, so no job counted a retry (D16).
    dropped = sum(len(w.of("disconnected")) for w in workers)
    retries = sum(s["retry_count"] for s in statuses)
    assert dropped == 0 and retries == 0, (dropped, retries)
    unavailable = sum(len(w.of("service_unavailable")) for w in workers)
    print(
        f"\n[redis restart] Redis down {up_at - down_at:.2f} s; job client saw "
        f"{client.errors['SERVICE_UNAVAILABLE']} SERVICE_UNAVAILABLE (resubmitted {client.resubmitted}), "
        f"workers {unavailable}; all {jobs} accepted jobs completed, {len(unnotified)} "
        f"learnt through subscribe_job; submissions without job_accepted that ran anyway: "
        f"{len(set(client.completed) - wanted)}"
    )


# --- 4. SIGTERM: server_disconnect, exit 0, restart resumes -------------------------------------------


async def test_sigterm_server_disconnect_and_restart_resumes(procs):
    await procs.redis()
    hub = await procs.hub("hub")
    client = await procs.client(hub.url, client_id="restart-client")

    async def peer(name: str, register: str | None, **fields: Any) -> Peer:
        p = await Peer.connect(hub.url, name, timeout=10.0)
        procs.peers.append(p)
        await p.expect("connection_established")
        if register:
            reply = await p.request(register, ("client_registered", "worker_registered"), **fields)
            assert reply["type"] != "error", reply
        return p

    monitor = await peer(
        "monitor", "register_client", client_type="monitor", client_id="mon", permissions=["view_all_jobs"]
    )
    worker = await peer(
        "worker", "register_worker", worker_id="w-other", capabilities={"services": ["comfyui"]}
    )
    unregistered = await peer("new", None)
    job_id = await client.submit_one(service="sim")  # nobody connected can run it: stays queued

    before = int(time.time() * 1000)
    hub.proc.send_signal(signal.SIGTERM)
    closing = [(monitor, "monitor"), (worker, "worker"), (unregistered, "unregistered")]
    for p, name in closing:
        msg = await p.expect("server_disconnect", timeout=STOP_TIMEOUT)
        assert msg["reason"], msg
        assert msg["reconnect_after"] >= before and msg["estimated_downtime"] >= 0, msg
        assert await p.closed(timeout=STOP_TIMEOUT) == 1001, name
    await until(lambda: client.failure is not None, STOP_TIMEOUT, "the job client's connection closed")
    assert client.kinds["server_disconnect"] == 1, client.kinds
    assert await asyncio.to_thread(hub.proc.wait, STOP_TIMEOUT) == 0, hub.text()
    assert "Traceback" not in hub.text()

    restarted_at = time.time()
    hub2 = await procs.hub("hub-again", port=hub.port)
    client2 = await procs.client(hub2.url, client_id="restart-client")  # same client: sees its job
    status = await client2.request("request_job_status", job_id=job_id)
    assert status["status"] == "queued" and status.get("position") == 1, status
    reply = await client2.request("subscribe_job", job_id=job_id)
    assert reply["type"] == "subscription_confirmed", reply

    worker2 = await procs.worker([hub2.url], "w-sim")
    await until(lambda: client2.completed[job_id], 15, "the job queued before the restart completed")
    # the worker logs its job_completed_ack, which may land just after the client's job_completed
    await until(lambda: worker2.of("completed"), 5, "the worker's completion ack")
    assert [e["job_id"] for e in worker2.of("completed")] == [job_id]
    status = await client2.request("request_job_status", job_id=job_id)
    assert status["status"] == "completed" and status["retry_count"] == 0, status
    client2.check()
    print(f"\n[sigterm] restart to completion of the queued job: {time.time() - restarted_at:.2f} s")


# --- 5. a worker reaped by another hub ----------------------------------------------------------------


async def test_worker_reaped_by_other_hub_can_claim_again(procs):
    """A worker that went silent on hub B is reaped by hub A (whichever hub's timer comes first,
    spec D16): its job is requeued. Hub B, which still has the connection, must not go on
    counting that job against the worker's slots: when the worker speaks again it can claim."""
    await procs.redis()
    hub_a = await procs.hub("hub-a")
    hub_b = await procs.hub("hub-b", EMPQ_SWEEP_INTERVAL_MS="3000")  # A's reaper comes first
    client = await procs.client(hub_a.url)
    await asyncio.sleep(1.1)  # hub A's registry lists hub B: job events cross the bus

    worker = await Peer.connect(hub_b.url, "w-silent", timeout=10.0)
    procs.peers.append(worker)
    await worker.expect("connection_established")
    caps = {"services": ["sim"], "max_concurrent_jobs": 1}
    reply = await worker.request(
        "register_worker", "worker_registered", worker_id="w-silent", capabilities=caps
    )
    assert reply["type"] == "worker_registered", reply
    job_id = await client.submit_one()
    assigned = await worker.request("claim_job", "job_assigned", worker_id="w-silent")
    assert assigned["type"] == "job_assigned" and assigned["job_id"] == job_id, assigned
    ack = await worker.request("job_accepted_by_worker", "ack", job_id=job_id, worker_id="w-silent")
    assert ack["type"] == "ack", ack

    # silent past the heartbeat timeout: the job goes back to the queue, a retry counted
    await until(lambda: client.update(job_id, status="queued"), 10, "job_update queued (worker reaped)")
    late = await worker.request(
        "complete_job", "job_completed_ack", job_id=job_id, worker_id="w-silent", result={"success": True}
    )
    assert late["type"] == "error" and late["error_code"] == "NOT_JOB_HOLDER", late  # D11

    again = await worker.request("claim_job", ("job_assigned", "ack"), worker_id="w-silent")
    assert again["type"] == "job_assigned" and again["job_id"] == job_id, again  # a free slot (D10)
    assert again["retry_count"] == 1, again
    done = await worker.request(
        "complete_job", "job_completed_ack", job_id=job_id, worker_id="w-silent", result={"success": True}
    )
    assert done["type"] == "job_completed_ack", done
    await until(lambda: client.completed[job_id], 5, "job_completed")
    await asyncio.sleep(0.3)
    assert client.completed[job_id] == 1
    client.check()


async def test_refused_complete_frees_the_slot(hub, peers):
    """The same without a second hub (in process): the jobs are released in Redis behind the
    hub's back, as when a reply was lost in a Redis restart or another hub released them. The
    worker's late complete_job gets NOT_JOB_HOLDER, and its slot is free again (D10, D11)."""
    client = await peers.client()
    worker = await peers.worker(services=("sim",), max_concurrent_jobs=1)
    accepted = await client.request(
        "submit_job", "job_accepted", job_type="noop", payload={}, requirements={"service_type": "sim"}
    )
    job_id = accepted["job_id"]
    assigned = await worker.request("claim_job", "job_assigned", worker_id=worker.worker_id)
    assert assigned["job_id"] == job_id, assigned
    await hub.core.store.release_worker(worker.worker_id, count_retry=True)  # behind the hub's back

    late = await worker.request(
        "complete_job",
        "job_completed_ack",
        job_id=job_id,
        worker_id=worker.worker_id,
        result={"success": True},
    )
    assert late["type"] == "error" and late["error_code"] == "NOT_JOB_HOLDER", late
    again = await worker.request("claim_job", ("job_assigned", "ack"), worker_id=worker.worker_id)
    assert again["type"] == "job_assigned" and again["job_id"] == job_id, again
