"""hub/workers.py (and the core's reaper): workers' liveness — heartbeats and any frame as signs
of life, the reconnect grace, lost workers (spec D16) — and who is told ``job_available`` (D7).
In-process on a real redis-server; timers run as the test ticks them."""

from __future__ import annotations

import time


async def test_silent_worker_is_reaped_and_its_job_requeued_while_a_chatty_one_stays(core_hub):
    hub = await core_hub(heartbeat_interval_ms=200, heartbeat_timeout_ms=600, reconnect_grace_ms=300)
    monitor = await hub.monitor()
    client = await hub.client()
    job = await client.submit(requirements={"service_type": "hb"})
    silent = await hub.worker(services=["hb"])
    chatty = await hub.worker(services=["hb"])
    chatty_since = time.monotonic()
    (assigned,) = await silent.claim()
    assert assigned["job_id"] == job["job_id"] and assigned["retry_count"] == 0
    await silent.accept(job["job_id"])
    last_ping = [0.0]

    async def keep_talking() -> None:  # any frame is a sign of life, not only heartbeats
        if time.monotonic() - last_ping[0] >= 0.15:
            last_ping[0] = time.monotonic()
            await chatty.send("ping")

    (requeued,) = await hub.until(
        lambda: client.of("job_update", job_id=job["job_id"], status="queued"), also=keep_talking
    )
    assert requeued["previous_status"] == "accepted"
    (alert,) = monitor.of("system_alert", category="worker_lost")
    assert alert["details"]["worker_id"] == silent.worker_id
    assert alert["details"]["jobs_requeued"] == [job["job_id"]]
    assert silent.closed == 4000  # the hub closed the silent worker
    status = await client.status(job["job_id"])
    assert status["status"] == "queued" and status["retry_count"] == 1  # counts as a retry
    # the chatty worker outlives two heartbeat timeouts and takes the job over
    await hub.ticks(max(0.0, 1.6 - (time.monotonic() - chatty_since)) + 0.3, also=keep_talking)
    assert len(monitor.of("system_alert", category="worker_lost")) == 1
    assert chatty.closed is None
    (again,) = await chatty.claim()
    assert again["job_id"] == job["job_id"] and again["retry_count"] == 1
    await chatty.accept(job["job_id"])
    await chatty.complete(job["job_id"])
    assert client.of("job_completed", job_id=job["job_id"])


# --- reconnect grace (D16) ----------------------------------------------------------------------


async def test_worker_reconnecting_within_the_grace_keeps_its_job(core_hub):
    hub = await core_hub(reconnect_grace_ms=300)
    client = await hub.client()
    job = await client.submit(requirements={"service_type": "grace"})
    worker = await hub.worker(services=["grace"])
    assert "resumed_jobs" not in worker.registered
    await worker.claim()
    await worker.accept(job["job_id"])
    await worker.act("update_job_progress", job["job_id"], progress=10)
    await hub.drop(worker)
    back = await hub.worker(worker.worker_id, services=["grace"])
    assert back.registered["resumed_jobs"] == [job["job_id"]]
    await hub.ticks(0.5)  # past the grace: coming back cancelled the departure
    assert client.of("job_update", job_id=job["job_id"], status="queued") == []
    await back.act("update_job_progress", job["job_id"], progress=60)
    assert client.of("job_update", job_id=job["job_id"], status="in_progress", progress=60)
    await back.complete(job["job_id"])
    (done,) = client.of("job_completed", job_id=job["job_id"])
    assert done["worker_id"] == worker.worker_id
    assert (await client.status(job["job_id"]))["retry_count"] == 0


async def test_worker_back_after_the_grace_has_lost_its_job(core_hub):
    hub = await core_hub(reconnect_grace_ms=300)
    client = await hub.client()
    job = await client.submit(requirements={"service_type": "late"})
    worker = await hub.worker(services=["late"])
    await worker.claim()
    await worker.accept(job["job_id"])
    standby = await hub.worker(services=["late"], subscribe=True)
    await hub.drop(worker)
    (requeued,) = await hub.until(lambda: client.of("job_update", job_id=job["job_id"], status="queued"))
    assert requeued["previous_status"] == "accepted"
    assert standby.of("job_available", job_id=job["job_id"])
    (taken,) = await standby.claim()
    assert taken["job_id"] == job["job_id"] and taken["retry_count"] == 1
    back = await hub.worker(worker.worker_id, services=["late"])
    assert "resumed_jobs" not in back.registered
    late = await back.act("complete_job", job["job_id"], result={"success": True})
    assert late["error_code"] == "NOT_JOB_HOLDER"
    await standby.accept(job["job_id"])
    await standby.complete(job["job_id"])
    (done,) = client.of("job_completed", job_id=job["job_id"])
    assert done["worker_id"] == standby.worker_id


# --- job_available (D7) ----------------------------------------------------------------------------


async def test_idle_subscribed_workers_get_job_available_once_until_they_claim(core_hub):
    hub = await core_hub()
    worker = await hub.worker(services=["avail"], subscribe=True)
    quiet = await hub.worker(services=["avail"])
    client = await hub.client()
    first = await client.submit(requirements={"service_type": "avail"})
    second = await client.submit(requirements={"service_type": "avail"})
    assert first["notified_workers"] == 1 and second["notified_workers"] == 0
    assert len(worker.of("job_available", job_id=first["job_id"])) == 1
    assert worker.of("job_available", job_id=second["job_id"]) == []
    assert quiet.of("job_available") == []
    await worker.claim()
    third = await client.submit(requirements={"service_type": "avail"})
    assert third["notified_workers"] == 0  # busy now: its one slot is taken


async def test_job_available_reaches_a_worker_again_once_it_has_a_free_slot(core_hub):
    """job_available goes through the workers that may be idle (not every worker): a busy or
    draining worker is skipped, and told again once it completes its job or reports itself idle."""
    hub = await core_hub()
    client = await hub.client("idle")
    worker = await hub.worker(subscribe=True)
    first = (await client.submit())["job_id"]
    assert worker.of("job_available", job_id=first)
    (claimed,) = await worker.claim()
    assert claimed["job_id"] == first
    await worker.accept(first)
    busy_job = (await client.submit())["job_id"]  # one slot, held: not told
    assert worker.of("job_available", job_id=busy_job) == []
    await worker.complete(first)  # a free slot again; still waiting for its claim: tell it
    later = (await client.submit())["job_id"]
    assert worker.of("job_available", job_id=later)
    (claimed,) = await worker.claim()
    assert claimed["job_id"] == busy_job  # FIFO: the job it was not told about comes first
    await worker.accept(busy_job)
    await worker.request("worker_heartbeat", worker_id=worker.worker_id, status="draining")
    await worker.complete(busy_job)
    drained = (await client.submit())["job_id"]  # draining: no free slot
    assert worker.of("job_available", job_id=drained) == []
    await worker.request("worker_heartbeat", worker_id=worker.worker_id, status="idle")
    another = (await client.submit())["job_id"]  # idle again, not told since its last claim: told
    assert worker.of("job_available", job_id=another)
    assert worker.worker_id not in hub.core.workers.maybe_idle  # told: out until it claims again
