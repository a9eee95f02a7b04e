"""Progress updates, written per event-loop tick.

``update_job_progress`` is most of what an AI workload sends (tens of updates per job). The
updates that arrive during one tick of the event loop are written together:

* batched: one ``progress`` script call for the updates of every job of the tick. It takes its
  place in the tick's Redis batch when the tick's first update arrives, and is built when the
  batch is written (``RedisBatch.later``): no extra round trip, nothing waits a tick.
* coalesced: of several updates of the same job (a worker that sends faster than the hub reads),
  only the latest is written to Redis and fanned out as a ``job_update``; the fields an earlier
  one set and the latest leaves out (``message``, ``current_step``...) are written with it, so the
  job's hash ends as if each had been written. Every update is still acknowledged (or refused)
  on its own, in order.

Nothing final is ever coalesced: ``complete_job`` and ``fail_job`` are not progress updates. A
worker's other job steps (accept, complete, fail) seal the tick's call for that worker (``seal``):
the call runs in Redis before the step, the updates' job messages go out before its message and
their acks before its reply; an update the worker sends after the step goes in a new call behind
it (a progress update joining a call placed before the worker's own accept would run before the
accept). Updates of other workers still join the call: the order that matters is each
connection's.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from empq.hub.resp import RedisReplyError
from empq.hub.store import Moved, StoreError

if TYPE_CHECKING:
    from empq.hub.core import HubCore

log = logging.getLogger("empq.hub")


class Pending:
    """The update of one job to write this tick: the latest one's values, the fields of all."""

    __slots__ = ("fields", "job_id", "latest", "progress", "worker_id")

    def __init__(self, worker_id: str, job_id: str, progress: float, fields: dict[str, Any]) -> None:
        self.worker_id, self.job_id, self.progress = worker_id, job_id, progress
        self.latest = fields  # what the job_update says: the latest update's own fields
        self.fields = {k: v for k, v in fields.items() if v is not None}  # what Redis gets

    def supersede(self, progress: float, fields: dict[str, Any]) -> None:
        self.progress, self.latest = progress, fields
        self.fields.update((k, v) for k, v in fields.items() if v is not None)


class Reply(asyncio.Future[Any]):
    """The Redis reply to a tick's call. Setting it also answers, in the same step, every other
    update waiting on the call (each on a future of its own: a waiter cancelled cancels only its
    own), so all of them wake before anything asked for after the call (a final step's reply)."""

    def __init__(self) -> None:
        super().__init__()
        self.waiters: list[asyncio.Future[Any]] = []

    def set_result(self, result: Any, /) -> None:
        super().set_result(result)
        for waiter in self.waiters:
            if not waiter.done():
                waiter.set_result(result)

    def set_exception(self, exception: type | BaseException, /) -> None:
        super().set_exception(exception)
        if isinstance(exception, RedisReplyError) and exception.noscript:
            return  # the first update sends the call again, then answers them
        for waiter in self.waiters:
            if not waiter.done():
                waiter.set_exception(exception)


class Tick:
    """The updates of one tick: one script call."""

    __slots__ = ("command", "entries", "reply", "results", "sealed")

    results: dict[tuple[str, str], Moved | StoreError] | None

    def __init__(self) -> None:
        self.entries: dict[tuple[str, str], Pending] = {}
        self.reply = Reply()
        self.command: tuple[Any, ...] = ()  # as written (sent again after a NOSCRIPT)
        self.results = None  # by update, once settled
        self.sealed: set[str] = set()  # workers whose final step came after the call's place


class ProgressWriter:
    def __init__(
        self, hub: HubCore, written: Callable[[Pending, Moved], None], coalesce: bool = True
    ) -> None:
        self.hub = hub
        self.written = written  # fans out the job_update of a written update
        self.coalesce = coalesce
        self.tick: Tick | None = None  # the call updates join now
        self.coalesced = 0  # updates carried by a later one of the same job (counters, for tests)
        self.calls = 0  # progress script calls

    async def update(self, worker_id: str, job_id: str, progress: float, fields: dict[str, Any]) -> Moved:
        """Written with the tick's others, then fanned out: the job's previous status and routing,
        or ``StoreError`` when the worker does not hold the job."""
        key = (worker_id, job_id)
        tick = self.tick
        if tick is not None and worker_id not in tick.sealed:
            entry = tick.entries.get(key)
            if entry is None:
                tick.entries[key] = Pending(worker_id, job_id, progress, fields)
                return await self._wait(tick, key)
            if self.coalesce:
                entry.supersede(progress, fields)
                self.coalesced += 1
                return await self._wait(tick, key)
            self.seal()  # not coalescing: a second update of a job goes in the next call
        self.tick = tick = Tick()
        tick.entries[key] = Pending(worker_id, job_id, progress, fields)
        self.hub.store.batch.later(lambda: self._command(tick), tick.reply)
        try:
            raw = await tick.reply
        except RedisReplyError as exc:
            if not exc.noscript:
                raise
            raw = await self._again(tick)
        return self._result(tick, raw, key)

    def seal(self, worker_id: str = "") -> None:
        """A final step of this worker's (any worker's: none named) comes now: this tick's updates
        are written before it; the worker's later ones go in a call behind it."""
        tick = self.tick
        if tick is not None:
            if worker_id:
                tick.sealed.add(worker_id)
            else:
                self.tick = None

    def _command(self, tick: Tick) -> tuple[Any, ...]:
        """The tick's call, built when the Redis batch is written: no update joins it after."""
        if self.tick is tick:
            self.tick = None
        self.calls += 1
        store = self.hub.store
        updates = [(e.worker_id, e.job_id, e.progress, e.fields) for e in tick.entries.values()]
        tick.command = store.batch.evalsha("progress", *store.progress_call(updates))
        return tick.command

    async def _wait(self, tick: Tick, key: tuple[str, str]) -> Moved:
        waiter: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        tick.reply.waiters.append(waiter)
        return self._result(tick, await waiter, key)

    async def _again(self, tick: Tick) -> Any:
        """Redis lost its scripts (restarted): load them, send the call again, answer the others."""
        batch = self.hub.store.batch
        await batch.load_scripts()
        try:
            raw = await batch.command(*batch.evalsha("progress", [], [])[:2], *tick.command[2:])
        except Exception as exc:
            for waiter in tick.reply.waiters:
                if not waiter.done():
                    waiter.set_exception(exc)
            raise
        for waiter in tick.reply.waiters:
            if not waiter.done():
                waiter.set_result(raw)
        return raw

    def _result(self, tick: Tick, raw: Any, key: tuple[str, str]) -> Moved:
        """This update's move (or refusal, raised); the first to wake fans out every update."""
        if tick.results is None:
            tick.results = dict(zip(tick.entries, self.hub.store.progress_replies(raw), strict=True))
            for entry, result in zip(tick.entries.values(), tick.results.values(), strict=True):
                if isinstance(result, Moved):
                    try:
                        self.written(entry, result)
                    except Exception:  # one job's fan-out failing must not fail the others
                        log.exception("progress of %s: fan-out failed", entry.job_id)
        result = tick.results[key]
        if isinstance(result, StoreError):
            raise result
        return result


__all__ = ["Pending", "ProgressWriter", "Reply", "StoreError", "Tick"]
