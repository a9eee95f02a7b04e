"""``empq conformance URL``: check a hub against the protocol reference."""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from empq.conformance.ctx import Options
from empq.conformance.model import Result, all_cases, select
from empq.conformance.report import RunInfo, summary_line, write_reports
from empq.conformance.runner import Settings, exit_code, run

from empq.cli import command

LABEL = {"passed": "PASS", "failed": "FAIL", "skipped": "SKIP", "error": "ERROR"}


def configure(p: argparse.ArgumentParser) -> None:
    env = os.environ.get
    p.add_argument("url", nargs="?", help="the hub, e.g. ws://their-hub:3002 (not needed with --list)")
    p.add_argument("--cases", action="append", metavar="GLOB", help="run only case ids matching (repeatable)")
    p.add_argument("--exclude", action="append", metavar="GLOB", help="skip case ids matching (repeatable)")
    p.add_argument("--list", action="store_true", help="print every case id, tier and title, then exit")
    p.add_argument("--timeout", type=float, default=3.0, metavar="S", help="seconds per step (default 3)")
    p.add_argument(
        "--case-timeout", type=float, default=8.0, metavar="S", help="seconds per case (default 8)"
    )
    p.add_argument("--client-token", default=env("EMPQ_CONFORMANCE_CLIENT_TOKEN"), help="job client token")
    p.add_argument("--worker-token", default=env("EMPQ_CONFORMANCE_WORKER_TOKEN"), help="worker token")
    p.add_argument("--monitor-token", default=env("EMPQ_CONFORMANCE_MONITOR_TOKEN"), help="monitor token")
    p.add_argument(
        "--report", type=Path, metavar="DIR", help="write report.json, junit.xml and report.html here"
    )
    p.add_argument("--strict", action="store_true", help="SHOULD failures also make the exit code non-zero")
    p.add_argument("-q", "--quiet", action="store_true", help="no line per passing case")


def _progress(result: Result, quiet: bool) -> None:
    if quiet and result.outcome == "passed":
        return
    label = LABEL.get(result.outcome, result.outcome.upper())
    print(
        f"{label:<5} {result.id:<18} {result.tier:<6} {result.title} ({result.duration_ms:.0f} ms)",
        flush=True,
    )
    if result.outcome in ("failed", "error"):
        print(f"      {result.message}", flush=True)


@command("conformance", configure)
def main(args: argparse.Namespace) -> int:
    """Check a hub against the EmProps protocol reference: MUST/SHOULD/INFO cases, reports.

    Exit code 1 when a MUST case fails (with --strict, a SHOULD case too), 2 on bad usage.
    """
    cases = select(all_cases(), args.cases, args.exclude)
    if args.list:
        for c in cases:
            print(f"{c.id:<18} {c.tier.value:<6} {c.title}")
        print(f"{len(cases)} cases")
        return 0
    if not args.url:
        print("empq conformance: a hub URL is needed (e.g. ws://127.0.0.1:3002)", file=sys.stderr)
        return 2
    if not args.url.startswith(("ws://", "wss://")):
        print(f"empq conformance: {args.url!r} is not a ws:// or wss:// URL", file=sys.stderr)
        return 2
    if not cases:
        print("empq conformance: no case matches --cases/--exclude", file=sys.stderr)
        return 2
    options = Options(
        url=args.url,
        timeout=args.timeout,
        client_token=args.client_token or None,
        worker_token=args.worker_token or None,
        monitor_token=args.monitor_token or None,
    )
    started = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    print(f"empq conformance: {len(cases)} cases against {args.url}", flush=True)
    t0 = time.monotonic()
    results = run(
        cases,
        Settings(options=options, case_budget=args.case_timeout),
        lambda r: _progress(r, args.quiet),
    )
    duration = time.monotonic() - t0
    if args.report:
        info = RunInfo(
            url=args.url,
            started=started,
            duration_s=duration,
            options={
                "timeout": args.timeout,
                "tokens": options.has_tokens,
                "cases": args.cases,
                "exclude": args.exclude,
            },
        )
        paths = write_reports(results, args.report, info)
        print(f"reports: {', '.join(str(p) for p in paths.values())}")
    code = exit_code(results, args.strict)
    failed = [r for r in results if r.outcome in ("failed", "error") and r.tier in ("MUST", "SHOULD")]
    if failed:
        print(f"failed MUST/SHOULD cases: {', '.join(r.id for r in failed)}")
    print(f"run time {duration:.1f} s")
    print(summary_line(results))
    return code
