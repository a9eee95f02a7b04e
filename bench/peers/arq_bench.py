"""arq side of ``python -m bench.peers`` (see bench/peers/README.md). Two roles, two processes:

    python -m bench.peers.arq_bench worker --port P --queue Q [--concurrency 50] [--poll-ms 5] [--seconds 60]
    python -m bench.peers.arq_bench client --port P --queue Q [--jobs 10000] [--in-flight 200] [--seconds 60]

The worker runs ``noop``, which returns its start time (``time.time()``), with ``max_jobs`` =
--concurrency and ``poll_delay`` = --poll-ms (arq's default, 500 ms, would cap a 50-slot worker at
100 jobs/s: the worker polls its queue, it is not woken). The client keeps at most --in-flight jobs
unfinished (``ArqRedis.enqueue_job``). arq has no completion event, so the client learns
completions the way ``Job.result()`` does, by reading the result keys, but for every unfinished job
in one ``MGET`` every --poll-ms instead of one poll loop per job. It prints one JSON line: jobs/s,
enqueue->start and enqueue->done latencies. Both roles stop by themselves after --seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

from arq.connections import RedisSettings, create_pool
from arq.constants import result_key_prefix
from arq.jobs import deserialize_result
from arq.worker import Worker

from bench.lifecycle import latency_stats


async def noop(ctx: dict[str, Any]) -> float:
    return time.time()


async def run_worker(args: argparse.Namespace) -> None:
    worker = Worker(
        functions=[noop],
        redis_settings=RedisSettings(host="127.0.0.1", port=args.port),
        queue_name=args.queue,
        max_jobs=args.concurrency,
        poll_delay=args.poll_ms / 1000,
        handle_signals=False,
        keep_result=3600,
        log_results=False,
    )
    print(json.dumps({"ready": True}), flush=True)
    try:
        async with asyncio.timeout(args.seconds + 5):
            await worker.async_run()
    except TimeoutError:
        pass
    finally:
        await worker.close()


async def run_client(args: argparse.Namespace) -> dict[str, Any]:
    redis = await create_pool(RedisSettings(host="127.0.0.1", port=args.port))
    enqueued: dict[str, float] = {}
    to_start: list[float] = []
    to_done: list[float] = []
    sent = done = failed = 0
    first: float | None = None
    last: float | None = None
    cpu0 = time.process_time()

    async def submit_one() -> None:
        nonlocal sent, first, failed
        job_id = f"j{sent}"
        sent += 1
        t = time.time()
        first = t if first is None else first
        enqueued[job_id] = t
        job = await redis.enqueue_job("noop", _job_id=job_id, _queue_name=args.queue)
        if job is None:  # the id exists already: never here (fresh queue and ids per run)
            failed += 1

    stopped_by = "seconds"
    deadline = time.monotonic() + args.seconds
    await asyncio.gather(*(submit_one() for _ in range(min(args.in_flight, args.jobs))))
    while time.monotonic() < deadline:
        ids = list(enqueued)
        if not ids:
            if sent >= args.jobs:
                stopped_by = "jobs"
                break
        values = await redis.mget(*(result_key_prefix + i for i in ids)) if ids else []
        now = time.time()
        refill = 0
        for job_id, raw in zip(ids, values, strict=True):
            if raw is None:
                continue
            t0 = enqueued.pop(job_id)
            result = deserialize_result(raw)
            last = now
            to_done.append(now - t0)
            if result.success:
                done += 1
                to_start.append(float(result.result) - t0)
            else:
                failed += 1
            refill += 1
        refill = min(refill, args.jobs - sent)
        if refill:
            await asyncio.gather(*(submit_one() for _ in range(refill)))
        elif done + failed >= args.jobs:
            stopped_by = "jobs"
            break
        else:
            await asyncio.sleep(args.poll_ms / 1000)
    cpu = time.process_time() - cpu0
    await redis.aclose()
    wall = (last - first) if first is not None and last is not None else 0.0
    import arq

    return {
        "label": "arq",
        "version": arq.VERSION,
        "stopped_by": stopped_by,
        "submitted": sent,
        "completed": done,
        "failed": failed,
        "wall_s": round(wall, 3),
        "jobs_per_s": round(done / wall, 1) if wall > 0 else 0.0,
        "enqueue_to_start": latency_stats(to_start),
        "enqueue_to_done": latency_stats(to_done),
        "client_cpu_s": round(cpu, 3),
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("role", choices=["worker", "client"])
    parser.add_argument("--port", type=int, required=True, help="redis-server port on 127.0.0.1")
    parser.add_argument("--queue", default="empq-bench:arq")
    parser.add_argument("--jobs", type=int, default=10000)
    parser.add_argument("--in-flight", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--poll-ms", type=float, default=5.0)
    parser.add_argument("--seconds", type=float, default=60.0)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.role == "worker":
        asyncio.run(run_worker(args))
    else:
        print(json.dumps(asyncio.run(run_client(args))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
