"""Instructions per job, counted by valgrind (callgrind): a figure that repeats on a noisy machine.

    python -m bench.instructions [--jobs 200] [--warmup 40] [--progress-steps 1] [--only empq,null]
        [--transport websockets,picows] [--json out.json]
    python -m bench.instructions --aiload [--ai-workers 50] [--ai-rate 1] [--ai-jobs 25]
        [--ai-window 40] ...   # the AI workload: per job and per progress update (bench/instructions_ai.py)

Wall-clock and CPU-time figures swing ±20 % here (two cores shared with everything else);
instruction counts do not: the same code on the same inputs executes the same instructions,
whatever else the machine does. Each process under test (the empq hub, its redis-server, the null
hub) runs under ``valgrind --tool=callgrind`` with instrumentation off; after its start-up and a
warm-up stream of jobs the counters are switched on and zeroed (``callgrind_control -i on -z``),
the measured stream runs, and a dump gives exactly the instructions spent on it. The load driver
is bench/lifecycle.py's (outside valgrind): clients submit, workers claim, accept, report progress
and complete no-op jobs, clients learn of each completion.

The figures are instructions per completed job, by process. They compare two versions of the hub
(A/B) or the hub with the null hub (the same WebSocket stack with no state); they are not
seconds: Python's interpreter and C libraries weigh differently per instruction.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import empq_command, module_command
from bench.lifecycle import LoadConfig, run_load

START_TIMEOUT = 300.0  # a Python process under valgrind starts slowly
MEASURE_TIMEOUT = 900.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def redis_binary() -> str:
    from empq.hub.embedded_redis import redis_server_binary

    return redis_server_binary()


class Counted:
    """A process under callgrind, counting only between ``start()`` and ``dump()``."""

    def __init__(self, name: str, argv: list[str], out: Path, env: dict[str, str] | None = None) -> None:
        self.name, self.out = name, out
        self.log = open(out / f"{name}.log", "wb")  # noqa: SIM115 - closed in stop()
        self.zeroed_at = self.dumped_at = 0.0  # time.monotonic() of the latest -z and -d
        # timers every second, not every 200 ms: under valgrind a run lasts long, and the
        # timers' fixed cost per tick would otherwise be counted as cost per job
        env = {
            **os.environ,
            "EMPQ_SWEEP_INTERVAL_MS": "1000",
            "EMPQ_STATUS_INTERVAL_MS": "60000",
            **(env or {}),
        }
        self.proc = subprocess.Popen(
            [
                "valgrind",
                "--tool=callgrind",
                "--instr-atstart=no",
                f"--callgrind-out-file={out}/{name}.%p.out",
                *argv,
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
        )

    def control(self, *args: str) -> None:
        subprocess.run(
            ["callgrind_control", *args, str(self.proc.pid)],
            check=True,
            capture_output=True,
            timeout=120,
        )

    def start(self) -> None:
        self.control("-i", "on")
        self.zero()

    def zero(self) -> None:
        t0 = time.monotonic()
        self.control("-z")
        self.zeroed_at = (t0 + time.monotonic()) / 2

    def dump(self) -> int:
        before = set(self.out.glob(f"{self.name}.{self.proc.pid}.out.*"))
        t0 = time.monotonic()
        self.control("-d")
        self.dumped_at = (t0 + time.monotonic()) / 2
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            for path in set(self.out.glob(f"{self.name}.{self.proc.pid}.out.*")) - before:
                found = re.search(r"^summary:\s*(\d+)", path.read_text(errors="replace"), re.M)
                if found:
                    return int(found.group(1))
            time.sleep(0.2)
        raise RuntimeError(f"{self.name}: no callgrind dump")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()


def wait_listening(port: int, procs: list[Counted], timeout: float = START_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p in procs:
            if p.proc.poll() is not None:
                text = (p.out / f"{p.name}.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{p.name} exited: {text}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.3)
    raise RuntimeError(f"nothing listening on {port} after {timeout:.0f} s")


@contextlib.contextmanager
def counted_hub(kind: str, out: Path, transport: str, env: dict[str, str] | None = None) -> Any:
    """The processes of ``kind`` under callgrind (not counting yet); yields (url, processes)."""
    port = free_port()
    procs: list[Counted] = []
    try:
        if kind == "empq":
            redis_port = free_port()
            redis = Counted(
                "redis",
                [redis_binary(), "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no"],
                out,
                env,
            )  # fmt: skip
            procs.append(redis)
            wait_listening(redis_port, procs)
            hub_argv = empq_command(
                "hub", "--redis-url", f"redis://127.0.0.1:{redis_port}/0", "--ws-port", str(port),
                "--http-port", "-1", "--log-level", "warning", "--transport", transport,
            )  # fmt: skip
            procs.append(Counted("hub", [shutil.which(hub_argv[0]) or hub_argv[0], *hub_argv[1:]], out, env))
        else:
            seconds = str(MEASURE_TIMEOUT)
            argv = module_command("bench.null_hub", "--port", str(port), "--max-seconds", seconds)
            procs.append(Counted("null", argv, out, env))
        wait_listening(port, procs)
        yield f"ws://127.0.0.1:{port}", procs
    finally:
        for p in procs:
            p.stop()


def measure(
    kind: str, cfg: LoadConfig, warmup: int, out: Path, transport: str = "websockets"
) -> dict[str, Any]:
    """Instructions of each process of ``kind`` (empq: hub and redis-server; null: the null hub)
    over ``cfg.jobs`` jobs, after ``warmup`` jobs; the empq hub on the I/O layer ``transport``."""
    with counted_hub(kind, out, transport) as (url, procs):
        warm = LoadConfig(**{**cfg.__dict__, "jobs": warmup, "seconds": MEASURE_TIMEOUT})
        asyncio.run(run_load(url, warm, label=f"{kind} warm-up"))
        for p in procs:
            p.start()
        result = asyncio.run(run_load(url, cfg, label=kind))
        counts = {p.name: p.dump() for p in procs}
    done = result["completed"]
    per_job = {name: round(n / done) for name, n in counts.items()} if done else {}
    label = f"empq/{transport}" if kind == "empq" else kind
    return {"kind": label, "completed": done, "instructions": counts, "per_job": per_job, "run": result}


def table(rows: list[dict[str, Any]]) -> str:
    lines = [f"{'':20}{'completed':>10}{'instructions per job (by process)':>48}"]
    for r in rows:
        parts = " + ".join(f"{n:,} {name}" for name, n in r["per_job"].items())
        total = sum(r["per_job"].values())
        lines.append(f"{r['kind']:20}{r['completed']:>10}   {parts} = {total:,}")
    null = next((r["per_job"].get("null") for r in rows if r["per_job"].get("null")), None)
    for r in rows:
        hub = r["per_job"].get("hub")
        if hub and null:
            lines.append(f"{r['kind']} hub ÷ null hub: {hub / null:.2f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=200, help="jobs counted (default 200)")
    p.add_argument("--warmup", type=int, default=40, help="jobs before counting starts (default 40)")
    p.add_argument("--workers", type=int, default=8)
    p.add_argument("--clients", type=int, default=2)
    p.add_argument("--in-flight", type=int, default=16)
    p.add_argument("--progress-steps", type=int, default=1, help="update_job_progress per job (default 1)")
    p.add_argument("--only", default="empq,null", help="comma list of empq,null")
    p.add_argument(
        "--transport", default="websockets",
        help="the empq hub's I/O layer(s), comma list of websockets,picows: one empq row each (A/B)",
    )  # fmt: skip
    p.add_argument(
        "--aiload", action="store_true",
        help="the AI workload instead (bench.aiload's shape, small; see bench/instructions_ai.py): "
        "instructions per job with --ai-steps updates and per update, idle windows subtracted",
    )  # fmt: skip
    p.add_argument("--ai-workers", type=int, default=50, help="connected workers (default 50)")
    p.add_argument("--ai-monitors", type=int, default=4, help="monitors on every job's events (default 4)")
    p.add_argument("--ai-clients", type=int, default=2, help="job clients (default 2)")
    p.add_argument("--ai-rate", type=float, default=1.0, help="jobs/s in a job window (default 1)")
    p.add_argument("--ai-jobs", type=int, default=25, help="jobs per job window (default 25)")
    p.add_argument("--ai-steps", type=int, default=20, help="progress updates per job (default 20)")
    p.add_argument(
        "--ai-window",
        type=float,
        default=40.0,
        help="seconds every counted window lasts (default 40; a multiple of the 20 s keep-alive pings)",
    )
    p.add_argument("--keep", type=Path, help="keep the callgrind files here (for callgrind_annotate)")
    p.add_argument("--json", type=Path, dest="json_out")
    args = p.parse_args(argv)
    if not shutil.which("valgrind") or not shutil.which("callgrind_control"):
        print("valgrind (callgrind) is needed: apt-get install valgrind", file=sys.stderr)
        return 2
    cfg = LoadConfig(
        clients=args.clients,
        workers=args.workers,
        jobs=args.jobs,
        in_flight=args.in_flight,
        progress_steps=args.progress_steps,
        seconds=MEASURE_TIMEOUT,
    )
    cfg.check()
    shape = None
    if args.aiload:
        from bench.instructions_ai import AiShape, ai_table, measure_aiload

        shape = AiShape(
            workers=args.ai_workers, monitors=args.ai_monitors, clients=args.ai_clients, steps=args.ai_steps,
            rate=args.ai_rate, jobs=args.ai_jobs, window_s=args.ai_window,
        )  # fmt: skip
        shape.check()
    rows = []
    with tempfile.TemporaryDirectory(prefix="empq-callgrind-") as tmp:
        out = args.keep or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        for kind in args.only.split(","):
            for transport in args.transport.split(",") if kind.strip() == "empq" else ["-"]:
                print(f"… {kind} {transport} under callgrind", flush=True)
                if shape is not None:
                    rows.append(measure_aiload(kind.strip(), shape, out, transport.strip()))
                else:
                    rows.append(measure(kind.strip(), cfg, args.warmup, out, transport.strip()))
    if shape is not None:
        print(f"AI workload, instructions by process: {shape.describe()}")
        print(ai_table(rows))
        if args.json_out:
            args.json_out.write_text(json.dumps(rows, indent=2, default=str))
        return 1 if any("refused" in r for r in rows) else 0
    print(
        f"{args.jobs} jobs counted after {args.warmup} ({args.workers} workers, {args.clients} clients, "
        f"{args.in_flight} in flight, {args.progress_steps} progress update(s) per job)"
    )
    print(table(rows))
    if args.json_out:
        args.json_out.write_text(json.dumps(rows, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
