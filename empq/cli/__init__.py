"""The ``empq`` command line: one entry point (``main``), one module per subcommand.

``empq.cli.common`` holds what the client commands share (settings from flags and ``EMPQ_*``,
checking arguments against the generated models before connecting, exit codes, output);
``worker``, ``submit``, ``status``, ``cancel`` and ``watch`` are one module each. ``empq hub``
lives in ``empq.hub.cli`` and ``empq conformance`` in ``empq.conformance.cli``. Every command
registers itself with ``@command``.

A command's module is imported only when that command runs: ``empq status`` loads
``empq.cli.status`` (and, once its arguments are checked, what it uses), ``empq --version`` loads
no command at all. Only ``empq --help`` and a command name that is not one load every module, to
list them. Every option can also be set with an ``EMPQ_<OPTION>`` environment variable (flags win).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from empq import __version__

Command = Callable[[argparse.Namespace], int]
Configure = Callable[[argparse.ArgumentParser], None]

MODULES: dict[str, str] = {
    "hub": "empq.hub.cli",
    "worker": "empq.cli.worker",
    "submit": "empq.cli.submit",
    "status": "empq.cli.status",
    "cancel": "empq.cli.cancel",
    "watch": "empq.cli.watch",
    "conformance": "empq.conformance.cli",
}
"""Every command and the module that registers it (in the order ``empq --help`` lists them)."""

_REGISTERED: dict[str, tuple[Configure, Command]] = {}


def command(name: str, configure: Configure) -> Callable[[Command], Command]:
    """Register a subcommand: ``configure`` adds its options, the decorated function runs it."""

    def register(run: Command) -> Command:
        _REGISTERED[name] = (configure, run)
        return run

    return register


def load(name: str) -> tuple[Configure, Command]:
    """Import the command's module (it registers itself) and return its (configure, run)."""
    if name not in _REGISTERED:
        importlib.import_module(MODULES[name])
    try:
        return _REGISTERED[name]
    except KeyError:
        raise RuntimeError(f"{MODULES[name]} does not register the command {name!r}") from None


class Parser(argparse.ArgumentParser):
    """argparse with errors on one line, naming the argument and where help is (exit 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def commands_in(argv: Sequence[str]) -> list[str]:
    """The commands whose modules ``argv`` needs: the one it names, none for a bare
    ``--version``, else all of them (to list them in the help or the error)."""
    named = next((arg for arg in argv if not arg.startswith("-")), None)  # top-level flags take no value
    if named in MODULES:
        return [named]
    if list(argv) == ["--version"]:
        return []
    return list(MODULES)


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    """The parser of ``empq``, with the subcommands ``argv`` needs (``commands_in``)."""
    parser = Parser(prog="empq", description="EmProps Job Queue: hub, worker and tools.")
    parser.add_argument("--version", action="version", version=f"empq {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for name in commands_in(argv):
        configure, run = load(name)
        doc = (run.__doc__ or "").strip()
        p = sub.add_parser(name, help=doc.splitlines()[0] if doc else None, description=doc)
        configure(p)
        p.set_defaults(_run=run)
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse ``argv`` (default: the command line) without running the command."""
    argv = sys.argv[1:] if argv is None else list(argv)
    return build_parser(argv).parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    run = getattr(args, "_run", None)
    if run is None:
        parser.print_help()
        return 2
    return int(run(args) or 0)


__all__ = ["MODULES", "build_parser", "command", "load", "main", "parse_args"]
