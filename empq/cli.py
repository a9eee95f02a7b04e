"""The ``empq`` command line: one entry point, one subcommand per tool.

Every option can also be set with an ``EMPQ_<OPTION>`` environment variable (flags win).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from empq import __version__

Command = Callable[[argparse.Namespace], int]
_COMMANDS: dict[str, tuple[Callable[[argparse.ArgumentParser], None], Command]] = {}


def command(name: str, configure: Callable[[argparse.ArgumentParser], None]) -> Callable[[Command], Command]:
    """Register a subcommand: ``configure`` adds its options, the decorated function runs it."""

    def register(run: Command) -> Command:
        _COMMANDS[name] = (configure, run)
        return run

    return register


COMMAND_MODULES = ("empq.hub.cli", "empq.commands", "empq.conformance.cli")


def build_parser() -> argparse.ArgumentParser:
    import importlib

    for module in COMMAND_MODULES:
        importlib.import_module(module)
    parser = argparse.ArgumentParser(prog="empq", description="EmProps Job Queue: hub, worker and tools.")
    parser.add_argument("--version", action="version", version=f"empq {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (configure, run) in _COMMANDS.items():
        doc = (run.__doc__ or "").strip().splitlines()
        p = sub.add_parser(name, help=doc[0] if doc else None, description=(run.__doc__ or "").strip())
        configure(p)
        p.set_defaults(_run=run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    run = getattr(args, "_run", None)
    if run is None:
        parser.print_help()
        return 2
    return int(run(args) or 0)


if __name__ == "__main__":  # python -m empq.cli: use the imported module, where commands register
    from empq.cli import main as _main

    sys.exit(_main())
