"""The job state machine (spec D9), as one table.

Every job transition the hub makes is a row of ``TRANSITIONS``: the event, the states it may
start from, the state it leads to. Everything else reads this table: the Lua scripts (their
"may this step start from here?" sets are rendered from it into the shared prelude, see
``lua_prelude``), the job manager (``hub/jobs.py``), stats and metrics (``STATUSES``), and
``tests/hub/test_lifecycle.py`` (against ``schemas/defs/job_status.json``).

    queued ──claim──▶ assigned ──accept──▶ accepted ──progress──▶ in_progress
      ▲                  │  ▲                  │                       │
      │   claim_expired ─┘  └─ (progress, complete, fail, cancel, release: from any held state)
      └── retry / requeue / release ◀──────────┴───────────────────────┘
    held ──complete──▶ completed      held ──fail──▶ failed      running ──time limit──▶ timeout
    queued | held ──cancel──▶ cancelled
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from empq.generated.defs.job_status import JobStatus

STATUSES: tuple[str, ...] = tuple(status.value for status in JobStatus)  # the schema's order

QUEUED, ASSIGNED, ACCEPTED, IN_PROGRESS = "queued", "assigned", "accepted", "in_progress"
COMPLETED, FAILED, CANCELLED, TIMEOUT = "completed", "failed", "cancelled", "timeout"

HELD = frozenset({ASSIGNED, ACCEPTED, IN_PROGRESS})  # a worker holds the job
RUNNING = frozenset({ACCEPTED, IN_PROGRESS})  # its time limit runs
FINAL = frozenset({COMPLETED, FAILED, CANCELLED, TIMEOUT})  # nothing happens to it any more
ACTIVE = HELD  # counted as "active jobs" in system_status
# final states an operator may retry (spec D20): a new job with the same payload, linked both ways;
# the original stays as it ended
RETRYABLE = frozenset({FAILED, CANCELLED, TIMEOUT})


@dataclass(frozen=True)
class Transition:
    event: str
    sources: frozenset[str]
    target: str
    by: str  # who causes it

    def allowed_from(self, status: str) -> bool:
        return status in self.sources


TRANSITIONS: tuple[Transition, ...] = (
    Transition("submit", frozenset(), QUEUED, "client submit_job"),
    Transition("claim", frozenset({QUEUED}), ASSIGNED, "worker claim_job"),
    Transition("accept", frozenset({ASSIGNED}), ACCEPTED, "worker job_accepted_by_worker"),
    Transition("progress", HELD, IN_PROGRESS, "worker update_job_progress"),
    Transition("complete", HELD, COMPLETED, "worker complete_job"),
    Transition("retry", HELD, QUEUED, "worker fail_job with retries left (queued after a delay)"),
    Transition("fail", HELD, FAILED, "worker fail_job without retries left"),
    Transition("cancel", frozenset({QUEUED}) | HELD, CANCELLED, "client or monitor cancel_job"),
    Transition("claim_expired", frozenset({ASSIGNED}), QUEUED, "timer: not accepted within claim_timeout"),
    Transition("time_limit", RUNNING, TIMEOUT, "timer: running past timeout_seconds"),
    Transition("release", HELD, QUEUED, "worker disconnect, or lost with retries left"),
    Transition("lost", HELD, FAILED, "worker lost without retries left"),
)

BY_EVENT: dict[str, Transition] = {t.event: t for t in TRANSITIONS}


def sources(event: str) -> frozenset[str]:
    """The states ``event`` may start from."""
    return BY_EVENT[event].sources


def lua_prelude(events: set[str] | None = None) -> str:
    """``may(event, status)`` in Lua for a script that makes ``events`` (default: all of them):
    true when ``event`` may start from ``status``. Comparisons, not a table: a script runs its
    prelude on every call, and this allocates nothing."""
    rows = [t for t in TRANSITIONS if t.sources and (events is None or t.event in events)]
    lines = ["local function may(event, status)"]
    for t in rows:
        test = " or ".join(f"status == '{s}'" for s in sorted(t.sources))
        lines.append(f"  if event == '{t.event}' then return {test} end")
    lines += ["  return false", "end", ""]
    return "\n".join(lines)


def lua_targets(script: str) -> str:
    """The script with each ``TO.<event>`` written as the state the event leads to, and each
    ``RETRYABLE(x)`` as the comparisons saying that ``x`` is one of ``RETRYABLE`` (D20)."""
    script = re.sub(r"\bTO\.(\w+)", lambda m: f"'{BY_EVENT[m.group(1)].target}'", script)
    return re.sub(
        r"\bRETRYABLE\(([^()]+)\)",
        lambda m: "(" + " or ".join(f"{m.group(1)} == '{s}'" for s in sorted(RETRYABLE)) + ")",
        script,
    )
