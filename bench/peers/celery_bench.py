"""Celery side of ``python -m bench.peers`` (see bench/peers/README.md). Two roles, two processes:

    python -m bench.peers.celery_bench worker --port P --queue Q [--concurrency 50] [--pool threads]
    python -m bench.peers.celery_bench client --port P --queue Q [--jobs 10000] [--in-flight 200]

(both also take [--seconds 60])

Redis is both broker and result backend. The worker runs ``noop``, which returns its start time
(``time.time()``), in a pool of --concurrency (threads by default: prefork with 50 processes does
not fit 2 cores). The client keeps at most --in-flight tasks unfinished (``apply_async``) and
learns completions by reading the Redis result backend, every unfinished task in one ``MGET`` every
--poll-ms, which is what ``ResultSet.join_native`` / ``backend.get_many`` do. (Tried first and
dropped: ``AsyncResult.then`` + ``drain_events`` in one thread missed completions published before
its subscription and hung; ``AsyncResult.get()`` in --in-flight threads lost one completion in
5,000 — the pub/sub result consumer is shared by the threads — and cost 2.7 ms client CPU per job.)
It prints one JSON line: jobs/s, enqueue->start and enqueue->done latencies. Both roles
stop by themselves after --seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from typing import Any

from celery import Celery, states

from bench.peers.common import ClientTally, parser

app = Celery("empq_bench")  # broker and backend URLs are set by main() from --port
app.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
    result_expires=3600,
)

READY_STATES = states.READY_STATES


@app.task(name="noop")
def noop() -> float:
    return time.time()


def run_worker(args: argparse.Namespace) -> None:
    # The worker stops itself after --seconds (the orchestrator also terminates it).
    timer = threading.Timer(args.seconds + 5, lambda: os._exit(0))
    timer.daemon = True
    timer.start()
    print(json.dumps({"ready": True}), flush=True)
    app.worker_main(
        [
            "worker",
            "--queues", args.queue,
            "--pool", args.pool,
            "--concurrency", str(args.concurrency),
            "--loglevel", "WARNING",
            "--without-gossip", "--without-mingle", "--without-heartbeat",
        ]
    )  # fmt: skip


def run_client(args: argparse.Namespace) -> dict[str, Any]:
    backend = app.backend
    tally = ClientTally()

    def submit_one() -> None:
        t = time.time()
        tally.enqueue(noop.apply_async(queue=args.queue).id, t)

    for _ in range(min(args.in_flight, args.jobs)):
        submit_one()
    deadline = time.monotonic() + args.seconds
    stopped_by = "seconds"
    while time.monotonic() < deadline:
        if tally.ended >= args.jobs:
            stopped_by = "jobs"
            break
        ids = list(tally.enqueued)
        values = backend.mget([backend.get_key_for_task(i) for i in ids]) if ids else []
        now = time.time()
        finished = 0
        for task_id, raw in zip(ids, values, strict=True):
            if raw is None:
                continue
            meta = backend.decode_result(raw)
            if meta["status"] in READY_STATES:
                ok = meta["status"] == "SUCCESS"
                tally.finish(task_id, now, float(meta["result"]) if ok else None)
                finished += 1
        for _ in range(min(finished, args.jobs - tally.sent)):
            submit_one()
        if not finished:
            time.sleep(args.poll_ms / 1000)
    import celery

    return tally.result("Celery", celery.__version__, stopped_by)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = parser(__doc__.splitlines()[0], "empq-bench-celery")
    p.add_argument("--pool", default="threads", choices=["threads", "prefork", "solo"])
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    url = f"redis://127.0.0.1:{args.port}/0"
    app.conf.update(broker_url=url, result_backend=url)
    if args.role == "worker":
        run_worker(args)
    else:
        print(json.dumps(run_client(args)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
