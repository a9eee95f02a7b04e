"""``empq cancel JOB_ID``: cancel a job that has not finished."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Coroutine
from typing import Any

from empq.cli import command
from empq.cli.common import (
    EXIT_OK,
    EXIT_REFUSED,
    check,
    client_settings,
    connection_options,
    consoles,
    escape,
    make_client,
    print_json,
    run_command,
    visible,
)


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("job_id", metavar="JOB_ID")
    p.add_argument("--reason", help="why (sent to the job's watchers and worker)")
    p.add_argument("--json", action="store_true", help="print the job_cancelled message as JSON")
    connection_options(p)


@command("cancel", configure)
def cancel(args: argparse.Namespace) -> int:
    """Cancel a job that has not finished; a worker running it is told to stop.

    A job client may cancel only its own jobs: use the --client-id (or --customer-id) that
    submitted it. Cancelling a finished job exits 4.
    """
    return run_command("cancel", lambda: prepare(args))


def prepare(args: argparse.Namespace) -> Coroutine[Any, Any, int]:
    """Check the arguments (the ``cancel_job`` and ``register_client`` models)."""
    from empq.generated.messages.cancel_job import CancelJob

    check(CancelJob, {"job_id": "JOB_ID", "reason": "--reason"}, job_id=args.job_id, reason=args.reason)
    return cancel_job(args, client_settings(args))


async def cancel_job(args: argparse.Namespace, settings: dict[str, Any]) -> int:
    from empq import protocol
    from empq.connection import HubError

    async with make_client(args, {**settings, "reconnect": False}) as client:
        try:
            reply = await visible(client, args.job_id, client.cancel_job(args.job_id, args.reason))
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
