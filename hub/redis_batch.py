"""Batch Redis commands per event-loop tick.

Every handler awaits its own Redis call, but calls issued in the same tick (by many
connections) are written together, pipelined on one connection: one syscall for the batch, and
Redis answers in order.  Lua scripts are loaded once at start (and again after a Redis restart,
on NOSCRIPT) and called with EVALSHA.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from importlib import resources
from typing import Any

from empq.hub.lifecycle import TRANSITIONS, lua_prelude, lua_targets
from empq.hub.resp import RedisReplyError, RespClient


def _lua_file(name: str) -> str:
    return resources.files("empq.hub").joinpath("lua", f"{name}.lua").read_text(encoding="utf-8")


def load_lua(name: str) -> str:
    """A script as loaded into Redis: the rows of the job state table it uses
    (``hub/lifecycle.py``), the shared helpers it uses (``lua/prelude.lua``), then the script.
    Redis runs all of it on every call, so a script carries only what it needs: the helpers it
    names (and the ones those name) and the transitions it names ('event' or TO.event)."""
    script = _lua_file(name)
    helpers = _definitions(_lua_file("prelude"))
    needed: set[str] = set()
    text = script
    while True:
        more = {n for n in helpers if n not in needed and re.search(rf"\b{n}\b", text)}
        if not more:
            break
        needed |= more
        text = script + "".join(helpers[n] for n in needed)
    events = {t.event for t in TRANSITIONS if re.search(rf"'{t.event}'|TO\.{t.event}\b", text)}
    table = lua_prelude(events) if re.search(r"\bmay\(", text) else ""
    return lua_targets(table + "".join(helpers[n] for n in helpers if n in needed) + script)


def _definitions(prelude: str) -> dict[str, str]:
    """The prelude's top-level definitions by name, in order, each with its leading comments."""
    out: dict[str, str] = {}
    for block in re.split(r"\n\n+", prelude):
        found = re.search(r"^local (?:function )?(\w+)", block, re.M)
        if found:
            out[found.group(1)] = block.rstrip("\n") + "\n"
    return out


class RedisBatch:
    def __init__(self, client: RespClient, scripts: tuple[str, ...]) -> None:
        self.client = client
        self.sources = {name: load_lua(name) for name in scripts}
        self.shas: dict[str, str] = {}
        self._commands: list[tuple[Any, ...]] = []
        self._futures: list[asyncio.Future[Any]] = []
        self._later: list[tuple[int, Callable[[], tuple[Any, ...]]]] = []  # (place, build) of this tick
        self._scheduled = False
        self.batches = 0  # counters, for stats and benchmarks
        self.sent = 0

    async def load_scripts(self) -> None:
        for name, source in self.sources.items():
            self.shas[name] = await self.client.execute("SCRIPT", "LOAD", source)

    async def script(self, name: str, keys: list[str], args: list[Any]) -> Any:
        try:
            return await self.command("EVALSHA", self.shas[name], len(keys), *keys, *args)
        except RedisReplyError as exc:
            if not exc.noscript:
                raise
            await self.load_scripts()  # Redis restarted and lost its script cache
            return await self.command("EVALSHA", self.shas[name], len(keys), *keys, *args)

    def evalsha(self, name: str, keys: list[str], args: list[Any]) -> tuple[Any, ...]:
        """The EVALSHA command of a script call."""
        return ("EVALSHA", self.shas[name], len(keys), *keys, *args)

    def later(self, build: Callable[[], tuple[Any, ...]], future: asyncio.Future[Any]) -> None:
        """A command that takes its place in this tick's batch now and is built (``build``) when
        the batch is written: what comes during the rest of the tick can still join it, and it
        runs before whatever is asked for after it. ``future`` gets its reply."""
        self._commands.append(("PING",))  # its place
        self._futures.append(future)
        self._later.append((len(self._commands) - 1, build))
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def command(self, *args: Any) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._commands.append(args)
        self._futures.append(future)
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return future

    def _flush(self) -> None:
        self._scheduled = False
        commands, futures = self._commands, self._futures
        self._commands, self._futures = [], []
        if self._later:
            later, self._later = self._later, []
            for place, build in later:
                commands[place] = build()
        if not commands:
            return
        self.batches += 1
        self.sent += len(commands)
        if not self.client.send_now(commands, futures):
            asyncio.get_running_loop().create_task(self._send_after_connect(commands, futures))

    async def _send_after_connect(
        self, commands: list[tuple[Any, ...]], futures: list[asyncio.Future[Any]]
    ) -> None:
        try:
            await self.client.send_many(commands, futures)
        except Exception as exc:  # cannot reach Redis: every caller gets the error
            for future in futures:
                if not future.done():
                    future.set_exception(exc)
