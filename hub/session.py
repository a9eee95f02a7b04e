"""One connection's protocol state, without I/O (decisions D2, D3, D5).

``Session.receive(frame)`` turns a raw frame into either an ``Accepted`` message for the command
table or a ``Refused`` reply (``error`` or ``unknown``), using the generated models only.  Which
role may send which message is the ``VALIDITY`` table below: it is the documentation and, in
``tests/test_session.py``, the test.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import orjson
import pydantic_core
from empq.generated.defs.base import BaseMessage
from empq.generated.messages.error import Error
from empq.generated.messages.unknown import Unknown
from empq.hub.auth import Grant
from pydantic import ValidationError

from empq import protocol


class Role(StrEnum):
    NEW = "new"  # connected, not registered yet
    JOB_CLIENT = "job_client"
    MONITOR = "monitor"
    WORKER = "worker"


N, C, M, W = Role.NEW, Role.JOB_CLIENT, Role.MONITOR, Role.WORKER
ANY = frozenset(Role)
REGISTERED = frozenset({C, M, W})
CLIENTS = frozenset({C, M})

# message type -> roles that may send it (state x command validity table)
VALIDITY: dict[str, frozenset[Role]] = {
    "register_client": frozenset({N}),
    "register_worker": frozenset({N}),
    "ping": ANY,
    "pong": ANY,
    "disconnect": ANY,
    "chunked_message": REGISTERED,
    "chunked_message_complete": REGISTERED,
    "submit_job": frozenset({C}),
    "request_job_status": CLIENTS,
    "cancel_job": CLIENTS,
    "subscribe_job": CLIENTS,
    "subscribe_job_notifications": CLIENTS,
    "subscribe_stats": CLIENTS,
    "request_stats": CLIENTS,
    "claim_job": frozenset({W}),
    "job_accepted_by_worker": frozenset({W}),
    "update_job_progress": frozenset({W}),
    "complete_job": frozenset({W}),
    "fail_job": frozenset({W}),
    "worker_heartbeat": frozenset({W}),
    "worker_status": frozenset({W}),
    "service_request": frozenset({W}),
    "connector_ws_status": frozenset({W}),
}

UNKNOWN_ECHO_LIMIT = 4096


@dataclass
class Accepted:
    message: BaseMessage
    request_id: str | None


@dataclass
class Refused:
    reply: BaseMessage
    close: bool = False


@dataclass
class Session:
    conn_id: str
    role: Role = Role.NEW
    client_id: str | None = None
    customer_id: str | None = None
    worker_id: str | None = None
    permissions: frozenset[str] = frozenset()
    capabilities: dict[str, Any] = field(default_factory=dict)
    chunked_messages: bool = False
    handshake_token: str | None = None  # presented on the WebSocket handshake (D4)
    connected_at: int = 0  # ms; unregistered past the registration timeout: closed (D19)
    address: str = ""  # the peer's host:port, for the log
    owner: str = ""  # digest of the token it registered with ('' in open dev mode)
    grant: Grant = field(default_factory=lambda: Grant("new"))  # what its token allows
    said_goodbye: bool = False  # sent disconnect (or was closed by the hub): no reconnect grace

    @property
    def peer_id(self) -> str | None:
        return self.worker_id or self.client_id

    @property
    def identity(self) -> str:
        """The submitter identity kept with a job (visibility without a customer, D13; idempotency
        scope, D18): the client id, scoped by the token it registered with when tokens are on, so
        another token choosing the same client id sees nothing of it (D19)."""
        return f"{self.owner}/{self.client_id}" if self.owner else (self.client_id or "")

    def receive(self, frame: bytes | str) -> Accepted | Refused:
        if _maybe_not_json(frame):
            return Refused(
                error(
                    "INVALID_PARAMETERS",
                    "frame is not valid JSON here (no NaN, Infinity or integers beyond 64 bits)",
                    None,
                    {"field": "(frame)", "reason": "invalid_json"},
                )
            )
        try:
            message = protocol.parse_to_hub(frame)
        except ValidationError as exc:
            return self._explain(exc, frame)
        kind = message.type
        request_id = message.id
        allowed = VALIDITY[kind]
        if self.role not in allowed:
            if self.role is Role.NEW:
                return Refused(error("NOT_REGISTERED", f"register before sending {kind}", request_id))
            if allowed == {Role.NEW}:
                return Refused(
                    error("ALREADY_REGISTERED", f"this connection is already a {self.role}", request_id)
                )
            return Refused(error("PERMISSION_DENIED", f"a {self.role} may not send {kind}", request_id))
        if self.role is Role.WORKER and message.worker_id is not None and message.worker_id != self.worker_id:
            if kind != "register_worker":
                return Refused(
                    error(
                        "PERMISSION_DENIED",
                        f"worker_id {message.worker_id} is not this connection's ({self.worker_id})",
                        request_id,
                        {"field": "worker_id", "provided_value": message.worker_id},
                    )
                )
        return Accepted(message, request_id)

    def _explain(self, exc: ValidationError, frame: bytes | str) -> Refused:
        try:  # the parser that refused it (jiter): orjson would also refuse valid JSON (1e999, huge ints)
            data = pydantic_core.from_json(frame)
        except ValueError:
            return Refused(
                error("INVALID_PARAMETERS", "frame is not valid JSON", None, protocol.error_details(exc))
            )
        request_id = data.get("id") if isinstance(data, dict) and isinstance(data.get("id"), str) else None
        if not isinstance(data, dict):
            return Refused(
                error(
                    "INVALID_PARAMETERS",
                    "a message must be a JSON object",
                    None,
                    {"field": "(message)", "provided_value": type(data).__name__},
                )
            )
        kind = data.get("type")
        if isinstance(kind, str) and kind not in protocol.MESSAGE_CLASSES:
            text = frame.decode("utf-8", "replace") if isinstance(frame, bytes) else frame
            return Refused(
                protocol.make(
                    Unknown,
                    content=f"Received unrecognized message type {kind!r}",
                    original_message=text[:UNKNOWN_ECHO_LIMIT],
                    **({"request_id": request_id} if request_id else {}),
                )
            )
        if isinstance(kind, str) and kind not in protocol.INBOUND:
            return Refused(
                error(
                    "INVALID_PARAMETERS",
                    f"{kind} is sent by the hub, not to it",
                    request_id,
                    {"field": "type", "provided_value": kind},
                )
            )
        details = protocol.error_details(exc, data)
        return Refused(
            error(
                "INVALID_PARAMETERS",
                f"invalid {kind or 'message'}: {details['field']}: {details['message']}",
                request_id,
                details,
            )
        )


def _maybe_not_json(frame: bytes | str) -> bool:
    """The parser takes NaN and Infinity as numbers; JSON has none (a worker's processing_time of
    Infinity once broke a transition halfway). Only frames that spell them are parsed twice."""
    if isinstance(frame, str):
        if "NaN" not in frame and "Infinity" not in frame:
            return False
    elif b"NaN" not in frame and b"Infinity" not in frame:
        return False
    try:
        orjson.loads(frame)
    except orjson.JSONDecodeError:
        return True
    return False


def error(
    code: str, text: str, request_id: str | None = None, details: dict[str, Any] | None = None
) -> Error:
    fields: dict[str, Any] = {"error": text, "error_code": code}
    if details:
        fields["details"] = details
    if request_id:
        fields["request_id"] = request_id
    return protocol.make(Error, **fields)
