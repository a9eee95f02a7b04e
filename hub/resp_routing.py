"""The routed modes of ``resp.RespClient``: where the primary is (Sentinel), which node owns
the hub's slot (Cluster), and the commands Redis did not run (``MOVED``, ``ASK``, ``TRYAGAIN``,
``CLUSTERDOWN``, ``READONLY``, ``LOADING``, ``MASTERDOWN``) sent again where they belong, in
order, for up to ``REDIRECT_BUDGET_S``."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from empq.hub.redis_url import prefix_slot_tag
from empq.hub.resp_wire import (
    REDIRECT_BUDGET_S,
    Address,
    RedisConfigError,
    RedisConnectionError,
    RedisReplyError,
    _fail,
    _marker,
    _Protocol,
    _RoutedProtocol,
    encode_command,
)

if TYPE_CHECKING:
    import collections
    from collections.abc import Callable

    from empq.hub.redis_url import RedisUrl

log = logging.getLogger("empq.hub.redis")


class Routing:
    """Mixed into ``RespClient``: the state it keeps and the methods of it these use."""

    target: RedisUrl
    connect_timeout: float
    slot: int | None
    slot_key: str | None
    wait: tuple[int, int] | None
    mode: str | None
    address: Address | None
    nodes: list[Address]
    redirects: collections.Counter[str]
    _protocol: _Protocol | None
    _redo: list[tuple[tuple[Any, ...], asyncio.Future[Any], str]]
    _held: list[tuple[list[tuple[Any, ...]], list[asyncio.Future[Any]]]] | None
    _resume_task: asyncio.Task[None] | None

    if TYPE_CHECKING:  # defined by RespClient

        def where(self, address: Address | None = None) -> str: ...
        def _lock(self) -> asyncio.Lock: ...
        async def _open(
            self,
            address: Address | None,
            factory: Callable[[], _Protocol],
            check_primary: bool = False,
            auth: tuple[str, ...] | None | bool = True,
            db: bool = True,
        ) -> _Protocol: ...
        async def _open_command_connection(self) -> _Protocol: ...
        def _send(
            self, commands: list[tuple[Any, ...]], futures: list[asyncio.Future[Any]] | None = None
        ) -> list[asyncio.Future[Any]]: ...
        def _write_waited(
            self, protocol: _Protocol, commands: list[tuple[Any, ...]], futures: list[asyncio.Future[Any]]
        ) -> None: ...
        @property
        def connected(self) -> bool: ...

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
