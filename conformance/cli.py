"""``empq conformance URL``: check a hub against the protocol reference."""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from empq.conformance.ctx import TOKEN_PLACES, Options
from empq.conformance.model import Result, all_cases, select
from empq.conformance.report import RunInfo, fix_first_text, root_causes, summary_line, write_reports
from empq.conformance.runner import Settings, exit_code, run

from empq.cli import command

LABEL = {"passed": "PASS", "failed": "FAIL", "blocked": "BLOCK", "skipped": "SKIP", "error": "ERROR"}
WS = ("ws://", "wss://")


def _header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME:VALUE")
    return name.strip(), value.strip()


def configure(p: argparse.ArgumentParser) -> None:
    env = os.environ.get
    p.add_argument(
        "url",
        nargs="?",
        help="the hub, e.g. ws://their-hub:3002: every role's URL unless given below (not with --list)",
    )
    for role in ("client", "worker", "monitor"):
        p.add_argument(
            f"--{role}-url",
            metavar="URL",
            help=f"the {role}s' URL; {{id}} becomes each connection's own "
            f"{'worker' if role == 'worker' else 'client'} id (e.g. ws://hub/ws/{role}/{{id}})",
        )
    p.add_argument(
        "--header",
        action="append",
        type=_header,
        default=[],
        metavar="NAME:VALUE",
        help="an HTTP header for every handshake (repeatable)",
    )
    p.add_argument("--cases", action="append", metavar="GLOB", help="run only case ids matching (repeatable)")
    p.add_argument("--exclude", action="append", metavar="GLOB", help="skip case ids matching (repeatable)")
    p.add_argument("--list", action="store_true", help="print every case id, tier and title, then exit")
    p.add_argument("--timeout", type=float, default=3.0, metavar="S", help="seconds per step (default 3)")
    p.add_argument(
        "--case-timeout", type=float, default=8.0, metavar="S", help="seconds per case (default 8)"
    )
    p.add_argument(
        "--silence",
        type=float,
        default=1.0,
        metavar="S",
        help="seconds of quiet taken as 'nothing comes', e.g. a claim that finds no job (default 1)",
    )
    p.add_argument(
        "--concurrency",
        type=int,
        default=8,
        metavar="N",
        help="cases run side by side (default 8; 1 for a hub that does not keep jobs apart by service_type)",
    )
    p.add_argument("--client-token", default=env("EMPQ_CONFORMANCE_CLIENT_TOKEN"), help="job client token")
    p.add_argument("--worker-token", default=env("EMPQ_CONFORMANCE_WORKER_TOKEN"), help="worker token")
    p.add_argument("--monitor-token", default=env("EMPQ_CONFORMANCE_MONITOR_TOKEN"), help="monitor token")
    p.add_argument(
        "--token-in",
        choices=TOKEN_PLACES,
        default="message",
        help="where a role's token goes: the register message's auth_token (default), "
        "an Authorization: Bearer header or a ?token= query on the handshake",
    )
    p.add_argument(
        "--report", type=Path, metavar="DIR", help="write report.json, junit.xml and report.html here"
    )
    p.add_argument(
        "--strict",
        action="store_true",
        help="a schema violation in a received frame ends the case (default: recorded as a finding, "
        "the case goes on)",
    )
    p.add_argument(
        "--fail-on-should",
        action="store_true",
        help="failed or blocked SHOULD cases also make the exit code non-zero",
    )
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
    elif result.outcome == "blocked" and result.cause:
        print(f"      blocked by: {result.cause['title']}", flush=True)


@command("conformance", configure)
def main(args: argparse.Namespace) -> int:
    """Check a hub against the EmProps protocol reference: MUST/SHOULD/INFO cases, reports.

    Exit code 1 when a MUST case fails or is blocked (with --fail-on-should, a SHOULD case too),
    2 on bad usage.
    """
    cases = select(all_cases(), args.cases, args.exclude)
    if args.list:
        for c in cases:
            print(f"{c.id:<18} {c.tier.value:<6} {c.title}")
        print(f"{len(cases)} cases")
        return 0
    role_urls = {"client": args.client_url, "worker": args.worker_url, "monitor": args.monitor_url}
    url = args.url or (args.client_url if all(role_urls.values()) else None)
    if not url:
        print(
            "empq conformance: a hub URL is needed (e.g. ws://127.0.0.1:3002), or all three of "
            "--client-url, --worker-url and --monitor-url",
            file=sys.stderr,
        )
        return 2
    for given in (url, *filter(None, role_urls.values())):
        if not given.startswith(WS):
            print(f"empq conformance: {given!r} is not a ws:// or wss:// URL", file=sys.stderr)
            return 2
    if not cases:
        print("empq conformance: no case matches --cases/--exclude", file=sys.stderr)
        return 2
    options = Options(
        url=url,
        timeout=args.timeout,
        client_token=args.client_token or None,
        worker_token=args.worker_token or None,
        monitor_token=args.monitor_token or None,
        client_url=args.client_url,
        worker_url=args.worker_url,
        monitor_url=args.monitor_url,
        headers=dict(args.header),
        token_in=args.token_in,
        strict=args.strict,
        silence=args.silence,
    )
    started = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    urls = ", ".join(f"{r}s {u}" for r, u in role_urls.items() if u)
    print(f"empq conformance: {len(cases)} cases against {url}{f' ({urls})' if urls else ''}", flush=True)
    t0 = time.monotonic()
    outcome = run(
        cases,
        Settings(options=options, case_budget=args.case_timeout, concurrency=args.concurrency),
        lambda r: _progress(r, args.quiet),
    )
    results, findings = outcome.results, outcome.findings.ordered()
    duration = time.monotonic() - t0
    if args.report:
        info = RunInfo(
            url=url,
            started=started,
            duration_s=duration,
            options={
                "timeout": args.timeout,
                "tokens": options.has_tokens,
                "token_in": args.token_in,
                "client_url": args.client_url,
                "worker_url": args.worker_url,
                "monitor_url": args.monitor_url,
                "headers": sorted(name for name, _ in args.header),
                "strict": args.strict,
                "concurrency": args.concurrency,
                "cases": args.cases,
                "exclude": args.exclude,
            },
        )
        paths = write_reports(results, args.report, info, findings)
        print(f"reports: {', '.join(str(p) for p in paths.values())}")
    print()
    print(fix_first_text(root_causes(results, findings)))
    print()
    code = exit_code(results, args.fail_on_should)
    failed = [r for r in results if r.outcome in ("failed", "error") and r.tier in ("MUST", "SHOULD")]
    if failed:
        print(f"failed MUST/SHOULD cases: {', '.join(r.id for r in failed)}")
    print(f"run time {duration:.1f} s")
    print(summary_line(results))
    return code
