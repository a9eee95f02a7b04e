"""CPU per Redis call of the hub's RESP client, pipelined as ``RedisBatch`` sends (a batch of
calls per event-loop tick), against a real redis-server — and the same with the client of
another git revision, runs alternated, to see what a change to ``hub/resp.py`` costs the hot path:

    python -m bench.resp_client [--compare c090ddc] [--calls 200000] [--batch 20] [--rounds 5]

Each run sends ``--calls`` EVALSHA calls (a one-line Lua script reading one key, like the hub's
transitions) in batches of ``--batch`` through ``send_now``, waits for the batch's replies, and
reports the client process's CPU µs per call (``time.process_time``: less disturbed by other
load on the machine than wall time) and calls/s. Over TCP (``redis://``, given the key prefix:
the path that first checks for a Redis Cluster) and over the unix socket.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

from empq.hub import resp
from empq.hub.embedded_redis import EmbeddedRedis

from bench import REPO

SCRIPT = "return redis.call('GET', KEYS[1])"
PREFIX = "{bench-resp}"


def module_of(revision: str) -> ModuleType:
    """``hub/resp.py`` as it was at ``revision`` (git), imported under another name."""
    source = subprocess.run(
        ["git", "show", f"{revision}:hub/resp.py"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    path = Path(tempfile.mkdtemp(prefix="empq-resp-")) / f"resp_{revision}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(f"resp_{revision}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def one_run(module: ModuleType, url: str, calls: int, batch: int) -> dict[str, float]:
    try:
        client = module.RespClient(url, slot_key=PREFIX)
    except TypeError:  # a client from before slot keys
        client = module.RespClient(url)
    try:
        sha = await client.execute("SCRIPT", "LOAD", SCRIPT)
        command = ("EVALSHA", sha, 1, f"{PREFIX}:k", "x")
        loop = asyncio.get_running_loop()
        cpu, wall = time.process_time(), time.perf_counter()
        for _ in range(calls // batch):
            futures = [loop.create_future() for _ in range(batch)]
            if not client.send_now([command] * batch, futures):
                await client.send_many([command] * batch, futures)
            await asyncio.gather(*futures)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    finally:
        await client.close()
    done = calls // batch * batch
    return {"cpu_us_per_call": 1e6 * cpu / done, "calls_per_s": done / wall}


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    implementations = {"this checkout": resp}
    if args.compare:
        implementations[args.compare] = module_of(args.compare)
    results: dict[str, dict[str, list[dict[str, float]]]] = {}
    with tempfile.TemporaryDirectory(prefix="empq-bench-resp-") as d:
        server = EmbeddedRedis(Path(d), port=_free_port())
        server.start()
        try:
            urls = {"tcp": f"redis://127.0.0.1:{server.port}/0", "unix": f"unix://{server.socket}?db=0"}
            for round_ in range(args.rounds):
                for transport, url in urls.items():
                    for name, module in implementations.items():
                        r = await one_run(module, url, args.calls, args.batch)
                        results.setdefault(transport, {}).setdefault(name, []).append(r)
                        print(
                            f"round {round_ + 1} {transport:4} {name:14} {r['cpu_us_per_call']:6.2f} µs "
                            f"CPU/call  {r['calls_per_s']:9.0f} calls/s",
                            flush=True,
                        )
        finally:
            server.stop()
    print("\nmedian over the rounds")
    for transport, by_name in results.items():
        for name, runs in by_name.items():
            cpu = statistics.median(r["cpu_us_per_call"] for r in runs)
            rate = statistics.median(r["calls_per_s"] for r in runs)
            print(f"{transport:4} {name:14} {cpu:6.2f} µs CPU/call  {rate:9.0f} calls/s")
    return results


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compare", help="a git revision whose hub/resp.py runs alternately with this one")
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", dest="json_out")
    args = parser.parse_args(argv)
    results = asyncio.run(main_async(args))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
