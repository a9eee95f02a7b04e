"""hub/jobs.py: each job transition from start to end, in-process on a real Redis."""

from __future__ import annotations

import asyncio

import orjson

SUBMIT = {"job_type": "text_to_image", "payload": {"prompt": "a lighthouse"}}


async def started(core_hub, **settings):
    hub = await core_hub(**settings)
    return hub, await hub.client(), await hub.worker()


async def claim(worker):
    return await worker.request("claim_job", worker_id=worker.worker_id)


async def test_a_job_from_submit_to_completion_tells_its_client_each_step(core_hub):
    hub, client, worker = await started(core_hub)
    job = await client.request("submit_job", **SUBMIT)
    job_id = job["job_id"]
    assigned = await claim(worker)
    assert assigned["type"] == "job_assigned" and assigned["payload"] == SUBMIT["payload"]
    assert hub.core.workers.get(worker.worker_id).held == {job_id}
    await worker.request("job_accepted_by_worker", job_id=job_id, worker_id=worker.worker_id)
    await worker.request("update_job_progress", job_id=job_id, worker_id=worker.worker_id, progress=40)
    done = await worker.request(
        "complete_job", job_id=job_id, worker_id=worker.worker_id, result={"success": True, "url": "u"}
    )
    assert done["type"] == "job_completed_ack"
    steps = [(f["status"], f.get("previous_status")) for f in client.of("job_update")]
    assert steps == [("assigned", "queued"), ("accepted", "assigned"), ("in_progress", "accepted")]
    (completed,) = client.of("job_completed")
    assert completed["result"] == {"success": True, "url": "u"} and completed["worker_id"] == worker.worker_id
    assert hub.core.workers.get(worker.worker_id).held == set()  # its slot is free
    assert job_id not in hub.core.subs.awaiting  # nobody waits on it any more


async def test_the_payload_goes_from_submit_to_job_assigned_as_sent_without_a_second_parse(core_hub):
    hub, client, worker = await started(core_hub)
    payload = {
        "prompt": "é ✓ \u2028",
        "n": 12345678901234567,
        "f": 0.1,
        "deep": [{"a": [None, True]}],
        "e": {},
    }
    job = await client.request("submit_job", job_type="t", payload=payload)
    stored = await hub.core.store.status(job["job_id"])
    assert orjson.loads(stored["payload"]) == payload
    claimed = await hub.core.store.claim(worker.worker_id, {"services": ["comfyui"]}, 1, 1000, [])
    assert isinstance(claimed[0].payload, str)  # JSON text, embedded as is in job_assigned
    frame = hub.core.jobs.assignment(claimed[0], worker.worker_id, 1000, "rid-1")
    assert orjson.loads(frame)["payload"] == payload
    assert frame.startswith(b'{"type":"job_assigned"') and b'"request_id":"rid-1"' in frame


async def test_max_retries_defaults_to_the_hubs_setting_unless_the_job_says(core_hub):
    hub, client, _ = await started(core_hub, default_max_retries=7)
    default = await client.request("submit_job", **SUBMIT)
    explicit = await client.request("submit_job", **SUBMIT, max_retries=0)
    assert (await hub.core.store.status(default["job_id"]))["max_retries"] == "7"
    assert (await hub.core.store.status(explicit["job_id"]))["max_retries"] == "0"


async def test_a_failure_with_retries_left_is_queued_again_after_the_delay(core_hub):
    hub, client, worker = await started(core_hub, default_max_retries=1)
    job = await client.request("submit_job", **SUBMIT)
    await claim(worker)
    ack = await worker.request("fail_job", job_id=job["job_id"], worker_id=worker.worker_id, error="oom")
    assert ack["retry_scheduled"] is True and ack["retry_count"] == 1
    (update,) = [f for f in client.of("job_update") if f["status"] == "queued"]
    assert update["retry_count"] == 1 and update["error"] == "oom"
    await asyncio.sleep(0.1)  # the retry delay (0.05 s here)
    await hub.core.tick()  # the sweep makes it claimable again
    again = await claim(worker)
    assert again["type"] == "job_assigned" and again["retry_count"] == 1
    final = await worker.request("fail_job", job_id=job["job_id"], worker_id=worker.worker_id, error="oom")
    assert final["retry_scheduled"] is False
    assert client.of("job_update")[-1]["status"] == "failed"


async def test_cancelling_a_held_job_tells_its_worker_and_frees_the_slot(core_hub):
    hub, client, worker = await started(core_hub)
    job = await client.request("submit_job", **SUBMIT)
    await claim(worker)
    cancelled = await client.request("cancel_job", job_id=job["job_id"], reason="changed my mind")
    assert cancelled["type"] == "job_cancelled" and cancelled["reason"] == "changed my mind"
    (told,) = worker.of("job_cancelled")
    assert told["worker_id"] == worker.worker_id and told["job_id"] == job["job_id"]
    assert hub.core.workers.get(worker.worker_id).held == set()
    late = await worker.request(
        "complete_job", job_id=job["job_id"], worker_id=worker.worker_id, result={"success": True}
    )
    assert late["error_code"] == "NOT_JOB_HOLDER"


async def test_an_expired_claim_returns_the_job_and_tells_worker_and_client(core_hub):
    hub, client, worker = await started(core_hub)
    job = await client.request("submit_job", **SUBMIT)
    assert (await worker.request("claim_job", worker_id=worker.worker_id, claim_timeout=1000))["job_id"]
    await asyncio.sleep(1.05)
    await hub.core.tick()
    for conn in (worker, client):
        update = conn.of("job_update")[-1]
        assert (update["status"], update["previous_status"]) == ("queued", "assigned"), conn.frames
    assert hub.core.workers.get(worker.worker_id).held == set()
    assert (await claim(worker))["job_id"] == job["job_id"]


async def test_a_lost_worker_hands_its_jobs_back_counting_a_retry(core_hub):
    hub, client, worker = await started(core_hub)
    job = await client.request("submit_job", **SUBMIT)
    await claim(worker)
    events = await hub.core.jobs.release_worker(worker.worker_id, lost=True)
    assert [(e.event, e.job_id, e.previous) for e in events] == [("release", job["job_id"], "assigned")]
    update = client.of("job_update")[-1]
    assert update["status"] == "queued" and "lost" in update["message"]
    assert (await hub.core.store.status(job["job_id"]))["retry_count"] == "1"


async def test_a_step_on_a_job_no_longer_held_frees_the_slot_here(core_hub):
    hub, client, worker = await started(core_hub)
    job = await client.request("submit_job", **SUBMIT)
    await claim(worker)
    await hub.core.store.release_worker(worker.worker_id, count_retry=False)  # behind the hub's back
    refused = await worker.request(
        "complete_job", job_id=job["job_id"], worker_id=worker.worker_id, result={"success": True}
    )
    assert refused["error_code"] == "NOT_JOB_HOLDER"
    assert hub.core.workers.get(worker.worker_id).held == set()


async def test_a_final_message_reaches_a_connection_once_when_event_and_reread_race(core_hub):
    hub, client, worker = await started(core_hub)
    job = await client.request("submit_job", **SUBMIT)
    job_id = job["job_id"]
    await claim(worker)
    hub.core.subs.await_final(job_id, client.conn_id)  # as if an event could have been lost
    await worker.request("complete_job", job_id=job_id, worker_id=worker.worker_id, result={"success": True})
    hub.core.subs.await_final(job_id, client.conn_id)  # the re-read races the event...
    await hub.core.jobs.resync_finals("test")  # ...and finds it final: not sent twice
    assert len(client.of("job_completed")) == 1
    # subscribing again on this connection does not send it a second time (D14: once per
    # connection); another connection subscribing gets it
    await client.request("subscribe_job", job_id=job_id)
    assert len(client.of("job_completed")) == 1
    other = await hub.client(client_id=client.registered["client_id"])  # the same client, reconnected
    await other.request("subscribe_job", job_id=job_id)
    assert len(other.of("job_completed")) == 1


# --- the reference's Complete Job Processing Flow, and the other ends of a job ------------------------

REQ = {"service_type": "comfyui", "component": "text-to-image-xl", "hardware": {"gpu_memory_gb": 8}}
CAPS = {"components": ["text-to-image-xl"], "hardware": {"gpu_memory_gb": 16, "gpu_model": "RTX 4090"}}


async def test_complete_job_processing_flow(core_hub):
    hub = await core_hub()
    client = await hub.client("customer-123")
    worker = await hub.worker(subscribe=True, **CAPS)
    accepted = await client.submit(priority=75, requirements=REQ, customer_id="customer-123")
    job_id = accepted["job_id"]
    assert job_id.startswith("job-") and accepted["status"] == "queued"
    assert accepted["position"] == 1 and accepted["notified_workers"] == 1
    assert accepted["estimated_start"] is None  # no processing time measured yet
    (available,) = worker.of("job_available", job_id=job_id)
    assert available["requirements_summary"] == {
        "service_type": "comfyui",
        "component": "text-to-image-xl",
        "gpu_memory_min": 8,
    }

    (assigned,) = await worker.claim(claim_timeout=30000)
    assert assigned["job_id"] == job_id and assigned["worker_id"] == worker.worker_id
    assert assigned["payload"] == {"prompt": "mountains"} and assigned["priority"] == 75
    assert assigned["requirements"] == REQ and assigned["claim_timeout"] == 30000
    await worker.send("job_accepted_by_worker", job_id=job_id, worker_id=worker.worker_id)
    (update,) = client.of("job_update", job_id=job_id, status="assigned")
    assert update["worker_id"] == worker.worker_id
    assert client.of("job_update", job_id=job_id, status="accepted")
    for pct in (25, 50, 75):
        await worker.send(
            "update_job_progress",
            job_id=job_id,
            worker_id=worker.worker_id,
            progress=pct,
            message=f"step {pct}",
        )
        (update,) = client.of("job_update", job_id=job_id, progress=pct)
        assert update["status"] == "in_progress" and update["message"] == f"step {pct}"
    result = {"success": True, "output_files": ["https://storage.example.com/x.png"]}
    await worker.send(
        "complete_job", job_id=job_id, worker_id=worker.worker_id, result=result, processing_time=67.5
    )
    assert worker.of("job_completed_ack", job_id=job_id)
    (done,) = client.of("job_completed", job_id=job_id)
    assert (
        done["result"] == result and done["processing_time"] == 67.5 and done["worker_id"] == worker.worker_id
    )

    status = await client.status(job_id)
    assert status["status"] == "completed" and status["progress"] == 100 and status["result"] == result
    # with a processing time measured (by the next timer tick), estimates appear
    await hub.core.tick()
    later = await client.submit(requirements=REQ)
    assert later["estimated_start"] is not None


async def test_retry_with_backoff_then_final_failure(core_hub):
    hub = await core_hub()
    client = await hub.client()
    job = await client.submit(requirements={"service_type": "flaky"}, max_retries=2)
    worker = await hub.worker(services=["flaky"])
    delays = []
    for attempt in range(3):
        jobs = await hub.until(worker.claim)  # the timers make a retry claimable after its delay
        assert jobs[0]["job_id"] == job["job_id"]
        assert jobs[0]["retry_count"] == attempt
        ack = await worker.act("fail_job", job["job_id"], error="Service connection timeout")
        if attempt < 2:
            assert ack["retry_scheduled"] is True and ack["retry_count"] == attempt + 1
            delays.append(ack["retry_delay"])
            update = client.of("job_update", job_id=job["job_id"], status="queued")[-1]
            assert update["retry_count"] == attempt + 1
            # not claimable before the delay has passed
            assert await worker.claim() == []
        else:
            assert ack["retry_scheduled"] is False and ack["retry_delay"] is None
    assert delays == [0.05, 0.1]  # base 0.05 s doubling (test config)
    (final,) = client.of("job_update", job_id=job["job_id"], status="failed")
    assert final["error"] == "Service connection timeout"
    status = await client.status(job["job_id"])
    assert status["status"] == "failed" and status["retry_count"] == 2


async def test_fail_without_retry_fails_at_once(core_hub):
    hub, client, worker = await started(core_hub)
    job = await client.submit(**SUBMIT)
    await claim(worker)
    ack = await worker.act("fail_job", job["job_id"], error="bad prompt", retry=False)
    assert ack["retry_scheduled"] is False
    assert client.of("job_update", job_id=job["job_id"], status="failed")


async def test_cancel_running_job_tells_the_worker(core_hub):
    hub, client, worker = await started(core_hub)
    job = await client.submit(**SUBMIT)
    await claim(worker)
    await worker.send("job_accepted_by_worker", job_id=job["job_id"], worker_id=worker.worker_id)
    await worker.send("update_job_progress", job_id=job["job_id"], worker_id=worker.worker_id, progress=10)
    assert client.of("job_update", job_id=job["job_id"], status="in_progress")
    await client.request("cancel_job", job_id=job["job_id"])
    (stop,) = worker.of("job_cancelled", job_id=job["job_id"])
    assert stop["status"] == "cancelled"
    late = await worker.act("complete_job", job["job_id"], result={"success": True})
    assert late["error_code"] == "NOT_JOB_HOLDER"
    assert (await client.status(job["job_id"]))["status"] == "cancelled"


async def test_job_past_its_time_limit_ends_in_timeout(core_hub):
    hub, client, worker = await started(core_hub)
    job = await client.submit(**SUBMIT, timeout_seconds=0.2)
    await claim(worker)
    await worker.send("job_accepted_by_worker", job_id=job["job_id"], worker_id=worker.worker_id)
    (told,) = await hub.until(lambda: worker.of("job_update", job_id=job["job_id"], status="timeout"))
    assert told["error"] == "job exceeded its time limit"
    assert client.of("job_update", job_id=job["job_id"], status="timeout")
    assert hub.core.workers.get(worker.worker_id).held == set()  # its slot is free
    late = await worker.act("complete_job", job["job_id"], result={"success": True})
    assert late["error_code"] == "INVALID_STATE"
    assert (await client.status(job["job_id"]))["status"] == "timeout"
