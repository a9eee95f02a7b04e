"""`empq hub --processes N`: jobs/s and CPU per job of each hub process, N = 1 and 2, alternated.

    python -m bench.processes [--counts 1,2] [--rounds 2] [--jobs 4000] [--clients 8] [--workers 50]
        [--in-flight 200] [--transport websockets] [--json out.json]

Each run starts ``empq hub --processes N`` (its embedded redis-server in a temporary data dir, as
``empq hub`` starts it), waits for the N children to listen on the shared port (SO_REUSEPORT),
runs bench/lifecycle.py's no-op job stream (the bench.peers shape by default: 50 workers, 200 jobs
in flight; the clients and workers connect one by one, so the kernel spreads them over the
processes) and reads each process's CPU time (/proc) before and after: CPU µs per job of every
hub process, of the redis-server and of the driver. A job submitted on one process and run by a
worker on another crosses the Redis bus (PUBLISH), which a single process never pays.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import empq_command
from bench.lifecycle import LoadConfig, cpu_seconds_of, run_load


def children_of(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(c) for c in text.split()]


def redis_of(data_dir: str) -> int | None:
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                cmdline = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if "redis-server" in cmdline and data_dir in cmdline:
                return int(p.name)
    return None


def listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


def run(n: int, cfg: LoadConfig, transport: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="empq-procs-") as data_dir:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        argv = empq_command(
            "hub", "--processes", str(n), "--ws-port", str(port), "--http-port", "-1",
            "--data-dir", data_dir, "--transport", transport, "--log-level", "warning",
        )  # fmt: skip
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 60
            while True:
                hubs = (
                    [c for c in children_of(proc.pid) if "redis-server" not in _cmd(c)]
                    if n > 1
                    else [proc.pid]
                )
                if len(hubs) == n and listening(port) and redis_of(data_dir):
                    break
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"empq hub --processes {n} did not start")
                time.sleep(0.2)
            time.sleep(1.0)  # every process has announced itself
            redis_pid = redis_of(data_dir)
            pids = {f"hub{i}": pid for i, pid in enumerate(sorted(hubs))}
            if redis_pid:
                pids["redis"] = redis_pid
            before = {name: cpu_seconds_of(pid) or 0.0 for name, pid in pids.items()}
            driver_before = time.process_time()
            result = asyncio.run(run_load(f"ws://127.0.0.1:{port}", cfg, label=f"processes={n}"))
            driver = time.process_time() - driver_before
            after = {name: cpu_seconds_of(pid) or 0.0 for name, pid in pids.items()}
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    done = result["completed"] or 1
    cpu = {name: round((after[name] - before[name]) / done * 1e6) for name in pids}
    cpu["driver"] = round(driver / done * 1e6)
    return {
        "processes": n,
        "completed": result["completed"],
        "jobs_per_s": result["jobs_per_s"],
        "cpu_us_per_job": cpu,
        "submit_to_completed": result["submit_to_completed"],
    }


def _cmd(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--counts", default="1,2", help="hub processes per run, comma list")
    p.add_argument("--rounds", type=int, default=2, help="times each count runs, alternated")
    p.add_argument("--jobs", type=int, default=4000)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--workers", type=int, default=50)
    p.add_argument("--in-flight", type=int, default=200, help="unfinished jobs in all")
    p.add_argument("--seconds", type=float, default=120.0, help="time bound of each run")
    p.add_argument("--transport", default="websockets")
    p.add_argument("--json", type=Path, dest="json_out")
    args = p.parse_args(argv)
    cfg = LoadConfig(
        clients=args.clients,
        workers=args.workers,
        jobs=args.jobs,
        in_flight=max(1, args.in_flight // args.clients),
        seconds=args.seconds,
    )
    cfg.check()
    rows = []
    for _ in range(args.rounds):
        for n in (int(c) for c in args.counts.split(",")):
            row = run(n, cfg, args.transport)
            rows.append(row)
            cpu = " + ".join(f"{v} {k}" for k, v in row["cpu_us_per_job"].items())
            lat = row["submit_to_completed"]
            print(
                f"--processes {n}: {row['completed']} jobs, {row['jobs_per_s']:,.0f} jobs/s, "
                f"submit→completed p50 {lat['p50_ms']:.0f} ms p99 {lat['p99_ms']:.0f} ms; "
                f"CPU µs per job: {cpu}",
                flush=True,
            )
    if args.json_out:
        args.json_out.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
