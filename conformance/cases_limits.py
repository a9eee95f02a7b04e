"""Message Size Limits: the 10 MB maximum and chunked messages."""

from __future__ import annotations

import base64
import hashlib
import uuid
from typing import Any

import orjson
from empq.conformance.ctx import Ctx, expect_field
from empq.conformance.model import INFO, MUST, SHOULD, case
from empq.conformance.wire import ConnectionLost, SuitePeer, summary

SIZE = "Message Size Limits › Size Constraints"
CHUNKS = "Message Size Limits › Chunked Messages"
MAX_SIZE = 10 * 1024 * 1024


def _submit_frame(ctx: Ctx, payload: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "submit_job",
        "id": f"conf-{uuid.uuid4().hex[:10]}",
        "timestamp": 1705312345000,
        "job_type": ctx.job_type,
        "payload": payload,
        "requirements": {"service_type": ctx.service},
    }


@case(
    "SIZE-001",
    section=SIZE,
    title="A frame over 10 MB is refused (close 1009 or error) and the hub keeps serving others",
    tier=SHOULD,
    reference="- **Maximum message size**: 10MB",
    messages=("submit_job", "error"),
    exclusive=True,  # 10 MB on the wire: not beside cases that time their replies
)
async def over_limit(ctx: Ctx) -> None:
    client = await ctx.client()
    frame = orjson.dumps(_submit_frame(ctx, {"blob": "x" * (MAX_SIZE + 1024)}))
    outcome: str
    try:
        reply = await ctx.answer(client, frame, timeout=max(ctx.timeout, 5.0))
    except ConnectionLost as lost:
        ctx.check(
            lost.code == 1009,
            f"the connection was closed with code {lost.code}, not 1009 (message too big)",
            expected="close code 1009 or an error",
            received=f"close code {lost.code}",
        )
        outcome = "closed with 1009"
    else:
        ctx.track(reply, client)
        ctx.check(
            reply.get("type") == "error",
            f"a frame of {len(frame)} bytes was answered with {reply.get('type')}",
            expected="close code 1009 or an error",
            received=summary(reply),
        )
        outcome = f"error {reply.get('error_code')}"
    ctx.note(f"{len(frame)} bytes: {outcome}")
    other = await ctx.client()
    await ctx.alive(other)


@case(
    "SIZE-002",
    section=SIZE,
    title="A 512 KB message (under the limit) is processed",
    tier=MUST,
    reference="- **Maximum message size**: 10MB\n- **Typical message size**: < 64KB",
    messages=("submit_job", "job_accepted"),
)
async def under_limit(ctx: Ctx) -> None:
    client = await ctx.client()
    accepted = await ctx.submit(client, payload={"blob": "y" * (512 * 1024)})
    expect_field(ctx, accepted, "status", "queued")


CHUNK_REFERENCE = """
// Large message chunk
{"type": "chunked_message", "chunk_id": "chunk-abc123", "chunk_index": 1, "total_chunks": 5,
 "data": "base64-encoded-chunk-data", "data_hash": "sha256-hash-of-complete-data",
 "original_type": "job_result_with_large_files"}
// Chunk assembly complete
{"type": "chunked_message_complete", "chunk_id": "chunk-abc123", "total_size": 5242880,
 "assembled_message": {...}}
empq D15: chunk_index is 0-based; data is base64 of a slice of the UTF-8 JSON text; data_hash its sha256 hex.
"""


def _chunks(message: dict[str, Any], parts: int, bad_hash: bool = False) -> list[dict[str, Any]]:
    text = orjson.dumps(message)
    size = -(-len(text) // parts)
    digest = hashlib.sha256(text).hexdigest()
    if bad_hash:
        digest = hashlib.sha256(text + b" ").hexdigest()
    chunk_id = f"chunk-{uuid.uuid4().hex[:12]}"
    return [
        {
            "chunk_id": chunk_id,
            "chunk_index": i,
            "total_chunks": parts,
            "data": base64.b64encode(text[i * size : (i + 1) * size]).decode(),
            "data_hash": digest,
            "original_type": message["type"],
            "total_size": len(text),
        }
        for i in range(parts)
    ]


async def _send_chunks(ctx: Ctx, peer: SuitePeer, chunks: list[dict[str, Any]]) -> None:
    for chunk in chunks:
        await ctx.send(peer, "chunked_message", **chunk)


@case(
    "CHUNK-001",
    section=CHUNKS,
    title="A submit_job sent as chunked_message frames is reassembled and processed",
    tier=SHOULD,
    reference=CHUNK_REFERENCE,
    messages=("chunked_message", "chunked_message_complete", "job_accepted"),
)
async def chunked_submit(ctx: Ctx) -> None:
    client = await ctx.client()
    chunks = _chunks(_submit_frame(ctx, {"prompt": "z" * 6000}), 3)
    async with ctx.lane():  # the chunks carry a submit_job: in the queue lane until it is answered
        await _send_chunks(ctx, client, chunks)
        accepted = await ctx.expect(client, ("job_accepted", "error"))
    ctx.check(
        accepted["type"] == "job_accepted",
        f"the chunked submit_job was answered with {accepted['type']} {accepted.get('error_code', '')}",
        expected="job_accepted",
        received=summary(accepted),
    )
    ctx.track(accepted, client)
    receipt = await client.quiet(lambda f: f.get("type") == "chunked_message_complete", 0.5)
    ctx.check(
        receipt is not None,
        "no chunked_message_complete for the reassembled message",
        expected=f"chunked_message_complete chunk_id {chunks[0]['chunk_id']}",
        received="none",
    )
    assert receipt is not None
    expect_field(ctx, receipt, "chunk_id", chunks[0]["chunk_id"])


@case(
    "CHUNK-002",
    section=CHUNKS,
    title="Chunks whose data_hash does not match are refused with an error, not processed",
    tier=SHOULD,
    reference=CHUNK_REFERENCE,
    messages=("chunked_message", "error"),
)
async def chunked_bad_hash(ctx: Ctx) -> None:
    client = await ctx.client()
    async with ctx.lane():
        await _send_chunks(ctx, client, _chunks(_submit_frame(ctx, {"prompt": "z" * 3000}), 3, bad_hash=True))
        reply = await ctx.expect(client, ("error", "job_accepted", "chunked_message_complete"))
    ctx.track(reply, client)
    ctx.check(
        reply["type"] == "error",
        f"chunks with a wrong data_hash were answered with {reply['type']}",
        expected="error (empq: CHUNK_ERROR)",
        received=summary(reply),
    )
    late = await client.quiet(lambda f: f.get("type") == "job_accepted", 0.3)
    ctx.track(late, client)
    ctx.check(
        late is None,
        "the message was processed despite the wrong hash",
        expected="not processed",
        received=late,
    )
    await ctx.alive(client)


@case(
    "CHUNK-003",
    section=CHUNKS,
    title="Chunks sent in reverse order (recorded)",
    tier=INFO,
    reference=CHUNK_REFERENCE,
    messages=("chunked_message", "chunked_message_complete"),
)
async def chunked_reverse(ctx: Ctx) -> None:
    client = await ctx.client()
    async with ctx.lane():
        await _send_chunks(
            ctx, client, list(reversed(_chunks(_submit_frame(ctx, {"prompt": "r" * 3000}), 3)))
        )
        reply = await client.quiet(lambda f: f.get("type") in ("job_accepted", "error"), ctx.timeout)
    ctx.track(reply, client)
    ctx.note(f"reverse order: {summary(reply) if reply else 'no reply'}")
