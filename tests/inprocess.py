"""The hub's core in-process, on a real redis-server, without sockets: each ``Conn`` is a
connection the way the transport (or the HTTP API) opens one, and collects what the core sends
it. Tests of one module drive it through ``send``/``request``; no event loop tricks, no mocks.

Every frame the core sends is checked against the JSON Schemas (jsonschema, as the conformance
peer does over a socket): a violation fails the test that caused it. Timers run when a test
calls ``hub.core.tick()`` (or ``hub.until``/``hub.ticks``, which tick every few ms meanwhile).
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import orjson
from empq.conformance.schemas import default_schemas
from empq.hub.config import HubConfig
from empq.hub.core import HubCore
from empq.hub.redis_batch import RedisBatch
from empq.hub.resp import RespClient
from empq.hub.store import SCRIPTS, JobStore

from empq import protocol

_ids = itertools.count(1)


class RecordingOutbox:
    """What the core sends, per connection, decoded; which connections it closed (and how); the
    frames that violate their schema."""

    def __init__(self) -> None:
        self.frames: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.closed: dict[str, int] = {}
        self.violations: list[str] = []
        self.fanouts: list[bytes] = []  # frames sent to several connections at once (send_many)
        self.schemas = default_schemas()

    def send(self, conn_id: str, data: bytes) -> None:
        frame = orjson.loads(data)
        found = self.schemas.violations(frame)
        if found:
            self.violations.append(f"{found[0]} (value {found[0].value!r}) in {frame}")
        self.frames[conn_id].append(frame)

    def send_many(self, conn_ids: Any, data: bytes) -> None:
        self.fanouts.append(data)
        for conn_id in conn_ids:
            self.send(conn_id, data)

    def close(self, conn_id: str, code: int, reason: str) -> None:
        self.closed[conn_id] = code


class Conn:
    def __init__(self, core: HubCore, outbox: RecordingOutbox, conn_id: str) -> None:
        self.core, self.outbox, self.conn_id = core, outbox, conn_id
        self.read = 0  # frames already returned
        self.worker_id: str | None = None
        self.registered: dict[str, Any] = {}  # the registration's reply

    @property
    def frames(self) -> list[dict[str, Any]]:
        return self.outbox.frames[self.conn_id]

    @property
    def closed(self) -> int | None:
        """The close code the core closed this connection with (None: open)."""
        return self.outbox.closed.get(self.conn_id)

    def new(self) -> list[dict[str, Any]]:
        """Frames received since the last call."""
        assert not self.outbox.violations, self.outbox.violations
        got = self.frames[self.read :]
        self.read = len(self.frames)
        return got

    async def send(self, kind: str, **fields: Any) -> list[dict[str, Any]]:
        """Send a message (built with its generated model); the frames it brought back."""
        return await self.send_raw(protocol.encode(protocol.make(protocol.MESSAGE_CLASSES[kind], **fields)))

    async def send_raw(self, frame: bytes | str | dict[str, Any]) -> list[dict[str, Any]]:
        """Send anything, valid or not (dicts are JSON-encoded as they are); the frames back."""
        if isinstance(frame, dict):
            frame = orjson.dumps(frame)
        await self.core.receive(self.conn_id, frame)
        return self.new()

    async def request(self, kind: str, **fields: Any) -> dict[str, Any]:
        """Send with an id; the one reply that carries it (error included)."""
        rid = f"r{next(_ids)}"
        frames = await self.send(kind, id=rid, **fields)
        replies = [f for f in frames if f.get("request_id") == rid]
        assert len(replies) == 1, frames
        return replies[0]

    async def claim(self, max_jobs: int = 1, **fields: Any) -> list[dict[str, Any]]:
        """claim_job: the job_assigned frames; a claim that got fewer than ``max_jobs`` ends with
        ``ack`` no_job_available (D10), checked here."""
        rid = f"r{next(_ids)}"
        frames = await self.send("claim_job", id=rid, worker_id=self.worker_id, max_jobs=max_jobs, **fields)
        replies = [f for f in frames if f.get("request_id") == rid]
        jobs = [f for f in replies if f["type"] == "job_assigned"]
        rest = replies[len(jobs) :]
        if len(jobs) < max_jobs:
            assert [(f["type"], f.get("status")) for f in rest] == [("ack", "no_job_available")], replies
        else:
            assert rest == [], replies
        return jobs

    async def submit(self, **fields: Any) -> dict[str, Any]:
        """submit_job (job_type and payload filled in when absent); its job_accepted."""
        fields.setdefault("job_type", "text_to_image")
        fields.setdefault("payload", {"prompt": "mountains"})
        reply = await self.request("submit_job", **fields)
        assert reply["type"] == "job_accepted", reply
        return reply

    async def status(self, job_id: str) -> dict[str, Any]:
        return await self.request("request_job_status", job_id=job_id)

    async def act(self, kind: str, job_id: str, **fields: Any) -> dict[str, Any]:
        """A worker's step on a job (accept, progress, complete, fail): its reply."""
        return await self.request(kind, job_id=job_id, worker_id=self.worker_id, **fields)

    async def accept(self, job_id: str) -> None:
        assert (await self.act("job_accepted_by_worker", job_id))["type"] == "ack"

    async def complete(self, job_id: str, result: dict[str, Any] | None = None, **fields: Any) -> None:
        reply = await self.act("complete_job", job_id, result=result or {"success": True}, **fields)
        assert reply["type"] == "job_completed_ack", reply

    def of(self, kind: str, **match: Any) -> list[dict[str, Any]]:
        """The frames of ``kind`` received so far whose fields equal ``match``."""
        return [f for f in self.frames if f["type"] == kind and all(f.get(k) == v for k, v in match.items())]


class Hub:
    """A core on its own key prefix: ``await hub.client()``, ``hub.worker()``, ``hub.monitor()``."""

    def __init__(self, core: HubCore, outbox: RecordingOutbox, redis: RespClient) -> None:
        self.core, self.outbox, self.redis = core, outbox, redis

    @classmethod
    async def start(cls, redis_url: str, **settings: Any) -> Hub:
        settings.setdefault("key_prefix", f"{{t-{uuid.uuid4().hex[:10]}}}")
        settings.setdefault("retry_base_seconds", 0.05)
        settings.setdefault("retry_max_seconds", 0.2)
        config = HubConfig(redis_url=redis_url, **settings)
        redis = RespClient(redis_url)
        batch = RedisBatch(redis, SCRIPTS)
        await batch.load_scripts()
        store = JobStore(batch, config.key_prefix)
        await store.refresh_classes()
        outbox = RecordingOutbox()
        return cls(HubCore(config, store, outbox), outbox, redis)

    async def close(self) -> None:
        await self.redis.close()
        assert not self.outbox.violations, self.outbox.violations

    def connect(self, token: str | None = None) -> Conn:
        """A new connection (``token``: presented on the handshake), greeted and not registered."""
        conn_id = self.core.new_conn_id()
        self.core.connect(conn_id, token)
        conn = Conn(self.core, self.outbox, conn_id)
        (greeting,) = conn.new()
        assert greeting["type"] == "connection_established", greeting
        return conn

    async def drop(self, conn: Conn) -> None:
        """The connection is lost without ``disconnect`` (what the transport reports)."""
        await self.core.disconnected(conn.conn_id)

    async def client(self, customer_id: str | None = None, **fields: Any) -> Conn:
        conn = self.connect()
        if customer_id:
            fields["customer_id"] = customer_id
        fields.setdefault("client_id", f"client-{uuid.uuid4().hex[:6]}")
        reply = await conn.request("register_client", client_type="job_client", **fields)
        assert reply["type"] == "client_registered", reply
        conn.registered = reply
        return conn

    async def monitor(
        self, permissions: tuple[str, ...] = ("view_all_jobs", "view_system_stats"), **fields: Any
    ) -> Conn:
        conn = self.connect()
        fields.setdefault("client_id", "monitor")
        reply = await conn.request(
            "register_client", client_type="monitor", permissions=list(permissions), **fields
        )
        assert reply["type"] == "client_registered", reply
        conn.registered = reply
        conn.new()  # system_status
        return conn

    async def worker(
        self, worker_id: str | None = None, subscribe: bool = False, **capabilities: Any
    ) -> Conn:
        conn = self.connect()
        worker_id = worker_id or f"worker-{uuid.uuid4().hex[:6]}"
        capabilities.setdefault("services", ["comfyui"])
        reply = await conn.request(
            "register_worker", worker_id=worker_id, capabilities=capabilities, subscribe_to_jobs=subscribe
        )
        assert reply["type"] == "worker_registered", reply
        conn.worker_id = worker_id
        conn.registered = reply
        return conn

    async def ticks(self, seconds: float, every: float = 0.02, also: Callable[[], Any] | None = None) -> None:
        """Run the timers for ``seconds`` (a tick every ``every`` s; ``also`` awaited with each)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            await self._tick(also)
            await asyncio.sleep(every)

    async def until(
        self,
        done: Callable[[], Any],
        within: float = 3.0,
        every: float = 0.02,
        also: Callable[[], Any] | None = None,
    ) -> Any:
        """Run the timers until ``done()`` (or what it returns, when awaitable) is truthy; its
        value. At most ``within`` seconds."""
        deadline = time.monotonic() + within
        while True:
            await self._tick(also)
            value = done()
            if inspect.isawaitable(value):
                value = await value
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"not done within {within}s")
            await asyncio.sleep(every)

    async def _tick(self, also: Callable[[], Any] | None) -> None:
        await self.core.tick()
        if also is not None:
            result = also()
            if asyncio.iscoroutine(result):
                await result
