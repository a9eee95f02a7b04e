"""Redis calls per job: the commands the hub sends to Redis for a fixed job stream, counted.

    python -m bench.redis_calls [--jobs 300] [--warmup 30] [--progress-steps 1] [--json out.json]

A redis-server (no persistence) and ``empq hub`` on it, bench/lifecycle.py's load (as
bench.instructions: 8 workers, 2 clients, 16 in flight, no-op jobs); during the measured stream a
``MONITOR`` connection sees every command. Those a client sent (the hub's) are counted by name, a
script call by its script's name (its SHA1 matched to ``hub/lua``); the commands scripts run
inside Redis (``[0 lua]`` in MONITOR) are counted apart. Printed per completed job. The hub's
timers (sweep, registry) run every second, as under bench.instructions.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import hashlib
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench import empq_command
from bench.instructions import free_port, redis_binary
from bench.lifecycle import LoadConfig, run_load

LINE = re.compile(rb'^\+[\d.]+ \[\d+ ([^\]]+)\] "(\w+)"(?: "([0-9a-f]{40})")?')


def script_names() -> dict[str, str]:
    """SHA1 of each script as the hub loads it -> its name."""
    from empq.hub.redis_batch import load_lua
    from empq.hub.store import SCRIPTS

    return {hashlib.sha1(load_lua(n).encode()).hexdigest(): n for n in SCRIPTS}


class Monitor:
    """A MONITOR connection read on a thread: commands by name, sent by clients and run by scripts."""

    def __init__(self, port: int, names: dict[str, str]) -> None:
        self.names = names
        self.sent: collections.Counter[str] = collections.Counter()
        self.in_scripts: collections.Counter[str] = collections.Counter()
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.sendall(b"MONITOR\r\n")
        self.file = self.sock.makefile("rb")
        assert self.file.readline().startswith(b"+OK")
        self.counting = False
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        while not self.stop.is_set():
            line = self.file.readline()
            if not line:
                return
            found = LINE.match(line)
            if found is None or not self.counting:
                continue
            who, command, sha = found.group(1), found.group(2).decode().upper(), found.group(3)
            if who == b"lua":
                self.in_scripts[command] += 1
            elif command == "EVALSHA" and sha:
                self.sent[f"EVALSHA {self.names.get(sha.decode(), sha.decode()[:8])}"] += 1
            else:
                self.sent[command] += 1

    def close(self) -> None:
        self.stop.set()
        self.sock.close()
        self.thread.join(5)


def wait_listening(port: int, procs: list[subprocess.Popen[bytes]], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in procs):
            raise RuntimeError("a process exited while starting (see its log)")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"nothing listening on {port} after {timeout:.0f} s")


def measure(cfg: LoadConfig, warmup: int, transport: str, out: Path) -> dict[str, Any]:
    redis_port, port = free_port(), free_port()
    env = {**os.environ, "EMPQ_SWEEP_INTERVAL_MS": "1000", "EMPQ_STATUS_INTERVAL_MS": "60000"}
    log = open(out / "procs.log", "wb")  # noqa: SIM115 - closed below
    procs = [
        subprocess.Popen(
            [redis_binary(), "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
    ]  # fmt: skip
    monitor = None
    try:
        wait_listening(redis_port, procs)
        hub_argv = empq_command(
            "hub", "--redis-url", f"redis://127.0.0.1:{redis_port}/0", "--ws-port", str(port),
            "--http-port", "-1", "--log-level", "warning", "--transport", transport,
        )  # fmt: skip
        procs.append(
            subprocess.Popen(
                hub_argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
            )
        )
        wait_listening(port, procs)
        url = f"ws://127.0.0.1:{port}"
        warm = LoadConfig(**{**cfg.__dict__, "jobs": warmup})
        asyncio.run(run_load(url, warm, label="warm-up"))
        monitor = Monitor(redis_port, script_names())
        time.sleep(0.2)
        monitor.counting = True
        result = asyncio.run(run_load(url, cfg, label="empq"))
        time.sleep(0.2)  # the last replies' commands seen
        monitor.counting = False
    finally:
        if monitor is not None:
            monitor.close()
        for p in reversed(procs):
            p.terminate()
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
        log.close()
    done = result["completed"]
    assert monitor is not None
    return {
        "transport": transport,
        "completed": done,
        "sent_per_job": {k: round(n / done, 2) for k, n in monitor.sent.most_common()},
        "in_scripts_per_job": {k: round(n / done, 2) for k, n in monitor.in_scripts.most_common()},
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=300)
    p.add_argument("--warmup", type=int, default=30)
    p.add_argument("--workers", type=int, default=8)
    p.add_argument("--clients", type=int, default=2)
    p.add_argument("--in-flight", type=int, default=16)
    p.add_argument("--progress-steps", type=int, default=1)
    p.add_argument("--transport", default="websockets")
    p.add_argument("--json", type=Path, dest="json_out")
    args = p.parse_args(argv)
    cfg = LoadConfig(
        clients=args.clients,
        workers=args.workers,
        jobs=args.jobs,
        in_flight=args.in_flight,
        progress_steps=args.progress_steps,
        seconds=300.0,
    )
    cfg.check()
    with tempfile.TemporaryDirectory(prefix="empq-calls-") as tmp:
        row = measure(cfg, args.warmup, args.transport, Path(tmp))
    sent, inner = row["sent_per_job"], row["in_scripts_per_job"]
    print(
        f"{row['completed']} jobs ({args.workers} workers, {args.clients} clients, "
        f"{args.in_flight} in flight, {args.progress_steps} progress update(s) per job), "
        f"hub on {args.transport}"
    )
    print(f"Redis calls per job sent by the hub: {sum(sent.values()):.2f}")
    for name, n in sent.items():
        print(f"  {n:>6.2f}  {name}")
    print(f"commands run inside scripts per job: {sum(inner.values()):.2f}")
    print("  " + ", ".join(f"{n:g} {name}" for name, n in inner.items()))
    if args.json_out:
        args.json_out.write_text(json.dumps(row, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
