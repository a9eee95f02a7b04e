"""Run cases against a hub, several side by side, and turn each into a ``Result``.

Time is bounded everywhere: every step waits at most the step timeout, every case at most its
budget, cleanup at most a couple of seconds.  Cases are independent (each has its own service type,
customer and ids), so up to ``concurrency`` of them run at once.  Their submissions and claims do
not overlap, though: each (the frame sent and the reply awaited) goes through the run's queue lane,
one at a time (the wait for it does not count against the case's budget, nor hold a place among
the ``concurrency``).  New job classes submitted while others claim is where a hub's state is most
fragile (empq's is, see issue 13's report); everything else (connecting, registering, progress,
notifications, pings, bad input) runs side by side.  An ``exclusive`` case runs alone afterwards.

The run's ``Memory`` shortens a wait once the hub has let it pass in vain and never met it (a hub
that never answers ``cancel_job`` costs one step timeout, not one per case), and its ``Findings``
collect what the received frames got wrong, deduplicated.

A failure in a case's precondition (connecting, registering, a job accepted) makes it ``blocked``
by that cause.  INFO cases record behaviour and are never judged: one that cannot record it is
skipped ("not recorded: ..."), never failed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from empq.conformance import causes
from empq.conformance.ctx import Ctx, Options
from empq.conformance.findings import Findings
from empq.conformance.memory import Memory
from empq.conformance.model import (
    Blocked,
    Case,
    CaseFailure,
    CaseSkipped,
    Cause,
    Outcome,
    Result,
    Tier,
)
from empq.conformance.peer import PeerError
from empq.conformance.wire import SuitePeer

FRAME_CHARS = 1500  # a frame longer than this is cut in the wire log
WIRE_HEAD, WIRE_TAIL = 60, 20  # frames kept per peer: the first and the last


@dataclass
class Settings:
    options: Options
    case_budget: float = 8.0  # seconds per case unless the case asks for more
    concurrency: int = 8  # cases run side by side (1: one after the other)
    learn_after: int = 1  # waits in vain (and none met) before a wait is shortened ...
    learned_timeout: float = 0.3  # ... to this many seconds


@dataclass
class RunResult:
    results: list[Result]
    findings: Findings


class Runner:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.memory = Memory(settings.learn_after, settings.learned_timeout)
        self.findings = Findings()
        self.lane = asyncio.Lock()  # held by the one case that submits or claims

    async def run(self, cases: list[Case], on_result: Callable[[Result], None] | None = None) -> list[Result]:
        """Every case's result, in the order of ``cases`` (``on_result`` is called as each ends)."""
        done: dict[str, Result] = {}
        gate = asyncio.Semaphore(max(1, self.settings.concurrency))

        async def one(c: Case) -> None:
            async with gate:
                result = await self.run_case(c, gate)
            done[c.id] = result
            if on_result is not None:
                on_result(result)

        await asyncio.gather(*(one(c) for c in cases if not c.exclusive))
        for c in cases:
            if c.exclusive:
                await one(c)
        return [done[c.id] for c in cases]

    async def run_case(self, c: Case, gate: asyncio.Semaphore | None = None) -> Result:
        s = self.settings
        result = Result(
            id=c.id,
            title=c.title,
            section=c.section,
            tier=c.tier.value,
            outcome=Outcome.PASSED.value,
            duration_ms=0.0,
            reference=c.reference,
            messages=list(c.messages),
        )
        if c.needs_tokens and not s.options.has_tokens:
            result.outcome = Outcome.SKIPPED.value
            result.message = "no tokens given (--client-token / --worker-token / --monitor-token)"
            return result
        budget = c.budget or s.case_budget
        ctx = Ctx(c, s.options, memory=self.memory, findings=self.findings)
        started, wall = time.monotonic(), time.time()
        scope = asyncio.timeout(budget)
        lane = QueueLane(self.lane, scope, gate)
        ctx.lane_guard = lane
        try:
            async with scope:
                await c.fn(ctx)
            result.message = "; ".join(ctx.notes)
        except CaseSkipped as skip:
            result.outcome, result.message = Outcome.SKIPPED.value, skip.reason
        except CaseFailure as failure:
            outcome = Outcome.BLOCKED if isinstance(failure, Blocked) else Outcome.FAILED
            result.outcome, result.message = outcome.value, failure.message
            result.expected, result.received = failure.expected, failure.received
            cause = failure.cause or causes.from_case(c, failure.message)
            if c.hint and not cause.hint and not isinstance(failure, Blocked):
                cause = dataclasses.replace(cause, hint=c.hint)  # the case knows what to fix
            result.cause = cause.to_dict()
        except PeerError as exc:
            result.outcome, result.message = Outcome.FAILED.value, str(exc)
            result.cause = causes.from_case(c, str(exc)).to_dict()
        except TimeoutError as exc:
            if scope.expired():
                result.outcome = Outcome.FAILED.value
                result.message = (
                    f"the case did not finish within its {budget:g} s budget (last step: {ctx.step})"
                )
                result.expected, result.received = (
                    f"the case ends within {budget:g} s",
                    f"still at: {ctx.step}",
                )
                result.cause = causes.out_of_budget(ctx.step).to_dict()
            else:
                self._suite_error(result, c, ctx, exc)
        except (KeyError, TypeError, AttributeError, IndexError) as exc:
            if ctx.seen and not s.options.strict:  # a frame lacked what the case needs: its finding
                first = self.findings.items[sorted(ctx.seen)[0]]
                result.outcome = Outcome.FAILED.value
                result.message = f"a received frame is not as the schemas say ({first.title}): {exc!r}"
                result.cause = Cause(first.key, first.title, first.hint).to_dict()
            else:
                self._suite_error(result, c, ctx, exc)
        except Exception as exc:  # a bug in the case itself
            self._suite_error(result, c, ctx, exc)
        result.duration_ms = (time.monotonic() - started - lane.waited) * 1000  # not the waits for the lane
        if c.tier is Tier.INFO and result.outcome == Outcome.FAILED.value:
            result.outcome, result.cause = Outcome.SKIPPED.value, None  # recorded, never judged
            result.message = f"not recorded: {result.message}"
        result.notes = list(ctx.notes)
        result.findings = sorted(ctx.seen)
        result.wire = wire_log(ctx.peers, wall)
        lane.leave_for_good()
        await ctx.cleanup(graceful=result.outcome == Outcome.PASSED.value)
        return result

    @staticmethod
    def _suite_error(result: Result, c: Case, ctx: Ctx, exc: BaseException) -> None:
        result.outcome = Outcome.ERROR.value
        result.message = f"{type(exc).__name__}: {exc} (while {ctx.step})"
        result.received = traceback.format_exc(limit=-3)
        result.cause = causes.suite_error(c, result.message).to_dict()


class QueueLane:
    """A case's way into the run's queue lane: ``async with`` around a submission or a claim (its
    send and its reply).  Re-entrant within the case, also from its concurrent tasks (its own claims
    may race each other): they share one entry.  While it waits, the case's budget is paused and
    its place among the concurrent cases is given up."""

    def __init__(self, lock: asyncio.Lock, scope: asyncio.Timeout, gate: asyncio.Semaphore | None) -> None:
        self.lock, self.scope, self.gate = lock, scope, gate
        self.depth = 0
        self.held = False
        self.entry: asyncio.Future[None] | None = None
        self.waited = 0.0  # seconds spent waiting for the lane

    async def __aenter__(self) -> None:
        self.depth += 1
        if self.depth == 1:
            self.entry = asyncio.ensure_future(self._acquire())
        assert self.entry is not None
        await asyncio.shield(self.entry)

    async def _acquire(self) -> None:
        loop = asyncio.get_running_loop()
        since = loop.time()
        left = (self.scope.when() or since) - since
        self.scope.reschedule(None)
        if self.gate is not None:
            self.gate.release()
        try:
            await self.lock.acquire()
            self.held = True
        finally:
            if self.gate is not None:
                await self.gate.acquire()
            self.waited += loop.time() - since
            self.scope.reschedule(loop.time() + left)

    async def __aexit__(self, *exc: object) -> None:
        self.depth -= 1
        if self.depth == 0:
            self.leave_for_good()

    def leave_for_good(self) -> None:
        """When the last user is out, and at the case's end however it ended: never keep the lane."""
        self.depth = 0
        if self.held:
            self.held = False
            self.lock.release()


def wire_log(peers: list[SuitePeer], since: float) -> dict[str, list[dict[str, Any]]]:
    """Frames sent and received per peer: time since the case started (ms), direction, frame."""
    out: dict[str, list[dict[str, Any]]] = {}
    for peer in peers:
        entries = [
            {"t_ms": round((e.at - since) * 1000, 1), "dir": e.direction, "frame": _cut(e.frame)}
            for e in peer.wire
        ]
        if len(entries) > WIRE_HEAD + WIRE_TAIL:
            skipped = len(entries) - WIRE_HEAD - WIRE_TAIL
            entries = [
                *entries[:WIRE_HEAD],
                {"t_ms": None, "dir": "...", "frame": f"({skipped} frames left out)"},
                *entries[-WIRE_TAIL:],
            ]
        out[peer.name] = entries
    return out


def _cut(frame: Any) -> Any:
    text = frame if isinstance(frame, str) else json.dumps(frame, default=str)
    if len(text) <= FRAME_CHARS:
        return frame
    return text[:FRAME_CHARS] + f"... ({len(text)} chars)"


def run(
    cases: list[Case], settings: Settings, on_result: Callable[[Result], None] | None = None
) -> RunResult:
    """Run the cases on a fresh event loop; their results in order, and the run's findings."""

    async def go() -> RunResult:
        runner = Runner(settings)
        return RunResult(await runner.run(cases, on_result), runner.findings)

    return asyncio.run(go())


def counts(results: list[Result]) -> dict[str, int]:
    out = {o.value: 0 for o in Outcome}
    for r in results:
        out[r.outcome] += 1
    return out


def exit_code(results: list[Result], fail_on_should: bool = False) -> int:
    """1 when a MUST case failed or was blocked (a SHOULD case too, with ``fail_on_should``), else 0."""
    judged = {"MUST", "SHOULD"} if fail_on_should else {"MUST"}
    bad = {Outcome.FAILED.value, Outcome.BLOCKED.value, Outcome.ERROR.value}
    return 1 if any(r.tier in judged and r.outcome in bad for r in results) else 0
