"""The connection to the hub shared by the job client (``empq.client``) and the worker
(``empq.worker``): ``HubConnection``, a registered WebSocket connection that survives drops.

Every request carries an ``id`` and its replies are matched by ``request_id`` (spec D2), so
concurrent callers never read each other's replies, and every request has a timeout. When the
connection drops it reconnects with exponential backoff (``Backoff``, honouring
``server_disconnect.reconnect_after``) and registers again; subclasses say how to register and
what to renew afterwards.

It imports only the message classes it is handed: a frame is parsed with the class its ``type``
names (``protocol.parse_from_hub``), so a short-lived program (a CLI command) loads a handful of
models rather than all of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import logging
import random
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar, cast

from pydantic import ValidationError
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, InvalidURI, WebSocketException

from empq import __version__, protocol
from empq.generated.defs.base import BaseMessage

if TYPE_CHECKING:
    from empq.generated.messages.error import Error
    from empq.generated.messages.ping import Ping
    from empq.generated.messages.server_disconnect import ServerDisconnect

log = logging.getLogger("empq.connection")

DEFAULT_HUB_URL = "ws://127.0.0.1:3002"

M = TypeVar("M", bound=BaseMessage)
Callback = Callable[..., Any]  # sync function or coroutine function
ReplyDone = Callable[[list[BaseMessage]], bool]
"""Given the reply frames so far, is the reply complete? (one frame, or several for claim_job)"""


# --- errors ------------------------------------------------------------------------------------


class EmpqError(Exception):
    """Base of every error the SDK raises."""


class HubUnreachable(EmpqError, ConnectionError):
    """The hub could not be reached (refused, DNS, TLS, HTTP refusal of the WebSocket handshake)."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"cannot reach the hub at {url}: {reason}")
        self.url = url
        self.reason = reason


class ConnectionLost(EmpqError, ConnectionError):
    """The connection dropped while a request was in flight (or the client is not connected)."""


class RequestTimeout(EmpqError, TimeoutError):
    """No reply to a request within its timeout."""


class HubError(EmpqError):
    """The hub answered a request with ``error``: ``code`` (D5), ``details``, the ``message`` model."""

    def __init__(self, message: Error) -> None:
        super().__init__(f"{message.error_code.value}: {message.error}")
        self.message = message
        self.code = message.error_code.value
        self.details: dict[str, Any] = protocol.to_dict(message.details) if message.details else {}

    @staticmethod
    def of(message: Error) -> HubError:
        return AuthFailed(message) if message.error_code.value == "AUTH_FAILED" else HubError(message)


class AuthFailed(HubError):
    """The hub refused the token (AUTH_FAILED, spec D4); it closes the connection."""


# --- helpers -----------------------------------------------------------------------------------


@dataclass
class Backoff:
    """Reconnect delays: ``initial`` doubling (``factor``) up to ``maximum`` seconds, ± ``jitter``."""

    initial: float = 0.1
    maximum: float = 5.0
    factor: float = 2.0
    jitter: float = 0.2

    def delays(self, first: float | None = None) -> Iterable[float]:
        delay = self.initial if first is None else max(0.0, min(first, self.maximum))
        while True:
            yield delay * (1 + random.uniform(-self.jitter, self.jitter))
            delay = min(max(delay, self.initial) * self.factor, self.maximum)


def describe_failure(exc: BaseException) -> str:
    """Why a connection attempt failed, in a few words (``HubUnreachable.reason``)."""
    if isinstance(exc, InvalidStatus):
        return f"handshake refused with HTTP {exc.response.status_code}"
    if isinstance(exc, InvalidURI):
        return f"invalid URL ({exc.msg})"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc) or type(exc).__name__


@dataclass(eq=False)
class Link:
    """One WebSocket connection to the hub."""

    ws: ClientConnection
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    reader: asyncio.Task[None] | None = None
    server_disconnect: ServerDisconnect | None = None


class PendingRequest:
    """A request waiting for its reply frames (one, or several for claim_job)."""

    __slots__ = ("done_when", "frames", "future", "link")

    def __init__(self, link: Link, done_when: ReplyDone) -> None:
        self.link = link
        self.done_when = done_when
        self.frames: list[BaseMessage] = []
        self.future: asyncio.Future[list[BaseMessage]] = asyncio.get_running_loop().create_future()

    def feed(self, msg: BaseMessage) -> None:
        if self.future.done():
            return
        if msg.type == "error":
            self.future.set_exception(HubError.of(cast("Error", msg)))
            return
        self.frames.append(msg)
        if self.done_when(self.frames):
            self.future.set_result(self.frames)


def one_reply(frames: list[BaseMessage]) -> bool:
    """``ReplyDone`` of the requests answered by one frame."""
    return True


# --- the connection core -----------------------------------------------------------------------


class HubConnection:
    """A registered connection to the hub that survives drops: request/reply correlation by id,
    timeouts, reconnect with backoff, re-registration. Subclasses say how to register
    (``_registration``/``_registered``), what to renew after a reconnect (``_resumed``) and what to
    do with unsolicited frames (``_handle``)."""

    peer_kind = "peer"

    def __init__(
        self,
        url: str | None = None,
        *,
        token: str | None = None,
        request_timeout: float = 10.0,
        connect_timeout: float = 5.0,
        reconnect: bool = True,
        backoff: Backoff | None = None,
        max_message_size: int | None = 64 * 1024 * 1024,
    ) -> None:
        self.url = url or DEFAULT_HUB_URL
        self.token = token
        self.request_timeout = request_timeout
        self.connect_timeout = connect_timeout
        self.reconnect = reconnect
        self.backoff = backoff or Backoff()
        self.max_message_size = max_message_size
        self.reconnects = 0  # successful reconnections so far
        self._link: Link | None = None  # the registered, usable connection (None while away)
        self._dead = True  # not connected, and not trying to
        self._closing = False
        self._changed = asyncio.Event()
        self._pending: dict[str, PendingRequest] = {}
        self._ids = itertools.count(1)
        self._id_prefix = f"{self.peer_kind[:1]}{uuid.uuid4().hex[:6]}"
        self._error_callbacks: list[Callback] = []
        self._message_callbacks: list[Callback] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._supervisor: asyncio.Task[None] | None = None

    # subclass hooks ----------------------------------------------------------------------
    def _registration(self) -> BaseMessage:
        raise NotImplementedError

    async def _registered(self, reply: BaseMessage, first: bool) -> None:
        """The registration reply, before the connection is handed to other requests."""

    async def _resumed(self) -> None:
        """After a reconnect (the connection is usable): renew subscriptions, etc."""

    def _handle(self, msg: BaseMessage) -> None:
        """Every frame from the hub (after its request, if any, got it)."""

    def _lost(self, link: Link) -> None:
        """The connection dropped (a reconnect follows unless closing)."""

    def _gone(self) -> None:
        """Closed for good: no reconnect will follow."""

    # public --------------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self._link is not None

    def on_error(self, callback: Callback) -> None:
        """``callback(error: Error)`` for every ``error`` frame that answers no pending request
        (and the AUTH_FAILED that stops reconnecting). Sync or async."""
        self._error_callbacks.append(callback)

    def on_message(self, callback: Callback) -> None:
        """``callback(message)`` for every frame received (parsed model). Sync or async."""
        self._message_callbacks.append(callback)

    def next_id(self) -> str:
        return f"{self._id_prefix}-{next(self._ids)}"

    async def connect(self, url: str | None = None) -> None:
        """Open the connection and register; raises ``HubUnreachable``, ``AuthFailed``,
        ``HubError`` or ``RequestTimeout`` when that fails (no retry on the first connection)."""
        if url:
            self.url = url
        if self._link is not None:
            return
        self._closing = False
        self._changed = asyncio.Event()
        link = await self._open(first=True)
        self._set_link(link)
        self._supervisor = asyncio.get_running_loop().create_task(self._supervise(link))

    async def request(
        self,
        msg: BaseMessage,
        *,
        timeout: float | None = None,
        done_when: ReplyDone | None = None,
        retry: bool = False,
    ) -> list[BaseMessage]:
        """Send ``msg`` with a fresh id and return its reply frames (``HubError`` for ``error``).

        Waits for the connection while reconnecting; ``timeout`` bounds the whole call. With
        ``retry`` the request is sent again after a reconnect if the connection dropped before
        its reply (only for requests that are safe to repeat)."""
        timeout = self.request_timeout if timeout is None else timeout
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            link = await self._wait_ready(deadline, msg.type)
            try:
                return await self._exchange(link, msg, deadline, done_when or one_reply)
            except ConnectionLost:
                if not retry or self._closing or not self.reconnect:
                    raise

    async def ask(
        self, msg: BaseMessage, reply: type[M], *, timeout: float | None = None, retry: bool = False
    ) -> M:
        """``request`` expecting one reply of class ``reply``."""
        (frame,) = await self.request(msg, timeout=timeout, retry=retry)
        if not isinstance(frame, reply):
            raise EmpqError(f"unexpected reply {frame.type} to {msg.type}")
        return frame

    async def send(self, msg: BaseMessage) -> None:
        """Send without waiting for a reply (``ConnectionLost`` if not connected now)."""
        link = self._link
        if link is None:
            raise ConnectionLost("not connected to the hub")
        try:
            await link.ws.send(protocol.encode(msg), text=True)
        except ConnectionClosed as exc:
            raise ConnectionLost(f"connection to {self.url} lost") from exc

    async def ping(self, timeout: float | None = None) -> float:
        """Round trip to the hub in seconds (``ping`` → ``pong``)."""
        from empq.generated.messages.ping import Ping
        from empq.generated.messages.pong import Pong

        loop = asyncio.get_running_loop()
        start = loop.time()
        await self.ask(protocol.make(Ping), Pong, timeout=timeout)
        return loop.time() - start

    # internals ------------------------------------------------------------------------------
    def _set_link(self, link: Link | None, dead: bool = False) -> None:
        self._link = link
        self._dead = dead
        self._changed.set()
        self._changed = asyncio.Event()

    async def _wait_ready(self, deadline: float, what: str) -> Link:
        loop = asyncio.get_running_loop()
        while True:
            if self._link is not None:
                return self._link
            if self._dead:
                raise ConnectionLost("not connected to the hub")
            changed = self._changed
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise RequestTimeout(f"{what}: not connected to the hub at {self.url} (reconnecting)")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), remaining)

    async def _open(self, first: bool) -> Link:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else None
        try:
            ws = await ws_connect(
                self.url,
                additional_headers=headers,
                open_timeout=self.connect_timeout,
                max_size=self.max_message_size,
                compression=None,
                close_timeout=2,
                user_agent_header=f"empq-{self.peer_kind}/{__version__}",
            )
        except (OSError, TimeoutError, WebSocketException) as exc:
            raise HubUnreachable(self.url, describe_failure(exc)) from exc
        link = Link(ws)
        link.reader = asyncio.get_running_loop().create_task(self._read(link))
        try:
            deadline = asyncio.get_running_loop().time() + self.request_timeout
            (reply,) = await self._exchange(link, self._registration(), deadline, one_reply)
            await self._registered(reply, first)
        except BaseException:
            await self._close_link(link)
            raise
        return link

    async def _exchange(
        self, link: Link, msg: BaseMessage, deadline: float, done_when: ReplyDone
    ) -> list[BaseMessage]:
        rid = self.next_id()
        msg.id = rid
        pending = PendingRequest(link, done_when)
        self._pending[rid] = pending
        try:
            if link.closed.is_set():
                raise ConnectionLost(f"connection to {self.url} lost")
            try:
                await link.ws.send(protocol.encode(msg), text=True)
            except ConnectionClosed as exc:
                raise ConnectionLost(f"connection to {self.url} lost") from exc
            remaining = deadline - asyncio.get_running_loop().time()
            try:
                return await asyncio.wait_for(pending.future, max(remaining, 0.001))
            except TimeoutError:
                raise RequestTimeout(f"no reply to {msg.type} from {self.url} in time") from None
        finally:
            self._pending.pop(rid, None)
            if pending.future.done() and not pending.future.cancelled():
                pending.future.exception()  # retrieved: no "never retrieved" warning

    async def _read(self, link: Link) -> None:
        try:
            async for frame in link.ws:
                self._on_frame(link, frame)
        except ConnectionClosed:
            pass
        except Exception:  # a bug in a handler must not kill the connection silently
            log.exception("reading from the hub failed")
        finally:
            link.closed.set()
            for pending in list(self._pending.values()):
                if pending.link is link and not pending.future.done():
                    pending.future.set_exception(ConnectionLost(f"connection to {self.url} lost"))
            if self._link is link:
                self._set_link(None, dead=self._closing or not self.reconnect)
                self._lost(link)
                if self._dead:
                    self._gone()

    def _on_frame(self, link: Link, frame: str | bytes) -> None:
        try:
            msg = protocol.parse_from_hub(frame)
        except ValidationError as exc:
            log.warning("ignoring a frame the protocol models refuse: %s", exc.errors()[0].get("msg"))
            return
        kind = msg.type
        if kind == "server_disconnect":
            link.server_disconnect = cast("ServerDisconnect", msg)
        elif kind == "ping":
            self._spawn(self._answer_ping(cast("Ping", msg)))
        consumed = False
        if msg.request_id is not None:
            pending = self._pending.get(msg.request_id)
            if pending is not None:
                pending.feed(msg)
                consumed = True
        for callback in self._message_callbacks:
            self._call(callback, msg)
        if kind == "error" and not consumed:
            error = cast("Error", msg)
            log.warning("hub error: %s %s", error.error_code.value, error.error)
            for callback in self._error_callbacks:
                self._call(callback, error)
        self._handle(msg)

    async def _answer_ping(self, ping: Ping) -> None:
        from empq.generated.messages.pong import Pong

        fields = {"request_id": ping.id} if ping.id else {}
        with contextlib.suppress(EmpqError):
            await self.send(protocol.make(Pong, **fields))

    def _call(self, callback: Callback, *args: Any) -> None:
        """Run a user callback: sync at once, async as a task; its errors are logged."""
        try:
            result = callback(*args)
        except Exception:
            log.exception("callback %r failed", callback)
            return
        if inspect.isawaitable(result):
            self._spawn(result)

    def _spawn(self, awaitable: Awaitable[Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(awaitable)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task failed", exc_info=task.exception())

    async def _supervise(self, link: Link) -> None:
        """Wait for the connection to drop; reconnect with backoff; repeat."""
        while True:
            await link.closed.wait()
            if self._closing or not self.reconnect:
                return
            hint = None
            sd = link.server_disconnect
            if sd is not None and sd.reconnect_after:
                hint = (sd.reconnect_after - protocol.now_ms()) / 1000
            log.info("connection to %s lost; reconnecting", self.url)
            for delay in self.backoff.delays(hint):
                await asyncio.sleep(delay)
                if self._closing:
                    return
                try:
                    link = await self._open(first=False)
                    break
                except AuthFailed as exc:
                    log.error("the hub refused this peer on reconnect: %s", exc)
                    for callback in self._error_callbacks:
                        self._call(callback, exc.message)
                    self._set_link(None, dead=True)
                    self._gone()
                    return
                except EmpqError as exc:
                    log.info("reconnect to %s failed: %s", self.url, exc)
            self.reconnects += 1
            self._set_link(link)
            log.info("reconnected to %s", self.url)
            try:
                await self._resumed()
            except Exception as exc:
                log.warning("renewing state after reconnect failed: %s", exc)

    async def _close_link(self, link: Link) -> None:
        with contextlib.suppress(Exception):
            await link.ws.close()
        if link.reader is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(link.reader), 3)

    async def _shutdown(self, goodbye: BaseMessage | None) -> None:
        """Stop reconnecting, optionally say goodbye, close, release waiters."""
        self._closing = True
        link = self._link
        if self._supervisor is not None and self._supervisor is not asyncio.current_task():
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._supervisor
        self._supervisor = None
        if link is not None:
            if goodbye is not None:
                with contextlib.suppress(Exception):
                    await link.ws.send(protocol.encode(goodbye), text=True)
            await self._close_link(link)  # its reader marks the client gone
        if not self._dead:
            self._set_link(None, dead=True)
            self._gone()
        for task in list(self._tasks):
            if task is not asyncio.current_task():
                task.cancel()


__all__ = [
    "DEFAULT_HUB_URL",
    "AuthFailed",
    "Backoff",
    "Callback",
    "ConnectionLost",
    "EmpqError",
    "HubConnection",
    "HubError",
    "HubUnreachable",
    "Link",
    "PendingRequest",
    "ReplyDone",
    "RequestTimeout",
    "describe_failure",
    "one_reply",
]
