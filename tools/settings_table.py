"""README.md's settings table of ``empq hub``, from the code (``HubConfig`` and ``config.HELP``).

``tests/test_settings_table.py`` fails when README.md's copy differs; ``python
tools/settings_table.py --write`` rewrites it.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from pathlib import Path

from empq.hub.config import HELP, SECRETS, HubConfig

README = Path(__file__).resolve().parent.parent / "README.md"
START, END = "<!-- settings:start -->", "<!-- settings:end -->"


def render() -> str:
    defaults = HubConfig()
    lines = ["| flag | environment | default | what |", "| --- | --- | --- | --- |"]
    for f in fields(HubConfig):
        flag = "—" if f.name in SECRETS else f"`--{f.name.replace('_', '-')}`"
        default = getattr(defaults, f.name)
        shown = "none" if default in (None, "") else f"`{default}`"
        lines.append(f"| {flag} | `{HubConfig.ENV_PREFIX}{f.name.upper()}` | {shown} | {HELP[f.name]} |")
    return "\n".join(lines)


def readme_copy() -> str:
    return README.read_text(encoding="utf-8").split(START)[1].split(END)[0].strip()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write", action="store_true", help="rewrite README.md's copy")
    if parser.parse_args().write:
        text = README.read_text(encoding="utf-8")
        head, rest = text.split(START)
        README.write_text(f"{head}{START}\n{render()}\n{END}{rest.split(END)[1]}", encoding="utf-8")
    else:
        print(render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
