"""Worker Heartbeat and Status."""

from __future__ import annotations

from typing import Any

from empq.conformance.ctx import Ctx, expect_field
from empq.conformance.model import INFO, MUST, SHOULD, case
from empq.conformance.wire import summary

HEARTBEAT = "Worker Heartbeat and Status › Heartbeat"
STATUS = "Worker Heartbeat and Status › Status Update"

HEARTBEAT_REFERENCE = """
// Worker -> Hub (periodic)
{"type": "worker_heartbeat", "worker_id": "worker-gpu-01", "status": "busy", "load": 0.8,
 "current_jobs": ["job-abc123"], "system_info": {"cpu_usage": 45, "memory_usage": 60, "gpu_usage": 85, ...},
 "connector_status": {"comfyui": {"status": "active", "queue_length": 0, "response_time_ms": 150, ...}}}
// Hub -> Worker (acknowledgment)
{"type": "worker_heartbeat_ack", "worker_id": "worker-gpu-01", "status": "acknowledged",
 "next_heartbeat_expected": 1705312405000}
"""


async def _heartbeat(ctx: Ctx) -> tuple[dict[str, Any], str]:
    worker = await ctx.worker()
    ack = await ctx.request(
        worker,
        "worker_heartbeat",
        "worker_heartbeat_ack",
        worker_id=worker.worker_id,
        status="busy",
        load=0.8,
        current_jobs=[],
        system_info={
            "cpu_usage": 45,
            "memory_usage": 60,
            "gpu_usage": 85,
            "gpu_memory_usage": 12.5,
            "uptime": 86400,
        },
        connector_status={
            ctx.service: {
                "status": "active",
                "queue_length": 0,
                "response_time_ms": 150,
                "last_health_check": "2024-01-15T10:04:50Z",
            }
        },
    )
    expect_field(ctx, ack, "type", "worker_heartbeat_ack", "reply to worker_heartbeat")
    return ack, worker.worker_id


@case(
    "WORK-HB-001",
    section=HEARTBEAT,
    title="worker_heartbeat is acknowledged with worker_heartbeat_ack (worker_id, status acknowledged)",
    tier=MUST,
    reference=HEARTBEAT_REFERENCE,
    messages=("worker_heartbeat", "worker_heartbeat_ack"),
)
async def heartbeat_ack(ctx: Ctx) -> None:
    ack, worker_id = await _heartbeat(ctx)
    expect_field(ctx, ack, "worker_id", worker_id)
    expect_field(ctx, ack, "status", "acknowledged")


@case(
    "WORK-HB-002",
    section=HEARTBEAT,
    title="next_heartbeat_expected lies in the future",
    tier=SHOULD,
    reference='"next_heartbeat_expected": 1705312405000 (acknowledgment at 1705312345000)',
    messages=("worker_heartbeat", "worker_heartbeat_ack"),
)
async def heartbeat_next(ctx: Ctx) -> None:
    ack, _ = await _heartbeat(ctx)
    nxt, at = ack.get("next_heartbeat_expected"), ack.get("timestamp")
    if not (isinstance(nxt, int | float) and isinstance(at, int | float) and nxt > at):
        ctx.fail(
            "next_heartbeat_expected is not after the acknowledgment's timestamp",
            expected="next_heartbeat_expected > timestamp",
            received={"next_heartbeat_expected": nxt, "timestamp": at},
        )
    ctx.note(f"next heartbeat expected in {(nxt - at) / 1000:g} s")


@case(
    "WORK-STATUS-001",
    section=STATUS,
    title="worker_status is taken without an error",
    tier=MUST,
    reference="""
// Worker -> Hub
{"type": "worker_status", "worker_id": "worker-gpu-01", "status": "idle",
 "capabilities": {"services": ["comfyui", "a1111"], "components": ["text-to-image-xl", "upscaling"]},
 "current_job_id": null, "available_slots": 2}
""",
    messages=("worker_status",),
)
async def worker_status(ctx: Ctx) -> None:
    worker = await ctx.worker()
    await ctx.send(
        worker,
        "worker_status",
        worker_id=worker.worker_id,
        status="idle",
        capabilities={"services": [ctx.service], "components": ["text-to-image-xl", "upscaling"]},
        current_job_id=None,
        available_slots=2,
    )
    await ctx.alive(worker)
    refused = await worker.quiet(lambda f: f.get("type") == "error", 0.1)
    ctx.check(refused is None, "worker_status was refused", expected="no error", received=refused)


@case(
    "WORK-STATUS-002",
    section=STATUS,
    title="What answers a worker_status that carries an id (recorded)",
    tier=INFO,
    reference='{"type": "worker_status", ...} — the reference shows no reply',
    messages=("worker_status", "ack"),
)
async def worker_status_reply(ctx: Ctx) -> None:
    worker = await ctx.worker()
    rid = "conf-status-1"
    await ctx.send(worker, "worker_status", id=rid, worker_id=worker.worker_id, status="idle")
    reply = await worker.quiet(lambda f: f.get("request_id") == rid or f.get("type") in ("ack", "error"), 1.0)
    ctx.note(f"reply: {summary(reply) if reply else 'none within 1 s'}")
