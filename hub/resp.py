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
import functools
import logging
import ssl
from collections.abc import Callable, Iterable
from typing import Any

import hiredis
from empq.hub.redis_url import RedisUrl, key_slot, parse_redis_url, prefix_slot_tag

log = logging.getLogger("empq.hub.redis")

Address = tuple[str, int]

# Replies of commands Redis did not run, and that may run elsewhere or a little later.
REDIRECTS = ("MOVED ", "ASK ", "TRYAGAIN", "CLUSTERDOWN", "READONLY", "LOADING", "MASTERDOWN")
REDIRECT_BUDGET_S = 10.0  # a command is sent again for this long, then its caller gets the error


class RedisConnectionError(ConnectionError):
    pass


class RedisNotReplicated(RedisConnectionError):
    """Redis ran the commands, but fewer replicas than asked acknowledged them in time."""


class RedisConfigError(RuntimeError):
    """The settings cannot work with this Redis (e.g. a key prefix without a hash tag on a Cluster)."""


class RedisReplyError(Exception):
    """Redis answered with an error (e.g. NOSCRIPT, WRONGTYPE)."""

    @property
    def noscript(self) -> bool:
        return str(self).startswith("NOSCRIPT")


def _arg(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, bool):
        return b"1" if value else b"0"
    if isinstance(value, (int, float)):
        return repr(value).encode()
    raise TypeError(f"cannot send {type(value).__name__} to Redis")


def encode_command(args: tuple[Any, ...]) -> bytes:
    """RESP encoding of one command: hiredis' C packer (3-4x faster than the Python below, which
    stays for what it refuses: booleans, lists)."""
    try:
        return hiredis.pack_command(args)
    except TypeError:
        return encode_command_py(args)


def encode_command_py(args: tuple[Any, ...] | list[Any]) -> bytes:
    parts = [b"*%d\r\n" % len(args)]
    for value in args:
        data = _arg(value)
        parts.append(b"$%d\r\n%b\r\n" % (len(data), data))
    return b"".join(parts)


class _Protocol(asyncio.Protocol):
    commands: collections.deque[tuple[Any, ...] | None] | None = None  # routed connections only
    blocked = False

    def __init__(self) -> None:
        self.reader = hiredis.Reader(encoding="utf-8", errors="replace")
        self.waiting: collections.deque[asyncio.Future[Any]] = collections.deque()
        self.transport: asyncio.Transport | None = None
        self.lost: Exception | None = None
        self.address: Address | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not an asyncio.Transport

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while True:
            reply = self.reader.gets()
            if reply is False:
                return
            future = self.waiting.popleft()
            if future.done():
                continue
            if isinstance(reply, hiredis.ReplyError):
                future.set_exception(RedisReplyError(str(reply)))
            else:
                future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = RedisConnectionError(f"connection to Redis lost: {exc or 'closed'}")
        while self.waiting:
            future = self.waiting.popleft()
            if not future.done():
                future.set_exception(self.lost)

    def call(self, commands: Iterable[tuple[Any, ...]]) -> list[asyncio.Future[Any]]:
        """Send ``commands`` now (set-up and internal commands: never sent again elsewhere)."""
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        commands = list(commands)
        futures = [loop.create_future() for _ in commands]
        if self.lost is not None:
            for future in futures:
                future.set_exception(self.lost)
            return futures
        self.waiting.extend(futures)
        if self.commands is not None:
            self.commands.extend(None for _ in commands)
        self.transport.write(b"".join(encode_command(c) for c in commands))
        return futures


class _RoutedProtocol(_Protocol):
    """Keeps each command until its reply; hands the ones Redis did not run to the client."""

    commands: collections.deque[tuple[Any, ...] | None]

    def __init__(self, client: RespClient) -> None:
        super().__init__()
        self.client = client
        self.commands = collections.deque()
        self.blocked = False  # a command was redirected: the client sends nothing new here

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while True:
            reply = self.reader.gets()
            if reply is False:
                break
            future = self.waiting.popleft()
            command = self.commands.popleft()
            if future.done():
                continue
            if isinstance(reply, hiredis.ReplyError):
                text = str(reply)
                if command is not None and text.startswith(REDIRECTS):
                    self.blocked = True
                    self.client._redirected(command, future, text)
                else:
                    future.set_exception(RedisReplyError(text))
            else:
                future.set_result(reply)
        if self.blocked and not self.waiting:
            self.client._drained()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.commands.clear()
        if self.blocked:
            self.client._drained()


class RespClient:
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

    # sentinel ----------------------------------------------------------------------------------
    async def _sentinel_primary(self) -> Address:
        """Ask the Sentinels, in the URL's order, where the primary of the service is."""
        errors = []
        for sentinel in self.target.hosts:
            try:
                protocol = await self._open(
                    sentinel, _Protocol, auth=self.target.sentinel_auth_command(), db=False
                )
            except RedisConnectionError as exc:
                errors.append(str(exc))
                continue
            try:
                (reply,) = protocol.call([("SENTINEL", "get-master-addr-by-name", self.target.service)])
                found = await asyncio.wait_for(reply, self.connect_timeout)
            except (RedisReplyError, RedisConnectionError, TimeoutError) as exc:
                errors.append(f"Sentinel {self.where(sentinel)}: {exc}")
                continue
            finally:
                protocol.transport.close()  # type: ignore[union-attr]
            if not found:
                errors.append(f"Sentinel {self.where(sentinel)} knows no service {self.target.service!r}")
                continue
            return str(found[0]), int(found[1])
        raise RedisConnectionError(
            f"no Sentinel named the primary of {self.target.service!r}: {'; '.join(errors)}"
        )

    # cluster -----------------------------------------------------------------------------------
    async def _detect_cluster(self, protocol: _Protocol) -> None:
        (future,) = protocol.call([("CLUSTER", "SLOTS")])
        try:
            slots = await asyncio.wait_for(future, self.connect_timeout)
        except RedisReplyError as exc:
            if "cluster support disabled" not in str(exc):
                log.info(
                    "cannot tell whether %s is a Redis Cluster node (%s): talking to it only",
                    self.where(),
                    exc,
                )
            self.mode = "direct"
            return
        if self.slot_key is None or prefix_slot_tag(self.slot_key) is None:
            raise RedisConfigError(
                f"Redis at {self.where()} is a Redis Cluster node, and the key prefix {self.slot_key!r} has "
                "no hash tag: the hub's keys must share one slot (every script touches several keys); "
                "use a prefix like '{empq}' (see hub/README.md)"
            )
        self.mode = "cluster"
        self.address = self._learn(slots, protocol.address)
        log.info(
            "Redis Cluster: slot %d of prefix %s is served by %s", self.slot, self.slot_key, self.where()
        )

    def _learn(self, slots: list[Any], asked: Address | None) -> Address:
        """The owner of our slot in a CLUSTER SLOTS reply; every node in it becomes a seed."""
        owner = None
        seen: list[Address] = []
        for entry in slots:
            start, end, *nodes = entry
            for i, node in enumerate(nodes):
                host = node[0] if node[0] not in ("", "?") else (asked[0] if asked else "127.0.0.1")
                address = (str(host), int(node[1]))
                seen.append(address)
                if i == 0 and int(start) <= (self.slot or 0) <= int(end):
                    owner = address
        for address in seen:
            if address not in self.nodes:
                self.nodes.append(address)
        if owner is None:
            raise RedisConnectionError(f"no node of the Redis Cluster serves slot {self.slot} (CLUSTERDOWN?)")
        return owner

    async def _cluster_owner(self, exclude: Address | None) -> Address:
        errors = []
        for node in [n for n in self.nodes if n != exclude] + ([exclude] if exclude else []):
            try:
                protocol = await self._open(node, _Protocol, db=False)
            except RedisConnectionError as exc:
                errors.append(str(exc))
                continue
            try:
                (future,) = protocol.call([("CLUSTER", "SLOTS")])
                return self._learn(await asyncio.wait_for(future, self.connect_timeout), node)
            except (RedisReplyError, RedisConnectionError, TimeoutError) as exc:
                errors.append(f"{self.where(node)}: {exc}")
            finally:
                protocol.transport.close()  # type: ignore[union-attr]
        raise RedisConnectionError(
            f"no Redis Cluster node told the owner of slot {self.slot}: {'; '.join(errors)}"
        )

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

    # commands Redis did not run (routed mode) ------------------------------------------------------
    def _redirected(self, command: tuple[Any, ...], future: asyncio.Future[Any], error: str) -> None:
        if self._held is None:
            self._held = []
        self._redo.append((command, future, error))
        self.redirects[error.partition(" ")[0]] += 1

    def _drained(self) -> None:
        """A connection with redirected commands has no reply outstanding: send them again."""
        if self._resume_task is None and self._redo:
            self._resume_task = asyncio.get_running_loop().create_task(self._resume())

    async def _resume(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + REDIRECT_BUDGET_S
        delay = 0.01
        items: list[tuple[tuple[Any, ...], asyncio.Future[Any], str]] = []
        try:
            async with self._lock():
                while self._redo:
                    main = self._protocol
                    if main is not None and main.lost is None and main.waiting:
                        await _marker(main)  # replies of what was in flight come first
                    items, self._redo = [i for i in self._redo if not i[1].done()], []
                    if loop.time() > deadline:
                        for _, future, error in items:
                            future.set_exception(RedisReplyError(error))
                        continue
                    reopen, pause = self._plan(items)
                    if pause:
                        await asyncio.sleep(delay)
                        delay = min(delay * 2, 0.5)
                    if reopen or main is None or main.lost is not None:
                        if main is not None and main.transport is not None:
                            main.transport.close()
                        self._protocol = None
                        self._protocol = await self._open_command_connection()
                    await self._send_again([i for i in items if not i[1].done()])
                    items = []
                if self._protocol is not None:
                    self._protocol.blocked = False
                held, self._held = self._held or [], None
                for commands, futures in held:
                    if self.connected:
                        self._send(commands, futures)
                    else:
                        _fail(futures, RedisConnectionError("connection to Redis lost while redirecting"))
        except asyncio.CancelledError:  # closed: close() fails what is still waiting
            _fail([f for _, f, _ in items], RedisConnectionError("the Redis client was closed"))
            raise
        except Exception as exc:  # e.g. no connection to where the commands belong: callers get the error
            held, self._held = self._held or [], None
            redo, self._redo = items + self._redo, []
            _fail([f for _, f, _ in redo], exc)
            for _, futures in held:
                _fail(futures, exc)
            if not isinstance(exc, RedisConnectionError):
                log.exception("re-sending redirected Redis commands failed")
        finally:
            self._resume_task = None

    def _plan(self, items: list[tuple[tuple[Any, ...], asyncio.Future[Any], str]]) -> tuple[bool, bool]:
        """What the errors say: (open a connection elsewhere, wait a little first)."""
        reopen = pause = False
        for _, future, error in items:
            kind, _, rest = error.partition(" ")
            if kind == "MOVED":
                slot_text, _, where = rest.partition(" ")
                if self.slot is not None and int(slot_text) != self.slot:
                    future.set_exception(
                        RedisReplyError(f"{error} (a key outside the slot of prefix {self.slot_key!r})")
                    )
                    continue
                host, _, port = where.rpartition(":")
                owner = (host or (self.address or ("127.0.0.1", 0))[0], int(port))
                if owner != self.address:
                    log.info("Redis Cluster: slot %s moved to %s:%d", slot_text, *owner)
                    self.address, reopen = owner, True
            elif kind == "READONLY":  # a primary demoted to replica: ask the Sentinels / the cluster again
                reopen = pause = True
                if self.mode == "cluster":
                    self.address = None
            elif kind != "ASK":
                pause = True  # TRYAGAIN, CLUSTERDOWN, LOADING, MASTERDOWN: a little later, same place
        return reopen, pause

    async def _send_again(self, items: list[tuple[tuple[Any, ...], asyncio.Future[Any], str]]) -> None:
        """Send the commands again, in order: ASK ones (with ASKING) to the node named, the others
        on the command connection; each group's replies are in before the next group goes."""
        groups: list[tuple[Address | None, list[tuple[tuple[Any, ...], asyncio.Future[Any]]]]] = []
        for command, future, error in items:
            target = None
            if error.startswith("ASK "):
                host, _, port = error.split(" ")[2].rpartition(":")
                target = (host or (self.address or ("127.0.0.1", 0))[0], int(port))
            if groups and groups[-1][0] == target:
                groups[-1][1].append((command, future))
            else:
                groups.append((target, [(command, future)]))
        for target, group in groups:
            if target is None:
                self._send([c for c, _ in group], [f for _, f in group])
                assert self._protocol is not None
                await _marker(self._protocol)
                continue
            try:
                asked = await self._open(target, lambda: _RoutedProtocol(self), db=False)
            except RedisConnectionError as exc:
                _fail([f for _, f in group], exc)
                continue
            try:
                loop = asyncio.get_running_loop()
                commands: list[tuple[Any, ...]] = []
                futures: list[asyncio.Future[Any]] = []
                for command, future in group:
                    commands += [("ASKING",), command]
                    futures += [loop.create_future(), future]
                if self.wait is not None:
                    self._write_waited(asked, commands, futures)
                else:
                    asked.waiting.extend(futures)
                    assert asked.commands is not None and asked.transport is not None
                    asked.commands.extend(commands)
                    asked.transport.write(b"".join(encode_command(c) for c in commands))
                await _marker(asked)
            finally:
                asked.transport.close()  # type: ignore[union-attr]

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


def _refusal(setup: list[tuple[Any, ...]], exc: Exception) -> str:
    text = str(exc)
    if text.startswith("NOAUTH"):
        return f"requires a password: put user:password@ in the URL ({text})"
    if text.startswith(("WRONGPASS", "ERR invalid password", "ERR AUTH")):
        return f"refused the URL's user name and password ({text})"
    return f"refused {' / '.join(str(c[0]) for c in setup)}: {text}"


async def _marker(protocol: _Protocol) -> None:
    """Wait until every reply sent before now on ``protocol`` is in (a PING answered after them)."""
    (future,) = protocol.call([("PING",)])
    with contextlib.suppress(Exception):
        await future


def _fail(futures: Iterable[asyncio.Future[Any]], exc: BaseException) -> None:
    for future in futures:
        if not future.done():
            future.set_exception(exc)


def _release(
    inner: list[asyncio.Future[Any]],
    outer: list[asyncio.Future[Any]],
    replicas: int,
    timeout_ms: int,
    waited: asyncio.Future[Any],
) -> None:
    if waited.cancelled():
        error: BaseException | None = RedisConnectionError("WAIT was cancelled")
    elif waited.exception() is not None:
        error = waited.exception()
    elif not isinstance(waited.result(), int):
        error = RedisConnectionError(f"WAIT answered {waited.result()!r}")
    elif waited.result() < replicas:
        error = RedisNotReplicated(
            f"written, but acknowledged by {waited.result()} of {replicas} replica(s) within {timeout_ms} ms "
            "(--redis-wait-replicas, --redis-wait-timeout-ms)"
        )
    else:
        error = None
    for i, o in zip(inner, outer, strict=True):
        if i.done():
            _settle(i, o, error)
        else:  # sent again elsewhere (redirected): settled with that batch's own WAIT
            i.add_done_callback(functools.partial(_settle_later, outer=o))


def _settle_later(inner: asyncio.Future[Any], outer: asyncio.Future[Any]) -> None:
    _settle(inner, outer, None)


def _settle(inner: asyncio.Future[Any], outer: asyncio.Future[Any], error: BaseException | None) -> None:
    if outer.done():
        return
    if inner.cancelled():
        outer.cancel()
    elif inner.exception() is not None:
        outer.set_exception(inner.exception())  # type: ignore[arg-type]
    elif error is not None:
        outer.set_exception(error)
    else:
        outer.set_result(inner.result())


class _SubscriberProtocol(asyncio.Protocol):
    def __init__(self, on_message: Any, on_subscribed: Any = None) -> None:
        self.reader = hiredis.Reader()
        self.on_message = on_message
        self.on_subscribed = on_subscribed
        self.transport: asyncio.Transport | None = None
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.error: str | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while True:
            reply = self.reader.gets()
            if reply is False:
                return
            if isinstance(reply, list) and len(reply) == 3 and reply[0] == b"message":
                self.on_message(reply[2])
            elif isinstance(reply, list) and reply and reply[0] == b"subscribe" and self.on_subscribed:
                self.on_subscribed()
            elif isinstance(reply, hiredis.ReplyError):  # AUTH or SUBSCRIBE refused
                self.error = str(reply)
                if self.transport is not None:
                    self.transport.close()
                return

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


def _same(protocol: asyncio.Protocol) -> asyncio.Protocol:
    return protocol


class RespSubscriber:
    """Redis pub/sub on its own connection: ``on_message(data: bytes)`` for every message on
    ``channel``.  Re-subscribes after a lost connection (e.g. a Redis restart or failover), then
    calls ``on_resubscribed()``: what was published in between was lost."""

    def __init__(
        self, client: RespClient, channel: str, on_message: Any, on_resubscribed: Any = None
    ) -> None:
        self.client = client
        self.channel = channel
        self.on_message = on_message
        self.on_resubscribed = on_resubscribed
        self._subscribed_before = False
        self.task: asyncio.Task[None] | None = None
        self.ready = asyncio.Event()

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        c = self.client
        delay = 0.05
        while True:
            transport = None
            try:
                protocol = _SubscriberProtocol(self.on_message, self._subscribed)
                transport = await c.open_connection(functools.partial(_same, protocol))
                auth = c.target.auth_command()
                commands = ([auth] if auth else []) + [("SUBSCRIBE", self.channel)]
                transport.write(b"".join(encode_command(command) for command in commands))  # type: ignore[attr-defined]
                await protocol.closed
                if protocol.error:
                    log.warning("Redis refused the bus subscription to %s: %s", self.channel, protocol.error)
                elif self.ready.is_set():
                    delay = 0.05
            except (OSError, TimeoutError) as exc:
                log.debug("bus subscription: %s", exc)
            finally:
                self.ready.clear()
                if transport is not None:
                    transport.close()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)

    def _subscribed(self) -> None:
        self.ready.set()
        if self._subscribed_before and self.on_resubscribed is not None:
            self.on_resubscribed()
        self._subscribed_before = True

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
