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

from bench.peers.common import ClientTally, parser


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
    tally = ClientTally()

    async def submit_one() -> None:
        job_id = f"j{tally.sent}"
        tally.enqueue(job_id, time.time())
        if await redis.enqueue_job("noop", _job_id=job_id, _queue_name=args.queue) is None:
            tally.finish(job_id, time.time(), None)  # the id exists already: never here (fresh queue)

    stopped_by = "seconds"
    deadline = time.monotonic() + args.seconds
    await asyncio.gather(*(submit_one() for _ in range(min(args.in_flight, args.jobs))))
    while time.monotonic() < deadline:
        if tally.ended >= args.jobs:
            stopped_by = "jobs"
            break
        ids = list(tally.enqueued)
        values = await redis.mget(*(result_key_prefix + i for i in ids)) if ids else []
        now = time.time()
        finished = 0
        for job_id, raw in zip(ids, values, strict=True):
            if raw is not None:
                result = deserialize_result(raw)
                tally.finish(job_id, now, float(result.result) if result.success else None)
                finished += 1
        refill = min(finished, args.jobs - tally.sent)
        if refill:
            await asyncio.gather(*(submit_one() for _ in range(refill)))
        elif not finished:
            await asyncio.sleep(args.poll_ms / 1000)
    await redis.aclose()
    import arq

    return tally.result("arq", arq.VERSION, stopped_by)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return parser(__doc__.splitlines()[0], "empq-bench:arq").parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.role == "worker":
        asyncio.run(run_worker(args))
    else:
        print(json.dumps(asyncio.run(run_client(args))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
