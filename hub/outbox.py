"""What the core sends, on its way to the sockets: one outbox for both WebSocket I/O layers.

``WebSocketOutbox`` queues the frames of a tick per connection and writes them once per tick; a
fan-out queues one encoded frame for all its recipients (``send_many``). Each connection is a
``Link`` (``server.py``'s over python-websockets, ``transport_picows.py``'s over picows); both
frame their writes with ``framed``: a header from a table before the frame's bytes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection
from typing import Protocol

log = logging.getLogger("empq.hub")


class Link(Protocol):
    """One peer's connection as the outbox sees it, whatever the WebSocket library."""

    peer: str  # host:port, for the log

    def writable(self) -> bool: ...  # open: no close frame sent or received yet

    def buffered(self) -> int: ...  # bytes written but not yet taken by the peer's socket

    def write_frames(self, frames: list[bytes]) -> None: ...  # text frames, one write

    def abort(self) -> None: ...  # drop the TCP connection now

    def close(self, code: int, reason: str) -> None: ...  # close handshake, in the background


class WebSocketOutbox:
    """Frames the core sends, written once per event-loop tick per connection.

    Frames queued during a tick are framed together and written with one ``transport.write``:
    one syscall per connection per tick instead of one per frame. Writes never wait: a peer that
    does not read what it was sent is disconnected once what it left unread passes
    ``max_buffered`` bytes (D19), so it can neither stall the others nor hold the hub's memory.
    A single large frame (up to the 10 MB limit) is always written whole. The same outbox serves
    both I/O layers (``--transport``): each connection is a ``Link``.
    """

    def __init__(self, max_buffered: int = 8 * 1024 * 1024) -> None:
        self.max_buffered = max_buffered
        self.dropped = 0  # peers disconnected for not reading
        self.conns: dict[str, Link] = {}
        self.pending: dict[str, list[bytes]] = {}
        self._scheduled = False

    def attach(self, conn_id: str, link: Link) -> None:
        self.conns[conn_id] = link

    def detach(self, conn_id: str) -> None:
        self.conns.pop(conn_id, None)
        self.pending.pop(conn_id, None)

    def send(self, conn_id: str, data: bytes) -> None:
        if conn_id not in self.conns:
            return
        frames = self.pending.get(conn_id)
        if frames is None:
            self.pending[conn_id] = [data]
        else:
            frames.append(data)
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def send_many(self, conn_ids: Collection[str], data: bytes) -> None:
        """The same frame to several connections (a fan-out): the same bytes object queued for
        each, framed once per connection's write with the header read from a table."""
        conns, pending = self.conns, self.pending
        for conn_id in conn_ids:
            if conn_id not in conns:
                continue
            frames = pending.get(conn_id)
            if frames is None:
                pending[conn_id] = [data]
            else:
                frames.append(data)
        if pending and not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        self._scheduled = False
        pending, self.pending = self.pending, {}
        for conn_id, frames in pending.items():
            link = self.conns.get(conn_id)
            if link is None or not link.writable():
                continue
            unread = link.buffered()
            if unread > self.max_buffered:
                # what it was sent before is still unread past the bound: it is not reading
                self.dropped += 1
                log.warning(
                    "%s (%s) is not reading: %d bytes unsent over the %d-byte bound; disconnecting it",
                    conn_id,
                    link.peer,
                    unread,
                    self.max_buffered,
                )
                self.detach(conn_id)
                link.abort()
                continue
            link.write_frames(frames)

    def close(self, conn_id: str, code: int, reason: str) -> None:
        link = self.conns.get(conn_id)
        if link is not None:
            self.flush()
            link.close(code, reason)


def frame_header(size: int) -> bytes:
    """The header of an unmasked, final text frame of ``size`` bytes (server to client, RFC 6455
    5.2): what both I/O layers put before a frame's bytes, read from a table for most."""
    if size < 126:
        return _SMALL[size]
    if size < 65536:
        return b"\x81\x7e" + size.to_bytes(2, "big")
    return b"\x81\x7f" + size.to_bytes(8, "big")


_SMALL = [bytes((0x81, n)) for n in range(126)]


def framed(frames: list[bytes]) -> bytes:
    """Text frames, headers and bytes, as one buffer for one write."""
    parts = []
    for frame in frames:
        parts.append(frame_header(len(frame)))
        parts.append(frame)
    return b"".join(parts)
