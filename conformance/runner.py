"""Run cases one after the other against a hub URL and turn each into a ``Result``.

Time is bounded everywhere: every step waits at most the step timeout, every case at most its
budget, cleanup at most a couple of seconds.  A hub that stops answering would still cost a step
timeout per case, so after ``degrade_after`` consecutive cases ended by a timeout the runner
shortens the step timeout (and says so in each result) until a case passes again: a whole run
against a silent or half-working hub ends well under a minute.
"""

from __future__ import annotations

import asyncio
import json
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from empq.conformance.ctx import Ctx, Options
from empq.conformance.model import Case, CaseFailure, CaseSkipped, Outcome, Result, StepTimeout
from empq.conformance.peer import PeerError
from empq.conformance.wire import SuitePeer

FRAME_CHARS = 1500  # a frame longer than this is cut in the wire log
WIRE_HEAD, WIRE_TAIL = 60, 20  # frames kept per peer: the first and the last


@dataclass
class Settings:
    options: Options
    case_budget: float = 8.0  # seconds per case unless the case asks for more
    degrade_after: int = 3  # consecutive timed-out cases before timeouts are shortened
    degraded_timeout: float = 0.25  # step timeout while the hub keeps timing out
    degraded_budget: float = 2.0


class Runner:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.timeouts_in_a_row = 0

    @property
    def degraded(self) -> bool:
        return self.timeouts_in_a_row >= self.settings.degrade_after

    async def run(self, cases: list[Case], on_result: Callable[[Result], None] | None = None) -> list[Result]:
        results = []
        for c in cases:
            result = await self.run_case(c)
            results.append(result)
            if on_result is not None:
                on_result(result)
        return results

    async def run_case(self, c: Case) -> Result:
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
        degraded = self.degraded
        step = s.degraded_timeout if degraded else s.options.timeout
        budget = (
            min(c.budget or s.case_budget, s.degraded_budget) if degraded else (c.budget or s.case_budget)
        )
        ctx = Ctx(c, s.options, step_timeout=step, degraded=degraded)
        started, wall = time.monotonic(), time.time()
        timed_out = False
        scope = asyncio.timeout(budget)
        try:
            async with scope:
                await c.fn(ctx)
            result.message = "; ".join(ctx.notes)
        except CaseSkipped as skip:
            result.outcome, result.message = Outcome.SKIPPED.value, skip.reason
        except CaseFailure as failure:
            result.outcome, result.message = Outcome.FAILED.value, failure.message
            result.expected, result.received = failure.expected, failure.received
            timed_out = isinstance(failure, StepTimeout)
        except PeerError as exc:
            result.outcome, result.message = Outcome.FAILED.value, str(exc)
            timed_out = "within" in str(exc)
        except TimeoutError:
            if not scope.expired():
                raise
            result.outcome = Outcome.FAILED.value
            result.message = f"the case did not finish within its {budget:g} s budget (last step: {ctx.step})"
            result.expected, result.received = f"the case ends within {budget:g} s", f"still at: {ctx.step}"
            timed_out = True
        except Exception as exc:  # a bug in the case itself
            result.outcome = Outcome.ERROR.value
            result.message = f"{type(exc).__name__}: {exc} (while {ctx.step})"
            result.received = traceback.format_exc(limit=-3)
        result.duration_ms = (time.monotonic() - started) * 1000
        if result.outcome == Outcome.FAILED.value and degraded:
            result.message += (
                f" [step timeout shortened to {step:g} s:"
                f" the previous {self.timeouts_in_a_row} cases timed out]"
            )
        if result.outcome == Outcome.PASSED.value:
            self.timeouts_in_a_row = 0
        elif timed_out:
            self.timeouts_in_a_row += 1
        result.notes = list(ctx.notes)
        result.wire = wire_log(ctx.peers, wall)
        await ctx.cleanup()
        return result


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
) -> list[Result]:
    """Run the cases on a fresh event loop; returns their results in order."""
    return asyncio.run(Runner(settings).run(cases, on_result))


def counts(results: list[Result]) -> dict[str, int]:
    out = {o.value: 0 for o in Outcome}
    for r in results:
        out[r.outcome] += 1
    return out


def exit_code(results: list[Result], strict: bool = False) -> int:
    """1 when a MUST case failed (or a SHOULD case, with ``strict``), else 0."""
    judged = {"MUST", "SHOULD"} if strict else {"MUST"}
    bad = {Outcome.FAILED.value, Outcome.ERROR.value}
    return 1 if any(r.tier in judged and r.outcome in bad for r in results) else 0
