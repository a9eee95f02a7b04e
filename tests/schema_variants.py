"""Make invalid variants of a valid message from its schema.

For a message schema and one valid instance, ``variants()`` yields (label, dotted path, bad
instance) for: each required field removed, a wrong ``type`` constant, a value of the wrong JSON
type for each declared property, and values just outside each declared bound (minimum, maximum,
exclusive bounds, lengths, item counts, enums).  Nested objects present in the instance are
visited too, so ``requirements.hardware.gpu_memory_gb`` gets its own cases.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

from referencing._core import Resolver

WRONG_FOR = {
    "string": 12345,
    "integer": "12",
    "number": "1.5",
    "boolean": "yes",
    "object": [1, 2],
    "array": {"a": 1},
    "null": "not-null",
}


def resolve(schema: dict[str, Any], resolver: Resolver[Any]) -> tuple[dict[str, Any], Resolver[Any]]:
    """Follow ``$ref`` and one-element ``allOf`` wrappers to the schema that says the type."""
    while True:
        if "$ref" in schema:
            resolved = resolver.lookup(schema["$ref"])
            schema, resolver = resolved.contents, resolved.resolver
        elif "allOf" in schema and len(schema["allOf"]) == 1 and "type" not in schema:
            extra = {k: v for k, v in schema.items() if k != "allOf"}
            inner, resolver = resolve(schema["allOf"][0], resolver)
            schema = {**inner, **extra}
        else:
            return schema, resolver


def properties(schema: dict[str, Any], resolver: Resolver[Any]) -> tuple[dict[str, Any], list[str]]:
    """Own and ``allOf``-inherited properties (own win) and required names, each with its resolver."""
    props: dict[str, Any] = {}
    required: list[str] = []
    for part in schema.get("allOf", []):
        inner, inner_resolver = resolve(part, resolver)
        p, r = properties(inner, inner_resolver)
        props.update(p)
        required += r
    for name, sub in schema.get("properties", {}).items():
        props[name] = (sub, resolver)
    required += schema.get("required", [])
    return props, list(dict.fromkeys(required))


def _types(schema: dict[str, Any]) -> list[str]:
    t = schema.get("type")
    if isinstance(t, str):
        return [t]
    if isinstance(t, list):
        return t
    if "const" in schema:
        return ["const"]
    return []


def _bound_values(schema: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    if "minimum" in schema:
        yield "below-minimum", schema["minimum"] - 1
    if "maximum" in schema:
        yield "above-maximum", schema["maximum"] + 1
    if "exclusiveMinimum" in schema:
        yield "at-exclusive-minimum", schema["exclusiveMinimum"]
    if "minLength" in schema and schema["minLength"] > 0:
        yield "too-short", "x" * (schema["minLength"] - 1)
    if "maxLength" in schema:
        yield "too-long", "x" * (schema["maxLength"] + 1)
    if "enum" in schema and all(isinstance(v, str) for v in schema["enum"]):
        yield "not-in-enum", "not-a-valid-value"
    if "const" in schema:
        yield "wrong-const", f"not-{schema['const']}"
    if schema.get("minItems", 0) > 0:
        yield "too-few-items", []
    items = schema.get("items")
    if isinstance(items, dict) and "type" not in items and "$ref" not in items:
        return


def variants(
    schema: dict[str, Any], resolver: Resolver[Any], instance: dict[str, Any], prefix: tuple[str, ...] = ()
) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """Yield (label, dotted path, invalid instance) — ``instance`` is the root message."""
    node = _get(instance, prefix)
    props, required = properties(schema, resolver)
    for name in required:
        if name in node and not (prefix == () and name == "type"):
            yield f"missing:{_dot(prefix, name)}", _dot(prefix, name), _with(instance, prefix, name, _DELETE)
    if schema.get("additionalProperties") is False:
        yield (
            f"unknown-key:{_dot(prefix, 'zz_unknown')}",
            _dot(prefix, "zz_unknown"),
            _with(instance, prefix, "zz_unknown", 1),
        )
    for name, (sub, sub_resolver) in props.items():
        sub, sub_resolver = resolve(sub, sub_resolver)
        path = _dot(prefix, name)
        types = _types(sub)
        if types and types != ["const"]:
            wrong = next(v for t, v in WRONG_FOR.items() if t not in types and not _fits(v, types))
            yield f"wrong-type:{path}", path, _with(instance, prefix, name, wrong)
        for label, value in _bound_values(sub):
            if prefix == () and name == "type":
                label = "wrong-type-const"
            yield f"{label}:{path}", path, _with(instance, prefix, name, value)
        if "object" in types and isinstance(node.get(name), dict):
            yield from variants(sub, sub_resolver, instance, (*prefix, name))


def _fits(value: Any, types: list[str]) -> bool:
    # "1.5" is a string; 12345 is also a number/integer: pick values no declared type accepts
    checks = {
        "string": isinstance(value, str),
        "integer": isinstance(value, int) and not isinstance(value, bool),
        "number": isinstance(value, (int, float)) and not isinstance(value, bool),
        "boolean": isinstance(value, bool),
        "object": isinstance(value, dict),
        "array": isinstance(value, list),
        "null": value is None,
    }
    return any(checks.get(t, False) for t in types)


_DELETE = object()


def _dot(prefix: tuple[str, ...], name: str) -> str:
    return ".".join((*prefix, name))


def _get(instance: dict[str, Any], prefix: tuple[str, ...]) -> dict[str, Any]:
    node = instance
    for p in prefix:
        node = node[p]
    return node


def _with(instance: dict[str, Any], prefix: tuple[str, ...], name: str, value: Any) -> dict[str, Any]:
    out = copy.deepcopy(instance)
    node = _get(out, prefix)
    if value is _DELETE:
        del node[name]
    else:
        node[name] = value
    return out
