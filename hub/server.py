"""The hub's I/O: a websockets server around ``HubCore``, a timer task, Redis connection.

Nothing here knows the protocol: frames go to the core, bytes come back through the outbox.
Each connection's frames are handled in order; what the core sends is queued per connection
and written by one writer task per busy connection, so a slow peer never blocks the others
(past ``MAX_QUEUED_FRAMES`` it is disconnected).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import signal
from typing import Any

import redis.asyncio as aioredis
from empq.generated.messages.server_disconnect import ServerDisconnect
from empq.hub.config import HubConfig
from empq.hub.core import HubCore, now_ms
from empq.hub.embedded_redis import EmbeddedRedis
from empq.hub.redis_batch import RedisBatch
from empq.hub.store import SCRIPTS, JobStore
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from empq import protocol

log = logging.getLogger("empq.hub")

MAX_QUEUED_FRAMES = 100_000


class WebSocketOutbox:
    def __init__(self) -> None:
        self.conns: dict[str, ServerConnection] = {}
        self.queues: dict[str, collections.deque[bytes]] = {}
        self.writers: dict[str, asyncio.Task[None]] = {}

    def attach(self, conn_id: str, ws: ServerConnection) -> None:
        self.conns[conn_id] = ws
        self.queues[conn_id] = collections.deque()

    def detach(self, conn_id: str) -> None:
        self.conns.pop(conn_id, None)
        self.queues.pop(conn_id, None)
        writer = self.writers.pop(conn_id, None)
        if writer is not None:
            writer.cancel()

    def send(self, conn_id: str, data: bytes) -> None:
        queue = self.queues.get(conn_id)
        if queue is None:
            return
        queue.append(data)
        if len(queue) > MAX_QUEUED_FRAMES:
            log.warning("%s is not reading; disconnecting it", conn_id)
            queue.clear()
            self.close(conn_id, 1008, "too slow")
            return
        if conn_id not in self.writers:
            self.writers[conn_id] = asyncio.get_running_loop().create_task(self._write(conn_id))

    async def _write(self, conn_id: str) -> None:
        ws, queue = self.conns[conn_id], self.queues[conn_id]
        try:
            while queue:
                await ws.send(queue.popleft(), text=True)
        except ConnectionClosed:
            pass
        finally:
            if self.writers.get(conn_id) is asyncio.current_task():
                del self.writers[conn_id]

    def close(self, conn_id: str, code: int, reason: str) -> None:
        ws = self.conns.get(conn_id)
        if ws is not None:
            asyncio.get_running_loop().create_task(self._close_after_writes(conn_id, ws, code, reason))

    async def _close_after_writes(self, conn_id: str, ws: ServerConnection, code: int, reason: str) -> None:
        writer = self.writers.get(conn_id)
        if writer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(writer), 5)
        await ws.close(code, reason)


class HubServer:
    """Owns the Redis connection (embedded server if no URL), the core and the WebSocket server."""

    def __init__(self, config: HubConfig) -> None:
        self.config = config
        self.embedded: EmbeddedRedis | None = None
        self.redis: aioredis.Redis | None = None
        self.core: HubCore | None = None
        self.outbox = WebSocketOutbox()
        self.server: Server | None = None
        self._ticker: asyncio.Task[None] | None = None
        self.redis_description = ""

    async def start(self) -> None:
        try:
            await self._start()
        except BaseException:
            await self.aclose_redis()
            raise

    async def _start(self) -> None:
        url = self.config.redis_url
        if not url:
            self.embedded = EmbeddedRedis(self.config.data_dir)
            url = await asyncio.to_thread(self.embedded.start)
        self.redis = aioredis.Redis.from_url(url, decode_responses=True, socket_connect_timeout=5)
        try:
            info = await self.redis.info("server")
        except (OSError, aioredis.RedisError) as exc:
            raise RuntimeError(f"cannot reach Redis at {url}: {exc}") from exc
        kind = (
            f"embedded redis-server {info['redis_version']}, data in {self.embedded.data_dir}"
            if self.embedded
            else (f"redis-server {info['redis_version']}")
        )
        self.redis_description = f"{url} ({kind})"
        batch = RedisBatch(self.redis, SCRIPTS)
        await batch.load_scripts()
        store = JobStore(batch, self.config.key_prefix)
        await store.refresh_classes()
        self.core = HubCore(self.config, store, self.outbox)
        try:
            self.server = await serve(
                self._handle,
                self.config.host,
                self.config.ws_port,
                max_size=self.config.max_message_size,
                compression=None,
                max_queue=64,
            )
        except OSError as exc:
            raise RuntimeError(
                f"cannot listen on {self.config.host}:{self.config.ws_port}: {exc.strerror}"
            ) from exc
        self._ticker = asyncio.get_running_loop().create_task(self._tick_forever())

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(next(iter(self.server.sockets)).getsockname()[1])

    async def _handle(self, ws: ServerConnection) -> None:
        core = self.core
        assert core is not None
        conn_id = core.new_conn_id()
        self.outbox.attach(conn_id, ws)
        core.connect(conn_id)
        try:
            while True:
                frame = await ws.recv(decode=False)
                await core.receive(conn_id, frame)
        except ConnectionClosed:
            pass
        finally:
            self.outbox.detach(conn_id)
            await core.disconnected(conn_id)

    async def _tick_forever(self) -> None:
        assert self.core is not None
        interval = self.config.sweep_interval_ms / 1000
        while True:
            await asyncio.sleep(interval)
            try:
                await self.core.tick()
            except Exception:  # keep ticking whatever happens
                log.exception("tick failed")

    async def stop(self, reason: str = "Server shutdown", downtime: float = 5.0) -> None:
        """Tell every peer (server_disconnect), stop accepting, close, let Redis writes finish."""
        if self._ticker is not None:
            self._ticker.cancel()
        if self.server is not None:
            message = protocol.encode(
                protocol.make(
                    ServerDisconnect,
                    reason=reason,
                    reconnect_after=now_ms() + int(downtime * 1000),
                    estimated_downtime=downtime,
                )
            )
            for conn_id in list(self.outbox.conns):
                self.outbox.send(conn_id, message)
            writers = list(self.outbox.writers.values())
            if writers:
                await asyncio.wait(writers, timeout=2)
            self.server.close(close_connections=True)
            await self.server.wait_closed()
        await self.aclose_redis()

    async def aclose_redis(self) -> None:
        if self.redis is not None:
            await self.redis.aclose()
            self.redis = None
        if self.embedded is not None:
            await asyncio.to_thread(self.embedded.stop)
            self.embedded = None


async def run_hub(config: HubConfig, ready: Any = None) -> None:
    """Run until SIGTERM/SIGINT; ``ready`` (optional callable) is called with the server once listening."""
    server = HubServer(config)
    await server.start()
    log.info(
        "empq hub %s listening on ws://%s:%d",
        server.core.hub_id if server.core else "?",
        config.host,
        server.port,
    )
    log.info("using Redis at %s", server.redis_description)
    if ready is not None:
        ready(server)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down")
    await server.stop()
