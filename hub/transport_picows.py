"""The hub's second WebSocket I/O layer: picows (``--transport picows``, ``pip install 'empq[fast]'``).

Everything but the socket code is shared with the default layer (``server.py``): the core, the
outbox (frames written once per tick per connection, the per-peer unread bound), the handshake
token (``Authorization: Bearer`` or ``?token=``), TLS (an ``ssl`` context), shutdown
(``server_disconnect``, then close 1001). What differs is how frames come in: picows parses them
in C and calls ``on_ws_frame`` synchronously, so a connection's order is kept here:

* a frame is admitted (``core.admit``) as soon as it arrives when nothing holds it back;
* PIPELINABLE dispatches run concurrently (at most ``MAX_PIPELINED`` per connection), any other
  frame waits for them, and frames behind a waiting one queue in ``backlog`` (reading pauses
  when it holds ``MAX_BACKLOG``), exactly the order ``HubServer._handle`` keeps;
* fragmented messages are joined (up to ``max_message_size``: else close 1009, as is a single
  frame over it, refused by picows from its header before the payload is read), text messages
  must be UTF-8 (else close 1007), a peer's close is answered, pings answered by picows;
* D19: a frame over ``max_unregistered_frame`` before registration closes with 1009 unparsed; a
  connection beyond ``max_unregistered_connections`` is closed with 1013 once open.

Idle connections are pinged every 20 s and dropped after 20 s without a pong, as websockets does.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import ssl
from typing import TYPE_CHECKING, Any

from empq.hub.auth import handshake_token
from empq.hub.core import PIPELINABLE
from empq.hub.outbox import framed
from picows import (
    WSCloseCode,
    WSFrame,
    WSListener,
    WSMsgType,
    WSTransport,
    WSUpgradeRequest,
    ws_create_server,
)

if TYPE_CHECKING:
    from empq.hub.server import HubServer

log = logging.getLogger("empq.hub")

MAX_PIPELINED = 64  # as server.py: PIPELINABLE dispatches in flight per connection
MAX_BACKLOG = 64  # frames held back behind a waiting one before reading pauses (websockets' max_queue)
CLOSE_TIMEOUT = 10.0  # a close handshake the peer does not answer: the socket is dropped then
HANDSHAKE_TIMEOUT = 10.0  # as websockets' open_timeout

_TEXT, _BINARY, _CONT, _CLOSE = WSMsgType.TEXT, WSMsgType.BINARY, WSMsgType.CONTINUATION, WSMsgType.CLOSE


class _PeerLines(logging.LoggerAdapter):
    """picows' own lines (a connection accepted, closed, a peer's protocol error) concern one peer:
    they go to ``empq.hub.picows`` at DEBUG, as websockets' do; the hub logs what matters itself."""

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        if self.isEnabledFor(level):
            self.logger.log(logging.DEBUG, msg, *args, **kwargs)

    def isEnabledFor(self, level: int) -> bool:  # picows' per-frame lines (level 9) never
        return level >= logging.DEBUG and self.logger.isEnabledFor(logging.DEBUG)


class PicowsConnection(WSListener):
    """One peer: a ``Link`` for the outbox and the in-order feed of its frames to the core."""

    def __init__(self, hub: PicowsListening, token: str | None) -> None:
        super().__init__()
        self.hub = hub
        self.token = token
        self.peer = "?"
        self.conn_id = ""
        self.ws: WSTransport | None = None
        self.raw: Any = None  # the asyncio transport under it
        self.running: collections.deque[asyncio.Task[None]] = collections.deque()
        self.backlog: collections.deque[bytes] = collections.deque()
        self.pump: asyncio.Task[None] | None = None  # draining the backlog
        self.parts: list[bytes] | None = None  # a fragmented message so far
        self.parts_size = 0
        self.parts_text = False
        self.stopped = False  # no more frames are taken (closing)
        self.gone = False  # the socket is closed
        self.paused = False
        self.finished = asyncio.get_running_loop().create_future()  # core.disconnected done

    # Link (the outbox) ----------------------------------------------------------------------
    def writable(self) -> bool:
        ws = self.ws
        return ws is not None and not ws.is_close_frame_sent and not ws.is_disconnected

    def buffered(self) -> int:
        return int(self.raw.get_write_buffer_size())

    def write_frames(self, frames: list[bytes]) -> None:
        if len(frames) == 1:
            self.ws.send(_TEXT, frames[0])  # type: ignore[union-attr]  # one frame: picows frames it
            return
        self.raw.write(framed(frames))

    def abort(self) -> None:
        self.stopped = True
        if self.ws is not None:
            self.ws.disconnect(graceful=False)

    def close(self, code: int, reason: str) -> None:
        """Send a close frame; the socket goes when the peer answers, or after CLOSE_TIMEOUT."""
        self.stopped = True
        ws = self.ws
        if ws is None or ws.is_disconnected:
            return
        if not ws.is_close_frame_sent:
            ws.send_close(WSCloseCode(code), reason.encode())
        asyncio.get_running_loop().call_later(CLOSE_TIMEOUT, ws.disconnect)

    # picows callbacks -----------------------------------------------------------------------
    def on_ws_connected(self, transport: WSTransport) -> None:
        self.ws = transport
        self.raw = transport.underlying_transport
        address = self.raw.get_extra_info("peername")
        try:
            self.peer = f"{address[0]}:{address[1]}"
        except (TypeError, IndexError):
            self.peer = "?"
        hub = self.hub
        hub.live.add(self)
        core = hub.core
        if core.full():  # D19: too many connections that have not registered yet
            self.close(1013, "too many unregistered connections, try again later")
            return
        self.conn_id = core.new_conn_id()
        hub.outbox.attach(self.conn_id, self)
        core.connect(self.conn_id, self.token, self.peer)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        kind = frame.msg_type
        if kind is _TEXT or kind is _BINARY:
            if self.parts is not None:
                self._fail(1002, "data frame inside a fragmented message")
            elif frame.fin:
                data = frame.get_payload_as_bytes()
                if kind is _TEXT and not data.isascii() and not _utf8(data):
                    self._fail(1007, "invalid UTF-8 in a text frame")
                else:
                    self._take(data)
            else:
                self.parts, self.parts_text = [frame.get_payload_as_bytes()], kind is _TEXT
                self.parts_size = frame.payload_size
        elif kind is _CONT:
            if self.parts is None:
                self._fail(1002, "continuation frame without a message")
                return
            self.parts_size += frame.payload_size
            if self.parts_size > self.hub.config.max_message_size:
                self.parts = None
                self._fail(1009, "message too big")
                return
            self.parts.append(frame.get_payload_as_bytes())
            if frame.fin:
                data, self.parts = b"".join(self.parts), None
                if self.parts_text and not data.isascii() and not _utf8(data):
                    self._fail(1007, "invalid UTF-8 in a text message")
                else:
                    self._take(data)
        elif kind is _CLOSE:  # the peer closes: answer (echo its code) and drop the socket
            self.stopped = True
            if not transport.is_close_frame_sent:
                code = frame.get_close_code()
                if code == WSCloseCode.NO_INFO:
                    code = WSCloseCode.OK
                transport.send_close(code, frame.get_close_message())
            transport.disconnect()
        # PING is answered by picows (auto pong); a PONG needs nothing

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.gone = self.stopped = True
        self.hub.live.discard(self)
        if self.pump is None:
            asyncio.get_running_loop().create_task(self._finish())
        # else the pump finishes once the frames it holds are handled

    # frames in order --------------------------------------------------------------------------
    def _fail(self, code: int, reason: str) -> None:
        self.backlog.clear()
        self.close(code, reason)

    def _take(self, data: bytes) -> None:
        if self.stopped or not self.conn_id:
            return
        if self.pump is not None:
            self.backlog.append(data)
            if len(self.backlog) >= MAX_BACKLOG and not self.paused:
                self.paused = True
                self.raw.pause_reading()
            return
        try:
            self._admit(data)
        except Exception:
            log.exception("%s: frame handling failed", self.conn_id)
            self._fail(1011, "internal error")

    def _admitted(self, data: bytes) -> Any:
        """(session, accepted) for a frame to dispatch, or None (refused, answered, or closed)."""
        core = self.hub.core
        if len(data) > self.hub.config.max_unregistered_frame and core.unregistered_conn(self.conn_id):
            # D19: an unknown peer's big frame is not even parsed, nor kept: closed at once
            self._fail(1009, "frame too big before registration")
            return None
        return core.admit(self.conn_id, data)

    def _admit(self, data: bytes) -> None:
        """Admit one frame; dispatch it now, or start the pump when it (or what follows) must wait."""
        admitted = self._admitted(data)
        if admitted is None:
            return
        core = self.hub.core
        session, accepted = admitted
        running = self.running
        while running and running[0].done():
            running.popleft()
        loop = asyncio.get_running_loop()
        if accepted.message.type in PIPELINABLE:
            running.append(loop.create_task(core.dispatch(session, accepted)))
            if len(running) > MAX_PIPELINED:  # the oldest must end before the next frame
                self.pump = loop.create_task(self._drain(None))
            return
        self.pump = loop.create_task(self._drain((session, accepted)))

    async def _drain(self, first: Any) -> None:
        """Wait for what runs, dispatch ``first`` (a frame that waits for the others), then the
        backlog, in order, waiting where the order needs it."""
        core = self.hub.core
        running = self.running
        try:
            if first is not None:
                while running:
                    await running.popleft()
                await core.dispatch(*first)
            elif len(running) > MAX_PIPELINED:
                await running.popleft()
            while self.backlog:
                data = self.backlog.popleft()
                if self.paused and len(self.backlog) < MAX_BACKLOG // 2 and not self.gone:
                    self.paused = False
                    self.raw.resume_reading()
                admitted = self._admitted(data)
                if admitted is None:
                    continue
                while running and running[0].done():
                    running.popleft()
                if admitted[1].message.type in PIPELINABLE:
                    running.append(asyncio.get_running_loop().create_task(core.dispatch(*admitted)))
                    if len(running) > MAX_PIPELINED:
                        await running.popleft()
                    continue
                while running:
                    await running.popleft()
                await core.dispatch(*admitted)
        except Exception:
            log.exception("%s: frame handling failed", self.conn_id)
            self._fail(1011, "internal error")
        finally:
            self.pump = None
            if self.paused and not self.gone:
                self.paused = False
                self.raw.resume_reading()
            if self.gone:
                await self._finish()

    async def _finish(self) -> None:
        """The socket is gone: let what runs end, then tell the core (once)."""
        try:
            if self.running:
                await asyncio.gather(*self.running, return_exceptions=True)
            if self.conn_id:
                self.hub.outbox.detach(self.conn_id)
                await self.hub.core.disconnected(self.conn_id)
        finally:
            if not self.finished.done():
                self.finished.set_result(None)


def _utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


class PicowsListening:
    """The listening endpoint (``Listening`` of server.py) and its live connections."""

    def __init__(self, hub: HubServer) -> None:
        assert hub.core is not None
        self.core = hub.core
        self.config = hub.config
        self.outbox = hub.outbox
        self.live: set[PicowsConnection] = set()
        self.server: asyncio.Server | None = None

    @property
    def sockets(self) -> Any:
        assert self.server is not None
        return self.server.sockets

    def connection(self, request: WSUpgradeRequest) -> PicowsConnection:
        path = request.path.decode("latin-1")
        return PicowsConnection(self, handshake_token(path, request.headers.get("Authorization")))

    async def shutdown(self, timeout: float = CLOSE_TIMEOUT) -> None:
        """Stop listening, close every connection (1001) and wait for them (then drop the rest)."""
        if self.server is not None:
            self.server.close()
        conns = list(self.live)
        for conn in conns:
            conn.close(1001, "")
        waiting = [c.finished for c in conns if not c.finished.done()]
        if waiting:
            _, late = await asyncio.wait(waiting, timeout=timeout)
            if late:
                for conn in conns:
                    if not conn.finished.done():
                        conn.abort()
                await asyncio.wait(late, timeout=2)
        if self.server is not None:
            await self.server.wait_closed()


async def serve_picows(hub: HubServer, tls: ssl.SSLContext | None) -> PicowsListening:
    config = hub.config
    listening = PicowsListening(hub)
    listening.server = await ws_create_server(
        listening.connection,
        config.host,
        config.ws_port,
        websocket_handshake_timeout=HANDSHAKE_TIMEOUT,
        logger_name=_PeerLines(logging.getLogger("empq.hub.picows"), {}),
        enable_auto_ping=True,
        auto_ping_idle_timeout=20,
        auto_ping_reply_timeout=20,
        max_frame_size=config.max_message_size,
        read_buffer_init_size=4096,
        disconnect_on_exception=True,
        ssl=tls,
        reuse_port=config.reuse_port or None,
    )
    return listening
