"""Bad input: every malformed or impossible message gets ``error`` or ``unknown`` — never silence —
and the connection survives it (ping -> pong afterwards).

The battery is data: one row per input, each registered as its own case (NEG-001 ...).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from empq.conformance.ctx import Ctx
from empq.conformance.model import SHOULD, case
from empq.conformance.wire import SuitePeer, summary

SECTION = "Error Handling › Bad input (negative cases)"
T = 1705312345000

Frame = bytes | str | dict[str, Any]


@dataclass(frozen=True)
class BadInput:
    id: str
    title: str
    role: str  # raw | client | worker
    frame: Callable[[Ctx, SuitePeer], Frame]
    url_role: str = "job_client"  # whose URL a raw (unregistered) connection uses


def _submit(ctx: Ctx, **fields: Any) -> dict[str, Any]:
    frame: dict[str, Any] = {
        "type": "submit_job",
        "timestamp": T,
        "job_type": ctx.job_type,
        "payload": {"prompt": "x"},
        "requirements": {"service_type": ctx.service},
    }
    frame.update(fields)
    return {k: v for k, v in frame.items() if v is not None}


def _nested(depth: int) -> str:
    return '{"type": "submit_job", "timestamp": 1, "payload": ' + "[" * depth + "]" * depth + "}"


BATTERY = (
    BadInput("NEG-001", "a frame that is not JSON", "client", lambda c, p: b"{not json"),
    BadInput("NEG-002", "a JSON array instead of an object", "client", lambda c, p: "[1, 2]"),
    BadInput("NEG-003", "a JSON number instead of an object", "client", lambda c, p: "42"),
    BadInput("NEG-004", "a JSON string instead of an object", "client", lambda c, p: '"submit_job"'),
    BadInput("NEG-005", "an empty object", "client", lambda c, p: "{}"),
    BadInput("NEG-006", "a message without type", "client", lambda c, p: {"timestamp": T, "job_id": "job-x"}),
    BadInput("NEG-007", "type is a number", "client", lambda c, p: {"type": 123, "timestamp": T}),
    BadInput("NEG-008", "type is null", "client", lambda c, p: {"type": None, "timestamp": T}),
    BadInput("NEG-009", "an empty text frame", "client", lambda c, p: ""),
    BadInput(
        "NEG-010",
        "a type only the hub sends (job_assigned)",
        "client",
        lambda c, p: {"type": "job_assigned", "timestamp": T, "job_id": "job-x", "worker_id": "w"},
    ),
    BadInput("NEG-011", "submit_job without job_type", "client", lambda c, p: _submit(c, job_type=None)),
    BadInput(
        "NEG-012", 'submit_job with priority "high"', "client", lambda c, p: _submit(c, priority="high")
    ),
    BadInput(
        "NEG-013", "submit_job with priority 101 (0-100)", "client", lambda c, p: _submit(c, priority=101)
    ),
    BadInput(
        "NEG-014", "submit_job whose payload is not an object", "client", lambda c, p: _submit(c, payload="x")
    ),
    BadInput(
        "NEG-015",
        "request_job_status without job_id",
        "client",
        lambda c, p: {"type": "request_job_status", "timestamp": T},
    ),
    BadInput(
        "NEG-016",
        "cancel_job of a job that does not exist",
        "client",
        lambda c, p: {"type": "cancel_job", "timestamp": T, "job_id": f"job-{c.service}-none"},
    ),
    BadInput(
        "NEG-017",
        "update_job_progress with progress 150",
        "worker",
        lambda c, p: {
            "type": "update_job_progress",
            "timestamp": T,
            "job_id": f"job-{c.service}-none",
            "worker_id": p.worker_id,
            "progress": 150,
        },
    ),
    BadInput(
        "NEG-018",
        "claim_job with max_jobs -1",
        "worker",
        lambda c, p: {"type": "claim_job", "timestamp": T, "worker_id": p.worker_id, "max_jobs": -1},
    ),
    BadInput(
        "NEG-019",
        "register_worker whose capabilities are not an object",
        "raw",
        lambda c, p: {
            "type": "register_worker",
            "timestamp": T,
            "worker_id": "conf-bad",
            "capabilities": "gpu",
        },
        url_role="worker",
    ),
    BadInput(
        "NEG-020",
        "an unknown type before registering",
        "raw",
        lambda c, p: {"type": "conf_no_such_type", "timestamp": T},
    ),
    BadInput("NEG-021", "a 10 000-deep nested payload", "client", lambda c, p: _nested(10_000)),
    BadInput(
        "NEG-022",
        "complete_job without result",
        "worker",
        lambda c, p: {
            "type": "complete_job",
            "timestamp": T,
            "job_id": f"job-{c.service}-none",
            "worker_id": p.worker_id,
        },
    ),
)


def _register(bad: BadInput) -> None:
    async def run(ctx: Ctx) -> None:
        if bad.role == "worker":
            peer = await ctx.worker()
        elif bad.role == "client":
            peer = await ctx.client()
        else:  # unregistered, on the URL of the role its frame is for
            peer = await ctx.raw(role=bad.url_role)
        reply = await ctx.answer(peer, bad.frame(ctx, peer))
        ctx.track(reply, peer)
        ctx.check(
            reply.get("type") in ("error", "unknown"),
            f"{bad.title} was answered with {reply.get('type')}",
            expected="error or unknown",
            received=summary(reply),
        )
        ctx.note(f"{reply['type']} {reply.get('error_code', '')}".strip())
        await ctx.alive(peer)

    case(
        bad.id,
        section=SECTION,
        title=f"Bad input answered, connection survives: {bad.title}",
        tier=SHOULD,
        reference="""
// General error
{"type": "error", "error": "Invalid job parameters", "error_code": "INVALID_PARAMETERS", "details": {...}}
// Unknown message
{"type": "unknown", "content": "Received unrecognized message type", "original_message": "..."}
""",
        messages=("error", "unknown"),
    )(run)


for _bad in BATTERY:
    _register(_bad)
