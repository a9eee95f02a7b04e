"""A real HTTP receiver for webhook tests: an asyncio server on 127.0.0.1 (h11 parses requests).

It answers each request with the next scripted action (a status code, or ``"hang"``: keep the
request open without answering until the sender gives up or the receiver closes), then
``default``. It records every
request (path, headers, body) and how many were open at once. ``hold_until`` makes it keep
requests open until that many are open together (or ``hold_timeout`` passes): a test can prove
that attempts ran concurrently without measuring time.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from typing import Any

import h11
import orjson


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]

    def json(self) -> Any:
        return orjson.loads(self.body)


class Receiver:
    def __init__(
        self,
        script: list[int | str] | None = None,
        default: int = 200,
        hold_until: int = 0,
        hold_timeout: float = 10.0,
        body: bytes = b"ok",
        reason: bytes = b"",
    ) -> None:
        self.script = list(script or [])
        self.default = default
        self.hold_until = hold_until
        self.hold_timeout = hold_timeout
        self.body = body
        self.reason = reason  # the status line's reason phrase (h11's own when empty)
        self.requests: list[Received] = []
        self.open = 0
        self.max_open = 0
        self._changed = asyncio.Event()
        self._closing = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[Any]] = set()
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/empq?source=test"

    async def start(self) -> Receiver:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def close(self) -> None:
        self._closing.set()
        if self._server is not None:
            self._server.close()
            for task in list(self._handlers):
                task.cancel()
            await asyncio.gather(*self._handlers, return_exceptions=True)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    async def wait_for(self, count: int, timeout: float = 20.0) -> list[Received]:
        """Until ``count`` requests have arrived (AssertionError after ``timeout`` s)."""
        deadline = time.monotonic() + timeout
        while len(self.requests) < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"{len(self.requests)} webhook request(s) arrived, not {count}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(remaining, 0.05))
        return self.requests

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            await self._one(reader, writer)
        except (ConnectionError, h11.ProtocolError, asyncio.CancelledError):
            pass
        finally:
            self._handlers.discard(task)
            writer.close()

    async def _one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h11.Connection(h11.SERVER)
        request: h11.Request | None = None
        body = b""
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await reader.read(65536)
                if not data:
                    return
                conn.receive_data(data)
            elif isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.Data):
                body += bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                break
        assert request is not None
        headers = {k.decode().lower(): v.decode() for k, v in request.headers}
        self.requests.append(Received(request.target.decode(), headers, body))
        self.open += 1
        self.max_open = max(self.max_open, self.open)
        self._changed.set()
        try:
            action = self.script.pop(0) if self.script else self.default
            if self.hold_until:
                deadline = time.monotonic() + self.hold_timeout
                while self.max_open < self.hold_until and time.monotonic() < deadline:
                    self._changed.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._changed.wait(), 0.05)
            if action == "hang":  # until the sender gives up (closes) or the receiver closes
                gone = asyncio.ensure_future(reader.read())
                closing = asyncio.ensure_future(self._closing.wait())
                await asyncio.wait([gone, closing], return_when=asyncio.FIRST_COMPLETED)
                gone.cancel()
                closing.cancel()
                return
            response = h11.Response(
                status_code=int(action),
                headers=[("Content-Length", str(len(self.body))), ("Content-Type", "text/plain")],
                **({"reason": self.reason} if self.reason else {}),
            )
            writer.write(
                conn.send(response) + conn.send(h11.Data(data=self.body)) + conn.send(h11.EndOfMessage())
            )
            with contextlib.suppress(ConnectionError):
                await writer.drain()
        finally:
            self.open -= 1
            self._changed.set()
