"""Findings: what the frames a hub sent got wrong, deduplicated across the run.

Every received frame is checked against its schema.  Each problem becomes a ``Cause`` whose key
leaves the values out, so 95 greetings that all lack ``active_workers`` are one finding seen in 95
frames ("system_status: missing active_workers"), not 95.  All violations of a frame are recorded,
not the first one only.  A timestamp field that holds seconds where the reference has Unix
milliseconds is told as such (whether it is a float the schema refuses or an integer it takes).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from empq.conformance.model import Cause
from empq.conformance.schemas import SchemaSet, Violation

SECONDS_BELOW = 100_000_000_000  # as milliseconds this is 1973; as seconds, the year 5138

SECONDS_HINT = (
    "The reference's timestamps are Unix time in milliseconds, an integer (1705312345000); "
    "this hub sends seconds: multiply by 1000 and round."
)


@dataclass
class Finding:
    key: str
    title: str
    hint: str = ""
    frames: int = 0
    cases: set[str] = field(default_factory=set)
    example: Any = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "title": self.title,
            "hint": self.hint,
            "frames": self.frames,
            "cases": sorted(self.cases),
            "example": self.example,
        }


class Findings:
    """The run's findings by key (a frame's problem counts once per frame)."""

    def __init__(self) -> None:
        self.items: dict[str, Finding] = {}

    def add(self, cause: Cause, case_id: str, example: Any = None) -> None:
        item = self.items.get(cause.key)
        if item is None:
            item = self.items[cause.key] = Finding(cause.key, cause.title, cause.hint, example=example)
        item.frames += 1
        item.cases.add(case_id)

    def ordered(self) -> list[Finding]:
        return sorted(self.items.values(), key=lambda f: (-f.frames, f.key))


def frame_causes(frame: dict[str, Any], violations: list[Violation], schemas: SchemaSet) -> list[Cause]:
    """One cause per problem of a received frame: each schema violation, each field in seconds."""
    kind = frame.get("type")
    known = isinstance(kind, str) and kind in schemas.messages
    seconds = (
        sorted(name for name in schemas.millis_fields(kind) if _seconds(frame.get(name)))
        if known and isinstance(kind, str)
        else []
    )
    told = [v for v in violations if not (v.path in seconds and v.keyword == "type")]
    missing = [v for v in told if v.keyword == "required"]
    out = [violation_cause(str(kind), v) for v in told if v.keyword != "required"]
    for path in sorted({v.path for v in missing}):  # one line per object: "missing a, b, c"
        out.append(missing_cause(str(kind), path, [_required_name(v) for v in missing if v.path == path]))
    if seconds:
        out.append(seconds_cause(", ".join(seconds)))
    return out


def missing_cause(kind: str, path: str, names: list[str]) -> Cause:
    prefix = f"{_generic(path)}." if path else ""
    listed = ", ".join(prefix + name for name in sorted(names))
    return Cause(
        f"schema:{kind}:missing:{listed}", f"{kind}: missing {listed}", f"schemas/messages/{kind}.json"
    )


def _required_name(v: Violation) -> str:
    match = re.match(r"'(.+)' is a required property", v.message)
    return match.group(1) if match else v.message


def _generic(path: str) -> str:
    """``alerts.0.severity`` -> ``alerts[].severity`` (the same words for every item)."""
    return re.sub(r"\.\d+(?=\.|$)", "[]", f".{path}" if path else "").lstrip(".")


def violation_cause(kind: str, v: Violation) -> Cause:
    path = _generic(v.path)
    hint = f"schemas/messages/{kind}.json"
    if v.path == "type" and v.message.startswith("unknown message type"):
        return Cause(
            f"schema:unknown-type:{kind}",
            f"frames of a type the reference does not have: {kind!r}",
            "The reference's message types are listed in schemas/messages/.",
        )
    if v.keyword == "required":
        return missing_cause(kind, v.path, [_required_name(v)])
    if v.keyword == "type":
        got = _json_type(v.value)
        want = " or ".join(v.expected) if isinstance(v.expected, list) else str(v.expected)
        return Cause(f"schema:{kind}:type:{path}:{got}", f"{kind}: {path} is {got}, not of type {want}", hint)
    if v.keyword in ("enum", "const"):
        shown = repr(v.value)[:60]
        return Cause(
            f"schema:{kind}:{v.keyword}:{path}:{shown}",
            f"{kind}: {path or '(message)'} is {shown}, not {_options(v.expected)}",
            hint,
        )
    return Cause(
        f"schema:{kind}:{v.keyword}:{path}:{v.expected!r}"[:300],
        f"{kind}: {path or '(message)'}: {v.message[:200]}",
        hint,
    )


def seconds_cause(name: str) -> Cause:
    """One cause for every field: the hub's clock is in seconds (``name`` only in the hint)."""
    return Cause(
        "seconds", "timestamps are in seconds, not Unix milliseconds", f"{SECONDS_HINT} Seen in: {name}."
    )


def _seconds(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and 0 < value < SECONDS_BELOW


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _options(expected: Any) -> str:
    if isinstance(expected, list):
        return "one of " + ", ".join(repr(e) for e in expected[:8]) + (", ..." if len(expected) > 8 else "")
    return repr(expected)
