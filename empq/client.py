"""The Python SDK for job clients: ``EmpQueueClient`` (asyncio).

It has exactly the interface of the protocol reference's "Client Libraries" section::

    client = EmpQueueClient()
    await client.connect("ws://127.0.0.1:3002")
    job_id = await client.submit_job(JobSubmission("text_to_image", {"prompt": "mountains"}))
    await client.subscribe_to_job(job_id, print)
    await client.subscribe_to_stats(print)
    client.on_error(print)
    await client.disconnect()

and on top of it what users of job queues expect::

    async with EmpQueueClient("ws://127.0.0.1:3002", token="...") as client:
        job_id = await client.submit_job({"job_type": "upscale", "payload": {...}, "priority": 80})
        async for update in client.updates(job_id):        # job_update ... job_completed
            print(update.status, update.progress)
        result = await client.wait(job_id, timeout=60)     # JobResult, or JobFailed / JobCancelled
        status = await client.request_status(job_id)       # ResponseJobStatus
        await client.cancel_job(job_id)

Every message is built and parsed with the generated models (``empq.protocol``). Every request
carries an ``id`` and its replies are matched by ``request_id`` (spec D2), so concurrent callers
never read each other's replies, and every request has a timeout. When the connection drops the
client reconnects with exponential backoff (honouring ``server_disconnect.reconnect_after``),
registers again and renews its job, stats and notification subscriptions; ``wait()`` and
``updates()`` carry on across the reconnect (a job already final is reported at once on
re-subscription, spec D14).

``HubConnection`` is the connection core shared with the worker runtime (``empq.worker``).
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import inspect
import itertools
import logging
import random
import uuid
from collections import OrderedDict
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import ValidationError
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, InvalidURI, WebSocketException

from empq import __version__, protocol
from empq.generated.defs.base import BaseMessage
from empq.generated.defs.job_result import JobResult
from empq.generated.defs.requirements import Requirements
from empq.generated.defs.stats import Stats
from empq.generated.messages.cancel_job import CancelJob
from empq.generated.messages.client_registered import ClientRegistered
from empq.generated.messages.disconnect import Disconnect
from empq.generated.messages.error import Error
from empq.generated.messages.job_accepted import JobAccepted
from empq.generated.messages.job_cancelled import JobCancelled as JobCancelledMessage
from empq.generated.messages.job_completed import JobCompleted
from empq.generated.messages.job_notifications_subscribed import JobNotificationsSubscribed
from empq.generated.messages.job_update import JobUpdate
from empq.generated.messages.ping import Ping
from empq.generated.messages.pong import Pong
from empq.generated.messages.register_client import RegisterClient
from empq.generated.messages.request_job_status import RequestJobStatus
from empq.generated.messages.request_stats import RequestStats
from empq.generated.messages.response_job_status import ResponseJobStatus
from empq.generated.messages.server_disconnect import ServerDisconnect
from empq.generated.messages.stats_response import StatsResponse
from empq.generated.messages.stats_update import StatsUpdate
from empq.generated.messages.submit_job import SubmitJob
from empq.generated.messages.subscribe_job import SubscribeJob
from empq.generated.messages.subscribe_job_notifications import SubscribeJobNotifications
from empq.generated.messages.subscribe_stats import SubscribeStats
from empq.generated.messages.subscription_confirmed import SubscriptionConfirmed

log = logging.getLogger("empq.client")

DEFAULT_HUB_URL = "ws://127.0.0.1:3002"
FINAL_STATES = frozenset({"completed", "failed", "cancelled", "timeout"})
MAX_FINALS_KEPT = 10_000  # final job events remembered, so wait() after the fact still answers

M = TypeVar("M", bound=BaseMessage)
JobEvent = JobUpdate | JobCompleted | JobCancelledMessage
"""What a job subscription delivers: progress and state changes, completion, cancellation."""
Callback = Callable[..., Any]  # sync function or coroutine function


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


class JobFailed(EmpqError):
    """The job ended in state ``failed`` (retries exhausted) or ``timeout`` (over its run limit)."""

    def __init__(self, job_id: str, status: str, error: str | None, event: JobEvent | None = None) -> None:
        super().__init__(f"job {job_id} {status}: {error or 'no error text'}")
        self.job_id = job_id
        self.status = status
        self.error = error
        self.event = event


class JobCancelled(EmpqError):
    """The job was cancelled."""

    def __init__(self, job_id: str, reason: str | None = None, event: JobEvent | None = None) -> None:
        super().__init__(f"job {job_id} cancelled" + (f": {reason}" if reason else ""))
        self.job_id = job_id
        self.reason = reason
        self.event = event


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


@dataclass
class JobSubmission:
    """A job to submit: the fields of ``submit_job`` (the hub assigns the job id)."""

    job_type: str
    payload: dict[str, Any] = field(default_factory=dict)
    priority: int | None = None
    requirements: Requirements | Mapping[str, Any] | None = None
    customer_id: str | None = None
    max_retries: int | None = None
    metadata: dict[str, Any] | None = None
    timeout_seconds: float | None = None

    def to_message(self) -> SubmitJob:
        fields = {k: v for k, v in self.__dict__.items() if v is not None}
        return protocol.make(SubmitJob, **fields)


def submission_message(job: JobSubmission | SubmitJob | Mapping[str, Any], **overrides: Any) -> SubmitJob:
    """A validated ``submit_job`` from a ``JobSubmission``, a ``SubmitJob`` or a plain mapping."""
    if isinstance(job, SubmitJob):
        fields = protocol.to_dict(job)
    elif isinstance(job, JobSubmission):
        fields = protocol.to_dict(job.to_message())
    else:
        fields = dict(job)
    fields.update({k: v for k, v in overrides.items() if v is not None})
    for key in ("type", "timestamp", "id"):
        fields.pop(key, None)
    return protocol.make(SubmitJob, **fields)


def is_final(event: BaseMessage) -> bool:
    if isinstance(event, JobCompleted | JobCancelledMessage):
        return True
    return isinstance(event, JobUpdate) and event.status.value in FINAL_STATES


def outcome(event: JobEvent) -> JobResult:
    """The result of a final job event, or the exception it stands for."""
    if isinstance(event, JobCompleted):
        return event.result
    if isinstance(event, JobCancelledMessage):
        raise JobCancelled(event.job_id, event.reason, event)
    status = event.status.value
    if status == "completed":  # a bare job_update (completion normally comes as job_completed)
        return JobResult(success=True)
    if status == "cancelled":
        raise JobCancelled(event.job_id, event.message, event)
    raise JobFailed(event.job_id, status, event.error or event.message, event)


def default_client_id() -> str:
    """``empq-cli-<user>``: stable per user, so a later CLI call sees the jobs an earlier one
    submitted (a job client without customer sees only its client_id's jobs, spec D13)."""
    try:
        user = getpass.getuser()
    except Exception:  # no user name in this environment
        user = "user"
    return f"empq-cli-{user}"


def _describe(exc: BaseException) -> str:
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
class _Link:
    """One WebSocket connection to the hub."""

    ws: ClientConnection
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    reader: asyncio.Task[None] | None = None
    server_disconnect: ServerDisconnect | None = None


class _Pending:
    """A request waiting for its reply frames (one, or several for claim_job)."""

    __slots__ = ("done_when", "frames", "future", "link")

    def __init__(self, link: _Link, done_when: Callable[[list[BaseMessage]], bool]) -> None:
        self.link = link
        self.done_when = done_when
        self.frames: list[BaseMessage] = []
        self.future: asyncio.Future[list[BaseMessage]] = asyncio.get_running_loop().create_future()

    def feed(self, msg: BaseMessage) -> None:
        if self.future.done():
            return
        if isinstance(msg, Error):
            self.future.set_exception(HubError.of(msg))
            return
        self.frames.append(msg)
        if self.done_when(self.frames):
            self.future.set_result(self.frames)


def _one(frames: list[BaseMessage]) -> bool:
    return True


_LOST = object()  # put in waiters' queues when the client is closed for good


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
        self._link: _Link | None = None  # the registered, usable connection (None while away)
        self._dead = True  # not connected, and not trying to
        self._closing = False
        self._changed = asyncio.Event()
        self._pending: dict[str, _Pending] = {}
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

    def _lost(self, link: _Link) -> None:
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
        done_when: Callable[[list[BaseMessage]], bool] | None = None,
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
                return await self._exchange(link, msg, deadline, done_when or _one)
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
        loop = asyncio.get_running_loop()
        start = loop.time()
        await self.ask(protocol.make(Ping), Pong, timeout=timeout)
        return loop.time() - start

    # internals ------------------------------------------------------------------------------
    def _set_link(self, link: _Link | None, dead: bool = False) -> None:
        self._link = link
        self._dead = dead
        self._changed.set()
        self._changed = asyncio.Event()

    async def _wait_ready(self, deadline: float, what: str) -> _Link:
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

    async def _open(self, first: bool) -> _Link:
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
            raise HubUnreachable(self.url, _describe(exc)) from exc
        link = _Link(ws)
        link.reader = asyncio.get_running_loop().create_task(self._read(link))
        try:
            deadline = asyncio.get_running_loop().time() + self.request_timeout
            (reply,) = await self._exchange(link, self._registration(), deadline, _one)
            await self._registered(reply, first)
        except BaseException:
            await self._close_link(link)
            raise
        return link

    async def _exchange(
        self, link: _Link, msg: BaseMessage, deadline: float, done_when: Callable[[list[BaseMessage]], bool]
    ) -> list[BaseMessage]:
        rid = self.next_id()
        msg.id = rid
        pending = _Pending(link, done_when)
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

    async def _read(self, link: _Link) -> None:
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

    def _on_frame(self, link: _Link, frame: str | bytes) -> None:
        try:
            msg = protocol.parse_from_hub(frame)
        except ValidationError as exc:
            log.warning("ignoring a frame the protocol models refuse: %s", exc.errors()[0].get("msg"))
            return
        if isinstance(msg, ServerDisconnect):
            link.server_disconnect = msg
        elif isinstance(msg, Ping):
            self._spawn(self._answer_ping(msg))
        consumed = False
        if msg.request_id is not None:
            pending = self._pending.get(msg.request_id)
            if pending is not None:
                pending.feed(msg)
                consumed = True
        for callback in self._message_callbacks:
            self._call(callback, msg)
        if isinstance(msg, Error) and not consumed:
            log.warning("hub error: %s %s", msg.error_code.value, msg.error)
            for callback in self._error_callbacks:
                self._call(callback, msg)
        self._handle(msg)

    async def _answer_ping(self, ping: Ping) -> None:
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

    async def _supervise(self, link: _Link) -> None:
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

    async def _close_link(self, link: _Link) -> None:
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


# --- the job client ----------------------------------------------------------------------------


class EmpQueueClient(HubConnection):
    """A job client (or, with ``client_type="monitor"``, a monitor) of the EmProps Job Queue hub.

    ``client_id``: a job client without customer sees only the jobs its client_id submitted
    (spec D13), so give the same id to every connection that must see the same jobs.
    ``token``: sent as ``Authorization: Bearer`` on the handshake and as ``auth_token``.
    """

    peer_kind = "client"

    def __init__(
        self,
        url: str | None = None,
        *,
        client_id: str | None = None,
        customer_id: str | None = None,
        token: str | None = None,
        client_type: str = "job_client",
        permissions: Iterable[str] | None = None,
        request_timeout: float = 10.0,
        connect_timeout: float = 5.0,
        reconnect: bool = True,
        backoff: Backoff | None = None,
    ) -> None:
        super().__init__(
            url,
            token=token,
            request_timeout=request_timeout,
            connect_timeout=connect_timeout,
            reconnect=reconnect,
            backoff=backoff,
        )
        self.client_id = client_id or f"empq-client-{uuid.uuid4().hex[:8]}"
        self.customer_id = customer_id
        self.client_type = client_type
        self.permissions = list(permissions) if permissions is not None else None
        self.registration: ClientRegistered | None = None
        self._job_callbacks: dict[str, list[Callback]] = {}
        self._job_queues: dict[str, set[asyncio.Queue[Any]]] = {}
        self._subscribed: set[str] = set()  # jobs subscribed on the current connection
        self._finals: OrderedDict[str, JobEvent] = OrderedDict()
        self._stats_callbacks: list[Callback] = []
        self._stats_fields: dict[str, Any] | None = None
        self._notification_callbacks: list[Callback] = []
        self._notification_filters: dict[str, Any] | None = None

    async def __aenter__(self) -> EmpQueueClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.disconnect()

    # connection ----------------------------------------------------------------------------
    def _registration(self) -> BaseMessage:
        fields: dict[str, Any] = {
            "client_type": self.client_type,
            "client_id": self.client_id,
            "version": __version__,
        }
        if self.customer_id:
            fields["customer_id"] = self.customer_id
        if self.permissions is not None:
            fields["permissions"] = self.permissions
        if self.token:
            fields["auth_token"] = self.token
        return protocol.make(RegisterClient, **fields)

    async def _registered(self, reply: BaseMessage, first: bool) -> None:
        if not isinstance(reply, ClientRegistered):
            raise EmpqError(f"unexpected reply {reply.type} to register_client")
        self.registration = reply

    def _lost(self, link: _Link) -> None:
        self._subscribed.clear()

    def _gone(self) -> None:
        for queues in self._job_queues.values():
            for queue in queues:
                queue.put_nowait(_LOST)

    async def _resumed(self) -> None:
        """Renew every subscription: jobs being watched, stats, notifications."""
        jobs = [
            job_id
            for job_id in {*self._job_callbacks, *self._job_queues}
            if job_id not in self._finals
            and (self._job_callbacks.get(job_id) or self._job_queues.get(job_id))
        ]
        results = await asyncio.gather(*(self._ensure_subscribed(j) for j in jobs), return_exceptions=True)
        for job_id, result in zip(jobs, results, strict=True):
            if isinstance(result, Exception):
                log.warning("could not renew the subscription to %s: %s", job_id, result)
        if self._stats_fields is not None:
            await self.ask(
                protocol.make(SubscribeStats, **self._stats_fields), SubscriptionConfirmed, retry=True
            )
        if self._notification_filters is not None:
            await self._subscribe_notifications(self._notification_filters)

    async def disconnect(self) -> None:
        """Say goodbye (``disconnect``) and close; pending requests and waits end with
        ``ConnectionLost``."""
        await self._shutdown(protocol.make(Disconnect, reason="client shutdown", cleanup_subscriptions=True))

    # frames ------------------------------------------------------------------------------------
    def _handle(self, msg: BaseMessage) -> None:
        if isinstance(msg, JobUpdate | JobCompleted | JobCancelledMessage):
            job_id = msg.job_id
            if is_final(msg):
                self._finals[job_id] = msg
                self._finals.move_to_end(job_id)
                while len(self._finals) > MAX_FINALS_KEPT:
                    self._finals.popitem(last=False)
            for callback in list(self._job_callbacks.get(job_id, ())):
                self._call(callback, msg)
            for queue in list(self._job_queues.get(job_id, ())):
                queue.put_nowait(msg)
            for callback in list(self._notification_callbacks):
                self._call(callback, msg)
        elif isinstance(msg, StatsUpdate):
            for callback in list(self._stats_callbacks):
                self._call(callback, msg)

    # jobs ----------------------------------------------------------------------------------------
    async def submit(
        self,
        job: JobSubmission | SubmitJob | Mapping[str, Any],
        *,
        timeout: float | None = None,
        **fields: Any,
    ) -> JobAccepted:
        """Submit a job; returns the hub's ``job_accepted`` (job_id, position, estimated_start,
        notified_workers). ``fields`` override the job's fields. Invalid fields raise pydantic's
        ``ValidationError`` before anything is sent.

        Every submission carries an ``idempotency_key`` (a fresh one unless given; spec D18), so
        it is sent again — and never applied twice — when the connection drops before the reply or
        the hub answers SERVICE_UNAVAILABLE (Redis unreachable), until ``timeout``. Over the hub's
        submission rate (RATE_LIMITED, reason ``rate``) it waits ``retry_after_ms`` and submits
        again within ``timeout``; a full queue (reason ``queue_full``) raises ``HubError``."""
        msg = submission_message(job, **fields)
        if msg.idempotency_key is None:
            msg = submission_message(msg, idempotency_key=uuid.uuid4().hex)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (self.request_timeout if timeout is None else timeout)
        delay = 0.05
        while True:
            try:
                remaining = max(0.001, deadline - loop.time())
                return await self.ask(msg, JobAccepted, timeout=remaining, retry=True)
            except HubError as exc:
                wait = delay
                if exc.code == "RATE_LIMITED" and exc.details.get("reason") == "rate":
                    wait = float(exc.details.get("retry_after_ms", 100)) / 1000
                elif exc.code != "SERVICE_UNAVAILABLE":
                    raise
                if loop.time() + wait >= deadline:
                    raise
                await asyncio.sleep(wait)
            delay = min(delay * 2, 1.0)

    async def submit_job(self, job: JobSubmission | SubmitJob | Mapping[str, Any], **fields: Any) -> str:
        """Submit a job; returns its job id."""
        return (await self.submit(job, **fields)).job_id

    async def request_status(self, job_id: str, *, timeout: float | None = None) -> ResponseJobStatus:
        """The job's state now (any state, including final ones)."""
        msg = protocol.make(RequestJobStatus, job_id=job_id)
        return await self.ask(msg, ResponseJobStatus, timeout=timeout, retry=True)

    async def cancel_job(
        self, job_id: str, reason: str | None = None, *, timeout: float | None = None
    ) -> JobCancelledMessage:
        """Cancel a job that is not final yet (``HubError`` INVALID_STATE for a final one)."""
        fields = {"reason": reason} if reason else {}
        msg = protocol.make(CancelJob, job_id=job_id, **fields)
        return await self.ask(msg, JobCancelledMessage, timeout=timeout)

    async def subscribe_to_job(self, job_id: str, callback: Callback) -> None:
        """``callback(event)`` for each ``job_update``/``job_completed``/``job_cancelled`` of the
        job (sync or async). A job already final is reported at once."""
        self._job_callbacks.setdefault(job_id, []).append(callback)
        try:
            await self._ensure_subscribed(job_id)
        except BaseException:
            self._remove_callback(job_id, callback)
            raise

    async def unsubscribe_from_job(self, job_id: str, callback: Callback | None = None) -> None:
        """Remove one callback (or all) of the job; unsubscribes when nothing else watches it."""
        if callback is None:
            self._job_callbacks.pop(job_id, None)
        else:
            self._remove_callback(job_id, callback)
        await self._maybe_unsubscribe(job_id)

    async def wait(self, job_id: str, timeout: float | None = None) -> JobResult:
        """Wait until the job is final: its ``JobResult`` when completed; ``JobFailed`` (failed or
        timeout), ``JobCancelled``; ``TimeoutError`` after ``timeout`` seconds."""
        async with contextlib.aclosing(self.updates(job_id)) as events, asyncio.timeout(timeout):
            async for event in events:
                if is_final(event):
                    return outcome(event)
        raise ConnectionLost(f"stopped waiting for {job_id}")  # pragma: no cover - updates() ends on final

    async def updates(self, job_id: str) -> AsyncGenerator[JobEvent, None]:
        """Every event of the job from now on, ending with the final one (completion,
        failure, timeout or cancellation). Continues across reconnects."""
        queue: asyncio.Queue[Any] = asyncio.Queue()
        self._job_queues.setdefault(job_id, set()).add(queue)
        try:
            final = self._finals.get(job_id)
            if final is not None:
                yield final
                return
            await self._ensure_subscribed(job_id)
            while True:
                event = await queue.get()
                if event is _LOST:
                    raise ConnectionLost(f"connection to {self.url} closed while watching {job_id}")
                yield event
                if is_final(event):
                    return
        finally:
            queues = self._job_queues.get(job_id)
            if queues is not None:
                queues.discard(queue)
                if not queues:
                    del self._job_queues[job_id]
            if not self._closing and self._link is not None:
                with contextlib.suppress(RuntimeError):  # finalised after the loop stopped
                    self._spawn(self._maybe_unsubscribe(job_id))

    async def _ensure_subscribed(self, job_id: str) -> None:
        if job_id in self._subscribed:
            return
        msg = protocol.make(SubscribeJob, job_id=job_id)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.request_timeout
        delay = 0.05
        while True:  # again while the hub cannot reach Redis (e.g. a failover), as submit does
            try:
                await self.ask(
                    msg, SubscriptionConfirmed, timeout=max(0.001, deadline - loop.time()), retry=True
                )
                break
            except HubError as exc:
                if exc.code != "SERVICE_UNAVAILABLE" or loop.time() + delay >= deadline:
                    raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)
        if self._link is not None:
            self._subscribed.add(job_id)

    async def _maybe_unsubscribe(self, job_id: str) -> None:
        if self._job_callbacks.get(job_id) or self._job_queues.get(job_id) or job_id not in self._subscribed:
            return
        self._subscribed.discard(job_id)
        with contextlib.suppress(EmpqError):
            await self.ask(protocol.make(SubscribeJob, job_id=job_id, enabled=False), SubscriptionConfirmed)

    def _remove_callback(self, job_id: str, callback: Callback) -> None:
        callbacks = self._job_callbacks.get(job_id, [])
        with contextlib.suppress(ValueError):
            callbacks.remove(callback)
        if not callbacks:
            self._job_callbacks.pop(job_id, None)

    # stats and notifications ---------------------------------------------------------------------
    async def subscribe_to_stats(
        self,
        callback: Callback,
        interval_seconds: float = 5.0,
        sections: Iterable[str] | None = None,
    ) -> SubscriptionConfirmed:
        """``callback(update: StatsUpdate)`` every ``interval_seconds`` (≥ 1). Job clients get
        the counts; monitors with view_system_stats also the per-worker list (spec D14)."""
        fields: dict[str, Any] = {"enabled": True, "interval_seconds": interval_seconds}
        if sections:
            fields["include_sections"] = list(sections)
        msg = protocol.make(SubscribeStats, **fields)
        self._stats_callbacks.append(callback)
        try:
            reply = await self.ask(msg, SubscriptionConfirmed, retry=True)
        except BaseException:
            self._stats_callbacks.remove(callback)
            raise
        self._stats_fields = fields
        return reply

    async def unsubscribe_from_stats(self) -> None:
        self._stats_callbacks.clear()
        self._stats_fields = None
        await self.ask(protocol.make(SubscribeStats, enabled=False), SubscriptionConfirmed)

    async def request_stats(self, sections: Iterable[str] | None = None) -> Stats:
        """Stats now (``request_stats`` → ``stats_response``)."""
        fields = {"include_sections": list(sections)} if sections else {}
        reply = await self.ask(protocol.make(RequestStats, **fields), StatsResponse, retry=True)
        return reply.stats

    async def subscribe_to_notifications(
        self, callback: Callback, **filters: Any
    ) -> JobNotificationsSubscribed:
        """``callback(event)`` for the events of every job the filters match (customer_id,
        job_types, priority_min, status) that this peer may see (spec D13/D14)."""
        self._notification_callbacks.append(callback)
        try:
            reply = await self._subscribe_notifications(filters)
        except BaseException:
            self._notification_callbacks.remove(callback)
            raise
        self._notification_filters = filters
        return reply

    async def _subscribe_notifications(self, filters: dict[str, Any]) -> JobNotificationsSubscribed:
        fields: dict[str, Any] = {"enabled": True}
        if filters:
            fields["filters"] = filters
        msg = protocol.make(SubscribeJobNotifications, **fields)
        return await self.ask(msg, JobNotificationsSubscribed, retry=True)


__all__ = [
    "DEFAULT_HUB_URL",
    "AuthFailed",
    "Backoff",
    "ConnectionLost",
    "EmpQueueClient",
    "EmpqError",
    "HubConnection",
    "HubError",
    "HubUnreachable",
    "JobCancelled",
    "JobEvent",
    "JobFailed",
    "JobSubmission",
    "RequestTimeout",
    "default_client_id",
    "is_final",
    "outcome",
    "submission_message",
]
