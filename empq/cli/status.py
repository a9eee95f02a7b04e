"""``empq status JOB_ID``: a job's state, progress, worker, retries, result or error."""

from __future__ import annotations

import argparse
import json
from collections.abc import Coroutine
from typing import Any

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
    styled,
    visible,
)


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("job_id", metavar="JOB_ID")
    p.add_argument("--json", action="store_true", help="print the response_job_status message as JSON")
    connection_options(p)


@command("status", configure)
def status(args: argparse.Namespace) -> int:
    """Show a job's state: status, progress, worker, retries, result or error.

    A job client sees only its own jobs: use the --client-id (or --customer-id) that submitted it.
    """
    return run_command("status", lambda: prepare(args))


def prepare(args: argparse.Namespace) -> Coroutine[Any, Any, int]:
    """Check the arguments (the ``request_job_status`` and ``register_client`` models)."""
    from empq.generated.messages.request_job_status import RequestJobStatus

    check(RequestJobStatus, {"job_id": "JOB_ID"}, job_id=args.job_id)
    return show(args, client_settings(args))


async def show(args: argparse.Namespace, settings: dict[str, Any]) -> int:
    from empq import protocol

    async with make_client(args, {**settings, "reconnect": False}) as client:
        reply = await visible(client, args.job_id, client.request_status(args.job_id))
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
    for delivery in reply.webhook_deliveries or ():  # spec D21
        answers = ", ".join(
            str(a.status_code) if a.status_code is not None else (a.error or "?") for a in delivery.attempts
        )
        tried = f" after {len(delivery.attempts)} attempt(s): {answers}" if delivery.attempts else ""
        out.print(
            f"[bold]{'webhook':<9}[/] {escape(f'{delivery.event.value} {delivery.state.value}{tried}')}"
        )
    if reply.result is not None:
        out.print("[bold]result[/]")
        out.print_json(json.dumps(data["result"]))
    return EXIT_OK
