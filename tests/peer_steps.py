"""The steps a registered peer takes over a real socket (``empq.conformance.peer.Peer``), shared by
the tests that need the transport: submit, claim, accept, progress, complete, status. (The same
steps in-process are ``inprocess.Conn``'s methods.)"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from empq.conformance.peer import Peer


def now_ms() -> int:
    return time.time_ns() // 1_000_000


async def submit(client: Peer, **fields: Any) -> dict[str, Any]:
    fields.setdefault("job_type", "text_to_image")
    fields.setdefault("payload", {"prompt": "mountains"})
    reply = await client.request("submit_job", "job_accepted", **fields)
    assert reply["type"] == "job_accepted", reply
    return reply


async def claim(worker: Peer, max_jobs: int = 1, **fields: Any) -> list[dict[str, Any]]:
    """Claim and collect the job_assigned frames up to the claim's end (D10)."""
    rid = worker.next_id()
    await worker.send("claim_job", id=rid, worker_id=worker.worker_id, max_jobs=max_jobs, **fields)
    jobs = []
    while len(jobs) < max_jobs:
        frame = await worker.expect(("job_assigned", "ack", "error"), request_id=rid)
        if frame["type"] != "job_assigned":
            assert frame["type"] == "ack" and frame["status"] == "no_job_available", frame
            break
        jobs.append(frame)
    return jobs


async def claim_eventually(worker: Peer, job_id: str, within: float = 3.0) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        for job in await claim(worker):
            assert job["job_id"] == job_id, job
            return job
        await asyncio.sleep(0.03)
    raise AssertionError(f"{worker.name} could not claim {job_id} within {within}s")


async def accept(worker: Peer, job_id: str) -> None:
    ack = await worker.request("job_accepted_by_worker", "ack", job_id=job_id, worker_id=worker.worker_id)
    assert ack["type"] == "ack", ack


async def progress(worker: Peer, job_id: str, pct: float) -> None:
    ack = await worker.request(
        "update_job_progress", "ack", job_id=job_id, worker_id=worker.worker_id, progress=pct
    )
    assert ack["type"] == "ack", ack


async def complete(worker: Peer, job_id: str, result: dict[str, Any] | None = None, **fields: Any) -> dict:
    return await worker.request(
        "complete_job",
        "job_completed_ack",
        job_id=job_id,
        worker_id=worker.worker_id,
        result=result or {"success": True},
        **fields,
    )


async def status_of(peer: Peer, job_id: str) -> dict[str, Any]:
    return await peer.request("request_job_status", "response_job_status", job_id=job_id)


async def still_works(peer: Peer) -> None:
    assert (await peer.request("ping", "pong"))["type"] == "pong"
