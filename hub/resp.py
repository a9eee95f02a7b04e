"""A small pipelining Redis client: one connection, commands written in batches, replies
matched to callers in order.

redis-py spends tens of microseconds of Python per command on packing, connection-pool and
response-callback bookkeeping; the hub sends every job transition as one EVALSHA, so that cost
was a third of the hub's CPU.  Here a batch of commands is encoded into one buffer and written
with one call, and replies are parsed by hiredis as they arrive.  Redis answers in order, so a
FIFO of futures is all the bookkeeping there is.  A lost connection fails the waiting callers
and is re-opened on the next call.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

import hiredis


class RedisConnectionError(ConnectionError):
    pass


class RedisReplyError(Exception):
    """Redis answered with an error (e.g. NOSCRIPT, WRONGTYPE)."""

    @property
    def noscript(self) -> bool:
        return str(self).startswith("NOSCRIPT")


def _arg(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, bool):
        return b"1" if value else b"0"
    if isinstance(value, (int, float)):
        return repr(value).encode()
    raise TypeError(f"cannot send {type(value).__name__} to Redis")


def encode_command(args: tuple[Any, ...]) -> bytes:
    """RESP encoding of one command: hiredis' C packer (3-4x faster than the Python below, which
    stays for what it refuses: booleans, lists)."""
    try:
        return hiredis.pack_command(args)
    except TypeError:
        return encode_command_py(args)


def encode_command_py(args: tuple[Any, ...] | list[Any]) -> bytes:
    parts = [b"*%d\r\n" % len(args)]
    for value in args:
        data = _arg(value)
        parts.append(b"$%d\r\n%b\r\n" % (len(data), data))
    return b"".join(parts)


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.reader = hiredis.Reader(encoding="utf-8", errors="replace")
        self.waiting: collections.deque[asyncio.Future[Any]] = collections.deque()
        self.transport: asyncio.Transport | None = None
        self.lost: Exception | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not an asyncio.Transport

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while True:
            reply = self.reader.gets()
            if reply is False:
                return
            future = self.waiting.popleft()
            if future.done():
                continue
            if isinstance(reply, hiredis.ReplyError):
                future.set_exception(RedisReplyError(str(reply)))
            else:
                future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = RedisConnectionError(f"connection to Redis lost: {exc or 'closed'}")
        while self.waiting:
            future = self.waiting.popleft()
            if not future.done():
                future.set_exception(self.lost)


class RespClient:
    """``await client.execute(*args)`` or, for a batch, ``client.send_many([...])`` -> futures."""

    def __init__(self, url: str, connect_timeout: float = 5.0) -> None:
        self.url = url
        self.connect_timeout = connect_timeout
        parsed = urlparse(url)
        self.scheme = parsed.scheme
        self.host = parsed.hostname or "127.0.0.1"
        self.port = parsed.port or 6379
        self.path = unquote(parsed.path) if parsed.scheme == "unix" else ""
        query = parse_qs(parsed.query)
        db = query.get("db", [parsed.path.lstrip("/") if parsed.scheme != "unix" else "0"])[0] or "0"
        self.db = int(db)
        self.password = unquote(parsed.password) if parsed.password else None
        self.username = unquote(parsed.username) if parsed.username else None
        self._protocol: _Protocol | None = None
        self._connecting: asyncio.Lock | None = None

    async def connect(self) -> None:
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._protocol is not None and self._protocol.lost is None:
                return
            loop = asyncio.get_running_loop()
            try:
                if self.scheme == "unix":
                    coro = loop.create_unix_connection(_Protocol, self.path)
                else:
                    coro = loop.create_connection(_Protocol, self.host, self.port)
                transport, protocol = await asyncio.wait_for(coro, self.connect_timeout)
                protocol.transport = transport  # uvloop may call connection_made a little later
            except (OSError, TimeoutError) as exc:
                raise RedisConnectionError(f"cannot connect to Redis at {self.url}: {exc}") from exc
            self._protocol = protocol
            if self.password:
                auth = ("AUTH", self.username, self.password) if self.username else ("AUTH", self.password)
                await self._send([auth])[0]
            if self.db:
                await self._send([("SELECT", self.db)])[0]

    def _send(
        self, commands: list[tuple[Any, ...]], futures: list[asyncio.Future[Any]] | None = None
    ) -> list[asyncio.Future[Any]]:
        protocol = self._protocol
        assert protocol is not None and protocol.transport is not None
        if futures is None:
            loop = asyncio.get_running_loop()
            futures = [loop.create_future() for _ in commands]
        if protocol.lost is not None:
            for future in futures:
                future.set_exception(protocol.lost)
            return futures
        protocol.waiting.extend(futures)
        protocol.transport.write(b"".join(encode_command(c) for c in commands))
        return futures

    @property
    def connected(self) -> bool:
        return self._protocol is not None and self._protocol.lost is None

    async def send_many(
        self, commands: list[tuple[Any, ...]], futures: list[asyncio.Future[Any]] | None = None
    ) -> list[asyncio.Future[Any]]:
        """Write the commands in one buffer; each future gets its reply (or the error)."""
        if not self.connected:
            await self.connect()
        return self._send(commands, futures)

    def send_now(self, commands: list[tuple[Any, ...]], futures: list[asyncio.Future[Any]]) -> bool:
        """Like ``send_many`` without awaiting: False (nothing sent) when not connected."""
        if not self.connected:
            return False
        self._send(commands, futures)
        return True

    async def execute(self, *args: Any) -> Any:
        (future,) = await self.send_many([args])
        return await future

    async def close(self) -> None:
        protocol, self._protocol = self._protocol, None
        if protocol is not None and protocol.transport is not None:
            protocol.transport.close()


class _SubscriberProtocol(asyncio.Protocol):
    def __init__(self, on_message: Any, on_subscribed: Any = None) -> None:
        self.reader = hiredis.Reader()
        self.on_message = on_message
        self.on_subscribed = on_subscribed
        self.transport: asyncio.Transport | None = None
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

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

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


class RespSubscriber:
    """Redis pub/sub on its own connection: ``on_message(data: bytes)`` for every message on
    ``channel``.  Re-subscribes after a lost connection (e.g. a Redis restart), then calls
    ``on_resubscribed()``: what was published in between was lost."""

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
                loop = asyncio.get_running_loop()
                if c.scheme == "unix":
                    coro = loop.create_unix_connection(
                        lambda: _SubscriberProtocol(self.on_message, self._subscribed), c.path
                    )
                else:
                    coro = loop.create_connection(
                        lambda: _SubscriberProtocol(self.on_message, self._subscribed), c.host, c.port
                    )
                transport, protocol = await asyncio.wait_for(coro, c.connect_timeout)
                if c.password:
                    auth = ("AUTH", c.username, c.password) if c.username else ("AUTH", c.password)
                    transport.write(encode_command(auth))
                transport.write(encode_command(("SUBSCRIBE", self.channel)))
                self.ready.set()
                delay = 0.05
                await protocol.closed
            except (OSError, TimeoutError):
                pass
            finally:
                self.ready.clear()
                if transport is not None:
                    transport.close()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)

    def _subscribed(self) -> None:
        if self._subscribed_before and self.on_resubscribed is not None:
            self.on_resubscribed()
        self._subscribed_before = True

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
