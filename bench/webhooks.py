"""Webhooks (spec D21): what they cost on the job path, how fast the sender goes, how late they arrive.

    python -m bench.webhooks [--jobs 2000] [--rounds 4] [--in-flight 50] [--latency-jobs 50]
        [--sweep-ms 200] [--seconds 120] [--redis-url URL] [--json out.json]

The hub's core runs in this process (``HubCore`` on a ``RespClient``, frames to a null outbox, no
WebSocket), on its own embedded redis-server (a unix socket in a temporary dir) unless
``--redis-url`` is given; the receiver is a subprocess (this module with ``--receiver``: an
asyncio HTTP server on 127.0.0.1 answering 204, printing each request's webhook-id and arrival
time), so its CPU is not the hub's.

1. job path: jobs go submit -> claim -> accept -> complete through ``core.receive``, ``--in-flight``
   at a time; ``--rounds`` rounds alternate jobs without a webhook and jobs with one (default
   events: the completion is queued by complete.lua), ``--jobs`` per round. Per job: this
   process's CPU (``time.process_time``: parsing, the job manager, the transition calls) and
   Redis's (``INFO cpu``, used_cpu_user + used_cpu_sys); the sender is not running, so this is the
   cost of queueing alone;
2. sender: the deliveries queued in phase 1 are sent (``Webhooks.poll`` until none is left):
   deliveries/s, this process's and Redis's CPU per delivery;
3. latency: ``--latency-jobs`` jobs completed one at a time, at random moments, while the timer
   ticks every ``--sweep-ms`` (the hub's default 200: the sender polls on each tick): from the
   transition (the message's timestamp) to the receiver's arrival time, p50/p95/max.

Every loop is bounded in count and in time (``--seconds`` per phase).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import orjson

SECRET = "whsec_" + "QmVuY2htYXJrIHdlYmhvb2sga2V5IDMyIGJ5dGVzISE="


# --- the receiver (a subprocess) ------------------------------------------------------------------


async def receiver() -> None:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            headers = {
                k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)
            }
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            at = time.time()
            writer.write(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
            await writer.drain()
            stamp = orjson.loads(body).get("timestamp")
            line = orjson.dumps({"id": headers.get("webhook-id"), "at": at, "timestamp": stamp})
            sys.stdout.write(line.decode() + "\n")
            sys.stdout.flush()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    sys.stdout.write(f"port {server.sockets[0].getsockname()[1]}\n")
    sys.stdout.flush()
    await asyncio.sleep(3600)


class Receiver:
    def __init__(self) -> None:
        self.proc: asyncio.subprocess.Process | None = None
        self.arrivals: list[dict[str, Any]] = []
        self.port = 0
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> Receiver:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.webhooks", "--receiver", stdout=asyncio.subprocess.PIPE
        )
        assert self.proc.stdout is not None
        first = await asyncio.wait_for(self.proc.stdout.readline(), 20)
        self.port = int(first.split()[1])
        self._task = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        async for line in self.proc.stdout:
            self.arrivals.append(orjson.loads(line))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


# --- the hub in process ----------------------------------------------------------------------------


class NullOutbox:
    def __init__(self) -> None:
        self.frames: dict[str, list[bytes]] = {}

    def send(self, conn_id: str, data: bytes) -> None:
        self.frames.setdefault(conn_id, []).append(data)

    def close(self, conn_id: str, code: int, reason: str) -> None:
        pass


class Bench:
    def __init__(self, core: Any, outbox: NullOutbox, redis: Any) -> None:
        self.core, self.outbox, self.redis = core, outbox, redis
        self.ids = iter(range(1, 10**12))
        self.client = self.connect()
        self.worker = self.connect()

    def connect(self) -> str:
        conn_id = self.core.new_conn_id()
        self.core.connect(conn_id)
        return str(conn_id)

    async def request(self, conn_id: str, kind: str, **fields: Any) -> dict[str, Any]:
        rid = f"b{next(self.ids)}"
        start = len(self.outbox.frames.get(conn_id, []))
        frame = orjson.dumps({"type": kind, "id": rid, "timestamp": int(time.time() * 1000), **fields})
        await self.core.receive(conn_id, frame)
        for data in self.outbox.frames.get(conn_id, [])[start:]:
            reply = orjson.loads(data)
            if reply.get("request_id") == rid:
                if reply["type"] == "error":
                    raise RuntimeError(f"{kind} refused: {reply}")
                return dict(reply)
        raise RuntimeError(f"no reply to {kind}")

    async def register(self) -> None:
        await self.request(self.client, "register_client", client_type="job_client", client_id="bench")
        await self.request(
            self.worker,
            "register_worker",
            worker_id="bench-worker",
            capabilities={"services": ["sim"], "max_concurrent_jobs": 1000},
        )

    async def job(self, webhook_url: str | None) -> str:
        fields: dict[str, Any] = {
            "job_type": "noop",
            "payload": {"n": 1},
            "requirements": {"service_type": "sim"},
        }
        if webhook_url:
            fields["webhook_url"] = webhook_url
        accepted = await self.request(self.client, "submit_job", **fields)
        job_id = accepted["job_id"]
        worker = "bench-worker"
        assigned = await self.request(self.worker, "claim_job", worker_id=worker, max_jobs=1)
        claimed = assigned.get("job_id", job_id)
        await self.request(self.worker, "job_accepted_by_worker", job_id=claimed, worker_id=worker)
        result = {"success": True}
        await self.request(self.worker, "complete_job", job_id=claimed, worker_id=worker, result=result)
        return str(job_id)

    async def redis_cpu(self) -> float:
        info = await self.redis.execute("INFO", "cpu")
        values = dict(line.split(":", 1) for line in info.splitlines() if ":" in line)
        return float(values["used_cpu_user"]) + float(values["used_cpu_sys"])


async def start_core(redis_url: str, **settings: Any) -> tuple[Bench, Any]:
    from empq.hub.config import HubConfig
    from empq.hub.core import HubCore
    from empq.hub.redis_batch import RedisBatch
    from empq.hub.resp import RespClient
    from empq.hub.store import SCRIPTS, JobStore

    prefix = f"{{bench-{uuid.uuid4().hex[:8]}}}"
    config = HubConfig(redis_url=redis_url, key_prefix=prefix, **settings)
    redis = RespClient(redis_url)
    batch = RedisBatch(redis, SCRIPTS)
    await batch.load_scripts()
    store = JobStore(batch, prefix)
    outbox = NullOutbox()
    bench = Bench(HubCore(config, store, outbox), outbox, redis)
    await bench.register()
    return bench, redis


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def run(args: argparse.Namespace) -> dict[str, Any]:
    receiver = await Receiver().start()
    try:
        return await measure(args, receiver)
    finally:
        await receiver.stop()


async def measure(args: argparse.Namespace, receiver: Receiver) -> dict[str, Any]:
    settings = {
        "webhook_secret": SECRET,
        "webhook_allow_http": True,
        "webhook_allow_private": True,
        "webhook_concurrency": 64,
        "webhook_per_target": 64,
    }
    bench, redis = await start_core(args.redis_url, **settings)
    out: dict[str, Any] = {"jobs_per_round": args.jobs, "rounds": args.rounds, "problems": []}
    try:
        # 1. the job path, with and without a webhook
        costs: dict[str, list[tuple[float, float]]] = {"plain": [], "webhook": []}
        for n in range(args.rounds * 2):
            kind = "plain" if n % 2 == 0 else "webhook"
            url = receiver.url if kind == "webhook" else None
            cpu, rcpu = time.process_time(), await bench.redis_cpu()
            deadline = time.monotonic() + args.seconds
            done = 0
            while done < args.jobs and time.monotonic() < deadline:
                batch = min(args.in_flight, args.jobs - done)
                await asyncio.gather(*(bench.job(url) for _ in range(batch)))
                bench.outbox.frames.clear()  # between batches: no reply is awaited now
                done += batch
            if done < args.jobs:
                out["problems"].append(f"round {n}: {done} of {args.jobs} jobs within {args.seconds} s")
            costs[kind].append(((time.process_time() - cpu) / done, (await bench.redis_cpu() - rcpu) / done))
        for kind, rows in costs.items():
            out[f"{kind}_hub_cpu_us_per_job"] = statistics.median(r[0] for r in rows) * 1e6
            out[f"{kind}_redis_cpu_us_per_job"] = statistics.median(r[1] for r in rows) * 1e6
        queued = args.jobs * args.rounds

        # 2. the sender
        webhooks = bench.core.webhooks
        cpu, rcpu, started = time.process_time(), await bench.redis_cpu(), time.perf_counter()
        deadline = time.monotonic() + args.seconds
        while len(receiver.arrivals) < queued and time.monotonic() < deadline:
            await webhooks.poll()
            await asyncio.sleep(0.002)
        while webhooks.tasks and time.monotonic() < deadline:
            await asyncio.sleep(0.002)
        sent = len(receiver.arrivals)
        elapsed = time.perf_counter() - started
        if sent < queued:
            out["problems"].append(f"sender: {sent} of {queued} deliveries within {args.seconds} s")
        out["deliveries"] = sent
        out["deliveries_per_s"] = sent / elapsed if elapsed else 0.0
        out["sender_hub_cpu_us_per_delivery"] = (time.process_time() - cpu) / max(1, sent) * 1e6
        out["sender_redis_cpu_us_per_delivery"] = (await bench.redis_cpu() - rcpu) / max(1, sent) * 1e6

        # 3. latency, with the timer ticking as the hub's does
        receiver.arrivals.clear()

        async def ticking() -> None:
            while True:
                await asyncio.sleep(args.sweep_ms / 1000)
                await bench.core.tick()

        ticker = asyncio.create_task(ticking())
        try:
            deadline = time.monotonic() + args.seconds
            for _ in range(args.latency_jobs):
                if time.monotonic() > deadline:
                    break
                await asyncio.sleep(random.uniform(0, 2 * args.sweep_ms / 1000))
                await bench.job(receiver.url)
            while len(receiver.arrivals) < args.latency_jobs and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
        finally:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
        lateness = [(a["at"] * 1000 - a["timestamp"]) for a in receiver.arrivals]
        if len(lateness) < args.latency_jobs:
            out["problems"].append(f"latency: {len(lateness)} of {args.latency_jobs} deliveries arrived")
        out["sweep_ms"] = args.sweep_ms
        out["latency_ms"] = {
            "p50": percentile(lateness, 0.5),
            "p95": percentile(lateness, 0.95),
            "max": max(lateness, default=float("nan")),
        }
    finally:
        await bench.core.webhooks.stop(grace=0)
        await redis.close()
    return out


def report(out: dict[str, Any]) -> str:
    lat = out["latency_ms"]
    return "\n".join(
        [
            f"job path (submit, claim, accept, complete; {out['jobs_per_round']} jobs x {out['rounds']} "
            "rounds each):",
            f"  hub CPU per job:   {out['plain_hub_cpu_us_per_job']:.0f} us without a webhook, "
            f"{out['webhook_hub_cpu_us_per_job']:.0f} us with one",
            f"  Redis CPU per job: {out['plain_redis_cpu_us_per_job']:.0f} us without, "
            f"{out['webhook_redis_cpu_us_per_job']:.0f} us with",
            f"sender: {out['deliveries']} deliveries at {out['deliveries_per_s']:.0f}/s; per delivery "
            f"{out['sender_hub_cpu_us_per_delivery']:.0f} us hub CPU, "
            f"{out['sender_redis_cpu_us_per_delivery']:.0f} us Redis CPU",
            f"latency, transition to receiver (timer every {out['sweep_ms']} ms): p50 {lat['p50']:.0f} ms, "
            f"p95 {lat['p95']:.0f} ms, max {lat['max']:.0f} ms",
            *(f"PROBLEM: {p}" for p in out["problems"]),
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=2000, help="jobs per round")
    parser.add_argument("--rounds", type=int, default=4, help="rounds of each kind, alternating")
    parser.add_argument("--in-flight", type=int, default=50)
    parser.add_argument("--latency-jobs", type=int, default=50)
    parser.add_argument("--sweep-ms", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=120, help="bound of each phase")
    parser.add_argument("--redis-url", help="default: an embedded redis-server of its own")
    parser.add_argument("--json", type=Path, help="write the figures as JSON")
    parser.add_argument("--receiver", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.receiver:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(receiver())
        return 0
    with contextlib.ExitStack() as stack:
        if not args.redis_url:
            from empq.hub.embedded_redis import EmbeddedRedis

            server = EmbeddedRedis(Path(stack.enter_context(tempfile.TemporaryDirectory())))
            args.redis_url = server.start()
            stack.callback(server.stop)
        out = asyncio.run(run(args))
    print(report(out))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return 1 if out["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
