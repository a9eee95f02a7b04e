"""The lifecycle load harness works: the null hub in-process, 200 jobs, 2 clients, 2 workers;
and the null hub speaks the protocol (its frames pass the schemas and the generated models).

Proves the harness (bench.null_hub + bench.lifecycle), not the hub's speed: no timing thresholds.
"""

from __future__ import annotations

import asyncio
import math
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from empq.generated.messages.claim_job import ClaimJob
from empq.generated.messages.complete_job import CompleteJob
from empq.generated.messages.job_accepted_by_worker import JobAcceptedByWorker
from empq.generated.messages.ping import Ping
from empq.generated.messages.register_client import RegisterClient
from empq.generated.messages.register_worker import RegisterWorker
from empq.generated.messages.submit_job import SubmitJob
from empq.generated.messages.update_job_progress import UpdateJobProgress
from websockets.asyncio.client import connect

from empq import protocol

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    # bench/ is not installed; appended (not prepended) so ``empq`` stays the installed package.
    sys.path.append(str(REPO))

from bench.lifecycle import LoadConfig, run_load  # noqa: E402
from bench.null_hub import null_hub  # noqa: E402


async def _run(cfg: LoadConfig) -> dict[str, Any]:
    async with null_hub() as url:
        assert url.startswith("ws://127.0.0.1:")
        return await run_load(url, cfg, label="null hub")


def _check_sane(result: dict[str, Any], jobs: int) -> None:
    assert result["stopped_by"] == "jobs", result
    assert result["submitted"] == jobs
    assert result["accepted"] == jobs
    assert result["assigned"] == jobs
    assert result["completed"] == jobs
    assert result["refused"] == result["failed"] == 0
    assert result["errors"] == {} and result["worker_errors"] == []
    assert result["jobs_per_s"] > 0 and result["wall_s"] > 0
    for key in ("submit_to_assigned", "submit_to_completed"):
        lat = result[key]
        assert lat["n"] == jobs
        assert all(math.isfinite(lat[q]) for q in ("p50_ms", "p99_ms", "max_ms"))
        assert 0 <= lat["p50_ms"] <= lat["p99_ms"] <= lat["max_ms"]
    # A job is assigned before it completes.
    assert result["submit_to_assigned"]["p50_ms"] <= result["submit_to_completed"]["p50_ms"]
    frames = result["frames_received"]
    assert frames["job_accepted"] == frames["job_completed"] == frames["job_completed_ack"] == jobs
    assert frames["job_assigned"] == jobs
    for status in ("assigned", "accepted", "in_progress"):
        assert frames[f"job_update:{status}"] == jobs * (
            result["config"]["progress_steps"] if status == "in_progress" else 1
        )


@pytest.mark.timeout(30)
def test_lifecycle_against_null_hub() -> None:
    cfg = LoadConfig(clients=2, workers=2, jobs=200, seconds=20, in_flight=10, progress_steps=2)
    result = asyncio.run(_run(cfg))
    _check_sane(result, 200)


@pytest.mark.timeout(30)
def test_single_job_in_flight_with_batched_claims() -> None:
    # One job in flight exercises job_available wake-ups; max_jobs > 1 the claim that brings
    # fewer jobs than asked for (no end marker in the protocol).
    cfg = LoadConfig(clients=1, workers=1, jobs=50, seconds=20, in_flight=1, max_jobs=3)
    result = asyncio.run(_run(cfg))
    _check_sane(result, 50)
    assert result["no_job_available"] > 0


@pytest.mark.timeout(30)
def test_null_hub_frames_follow_the_schemas(schema_set: Any) -> None:
    """What the null hub sends is valid against schemas/ and the generated models, replies carry
    request_id (D2), and claims serve higher priority first, FIFO within a priority (D7, D10)."""
    received: list[dict[str, Any]] = []

    async def scenario() -> None:
        async with null_hub() as url:
            async with connect(url, compression=None) as c, connect(url, compression=None) as w:

                async def send(ws: Any, cls: Any, **fields: Any) -> None:
                    await ws.send(protocol.encode(protocol.make(cls, **fields)), text=True)

                async def rx(ws: Any) -> dict[str, Any]:
                    raw = await asyncio.wait_for(ws.recv(decode=False), 5)
                    protocol.parse_from_hub(raw)  # the generated models accept it
                    msg: dict[str, Any] = orjson.loads(raw)
                    errors = list(schema_set.validator(msg["type"]).iter_errors(msg))
                    assert not errors, (msg, errors[0].message)
                    assert isinstance(msg["timestamp"], int)
                    received.append(msg)
                    return msg

                assert (await rx(c))["type"] == (await rx(w))["type"] == "connection_established"
                await send(w, RegisterWorker, id="r", worker_id="w1", capabilities={"services": ["sim"]})
                assert (await rx(w))["type"] == "worker_registered"
                await send(w, ClaimJob, id="cl0", worker_id="w1")
                ack = await rx(w)
                assert (ack["type"], ack["status"], ack["request_id"]) == ("ack", "no_job_available", "cl0")
                await send(c, RegisterClient, client_type="job_client", client_id="c1")
                assert (await rx(c))["type"] == "client_registered"
                positions, ids = [], {}
                for n, prio in enumerate([10, 90, 50, 90]):
                    await send(c, SubmitJob, id=f"s{n}", job_type="noop", payload={}, priority=prio)
                    accepted = await rx(c)
                    assert accepted["type"] == "job_accepted" and accepted["request_id"] == f"s{n}"
                    positions.append(accepted["position"])
                    ids[accepted["job_id"]] = n
                    assert accepted["notified_workers"] == (1 if n == 0 else 0)  # once per claim
                assert positions == [1, 1, 2, 2]
                assert (await rx(w))["type"] == "job_available"
                await send(w, ClaimJob, id="cl1", worker_id="w1", max_jobs=4)
                order = []
                for _ in range(4):
                    assigned = await rx(w)
                    assert assigned["type"] == "job_assigned" and assigned["request_id"] == "cl1"
                    order.append(ids[assigned["job_id"]])
                    update = await rx(c)
                    assert (update["status"], update["previous_status"]) == ("assigned", "queued")
                assert order == [1, 3, 2, 0]
                job = next(j for j, n in ids.items() if n == 1)
                await send(w, JobAcceptedByWorker, id="a", job_id=job, worker_id="w1")
                assert (await rx(w))["status"] == "processed"
                assert (await rx(c))["status"] == "accepted"
                await send(w, UpdateJobProgress, job_id=job, worker_id="w1", progress=50.0)
                assert ((await rx(c))["status"], received[-1]["progress"]) == ("in_progress", 50.0)
                await send(w, CompleteJob, id="cmp", job_id=job, worker_id="w1", result={"success": True})
                assert (await rx(w))["type"] == "job_completed_ack"
                done = await rx(c)
                assert (done["type"], done["status"], done["worker_id"]) == (
                    "job_completed",
                    "completed",
                    "w1",
                )
                await send(c, Ping, id="p")
                assert (await rx(c))["request_id"] == "p"

    asyncio.run(scenario())
    assert len(received) == 24
