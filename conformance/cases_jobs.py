"""Job Management Messages: submission, status query, cancellation."""

from __future__ import annotations

import uuid

from empq.conformance.ctx import Ctx, expect_field
from empq.conformance.model import INFO, MUST, SHOULD, case
from empq.conformance.wire import summary

SUBMISSION = "Job Management Messages › Job Submission"
STATUS = "Job Management Messages › Job Status Query"
CANCELLATION = "Job Management Messages › Job Cancellation"

SUBMIT_REFERENCE = """
// Client -> Hub
{"type": "submit_job", "job_type": "text_to_image", "priority": 75,
 "payload": {"prompt": "a beautiful landscape with mountains", "steps": 30, "cfg_scale": 7.5,
             "width": 1024, "height": 1024},
 "customer_id": "customer-123",
 "requirements": {"service_type": "comfyui", "component": "text-to-image-xl",
                  "hardware": {"gpu_memory_gb": 8}}}
// Hub -> Client (acceptance)
{"type": "job_accepted", "job_id": "job-abc123", "status": "queued", "position": 3,
 "estimated_start": "2024-01-15T10:05:30Z", "notified_workers": 5}
"""


@case(
    "JOB-SUBMIT-001",
    section=SUBMISSION,
    title="submit_job is accepted with job_accepted (job_id, status queued)",
    tier=MUST,
    reference=SUBMIT_REFERENCE,
    messages=("submit_job", "job_accepted"),
)
async def submit_accepted(ctx: Ctx) -> None:
    client = await ctx.client()
    accepted = await ctx.submit(
        client,
        priority=75,
        payload={
            "prompt": "a beautiful landscape with mountains",
            "steps": 30,
            "cfg_scale": 7.5,
            "width": 1024,
            "height": 1024,
        },
        customer_id=client.customer_id,
        requirements={
            "service_type": ctx.service,
            "component": "text-to-image-xl",
            "hardware": {"gpu_memory_gb": 8},
        },
    )
    expect_field(ctx, accepted, "status", "queued")


@case(
    "JOB-SUBMIT-EXT-001",
    section=SUBMISSION,
    title="A repeated submit_job with the same idempotency_key (empq extension D18; recorded)",
    tier=INFO,
    reference='{"type": "submit_job", ..., "idempotency_key": "order-1"}  (not in the reference)',
    messages=("submit_job", "job_accepted"),
)
async def submit_idempotency_key(ctx: Ctx) -> None:
    client = await ctx.client()
    key = f"conformance-{uuid.uuid4().hex}"
    first = await ctx.submit(client, payload={"n": 1}, idempotency_key=key)
    again = await ctx.submit(client, payload={"n": 1}, idempotency_key=key)
    if first.get("job_id") == again.get("job_id"):
        ctx.note("honoured: the repeat named the first job (applied once)")
    else:
        ctx.note("ignored: the repeat was queued as another job (the field is an empq extension)")


@case(
    "JOB-SUBMIT-002",
    section=SUBMISSION,
    title="Every submission gets its own job_id",
    tier=SHOULD,
    reference='{"type": "job_accepted", "job_id": "job-abc123", ...}',
    messages=("submit_job", "job_accepted"),
)
async def submit_distinct_ids(ctx: Ctx) -> None:
    client = await ctx.client()
    ids = [(await ctx.submit(client, payload={"n": n}))["job_id"] for n in range(3)]
    ctx.check(len(set(ids)) == 3, "job ids repeat", expected="3 distinct job ids", received=ids)


@case(
    "JOB-SUBMIT-003",
    section=SUBMISSION,
    title="job_accepted's position, estimated_start and notified_workers (recorded)",
    tier=INFO,
    reference='"position": 3, "estimated_start": "2024-01-15T10:05:30Z", "notified_workers": 5',
    messages=("submit_job", "job_accepted"),
)
async def submit_estimates(ctx: Ctx) -> None:
    client = await ctx.client()
    first = await ctx.submit(client, priority=50)
    second = await ctx.submit(client, priority=50)
    for name, frame in (("first", first), ("second", second)):
        ctx.note(
            f"{name}: position {frame.get('position')!r}, estimated_start {frame.get('estimated_start')!r}, "
            f"notified_workers {frame.get('notified_workers')!r}"
        )


@case(
    "JOB-SUBMIT-004",
    section=SUBMISSION,
    title="An idle subscribed worker that can run a new job is sent job_available for it",
    tier=SHOULD,
    reference="""
// Job available notification (to workers)
{"type": "job_available", "job_id": "job-abc123", "job_type": "text_to_image", "priority": 75,
 "requirements_summary": {"service_type": "comfyui", "gpu_memory_min": 8}}
Worker Registration: "subscribe_to_jobs": true; job_accepted: "notified_workers": 5
""",
    messages=("register_worker", "submit_job", "job_accepted", "job_available"),
)
async def job_available_to_worker(ctx: Ctx) -> None:
    worker = await ctx.worker(subscribe=True)
    client = await ctx.client()
    accepted = await ctx.submit(client, priority=75)
    available = await ctx.expect(worker, "job_available", job_id=accepted["job_id"])
    expect_field(ctx, available, "job_type", ctx.job_type)
    expect_field(ctx, available, "priority", 75)
    ctx.check(
        (accepted.get("notified_workers") or 0) >= 1,
        "job_accepted.notified_workers does not count the worker that was notified",
        expected="notified_workers >= 1",
        received=summary(accepted) | {"notified_workers": accepted.get("notified_workers")},
    )
    ctx.note(f"requirements_summary {available.get('requirements_summary')!r}")


@case(
    "JOB-STATUS-001",
    section=STATUS,
    title="request_job_status of a queued job answers response_job_status (job_id, status queued)",
    tier=MUST,
    reference="""
// Client -> Hub
{"type": "request_job_status", "job_id": "job-abc123"}
// Hub -> Client (response)
{"type": "response_job_status", "job_id": "job-abc123", "status": "in_progress", ...}
""",
    messages=("request_job_status", "response_job_status"),
)
async def status_queued(ctx: Ctx) -> None:
    client = await ctx.client()
    job_id = (await ctx.submit(client))["job_id"]
    reply = await ctx.request(client, "request_job_status", "response_job_status", job_id=job_id)
    expect_field(ctx, reply, "type", "response_job_status", "reply to request_job_status")
    expect_field(ctx, reply, "job_id", job_id)
    expect_field(ctx, reply, "status", "queued")


@case(
    "JOB-STATUS-002",
    section=STATUS,
    title="A running job's status shows in_progress, its progress and its worker",
    tier=MUST,
    reference="""
{"type": "response_job_status", "job_id": "job-abc123", "status": "in_progress", "progress": 45,
 "worker_id": "worker-gpu-01", "started_at": 1705312380000,
 "estimated_completion": "2024-01-15T10:08:30Z", "message": "Generating image - step 14/30"}
""",
    messages=("request_job_status", "response_job_status", "update_job_progress", "job_update"),
)
async def status_in_progress(ctx: Ctx) -> None:
    client = await ctx.client()
    worker = await ctx.worker()
    job_id = (await ctx.submit(client))["job_id"]
    await ctx.claim_and_accept(worker, job_id)
    await ctx.send(
        worker,
        "update_job_progress",
        job_id=job_id,
        worker_id=worker.worker_id,
        progress=45,
        status="in_progress",
        message="Generating image - step 14/30",
    )
    await ctx.expect(client, "job_update", job_id=job_id, progress=45)  # the hub has applied it
    reply = await ctx.request(client, "request_job_status", "response_job_status", job_id=job_id)
    expect_field(ctx, reply, "type", "response_job_status", "reply to request_job_status")
    expect_field(ctx, reply, "job_id", job_id)
    expect_field(ctx, reply, "status", "in_progress")
    expect_field(ctx, reply, "progress", 45)
    expect_field(ctx, reply, "worker_id", worker.worker_id)
    ctx.note(f"message {reply.get('message')!r}, started_at {reply.get('started_at')!r}")


@case(
    "JOB-STATUS-003",
    section=STATUS,
    title="request_job_status of an unknown job answers an error",
    tier=SHOULD,
    reference='{"type": "request_job_status", "job_id": "job-abc123"}',
    messages=("request_job_status", "error"),
)
async def status_unknown(ctx: Ctx) -> None:
    client = await ctx.client()
    reply = await ctx.request(
        client, "request_job_status", "response_job_status", job_id=f"job-{ctx.service}-missing"
    )
    ctx.check(
        reply["type"] == "error",
        f"status of a job that does not exist answered {reply['type']}",
        expected="error (empq: JOB_NOT_FOUND)",
        received=summary(reply),
    )
    ctx.note(f"error_code {reply.get('error_code')}")


@case(
    "JOB-CANCEL-001",
    section=CANCELLATION,
    title="cancel_job of a queued job is confirmed with job_cancelled",
    tier=MUST,
    reference="""
// Client -> Hub
{"type": "cancel_job", "job_id": "job-abc123", "reason": "User requested cancellation"}
// Hub -> Client (confirmation)
{"type": "job_cancelled", "job_id": "job-abc123", "status": "cancelled", "cancelled_at": 1705312345000}
""",
    messages=("cancel_job", "job_cancelled"),
)
async def cancel_queued(ctx: Ctx) -> None:
    client = await ctx.client()
    job_id = (await ctx.submit(client))["job_id"]
    reply = await ctx.request(
        client, "cancel_job", "job_cancelled", job_id=job_id, reason="User requested cancellation"
    )
    expect_field(ctx, reply, "type", "job_cancelled", "reply to cancel_job")
    ctx.finished(job_id)
    expect_field(ctx, reply, "job_id", job_id)
    expect_field(ctx, reply, "status", "cancelled")


@case(
    "JOB-CANCEL-002",
    section=CANCELLATION,
    title="A cancelled job is never assigned",
    tier=SHOULD,
    reference='{"type": "job_cancelled", "job_id": "job-abc123", "status": "cancelled"}',
    messages=("cancel_job", "job_cancelled", "claim_job"),
)
async def cancelled_not_claimable(ctx: Ctx) -> None:
    client = await ctx.client()
    job_id = (await ctx.submit(client))["job_id"]
    reply = await ctx.request(client, "cancel_job", "job_cancelled", job_id=job_id)
    expect_field(ctx, reply, "type", "job_cancelled", "reply to cancel_job")
    ctx.finished(job_id)
    worker = await ctx.worker()
    jobs = await ctx.claim(worker)
    ctx.check(
        not jobs,
        "a cancelled job was assigned",
        expected="no job_assigned",
        received=[summary(j) for j in jobs],
    )


@case(
    "JOB-CANCEL-003",
    section=CANCELLATION,
    title="Cancelling a running job tells its worker, whose late completion is refused",
    tier=SHOULD,
    reference="""
{"type": "cancel_job", "job_id": "job-abc123", "reason": "User requested cancellation"}
{"type": "job_cancelled", "job_id": "job-abc123", "status": "cancelled", "cancelled_at": 1705312345000}
""",
    messages=("cancel_job", "job_cancelled", "complete_job", "error"),
)
async def cancel_running(ctx: Ctx) -> None:
    client = await ctx.client()
    worker = await ctx.worker()
    job_id = (await ctx.submit(client))["job_id"]
    await ctx.claim_and_accept(worker, job_id)
    await ctx.send(worker, "update_job_progress", job_id=job_id, worker_id=worker.worker_id, progress=10)
    await ctx.expect(client, "job_update", job_id=job_id, progress=10)
    reply = await ctx.request(client, "cancel_job", "job_cancelled", job_id=job_id)
    expect_field(ctx, reply, "type", "job_cancelled", "reply to cancel_job")
    ctx.finished(job_id)
    ctx.step = f"{worker.name}: waiting to be told of the cancellation"
    told = await worker.wait(
        f"job_cancelled (or job_update status cancelled) for {job_id}",
        lambda f: (
            f.get("job_id") == job_id and (f.get("type") == "job_cancelled" or f.get("status") == "cancelled")
        ),
        ctx.timeout,
    )
    ctx.note(f"the worker was told with {told['type']}")
    late = await ctx.request(
        worker,
        "complete_job",
        "job_completed_ack",
        job_id=job_id,
        worker_id=worker.worker_id,
        result={"success": True},
    )
    ctx.check(
        late["type"] == "error",
        "completing a cancelled job was acknowledged",
        expected="error (empq: NOT_JOB_HOLDER)",
        received=summary(late),
    )


@case(
    "JOB-CANCEL-004",
    section=CANCELLATION,
    title="Cancelling a job that already completed answers an error",
    tier=SHOULD,
    reference='{"type": "cancel_job", "job_id": "job-abc123"}',
    messages=("cancel_job", "error"),
)
async def cancel_final(ctx: Ctx) -> None:
    client = await ctx.client()
    worker = await ctx.worker()
    job_id = (await ctx.submit(client))["job_id"]
    await ctx.claim_one(worker, job_id)
    await ctx.complete(worker, job_id)
    await ctx.expect(client, "job_completed", job_id=job_id)
    reply = await ctx.request(client, "cancel_job", "job_cancelled", job_id=job_id)
    ctx.check(
        reply["type"] == "error",
        f"cancelling a completed job answered {reply['type']}",
        expected="error (empq: INVALID_STATE)",
        received=summary(reply),
    )
    ctx.note(f"error_code {reply.get('error_code')}")
