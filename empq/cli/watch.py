"""``empq watch``: live view of the queue (workers, queue depth, running jobs, throughput, job
events), updating in place on a terminal, one line (or JSON object) per update otherwise."""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import time
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from empq.cli import command
from empq.cli.common import (
    EXIT_OK,
    check,
    client_settings,
    clock,
    connection_options,
    consoles,
    escape,
    make_client,
    print_json,
    run_command,
    seconds,
    setting,
    styled,
)

if TYPE_CHECKING:
    from rich.console import RenderableType

    from empq.generated.defs.stats import Stats

MONITOR_PERMISSIONS = ["view_system_stats", "view_workers", "view_all_jobs"]


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--interval",
        type=float,
        metavar="S",
        help="seconds between stats updates (EMPQ_INTERVAL, default 1, at least 1)",
    )
    p.add_argument(
        "--seconds", type=seconds, metavar="S", help="stop after S seconds (default: until Ctrl-C)"
    )
    p.add_argument(
        "--as-client",
        action="store_true",
        help="watch as a job client (counts and your own jobs) instead of as a monitor (workers "
        "and all jobs; needs a monitor token when the hub requires tokens)",
    )
    p.add_argument(
        "--json", action="store_true", help="one JSON object per stats update or job event on stdout"
    )
    connection_options(p)


@command("watch", configure)
def watch(args: argparse.Namespace) -> int:
    """Live view of the queue: workers, queue depth, running jobs, throughput, job events.

    Registers as a monitor (view_system_stats, view_workers, view_all_jobs); --as-client watches
    with a job client's view. On a terminal the view updates in place; otherwise (or with --json)
    it prints one line per update.
    """
    return run_command("watch", lambda: prepare(args), interrupt_ok=True)


def prepare(args: argparse.Namespace) -> Coroutine[Any, Any, int]:
    """Check the arguments (the ``subscribe_stats`` and ``register_client`` models)."""
    from empq.generated.messages.subscribe_stats import SubscribeStats

    interval = setting(args, "interval", float, 1.0)
    check(SubscribeStats, {"interval_seconds": "--interval"}, interval_seconds=interval)
    if args.as_client:
        settings = client_settings(args)
    else:
        settings = client_settings(
            args,
            client_id=setting(args, "client_id", default="empq-watch"),
            client_type="monitor",
            permissions=MONITOR_PERMISSIONS,
        )
    return watch_queue(args, interval, settings)


class WatchView:
    """What ``empq watch`` shows: the latest stats and the latest job events."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.stats: Stats | None = None
        self.updated = 0
        self.events: collections.deque[str] = collections.deque(maxlen=12)

    def event(self, msg: Any) -> None:
        status = getattr(msg, "status", None)
        state = str(getattr(status, "value", status))
        progress = getattr(msg, "progress", None)
        text = getattr(msg, "message", None) or getattr(msg, "error", None) or ""
        percent = f" {progress:g}%" if progress is not None else ""
        line = f"{clock(msg.timestamp)} {msg.job_id} {styled(state)}{percent} {escape(text)}"
        self.events.append(line.rstrip())

    def summary(self, separator: str = " | ") -> str:
        stats = self.stats
        if stats is None:
            return "waiting for stats..."
        parts = []
        if stats.workers is not None:
            w = stats.workers
            parts.append(
                f"workers {w.total or 0} (idle {w.idle or 0}, busy {w.busy or 0}, draining {w.draining or 0})"
            )
        if stats.jobs is not None:
            j = stats.jobs
            running = (j.assigned or 0) + (j.accepted or 0) + (j.in_progress or 0)
            parts.append(
                f"queued {j.queued or 0}, running {running}, completed {j.completed or 0}, "
                f"failed {j.failed or 0}, cancelled {j.cancelled or 0}"
            )
        if stats.throughput is not None:
            t = stats.throughput
            avg = f", avg {t.avg_processing_time:.2f} s" if t.avg_processing_time is not None else ""
            parts.append(f"{t.completed_last_minute or 0}/min{avg}")
        return separator.join(parts)

    def render(self) -> RenderableType:
        from rich.console import Group
        from rich.panel import Panel
        from rich.table import Table

        parts: list[RenderableType] = [
            Panel(self.summary("\n"), title=f"empq {self.url}", title_align="left")
        ]
        stats = self.stats
        if stats is not None and stats.workers is not None and stats.workers.workers is not None:
            table = Table(title="workers", title_justify="left", expand=True)
            for name in ("worker", "status", "jobs", "load", "services", "connectors"):
                table.add_column(name, overflow="fold")
            for w in stats.workers.workers:
                caps = w.capabilities
                services = ", ".join(s.root for s in caps.services) if caps else ""
                connectors = ", ".join(f"{k}:{v.status.value}" for k, v in (w.connector_status or {}).items())
                jobs = ", ".join(j.root for j in w.current_jobs or []) or "-"
                load = f"{w.load:.0%}" if w.load is not None else "-"
                table.add_row(w.worker_id, styled(w.status.value), jobs, load, services, connectors)
            parts.append(table)
        if self.events:
            parts.append(Panel("\n".join(self.events), title="job events", title_align="left"))
        return Group(*parts)


async def watch_queue(args: argparse.Namespace, interval: float, settings: dict[str, Any]) -> int:
    from rich.live import Live

    from empq import protocol

    client = make_client(args, settings)
    out, _ = consoles(args)
    view = WatchView(client.url)
    live_display = out.is_terminal and not args.json
    done = asyncio.Event()

    def on_stats(update: Any) -> None:
        view.stats = update.stats
        if args.json:
            print_json(
                {"type": "stats", "timestamp": update.timestamp, "stats": protocol.to_dict(update.stats)}
            )
        elif not live_display:
            out.print(f"{clock(update.timestamp)} {view.summary()}")

    def on_event(msg: Any) -> None:
        view.event(msg)
        if args.json:
            print_json(protocol.to_dict(msg))
        elif not live_display:
            out.print(view.events[-1])

    def on_message(msg: Any) -> None:
        if msg.type == "server_disconnect":
            view.events.append(f"{clock()} hub going away: {escape(msg.reason)}; reconnecting")
            if not live_display and not args.json:
                out.print(view.events[-1])

    client.on_message(on_message)
    async with client:
        first = await client.request_stats()
        view.stats = first
        if args.json:
            print_json({"type": "stats", "timestamp": protocol.now_ms(), "stats": protocol.to_dict(first)})
        elif not live_display:
            out.print(f"{clock()} {view.summary()}")
        await client.subscribe_to_stats(on_stats, interval_seconds=interval)
        await client.subscribe_to_notifications(on_event)
        duration = args.seconds
        if live_display:
            with Live(view.render(), console=out, refresh_per_second=4, transient=False) as live:
                end = time.monotonic() + duration if duration else None
                while end is None or time.monotonic() < end:
                    live.update(view.render())
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(done.wait(), 0.25)
        else:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), duration)
    return EXIT_OK
