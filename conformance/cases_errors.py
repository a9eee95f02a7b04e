"""Error Handling: invalid parameters, unknown types, acknowledgments, reply correlation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from empq.conformance.ctx import Ctx, expect_field
from empq.conformance.model import INFO, MUST, SHOULD, case
from empq.conformance.wire import summary

ERRORS = "Error Handling › Error Messages"
ACKS = "Error Handling › Acknowledgments"

INVALID_REFERENCE = """
// General error
{"type": "error", "error": "Invalid job parameters", "error_code": "INVALID_PARAMETERS",
 "details": {"field": "requirements.hardware.gpu_memory_gb", "message": "Must be a positive number",
             "provided_value": -1},
 "request_id": "req-abc123"}
"""


async def _invalid_submit(ctx: Ctx) -> dict[str, Any]:
    client = await ctx.client()
    frame = {
        "type": "submit_job",
        "id": "req-abc123",
        "timestamp": 1705312345000,
        "job_type": ctx.job_type,
        "payload": {"prompt": "mountains"},
        "requirements": {"service_type": ctx.service, "hardware": {"gpu_memory_gb": -1}},
    }
    reply = await ctx.answer(client, frame)
    ctx.track(reply, client)
    ctx.check(
        reply.get("type") == "error",
        f"a submit_job with gpu_memory_gb -1 was answered with {reply.get('type')}",
        expected="error INVALID_PARAMETERS",
        received=summary(reply),
    )
    await ctx.alive(client)
    return reply


@case(
    "ERR-PARAM-001",
    section=ERRORS,
    title="Invalid job parameters answer error INVALID_PARAMETERS with details.field",
    tier=MUST,
    reference=INVALID_REFERENCE,
    messages=("submit_job", "error"),
)
async def invalid_parameters(ctx: Ctx) -> None:
    reply = await _invalid_submit(ctx)
    expect_field(ctx, reply, "error_code", "INVALID_PARAMETERS")
    details = reply.get("details") or {}
    ctx.check(
        details.get("field") == "requirements.hardware.gpu_memory_gb",
        f"details.field is {details.get('field')!r}",
        expected={"details.field": "requirements.hardware.gpu_memory_gb"},
        received=details or "(no details)",
    )


@case(
    "ERR-PARAM-002",
    section=ERRORS,
    title="The invalid-parameters error echoes the provided value and the request's id",
    tier=SHOULD,
    reference=INVALID_REFERENCE,
    messages=("submit_job", "error"),
)
async def invalid_parameters_echo(ctx: Ctx) -> None:
    reply = await _invalid_submit(ctx)
    details = reply.get("details") or {}
    ctx.check(
        details.get("provided_value") == -1,
        f"details.provided_value is {details.get('provided_value', '(absent)')!r}",
        expected={"details.provided_value": -1},
        received=details or "(no details)",
    )
    expect_field(ctx, reply, "request_id", "req-abc123")


@case(
    "ERR-UNKNOWN-001",
    section=ACKS,
    title="An unknown message type is answered with unknown carrying the original message",
    tier=MUST,
    reference="""
// Unknown message
{"type": "unknown", "content": "Received unrecognized message type",
 "original_message": "{\\"type\\":\\"invalid_type\\",...}"}
""",
    messages=("unknown",),
    hint="""
The reference answers a message of a type it does not know with
{"type": "unknown", "content": "Received unrecognized message type", "original_message": "<the frame>"},
not with an error.
""",
)
async def unknown_type(ctx: Ctx) -> None:
    client = await ctx.client()
    sent = {"type": "invalid_type", "timestamp": 1705312345000, "marker": ctx.service}
    reply = await ctx.answer(client, orjson.dumps(sent))
    expect_field(ctx, reply, "type", "unknown", "reply to a message of type invalid_type")
    original = reply.get("original_message")
    ctx.check(
        isinstance(original, str) and "invalid_type" in original,
        "unknown.original_message does not hold the message sent",
        expected="original_message containing the frame sent",
        received=original,
    )
    await ctx.alive(client)


def _ack_of(kind: str) -> Callable[[dict[str, Any]], bool]:
    return lambda f: f.get("type") == "ack" and f.get("original_type") == kind


@case(
    "ACK-001",
    section=ACKS,
    title="Which messages get a generic ack (recorded)",
    tier=INFO,
    reference="""
// Generic acknowledgment
{"type": "ack", "message_id": "msg-abc123", "original_type": "submit_job", "status": "processed"}
""",
    messages=("ack", "update_job_progress", "job_accepted_by_worker"),
)
async def acks(ctx: Ctx) -> None:
    client = await ctx.client()
    worker = await ctx.worker()
    job_id = (await ctx.submit(client))["job_id"]
    await ctx.claim_one(worker, job_id)
    seen = []
    for kind, with_id, fields in (
        ("job_accepted_by_worker", False, {}),
        ("update_job_progress", False, {"progress": 10}),
        ("update_job_progress", True, {"progress": 20}),
    ):
        extra = {"id": f"msg-{kind}-{ctx.service}"} if with_id else {}
        await ctx.send(worker, kind, job_id=job_id, worker_id=worker.worker_id, **extra, **fields)
        ack = await worker.quiet(_ack_of(kind), 0.4)
        got = f"ack status {ack.get('status')!r}" if ack else "no ack"
        seen.append(f"{kind} {'with' if with_id else 'without'} id: {got}")
    for line in seen:
        ctx.note(line)


@case(
    "CORR-001",
    section=ERRORS,
    title="Replies carry the request's id as request_id (empq D2; recorded)",
    tier=INFO,
    reference='error example: "request_id": "req-abc123"',
    messages=("ping", "pong", "request_job_status", "error"),
)
async def correlation(ctx: Ctx) -> None:
    client = await ctx.client()
    for kind, fields in (("ping", {}), ("request_job_status", {"job_id": f"job-{ctx.service}-none"})):
        rid = f"req-{kind}"
        await ctx.send(client, kind, id=rid, **fields)
        reply = await client.wait(f"a reply to {kind}", lambda f: True, ctx.timeout)
        ctx.note(f"{kind} -> {reply.get('type')} request_id {reply.get('request_id', '(absent)')!r}")


@case(
    "ERR-CODE-001",
    section=ERRORS,
    title="Errors carry error and error_code",
    tier=SHOULD,
    reference='{"type": "error", "error": "Authentication failed", "error_code": "AUTH_FAILED", ...}',
    messages=("error",),
)
async def error_code_present(ctx: Ctx) -> None:
    client = await ctx.client()
    reply = await ctx.request(client, "cancel_job", "job_cancelled", job_id=f"job-{ctx.service}-none")
    expect_field(ctx, reply, "type", "error", "reply to cancelling a job that does not exist")
    ctx.check(
        bool(reply.get("error_code")) and bool(reply.get("error")),
        "the error lacks error or error_code",
        expected="error and error_code",
        received=reply,
    )
    ctx.note(f"error_code {reply.get('error_code')}")
