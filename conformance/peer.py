"""A protocol peer for tests and the conformance suite: one WebSocket connection that sends
messages built with the generated models and checks every frame it receives against the JSON
Schemas (jsonschema, independent of the models).

``expect(type, **fields)`` waits for the next frame of that type whose fields match, keeping
other frames for later ``expect`` calls, so tests can state what must arrive without depending
on the interleaving of unrelated frames.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from empq.conformance.schemas import SchemaSet, Violation, default_schemas
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from empq import protocol

_ids = itertools.count(1)


class PeerError(AssertionError):
    """What a peer saw that it should not have: a timeout, a schema violation, a closed socket."""


@dataclass
class WireEntry:
    direction: str  # "sent" | "received" | "connect" (the URL the connection was opened to)
    at: float
    frame: Any


@dataclass
class Peer:
    ws: ClientConnection
    name: str
    schemas: SchemaSet
    timeout: float = 5.0
    backlog: list[dict[str, Any]] = field(default_factory=list)
    wire: list[WireEntry] = field(default_factory=list)
    violations: list[tuple[dict[str, Any], list[Violation]]] = field(default_factory=list)
    strict: bool = True  # raise on the first schema violation
    inbox: asyncio.Queue[bytes | str | ConnectionClosed] = field(default_factory=asyncio.Queue)
    reader: asyncio.Task[None] | None = None

    def __post_init__(self) -> None:
        # read continuously so the hub never sees a stalled peer, however much it sends
        self.reader = asyncio.get_running_loop().create_task(self._pump())

    async def _pump(self) -> None:
        try:
            while True:
                self.inbox.put_nowait(await self.ws.recv())
        except ConnectionClosed as exc:
            self.inbox.put_nowait(exc)

    @classmethod
    async def connect(
        cls,
        url: str,
        name: str = "peer",
        *,
        timeout: float = 5.0,
        headers: dict[str, str] | None = None,
        schemas: SchemaSet | None = None,
        max_size: int | None = 16 * 1024 * 1024,
    ) -> Peer:
        ws = await asyncio.wait_for(
            connect(
                url, compression=None, additional_headers=headers, max_size=max_size, open_timeout=timeout
            ),
            timeout,
        )
        return cls(ws=ws, name=name, schemas=schemas or default_schemas(), timeout=timeout)

    async def close(self) -> None:
        await self.ws.close()
        if self.reader is not None:
            self.reader.cancel()

    # sending ------------------------------------------------------------------------------
    def next_id(self) -> str:
        return f"{self.name}-{next(_ids)}"

    async def send(self, kind: str, **fields: Any) -> dict[str, Any]:
        """Send a valid message of ``kind`` built with its generated model (type and timestamp filled)."""
        message = protocol.make(protocol.MESSAGE_CLASSES[kind], **fields)
        data = protocol.encode(message)
        await self.send_raw(data)
        return orjson.loads(data)

    async def send_raw(self, frame: bytes | str | dict[str, Any]) -> None:
        """Send anything, valid or not (dicts are JSON-encoded as they are)."""
        if isinstance(frame, dict):
            frame = orjson.dumps(frame)
        self.wire.append(WireEntry("sent", time.time(), _printable(frame)))
        await self.ws.send(frame.decode() if isinstance(frame, bytes) else frame)

    # receiving ----------------------------------------------------------------------------
    async def _read(self, deadline: float) -> dict[str, Any]:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        raw = await asyncio.wait_for(self.inbox.get(), remaining)
        if isinstance(raw, ConnectionClosed):
            self.inbox.put_nowait(raw)  # stays closed for later reads
            code = raw.rcvd.code if raw.rcvd else "no close frame"
            raise PeerError(f"{self.name}: connection closed ({code})")
        frame = orjson.loads(raw)
        self.wire.append(WireEntry("received", time.time(), frame))
        found = self.schemas.violations(frame)
        if found:
            self.violations.append((frame, found))
            if self.strict:
                raise PeerError(
                    f"{self.name}: frame violates schema: {found[0]} (value {found[0].value!r}) in {frame}"
                )
        return frame

    async def recv(self, timeout: float | None = None) -> dict[str, Any]:
        if self.backlog:
            return self.backlog.pop(0)
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        try:
            return await self._read(deadline)
        except TimeoutError:
            raise PeerError(f"{self.name}: nothing received within {timeout or self.timeout}s") from None

    async def expect(
        self, kind: str | tuple[str, ...], timeout: float | None = None, **match: Any
    ) -> dict[str, Any]:
        """The next frame of type ``kind`` (or one of several) whose fields equal ``match``."""
        kinds = (kind,) if isinstance(kind, str) else kind
        for i, frame in enumerate(self.backlog):
            if frame.get("type") in kinds and _match(frame, match):
                return self.backlog.pop(i)
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            try:
                frame = await self._read(deadline)
            except TimeoutError:
                seen = [f.get("type") for f in self.backlog]
                raise PeerError(
                    f"{self.name}: no {'/'.join(kinds)} matching {match} within {timeout or self.timeout}s; "
                    f"unmatched frames: {seen}"
                ) from None
            if frame.get("type") in kinds and _match(frame, match):
                return frame
            self.backlog.append(frame)

    async def expect_none(self, kind: str | tuple[str, ...], within: float = 0.3, **match: Any) -> None:
        """Fail if a frame of ``kind`` matching ``match`` arrives within ``within`` seconds."""
        try:
            frame = await self.expect(kind, timeout=within, **match)
        except PeerError:
            return
        raise PeerError(f"{self.name}: unexpected {frame}")

    async def request(self, kind: str, reply: str | tuple[str, ...], **fields: Any) -> dict[str, Any]:
        """Send with a fresh id and wait for the reply (or error) that carries it as request_id."""
        rid = self.next_id()
        await self.send(kind, id=rid, **fields)
        kinds = (reply,) if isinstance(reply, str) else reply
        return await self.expect((*kinds, "error"), request_id=rid)

    async def closed(self, timeout: float | None = None) -> int | None:
        """Wait until the server closes the connection; returns its close code."""
        try:
            async with asyncio.timeout(self.timeout if timeout is None else timeout):
                while True:
                    raw = await self.inbox.get()
                    if isinstance(raw, ConnectionClosed):
                        self.inbox.put_nowait(raw)
                        return raw.rcvd.code if raw.rcvd else None
                    self.backlog.append(orjson.loads(raw))
        except TimeoutError:
            raise PeerError(f"{self.name}: connection still open") from None


def _match(frame: dict[str, Any], match: dict[str, Any]) -> bool:
    return all(frame.get(k) == v for k, v in match.items())


def _printable(frame: bytes | str) -> Any:
    text = frame.decode("utf-8", "replace") if isinstance(frame, bytes) else frame
    if len(text) > 2000:
        return text[:2000] + f"... ({len(text)} chars)"
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return text
