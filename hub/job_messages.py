"""Every job event's message, built in one place with the generated models.

The job manager (``jobs.py``) sends them over the WebSocket as each transition happens; webhooks
(``webhooks.py``, spec D21) build the same message later from the facts the transition's Lua
script recorded with the delivery (``lua/prelude.lua``'s ``webhook``): ``from_facts``. Both go
through the functions below, so a webhook's body is the message the WebSocket carries. They are
sent on every step of every job: built as ``protocol.Outgoing`` (the generated class and its
fields, encoded by orjson; validated by the class when the tests run, ``EMPQ_CHECK_FRAMES``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from empq.generated.messages.job_cancelled import JobCancelled
from empq.generated.messages.job_completed import JobCompleted
from empq.generated.messages.job_update import JobUpdate
from empq.hub import lifecycle as states

from empq import protocol
from empq.protocol import Outgoing

PROGRESS_FIELDS = ("message", "current_step", "estimated_completion")  # update_job_progress's extras
ACCEPTED_TEXT = "Job accepted by worker"
TIME_LIMIT_ERROR = "job exceeded its time limit"


def job_update(job_id: str, status: str, previous: str | None = None, **fields: Any) -> Outgoing:
    """A ``job_update``; fields given as None are left out (unset, not null)."""
    if previous is not None:
        fields["previous_status"] = previous
    return protocol.outgoing(
        JobUpdate, job_id=job_id, status=status, **{k: v for k, v in fields.items() if v is not None}
    )


def assigned(job_id: str, worker_id: str, **stamp: Any) -> Outgoing:
    return job_update(job_id, states.ASSIGNED, states.QUEUED, worker_id=worker_id, **stamp)


def accepted(job_id: str, previous: str, worker_id: str, **stamp: Any) -> Outgoing:
    return job_update(job_id, states.ACCEPTED, previous, worker_id=worker_id, message=ACCEPTED_TEXT, **stamp)


def progressed(
    job_id: str, previous: str, worker_id: str, progress: float, fields: Mapping[str, Any], **stamp: Any
) -> Outgoing:
    return job_update(
        job_id, states.IN_PROGRESS, previous, worker_id=worker_id, progress=progress, **fields, **stamp
    )


def completed(
    job_id: str,
    worker_id: str,
    result: Any,
    priority: int,
    processing_time: float,
    job_type: str,
    **stamp: Any,
) -> Outgoing:
    return protocol.outgoing(
        JobCompleted,
        job_id=job_id,
        status=states.COMPLETED,
        worker_id=worker_id,
        result=result,
        priority=priority,
        processing_time=processing_time,
        job_type=job_type,
        **stamp,
    )


def failed(
    job_id: str, previous: str, worker_id: str, retry_count: int, error: str, **stamp: Any
) -> Outgoing:
    """Failed for good (no retry left, or not retryable)."""
    return job_update(
        job_id, states.FAILED, previous, worker_id=worker_id, retry_count=retry_count, error=error, **stamp
    )


def lost_text(worker_id: str) -> str:
    return f"worker {worker_id} lost and no retries left"


def lost(job_id: str, previous: str, worker_id: str, **stamp: Any) -> Outgoing:
    """Failed for good because its worker was lost without a retry left."""
    return job_update(
        job_id, states.FAILED, previous, message=lost_text(worker_id), error="worker lost", **stamp
    )


def cancelled(job_id: str, cancelled_at: int, reason: str, **stamp: Any) -> Outgoing:
    return protocol.outgoing(
        JobCancelled,
        job_id=job_id,
        status=states.CANCELLED,
        cancelled_at=cancelled_at,
        reason=reason,
        **stamp,
    )


def timed_out(job_id: str, previous: str, worker_id: str, **stamp: Any) -> Outgoing:
    return job_update(job_id, states.TIMEOUT, previous, worker_id=worker_id, error=TIME_LIMIT_ERROR, **stamp)


def from_facts(facts: Mapping[str, str]) -> Outgoing:
    """The message of a webhook delivery, from what its transition recorded (strings, as Redis
    keeps them: see ``webhook`` in ``lua/prelude.lua``); its timestamp is the transition's."""
    event, job_id = facts["event"], facts["job_id"]
    previous, worker = facts.get("previous", ""), facts.get("worker_id", "")
    stamp = {"timestamp": int(facts["at"])}
    if event == "assigned":
        return assigned(job_id, worker, **stamp)
    if event == "accepted":
        return accepted(job_id, previous, worker, **stamp)
    if event == "progress":
        extras = {name: facts[name] for name in PROGRESS_FIELDS if facts.get(name)}
        return progressed(job_id, previous, worker, float(facts["progress"]), extras, **stamp)
    if event == "completed":
        return completed(
            job_id,
            worker,
            orjson.loads(facts["result"]),
            int(facts["priority"]),
            float(facts["processing_time"]),
            facts["job_type"],
            **stamp,
        )
    if event == "failed" and facts.get("cause") == "lost":
        return lost(job_id, previous, worker, **stamp)
    if event == "failed":
        return failed(
            job_id, previous, worker, int(facts.get("retry_count") or 0), facts.get("error", ""), **stamp
        )
    if event == "cancelled":
        return cancelled(job_id, int(facts["cancelled_at"]), facts.get("cancel_reason", ""), **stamp)
    if event == "timeout":
        return timed_out(job_id, previous, worker, **stamp)
    raise ValueError(f"no message for webhook event {event!r}")
