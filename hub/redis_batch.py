"""Batch Redis commands per event-loop tick.

Every handler awaits its own Redis call, but calls issued in the same tick (by many
connections) are written together, pipelined on one connection: one syscall for the batch, and
Redis answers in order.  Lua scripts are loaded once at start (and again after a Redis restart,
on NOSCRIPT) and called with EVALSHA.
"""

from __future__ import annotations

import asyncio
from importlib import resources
from typing import Any

from empq.hub.lifecycle import lua_prelude
from empq.hub.resp import RedisReplyError, RespClient


def _lua_file(name: str) -> str:
    return resources.files("empq.hub").joinpath("lua", f"{name}.lua").read_text(encoding="utf-8")


def load_lua(name: str) -> str:
    """A script as loaded into Redis: the job state table (``hub/lifecycle.py``), the shared
    helpers (``lua/prelude.lua``), then the script itself."""
    return lua_prelude() + _lua_file("prelude") + _lua_file(name)


class RedisBatch:
    def __init__(self, client: RespClient, scripts: tuple[str, ...]) -> None:
        self.client = client
        self.sources = {name: load_lua(name) for name in scripts}
        self.shas: dict[str, str] = {}
        self._commands: list[tuple[Any, ...]] = []
        self._futures: list[asyncio.Future[Any]] = []
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
