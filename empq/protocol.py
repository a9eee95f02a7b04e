"""One place to turn frames into generated models and back.

The message shapes live in ``schemas/`` and the classes in ``empq.generated`` (made from the
schemas).  This module adds only what every user of them needs: parse a frame through a
direction's envelope in one call, build a message with ``type`` and ``timestamp`` filled in,
serialise it, and describe a validation failure as the protocol's error ``details``.

It imports no message class until one is needed, so a program that uses a few messages loads only
those (a CLI command starts in a fraction of the time all ~50 models take): ``message_class(tag)``
imports one class, ``parse_from_hub`` only the class a frame's ``type`` names, and ``ENVELOPES``,
``INBOUND``, ``OUTBOUND`` and ``MESSAGE_CLASSES`` (every class) are built on first use. Which
types a direction carries is read from its envelope's schema, the source of truth.
"""

from __future__ import annotations

import functools
import importlib
import json
import os
import time
import typing
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import orjson
from pydantic import BaseModel, RootModel, ValidationError

import empq.schemas
from empq.generated.defs.base import BaseMessage

M = TypeVar("M", bound=BaseMessage)

ENVELOPE_NAMES = (
    "client_to_hub",
    "worker_to_hub",
    "hub_to_client",
    "hub_to_worker",
    "hub_to_monitor",
    "to_hub",
    "from_hub",
)
SCHEMAS = Path(typing.cast(str, empq.schemas.__file__)).parent

if TYPE_CHECKING:  # built on first use (module __getattr__ below)
    ENVELOPES: dict[str, type[RootModel[Any]]]
    INBOUND: dict[str, type[BaseMessage]]
    OUTBOUND: dict[str, type[BaseMessage]]
    MESSAGE_CLASSES: dict[str, type[BaseMessage]]


@functools.cache
def _schema(kind: str, name: str) -> dict[str, Any]:
    return typing.cast(dict[str, Any], json.loads((SCHEMAS / kind / f"{name}.json").read_bytes()))


@functools.cache
def message_tags() -> frozenset[str]:
    """Every message type: one schema each in ``schemas/messages``."""
    return frozenset(path.stem for path in (SCHEMAS / "messages").glob("*.json"))


@functools.cache
def envelope_tags(name: str) -> frozenset[str]:
    """The message types of a direction's envelope (``"from_hub"``...), from its schema."""
    return frozenset(Path(member["$ref"]).stem for member in _schema("envelopes", name)["oneOf"])


@functools.cache
def message_class(tag: str) -> type[BaseMessage]:
    """The generated class of a message type, importing only its module (``KeyError``: no such type)."""
    if tag not in message_tags():
        raise KeyError(tag)
    module = importlib.import_module(f"empq.generated.messages.{tag}")
    cls: type[BaseMessage] = getattr(module, _schema("messages", tag)["title"])
    return cls


@functools.cache
def envelope(name: str) -> type[RootModel[Any]]:
    """A direction's envelope: the union of its message classes, discriminated by ``type``."""
    if name not in ENVELOPE_NAMES:
        raise KeyError(name)
    module = importlib.import_module(f"empq.generated.envelopes.{name}")
    cls: type[RootModel[Any]] = getattr(module, _schema("envelopes", name)["title"])
    return cls


def members(envelope: type[RootModel[Any]]) -> dict[str, type[BaseMessage]]:
    """The message classes of an envelope union, keyed by their ``type`` constant."""
    union = envelope.model_fields["root"].annotation
    out: dict[str, type[BaseMessage]] = {}
    for cls in typing.get_args(union):
        (tag,) = typing.get_args(cls.model_fields["type"].annotation)
        out[tag] = cls
    return out


def __getattr__(name: str) -> Any:
    """``ENVELOPES``, ``INBOUND``, ``OUTBOUND``, ``MESSAGE_CLASSES``: imported on first use."""
    value: Any
    if name == "ENVELOPES":
        value = {each: envelope(each) for each in ENVELOPE_NAMES}
    elif name == "INBOUND":
        value = members(envelope("to_hub"))
    elif name == "OUTBOUND":
        value = members(envelope("from_hub"))
    elif name == "MESSAGE_CLASSES":
        value = {**members(envelope("to_hub")), **members(envelope("from_hub"))}
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def parse(envelope: type[RootModel[Any]], frame: bytes | str) -> BaseMessage:
    """Parse a JSON frame through an envelope; returns the member class instance."""
    return typing.cast(BaseMessage, envelope.model_validate_json(frame).root)


def parse_to_hub(frame: bytes | str) -> BaseMessage:
    return parse(envelope("to_hub"), frame)


def parse_as(name: str, frame: bytes | str) -> BaseMessage:
    """Parse a frame of a direction (``"from_hub"``...) importing only the class its ``type`` names.

    The result is the envelope's (a union discriminated by ``type`` validates a frame with the
    class its tag names). A frame that names no type of the direction, is not a JSON object or is
    refused goes through the envelope itself, so the ``ValidationError`` is the envelope's too."""
    try:
        data = orjson.loads(frame)
    except orjson.JSONDecodeError:
        data = None
    tag = data.get("type") if isinstance(data, dict) else None
    if isinstance(tag, str) and tag in envelope_tags(name):
        try:
            return message_class(tag).model_validate_json(frame)
        except ValidationError:
            pass  # the envelope's error: its locations start with the tag, as error_details expects
    return parse(envelope(name), frame)


def parse_from_hub(frame: bytes | str) -> BaseMessage:
    """Parse a frame the hub sent (``FromHub``), importing only the class of its type."""
    return parse_as("from_hub", frame)


@functools.cache
def type_tag(cls: type[BaseModel]) -> str:
    """The ``type`` constant of a message class (``Literal['job_update']`` -> ``'job_update'``)."""
    (tag,) = typing.get_args(cls.model_fields["type"].annotation)
    return str(tag)


def make(cls: type[M], **fields: Any) -> M:
    """Build a message: ``type`` from the class, ``timestamp`` now unless given."""
    fields.setdefault("timestamp", now_ms())
    return cls(type=type_tag(cls), **fields)


# Set EMPQ_CHECK_FRAMES=1 (the test suite does) to validate every ``Outgoing`` frame with its model.
CHECK_FRAMES = os.environ.get("EMPQ_CHECK_FRAMES", "") not in ("", "0")


class FrameCheckError(AssertionError):
    """An ``Outgoing`` frame its generated model refuses, or would write differently."""


class Outgoing:
    """A message for the hot path: its generated class and its fields, encoded by orjson.

    ``make`` + ``encode`` validate the fields into the model and serialise the model again
    (≈ 16 µs a message here); this writes the same JSON from the fields directly (≈ 2 µs). The
    fields are the hub's own (what it read from Redis and from messages it validated), so the
    model is the check, not the path: with ``EMPQ_CHECK_FRAMES=1`` (the tests) every frame is
    validated by its class and compared with what ``make`` + ``encode`` would write
    (``FrameCheckError`` when they differ). Values may be generated models (written as ``encode``
    writes them) and ``orjson.Fragment`` (JSON already encoded, written as it is)."""

    __slots__ = ("cls", "fields")

    def __init__(self, cls: type[BaseMessage], fields: dict[str, Any]) -> None:
        self.cls, self.fields = cls, fields

    @property
    def type(self) -> str:
        return typing.cast(str, self.fields["type"])

    @property
    def request_id(self) -> str | None:
        return self.fields.get("request_id")

    @request_id.setter
    def request_id(self, value: str | None) -> None:
        self.fields["request_id"] = value

    def encode(self) -> bytes:
        data = orjson.dumps(self.fields, default=_model_json)
        if CHECK_FRAMES:
            check_frame(self.cls, data)
        return data

    def __repr__(self) -> str:
        return f"Outgoing({self.cls.__name__}, {self.fields!r})"


def outgoing(cls: type[BaseMessage], **fields: Any) -> Outgoing:
    """``make`` for the hot path: ``type`` from the class, ``timestamp`` now unless given."""
    fields.setdefault("timestamp", now_ms())
    return Outgoing(cls, {"type": type_tag(cls), **fields})


def _model_json(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True, exclude_unset=True)
    raise TypeError(f"{type(value).__name__} is not JSON")


def check_frame(cls: type[BaseMessage], data: bytes) -> None:
    """``data`` is a valid ``cls`` and says what the model would write (``FrameCheckError``)."""
    try:
        model = cls.model_validate_json(data)
    except ValidationError as exc:
        raise FrameCheckError(f"{cls.__name__} refuses {data[:300]!r}: {exc}") from exc
    wrote = orjson.loads(encode(model))
    if wrote != orjson.loads(data):
        raise FrameCheckError(f"{cls.__name__}: the model writes {wrote!r}, the fields {data[:300]!r}")


def encode(msg: BaseModel | Outgoing) -> bytes:
    """Serialise exactly the fields that were set (and extras), as compact JSON bytes."""
    if type(msg) is Outgoing:
        return msg.encode()
    assert isinstance(msg, BaseModel)
    return msg.__pydantic_serializer__.to_json(msg, by_alias=True, exclude_unset=True)


def to_dict(msg: BaseModel | Outgoing) -> dict[str, Any]:
    if type(msg) is Outgoing:
        return typing.cast(dict[str, Any], orjson.loads(msg.encode()))
    assert isinstance(msg, BaseModel)
    return msg.model_dump(mode="json", by_alias=True, exclude_unset=True)


def error_details(exc: ValidationError, frame: Any = None) -> dict[str, Any]:
    """The first validation error as the protocol's ``error.details``.

    ``field`` is the dotted path inside the message (the envelope's tag step is dropped),
    ``message`` pydantic's explanation and ``provided_value`` what was sent there.
    """
    err = exc.errors(include_url=False)[0]
    loc = [str(p) for p in err["loc"]]
    kind = err["type"]
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        field = "type"
    else:
        if loc and isinstance(frame, dict) and loc[0] == frame.get("type"):
            loc = loc[1:]
        elif loc and loc[0] in message_tags():
            loc = loc[1:]
        field = ".".join(loc)
    details: dict[str, Any] = {"field": field or "(message)", "message": err["msg"]}
    if kind == "json_invalid":
        details["field"] = "(frame)"
        details["reason"] = "invalid_json"
    elif kind != "missing":
        value = err.get("input")
        if isinstance(value, (str, int, float, bool)) or value is None:
            details["provided_value"] = value
        else:
            details["provided_value"] = repr(value)[:200]
    return details
