"""The hub on production Redis deployments (Debian's redis-server 7, started here on 127.0.0.1):

    python -m bench.redis_deployments spread [--jobs 6000] [--rounds 2]
        a 3-primary Redis Cluster; three ``empq hub`` processes, each loaded by its own job
        clients and workers: all three in one hub group (one key prefix: one slot, one shard)
        vs three groups with their own prefixes, each on another shard; and one hub alone
    python -m bench.redis_deployments wait [--jobs 3000] [--rounds 3]
        a primary with one replica: the lifecycle load with asynchronous replication vs
        ``--redis-wait-replicas 1`` (WAIT after each batch of Redis calls), one job in flight and
        under load, runs alternated

The lifecycle load is ``bench.lifecycle``'s (job clients submit no-op jobs, workers claim,
accept, report progress and complete them); jobs/s = completed jobs / time from the first submit
to the last completion, summed over the hubs of a run. Every process shares the machine's cores.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import tempfile
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

from empq.hub.redis_url import key_slot

from bench import module_command
from bench.lifecycle import LoadConfig, cpu_seconds_of, empq_hub_subprocess
from bench.redis_servers import Cluster, RedisProcess, free_port, redis7_missing, wait_until


def prefixes_on(cluster: Cluster, nodes: list[RedisProcess]) -> list[str]:
    """One key prefix per node, each in a slot that node serves."""
    out = []
    for node in nodes:
        while True:
            prefix = f"{{bench-{uuid.uuid4().hex[:6]}}}"
            if cluster.owner(key_slot(f"{prefix}:x")) is node:
                out.append(prefix)
                break
    return out


async def load_hubs(
    urls_and_args: list[tuple[str, tuple[str, ...]]], cfg: LoadConfig, redis_pids: list[int], label: str
) -> dict[str, Any]:
    """One hub subprocess per entry, each loaded by its own ``bench.lifecycle`` process (the load
    generator is a process per hub, so it does not cap the sum), all at once; summed figures."""
    share = replace(cfg, jobs=cfg.jobs // len(urls_and_args))
    async with contextlib.AsyncExitStack() as stack:
        hubs = [
            await stack.enter_async_context(empq_hub_subprocess(cfg.seconds + 60, url, args))
            for url, args in urls_and_args
        ]
        out = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="empq-bench-runs-")))
        hub0 = [cpu_seconds_of(pid) or 0.0 for _, pid, _ in hubs]
        redis0 = [cpu_seconds_of(pid) or 0.0 for pid in redis_pids]
        drivers = [
            await asyncio.create_subprocess_exec(
                *module_command(
                    "bench.lifecycle",
                    "--url",
                    ws,
                    "--clients",
                    str(share.clients),
                    "--workers",
                    str(share.workers),
                    "--jobs",
                    str(share.jobs),
                    "--in-flight",
                    str(share.in_flight),
                    "--seconds",
                    str(share.seconds),
                    "--json",
                    str(out / f"{i}.json"),
                ),
                stdout=asyncio.subprocess.DEVNULL,
            )  # fmt: skip
            for i, (ws, _, _) in enumerate(hubs)
        ]
        await asyncio.gather(*(d.wait() for d in drivers))
        hub1 = [cpu_seconds_of(pid) or 0.0 for _, pid, _ in hubs]
        redis1 = [cpu_seconds_of(pid) or 0.0 for pid in redis_pids]
        runs = [json.loads((out / f"{i}.json").read_text())["runs"][0] for i in range(len(hubs))]
    return {
        "label": label,
        "hubs": len(runs),
        "completed": sum(r["completed"] for r in runs),
        "errors": sum(sum(r["errors"].values()) for r in runs),
        "jobs_per_s": round(sum(r["jobs_per_s"] for r in runs), 1),
        "completed_p50_ms": [round(r["submit_to_completed"]["p50_ms"], 2) for r in runs],
        "hub_cpu_s": [round(b - a, 2) for a, b in zip(hub0, hub1, strict=True)],
        "redis_cpu_s_per_node": [round(b - a, 2) for a, b in zip(redis0, redis1, strict=True)],
        "wall_s": round(max(r["wall_s"] for r in runs), 2),
    }


async def spread(args: argparse.Namespace) -> list[dict[str, Any]]:
    cfg = LoadConfig(clients=2, workers=4, jobs=args.jobs, in_flight=50, seconds=args.seconds)
    results = []
    with (
        tempfile.TemporaryDirectory(prefix="empq-bench-cluster-") as d,
        Cluster(Path(d), masters=3) as cluster,
    ):
        primaries = cluster.nodes[:3]
        pids = [n.process.pid for n in primaries if n.process is not None]
        seed = cluster.url(primaries[0])
        for round_ in range(args.rounds):
            own = prefixes_on(cluster, primaries)
            shared = prefixes_on(cluster, primaries[:1]) * 3
            plans = [
                ("1 hub, 1 prefix", [(seed, ("--key-prefix", own[0]))], replace(cfg, jobs=cfg.jobs // 3)),
                ("3 hubs, 1 prefix (1 shard)", [(seed, ("--key-prefix", p)) for p in shared], cfg),
                ("3 hubs, 3 prefixes (3 shards)", [(seed, ("--key-prefix", p)) for p in own], cfg),
            ]
            for label, hubs, plan_cfg in plans:
                r = await load_hubs(hubs, plan_cfg, pids, label)
                r["round"] = round_ + 1
                results.append(r)
                print(
                    f"round {round_ + 1}  {label:30} {r['jobs_per_s']:8.1f} jobs/s  done {r['completed']}"
                    f"  errors {r['errors']}  p50 ms {r['completed_p50_ms']}  hub CPU s {r['hub_cpu_s']}"
                    f"  redis CPU s per primary {r['redis_cpu_s_per_node']}",
                    flush=True,
                )
    return results


async def wait_cost(args: argparse.Namespace) -> list[dict[str, Any]]:
    results = []
    with tempfile.TemporaryDirectory(prefix="empq-bench-wait-") as d:
        primary = RedisProcess(Path(d) / "primary", free_port()).start()
        replica = RedisProcess(
            Path(d) / "replica", free_port(), {"replicaof": f"127.0.0.1 {primary.port}"}
        )  # fmt: skip
        try:
            replica.start()
            wait_until(
                lambda: replica.connection().info("replication")["master_link_status"] == "up", 20, "sync"
            )
            url = f"redis://127.0.0.1:{primary.port}"
            pids = [p.process.pid for p in (primary, replica) if p.process is not None]
            shapes = {
                "single": LoadConfig(
                    clients=1, workers=1, in_flight=1, jobs=args.jobs // 2, seconds=args.seconds
                ),
                "load": LoadConfig(clients=4, workers=8, in_flight=50, jobs=args.jobs, seconds=args.seconds),
            }
            for round_ in range(args.rounds):
                for shape, cfg in shapes.items():
                    for wait in (0, 1):
                        flags = (
                            "--key-prefix",
                            f"{{bench-{uuid.uuid4().hex[:6]}}}",
                            "--redis-wait-replicas",
                            str(wait),
                        )
                        label = f"{shape}, WAIT {wait}" if wait else f"{shape}, async"
                        r = await load_hubs([(url, flags)], cfg, pids, label)
                        r["round"] = round_ + 1
                        results.append(r)
                        print(
                            f"round {round_ + 1}  {label:16} {r['jobs_per_s']:8.1f} jobs/s  p50 ms "
                            f"{r['completed_p50_ms'][0]}  errors {r['errors']}  hub CPU s {r['hub_cpu_s'][0]}"
                            f"  redis CPU s primary/replica {r['redis_cpu_s_per_node']}",
                            flush=True,
                        )
        finally:
            replica.stop()
            primary.stop()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("spread", "wait"))
    parser.add_argument("--jobs", type=int, default=None, help="jobs per run (spread: 6000, wait: 3000)")
    parser.add_argument("--rounds", type=int, default=None, help="repetitions (spread: 2, wait: 3)")
    parser.add_argument("--seconds", type=float, default=60.0, help="time bound of each run")
    parser.add_argument("--json", dest="json_out", help="write the figures here")
    args = parser.parse_args(argv)
    missing = redis7_missing()
    if missing:
        print(f"cannot run: {missing}", file=sys.stderr)
        return 2
    if args.what == "spread":
        args.jobs, args.rounds = args.jobs or 6000, args.rounds or 2
        results = asyncio.run(spread(args))
    else:
        args.jobs, args.rounds = args.jobs or 3000, args.rounds or 3
        results = asyncio.run(wait_cost(args))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
