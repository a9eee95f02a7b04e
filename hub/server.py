"""The hub's I/O: a websockets server around ``HubCore``, a timer task, Redis connection.

Nothing here knows the protocol: frames go to the core, bytes come back through the outbox.
Each connection's frames are handled in order; what the core sends is written per tick
(``outbox.py``).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import gc
import logging
import signal
import ssl
from typing import Any, Protocol

from empq.generated.messages.server_disconnect import ServerDisconnect
from empq.hub.auth import handshake_token
from empq.hub.config import HubConfig
from empq.hub.core import PIPELINABLE, HubCore, now_ms
from empq.hub.embedded_redis import EmbeddedRedis
from empq.hub.outbox import WebSocketOutbox, framed
from empq.hub.redis_batch import RedisBatch
from empq.hub.redis_rights import check_rights
from empq.hub.redis_url import redact
from empq.hub.resp import RedisConnectionError, RespClient, RespSubscriber
from empq.hub.store import SCRIPTS, JobStore
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State

from empq import protocol

log = logging.getLogger("empq.hub")

MAX_PIPELINED = 64  # PIPELINABLE dispatches in flight per connection before reading waits


class WebSocketsLink:
    """A ``Link`` over a python-websockets connection. Frames are framed here (``framed``: a
    header from a table before the bytes, which a fan-out shares among its recipients) and
    written with one ``transport.write``; websockets' protocol object keeps the handshake, the
    peer's frames, pings and closes. Server frames are unmasked and, without extensions
    (compression is off), are exactly these bytes."""

    __slots__ = ("peer", "ws")

    def __init__(self, ws: ServerConnection) -> None:
        self.ws = ws
        self.peer = _peer(ws.remote_address)
        assert not ws.protocol.extensions, "no extension (compression) is negotiated"

    def writable(self) -> bool:
        return self.ws.protocol.state is State.OPEN

    def buffered(self) -> int:
        return int(self.ws.transport.get_write_buffer_size())

    def write_frames(self, frames: list[bytes]) -> None:
        self.ws.transport.write(framed(frames))

    def abort(self) -> None:
        self.ws.transport.abort()

    def close(self, code: int, reason: str) -> None:
        asyncio.get_running_loop().create_task(self.ws.close(code, reason))


class Listening(Protocol):
    """A listening WebSocket endpoint of either I/O layer."""

    @property
    def sockets(self) -> Any: ...  # the listening sockets (the port is read from the first)

    async def shutdown(self) -> None: ...  # stop listening, close every connection (1001), wait


class WebSocketsListening:
    def __init__(self, server: Server) -> None:
        self.server = server

    @property
    def sockets(self) -> Any:
        return self.server.sockets

    async def shutdown(self) -> None:
        self.server.close(close_connections=True)
        await self.server.wait_closed()


def _peer(address: Any) -> str:
    try:
        host, port = address[:2]
        return f"{host}:{port}"
    except (TypeError, ValueError):
        return "?"


class HubServer:
    """Owns the Redis connection (embedded server if no URL), the core and the WebSocket server."""

    def __init__(self, config: HubConfig) -> None:
        self.config = config
        self.embedded: EmbeddedRedis | None = None
        self.redis: RespClient | None = None
        self.core: HubCore | None = None
        self.outbox = WebSocketOutbox(config.max_outbound_buffer)
        self.server: Listening | None = None
        self.subscriber: RespSubscriber | None = None
        self._resyncs: set[asyncio.Task[int]] = set()
        self._ticker: asyncio.Task[None] | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self.http: Any = None  # empq.hub.http.HttpApi when the HTTP API is on
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
            url = self.embedded.start()  # on this thread: a signal during start cannot orphan it
        self.redis = RespClient(url, slot_key=self.config.key_prefix, wait=self.config.redis_wait)
        try:
            await check_rights(self.redis, self.config.key_prefix)
            info = await self.redis.execute("INFO", "server")
        except (OSError, RedisConnectionError) as exc:
            raise RuntimeError(f"cannot reach Redis: {exc}") from exc
        version = next(
            (line.split(":", 1)[1] for line in info.splitlines() if line.startswith("redis_version:")), "?"
        )
        where = f", data in {self.embedded.data_dir}" if self.embedded else ""
        kind = f"{'embedded ' if self.embedded else ''}redis-server {version}{where}"
        self.redis_description = f"{redact(url)} ({kind})"
        batch = RedisBatch(self.redis, SCRIPTS)
        await batch.load_scripts()
        store = JobStore(batch, self.config.key_prefix)
        await store.refresh_classes()
        self.core = HubCore(self.config, store, self.outbox)
        if self.core.auth.open:
            log.warning(
                "NO AUTH TOKENS CONFIGURED: open dev mode, anyone who can connect may register as anything"
            )
        self.subscriber = RespSubscriber(
            self.redis, self.core.fanout.channel, self.core.fanout.on_bus, self._bus_resubscribed
        )
        self.subscriber.start()
        await asyncio.wait_for(self.subscriber.ready.wait(), 5)
        await self.core.tick()  # announce this hub and learn about the others before serving
        await self.core.fanout.hello()  # the others send this hub their job events from now on
        try:
            self.server = await self._listen()
        except OSError as exc:
            raise RuntimeError(
                f"cannot listen on {self.config.host}:{self.config.ws_port}: {exc.strerror}"
            ) from exc
        await self._start_http()
        self._ticker = asyncio.get_running_loop().create_task(self._tick_forever())
        if self.embedded is not None:
            self._supervisor = asyncio.get_running_loop().create_task(self._supervise_redis())

    async def _listen(self) -> Listening:
        """The WebSocket endpoint on the I/O layer ``config.transport`` names."""
        config = self.config
        if config.transport == "picows":
            from empq.hub.transport_picows import serve_picows

            return await serve_picows(self, self._tls())
        server = await serve(
            self._handle,
            config.host,
            config.ws_port,
            max_size=config.max_message_size,
            compression=None,
            max_queue=64,
            ssl=self._tls(),
            reuse_port=config.reuse_port or None,
        )
        return WebSocketsListening(server)

    async def _start_http(self) -> None:
        """The HTTP API (REST, /metrics, dashboard) on the same core; every frame the core sends
        now goes through the metered outbox."""
        from empq.hub.http import HttpApi
        from empq.hub.metrics import MeteredOutbox

        assert self.core is not None
        outbox = MeteredOutbox(self.outbox, self.core.metrics)
        self.core.outbox = outbox
        if self.config.http_port < 0:
            return
        http = HttpApi(self.core, outbox, self.port, bool(self.config.tls_cert))
        try:
            await http.serve(self.config.host, self.config.http_port)
        except OSError as exc:
            log.error(
                "HTTP API off: cannot listen on %s:%d: %s",
                self.config.host,
                self.config.http_port,
                exc.strerror,
            )
            return
        self.http = http

    def _tls(self) -> ssl.SSLContext | None:
        if not (self.config.tls_cert or self.config.tls_key):
            return None
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.config.tls_cert, self.config.tls_key)
        return context

    def _bus_resubscribed(self) -> None:
        """The bus connection came back (e.g. after a Redis restart): job events published while it
        was down are lost; clients waiting on jobs that ended meanwhile get their final message."""
        if self.core is not None:
            task = asyncio.get_running_loop().create_task(self.core.jobs.resync_finals("bus re-subscribed"))
            self._resyncs.add(task)
            task.add_done_callback(self._resyncs.discard)

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(next(iter(self.server.sockets)).getsockname()[1])

    async def _handle(self, ws: ServerConnection) -> None:
        core = self.core
        assert core is not None
        if core.full():  # D19: too many connections that have not registered yet
            await ws.close(1013, "too many unregistered connections, try again later")
            return
        conn_id = core.new_conn_id()
        link = WebSocketsLink(ws)
        self.outbox.attach(conn_id, link)
        request = ws.request
        token = handshake_token(request.path, request.headers.get("Authorization")) if request else None
        core.connect(conn_id, token, link.peer)
        # dispatches of PIPELINABLE frames still running, oldest first; any other frame waits for them
        running: collections.deque[asyncio.Task[None]] = collections.deque()
        try:
            while True:
                frame = await ws.recv(decode=False)
                if len(frame) > self.config.max_unregistered_frame and core.unregistered_conn(conn_id):
                    # D19: an unknown peer's big frame is not even parsed, nor kept: closed at once
                    await ws.close(1009, "frame too big before registration")
                    break
                admitted = core.admit(conn_id, frame)
                if admitted is None:
                    continue
                session, accepted = admitted
                while running and running[0].done():
                    running.popleft()
                if accepted.message.type in PIPELINABLE:
                    running.append(asyncio.get_running_loop().create_task(core.dispatch(session, accepted)))
                    if len(running) > MAX_PIPELINED:
                        await running.popleft()
                    continue
                while running:
                    await running.popleft()
                await core.dispatch(session, accepted)
        except ConnectionClosed:
            pass
        finally:
            if running:
                await asyncio.gather(*running, return_exceptions=True)
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

    async def _supervise_redis(self, every: float = 0.5) -> None:
        """The embedded redis-server is restarted if it dies (on the same data dir: its AOF
        brings the jobs back); meanwhile the hub answers SERVICE_UNAVAILABLE, then carries on."""
        embedded = self.embedded
        assert embedded is not None
        while True:
            await asyncio.sleep(every)
            try:
                if await asyncio.to_thread(embedded.alive):
                    continue
                await asyncio.to_thread(embedded.restart)
                log.warning("embedded redis-server is back on %s", embedded.url)
            except Exception:  # keep supervising whatever happens
                log.exception("could not restart the embedded redis-server; trying again")

    async def stop(self, reason: str = "Server shutdown", downtime: float = 5.0) -> None:
        """Tell every peer (server_disconnect), stop accepting, close, let Redis writes finish."""
        if self._supervisor is not None:
            self._supervisor.cancel()
        if self._ticker is not None:
            self._ticker.cancel()
        if self.core is not None:
            await self.core.webhooks.stop()
        if self.http is not None:
            await self.http.stop()
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
            self.outbox.flush()
            await self.server.shutdown()
        if self.core is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(
                    self.core.fleet.hub_gone(self.core.hub_id), 2
                )  # also waits for writes before it
        if self.subscriber is not None:
            await self.subscriber.stop()
        if self.core is not None:
            batch = self.core.store.batch
            log.info("redis: %d commands in %d batches", batch.sent, batch.batches)
        await self.aclose_redis()

    async def aclose_redis(self) -> None:
        if self.redis is not None:
            await self.redis.close()
            self.redis = None
        if self.embedded is not None:
            self.embedded.stop()
            self.embedded = None


def tune_gc() -> None:
    """Rarer garbage collections: each connection keeps ~80 objects alive, so with 10,000 workers
    a full collection walks ~800k objects and stalls the loop for about a second; at the default
    thresholds that came every ~7 s under heartbeats alone (bench/idle_workers.py). Fewer young
    collections promote far fewer in-flight objects, so full ones come minutes apart. What start-up
    made (modules, models) lives as long as the process: frozen, never walked again."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


async def run_hub(config: HubConfig, ready: Any = None) -> None:
    """Run until SIGTERM/SIGINT; ``ready`` (optional callable) is called with the server once listening.

    A signal during start-up cancels the start, which stops whatever it had started (Redis)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    server = HubServer(config)
    starting = asyncio.current_task()

    def on_signal() -> None:
        if not stop.is_set() and server.server is None and starting is not None:
            starting.cancel()
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, on_signal)
    try:
        await server.start()
    except asyncio.CancelledError:
        log.info("stopped while starting")
        return
    core = server.core
    assert core is not None
    scheme = "wss" if config.tls_cert else "ws"
    log.info(
        "empq hub %s listening on %s://%s:%d",
        core.hub_id,
        scheme,
        config.host,
        server.port,
        extra={"event": "started", "hub_id": core.hub_id, "port": server.port},
    )
    log.info("using Redis at %s", server.redis_description)
    if server.http is not None:
        log.info("HTTP API, /metrics and dashboard on http://%s:%d/", config.host, server.http.port)
    tokens = len(core.auth.tokens)
    auth = f"{tokens} token(s)" + (f" from {config.auth_file}" if config.auth_file else "")
    log.info(
        "settings: %s; claim timeout %g s, heartbeat %g s (lost after %g s, grace %g s), retries %d, "
        "retention %s, frames up to %d MB%s",
        auth if tokens else "open dev mode",
        config.claim_timeout_ms / 1000,
        config.heartbeat_interval_ms / 1000,
        config.heartbeat_timeout_ms / 1000,
        config.reconnect_grace_ms / 1000,
        config.default_max_retries,
        f"{config.job_retention_s / 86400:g} days" if config.job_retention_s else "forever",
        config.max_message_size // (1024 * 1024),
        f"; submit rate {config.submit_rate:g}/s" if config.submit_rate else "",
    )
    tune_gc()
    if ready is not None:
        ready(server)
    try:
        await stop.wait()
        log.info("shutting down: telling %d connection(s)", len(core.sessions), extra={"event": "stopping"})
    finally:
        await server.stop()
        log.info("empq hub %s stopped after %.0f s", core.hub_id, (now_ms() - core.started) / 1000,
                 extra={"event": "stopped", "hub_id": core.hub_id})  # fmt: skip
