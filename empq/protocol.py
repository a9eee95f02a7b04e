"""One place to turn frames into generated models and back.

The message shapes live in ``schemas/`` and the classes in ``empq.generated`` (made from the
schemas).  This module adds only what every user of them needs: parse a frame through a
direction's envelope in one call, build a message with ``type`` and ``timestamp`` filled in,
serialise it, and describe a validation failure as the protocol's error ``details``.
"""

from __future__ import annotations

import functools
import time
import typing
from typing import Any, TypeVar

from pydantic import BaseModel, RootModel, ValidationError

from empq.generated.defs.base import BaseMessage
from empq.generated.envelopes.client_to_hub import ClientToHub
from empq.generated.envelopes.from_hub import FromHub
from empq.generated.envelopes.hub_to_client import HubToClient
from empq.generated.envelopes.hub_to_monitor import HubToMonitor
from empq.generated.envelopes.hub_to_worker import HubToWorker
from empq.generated.envelopes.to_hub import ToHub
from empq.generated.envelopes.worker_to_hub import WorkerToHub

M = TypeVar("M", bound=BaseMessage)

ENVELOPES: dict[str, type[RootModel[Any]]] = {
    "client_to_hub": ClientToHub,
    "worker_to_hub": WorkerToHub,
    "hub_to_client": HubToClient,
    "hub_to_worker": HubToWorker,
    "hub_to_monitor": HubToMonitor,
    "to_hub": ToHub,
    "from_hub": FromHub,
}


def members(envelope: type[RootModel[Any]]) -> dict[str, type[BaseMessage]]:
    """The message classes of an envelope union, keyed by their ``type`` constant."""
    union = envelope.model_fields["root"].annotation
    out: dict[str, type[BaseMessage]] = {}
    for cls in typing.get_args(union):
        (tag,) = typing.get_args(cls.model_fields["type"].annotation)
        out[tag] = cls
    return out


INBOUND: dict[str, type[BaseMessage]] = members(ToHub)
OUTBOUND: dict[str, type[BaseMessage]] = members(FromHub)
MESSAGE_CLASSES: dict[str, type[BaseMessage]] = {**INBOUND, **OUTBOUND}


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def parse(envelope: type[RootModel[Any]], frame: bytes | str) -> BaseMessage:
    """Parse a JSON frame through an envelope; returns the member class instance."""
    return typing.cast(BaseMessage, envelope.model_validate_json(frame).root)


def parse_to_hub(frame: bytes | str) -> BaseMessage:
    return parse(ToHub, frame)


def parse_from_hub(frame: bytes | str) -> BaseMessage:
    return parse(FromHub, frame)


@functools.cache
def type_tag(cls: type[BaseModel]) -> str:
    """The ``type`` constant of a message class (``Literal['job_update']`` -> ``'job_update'``)."""
    (tag,) = typing.get_args(cls.model_fields["type"].annotation)
    return str(tag)


def make(cls: type[M], **fields: Any) -> M:
    """Build a message: ``type`` from the class, ``timestamp`` now unless given."""
    fields.setdefault("timestamp", now_ms())
    return cls(type=type_tag(cls), **fields)


def encode(msg: BaseModel) -> bytes:
    """Serialise exactly the fields that were set (and extras), as compact JSON bytes."""
    return msg.__pydantic_serializer__.to_json(msg, by_alias=True, exclude_unset=True)


def to_dict(msg: BaseModel) -> dict[str, Any]:
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
        elif loc and loc[0] in MESSAGE_CLASSES:
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
