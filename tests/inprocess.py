"""The hub's core in-process, on a real redis-server, without sockets: each ``Conn`` is a
connection the way the transport (or the HTTP API) opens one, and collects what the core sends
it. Tests of one module drive it through ``send``/``request``; no event loop tricks, no mocks.
"""

from __future__ import annotations

import itertools
import uuid
from collections import defaultdict
from typing import Any

import orjson
from empq.hub.config import HubConfig
from empq.hub.core import HubCore
from empq.hub.redis_batch import RedisBatch
from empq.hub.resp import RespClient
from empq.hub.store import SCRIPTS, JobStore

from empq import protocol

_ids = itertools.count(1)


class RecordingOutbox:
    """What the core sends, per connection, decoded; and which connections it closed."""

    def __init__(self) -> None:
        self.frames: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.closed: dict[str, int] = {}

    def send(self, conn_id: str, data: bytes) -> None:
        self.frames[conn_id].append(orjson.loads(data))

    def close(self, conn_id: str, code: int, reason: str) -> None:
        self.closed[conn_id] = code


class Conn:
    def __init__(self, core: HubCore, outbox: RecordingOutbox, conn_id: str) -> None:
        self.core, self.outbox, self.conn_id = core, outbox, conn_id
        self.read = 0  # frames already returned

    @property
    def frames(self) -> list[dict[str, Any]]:
        return self.outbox.frames[self.conn_id]

    def new(self) -> list[dict[str, Any]]:
        """Frames received since the last call."""
        got = self.frames[self.read :]
        self.read = len(self.frames)
        return got

    async def send(self, kind: str, **fields: Any) -> list[dict[str, Any]]:
        """Send a message (built with its generated model); the frames it brought back."""
        data = protocol.encode(protocol.make(protocol.MESSAGE_CLASSES[kind], **fields))
        await self.core.receive(self.conn_id, data)
        return self.new()

    async def request(self, kind: str, **fields: Any) -> dict[str, Any]:
        """Send with an id; the one reply that carries it (error included)."""
        rid = f"r{next(_ids)}"
        frames = await self.send(kind, id=rid, **fields)
        replies = [f for f in frames if f.get("request_id") == rid]
        assert len(replies) == 1, frames
        return replies[0]

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [f for f in self.frames if f["type"] == kind]


class Hub:
    """A core on its own key prefix: ``await hub.client()``, ``hub.worker()``, ``hub.monitor()``."""

    def __init__(self, core: HubCore, outbox: RecordingOutbox, redis: RespClient) -> None:
        self.core, self.outbox, self.redis = core, outbox, redis

    @classmethod
    async def start(cls, redis_url: str, **settings: Any) -> Hub:
        config = HubConfig(
            redis_url=redis_url,
            key_prefix=f"{{t-{uuid.uuid4().hex[:10]}}}",
            retry_base_seconds=0.05,
            retry_max_seconds=0.2,
            **settings,
        )
        redis = RespClient(redis_url)
        batch = RedisBatch(redis, SCRIPTS)
        await batch.load_scripts()
        store = JobStore(batch, config.key_prefix)
        await store.refresh_classes()
        outbox = RecordingOutbox()
        return cls(HubCore(config, store, outbox), outbox, redis)

    async def close(self) -> None:
        await self.redis.close()

    def connect(self) -> Conn:
        conn_id = self.core.new_conn_id()
        self.core.connect(conn_id)
        conn = Conn(self.core, self.outbox, conn_id)
        conn.new()  # connection_established
        return conn

    async def client(self, customer_id: str | None = None, **fields: Any) -> Conn:
        conn = self.connect()
        if customer_id:
            fields["customer_id"] = customer_id
        fields.setdefault("client_id", f"client-{uuid.uuid4().hex[:6]}")
        reply = await conn.request("register_client", client_type="job_client", **fields)
        assert reply["type"] == "client_registered", reply
        return conn

    async def monitor(self, permissions: tuple[str, ...] = ("view_all_jobs", "view_system_stats")) -> Conn:
        conn = self.connect()
        reply = await conn.request(
            "register_client", client_type="monitor", client_id="monitor", permissions=list(permissions)
        )
        assert reply["type"] == "client_registered", reply
        conn.new()  # system_status
        return conn

    async def worker(self, worker_id: str | None = None, **capabilities: Any) -> Conn:
        conn = self.connect()
        worker_id = worker_id or f"worker-{uuid.uuid4().hex[:6]}"
        capabilities.setdefault("services", ["comfyui"])
        reply = await conn.request(
            "register_worker", worker_id=worker_id, capabilities=capabilities, subscribe_to_jobs=False
        )
        assert reply["type"] == "worker_registered", reply
        conn.worker_id = worker_id  # type: ignore[attr-defined]
        return conn
