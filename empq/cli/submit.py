"""``empq submit``: submit a job; with ``--wait`` follow it to the end with a progress bar."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from empq.cli import command
from empq.cli.common import (
    EXIT_INTERRUPTED,
    EXIT_JOB_FAILED,
    EXIT_OK,
    EXIT_WAIT_TIMEOUT,
    InputError,
    check,
    client_settings,
    clock,
    connection_options,
    consoles,
    escape,
    load_json,
    make_client,
    print_json,
    run_command,
    seconds,
    setting,
)

if TYPE_CHECKING:
    from rich.console import Console

    from empq.client import EmpQueueClient
    from empq.generated.messages.submit_job import SubmitJob

FLAGS = {
    "job_type": "--job-type",
    "payload": "--payload",
    "priority": "--priority",
    "requirements": "--requirements",
    "customer_id": "--customer-id",
    "max_retries": "--max-retries",
    "metadata": "--metadata",
    "timeout_seconds": "--run-timeout",
    "webhook_url": "--webhook-url",
    "webhook_events": "--webhook-event",
}
"""Which argument carries each field of ``submit_job`` (named when the model refuses it)."""


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--job-type", required=True, help="kind of work, e.g. text_to_image")
    p.add_argument(
        "--payload", metavar="JSON", help="the job's input: JSON, @file or - for stdin (default {})"
    )
    p.add_argument("--priority", type=int, metavar="N", help="0-100, higher runs first (default 50)")
    p.add_argument(
        "--requirements",
        metavar="JSON",
        help='what a worker needs, e.g. \'{"service_type":"comfyui"}\' (JSON, @file, -)',
    )
    p.add_argument("--service", help="shortcut for requirements.service_type")
    p.add_argument(
        "--max-retries", type=int, metavar="N", help="retries before failing for good (hub default 3)"
    )
    p.add_argument("--run-timeout", type=float, metavar="S", help="longest the job may run once accepted")
    p.add_argument("--metadata", metavar="JSON", help="free-form data kept with the job (JSON, @file, -)")
    p.add_argument("--webhook-url", metavar="URL", help="also POST the job's events there, signed")
    p.add_argument(
        "--webhook-event",
        action="append",
        metavar="EVENT",
        help="an event for --webhook-url (repeat; default: completed, failed, cancelled, timeout)",
    )
    p.add_argument(
        "--wait", action="store_true", help="follow the job (live progress) until it ends; print its result"
    )
    p.add_argument(
        "--wait-timeout", type=seconds, metavar="S", help="with --wait: give up after S seconds (exit 124)"
    )
    p.add_argument(
        "--json", action="store_true", help="print JSON on stdout: job_accepted, or with --wait the outcome"
    )
    connection_options(p)


@command("submit", configure)
def submit(args: argparse.Namespace) -> int:
    """Submit a job; with --wait follow it to the end (exit 1 if it fails or is cancelled).

    Without --wait prints the job id (and queue position). With --wait shows a live progress bar
    fed by the job's updates and prints the result at the end.
    """
    return run_command("submit", lambda: prepare(args))


def prepare(args: argparse.Namespace) -> Coroutine[Any, Any, int]:
    """The ``submit_job`` to send, checked by its model (and the ``register_client`` model)."""
    from empq.generated.messages.submit_job import SubmitJob

    payload = load_json(args.payload, "--payload")
    requirements = load_json(args.requirements, "--requirements")
    flags = dict(FLAGS)
    if args.service is not None:
        if requirements is not None and not isinstance(requirements, dict):
            raise InputError("--service: --requirements must be a JSON object to add service_type to")
        requirements = {**(requirements or {}), "service_type": args.service}
        flags["requirements.service_type"] = "--service"
    message = check(
        SubmitJob,
        flags,
        job_type=args.job_type,
        payload={} if payload is None else payload,
        priority=args.priority,
        requirements=requirements,
        customer_id=setting(args, "customer_id"),
        max_retries=args.max_retries,
        metadata=load_json(args.metadata, "--metadata"),
        timeout_seconds=args.run_timeout,
        webhook_url=args.webhook_url,
        webhook_events=args.webhook_event,
    )
    return send(args, message, client_settings(args))


async def send(args: argparse.Namespace, message: SubmitJob, settings: dict[str, Any]) -> int:
    from empq import protocol

    out, err = consoles(args)
    async with make_client(args, settings) as client:
        accepted = await client.submit(message)
        job_id = accepted.job_id
        if not args.wait:
            if args.json:
                print_json(protocol.to_dict(accepted))
            else:
                notified = accepted.notified_workers
                out.print(
                    f"{job_id} queued at position {accepted.position}"
                    + (f", {notified} worker(s) notified" if notified else ", no idle worker can run it yet")
                )
            return EXIT_OK
        if not args.json:
            err.print(f"{job_id} queued at position {accepted.position}")
        return await follow(client, job_id, args, out, err)


async def follow(
    client: EmpQueueClient, job_id: str, args: argparse.Namespace, out: Console, err: Console
) -> int:
    """Show the job's updates until it is final; print the outcome; return the exit code."""
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

    from empq import protocol
    from empq.client import is_final
    from empq.generated.messages.job_completed import JobCompleted
    from empq.generated.messages.job_update import JobUpdate

    live = err.is_terminal and not args.json
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[state]}"),
        TimeElapsedColumn(),
        console=err,
        disable=not live,
        transient=False,
    )
    task = bar.add_task(job_id, total=100, state="queued")
    started = time.monotonic()
    final: Any = None
    try:
        with bar:
            async with (
                contextlib.aclosing(client.updates(job_id)) as events,
                asyncio.timeout(args.wait_timeout),
            ):
                async for event in events:
                    if isinstance(event, JobUpdate):
                        state = event.status.value
                        text = f"{state} {event.message or ''}".strip()
                        if event.progress is not None:
                            bar.update(task, completed=event.progress, state=text)
                        else:
                            bar.update(task, state=text)
                        if live:  # every state shown, not only the ones a 10/s refresh happens to catch
                            bar.refresh()
                        if not live and not args.json:
                            percent = f" {event.progress:g}%" if event.progress is not None else ""
                            line = f"{clock(event.timestamp)} {job_id} {state}{percent} {event.message or ''}"
                            err.print(line.rstrip(), markup=False)
                    elif isinstance(event, JobCompleted):
                        bar.update(task, completed=100, state="completed")
                    if is_final(event):
                        final = event
    except TimeoutError:
        print(
            f"empq submit: gave up waiting after {args.wait_timeout:g} s; "
            f"{job_id} goes on (empq status {job_id})",
            file=sys.stderr,
        )
        return EXIT_WAIT_TIMEOUT
    except KeyboardInterrupt:  # pragma: no cover - interactive
        print(f"empq submit: stopped following {job_id}; it goes on (empq status {job_id})", file=sys.stderr)
        return EXIT_INTERRUPTED
    elapsed = time.monotonic() - started
    data = protocol.to_dict(final)
    status = data.get("status", "?")
    outcome: dict[str, Any] = {"job_id": job_id, "status": status}
    for key in ("result", "error", "reason", "processing_time", "retry_count", "worker_id"):
        if data.get(key) is not None:
            outcome[key] = data[key]
    if args.json:
        print_json(outcome)
    elif status == "completed":
        took = data.get("processing_time")
        out.print(
            f"[green]completed[/] {job_id}"
            + (f" in {took:.2f} s" if took is not None else f" after {elapsed:.1f} s")
        )
        out.print_json(json.dumps(data.get("result")))
    else:
        why = data.get("error") or data.get("reason") or ""
        out.print(f"[red]{status}[/] {job_id}" + (f": {escape(str(why))}" if why else ""))
    return EXIT_OK if status == "completed" else EXIT_JOB_FAILED
