"""The AI workload counted by callgrind (``python -m bench.instructions --aiload``): instructions per
job and per progress update, with the per-second costs of the connected peers subtracted.

Under valgrind a hub runs ~50x slower, and what the connected workers, monitors and clients cost
per second whether jobs run or not (the hub's timers: deadline sweep, registry refresh, signs of
life; Redis' cron; WebSocket keep-alive pings) is as large as what one job a second costs. So, with
every peer connected and a few jobs run to warm up, four windows of the same length are counted,
each from zeroing the counters (``callgrind_control -z``) to a dump (``-d``), in every process:

1. idle: nothing submitted;
2. updates: ``--ai-jobs`` jobs at ``--ai-rate`` jobs/s, each sending ``--ai-steps`` progress updates;
3. plain: as many jobs, no updates;
4. idle again.

The two idle windows give each process's instructions per second (both rates are shown: how far
apart they are is the uncertainty the subtraction carries). A job window's count minus that rate
times its length (as timed around the control commands), divided by its jobs, is the cost per job;
(per job with updates - per job without) / steps, the cost per update. Every job of a counted
window must complete inside it, else the figure is refused (``FigureRefused``): jobs still running
at the dump, or left for the next window, make the count meaningless.

The hub runs with heartbeats not required (``EMPQ_HEARTBEAT_TIMEOUT_MS`` an hour: the workers do
not heartbeat, so an idle worker is never reaped mid-run) and no ``system_status`` round (it comes
once a minute: a lump one window would have and another not); the workers claim only when told
``job_available`` (no idle claim timer). At one job a second a job's updates rarely share an
event-loop tick with another job's, so the per-update figure is the cost without that sharing.

Keep ``--ai-window`` a multiple of 20 s: the WebSocket keep-alive pings (websockets' default, one
per connection every 20 s, in both hubs) are most of what the null hub does idle, and a window of
another length holds a varying number of them (a 15 s idle window of the null hub counted 3.1 M
instructions in one trial and 577 in the next).
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

AI_ENV = {"EMPQ_HEARTBEAT_TIMEOUT_MS": "3600000", "EMPQ_STATUS_INTERVAL_MS": "3600000"}
SETTLE_S = 3.0  # after switching instrumentation on (callgrind re-translates all code)


class FigureRefused(Exception):
    """The counted windows cannot give a figure (the message says why)."""


@dataclass
class AiShape:
    """The AI workload as bench.instructions runs it under callgrind."""

    workers: int = 50
    monitors: int = 4
    clients: int = 2
    steps: int = 20
    min_s: float = 1.0
    max_s: float = 3.0
    rate: float = 1.0  # jobs/s in a job window
    jobs: int = 25  # per job window
    window_s: float = 40.0  # every counted window lasts this long
    warmup_jobs: int = 5

    def check(self) -> None:
        if min(self.workers, self.clients, self.jobs, self.steps) < 1 or self.monitors < 0 or self.rate <= 0:
            raise ValueError("--ai-workers, --ai-jobs, --ai-steps >= 1, --ai-monitors >= 0, --ai-rate > 0")
        need = self.jobs / self.rate + self.max_s + 5
        if self.window_s < need:
            raise ValueError(
                f"--ai-window {self.window_s:g} s cannot hold {self.jobs} jobs at {self.rate:g} jobs/s "
                f"of up to {self.max_s:g} s: at least {need:g} s"
            )

    def config(self) -> Any:
        from bench.aiload_workers import AiConfig

        return AiConfig(
            workers=self.workers, monitors=self.monitors, clients=self.clients, steps=self.steps,
            min_s=self.min_s, max_s=self.max_s, rates=[self.rate], seconds=(self.jobs + 0.5) / self.rate,
            baseline_rate=0.0, driver_procs=2, p99_ms=1e9, idle_claim_s=0.0, heartbeats=False,
        )  # fmt: skip

    def describe(self) -> str:
        return (
            f"{self.workers} workers, {self.monitors} monitors, {self.clients} clients; "
            f"{self.jobs} jobs of {self.min_s:g}-{self.max_s:g} s at {self.rate:g}/s per "
            f"{self.window_s:g} s window, with {self.steps} updates each, then without; "
            "two idle windows of the same length subtracted"
        )


@dataclass
class Window:
    """One counted window: instructions and counted seconds by process, the jobs it ran."""

    kind: str  # "idle", "updates", "plain" ("warm-up": not counted, only checked)
    counts: dict[str, int]
    seconds: dict[str, float]
    steps: int = 0
    submitted: int = 0
    completed: int = 0
    failed: int = 0  # failed or refused
    info: dict[str, Any] = field(default_factory=dict)


def ai_figures(windows: list[Window]) -> dict[str, Any]:
    """Instructions per second idle, per job with and without updates, per update, by process.

    Raises FigureRefused when a job window did not complete all its jobs, a kind of window is
    missing, or what is left after the subtraction is not positive."""
    for w in windows:
        if w.kind != "idle" and (w.submitted < 1 or w.completed != w.submitted or w.failed):
            raise FigureRefused(
                f"{w.kind} window: {w.completed} of {w.submitted} jobs completed ({w.failed} failed or "
                "refused): the hub under valgrind did not keep up; lower --ai-rate or --ai-workers, "
                "or lengthen --ai-window"
            )
    idle = [w for w in windows if w.kind == "idle"]
    jobs = {kind: [w for w in windows if w.kind == kind] for kind in ("updates", "plain")}
    if not idle or not all(jobs.values()):
        raise FigureRefused("need an idle, an updates and a plain window")
    names = list(idle[0].counts)
    idle_per_s = {n: sum(w.counts[n] for w in idle) / sum(w.seconds[n] for w in idle) for n in names}
    per_job: dict[str, dict[str, float]] = {}
    fixed_share: dict[str, dict[str, float]] = {}
    for kind, ws in jobs.items():
        gross = {n: sum(w.counts[n] for w in ws) for n in names}
        fixed = {n: idle_per_s[n] * sum(w.seconds[n] for w in ws) for n in names}
        done = sum(w.completed for w in ws)
        if any(gross[n] <= fixed[n] for n in names):
            raise FigureRefused(
                f"{kind} window: the idle windows' rate times its length is more than its count "
                f"({ {n: gross[n] for n in names} } counted, { {n: round(fixed[n]) for n in names} } idle)"
            )
        per_job[kind] = {n: (gross[n] - fixed[n]) / done for n in names}
        fixed_share[kind] = {n: round(fixed[n] / gross[n], 3) for n in names}
    steps = {kind: ws[0].steps for kind, ws in jobs.items()}
    if (
        any(w.steps != steps[kind] for kind, ws in jobs.items() for w in ws)
        or steps["updates"] <= steps["plain"]
    ):
        raise FigureRefused(f"updates windows need more steps than plain ones: {steps}")
    per_update = {
        n: (per_job["updates"][n] - per_job["plain"][n]) / (steps["updates"] - steps["plain"]) for n in names
    }
    if any(v <= 0 for v in per_update.values()):
        raise FigureRefused(
            f"an update costs nothing after the subtraction ({per_update}): the windows disagree"
        )
    return {
        "idle_per_s": {n: round(v) for n, v in idle_per_s.items()},
        "idle_per_s_by_window": [{n: round(w.counts[n] / w.seconds[n]) for n in names} for w in idle],
        "per_job": {n: round(v) for n, v in per_job["updates"].items()},
        "per_job_plain": {n: round(v) for n, v in per_job["plain"].items()},
        "per_update": {n: round(v) for n, v in per_update.items()},
        "fixed_share": fixed_share,
        "steps": steps["updates"],
        "jobs": {kind: sum(w.completed for w in ws) for kind, ws in jobs.items()},
    }


# -- counting (valgrind) --------------------------------------------------------------------------


async def count_window(
    procs: list[Any], peers: Any, kind: str, steps: int | None, shape: AiShape, rng: random.Random
) -> Window:
    """Zero every process, run the window's jobs (none if ``steps`` is None), wait out the
    window's length, dump every process."""
    from bench.aiload import run_rate

    for p in procs:
        await asyncio.to_thread(p.zero)
    start = max(p.zeroed_at for p in procs)
    peers.stats["monitor_frames"] = 0
    row: dict[str, Any] = {}
    if steps is not None:
        row = await run_rate(peers.clients, shape.rate, steps, shape.config(), rng, {})
    rest = start + shape.window_s - time.monotonic()
    if rest > 0:
        await asyncio.sleep(rest)
    counts = {p.name: await asyncio.to_thread(p.dump) for p in procs}
    seconds = {p.name: round(p.dumped_at - p.zeroed_at, 3) for p in procs}
    info = {"monitor_frames": peers.stats["monitor_frames"]}
    if row:
        info.update(updates_received=row["updates_received"], wall_s=row["wall_s"])
    return Window(
        kind, counts, seconds, steps or 0, row.get("submitted", 0), row.get("completed", 0),
        row.get("failed", 0) + row.get("refused", 0), info,
    )  # fmt: skip


async def count_windows(url: str, shape: AiShape, procs: list[Any]) -> tuple[list[Window], dict[str, Any]]:
    """Connect the peers, warm up (jobs with updates, then without), switch counting on, count
    the windows: idle, updates, plain, idle."""
    from bench.aiload import connected, run_rate

    cfg = shape.config()
    rng = random.Random(cfg.seed)
    windows: list[Window] = []
    async with connected(url, cfg) as peers:
        await asyncio.sleep(1.0)  # the workers' first claims are answered
        warm_cfg = replace(cfg, seconds=(shape.warmup_jobs + 0.5) / shape.rate)
        for warm_steps in (shape.steps, 0):
            row = await run_rate(peers.clients, shape.rate, warm_steps, warm_cfg, rng, {})
            failed = row["failed"] + row["refused"]
            windows.append(Window("warm-up", {}, {}, warm_steps, row["submitted"], row["completed"], failed))
            if row["completed"] != row["submitted"]:
                return windows, {"connect_s": peers.connect_s}
        for p in procs:
            await asyncio.to_thread(p.control, "-i", "on")
        await asyncio.sleep(SETTLE_S)
        plan: list[tuple[str, int | None]] = [
            ("idle", None),
            ("updates", shape.steps),
            ("plain", 0),
            ("idle", None),
        ]
        for kind, steps in plan:
            print(f"  counting: {kind} window ({shape.window_s:g} s)", flush=True)
            w = await count_window(procs, peers, kind, steps, shape, rng)
            counted = ", ".join(f"{c:,} {k} in {w.seconds[k]:.1f} s" for k, c in w.counts.items())
            print(f"    {w.completed}/{w.submitted} jobs; {counted}", flush=True)
            windows.append(w)
    return windows, {"connect_s": peers.connect_s, "worker_stats": peers.worker_stats}


def measure_aiload(kind: str, shape: AiShape, out: Path, transport: str = "websockets") -> dict[str, Any]:
    """The AI workload's figures for ``kind`` (empq: hub and redis-server; null: the null hub);
    ``refused`` says why there is none."""
    from bench.instructions import counted_hub

    label = f"empq/{transport}" if kind == "empq" else kind
    with counted_hub(kind, out, transport, AI_ENV) as (url, procs):
        windows, info = asyncio.run(count_windows(url, shape, procs))
    row: dict[str, Any] = {"kind": label, "windows": [asdict(w) for w in windows], **info}
    try:
        row.update(ai_figures(windows))
    except FigureRefused as exc:
        row["refused"] = str(exc)
    return row


def ai_table(rows: list[dict[str, Any]]) -> str:
    """One line per process: idle instructions per second (both windows), per job with updates and
    without, per update; then the hub ÷ the null hub."""
    lines = [
        f"{'':22}{'jobs':>7}  {'idle per s (windows)':>32}  {'per job':>12}  "
        f"{'no updates':>11}  {'per update':>10}"
    ]
    for r in rows:
        if "refused" in r:
            lines.append(f"{r['kind']:22}REFUSED: {r['refused']}")
            continue
        jobs = f"{r['jobs']['updates']}+{r['jobs']['plain']}"
        for n in r["per_job"]:
            name = r["kind"] if n == r["kind"] else f"{r['kind']} {n}"
            both = " / ".join(f"{w[n]:,}" for w in r["idle_per_s_by_window"])
            idle = f"{r['idle_per_s'][n]:,} ({both})"
            lines.append(
                f"{name:22}{jobs:>7}  {idle:>32}  "
                f"{r['per_job'][n]:>12,}  {r['per_job_plain'][n]:>11,}  {r['per_update'][n]:>10,}"
            )
        if len(r["per_job"]) > 1:
            total = {k: sum(r[k].values()) for k in ("per_job", "per_job_plain", "per_update")}
            lines.append(
                f"{r['kind'] + ' total':22}{'':7}  {'':32}  {total['per_job']:>12,}  "
                f"{total['per_job_plain']:>11,}  {total['per_update']:>10,}"
            )
    null = next((r for r in rows if "refused" not in r and "null" in r["per_job"]), None)
    for r in rows:
        if null is not None and "refused" not in r and "hub" in r["per_job"]:
            lines.append(
                f"{r['kind']} hub ÷ null hub: per job {r['per_job']['hub'] / null['per_job']['null']:.2f}, "
                f"per update {r['per_update']['hub'] / null['per_update']['null']:.2f}"
            )
    return "\n".join(lines)
