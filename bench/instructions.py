"""Instructions per job, counted by valgrind (callgrind): a figure that repeats on a noisy machine.

    python -m bench.instructions [--jobs 200] [--warmup 40] [--progress-steps 1] [--only empq,null]
        [--transport websockets,picows] [--json out.json]

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

    def __init__(self, name: str, argv: list[str], out: Path) -> None:
        self.name, self.out = name, out
        self.log = open(out / f"{name}.log", "wb")  # noqa: SIM115 - closed in stop()
        # timers every second, not every 200 ms: under valgrind a run lasts long, and the
        # timers' fixed cost per tick would otherwise be counted as cost per job
        env = {**os.environ, "EMPQ_SWEEP_INTERVAL_MS": "1000", "EMPQ_STATUS_INTERVAL_MS": "60000"}
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
        self.control("-z")

    def dump(self) -> int:
        before = set(self.out.glob(f"{self.name}.{self.proc.pid}.out.*"))
        self.control("-d")
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


class AiHooks:
    """bench.aiload's hooks: count from after the warm-up to the end of the rates (``main``),
    then the baseline run without progress updates (``base``)."""

    def __init__(self, procs: list[Counted], warmup_s: float) -> None:
        self.procs, self.warmup_s = procs, warmup_s
        self.main: dict[str, int] = {}

    def ready(self) -> None:
        for p in self.procs:
            p.start()

    def rounds_done(self) -> None:
        self.main = {p.name: p.dump() for p in self.procs}
        for p in self.procs:
            p.control("-z")


def measure_aiload(kind: str, ai: Any, out: Path, transport: str = "websockets") -> dict[str, Any]:
    """Instructions per job of the AI workload (bench.aiload) and per progress update."""
    from bench.aiload import run_aiload

    label = f"empq/{transport}" if kind == "empq" else kind
    with counted_hub(kind, out, transport) as (url, procs):
        hooks = AiHooks(procs, warmup_s=5.0)
        result = asyncio.run(run_aiload(url, ai, label, hooks=hooks))
        base = {p.name: p.dump() for p in procs}
    done = sum(r["completed"] for r in result["rounds"])
    base_done = result.get("baseline", {}).get("completed", 0)
    per_job = {name: round(n / done) for name, n in hooks.main.items()} if done else {}
    base_per_job = {name: round(n / base_done) for name, n in base.items()} if base_done else {}
    per_update = {
        name: round((per_job[name] - base_per_job[name]) / ai.steps)
        for name in per_job
        if name in base_per_job and ai.steps
    }
    return {
        "kind": label,
        "completed": done,
        "per_job": per_job,
        "baseline_per_job": base_per_job,
        "per_update": per_update,
        "run": result,
    }


@contextlib.contextmanager
def counted_hub(kind: str, out: Path, transport: str) -> Any:
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
            )  # fmt: skip
            procs.append(redis)
            wait_listening(redis_port, procs)
            hub_argv = empq_command(
                "hub", "--redis-url", f"redis://127.0.0.1:{redis_port}/0", "--ws-port", str(port),
                "--http-port", "-1", "--log-level", "warning", "--transport", transport,
            )  # fmt: skip
            procs.append(Counted("hub", [shutil.which(hub_argv[0]) or hub_argv[0], *hub_argv[1:]], out))
        else:
            seconds = str(MEASURE_TIMEOUT)
            argv = module_command("bench.null_hub", "--port", str(port), "--max-seconds", seconds)
            procs.append(Counted("null", argv, out))
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


def ai_config(args: argparse.Namespace) -> Any:
    """A small, steady AI workload: under callgrind a hub runs ~50x slower, so few jobs a second;
    no idle claim timer nor heartbeats (their cost follows the clock, not the jobs)."""
    from bench.aiload_workers import AiConfig

    return AiConfig(
        workers=args.ai_workers, monitors=4, clients=2, steps=20, min_s=1.0, max_s=3.0, rates=[4.0],
        seconds=25.0, baseline_rate=4.0, driver_procs=2, p99_ms=1e9, idle_claim_s=0.0, heartbeats=False,
    )  # fmt: skip


def ai_table(rows: list[dict[str, Any]]) -> str:
    lines = [f"{'':20}{'jobs':>6}   instructions per job (by process); per progress update"]
    for r in rows:
        parts = " + ".join(f"{n:,} {name}" for name, n in r["per_job"].items())
        update = " + ".join(f"{n:,} {name}" for name, n in r["per_update"].items())
        base = " + ".join(f"{n:,} {name}" for name, n in r["baseline_per_job"].items())
        lines.append(f"{r['kind']:20}{r['completed']:>6}   {parts}; per update {update} (no updates: {base})")
    null = next((r["per_job"].get("null") for r in rows if r["per_job"].get("null")), None)
    for r in rows:
        if r["per_job"].get("hub") and null:
            lines.append(f"{r['kind']} hub ÷ null hub: {r['per_job']['hub'] / null:.2f}")
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
        help="the AI workload instead (bench.aiload, small: --ai-workers workers, 4 monitors, "
        "jobs of 1-3 s with 20 updates at 4 jobs/s for 25 s, then as many without updates)",
    )  # fmt: skip
    p.add_argument("--ai-workers", type=int, default=200)
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
    rows = []
    with tempfile.TemporaryDirectory(prefix="empq-callgrind-") as tmp:
        out = args.keep or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        for kind in args.only.split(","):
            for transport in args.transport.split(",") if kind.strip() == "empq" else ["-"]:
                print(f"… {kind} {transport} under callgrind", flush=True)
                if args.aiload:
                    rows.append(measure_aiload(kind.strip(), ai_config(args), out, transport.strip()))
                else:
                    rows.append(measure(kind.strip(), cfg, args.warmup, out, transport.strip()))
    if args.aiload:
        print(
            f"AI workload: {args.ai_workers} workers, 4 monitors, 2 clients, 20 updates per job, "
            "4 jobs/s for 25 s (after a 5 s warm-up), then 4 jobs/s without updates for 25 s"
        )
        print(ai_table(rows))
        if args.json_out:
            args.json_out.write_text(json.dumps(rows, indent=2, default=str))
        return 0
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
