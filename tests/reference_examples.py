"""Extract the JSON examples from the protocol reference document.

The reference (``shared/protocol/websocket-api-reference.md``) shows its messages as
```json blocks that hold one or more objects separated by ``//`` comment lines.  This module
turns them into plain dicts so tests can check them against ``schemas/`` and the generated
models.  It is test support only: nothing in the product reads the reference at run time.

The reference sits beside the repository, not in it: a fresh clone has none. ``reference()``
then skips the calling test with one line saying where it looked and how to point at it
(``EMPQ_REFERENCE``); the examples the schemas carry (``schema_examples``, the reference's own
examples copied into ``schemas/``) are always there.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

_BLOCK = re.compile(r"```json\n(.*?)```", re.S)


def reference_path() -> Path:
    """Where the reference lives: ``$EMPQ_REFERENCE`` or ``../shared/protocol/`` beside the repo."""
    env = os.environ.get("EMPQ_REFERENCE")
    if env:
        return Path(env)
    repo = Path(__file__).resolve().parent.parent
    return repo.parent / "shared" / "protocol" / "websocket-api-reference.md"


def _strip_comment_lines(block: str) -> str:
    return "\n".join(line for line in block.splitlines() if not line.strip().startswith("//"))


def extract_examples(text: str) -> list[dict]:
    """Every JSON object in every ```json block of ``text``, in document order."""
    decoder = json.JSONDecoder()
    found: list[dict] = []
    for block in _BLOCK.findall(text):
        body = _strip_comment_lines(block)
        pos = 0
        while True:
            while pos < len(body) and body[pos].isspace():
                pos += 1
            if pos >= len(body):
                break
            obj, pos = decoder.raw_decode(body, pos)
            found.append(obj)
    return found


MISSING = "no protocol reference at {path} (set EMPQ_REFERENCE to websocket-api-reference.md)"


def reference_available() -> bool:
    return reference_path().is_file()


def reference_text() -> str:
    """The reference's text; the calling test is skipped (one line) when there is none."""
    path = reference_path()
    if not path.is_file():
        import pytest

        pytest.skip(MISSING.format(path=path))
    return path.read_text(encoding="utf-8")


def reference_examples() -> list[dict]:
    return extract_examples(reference_text())


def examples_by_type() -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for example in reference_examples():
        out.setdefault(example["type"], []).append(example)
    return out


def schema_examples() -> dict[str, list[dict]]:
    """The examples each message schema carries (the reference's own, copied in), by type."""
    folder = Path(__file__).resolve().parent.parent / "schemas" / "messages"
    return {
        path.stem: json.loads(path.read_text(encoding="utf-8")).get("examples", [])
        for path in sorted(folder.glob("*.json"))
    }


if __name__ == "__main__":  # pragma: no cover - a quick look for people
    for kind, items in sorted(examples_by_type().items()):
        print(f"{kind:32} {len(items)}")
