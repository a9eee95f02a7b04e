"""Worker Communication: claim, assignment, acceptance, progress, completion, failure and retry."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from empq.conformance.ctx import Ctx, expect_field
from empq.conformance.model import INFO, MUST, SHOULD, case
from empq.conformance.wire import SuitePeer, summary

CLAIM = "Worker Communication › Job Request (Pull-based)"
PROGRESS = "Worker Communication › Job Progress Updates"
COMPLETION = "Worker Communication › Job Completion"
FAILURE = "Worker Communication › Job Failure"

CLAIM_REFERENCE = """
// Worker -> Hub
{"type": "claim_job", "worker_id": "worker-gpu-01", "max_jobs": 1,
 "preferred_types": ["text_to_image", "upscaling"],
 "current_load": 0.3, "available_resources": {"gpu_memory_available": 14.2, "concurrent_slots": 1},
 "claim_timeout": 30000}
// Hub -> Worker (job assignment)
{"type": "job_assigned", "job_id": "job-abc123", "worker_id": "worker-gpu-01", "job_type": "text_to_image",
 "priority": 75, "payload": {"prompt": "a beautiful landscape with mountains", "steps": 30},
 "requirements": {"service_type": "comfyui"}, "claim_timeout": 30000}
"""


@case(
    "WORK-CLAIM-001",
    section=CLAIM,
    title="claim_job assigns the queued job: job_assigned carries the job as submitted",
    tier=MUST,
    reference=CLAIM_REFERENCE,
    messages=("claim_job", "job_assigned"),
)
async def claim_assigns(ctx: Ctx) -> None:
    client = await ctx.client()
    worker = await ctx.worker()
    payload = {"prompt": "a beautiful landscape with mountains", "steps": 30}
    job_id = (await ctx.submit(client, priority=75, payload=payload))["job_id"]
    assigned = await ctx.claim_one(
        worker,
        job_id,
        preferred_types=[ctx.job_type, "upscaling"],
        current_load=0.3,
        available_resources={"gpu_memory_available": 14.2, "concurrent_slots": 1},
        claim_timeout=30000,
    )
    expect_field(ctx, assigned, "worker_id", worker.worker_id)
    expect_field(ctx, assigned, "job_type", ctx.job_type)
    expect_field(ctx, assigned, "priority", 75)
    expect_field(ctx, assigned, "payload", payload)
    requirements = assigned.get("requirements") or {}
    ctx.check(
        requirements.get("service_type") == ctx.service,
        "job_assigned.requirements.service_type differs from the submission's",
        expected={"service_type": ctx.service},
        received=assigned.get("requirements", "(absent)"),
    )
    ctx.note(f"claim_timeout {assigned.get('claim_timeout')!r}")


@case(
    "WORK-CLAIM-002",
    section=CLAIM,
    title="job_accepted_by_worker is taken; the client learns the job was assigned to that worker",
    tier=MUST,
    reference="""
// Worker -> Hub (acceptance)
{"type": "job_accepted_by_worker", "job_id": "job-abc123", "worker_id": "worker-gpu-01",
 "estimated_completion": "2024-01-15T10:08:30Z"}
Complete Job Processing Flow: Worker->>Hub: job_accepted_by_worker; Hub-->>Client: job_update (assigned)
""",
    messages=("job_accepted_by_worker", "job_update"),
)
async def accept_by_worker(ctx: Ctx) -> None:
    client = await ctx.client()
    worker = await ctx.worker()
    job_id = (await ctx.submit(client))["job_id"]
    await ctx.claim_one(worker, job_id)
    await ctx.send(
        worker,
        "job_accepted_by_worker",
        job_id=job_id,
        worker_id=worker.worker_id,
        estimated_completion="2024-01-15T10:08:30Z",
    )
    update = await ctx.expect(client, "job_update", job_id=job_id, status="assigned")
    expect_field(ctx, update, "worker_id", worker.worker_id)
    refused = await worker.quiet(lambda f: f.get("type") == "error", 0.3)
    ctx.check(refused is None, "job_accepted_by_worker was refused", expected="no error", received=refused)


@case(
    "WORK-CLAIM-003",
    section=CLAIM,
    title="A claim that finds nothing is answered (not silence)",
    tier=SHOULD,
    reference='{"type": "claim_job", "worker_id": "worker-gpu-01", "max_jobs": 1}',
    messages=("claim_job", "ack"),
)
async def claim_nothing(ctx: Ctx) -> None:
    worker = await ctx.worker()
    reply = await ctx.request(
        worker, "claim_job", ("ack", "job_assigned"), worker_id=worker.worker_id, max_jobs=1
    )
    ctx.check(
        reply["type"] != "job_assigned",
        "a job was assigned although this case queued none",
        expected="a reply saying no job",
        received=summary(reply),
    )
    ctx.check(
        reply["type"] != "error",
        f"an empty claim was refused: {reply.get('error_code')}",
        expected="a reply saying no job (empq: ack status no_job_available)",
        received=summary(reply),
    )
    ctx.note(f"empty claim answered with {reply['type']} status {reply.get('status')!r}")


@case(
    "WORK-CLAIM-004",
    section=CLAIM,
    title="Two workers racing for one job: exactly one gets it",
    tier=SHOULD,
    reference="Job Request (Pull-based): claim_job -> job_assigned (a job is processed by one worker)",
    messages=("claim_job", "job_assigned"),
)
async def claim_race(ctx: Ctx) -> None:
    client = await ctx.client()
    a = await ctx.worker()
    b = await ctx.worker()
    job_id = (await ctx.submit(client))["job_id"]
    got_a, got_b = await asyncio.gather(ctx.claim(a), ctx.claim(b))
    winners = [w.name for w, got in ((a, got_a), (b, got_b)) if any(j["job_id"] == job_id for j in got)]
    ctx.check(
        len(winners) == 1,
        f"the job was assigned to {len(winners)} workers",
        expected="exactly one job_assigned",
        received={"assigned to": winners},
    )


@case(
    "WORK-CLAIM-005",
    section=CLAIM,
    title="Higher priority jobs are assigned first",
    tier=SHOULD,
    reference='submit_job "priority": 75; job_assigned "priority": 75',
    messages=("submit_job", "claim_job", "job_assigned"),
)
async def claim_priority(ctx: Ctx) -> None:
    client = await ctx.client()
    low = (await ctx.submit(client, priority=20))["job_id"]
    high = (await ctx.submit(client, priority=80))["job_id"]
    mid = (await ctx.submit(client, priority=50))["job_id"]
    worker = await ctx.worker()
    order = []
    for _ in range(3):
        jobs = await ctx.claim(worker)
        ctx.check(jobs, "a queued job was not assigned", expected="job_assigned", received="no job")
        order.append(jobs[0]["job_id"])
        await ctx.complete(worker, jobs[0]["job_id"])
    names = {low: "priority 20", high: "priority 80", mid: "priority 50"}
    ctx.check(
        order == [high, mid, low],
        "jobs were not assigned highest priority first",
        expected=["priority 80", "priority 50", "priority 20"],
        received=[names.get(j, j) for j in order],
    )


@case(
    "WORK-CLAIM-006",
    section=CLAIM,
    title="A worker is assigned only jobs whose requirements it meets",
    tier=SHOULD,
    reference='"requirements": {"service_type": "comfyui", ...}; worker "capabilities": {"services": [...]}',
    messages=("register_worker", "claim_job", "job_assigned"),
)
async def claim_matching(ctx: Ctx) -> None:
    client = await ctx.client()
    job_id = (await ctx.submit(client))["job_id"]
    other = await ctx.worker(services=[f"{ctx.service}-other"])
    jobs = await ctx.claim(other)
    ctx.check(
        not jobs,
        "a worker without the job's service_type was assigned it",
        expected="no job_assigned",
        received=[summary(j) for j in jobs],
    )
    able = await ctx.worker()
    await ctx.claim_one(able, job_id)


@case(
    "WORK-CLAIM-007",
    section=CLAIM,
    title="max_jobs above one (recorded)",
    tier=INFO,
    reference='{"type": "claim_job", "max_jobs": 1, ...}',
    messages=("claim_job", "job_assigned"),
)
async def claim_several(ctx: Ctx) -> None:
    client = await ctx.client()
    for n in range(3):
        await ctx.submit(client, priority=50, payload={"n": n})
    worker = await ctx.worker(max_concurrent_jobs=3)
    jobs = await ctx.claim(worker, max_jobs=3)
    ctx.note(f"max_jobs=3 assigned {len(jobs)} job(s)")
    for job in jobs:
        await ctx.complete(worker, job["job_id"])


@case(
    "WORK-CLAIM-008",
    section=CLAIM,
    title="Among equal priorities the oldest job is assigned first (a queue)",
    tier=SHOULD,
    reference="""
Hub -> Client (acceptance): {"type": "job_accepted", "status": "queued", "position": 3, ...}
Note over Hub: Job queued
""",
    messages=("submit_job", "claim_job", "job_assigned"),
    hint="A queue serves equal priorities first in, first out (job_accepted.position counts the jobs ahead).",
)
async def claim_fifo(ctx: Ctx) -> None:
    client = await ctx.client()
    ids = [(await ctx.submit(client, priority=50, payload={"n": n}))["job_id"] for n in range(3)]
    worker = await ctx.worker()
    order = []
    for _ in ids:
        jobs = await ctx.claim(worker)
        ctx.check(jobs, "a queued job was not assigned", expected="job_assigned", received="no job")
        order.append(jobs[0]["job_id"])
        await ctx.complete(worker, jobs[0]["job_id"])
    names = {job_id: f"submitted {n + 1}" for n, job_id in enumerate(ids)}
    ctx.check(
        order == ids,
        "equal priorities were not assigned oldest first",
        expected=["submitted 1", "submitted 2", "submitted 3"],
        received=[names.get(j, j) for j in order],
    )


@case(
    "WORK-PROGRESS-001",
    section=PROGRESS,
    title="update_job_progress reaches the client as job_update (in_progress, progress)",
    tier=MUST,
    reference="""
// Worker -> Hub
{"type": "update_job_progress", "job_id": "job-abc123", "worker_id": "worker-gpu-01", "progress": 45,
 "status": "in_progress", "message": "Generating image - step 14/30", "current_step": "sampling",
 "estimated_completion": "2024-01-15T10:08:15Z",
 "connector_details": {"connected": true, "service": "comfyui", "queue_position": 0,
                       "service_status": "processing"}}
Complete Job Processing Flow: Worker->>Hub: update_job_progress (25%);
                              Hub-->>Client: job_update (progress: 25%)
""",
    messages=("update_job_progress", "job_update"),
)
async def progress_reaches_client(ctx: Ctx) -> None:
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
        current_step="sampling",
        estimated_completion="2024-01-15T10:08:15Z",
        connector_details={
            "connected": True,
            "service": ctx.service,
            "queue_position": 0,
            "service_status": "processing",
        },
    )
    update = await ctx.expect(client, "job_update", job_id=job_id, progress=45)
    expect_field(ctx, update, "status", "in_progress")
    ctx.note(f"job_update message {update.get('message')!r}, worker_id {update.get('worker_id')!r}")


@case(
    "WORK-PROGRESS-002",
    section=PROGRESS,
    title="Progress from a worker that does not hold the job is refused and changes nothing",
    tier=SHOULD,
    reference='update_job_progress: "job_id": "job-abc123", "worker_id": "worker-gpu-01" (the job\'s worker)',
    messages=("update_job_progress", "error", "request_job_status", "response_job_status"),
)
async def progress_not_holder(ctx: Ctx) -> None:
    client = await ctx.client()
    holder = await ctx.worker()
    intruder = await ctx.worker()
    job_id = (await ctx.submit(client))["job_id"]
    await ctx.claim_one(holder, job_id)
    reply = await ctx.request(
        intruder,
        "update_job_progress",
        ("ack", "job_update"),
        job_id=job_id,
        worker_id=intruder.worker_id,
        progress=99,
    )
    ctx.check(
        reply["type"] == "error",
        "progress from a worker that does not hold the job was not refused",
        expected="error (empq: NOT_JOB_HOLDER)",
        received=summary(reply),
    )
    status = await ctx.request(client, "request_job_status", "response_job_status", job_id=job_id)
    ctx.check(
        status.get("progress") != 99 and status.get("worker_id") in (None, holder.worker_id),
        "the intruder's progress was applied",
        expected={"worker_id": holder.worker_id, "progress": "not 99"},
        received=summary(status),
    )


@case(
    "WORK-COMPLETE-001",
    section=COMPLETION,
    title="complete_job: the worker gets job_completed_ack, the client job_completed with the result",
    tier=MUST,
    reference="""
// Worker -> Hub
{"type": "complete_job", "job_id": "job-abc123", "worker_id": "worker-gpu-01", "processing_time": 67.5,
 "result": {"success": true,
            "output_files": ["https://storage.example.com/results/job-abc123/image.png"], ...}}
// Hub -> Worker (acknowledgment)
{"type": "job_completed_ack", "job_id": "job-abc123", "worker_id": "worker-gpu-01"}
// Job completion notification
{"type": "job_completed", "job_id": "job-abc123", "status": "completed", "worker_id": "worker-gpu-01",
 "priority": 75, "processing_time": 67.5, "result": {"success": true, "output_files": [...]}}
""",
    messages=("complete_job", "job_completed_ack", "job_completed"),
)
async def complete(ctx: Ctx) -> None:
    client = await ctx.client()
    worker = await ctx.worker()
    job_id = (await ctx.submit(client, priority=75))["job_id"]
    await ctx.claim_and_accept(worker, job_id)
    result = {
        "success": True,
        "output_files": [f"https://storage.example.com/results/{job_id}/image.png"],
        "metadata": {"actual_steps": 30, "cfg_scale": 7.5, "seed": 1234567890},
    }
    ack = await ctx.request(
        worker,
        "complete_job",
        "job_completed_ack",
        job_id=job_id,
        worker_id=worker.worker_id,
        processing_time=67.5,
        result=result,
    )
    expect_field(ctx, ack, "type", "job_completed_ack", "reply to complete_job")
    ctx.finished(job_id)
    expect_field(ctx, ack, "job_id", job_id)
    expect_field(ctx, ack, "worker_id", worker.worker_id)
    done = await ctx.expect(client, "job_completed", job_id=job_id)
    expect_field(ctx, done, "status", "completed")
    expect_field(ctx, done, "result", result)
    ctx.note(
        f"job_completed worker_id {done.get('worker_id')!r}, processing_time {done.get('processing_time')!r}"
    )


@case(
    "WORK-COMPLETE-002",
    section=COMPLETION,
    title="After completion the job's status is completed",
    tier=SHOULD,
    reference='{"type": "job_completed", "job_id": "job-abc123", "status": "completed", ...}',
    messages=("complete_job", "request_job_status", "response_job_status"),
)
async def complete_then_status(ctx: Ctx) -> None:
    client = await ctx.client()
    worker = await ctx.worker()
    job_id = (await ctx.submit(client))["job_id"]
    await ctx.claim_one(worker, job_id)
    await ctx.complete(worker, job_id)
    await ctx.expect(client, "job_completed", job_id=job_id)
    status = await ctx.request(client, "request_job_status", "response_job_status", job_id=job_id)
    expect_field(ctx, status, "status", "completed")


FAIL_REFERENCE = """
// Worker -> Hub
{"type": "fail_job", "job_id": "job-abc123", "worker_id": "worker-gpu-01",
 "error": "Service connection timeout",
 "retry": true, "error_details": {"error_type": "ServiceTimeoutError", ...}, "processing_time": 120.0}
// Hub -> Worker (acknowledgment)
{"type": "job_failed_ack", "job_id": "job-abc123", "worker_id": "worker-gpu-01", "retry_scheduled": true,
 "retry_delay": 15}
"""


async def _fail(ctx: Ctx, worker: SuitePeer, job_id: str, **fields: Any) -> dict[str, Any]:
    ack = await ctx.request(
        worker,
        "fail_job",
        "job_failed_ack",
        job_id=job_id,
        worker_id=worker.worker_id,
        error="Service connection timeout",
        **fields,
    )
    expect_field(ctx, ack, "type", "job_failed_ack", "reply to fail_job")
    return ack


@case(
    "WORK-FAIL-001",
    section=FAILURE,
    title="fail_job is acknowledged with job_failed_ack (job_id, worker_id, retry_scheduled)",
    tier=MUST,
    reference=FAIL_REFERENCE,
    messages=("fail_job", "job_failed_ack"),
)
async def fail_acknowledged(ctx: Ctx) -> None:
    client = await ctx.client()
    worker = await ctx.worker()
    job_id = (await ctx.submit(client))["job_id"]
    await ctx.claim_and_accept(worker, job_id)
    ack = await _fail(
        ctx,
        worker,
        job_id,
        retry=True,
        error_details={"error_type": "ServiceTimeoutError", "connector": ctx.service, "timeout_seconds": 30},
        processing_time=120.0,
    )
    expect_field(ctx, ack, "job_id", job_id)
    expect_field(ctx, ack, "worker_id", worker.worker_id)
    ctx.check(
        isinstance(ack.get("retry_scheduled"), bool),
        "job_failed_ack has no boolean retry_scheduled",
        expected="retry_scheduled: true|false",
        received=summary(ack) | {"retry_scheduled": ack.get("retry_scheduled", "(absent)")},
    )
    ctx.note(f"retry_scheduled {ack.get('retry_scheduled')!r}, retry_delay {ack.get('retry_delay')!r}")


MAX_RETRY_WAIT = 30.0


@case(
    "WORK-FAIL-002",
    section=FAILURE,
    title="A retried job comes back after retry_delay; the last failure is reported to the client",
    tier=SHOULD,
    reference=FAIL_REFERENCE + "submit_job max_retries (empq D12): with retries left the job is queued again",
    messages=("fail_job", "job_failed_ack", "claim_job", "job_assigned", "job_update"),
    budget=MAX_RETRY_WAIT + 10,
)
async def fail_retry(ctx: Ctx) -> None:
    client = await ctx.client()
    worker = await ctx.worker()
    job_id = (await ctx.submit(client, max_retries=1))["job_id"]
    await ctx.claim_one(worker, job_id)
    ack = await _fail(ctx, worker, job_id, retry=True)
    ctx.check(
        ack.get("retry_scheduled") is True,
        "a failure with retries left and retry true was not retried",
        expected={"retry_scheduled": True},
        received=summary(ack) | {"retry_scheduled": ack.get("retry_scheduled")},
    )
    delay = ack.get("retry_delay")
    ctx.check(
        isinstance(delay, int | float) and delay >= 0,
        "job_failed_ack has no retry_delay although a retry is scheduled",
        expected="retry_delay: seconds",
        received=summary(ack) | {"retry_delay": delay},
    )
    assert isinstance(delay, int | float)
    if delay > MAX_RETRY_WAIT:
        ctx.skip(f"retry_delay {delay:g} s is longer than this case waits ({MAX_RETRY_WAIT:g} s)")
    failed_at = time.monotonic()
    if delay >= 1:
        early = await ctx.claim(worker)
        ctx.check(
            not any(j["job_id"] == job_id for j in early),
            f"the job was assigned again before its retry_delay ({delay:g} s) had passed",
            expected="no job_assigned before retry_delay",
            received=[summary(j) for j in early],
        )
    again: list[dict[str, Any]] = []
    while time.monotonic() - failed_at < delay + ctx.timeout:
        wait = failed_at + delay - time.monotonic()
        if wait > 0:
            await asyncio.sleep(min(wait, 0.5))
            continue
        again = [j for j in await ctx.claim(worker) if j["job_id"] == job_id]
        if again:
            break
        await asyncio.sleep(0.1)
    ctx.check(
        again,
        f"the job did not come back within retry_delay ({delay:g} s) + {ctx.timeout:g} s",
        expected=f"job_assigned for {job_id}",
        received="no job_assigned",
    )
    ctx.note(f"came back after {time.monotonic() - failed_at:.2f} s (retry_delay {delay:g} s)")
    final = await _fail(ctx, worker, job_id, retry=True)
    ctx.check(
        final.get("retry_scheduled") is False,
        "a failure past max_retries (1) was scheduled for another retry",
        expected={"retry_scheduled": False},
        received=summary(final) | {"retry_scheduled": final.get("retry_scheduled")},
    )
    ctx.finished(job_id)
    update = await ctx.expect(client, "job_update", job_id=job_id, status="failed")
    ctx.note(f"final job_update error {update.get('error')!r}")


@case(
    "WORK-FAIL-003",
    section=FAILURE,
    title="fail_job with retry false fails the job at once and tells the client",
    tier=SHOULD,
    reference=FAIL_REFERENCE,
    messages=("fail_job", "job_failed_ack", "job_update"),
)
async def fail_no_retry(ctx: Ctx) -> None:
    client = await ctx.client()
    worker = await ctx.worker()
    job_id = (await ctx.submit(client))["job_id"]
    await ctx.claim_one(worker, job_id)
    ack = await _fail(ctx, worker, job_id, retry=False)
    ctx.finished(job_id)
    expect_field(ctx, ack, "retry_scheduled", False)
    await ctx.expect(client, "job_update", job_id=job_id, status="failed")
    status = await ctx.request(client, "request_job_status", "response_job_status", job_id=job_id)
    expect_field(ctx, status, "status", "failed")
