"""What a conformance case is, how cases are registered, and what a run of one produces.

A case is a small async function ``async def case_fn(ctx: Ctx) -> None`` registered with
``@case(id, section=..., title=..., tier=..., reference=..., messages=(...))``.  Its id is stable
and tied to a section of the protocol reference; ``messages`` names every message type the case
exercises (the coverage test checks that all 44 types of the reference appear somewhere).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from empq.conformance.ctx import Ctx


class Tier(StrEnum):
    MUST = "MUST"  # behaviour the reference documents
    SHOULD = "SHOULD"  # what the reference implies but does not state
    INFO = "INFO"  # behaviour the reference leaves open: recorded, never judged


class Outcome(StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    BLOCKED = "blocked"  # a precondition (connecting, registering, a job accepted) failed first
    SKIPPED = "skipped"
    ERROR = "error"  # the suite itself broke (a bug in a case), not the hub


MUST, SHOULD, INFO = Tier.MUST, Tier.SHOULD, Tier.INFO

CaseFn = Callable[["Ctx"], Awaitable[None]]


@dataclass(frozen=True)
class Case:
    id: str
    section: str
    title: str
    tier: Tier
    reference: str
    messages: tuple[str, ...]
    fn: CaseFn
    budget: float | None = None  # overall seconds for this case (None: the runner's default)
    needs_tokens: bool = False  # skipped unless the run was given role tokens
    exclusive: bool = False  # runs alone, after the cases that run side by side
    hint: str = ""  # what to fix when this case fails on its own assertion


REGISTRY: dict[str, Case] = {}


def case(
    id: str,
    *,
    section: str,
    title: str,
    tier: Tier,
    reference: str,
    messages: Iterable[str],
    budget: float | None = None,
    needs_tokens: bool = False,
    exclusive: bool = False,
    hint: str = "",
) -> Callable[[CaseFn], CaseFn]:
    """Register a conformance case (ids must be unique)."""

    def register(fn: CaseFn) -> CaseFn:
        if id in REGISTRY:
            raise ValueError(f"duplicate conformance case id {id}")
        REGISTRY[id] = Case(
            id=id,
            section=section,
            title=title,
            tier=tier,
            reference=reference.strip(),
            messages=tuple(messages),
            fn=fn,
            budget=budget,
            needs_tokens=needs_tokens,
            exclusive=exclusive,
            hint=" ".join(hint.split()),
        )
        return fn

    return register


def all_cases() -> list[Case]:
    """Every registered case, in registration order (the order of the reference's sections)."""
    import empq.conformance.cases  # noqa: F401  (registers the cases)

    return list(REGISTRY.values())


def select(cases: list[Case], include: list[str] | None, exclude: list[str] | None) -> list[Case]:
    """Cases whose id matches one of ``include`` (all when empty) and none of ``exclude``.

    Patterns are shell globs on the id, case-insensitive; a pattern may hold several, comma-separated.
    """

    def patterns(raw: list[str] | None) -> list[str]:
        return [p.strip().upper() for item in raw or () for p in item.split(",") if p.strip()]

    inc, exc = patterns(include), patterns(exclude)
    chosen = []
    for c in cases:
        cid = c.id.upper()
        if inc and not any(fnmatch.fnmatchcase(cid, p) for p in inc):
            continue
        if any(fnmatch.fnmatchcase(cid, p) for p in exc):
            continue
        chosen.append(c)
    return chosen


@dataclass(frozen=True)
class Cause:
    """Why a case failed, in words shared by every case it hit: failures with the same ``key``
    are one root cause in the reports ("fix these first"), whatever case they happened in."""

    key: str
    title: str
    hint: str = ""

    def to_dict(self) -> dict[str, str]:
        return {"key": self.key, "title": self.title, "hint": self.hint}


class CaseFailure(AssertionError):
    """The hub deviated: what was expected and what was received (and, when known, the cause)."""

    def __init__(
        self, message: str, expected: Any = None, received: Any = None, cause: Cause | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.expected = expected
        self.received = received
        self.cause = cause


class StepTimeout(CaseFailure):
    """Nothing suitable arrived within the step timeout."""


class Blocked(CaseFailure):
    """A precondition of the case failed (it could not connect, register, have a job accepted):
    the case is reported as blocked by that failure's cause, not as one more failure."""

    def __init__(self, failure: CaseFailure, step: str) -> None:
        super().__init__(
            f"blocked while {step}: {failure.message}", failure.expected, failure.received, failure.cause
        )
        self.failure = failure


class CaseSkipped(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class Result:
    id: str
    title: str
    section: str
    tier: str
    outcome: str
    duration_ms: float
    message: str = ""
    expected: Any = None
    received: Any = None
    reference: str = ""
    messages: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    wire: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    cause: dict[str, str] | None = None  # failed or blocked: Cause.to_dict()
    findings: list[str] = field(default_factory=list)  # keys of the run's findings seen in this case

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "section": self.section,
            "tier": self.tier,
            "outcome": self.outcome,
            "duration_ms": round(self.duration_ms, 1),
            "message": self.message,
            "expected": self.expected,
            "received": self.received,
            "reference": self.reference,
            "messages": self.messages,
            "notes": self.notes,
            "cause": self.cause,
            "findings": self.findings,
            "wire": self.wire,
        }
