"""Frame validation with jsonschema against ``schemas/`` — independent of the generated models.

The suite checks every frame it receives with this, so a hub (or a generated model) that drifts
from the schemas is caught by a second, unrelated implementation of JSON Schema.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry, Resource


@dataclass(frozen=True)
class Violation:
    path: str
    message: str
    value: Any
    keyword: str = ""  # the JSON Schema keyword that failed: required, type, enum, ...
    expected: Any = None  # that keyword's value in the schema (the required names, the type, ...)

    def __str__(self) -> str:
        return f"{self.path or '(message)'}: {self.message}"


def _load_all() -> dict[str, dict[str, Any]]:
    root = resources.files("empq.schemas")
    out: dict[str, dict[str, Any]] = {}
    for folder in ("defs", "messages", "envelopes"):
        for entry in root.joinpath(folder).iterdir():
            if entry.name.endswith(".json"):
                out[f"{folder}/{entry.name}"] = json.loads(entry.read_text(encoding="utf-8"))
    return out


class SchemaSet:
    """All schemas, a registry resolving their ``$ref``s, and a validator per message type."""

    def __init__(self, schemas: dict[str, dict[str, Any]] | None = None) -> None:
        self.schemas = schemas if schemas is not None else _load_all()
        self.registry: Registry[Any] = Registry().with_resources(
            (s["$id"], Resource.from_contents(s)) for s in self.schemas.values()
        )
        self.messages: dict[str, dict[str, Any]] = {
            name.removeprefix("messages/").removesuffix(".json"): s
            for name, s in self.schemas.items()
            if name.startswith("messages/")
        }
        self._validators: dict[str, Draft202012Validator] = {}
        self._millis: dict[str, frozenset[str]] = {}

    def validator(self, key: str) -> Draft202012Validator:
        """Validator for a message type (``submit_job``) or a path (``envelopes/to_hub.json``)."""
        if key not in self._validators:
            schema = self.messages[key] if key in self.messages else self.schemas[key]
            self._validators[key] = Draft202012Validator(
                schema, registry=self.registry, format_checker=Draft202012Validator.FORMAT_CHECKER
            )
        return self._validators[key]

    def violations(self, frame: Any, key: str | None = None) -> list[Violation]:
        """Schema violations of ``frame``: against its own type's schema unless ``key`` is given."""
        if key is None:
            kind = frame.get("type") if isinstance(frame, dict) else None
            if not isinstance(kind, str) or kind not in self.messages:
                return [Violation("type", f"unknown message type {kind!r}", kind)]
            key = kind
        found = []
        for err in self.validator(key).iter_errors(frame):
            path = ".".join(str(p) for p in err.absolute_path)
            found.append(Violation(path, err.message, err.instance, str(err.validator), err.validator_value))
        return sorted(found, key=lambda v: v.path)

    def millis_fields(self, kind: str) -> frozenset[str]:
        """The top-level fields of a message type that hold Unix milliseconds (``timestamp`` always)."""
        if kind not in self._millis:
            props = self.messages.get(kind, {}).get("properties", {})
            self._millis[kind] = frozenset(
                {"timestamp"} | {name for name, sub in props.items() if _refers_to_millis(sub)}
            )
        return self._millis[kind]


def _refers_to_millis(schema: Any) -> bool:
    if not isinstance(schema, dict):
        return False
    if str(schema.get("$ref", "")).endswith("UnixMillis"):
        return True
    return any(_refers_to_millis(s) for key in ("allOf", "anyOf", "oneOf") for s in schema.get(key, ()))


@cache
def default_schemas() -> SchemaSet:
    return SchemaSet()
