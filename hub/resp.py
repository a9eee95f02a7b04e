"""A small pipelining Redis client: one connection, commands written in batches, replies
matched to callers in order.

redis-py spends tens of microseconds of Python per command on packing, connection-pool and
response-callback bookkeeping; the hub sends every job transition as one EVALSHA, so that cost
was a third of the hub's CPU.  Here a batch of commands is encoded into one buffer and written
with one call, and replies are parsed by hiredis as they arrive.  Redis answers in order, so a
FIFO of futures is all the bookkeeping there is.  A lost connection fails the waiting callers
and is re-opened on the next call.

Where that connection goes (``redis_url`` parses the URL): one Redis over TCP, TLS or a unix
socket; the primary the Sentinels name (asked again at every reconnect); or, in a Redis
Cluster (detected at the first connect when the client is given its keys' prefix), the node
that owns the slot of the prefix's hash tag — the hub's keys all live in that one slot, so one
connection still carries every call.  Only these last two modes are "routed": their
connection also keeps each command until its reply, so a command Redis did not run
(``MOVED``, ``ASK``, ``TRYAGAIN``, ``CLUSTERDOWN``, ``READONLY``, ``LOADING``) is sent again
where it belongs; nothing else is sent until those are through, so the calls keep their
order.  A plain connection keeps only its futures, as before.

With ``wait=(replicas, timeout_ms)`` every batch ends with ``WAIT``; its callers get their
replies only once that many replicas have the batch's writes (``RedisNotReplicated`` if not).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ssl
from collections.abc import Callable, Iterable
from typing import Any

from empq.hub.redis_url import RedisUrl, key_slot, parse_redis_url
from empq.hub.resp_pubsub import RespSubscriber
from empq.hub.resp_routing import Routing
from empq.hub.resp_wire import (
    REDIRECT_BUDGET_S,
    REDIRECTS,
    Address,
    RedisConfigError,
    RedisConnectionError,
    RedisNotReplicated,
    RedisReplyError,
    _fail,
    _Protocol,
    _refusal,
    _release,
    _RoutedProtocol,
    encode_command,
    encode_command_py,
)

__all__ = [
    "REDIRECTS",
    "REDIRECT_BUDGET_S",
    "Address",
    "RedisConfigError",
    "RedisConnectionError",
    "RedisNotReplicated",
    "RedisReplyError",
    "RespClient",
    "RespSubscriber",
    "encode_command",
    "encode_command_py",
]


class RespClient(Routing):
    """``await client.execute(*args)`` or, for a batch, ``client.send_many([...])`` -> futures.

    ``slot_key``: the prefix of every key the caller uses (one hash tag); given, the client
    detects a Redis Cluster and talks to the owner of that slot.  ``wait``: (replicas,
    timeout ms) for ``WAIT`` after every batch."""

    def __init__(
        self,
        url: str | RedisUrl,
        connect_timeout: float | None = None,
        slot_key: str | None = None,
        wait: tuple[int, int] | None = None,
    ) -> None:
        self.target = url if isinstance(url, RedisUrl) else parse_redis_url(url)
        self.url = self.target.url
        self.connect_timeout = connect_timeout or self.target.connect_timeout
        self.slot_key = slot_key
        self.slot = key_slot(f"{slot_key}:") if slot_key is not None else None
        self.wait = wait if wait and wait[0] > 0 else None
        # 'direct' | 'sentinel' | 'cluster'; None until the first connect tells (TCP with a slot key)
        self.mode: str | None = "sentinel" if self.target.sentinel else None
        if self.mode is None and (self.target.unix or slot_key is None):
            self.mode = "direct"
        self.address: Address | None = None  # where the command connection is
        self.nodes: list[Address] = list(self.target.hosts)  # cluster: seeds, then every node seen
        self._protocol: _Protocol | None = None
        self._connecting: asyncio.Lock | None = None
        # routed mode, while commands Redis did not run are sent again: (command, future, error)
        self._redo: list[tuple[tuple[Any, ...], asyncio.Future[Any], str]] = []
        self._held: list[tuple[list[tuple[Any, ...]], list[asyncio.Future[Any]]]] | None = None
        self._resume_task: asyncio.Task[None] | None = None
        self.redirects: collections.Counter[str] = collections.Counter()  # replies sent again, by kind

    @property
    def routed(self) -> bool:
        return self.mode in ("sentinel", "cluster")

    def where(self, address: Address | None = None) -> str:
        address = address or self.address
        if address is None or (self.mode != "sentinel" and address in self.target.hosts):
            return self.target.redacted()  # the URL as given (no password)
        return f"{address[0]}:{address[1]}"

    # connections -----------------------------------------------------------------------------
    async def connect(self) -> None:
        async with self._lock():
            if self._protocol is not None and self._protocol.lost is None:
                return
            self._protocol = await self._open_command_connection()

    def _lock(self) -> asyncio.Lock:
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        return self._connecting

    async def _open_command_connection(self) -> _Protocol:
        if self.mode is None:  # first connect over TCP with a slot key: a cluster node?
            protocol = await self._open_any(self.nodes, _Protocol)
            await self._detect_cluster(protocol)
            if self.mode == "direct":
                return protocol
            protocol.transport.close()  # type: ignore[union-attr]
        if self.mode == "direct":
            return await self._open_any(self.target.hosts or [None], _Protocol)
        routed = lambda: _RoutedProtocol(self)  # noqa: E731
        if self.mode == "sentinel":
            return await self._open_any([await self._sentinel_primary()], routed)
        if self.address is not None:  # the slot's owner as last known, else ask the cluster
            with contextlib.suppress(RedisConnectionError):
                return await self._open_any([self.address], routed)
        return await self._open_any([await self._cluster_owner(exclude=self.address)], routed)

    async def locate(self) -> list[Address | None]:
        """Where a new connection may go: the URL's hosts, the primary the Sentinels name, or the
        slot's owner and then any other node of the cluster (pub/sub is cluster-wide)."""
        if self.mode == "sentinel":
            return [await self._sentinel_primary()]
        if self.mode == "cluster":
            first: list[Address | None] = [self.address] if self.address else []
            return first + [n for n in self.nodes if n != self.address]
        if self.target.unix:
            return [None]
        return list(self.target.hosts)

    async def _open_any(
        self, addresses: Iterable[Address | None], factory: Callable[[], _Protocol]
    ) -> _Protocol:
        errors: list[RedisConnectionError] = []
        for address in addresses:
            try:
                protocol = await self._open(address, factory, check_primary=self.mode == "sentinel")
            except RedisConnectionError as exc:
                errors.append(exc)
                continue
            self.address = address
            return protocol
        if len(errors) == 1:
            raise errors[0]
        raise RedisConnectionError("; ".join(str(e) for e in errors) or "no Redis address to connect to")

    async def _transport(
        self, address: Address | None, factory: Callable[[], asyncio.Protocol]
    ) -> tuple[asyncio.BaseTransport, asyncio.Protocol]:
        loop = asyncio.get_running_loop()
        where = self.where(address) if address else f"unix:{self.target.path}"
        context = self.target.ssl_context()
        try:
            if address is None:
                coro = loop.create_unix_connection(factory, self.target.path)
            elif context is not None:
                coro = loop.create_connection(
                    factory,
                    address[0],
                    address[1],
                    ssl=context,
                    server_hostname=address[0],
                    ssl_handshake_timeout=self.connect_timeout,
                )
            else:
                coro = loop.create_connection(factory, address[0], address[1])
            return await asyncio.wait_for(coro, self.connect_timeout)
        except ssl.SSLCertVerificationError as exc:
            raise RedisConnectionError(
                f"TLS: the certificate of Redis at {where} is not trusted ({exc.verify_message}): "
                "ssl_ca_certs in the URL must name the CA that signed it"
            ) from exc
        except ssl.SSLError as exc:
            raise RedisConnectionError(
                f"TLS handshake with Redis at {where} failed ({exc.reason or exc}): is TLS enabled on that "
                "port (tls-port)? Does the server want a client certificate (ssl_certfile, ssl_keyfile)?"
            ) from exc
        except (OSError, TimeoutError) as exc:
            raise RedisConnectionError(f"cannot connect to Redis at {where}: {exc or 'timed out'}") from exc

    async def _open(
        self,
        address: Address | None,
        factory: Callable[[], _Protocol],
        check_primary: bool = False,
        auth: tuple[str, ...] | None | bool = True,
        db: bool = True,
    ) -> _Protocol:
        """A connection to ``address`` (None: the unix socket), authenticated, on the URL's db;
        with ``check_primary`` it must be a primary (after a failover the old one may be back
        as a replica)."""
        transport, proto = await self._transport(address, factory)
        protocol: _Protocol = proto  # type: ignore[assignment]
        protocol.transport = transport  # type: ignore[assignment]  # uvloop may call connection_made later
        protocol.address = address
        setup: list[tuple[Any, ...]] = []
        command = self.target.auth_command() if auth is True else auth or None
        if command:
            setup.append(command)
        if db and self.target.db:
            setup.append(("SELECT", self.target.db))
        setup.append(("INFO", "replication") if check_primary else ("PING",))
        where = self.where(address) if address else f"unix:{self.target.path}"
        try:
            replies = await asyncio.wait_for(asyncio.gather(*protocol.call(setup)), self.connect_timeout)
        except RedisReplyError as exc:
            transport.close()
            raise RedisConnectionError(f"Redis at {where} {_refusal(setup, exc)}") from exc
        except (RedisConnectionError, TimeoutError) as exc:
            transport.close()
            if self.target.tls is None:
                hint = " (a TLS port? then use rediss://)"
            elif self.target.tls.certfile is None:
                hint = " (does it want a client certificate? ssl_certfile, ssl_keyfile)"
            else:
                hint = ""
            raise RedisConnectionError(
                f"Redis at {where} did not answer{hint}: {exc or 'timed out'}"
            ) from exc
        if check_primary and "role:master" not in replies[-1]:
            transport.close()
            raise RedisConnectionError(f"Redis at {where} is not a primary (yet): a failover is in progress")
        return protocol

    # sending -----------------------------------------------------------------------------------
    def _send(
        self, commands: list[tuple[Any, ...]], futures: list[asyncio.Future[Any]] | None = None
    ) -> list[asyncio.Future[Any]]:
        protocol = self._protocol
        assert protocol is not None and protocol.transport is not None
        if futures is None:
            loop = asyncio.get_running_loop()
            futures = [loop.create_future() for _ in commands]
        if protocol.lost is not None:
            for future in futures:
                future.set_exception(protocol.lost)
            return futures
        if self.wait is not None:
            self._write_waited(protocol, commands, futures)
            return futures
        protocol.waiting.extend(futures)
        if protocol.commands is not None:
            protocol.commands.extend(commands)
        protocol.transport.write(b"".join(encode_command(c) for c in commands))
        return futures

    def _write_waited(
        self, protocol: _Protocol, commands: list[tuple[Any, ...]], futures: list[asyncio.Future[Any]]
    ) -> None:
        """The commands, then ``WAIT``: each caller's future is settled once WAIT answered."""
        assert self.wait is not None and protocol.transport is not None
        loop = asyncio.get_running_loop()
        inner = [loop.create_future() for _ in commands]
        waited: asyncio.Future[Any] = loop.create_future()
        replicas, timeout_ms = self.wait
        protocol.waiting.extend(inner)
        protocol.waiting.append(waited)
        if protocol.commands is not None:
            protocol.commands.extend(commands)
            protocol.commands.append(None)
        wait = ("WAIT", replicas, timeout_ms)
        protocol.transport.write(b"".join(encode_command(c) for c in (*commands, wait)))
        waited.add_done_callback(lambda w: _release(inner, futures, replicas, timeout_ms, w))

    @property
    def connected(self) -> bool:
        return self._protocol is not None and self._protocol.lost is None

    async def send_many(
        self, commands: list[tuple[Any, ...]], futures: list[asyncio.Future[Any]] | None = None
    ) -> list[asyncio.Future[Any]]:
        """Write the commands in one buffer; each future gets its reply (or the error)."""
        if self._held is None and not self.connected:
            await self.connect()
        if self._held is not None:
            if futures is None:
                loop = asyncio.get_running_loop()
                futures = [loop.create_future() for _ in commands]
            self._held.append((commands, futures))
            return futures
        return self._send(commands, futures)

    def send_now(self, commands: list[tuple[Any, ...]], futures: list[asyncio.Future[Any]]) -> bool:
        """Like ``send_many`` without awaiting: False (nothing sent) when not connected."""
        if self._held is not None:  # commands are being sent again elsewhere: these go after them
            self._held.append((commands, futures))
            return True
        if not self.connected:
            return False
        self._send(commands, futures)
        return True

    async def execute(self, *args: Any) -> Any:
        (future,) = await self.send_many([args])
        return await future

    async def close(self) -> None:
        protocol, self._protocol = self._protocol, None
        if protocol is not None and protocol.transport is not None:
            protocol.transport.close()
        task, self._resume_task = self._resume_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        closed = RedisConnectionError("the Redis client was closed")
        redo, self._redo = self._redo, []
        held, self._held = self._held or [], None
        _fail([f for _, f, _ in redo], closed)
        for _, futures in held:
            _fail(futures, closed)

    # pub/sub -----------------------------------------------------------------------------------
    async def open_connection(self, factory: Callable[[], asyncio.Protocol]) -> asyncio.BaseTransport:
        """A new connection with ``factory``'s protocol, where the command connection would go (for
        pub/sub); the caller authenticates (``auth_command``)."""
        errors = []
        for address in await self.locate():
            try:
                transport, _ = await self._transport(address, factory)
                return transport
            except RedisConnectionError as exc:
                errors.append(str(exc))
        raise RedisConnectionError("; ".join(errors))
