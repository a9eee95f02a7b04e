"""The suite's peer: ``Peer`` (schema-checked frames, backlog) made precise about failures.

Every way a hub can let a case down becomes a ``CaseFailure`` that says what was expected and
what was received: nothing within the step timeout, a frame of the wrong type answering our
request, a frame that is not JSON, a closed connection (with the close code).  A frame that
violates its schema is handed to ``sink`` (the run's findings) and, unless ``strict``, the case
goes on with it; with ``strict`` it fails the case with the path and value of the first violation.
Closing never waits long: a hub that does not answer the closing handshake must not stall the run.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import orjson
from empq.conformance import causes
from empq.conformance.findings import violation_cause
from empq.conformance.model import CaseFailure, Cause, StepTimeout
from empq.conformance.peer import Peer, WireEntry
from empq.conformance.schemas import SchemaSet, Violation, default_schemas
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

Predicate = Callable[[dict[str, Any]], bool]
Sink = Callable[[dict[str, Any], list[Violation]], list[Cause]]


class ConnectionLost(CaseFailure):
    def __init__(self, peer: str, code: int | None, reason: str = "", cause: Cause | None = None) -> None:
        text = f"code {code}" if code is not None else "no close frame"
        if reason:
            text += f", reason {reason!r}"
        super().__init__(
            f"{peer}: connection closed by the hub ({text})",
            expected="the connection stays open",
            received=f"closed ({text})",
            cause=cause,
        )
        self.code = code


class HandshakeRefused(CaseFailure):
    """The hub answered the WebSocket handshake with an HTTP status other than 101."""

    def __init__(self, message: str, status: int, reason: str, cause: Cause) -> None:
        super().__init__(
            message, expected="HTTP 101 Switching Protocols", received=f"HTTP {status} {reason}", cause=cause
        )
        self.status = status


class WrongReply(CaseFailure):
    """A frame that answers what we waited for (same request_id) but is of another type."""

    def __init__(self, message: str, want: str, frame: dict[str, Any]) -> None:
        super().__init__(message, expected=want, received=frame)
        self.frame = frame


def summary(frame: dict[str, Any]) -> dict[str, Any]:
    """A frame shortened for expected/received: its type and correlation fields."""
    keys = ("type", "job_id", "worker_id", "status", "request_id", "error_code", "progress")
    return {k: frame[k] for k in keys if k in frame}


class SuitePeer(Peer):
    worker_id: str = ""
    client_id: str = ""
    customer_id: str | None = None
    role: str = "job_client"  # job_client | worker | monitor: whose URL it connected to
    url_template: str = ""  # that URL as given ({id} not replaced): the same in every case
    per_role_urls: bool = False  # the run was given a URL per role
    sink: Sink | None = None  # told every received frame's schema violations
    received: int = 0  # frames received
    opened_at: float = 0.0

    @classmethod
    async def open(
        cls,
        url: str,
        name: str,
        *,
        timeout: float,
        headers: dict[str, str] | None = None,
        schemas: SchemaSet | None = None,
    ) -> SuitePeer:
        ws = await asyncio.wait_for(
            connect(
                url,
                compression=None,
                additional_headers=headers,
                max_size=32 * 1024 * 1024,
                open_timeout=timeout,
                close_timeout=0.5,
                ping_interval=None,
            ),
            timeout,
        )
        peer = cls(ws=ws, name=name, schemas=schemas or default_schemas(), timeout=timeout)
        peer.opened_at = time.monotonic()
        peer.wire.append(WireEntry("connect", time.time(), url))
        return peer

    def lost(self, code: int | None, reason: str = "") -> ConnectionLost:
        """The hub closed the connection: early (right after connecting, nothing but a greeting
        received) suggests the hub wants another URL for this role."""
        early = self.received <= 1 and time.monotonic() - self.opened_at < 2.0
        sent = sum(1 for e in self.wire if e.direction == "sent")
        cause = causes.closed(code, self.url_template, self.per_role_urls, early, sent)
        return ConnectionLost(self.name, code, reason, cause)

    async def close(self, graceful: bool = True) -> None:
        """Close (a hub that does not complete the closing handshake gets 1 s), or just abort."""
        try:
            if not graceful:
                raise TimeoutError
            await asyncio.wait_for(self.ws.close(), 1.0)
        except (TimeoutError, OSError, ConnectionClosed):
            self.ws.transport.abort()
        if self.reader is not None:
            self.reader.cancel()

    @property
    def is_open(self) -> bool:
        from websockets.protocol import State

        return bool(self.ws.protocol.state is State.OPEN)

    async def send_raw(self, frame: bytes | str | dict[str, Any]) -> None:
        try:
            await super().send_raw(frame)
        except ConnectionClosed as exc:
            code = exc.rcvd.code if exc.rcvd else None
            raise self.lost(code, exc.rcvd.reason if exc.rcvd else "") from None

    async def _read(self, deadline: float) -> dict[str, Any]:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        raw = await asyncio.wait_for(self.inbox.get(), remaining)
        if isinstance(raw, ConnectionClosed):
            self.inbox.put_nowait(raw)  # stays closed for later reads
            code = raw.rcvd.code if raw.rcvd else None
            raise self.lost(code, raw.rcvd.reason if raw.rcvd else "")
        self.received += 1
        try:
            frame = orjson.loads(raw)
        except orjson.JSONDecodeError:
            text = raw if isinstance(raw, str) else raw.decode("utf-8", "replace")
            self.wire.append(WireEntry("received", time.time(), text[:2000]))
            raise CaseFailure(
                f"{self.name}: received a frame that is not JSON",
                expected="a JSON object (one message per frame)",
                received=text[:500],
                cause=causes.not_json(),
            ) from None
        self.wire.append(WireEntry("received", time.time(), frame))
        if not isinstance(frame, dict):
            raise CaseFailure(
                f"{self.name}: received a frame that is not a JSON object",
                expected="a JSON object",
                received=frame,
                cause=causes.not_object(),
            )
        found = self.schemas.violations(frame)
        if self.sink is not None:
            self.sink(frame, found)
        if found:
            self.violations.append((frame, found))
            if not self.strict:
                return frame  # recorded as findings; the case goes on with what it received
            first = found[0]
            kind = frame.get("type")
            where = first.path or "(message)"
            received: dict[str, Any] = {"path": where, "error": first.message, "frame": frame}
            text = f"{self.name}: {kind} frame violates its schema at {where}: {first.message}"
            if first.path:  # at the top level the value is the frame itself
                value = repr(first.value)
                text += f" (value {value[:160] + '...' if len(value) > 160 else value})"
                received["value"] = first.value
            raise CaseFailure(
                text,
                expected=f"a frame valid against schemas/messages/{kind}.json",
                received=received,
                cause=violation_cause(str(kind), first),
            )
        return frame

    async def wait(
        self,
        want: str,
        match: Predicate,
        timeout: float | None = None,
        wrong: Predicate | None = None,
    ) -> dict[str, Any]:
        """The first frame (backlog first) for which ``match`` holds; others stay in the backlog.

        ``wrong``: a frame that certainly answers what we are waiting for but is not what we
        expected (e.g. same request_id, other type): fail at once instead of timing out.
        """
        for i, frame in enumerate(self.backlog):
            if match(frame):
                return self.backlog.pop(i)
            if wrong is not None and wrong(frame):
                self.backlog.pop(i)
                raise WrongReply(f"{self.name}: expected {want}, received {frame.get('type')}", want, frame)
        limit = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        while True:
            try:
                frame = await self._read(deadline)
            except TimeoutError:
                seen = [summary(f) for f in self.backlog[-8:]]
                got = (
                    f"; received meanwhile: {[s.get('type') for s in seen]}" if seen else "; nothing received"
                )
                raise StepTimeout(
                    f"{self.name}: no {want} within {limit:g} s{got}",
                    expected=want,
                    received=seen or "nothing",
                ) from None
            if match(frame):
                return frame
            if wrong is not None and wrong(frame):
                raise WrongReply(f"{self.name}: expected {want}, received {frame.get('type')}", want, frame)
            self.backlog.append(frame)

    async def quiet(self, match: Predicate, within: float) -> dict[str, Any] | None:
        """The first frame matching within ``within`` seconds, or None (no failure on silence)."""
        try:
            return await self.wait("(optional)", match, timeout=within)
        except StepTimeout:
            return None

    async def wait_closed(self, timeout: float) -> int | None:
        """Wait until the hub closes the connection: its close code (None without a close frame)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                frame = await self._read(deadline)
            except ConnectionLost as lost:
                return lost.code
            except TimeoutError:
                raise StepTimeout(
                    f"{self.name}: connection still open after {timeout:g} s",
                    expected="the hub closes the connection",
                    received="still open",
                ) from None
            self.backlog.append(frame)
