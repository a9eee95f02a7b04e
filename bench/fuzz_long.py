"""Long fuzz run against a real hub (issue 8; run by hand, not in CI).

    python -m bench.fuzz_long [--frames 100000] [--seconds 600] [--url ws://...] [--drivers 4]
        [--pool 3000] [--seed 1] [--json out.json]

Same generators and checks as ``tests/fuzz`` (``tests/fuzz/fuzzframes.py``): a pool of frames is
drawn with hypothesis (valid frames for every inbound schema, near-valid, byte mutations, hostile:
non-UTF-8, oversized strings, deep nesting), then each frame sent is a pool frame, as drawn or
mutated again at byte level (seeded ``random``) — hypothesis draws ~100 frames/s, the hub takes
many more.  ``--drivers`` drivers run at once, each with a connection per role (job_client,
monitor, worker, unregistered) and a sentinel; after each frame a ping must come back (see
``Driver.fire``).  Without ``--url`` the script starts ``empq hub`` (embedded Redis in a temp
dir).  Crashes = hub process died + sentinel failures + a failed final job lifecycle; check
failures (a frame answered wrongly) are counted and the first ones printed.  Stops at ``--frames``
or ``--seconds``, whichever is first.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "fuzz"))

from fuzzframes import MAX_FRAME, ROLES, Driver, FuzzFailure, Shot, any_frame  # noqa: E402
from hypothesis import HealthCheck, Phase, given, seed, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


def draw_pool(size: int, seed_: int) -> list[tuple[str, Shot]]:
    pool: list[tuple[str, Shot]] = []

    @settings(
        max_examples=size,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @seed(seed_)
    @given(role=st.sampled_from(ROLES), shot=any_frame())
    def collect(role: str, shot: Shot) -> None:
        if len(shot.data) <= MAX_FRAME:
            pool.append((role, shot))

    collect()
    return pool


def mutate(rng: random.Random, shot: Shot) -> Shot:
    data = bytearray(shot.data)
    for _ in range(rng.randint(1, 6)):
        op = rng.random()
        at = rng.randrange(len(data)) if data else 0
        if op < 0.3 and data:
            data[at] ^= 1 << rng.randrange(8)
        elif op < 0.6:
            data[at:at] = rng.randbytes(rng.randint(1, 6))
        elif op < 0.85 and data:
            del data[at : at + rng.randint(1, 6)]
        elif data:
            data[at] = rng.choice(b'{}[]",:\\0\xff')
    out = bytes(data)
    try:
        out.decode("utf-8")
        binary = False
    except UnicodeDecodeError:
        binary = True
    return Shot(out, "bytes", binary=binary, aim=shot.aim)


async def run(args: argparse.Namespace, url: str, hub_alive: Any) -> dict[str, Any]:
    started = time.perf_counter()
    pool = await asyncio.to_thread(draw_pool, args.pool, args.seed)
    drew = time.perf_counter() - started
    print(f"pool: {len(pool)} frames drawn in {drew:.1f} s", flush=True)
    drivers = [Driver(url) for _ in range(args.drivers)]
    for driver in drivers:
        await driver.start()
    sent = 0
    failures: list[str] = []
    crashes = Counter[str]()
    deadline = time.monotonic() + args.seconds
    t0 = time.perf_counter()

    async def pump(i: int, driver: Driver) -> None:
        nonlocal sent
        rng = random.Random(args.seed * 1000 + i)
        while sent < args.frames and time.monotonic() < deadline:
            if not hub_alive():
                crashes["hub_died"] += 1
                return
            role, shot = rng.choice(pool)
            if rng.random() < 0.5:
                shot = mutate(rng, shot)
            sent += 1
            try:
                await asyncio.wait_for(
                    driver.fire(rng.choice(ROLES) if rng.random() < 0.3 else role, shot), 30
                )
            except (FuzzFailure, AssertionError, TimeoutError) as exc:
                failures.append(f"{type(exc).__name__}: {str(exc)[:600]}")
                for r in ROLES:  # start again from fresh connections
                    await driver._replace(r)
            if sent % 1000 == 0:
                try:
                    await driver.sentinel_ok()
                except Exception as exc:  # noqa: BLE001 - counted as a crash
                    crashes["sentinel"] += 1
                    failures.append(f"sentinel: {exc}")
                if sent % 10_000 == 0:
                    rate = sent / (time.perf_counter() - t0)
                    print(f"  {sent} frames, {rate:.0f}/s, failures {len(failures)}", flush=True)

    await asyncio.gather(*(pump(i, d) for i, d in enumerate(drivers)))
    elapsed = time.perf_counter() - t0
    for driver in drivers:
        try:
            await driver.sentinel_ok()
        except Exception as exc:  # noqa: BLE001
            crashes["sentinel"] += 1
            failures.append(f"sentinel at end: {exc}")
    try:
        await drivers[0].lifecycle()
        lifecycle = "ok"
    except Exception as exc:  # noqa: BLE001
        crashes["lifecycle"] += 1
        lifecycle = f"FAILED: {exc}"
    if not hub_alive():
        crashes["hub_died"] += 1
    for driver in drivers:
        await driver.stop()
    total = Counter[str]()
    families = Counter[str]()
    closes = Counter[str]()
    for driver in drivers:
        total.update(driver.replies)
        families.update(driver.families)
        closes.update(driver.closes)
    return {
        "frames": sum(d.frames for d in drivers),
        "seconds": round(elapsed, 1),
        "frames_per_s": round(sum(d.frames for d in drivers) / elapsed, 1),
        "pool": len(pool),
        "families": dict(families),
        "replies": dict(total.most_common()),
        "closes": dict(closes),
        "check_failures": len(failures),
        "first_failures": failures[:10],
        "crashes": sum(crashes.values()),
        "crash_kinds": dict(crashes),
        "final_lifecycle": lifecycle,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--frames", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--url", help="an already running hub (default: start one with an embedded Redis)")
    parser.add_argument("--drivers", type=int, default=4, help="drivers fuzzing at once")
    parser.add_argument("--pool", type=int, default=3000, help="frames drawn with hypothesis")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args(argv)
    if args.url:
        result = asyncio.run(run(args, args.url, lambda: True))
    else:
        from bench.idle_workers import HubProcess

        with tempfile.TemporaryDirectory(prefix="empq-fuzz-") as tmp:
            hub = HubProcess(Path(tmp), workers=64, heartbeat_s=20, log_level="warning")
            try:
                hub.wait_ready()
                result = asyncio.run(run(args, hub.url, lambda: hub.proc.poll() is None))
            finally:
                code = hub.stop()
                log_tail = hub.text()[-1500:] if hub.log.exists() else ""
            result["hub_exit_code"] = code
            if "Traceback" in log_tail:
                result["hub_log_tail"] = log_tail
    width = max(len(k) for k in result)
    for key, value in result.items():
        print(f"{key:<{width}}  {value}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0 if result["crashes"] == 0 and result["check_failures"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
