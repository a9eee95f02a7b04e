"""The wire under ``resp.RespClient``: RESP encoding, the connection protocols (plain, and routed:
keeping each command until its reply so one Redis did not run can be sent again), the errors,
and the helpers that settle callers' futures (``WAIT`` included)."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import hiredis

if TYPE_CHECKING:
    from empq.hub.resp_routing import Routing

Address = tuple[str, int]

# Replies of commands Redis did not run, and that may run elsewhere or a little later.
REDIRECTS = ("MOVED ", "ASK ", "TRYAGAIN", "CLUSTERDOWN", "READONLY", "LOADING", "MASTERDOWN")
REDIRECT_BUDGET_S = 10.0  # a command is sent again for this long, then its caller gets the error


class RedisConnectionError(ConnectionError):
    pass


class RedisNotReplicated(RedisConnectionError):
    """Redis ran the commands, but fewer replicas than asked acknowledged them in time."""


class RedisConfigError(RuntimeError):
    """The settings cannot work with this Redis (e.g. a key prefix without a hash tag on a Cluster)."""


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
    commands: collections.deque[tuple[Any, ...] | None] | None = None  # routed connections only
    blocked = False

    def __init__(self) -> None:
        self.reader = hiredis.Reader(encoding="utf-8", errors="replace")
        self.waiting: collections.deque[asyncio.Future[Any]] = collections.deque()
        self.transport: asyncio.Transport | None = None
        self.lost: Exception | None = None
        self.address: Address | None = None

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

    def call(self, commands: Iterable[tuple[Any, ...]]) -> list[asyncio.Future[Any]]:
        """Send ``commands`` now (set-up and internal commands: never sent again elsewhere)."""
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        commands = list(commands)
        futures = [loop.create_future() for _ in commands]
        if self.lost is not None:
            for future in futures:
                future.set_exception(self.lost)
            return futures
        self.waiting.extend(futures)
        if self.commands is not None:
            self.commands.extend(None for _ in commands)
        self.transport.write(b"".join(encode_command(c) for c in commands))
        return futures


class _RoutedProtocol(_Protocol):
    """Keeps each command until its reply; hands the ones Redis did not run to the client."""

    commands: collections.deque[tuple[Any, ...] | None]

    def __init__(self, client: Routing) -> None:
        super().__init__()
        self.client = client
        self.commands = collections.deque()
        self.blocked = False  # a command was redirected: the client sends nothing new here

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while True:
            reply = self.reader.gets()
            if reply is False:
                break
            future = self.waiting.popleft()
            command = self.commands.popleft()
            if future.done():
                continue
            if isinstance(reply, hiredis.ReplyError):
                text = str(reply)
                if command is not None and text.startswith(REDIRECTS):
                    self.blocked = True
                    self.client._redirected(command, future, text)
                else:
                    future.set_exception(RedisReplyError(text))
            else:
                future.set_result(reply)
        if self.blocked and not self.waiting:
            self.client._drained()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.commands.clear()
        if self.blocked:
            self.client._drained()


def _refusal(setup: list[tuple[Any, ...]], exc: Exception) -> str:
    text = str(exc)
    if text.startswith("NOAUTH"):
        return f"requires a password: put user:password@ in the URL ({text})"
    if text.startswith(("WRONGPASS", "ERR invalid password", "ERR AUTH")):
        return f"refused the URL's user name and password ({text})"
    return f"refused {' / '.join(str(c[0]) for c in setup)}: {text}"


async def _marker(protocol: _Protocol) -> None:
    """Wait until every reply sent before now on ``protocol`` is in (a PING answered after them)."""
    (future,) = protocol.call([("PING",)])
    with contextlib.suppress(Exception):
        await future


def _fail(futures: Iterable[asyncio.Future[Any]], exc: BaseException) -> None:
    for future in futures:
        if not future.done():
            future.set_exception(exc)


def _release(
    inner: list[asyncio.Future[Any]],
    outer: list[asyncio.Future[Any]],
    replicas: int,
    timeout_ms: int,
    waited: asyncio.Future[Any],
) -> None:
    if waited.cancelled():
        error: BaseException | None = RedisConnectionError("WAIT was cancelled")
    elif waited.exception() is not None:
        error = waited.exception()
    elif not isinstance(waited.result(), int):
        error = RedisConnectionError(f"WAIT answered {waited.result()!r}")
    elif waited.result() < replicas:
        error = RedisNotReplicated(
            f"written, but acknowledged by {waited.result()} of {replicas} replica(s) within {timeout_ms} ms "
            "(--redis-wait-replicas, --redis-wait-timeout-ms)"
        )
    else:
        error = None
    for i, o in zip(inner, outer, strict=True):
        if i.done():
            _settle(i, o, error)
        else:  # sent again elsewhere (redirected): settled with that batch's own WAIT
            i.add_done_callback(functools.partial(_settle_later, outer=o))


def _settle_later(inner: asyncio.Future[Any], outer: asyncio.Future[Any]) -> None:
    _settle(inner, outer, None)


def _settle(inner: asyncio.Future[Any], outer: asyncio.Future[Any], error: BaseException | None) -> None:
    if outer.done():
        return
    if inner.cancelled():
        outer.cancel()
    elif inner.exception() is not None:
        outer.set_exception(inner.exception())  # type: ignore[arg-type]
    elif error is not None:
        outer.set_exception(error)
    else:
        outer.set_result(inner.result())
