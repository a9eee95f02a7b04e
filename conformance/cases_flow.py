"""Message Flow Examples: the Complete Job Processing Flow, in order."""

from __future__ import annotations

from empq.conformance.ctx import Ctx, expect_field
from empq.conformance.model import MUST, case
from empq.conformance.wire import summary

SECTION = "Message Flow Examples › Complete Job Processing Flow"


@case(
    "FLOW-001",
    section=SECTION,
    title="Complete Job Processing Flow: every step, correlated and in the documented order",
    tier=MUST,
    reference="""
Client->>Hub: submit_job            Hub-->>Client: job_accepted          (Job queued)
Worker->>Hub: claim_job             Hub-->>Worker: job_assigned
Worker->>Hub: job_accepted_by_worker                                    Hub-->>Client: job_update (assigned)
Worker->>Hub: update_job_progress (25%)   Hub-->>Client: job_update (progress: 25%)
Worker->>Hub: update_job_progress (50%)   Hub-->>Client: job_update (progress: 50%)
Worker->>Hub: update_job_progress (75%)   Hub-->>Client: job_update (progress: 75%)
Worker->>Hub: complete_job          Hub-->>Worker: job_completed_ack     Hub-->>Client: job_completed
""",
    messages=(
        "submit_job",
        "job_accepted",
        "claim_job",
        "job_assigned",
        "job_accepted_by_worker",
        "job_update",
        "update_job_progress",
        "complete_job",
        "job_completed_ack",
        "job_completed",
    ),
)
async def complete_flow(ctx: Ctx) -> None:
    client = await ctx.client()
    worker = await ctx.worker()
    accepted = await ctx.submit(client, priority=75)
    job_id = accepted["job_id"]
    expect_field(ctx, accepted, "status", "queued")
    assigned = await ctx.claim_one(worker, job_id)
    expect_field(ctx, assigned, "worker_id", worker.worker_id)
    await ctx.send(worker, "job_accepted_by_worker", job_id=job_id, worker_id=worker.worker_id)
    await ctx.expect(client, "job_update", job_id=job_id, status="assigned")
    for pct in (25, 50, 75):
        await ctx.send(
            worker,
            "update_job_progress",
            job_id=job_id,
            worker_id=worker.worker_id,
            progress=pct,
            status="in_progress",
        )
        update = await ctx.expect(client, "job_update", job_id=job_id, progress=pct)
        expect_field(ctx, update, "status", "in_progress")
    result = {"success": True, "output_files": [f"https://storage.example.com/results/{job_id}/image.png"]}
    ack = await ctx.complete(worker, job_id, result)
    expect_field(ctx, ack, "job_id", job_id)
    done = await ctx.expect(client, "job_completed", job_id=job_id)
    expect_field(ctx, done, "result", result)

    # the order in which the client received them (the wire log is in arrival order)
    steps = []
    for entry in client.wire:
        frame = entry.frame
        if entry.direction != "received" or not isinstance(frame, dict) or frame.get("job_id") != job_id:
            continue
        if frame.get("type") == "job_accepted":
            steps.append("job_accepted")
        elif frame.get("type") == "job_update" and frame.get("status") == "assigned":
            steps.append("job_update assigned")
        elif frame.get("type") == "job_update" and frame.get("progress") in (25, 50, 75):
            steps.append(f"job_update {int(frame['progress'])}%")
        elif frame.get("type") == "job_completed":
            steps.append("job_completed")
    documented = [
        "job_accepted",
        "job_update assigned",
        "job_update 25%",
        "job_update 50%",
        "job_update 75%",
        "job_completed",
    ]
    ctx.check(
        steps == documented,
        "the client received the flow's messages out of the documented order",
        expected=documented,
        received=steps,
    )
    others = sorted(
        {
            f.get("type", "?") + " " + str(f.get("status", ""))
            for f in client.backlog
            if f.get("job_id") == job_id
        }
    )
    if others:
        ctx.note(f"also received: {others}")
    ctx.note(f"worker's ack: {summary(ack)}")
