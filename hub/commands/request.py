"""A request as a handler sees it: who sent it, the parsed message, and how to answer."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from empq.generated.defs.base import BaseMessage
from empq.generated.messages.ack import Ack
from empq.hub.session import Session, error

from empq import protocol
from empq.protocol import Outgoing

if TYPE_CHECKING:
    from empq.hub.core import HubCore

M = TypeVar("M", bound=BaseMessage)


@dataclass(slots=True)
class Request(Generic[M]):
    hub: HubCore
    session: Session
    message: M

    @property
    def id(self) -> str | None:
        return self.message.id

    @property
    def conn_id(self) -> str:
        return self.session.conn_id

    def reply(self, message: BaseMessage | Outgoing) -> None:
        """Answer; the reply carries the request's id as ``request_id`` (D2)."""
        if self.message.id and message.request_id is None:
            message.request_id = self.message.id
        self.hub.fanout.send(self.session.conn_id, message)

    def reply_frame(self, data: bytes) -> None:
        """Answer with a frame already encoded (with its request_id)."""
        self.hub.fanout.deliver(self.session.conn_id, data)

    def ack(self, status: str = "processed") -> None:
        """``ack`` (D6): plain acks only for messages that carry an id; ``no_job_available``
        always (it ends a claim)."""
        if status == "processed" and self.message.id is None:
            return
        self.reply(
            protocol.outgoing(
                Ack,
                message_id=self.message.id or f"msg-{uuid.uuid4().hex[:12]}",
                original_type=self.message.type,
                status=status,
            )
        )

    def refuse(self, code: str, text: str, details: dict[str, Any] | None = None) -> None:
        """Answer with ``error`` (D5): the message changed nothing."""
        self.reply(error(code, text, self.message.id, details))


Handler = Callable[[Request[Any]], Awaitable[None]]
