"""Batch Redis commands per event-loop tick.

Every handler awaits its own Redis call, but calls issued in the same tick (by many
connections) go out together in one pipeline: one round trip and one syscall pair for the whole
batch.  Under load the batches grow while the previous ones are in flight, so throughput rises
with concurrency instead of paying one round trip per command.  Lua scripts are loaded once at
start (and again after a Redis restart, on NOSCRIPT) and called with EVALSHA.
"""

from __future__ import annotations

import asyncio
from importlib import resources
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError, ResponseError

MAX_IN_FLIGHT = 2  # pipelines under way at once; more calls wait and join the next batch
MAX_BATCH = 512


def load_lua(name: str) -> str:
    return resources.files("empq.hub").joinpath("lua", f"{name}.lua").read_text(encoding="utf-8")


class RedisBatch:
    def __init__(self, client: aioredis.Redis, scripts: tuple[str, ...]) -> None:
        self.client = client
        self.names = scripts
        self.sources = {name: load_lua(name) for name in scripts}
        self.shas: dict[str, str] = {}
        self._pending: list[tuple[tuple[Any, ...], asyncio.Future[Any]]] = []
        self._scheduled = False
        self._in_flight = 0

    async def load_scripts(self) -> None:
        for name, source in self.sources.items():
            self.shas[name] = await self.client.script_load(source)

    def script(self, name: str, keys: list[str], args: list[Any]) -> asyncio.Future[Any]:
        return self.command("EVALSHA", self.shas[name], len(keys), *keys, *args)

    def command(self, *args: Any) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._pending.append((args, future))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return future

    def _flush(self) -> None:
        self._scheduled = False
        while self._pending and self._in_flight < MAX_IN_FLIGHT:
            batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
            self._in_flight += 1
            asyncio.get_running_loop().create_task(self._run(batch))

    async def _run(self, batch: list[tuple[tuple[Any, ...], asyncio.Future[Any]]]) -> None:
        try:
            results = await self._execute([args for args, _ in batch])
        except Exception as exc:  # connection lost, timeout: every caller gets the error
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
        else:
            retry = []
            for (args, future), result in zip(batch, results, strict=True):
                if isinstance(result, NoScriptError):
                    retry.append((args, future))
                elif isinstance(result, Exception):
                    future.set_exception(result)
                else:
                    future.set_result(result)
            if retry:
                await self._rerun_after_reload(retry)
        finally:
            self._in_flight -= 1
            if self._pending and not self._scheduled:
                self._scheduled = True
                asyncio.get_running_loop().call_soon(self._flush)

    async def _execute(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        pipe = self.client.pipeline(transaction=False)
        for args in commands:
            pipe.execute_command(*args)
        return list(await pipe.execute(raise_on_error=False))

    async def _rerun_after_reload(self, items: list[tuple[tuple[Any, ...], asyncio.Future[Any]]]) -> None:
        """Redis lost its script cache (restart): load the scripts again and repeat those calls."""
        try:
            await self.load_scripts()
            results = await self._execute([args for args, _ in items])
        except Exception as exc:
            for _, future in items:
                future.set_exception(exc)
            return
        for (_, future), result in zip(items, results, strict=True):
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)


__all__ = ["RedisBatch", "ResponseError", "load_lua"]
