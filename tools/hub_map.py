"""The one-hop map of hub/README.md: for each message a peer sends, its schema, its command,
the job manager method and the Lua script it reaches, and the conformance cases that check it.

Read from the code itself (the command table, the handlers' and the manager's source), so it
cannot drift: ``tests/hub/test_map.py`` fails when hub/README.md's copy differs or a message has
no conformance case. ``python tools/hub_map.py --write`` rewrites the copy.
"""

from __future__ import annotations

import argparse
import inspect
import re
import sys
from pathlib import Path

from empq.conformance.model import all_cases
from empq.hub.commands import COMMANDS
from empq.hub.jobs import JobManager
from empq.hub.progress import ProgressWriter
from empq.hub.store import JobStore

README = Path(__file__).resolve().parent.parent / "hub" / "README.md"
START, END = "<!-- hub-map:start -->", "<!-- hub-map:end -->"


def _calls(function: object, pattern: str) -> list[str]:
    source = inspect.getsource(function)  # type: ignore[arg-type]
    return list(dict.fromkeys(re.findall(pattern, source)))


def rows() -> list[tuple[str, str, str, str, str, str]]:
    cases: dict[str, list[str]] = {}
    for case in all_cases():
        for kind in case.messages:
            cases.setdefault(kind, []).append(case.id)
    out = []
    for kind, handler in sorted(COMMANDS.items()):
        module = handler.__module__.rsplit(".", 1)[-1]
        methods = _calls(handler, r"hub\.jobs\.(\w+)\(")
        scripts: list[str] = []
        for method in methods:
            if _calls(getattr(JobManager, method), r"progress_writer\.(update)\("):  # per tick (progress.py)
                scripts += _calls(ProgressWriter._command, r'evalsha\(\s*"(\w+)"')
            for store_call in _calls(getattr(JobManager, method), r"store\.(\w+)\("):
                if hasattr(JobStore, store_call):
                    scripts += _calls(getattr(JobStore, store_call), r'script\(\s*"(\w+)"')
        fleet = _calls(handler, r"hub\.fleet\.(\w+)\(")
        manager = ", ".join(f"`JobManager.{m}`" for m in methods) or (
            ", ".join(f"`FleetStore.{m}`" for m in fleet) if fleet else "—"
        )
        if "register_worker" in fleet:
            scripts.append("register_worker")
        script = ", ".join(f"`lua/{s}.lua`" for s in dict.fromkeys(scripts)) or "—"
        ids = cases.get(kind, [])
        shown = ", ".join(ids[:3]) + (f" (+{len(ids) - 3})" if len(ids) > 3 else "")
        out.append(
            (
                f"`{kind}`",
                f"`schemas/messages/{kind}.json`",
                f"`commands/{module}.py: {handler.__name__}`",
                manager,
                script,
                shown or "**none**",
            )
        )
    return out


def render() -> str:
    lines = [
        "| message | schema | command | manager | Lua | conformance cases |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows()]
    return "\n".join(lines)


def readme_copy() -> str:
    text = README.read_text(encoding="utf-8")
    return text.split(START)[1].split(END)[0].strip()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write", action="store_true", help="rewrite hub/README.md's copy")
    args = parser.parse_args()
    table = render()
    if args.write:
        text = README.read_text(encoding="utf-8")
        head, rest = text.split(START)
        README.write_text(f"{head}{START}\n{table}\n{END}{rest.split(END)[1]}", encoding="utf-8")
    else:
        print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
