"""Benchmarks, run by hand (never in CI). Each prints a table and writes JSON."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def module_command(module: str, *args: str) -> list[str]:
    """argv that runs ``python -m <module> args`` for a module of bench/ (not installed) while
    ``empq`` stays the installed package: the checkout's ``empq/`` folder holds only part of it
    (``empq.hub``, ``empq.generated``... come from other folders), so the current directory must
    not come first on sys.path (``-P``); the checkout is appended instead."""
    code = (
        "import runpy, sys; sys.path.append(sys.argv.pop(1)); "
        "sys.argv[0] = sys.argv[1]; runpy.run_module(sys.argv.pop(1), run_name='__main__', alter_sys=True)"
    )
    return [sys.executable, "-P", "-c", code, str(REPO), module, *args]


def empq_command(*args: str) -> list[str]:
    """argv for the installed ``empq`` CLI (``python -P -m empq``: not the checkout's folder)."""
    return [sys.executable, "-P", "-m", "empq", *args]
