"""What the client commands (``worker``, ``submit``, ``status``, ``cancel``, ``watch``) share:
settings from flags and ``EMPQ_*``, arguments checked against the generated models before
anything connects, the SDK's errors turned into one line and an exit code, output helpers.

Every option can also be set with ``EMPQ_<OPTION>`` (``--hub`` → ``EMPQ_HUB``, ``--client-id``
→ ``EMPQ_CLIENT_ID``...); flags win. Human output uses rich (colours and live displays only on a
terminal); ``--json`` prints machine-readable JSON on stdout instead.

Exit codes: 0 success; 1 the job failed, timed out or was cancelled (``submit --wait``); 2 bad
input; 3 the hub is unreachable or stopped answering; 4 the hub refused the request (unknown job,
bad token...); 124 ``--wait-timeout`` elapsed; 130 interrupted.

Light to import: the SDK, pydantic, rich and the message models are imported where used.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Coroutine, Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from pydantic import ValidationError
    from rich.console import Console

    from empq.client import EmpQueueClient
    from empq.generated.defs.base import BaseMessage

    Model = TypeVar("Model", bound=BaseMessage)

DEFAULT_HUB_URL = "ws://127.0.0.1:3002"  # empq.connection.DEFAULT_HUB_URL (not imported: fast start)
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
    except (ValueError, argparse.ArgumentTypeError) as exc:
        why = f": {exc}" if isinstance(exc, argparse.ArgumentTypeError) else ""
        raise InputError(f"{name}={raw!r} is not valid{why}") from None


def seconds(text: str) -> float:
    """A duration in seconds, more than 0 (an argparse ``type``)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text} is not a duration (seconds, more than 0)")
    return value


def hub_url(args: argparse.Namespace) -> str:
    url = str(setting(args, "hub", default=DEFAULT_HUB_URL))
    if "://" not in url:  # host:port
        url = f"ws://{url}"
    return url


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
        "--timeout",
        type=seconds,
        metavar="S",
        help="seconds to wait for each reply (EMPQ_TIMEOUT, default 10)",
    )
    if client:
        g.add_argument(
            "--client-id",
            help="this client's id (EMPQ_CLIENT_ID, default empq-cli-<user>); a client without "
            "customer sees only the jobs submitted under its client id",
        )
        g.add_argument("--customer-id", help="customer to submit for and see the jobs of (EMPQ_CUSTOMER_ID)")


# --- arguments checked by the generated models ------------------------------------------------


def check(model: type[Model], flags: Mapping[str, str], **fields: Any) -> Model:
    """Build the message a command is about to send from its arguments, before connecting: the
    generated model checks them (lengths, ranges, unknown fields...) and a refusal is an
    ``InputError`` naming the argument (``flags``: message field → argument, e.g.
    ``{"job_id": "JOB_ID"}``). Fields that are ``None`` are left out."""
    from pydantic import ValidationError

    from empq import protocol

    try:
        return protocol.make(model, **{k: v for k, v in fields.items() if v is not None})
    except ValidationError as exc:
        raise InputError(invalid(exc, flags)) from None


def invalid(exc: ValidationError, flags: Mapping[str, str]) -> str:
    """One line for a model's refusal, naming the argument that carried the field:
    ``--priority: Input should be less than or equal to 100 (got 101)``,
    ``--requirements: hardware.gpu_memory_gb: Input should be greater than 0 (got -1)``."""
    from empq import protocol

    details = protocol.error_details(exc)
    field = str(details["field"])
    where = field
    for name in sorted(flags, key=len, reverse=True):  # the most precise argument first
        if field == name or field.startswith(f"{name}."):
            inside = field[len(name) + 1 :]
            where = flags[name] + (f": {inside}" if inside else "")
            break
    got = ""
    if "provided_value" in details:
        value = details["provided_value"]
        shown = repr(value)
        if len(shown) > 40:
            shown = f"{shown[:36]}…{shown[-1]}"
        size = f", {len(value)} characters" if isinstance(value, str) and len(value) > 36 else ""
        got = f" (got {shown}{size})"
    return f"{where}: {details['message']}{got}"


def client_settings(args: argparse.Namespace, **overrides: Any) -> dict[str, Any]:
    """The job client's settings from flags and ``EMPQ_*``, its registration checked by the
    ``register_client`` model (client id, customer id, token...)."""
    from empq.generated.messages.register_client import RegisterClient

    settings: dict[str, Any] = {
        "client_id": setting(args, "client_id"),
        "customer_id": setting(args, "customer_id"),
        "token": setting(args, "token"),
        "request_timeout": setting(args, "timeout", seconds, 10.0),
    }
    settings.update(overrides)
    if settings["client_id"] is None:
        settings["client_id"] = default_client_id()
    flags = {
        "client_id": "--client-id",
        "customer_id": "--customer-id",
        "auth_token": "--token",
        "permissions": "permissions",
        "client_type": "client type",
    }
    check(
        RegisterClient,
        flags,
        client_type=settings.get("client_type", "job_client"),
        client_id=settings["client_id"],
        customer_id=settings["customer_id"],
        auth_token=settings["token"],
        permissions=settings.get("permissions"),
    )
    return settings


def default_client_id() -> str:
    from empq.client import default_client_id as sdk_default

    return sdk_default()


def make_client(args: argparse.Namespace, settings: Mapping[str, Any]) -> EmpQueueClient:
    """A client of the hub at ``--hub`` with checked ``settings`` (``client_settings``)."""
    from empq.client import Backoff, EmpQueueClient

    return EmpQueueClient(hub_url(args), backoff=Backoff(maximum=2.0), **settings)


# --- running ------------------------------------------------------------------------------------


def run_command(
    name: str, prepare: Callable[[], Coroutine[Any, Any, int]], interrupt_ok: bool = False
) -> int:
    """``prepare()`` checks the arguments and returns the command's coroutine (``InputError``:
    exit 2 with one line, before the SDK is even imported), which ``run_async`` runs."""
    try:
        main = prepare()
    except InputError as exc:
        return fail(name, str(exc), EXIT_USAGE)
    return run_async(name, main, interrupt_ok)


def run_async(name: str, main: Coroutine[Any, Any, int], interrupt_ok: bool = False) -> int:
    """Run a command; turn the SDK's errors into one clear line on stderr and an exit code.
    ``interrupt_ok``: Ctrl-C is the normal way to end it (exit 0)."""
    import asyncio

    from empq.connection import AuthFailed, ConnectionLost, HubError, HubUnreachable, RequestTimeout

    try:
        return asyncio.run(main)
    except InputError as exc:
        return fail(name, str(exc), EXIT_USAGE)
    except Refused as exc:
        return fail(name, str(exc), EXIT_REFUSED)
    except HubUnreachable as exc:
        if exc.reason.startswith("invalid URL"):
            return fail(
                name, f"--hub {exc.url}: {exc.reason} (expected ws://host:port or wss://...)", EXIT_USAGE
            )
        return fail(name, f"{exc}. Is the hub running (`empq hub`)? Set --hub or EMPQ_HUB.", EXIT_UNREACHABLE)
    except AuthFailed as exc:
        reason = exc.details.get("reason") or exc.message.error
        return fail(name, f"the hub refused the token ({reason}); set --token or EMPQ_TOKEN", EXIT_REFUSED)
    except HubError as exc:
        return fail(name, f"the hub refused: {exc.message.error} ({exc.code})", EXIT_REFUSED)
    except (RequestTimeout, ConnectionLost) as exc:
        return fail(name, str(exc), EXIT_UNREACHABLE)
    except KeyboardInterrupt:
        return EXIT_OK if interrupt_ok else fail(name, "interrupted", EXIT_INTERRUPTED)


def fail(name: str, text: str, code: int) -> int:
    print(f"empq {name}: {text}", file=sys.stderr)
    return code


async def visible(client: EmpQueueClient, job_id: str, call: Coroutine[Any, Any, Any]) -> Any:
    """Explain JOB_NOT_FOUND: it may be another client's job (spec D13)."""
    from empq.connection import HubError

    try:
        return await call
    except HubError as exc:
        if exc.code != "JOB_NOT_FOUND":
            raise
        who = f"customer {client.customer_id}" if client.customer_id else f"client id {client.client_id}"
        raise Refused(
            f"no job {job_id} visible to {who} (a job client sees only the jobs submitted under "
            "its own --client-id or --customer-id)"
        ) from None


# --- output ---------------------------------------------------------------------------------------


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
