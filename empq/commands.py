"""``empq worker``, ``empq submit``, ``empq status``, ``empq cancel``, ``empq watch``: the SDK
(``empq.client``, ``empq.worker``) on the command line.

Every option can also be set with ``EMPQ_<OPTION>`` (``--hub`` → ``EMPQ_HUB``, ``--client-id``
→ ``EMPQ_CLIENT_ID``...); flags win. Human output uses rich (colours and live displays only on a
terminal); ``--json`` prints machine-readable JSON on stdout instead.

Exit codes: 0 success; 1 the job failed, timed out or was cancelled (``submit --wait``); 2 bad
input; 3 the hub is unreachable or stopped answering; 4 the hub refused the request (unknown job,
bad token...); 124 ``--wait-timeout`` elapsed; 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import sys
import time
from collections.abc import Callable, Coroutine
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from empq.cli import command

if TYPE_CHECKING:
    from rich.console import Console, RenderableType

    from empq.client import EmpQueueClient
    from empq.generated.defs.stats import Stats

DEFAULT_HUB_URL = "ws://127.0.0.1:3002"  # empq.client.DEFAULT_HUB_URL (not imported: fast --help)
EXIT_OK, EXIT_JOB_FAILED, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_REFUSED = 0, 1, 2, 3, 4
EXIT_WAIT_TIMEOUT, EXIT_INTERRUPTED = 124, 130


class InputError(Exception):
    """Bad input on the command line: exit 2 with this message."""


class Refused(Exception):
    """The hub said no (with an explanation worth more than its error code): exit 4."""


# --- settings --------------------------------------------------------------------------------


def setting(
    args: argparse.Namespace, dest: str, convert: Callable[[str], Any] = str, default: Any = None
) -> Any:
    """The flag's value, else ``EMPQ_<DEST>``, else ``default``."""
    value = getattr(args, dest, None)
    if value is not None:
        return value
    name = f"EMPQ_{dest.upper()}"
    raw = os.environ.get(name, "")
    if raw == "":
        return default
    try:
        return convert(raw)
    except ValueError:
        raise InputError(f"{name}={raw!r} is not valid") from None


def hub_url(args: argparse.Namespace) -> str:
    url = str(setting(args, "hub", default=DEFAULT_HUB_URL))
    if "://" not in url:  # host:port
        url = f"ws://{url}"
    return url


def client_id(args: argparse.Namespace) -> str:
    from empq.client import default_client_id

    return str(setting(args, "client_id", default=default_client_id()))


def load_json(text: str | None, flag: str) -> Any:
    """``JSON``, ``@file`` or ``-`` (stdin)."""
    if text is None:
        return None
    source = flag
    if text == "-":
        text, source = sys.stdin.read(), f"{flag} (stdin)"
    elif text.startswith("@"):
        path = Path(text[1:])
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise InputError(f"{flag}: cannot read {path}: {exc.strerror}") from None
        source = f"{flag} ({path})"
    try:
        return json.loads(text)
    except ValueError as exc:
        raise InputError(f"{source} is not valid JSON: {exc}") from None


def csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def connection_options(p: argparse.ArgumentParser, *, client: bool = True) -> None:
    g = p.add_argument_group("connection")
    g.add_argument("--hub", metavar="URL", help=f"hub WebSocket URL (EMPQ_HUB, default {DEFAULT_HUB_URL})")
    g.add_argument("--token", help="auth token of this role, when the hub requires tokens (EMPQ_TOKEN)")
    g.add_argument(
        "--timeout", type=float, metavar="S", help="seconds to wait for each reply (EMPQ_TIMEOUT, default 10)"
    )
    if client:
        g.add_argument(
            "--client-id",
            help="this client's id (EMPQ_CLIENT_ID, default empq-cli-<user>); a client without "
            "customer sees only the jobs submitted under its client id",
        )
        g.add_argument("--customer-id", help="customer to submit for and see the jobs of (EMPQ_CUSTOMER_ID)")


def make_client(args: argparse.Namespace, **overrides: Any) -> EmpQueueClient:
    from empq.client import Backoff, EmpQueueClient

    fields: dict[str, Any] = {
        "client_id": client_id(args),
        "customer_id": setting(args, "customer_id"),
        "token": setting(args, "token"),
        "request_timeout": setting(args, "timeout", float, 10.0),
        "backoff": Backoff(maximum=2.0),
    }
    fields.update(overrides)
    return EmpQueueClient(hub_url(args), **fields)


def run_async(name: str, main: Coroutine[Any, Any, int], interrupt_ok: bool = False) -> int:
    """Run a command; turn the SDK's errors into one clear line on stderr and an exit code.
    ``interrupt_ok``: Ctrl-C is the normal way to end it (exit 0)."""
    from empq.client import AuthFailed, ConnectionLost, HubError, HubUnreachable, RequestTimeout

    def fail(text: str, code: int) -> int:
        print(f"empq {name}: {text}", file=sys.stderr)
        return code

    try:
        return asyncio.run(main)
    except InputError as exc:
        return fail(str(exc), EXIT_USAGE)
    except Refused as exc:
        return fail(str(exc), EXIT_REFUSED)
    except HubUnreachable as exc:
        if exc.reason.startswith("invalid URL"):
            return fail(f"--hub {exc.url}: {exc.reason} (expected ws://host:port or wss://...)", EXIT_USAGE)
        return fail(f"{exc}. Is the hub running (`empq hub`)? Set --hub or EMPQ_HUB.", EXIT_UNREACHABLE)
    except AuthFailed as exc:
        reason = exc.details.get("reason") or exc.message.error
        return fail(f"the hub refused the token ({reason}); set --token or EMPQ_TOKEN", EXIT_REFUSED)
    except HubError as exc:
        return fail(f"the hub refused: {exc.message.error} ({exc.code})", EXIT_REFUSED)
    except (RequestTimeout, ConnectionLost) as exc:
        return fail(str(exc), EXIT_UNREACHABLE)
    except KeyboardInterrupt:
        return EXIT_OK if interrupt_ok else fail("interrupted", EXIT_INTERRUPTED)


def consoles(args: argparse.Namespace) -> tuple[Console, Console]:
    """(stdout, stderr) rich consoles; no colour/markup surprises when not on a terminal."""
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True), Console(stderr=True, highlight=False, soft_wrap=True)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, default=str) + "\n")
    sys.stdout.flush()


def clock(ms: int | None = None) -> str:
    moment = datetime.fromtimestamp(ms / 1000) if ms else datetime.now()
    return moment.strftime("%H:%M:%S")


STATUS_STYLE = {
    "queued": "cyan",
    "assigned": "blue",
    "accepted": "blue",
    "in_progress": "yellow",
    "completed": "green",
    "failed": "red",
    "cancelled": "magenta",
    "timeout": "red",
    "idle": "green",
    "busy": "yellow",
    "draining": "magenta",
    "offline": "red",
}


def escape(text: str) -> str:
    from rich.markup import escape as rich_escape

    return rich_escape(text)


def styled(status: str) -> str:
    style = STATUS_STYLE.get(status)
    return f"[{style}]{status}[/]" if style else status


# --- empq worker -------------------------------------------------------------------------------


def configure_worker(p: argparse.ArgumentParser) -> None:
    connection_options(p, client=False)
    p.add_argument(
        "--worker-id",
        help="stable worker id (EMPQ_WORKER_ID, default <host>-<pid>); keep it to resume jobs "
        "after a restart",
    )
    g = p.add_argument_group("capabilities")
    g.add_argument(
        "--services",
        type=csv,
        metavar="LIST",
        help="comma-separated service types (EMPQ_SERVICES, default comfyui)",
    )
    g.add_argument(
        "--components", type=csv, metavar="LIST", help="comma-separated components (EMPQ_COMPONENTS)"
    )
    g.add_argument("--gpu-memory", type=float, metavar="GB", help="GPU memory in GB (EMPQ_GPU_MEMORY)")
    g.add_argument("--gpu-model", help="GPU model (EMPQ_GPU_MODEL)")
    g.add_argument("--cpu-cores", type=int, metavar="N", help="CPU cores (EMPQ_CPU_CORES)")
    g.add_argument("--ram", type=float, metavar="GB", help="RAM in GB (EMPQ_RAM)")
    g.add_argument(
        "--max-concurrent", type=int, metavar="N", help="jobs at once (EMPQ_MAX_CONCURRENT, default 1)"
    )
    g.add_argument(
        "--allowed-customers",
        type=csv,
        metavar="LIST",
        help="only take these customers' jobs (EMPQ_ALLOWED_CUSTOMERS)",
    )
    c = p.add_argument_group("connector")
    c.add_argument(
        "--connector",
        choices=("simulate", "http"),
        help="what runs the jobs (EMPQ_CONNECTOR, default simulate)",
    )
    c.add_argument(
        "--service-url", metavar="URL", help="http connector: URL the payload is POSTed to (EMPQ_SERVICE_URL)"
    )
    c.add_argument(
        "--health-url", metavar="URL", help="http connector: URL checked with GET at start (EMPQ_HEALTH_URL)"
    )
    c.add_argument("--steps", type=int, metavar="N", help="simulate: steps per job (EMPQ_STEPS, default 5)")
    c.add_argument(
        "--step-seconds",
        type=float,
        metavar="S",
        help="simulate: seconds per step (EMPQ_STEP_SECONDS, default 0.5)",
    )
    c.add_argument(
        "--failure-rate",
        type=float,
        metavar="P",
        help="simulate: probability a job fails, 0-1 (EMPQ_FAILURE_RATE, default 0)",
    )
    c.add_argument("--seed", type=int, help="simulate: random seed (EMPQ_SEED)")
    r = p.add_argument_group("runtime")
    r.add_argument(
        "--claim-interval",
        type=float,
        metavar="S",
        help="seconds between claims when idle (EMPQ_CLAIM_INTERVAL, default 5)",
    )
    r.add_argument(
        "--drain-timeout",
        type=float,
        metavar="S",
        help="on SIGTERM, seconds to finish running jobs before handing them back "
        "(EMPQ_DRAIN_TIMEOUT, default 30)",
    )
    r.add_argument(
        "--wait-for-hub",
        type=float,
        metavar="S",
        help="keep trying to reach the hub at start for this long (EMPQ_WAIT_FOR_HUB, default 0)",
    )
    r.add_argument("--json", action="store_true", help="one JSON object per event on stdout")


@command("worker", configure_worker)
def worker(args: argparse.Namespace) -> int:
    """Run a worker: register with the hub, claim the jobs it can run, run them with a connector.

    `simulate` pretends (timed steps with progress, --failure-rate); `http` POSTs each job's payload
    as JSON to --service-url and reports the JSON answer as the result. SIGTERM or Ctrl-C drains:
    no new jobs, running ones finish (up to --drain-timeout), the rest go back to the queue; a
    second Ctrl-C stops at once.
    """
    return run_async("worker", _worker(args))


async def _worker(args: argparse.Namespace) -> int:
    from empq.client import Backoff, HubUnreachable
    from empq.connectors import Connector, HttpConnector, SimulateConnector
    from empq.worker import EmpWorker

    services = setting(args, "services", csv) or ["comfyui"]
    kind = setting(args, "connector", default="simulate")
    connectors: list[Connector] = []
    if kind == "http":
        url = setting(args, "service_url")
        if not url:
            raise InputError("--connector http needs --service-url (or EMPQ_SERVICE_URL)")
        health = setting(args, "health_url")
        connectors = [HttpConnector(url, service, health_url=health) for service in services]
    elif kind == "simulate":
        try:
            connectors = [
                SimulateConnector(
                    service,
                    steps=setting(args, "steps", int, 5),
                    step_seconds=setting(args, "step_seconds", float, 0.5),
                    failure_rate=setting(args, "failure_rate", float, 0.0),
                    seed=setting(args, "seed", int),
                )
                for service in services
            ]
        except ValueError as exc:
            raise InputError(str(exc)) from None
    else:
        raise InputError(f"unknown connector {kind!r} (simulate or http)")
    hardware = {
        key: value
        for key, value in {
            "gpu_memory_gb": setting(args, "gpu_memory", float),
            "gpu_model": setting(args, "gpu_model"),
            "cpu_cores": setting(args, "cpu_cores", int),
            "ram_gb": setting(args, "ram", float),
        }.items()
        if value is not None
    }
    from pydantic import ValidationError

    try:
        worker = EmpWorker(
            hub_url(args),
            worker_id=setting(args, "worker_id", default=f"{os.uname().nodename}-{os.getpid()}"),
            services=services,
            components=setting(args, "components", csv),
            hardware=hardware,
            max_concurrent=setting(args, "max_concurrent", int, 1),
            connectors=connectors,
            token=setting(args, "token"),
            allowed_customers=setting(args, "allowed_customers", csv),
            claim_interval=setting(args, "claim_interval", float, 5.0),
            drain_timeout=setting(args, "drain_timeout", float, 30.0),
            request_timeout=setting(args, "timeout", float, 10.0),
            backoff=Backoff(maximum=2.0),
        )
    except ValidationError as exc:
        from empq import protocol

        details = protocol.error_details(exc)
        raise InputError(f"invalid capabilities: {details['field']}: {details['message']}") from None
    except ValueError as exc:
        raise InputError(str(exc)) from None
    out, _ = consoles(args)
    as_json = bool(args.json)

    def show(event: str, info: dict[str, Any]) -> None:
        if as_json:
            print_json({"event": event, "time": time.time(), **info})
            return
        out.print(f"[dim]{clock()}[/] {describe_worker_event(worker, event, info)}")

    worker.on_event(show)
    deadline = time.monotonic() + setting(args, "wait_for_hub", float, 0.0)
    delay = 0.2
    while True:
        try:
            await worker.start()
            break
        except HubUnreachable:
            if time.monotonic() + delay > deadline:
                raise
            if not as_json:
                out.print(f"[dim]{clock()}[/] waiting for the hub at {worker.url}...")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
    await worker.run(handle_signals=True)
    return EXIT_OK


def describe_worker_event(worker: Any, event: str, info: dict[str, Any]) -> str:
    """One line of rich markup for a worker event (texts from outside escaped)."""
    info = {k: escape(v) if isinstance(v, str) else v for k, v in info.items()}
    job = info.get("job_id", "")
    if event == "registered":
        services = ", ".join(worker.capabilities["services"])
        return (
            f"[bold]registered[/] as {info['worker_id']} on {info['url']}: services {services}, "
            f"{worker.max_concurrent} slot(s), heartbeat every {info['heartbeat_interval']:g} s"
        )
    if event == "reconnected":
        return f"[bold]reconnected[/] to {info['url']}; resumed {len(info['resumed_jobs'])} job(s)"
    if event == "disconnected":
        return f"[yellow]connection to {info['url']} lost[/]; reconnecting..."
    if event == "job_started":
        retry = f", retry {info['retry_count']}" if info.get("retry_count") else ""
        return f"started   {job} {info['job_type']} (priority {info['priority']}{retry})"
    if event == "job_completed":
        return f"[green]completed[/] {job} in {info['processing_time']:.2f} s"
    if event == "job_failed":
        retry = f"retry in {info['retry_delay']:g} s" if info.get("retry_scheduled") else "no retry"
        return f"[red]failed[/]    {job}: {info['error']} ({retry})"
    if event == "job_cancelled":
        return f"[magenta]cancelled[/] {job} ({info.get('reason')})"
    if event == "job_lost":
        return f"[yellow]taken back[/] {job}: {info.get('reason')}"
    if event == "draining":
        return f"draining: finishing {len(info['running'])} running job(s), up to {info['timeout']:g} s"
    if event == "stopped":
        back = info.get("handed_back") or []
        return f"stopped ({info['reason']})" + (f"; handed back {', '.join(back)}" if back else "")
    return f"{event} {info}"


# --- empq submit -------------------------------------------------------------------------------


def configure_submit(p: argparse.ArgumentParser) -> None:
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
    p.add_argument(
        "--wait", action="store_true", help="follow the job (live progress) until it ends; print its result"
    )
    p.add_argument(
        "--wait-timeout", type=float, metavar="S", help="with --wait: give up after S seconds (exit 124)"
    )
    p.add_argument(
        "--json", action="store_true", help="print JSON on stdout: job_accepted, or with --wait the outcome"
    )
    connection_options(p)


@command("submit", configure_submit)
def submit(args: argparse.Namespace) -> int:
    """Submit a job; with --wait follow it to the end (exit 1 if it fails or is cancelled).

    Without --wait prints the job id (and queue position). With --wait shows a live progress bar
    fed by the job's updates and prints the result at the end.
    """
    return run_async("submit", _submit(args))


async def _submit(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from empq import protocol
    from empq.client import JobSubmission, submission_message

    payload = load_json(args.payload, "--payload")
    if payload is None:
        payload = {}
    requirements = load_json(args.requirements, "--requirements")
    if args.service:
        requirements = dict(requirements or {})
        requirements["service_type"] = args.service
    metadata = load_json(args.metadata, "--metadata")
    job = JobSubmission(
        job_type=args.job_type,
        payload=payload,
        priority=args.priority,
        requirements=requirements,
        customer_id=setting(args, "customer_id"),
        max_retries=args.max_retries,
        metadata=metadata,
        timeout_seconds=args.run_timeout,
    )
    try:
        message = submission_message(job)
    except ValidationError as exc:
        details = protocol.error_details(exc)
        raise InputError(f"invalid job: {details['field']}: {details['message']}") from None
    out, err = consoles(args)
    async with make_client(args) as client:
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


# --- empq status / cancel ----------------------------------------------------------------------


def configure_status(p: argparse.ArgumentParser) -> None:
    p.add_argument("job_id", metavar="JOB_ID")
    p.add_argument("--json", action="store_true", help="print the response_job_status message as JSON")
    connection_options(p)


@command("status", configure_status)
def status(args: argparse.Namespace) -> int:
    """Show a job's state: status, progress, worker, retries, result or error.

    A job client sees only its own jobs: use the --client-id (or --customer-id) that submitted it.
    """
    return run_async("status", _status(args))


async def _status(args: argparse.Namespace) -> int:
    from empq import protocol

    async with make_client(args, reconnect=False) as client:
        reply = await _visible(client, args, client.request_status(args.job_id))
    data = protocol.to_dict(reply)
    if args.json:
        print_json(data)
        return EXIT_OK
    out, _ = consoles(args)
    rows: list[tuple[str, Any]] = [
        ("job", reply.job_id),
        ("status", styled(reply.status.value)),
        ("progress", f"{reply.progress:g}%" if reply.progress is not None else None),
        ("message", reply.message),
        ("type", reply.job_type),
        ("priority", reply.priority),
        ("position", reply.position),
        ("worker", reply.worker_id),
        ("customer", reply.customer_id),
        (
            "retries",
            f"{reply.retry_count or 0} of {reply.max_retries}" if reply.max_retries is not None else None,
        ),
        ("created", clock(reply.created_at) if reply.created_at else None),
        ("started", clock(reply.started_at) if reply.started_at else None),
        ("finished", clock(reply.completed_at) if reply.completed_at else None),
        ("error", reply.error),
    ]
    for name, value in rows:
        if value is not None and value != "":
            text = value if name == "status" else escape(str(value))
            out.print(f"[bold]{name:<9}[/] {text}")
    if reply.result is not None:
        out.print("[bold]result[/]")
        out.print_json(json.dumps(data["result"]))
    return EXIT_OK


async def _visible(client: EmpQueueClient, args: argparse.Namespace, call: Coroutine[Any, Any, Any]) -> Any:
    """Explain JOB_NOT_FOUND: it may be another client's job (spec D13)."""
    from empq.client import HubError

    try:
        return await call
    except HubError as exc:
        if exc.code != "JOB_NOT_FOUND":
            raise
        who = f"customer {client.customer_id}" if client.customer_id else f"client id {client.client_id}"
        raise Refused(
            f"no job {args.job_id} visible to {who} (a job client sees only the jobs submitted under "
            "its own --client-id or --customer-id)"
        ) from None


def configure_cancel(p: argparse.ArgumentParser) -> None:
    p.add_argument("job_id", metavar="JOB_ID")
    p.add_argument("--reason", help="why (sent to the job's watchers and worker)")
    p.add_argument("--json", action="store_true", help="print the job_cancelled message as JSON")
    connection_options(p)


@command("cancel", configure_cancel)
def cancel(args: argparse.Namespace) -> int:
    """Cancel a job that has not finished; a worker running it is told to stop.

    A job client may cancel only its own jobs: use the --client-id (or --customer-id) that
    submitted it. Cancelling a finished job exits 4.
    """
    return run_async("cancel", _cancel(args))


async def _cancel(args: argparse.Namespace) -> int:
    from empq import protocol
    from empq.client import HubError

    async with make_client(args, reconnect=False) as client:
        try:
            reply = await _visible(client, args, client.cancel_job(args.job_id, args.reason))
        except HubError as exc:
            if exc.code != "INVALID_STATE":
                raise
            state = exc.details.get("status") or "finished"
            print(f"empq cancel: {args.job_id} is already {state}", file=sys.stderr)
            return EXIT_REFUSED
    if args.json:
        print_json(protocol.to_dict(reply))
    else:
        out, _ = consoles(args)
        reason = f" ({escape(reply.reason)})" if reply.reason else ""
        out.print(f"[magenta]cancelled[/] {reply.job_id}{reason}")
    return EXIT_OK


# --- empq watch --------------------------------------------------------------------------------


def configure_watch(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--interval",
        type=float,
        metavar="S",
        help="seconds between stats updates (EMPQ_INTERVAL, default 1, at least 1)",
    )
    p.add_argument("--seconds", type=float, metavar="S", help="stop after S seconds (default: until Ctrl-C)")
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


@command("watch", configure_watch)
def watch(args: argparse.Namespace) -> int:
    """Live view of the queue: workers, queue depth, running jobs, throughput, job events.

    Registers as a monitor (view_system_stats, view_workers, view_all_jobs); --as-client watches
    with a job client's view. On a terminal the view updates in place; otherwise (or with --json)
    it prints one line per update.
    """
    return run_async("watch", _watch(args), interrupt_ok=True)


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


async def _watch(args: argparse.Namespace) -> int:
    from rich.live import Live

    from empq import protocol

    interval = max(1.0, setting(args, "interval", float, 1.0))
    if args.as_client:
        client = make_client(args)
    else:
        client = make_client(
            args,
            client_id=setting(args, "client_id", default="empq-watch"),
            client_type="monitor",
            permissions=["view_system_stats", "view_workers", "view_all_jobs"],
        )
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
        seconds = args.seconds
        if live_display:
            with Live(view.render(), console=out, refresh_per_second=4, transient=False) as live:
                end = time.monotonic() + seconds if seconds else None
                while end is None or time.monotonic() < end:
                    live.update(view.render())
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(done.wait(), 0.25)
        else:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), seconds)
    return EXIT_OK


__all__ = ["cancel", "status", "submit", "watch", "worker"]
