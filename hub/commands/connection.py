"""What any connection may send: ping/pong, disconnect, and chunks of a larger message (D15)."""

from __future__ import annotations

import logging
from typing import Any

from empq.generated.messages.chunked_message import ChunkedMessage
from empq.generated.messages.chunked_message_complete import ChunkedMessageComplete
from empq.generated.messages.disconnect import Disconnect
from empq.generated.messages.pong import Pong
from empq.hub.chunks import Complete, Refused
from empq.hub.commands.request import Handler, Request
from empq.hub.logs import event
from empq.hub.session import Role
from empq.hub.workers import now_ms

from empq import protocol

log = logging.getLogger("empq.hub")


async def ping(req: Request[Any]) -> None:
    req.reply(protocol.make(Pong))


async def receipt(req: Request[Any]) -> None:
    """pong and chunked_message_complete: receipts, no reply."""


async def disconnect(req: Request[Disconnect]) -> None:
    """A graceful goodbye: a worker's jobs go back to the queue at once, without counting a retry
    (D16); subscriptions go unless ``cleanup_subscriptions`` is false."""
    session, hub = req.session, req.hub
    session.said_goodbye = True
    if session.role is Role.WORKER and session.worker_id:
        hub.workers.remove(session.worker_id)  # not offered its own jobs back
        # its jobs first, then its registration: until the jobs are back in the queue, the id
        # stays this token's (another token registering it meanwhile would resume them, D19)
        released = await hub.jobs.release_worker(session.worker_id, lost=False)
        await hub.fleet.worker_gone(session.worker_id)
        log.info(
            "worker %s disconnected (%s): %d job(s) back in the queue",
            session.worker_id,
            req.message.reason or "no reason given",
            len(released),
            extra=event(session, "disconnected"),
        )
    if req.message.cleanup_subscriptions is not False:
        hub.subs.drop(session.conn_id)
    hub.outbox.close(session.conn_id, 1000, "disconnect")


async def chunked_message(req: Request[ChunkedMessage]) -> None:
    msg, hub = req.message, req.hub
    outcome = hub.chunks.add(req.conn_id, msg, now_ms())
    if isinstance(outcome, Refused):
        req.refuse("CHUNK_ERROR", outcome.text, {"chunk_id": msg.chunk_id, "reason": outcome.reason})
    elif isinstance(outcome, Complete):
        req.reply(
            protocol.make(
                ChunkedMessageComplete,
                chunk_id=msg.chunk_id,
                total_size=len(outcome.data),
                original_type=outcome.original_type,
            )
        )
        await hub.receive(req.conn_id, outcome.data)  # as if it had been sent whole
    else:
        req.ack()


HANDLERS: dict[str, Handler] = {
    "ping": ping,
    "pong": receipt,
    "chunked_message_complete": receipt,
    "disconnect": disconnect,
    "chunked_message": chunked_message,
}
