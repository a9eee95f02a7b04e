"""Redis pub/sub for the hub's bus: its own connection, opened where ``RespClient`` would go,
re-subscribed after a loss."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from typing import TYPE_CHECKING, Any

import hiredis
from empq.hub.resp_wire import encode_command

if TYPE_CHECKING:
    from empq.hub.resp import RespClient

log = logging.getLogger("empq.hub.redis")


class _SubscriberProtocol(asyncio.Protocol):
    def __init__(self, on_message: Any, on_subscribed: Any = None) -> None:
        self.reader = hiredis.Reader()
        self.on_message = on_message
        self.on_subscribed = on_subscribed
        self.transport: asyncio.Transport | None = None
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.error: str | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while True:
            reply = self.reader.gets()
            if reply is False:
                return
            if isinstance(reply, list) and len(reply) == 3 and reply[0] == b"message":
                self.on_message(reply[2])
            elif isinstance(reply, list) and reply and reply[0] == b"subscribe" and self.on_subscribed:
                self.on_subscribed()
            elif isinstance(reply, hiredis.ReplyError):  # AUTH or SUBSCRIBE refused
                self.error = str(reply)
                if self.transport is not None:
                    self.transport.close()
                return

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


def _same(protocol: asyncio.Protocol) -> asyncio.Protocol:
    return protocol


class RespSubscriber:
    """Redis pub/sub on its own connection: ``on_message(data: bytes)`` for every message on
    ``channel``.  Re-subscribes after a lost connection (e.g. a Redis restart or failover), then
    calls ``on_resubscribed()``: what was published in between was lost."""

    def __init__(
        self, client: RespClient, channel: str, on_message: Any, on_resubscribed: Any = None
    ) -> None:
        self.client = client
        self.channel = channel
        self.on_message = on_message
        self.on_resubscribed = on_resubscribed
        self._subscribed_before = False
        self.task: asyncio.Task[None] | None = None
        self.ready = asyncio.Event()

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        c = self.client
        delay = 0.05
        while True:
            transport = None
            try:
                protocol = _SubscriberProtocol(self.on_message, self._subscribed)
                transport = await c.open_connection(functools.partial(_same, protocol))
                auth = c.target.auth_command()
                commands = ([auth] if auth else []) + [("SUBSCRIBE", self.channel)]
                transport.write(b"".join(encode_command(command) for command in commands))  # type: ignore[attr-defined]
                await protocol.closed
                if protocol.error:
                    log.warning("Redis refused the bus subscription to %s: %s", self.channel, protocol.error)
                elif self.ready.is_set():
                    delay = 0.05
            except (OSError, TimeoutError) as exc:
                log.debug("bus subscription: %s", exc)
            finally:
                self.ready.clear()
                if transport is not None:
                    transport.close()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)

    def _subscribed(self) -> None:
        self.ready.set()
        if self._subscribed_before and self.on_resubscribed is not None:
            self.on_resubscribed()
        self._subscribed_before = True

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
