"""The hub over real sockets on a real redis-server: every flow of the reference's Complete Job
Processing Flow and the sections Client Registration, Job Management, Worker Communication and
Subscription (issue 3)."""

from __future__ import annotations

import asyncio

import pytest
from empq.conformance.peer import PeerError

REQ = {"service_type": "comfyui", "component": "text-to-image-xl", "hardware": {"gpu_memory_gb": 8}}
CAPS = {"components": ["text-to-image-xl"], "hardware": {"gpu_memory_gb": 16, "gpu_model": "RTX 4090"}}


async def submit(client, **fields):
    fields.setdefault("job_type", "text_to_image")
    fields.setdefault("payload", {"prompt": "mountains"})
    reply = await client.request("submit_job", "job_accepted", **fields)
    assert reply["type"] == "job_accepted", reply
    return reply


async def claim(worker, **fields):
    """Claim and collect the job_assigned frames up to the claim's end (D10)."""
    rid = worker.next_id()
    max_jobs = fields.pop("max_jobs", 1)
    await worker.send("claim_job", id=rid, worker_id=worker.worker_id, max_jobs=max_jobs, **fields)
    jobs = []
    while len(jobs) < max_jobs:
        frame = await worker.expect(("job_assigned", "ack", "error"), request_id=rid)
        if frame["type"] != "job_assigned":
            assert frame["type"] == "ack" and frame["status"] == "no_job_available", frame
            break
        jobs.append(frame)
    return jobs


async def run_job(worker, job_id, progress=(50,), result=None):
    await worker.send("job_accepted_by_worker", job_id=job_id, worker_id=worker.worker_id)
    for p in progress:
        await worker.send("update_job_progress", job_id=job_id, worker_id=worker.worker_id, progress=p)
    ack = await worker.request(
        "complete_job",
        "job_completed_ack",
        job_id=job_id,
        worker_id=worker.worker_id,
        result=result or {"success": True},
    )
    assert ack["type"] == "job_completed_ack", ack


async def test_complete_job_processing_flow(peers):
    client = await peers.client(customer_id="customer-123")
    worker = await peers.worker(**CAPS)
    accepted = await submit(client, priority=75, requirements=REQ, customer_id="customer-123")
    job_id = accepted["job_id"]
    assert job_id.startswith("job-") and accepted["status"] == "queued"
    assert accepted["position"] == 1 and accepted["notified_workers"] == 1
    assert accepted["estimated_start"] is None  # no processing time measured yet
    available = await worker.expect("job_available", job_id=job_id)
    assert available["requirements_summary"] == {
        "service_type": "comfyui",
        "component": "text-to-image-xl",
        "gpu_memory_min": 8,
    }

    (assigned,) = await claim(worker, claim_timeout=30000)
    assert assigned["job_id"] == job_id and assigned["worker_id"] == worker.worker_id
    assert assigned["payload"] == {"prompt": "mountains"} and assigned["priority"] == 75
    assert assigned["requirements"] == REQ and assigned["claim_timeout"] == 30000
    await worker.send("job_accepted_by_worker", job_id=job_id, worker_id=worker.worker_id)
    update = await client.expect("job_update", job_id=job_id, status="assigned")
    assert update["worker_id"] == worker.worker_id
    await client.expect("job_update", job_id=job_id, status="accepted")
    for pct in (25, 50, 75):
        await worker.send(
            "update_job_progress",
            job_id=job_id,
            worker_id=worker.worker_id,
            progress=pct,
            message=f"step {pct}",
        )
        update = await client.expect("job_update", job_id=job_id, progress=pct)
        assert update["status"] == "in_progress" and update["message"] == f"step {pct}"
    result = {"success": True, "output_files": ["https://storage.example.com/x.png"]}
    await worker.send(
        "complete_job", job_id=job_id, worker_id=worker.worker_id, result=result, processing_time=67.5
    )
    await worker.expect("job_completed_ack", job_id=job_id)
    done = await client.expect("job_completed", job_id=job_id)
    assert (
        done["result"] == result and done["processing_time"] == 67.5 and done["worker_id"] == worker.worker_id
    )

    status = await client.request("request_job_status", "response_job_status", job_id=job_id)
    assert status["status"] == "completed" and status["progress"] == 100 and status["result"] == result
    # with a processing time measured, estimates appear
    await asyncio.sleep(0.1)
    later = await submit(client, requirements=REQ)
    assert later["estimated_start"] is not None


async def test_registration_rules(peers):
    raw = await peers.raw()
    refused = await raw.request("submit_job", "job_accepted", job_type="t", payload={})
    assert refused["error_code"] == "NOT_REGISTERED"
    pong = await raw.request("ping", "pong")
    assert pong["type"] == "pong"
    client = await peers.client()
    again = await client.request(
        "register_worker", "worker_registered", worker_id="w", capabilities={"services": ["x"]}
    )
    assert again["error_code"] == "ALREADY_REGISTERED"
    denied = await client.request("claim_job", "job_assigned", worker_id="w")
    assert denied["error_code"] == "PERMISSION_DENIED"
    monitor = await peers.monitor()
    denied = await monitor.request("submit_job", "job_accepted", job_type="t", payload={})
    assert denied["error_code"] == "PERMISSION_DENIED"
    worker = await peers.worker()
    denied = await worker.request("submit_job", "job_accepted", job_type="t", payload={})
    assert denied["error_code"] == "PERMISSION_DENIED"
    twin = await peers.raw()
    dup = await twin.request(
        "register_worker",
        "worker_registered",
        worker_id=worker.worker_id,
        capabilities={"services": ["comfyui"]},
    )
    assert dup["error_code"] == "ALREADY_REGISTERED"
    other = await worker.request("worker_heartbeat", "worker_heartbeat_ack", worker_id="someone-else")
    assert other["error_code"] == "PERMISSION_DENIED"


async def test_priority_then_fifo_over_1000_jobs(peers):
    client = await peers.client()
    expected = []
    for i in range(1000):
        priority = (i * 37) % 5 * 20  # 0, 20, 40, 60, 80 interleaved
        reply = await submit(
            client, priority=priority, payload={"i": i}, requirements={"service_type": "order"}
        )
        expected.append((-priority, i, reply["job_id"]))
    worker = await peers.worker(services=["order"], subscribe=False, max_concurrent_jobs=100)
    order = []
    while len(order) < 1000:
        jobs = await claim(worker, max_jobs=100)
        assert jobs
        for job in jobs:
            order.append(job["job_id"])
            await worker.send(
                "complete_job", job_id=job["job_id"], worker_id=worker.worker_id, result={"success": True}
            )
        for job in jobs:
            await worker.expect("job_completed_ack", job_id=job["job_id"])
    assert order == [job_id for _, _, job_id in sorted(expected)]


async def test_positions_count_jobs_ahead_across_classes(peers):
    client = await peers.client()
    a = await submit(client, priority=50, requirements={"service_type": "pos-a"})
    b = await submit(client, priority=50, requirements={"service_type": "pos-b"})
    c = await submit(client, priority=90, requirements={"service_type": "pos-a"})
    d = await submit(client, priority=10, requirements={"service_type": "pos-b"})
    assert [a["position"], b["position"], c["position"], d["position"]] == [1, 2, 1, 4]
    status = await client.request("request_job_status", "response_job_status", job_id=a["job_id"])
    assert status["position"] == 2 and status["status"] == "queued"


async def test_20_workers_race_for_200_jobs_none_assigned_twice(peers):
    client = await peers.client()
    ids = {(await submit(client, requirements={"service_type": "race"}))["job_id"] for _ in range(200)}
    workers = [
        await peers.worker(services=["race"], subscribe=False, max_concurrent_jobs=3) for _ in range(20)
    ]

    async def drain(worker):
        got = []
        while True:
            jobs = await claim(worker, max_jobs=3)
            if not jobs:
                return got
            for job in jobs:
                got.append(job["job_id"])
                await worker.send("job_accepted_by_worker", job_id=job["job_id"], worker_id=worker.worker_id)
                await worker.send(
                    "complete_job", job_id=job["job_id"], worker_id=worker.worker_id, result={"success": True}
                )
            for job in jobs:
                await worker.expect("job_completed_ack", job_id=job["job_id"])

    results = await asyncio.gather(*(drain(w) for w in workers))
    everything = [job for got in results for job in got]
    assert len(everything) == len(set(everything)) == 200
    assert set(everything) == ids
    assert sum(1 for got in results if got) > 1  # the work was shared


@pytest.mark.parametrize(
    ("requirements", "capabilities", "runs"),
    [
        ({"service_type": "comfyui"}, {"services": ["comfyui"]}, True),
        ({"service_type": "a1111"}, {"services": ["comfyui"]}, False),
        ({"component": "upscale"}, {"services": ["x"], "components": ["upscale"]}, True),
        ({"component": "upscale"}, {"services": ["x"], "components": ["inpaint"]}, False),
        ({"component": "upscale"}, {"services": ["x"]}, False),
        ({"hardware": {"gpu_memory_gb": 8}}, {"services": ["x"], "hardware": {"gpu_memory_gb": 8}}, True),
        ({"hardware": {"gpu_memory_gb": 24}}, {"services": ["x"], "hardware": {"gpu_memory_gb": 16}}, False),
        ({"hardware": {"gpu_memory_gb": 8}}, {"services": ["x"]}, False),
        (
            {"hardware": {"cpu_cores": 4, "ram_gb": 32}},
            {"services": ["x"], "hardware": {"cpu_cores": 8, "ram_gb": 64}},
            True,
        ),
        ({"hardware": {"cpu_cores": 16}}, {"services": ["x"], "hardware": {"cpu_cores": 8}}, False),
        (None, {"services": ["x"], "allowed_customers": ["acme"]}, True),  # job of customer acme
        (None, {"services": ["x"], "allowed_customers": ["other"]}, False),
    ],
)
async def test_matching_rules(peers, requirements, capabilities, runs):
    client = await peers.client(customer_id="acme")
    caps = dict(capabilities)
    worker = await peers.worker(services=caps.pop("services"), **caps)
    fields = {"requirements": requirements} if requirements else {}
    job = await submit(client, **fields)
    assert job["notified_workers"] == (1 if runs else 0)
    jobs = await claim(worker)
    assert [j["job_id"] for j in jobs] == ([job["job_id"]] if runs else [])


async def test_preferred_types_break_ties_within_a_priority(peers):
    client = await peers.client()
    first = await submit(client, job_type="text_to_image", priority=50, requirements={"service_type": "pref"})
    second = await submit(client, job_type="upscaling", priority=50, requirements={"service_type": "pref"})
    urgent = await submit(
        client, job_type="text_to_image", priority=60, requirements={"service_type": "pref"}
    )
    worker = await peers.worker(services=["pref"], subscribe=False, max_concurrent_jobs=3)
    jobs = await claim(worker, max_jobs=3, preferred_types=["upscaling"])
    assert [j["job_id"] for j in jobs] == [urgent["job_id"], second["job_id"], first["job_id"]]


async def test_claim_timeout_requeues_at_original_place(peers):
    client = await peers.client()
    first = await submit(client, requirements={"service_type": "slow"})
    second = await submit(client, requirements={"service_type": "slow"})
    lazy = await peers.worker(services=["slow"], subscribe=False)
    (job,) = await claim(lazy, claim_timeout=150)
    assert job["job_id"] == first["job_id"]
    told = await lazy.expect("job_update", job_id=first["job_id"], status="queued", timeout=3)
    assert told["previous_status"] == "assigned"
    late = await lazy.request(
        "job_accepted_by_worker", "ack", job_id=first["job_id"], worker_id=lazy.worker_id
    )
    assert late["error_code"] == "NOT_JOB_HOLDER"
    other = await peers.worker(services=["slow"], subscribe=False, max_concurrent_jobs=2)
    jobs = await claim(other, max_jobs=2)
    assert [j["job_id"] for j in jobs] == [first["job_id"], second["job_id"]]


async def test_retry_with_backoff_then_final_failure(peers):
    client = await peers.client()
    job = await submit(client, requirements={"service_type": "flaky"}, max_retries=2)
    worker = await peers.worker(services=["flaky"], subscribe=False)
    delays = []
    for attempt in range(3):
        for _ in range(100):
            jobs = await claim(worker)
            if jobs:
                break
            await asyncio.sleep(0.02)
        assert jobs and jobs[0]["job_id"] == job["job_id"]
        assert jobs[0]["retry_count"] == attempt
        ack = await worker.request(
            "fail_job",
            "job_failed_ack",
            job_id=job["job_id"],
            worker_id=worker.worker_id,
            error="Service connection timeout",
        )
        if attempt < 2:
            assert ack["retry_scheduled"] is True and ack["retry_count"] == attempt + 1
            delays.append(ack["retry_delay"])
            update = await client.expect("job_update", job_id=job["job_id"], status="queued")
            assert update["retry_count"] == attempt + 1
            # not claimable before the delay has passed
            assert await claim(worker) == []
        else:
            assert ack["retry_scheduled"] is False and ack["retry_delay"] is None
    assert delays == [0.05, 0.1]  # base 0.05 s doubling (test config)
    final = await client.expect("job_update", job_id=job["job_id"], status="failed")
    assert final["error"] == "Service connection timeout"
    status = await client.request("request_job_status", "response_job_status", job_id=job["job_id"])
    assert status["status"] == "failed" and status["retry_count"] == 2


async def test_fail_without_retry_fails_at_once(peers):
    client = await peers.client()
    job = await submit(client, requirements={"service_type": "noretry"})
    worker = await peers.worker(services=["noretry"], subscribe=False)
    await claim(worker)
    ack = await worker.request(
        "fail_job",
        "job_failed_ack",
        job_id=job["job_id"],
        worker_id=worker.worker_id,
        error="bad prompt",
        retry=False,
    )
    assert ack["retry_scheduled"] is False
    await client.expect("job_update", job_id=job["job_id"], status="failed")


async def test_cancel_queued_job(peers):
    client = await peers.client()
    job = await submit(client, requirements={"service_type": "cancel-q"})
    cancelled = await client.request(
        "cancel_job", "job_cancelled", job_id=job["job_id"], reason="User requested"
    )
    assert cancelled["status"] == "cancelled" and cancelled["cancelled_at"] > 0
    worker = await peers.worker(services=["cancel-q"], subscribe=False)
    assert await claim(worker) == []
    again = await client.request("cancel_job", "job_cancelled", job_id=job["job_id"])
    assert again["error_code"] == "INVALID_STATE"
    missing = await client.request("cancel_job", "job_cancelled", job_id="job-does-not-exist")
    assert missing["error_code"] == "JOB_NOT_FOUND"


async def test_cancel_running_job_tells_the_worker(peers):
    client = await peers.client()
    job = await submit(client, requirements={"service_type": "cancel-r"})
    worker = await peers.worker(services=["cancel-r"], subscribe=False)
    await claim(worker)
    await worker.send("job_accepted_by_worker", job_id=job["job_id"], worker_id=worker.worker_id)
    await worker.send("update_job_progress", job_id=job["job_id"], worker_id=worker.worker_id, progress=10)
    await client.expect("job_update", job_id=job["job_id"], status="in_progress")
    await client.request("cancel_job", "job_cancelled", job_id=job["job_id"])
    stop = await worker.expect("job_cancelled", job_id=job["job_id"])
    assert stop["status"] == "cancelled"
    late = await worker.request(
        "complete_job",
        "job_completed_ack",
        job_id=job["job_id"],
        worker_id=worker.worker_id,
        result={"success": True},
    )
    assert late["error_code"] == "NOT_JOB_HOLDER"
    status = await client.request("request_job_status", "response_job_status", job_id=job["job_id"])
    assert status["status"] == "cancelled"


async def test_stale_worker_is_refused_and_changes_nothing(peers):
    client = await peers.client()
    job = await submit(client, requirements={"service_type": "stale"})
    holder = await peers.worker(services=["stale"], subscribe=False)
    intruder = await peers.worker(services=["stale"], subscribe=False)
    await claim(holder)
    for kind, reply, extra in (
        ("job_accepted_by_worker", "ack", {}),
        ("update_job_progress", "ack", {"progress": 99}),
        ("complete_job", "job_completed_ack", {"result": {"success": True}}),
        ("fail_job", "job_failed_ack", {"error": "x"}),
    ):
        refused = await intruder.request(
            kind, reply, job_id=job["job_id"], worker_id=intruder.worker_id, **extra
        )
        assert refused["error_code"] == "NOT_JOB_HOLDER", refused
    status = await client.request("request_job_status", "response_job_status", job_id=job["job_id"])
    assert (
        status["status"] == "assigned" and status["worker_id"] == holder.worker_id and status["progress"] == 0
    )
    await run_job(holder, job["job_id"])
    await client.expect("job_completed", job_id=job["job_id"])


async def test_bad_input_is_answered_and_the_connection_survives(peers):
    client = await peers.client()
    await client.send_raw(b"{not json")
    err = await client.expect("error")
    assert err["error_code"] == "INVALID_PARAMETERS" and err["details"]["reason"] == "invalid_json"
    await client.send_raw({"type": "invalid_type", "timestamp": 1, "id": "u1"})
    unknown = await client.expect("unknown")
    assert "invalid_type" in unknown["original_message"]
    await client.send_raw(
        {
            "type": "submit_job",
            "timestamp": 1,
            "id": "b1",
            "job_type": "t",
            "payload": {},
            "requirements": {"hardware": {"gpu_memory_gb": -1}},
        }
    )
    err = await client.expect("error", request_id="b1")
    assert err["error_code"] == "INVALID_PARAMETERS"
    assert err["details"]["field"] == "requirements.hardware.gpu_memory_gb"
    assert err["details"]["provided_value"] == -1
    await client.send_raw(
        {"type": "submit_job", "timestamp": 1, "id": "b2", "job_type": "t", "payload": {}, "priority": 101}
    )
    err = await client.expect("error", request_id="b2")
    assert err["details"]["field"] == "priority" and err["details"]["provided_value"] == 101
    await client.send_raw({"type": "job_assigned", "timestamp": 1, "id": "b3"})
    err = await client.expect("error", request_id="b3")
    assert err["details"]["field"] == "type"
    await client.send_raw("[1, 2]")
    assert (await client.expect("error"))["error_code"] == "INVALID_PARAMETERS"
    await client.send_raw(
        {"type": "submit_job", "timestamp": 1, "id": "b4", "job_type": "t", "payload": {}, "job_id": "mine"}
    )
    assert (await client.expect("error", request_id="b4"))["details"]["field"] == "job_id"
    # still usable
    job = await submit(client)
    assert job["status"] == "queued"
    unknown_job = await client.request("request_job_status", "response_job_status", job_id="job-nope")
    assert unknown_job["error_code"] == "JOB_NOT_FOUND"


async def test_subscribe_job_gets_updates_and_final_message(peers):
    owner = await peers.client(customer_id="cust-sub")
    watcher = await peers.client(customer_id="cust-sub")
    job = await submit(owner, requirements={"service_type": "sub"})
    confirmed = await watcher.request("subscribe_job", "subscription_confirmed", job_id=job["job_id"])
    assert confirmed["subscription_type"] == "job" and confirmed["job_id"] == job["job_id"]
    worker = await peers.worker(services=["sub"], subscribe=False)
    await claim(worker)
    await run_job(worker, job["job_id"], progress=(40,))
    await watcher.expect("job_update", job_id=job["job_id"], status="in_progress", progress=40)
    await watcher.expect("job_completed", job_id=job["job_id"])
    late = await peers.client(customer_id="cust-sub")
    await late.request("subscribe_job", "subscription_confirmed", job_id=job["job_id"])
    await late.expect("job_completed", job_id=job["job_id"])  # already final: sent at once
    stranger = await peers.client(customer_id="someone-else")
    refused = await stranger.request("subscribe_job", "subscription_confirmed", job_id=job["job_id"])
    assert refused["error_code"] == "JOB_NOT_FOUND"


async def test_job_notifications_with_filters(peers):
    monitor = await peers.monitor()
    sub = await monitor.request(
        "subscribe_job_notifications",
        "job_notifications_subscribed",
        filters={"job_types": ["upscaling"], "priority_min": 70, "status": ["queued", "in_progress"]},
    )
    assert sub["subscription_id"] and sub["filters_applied"]["priority_min"] == 70
    client = await peers.client()
    low = await submit(client, job_type="upscaling", priority=10, requirements={"service_type": "nf"})
    other = await submit(client, job_type="text_to_image", priority=90, requirements={"service_type": "nf"})
    hit = await submit(client, job_type="upscaling", priority=80, requirements={"service_type": "nf"})
    update = await monitor.expect("job_update", job_id=hit["job_id"], status="queued")
    assert update["priority"] == 80
    worker = await peers.worker(services=["nf"], subscribe=False, max_concurrent_jobs=3)
    jobs = await claim(worker, max_jobs=3)
    for j in jobs:
        await worker.send("update_job_progress", job_id=j["job_id"], worker_id=worker.worker_id, progress=5)
    await monitor.expect("job_update", job_id=hit["job_id"], status="in_progress")
    for job in (low, other):
        await monitor.expect_none("job_update", job_id=job["job_id"])
    await monitor.expect_none("job_update", job_id=hit["job_id"], status="assigned")  # status filter
    off = await monitor.request("subscribe_job_notifications", "job_notifications_subscribed", enabled=False)
    assert off["enabled"] is False


async def test_job_client_notifications_stay_within_its_customer(peers):
    mine = await peers.client(customer_id="c-1")
    sub = await mine.request("subscribe_job_notifications", "job_notifications_subscribed", filters={})
    assert sub["filters_applied"] == {"customer_id": "c-1"}
    refused = await mine.request(
        "subscribe_job_notifications", "job_notifications_subscribed", filters={"customer_id": "c-2"}
    )
    assert refused["error_code"] == "PERMISSION_DENIED"
    theirs = await peers.client(customer_id="c-2")
    job = await submit(theirs)
    await mine.expect_none("job_update", job_id=job["job_id"])
    own = await submit(await peers.client(customer_id="c-1"))
    await mine.expect("job_update", job_id=own["job_id"], status="queued")


async def test_idle_subscribed_workers_get_job_available_once_until_they_claim(peers):
    worker = await peers.worker(services=["avail"])
    quiet = await peers.worker(services=["avail"], subscribe=False)
    client = await peers.client()
    first = await submit(client, requirements={"service_type": "avail"})
    second = await submit(client, requirements={"service_type": "avail"})
    assert first["notified_workers"] == 1 and second["notified_workers"] == 0
    await worker.expect("job_available", job_id=first["job_id"])
    await worker.expect_none("job_available", job_id=second["job_id"])
    await quiet.expect_none("job_available")
    await claim(worker)
    third = await submit(client, requirements={"service_type": "avail"})
    assert third["notified_workers"] == 0  # busy now: its one slot is taken


async def test_heartbeat_and_worker_status(peers):
    worker = await peers.worker()
    ack = await worker.request(
        "worker_heartbeat",
        "worker_heartbeat_ack",
        worker_id=worker.worker_id,
        status="busy",
        load=0.8,
        system_info={"cpu_usage": 45, "gpu_usage": 85},
    )
    assert ack["status"] == "acknowledged" and ack["next_heartbeat_expected"] > ack["timestamp"]
    acked = await worker.request(
        "worker_status", "ack", worker_id=worker.worker_id, status="idle", available_slots=2
    )
    assert acked["status"] == "processed" and acked["original_type"] == "worker_status"
    client = await peers.client()
    counts_only = await client.request("request_stats", "stats_response", include_sections=["workers"])
    assert "workers" not in counts_only["stats"]["workers"]  # job clients see counts, not the fleet (D14)
    monitor = await peers.monitor()
    stats = await monitor.request("request_stats", "stats_response", include_sections=["workers"])
    (entry,) = [w for w in stats["stats"]["workers"]["workers"] if w["worker_id"] == worker.worker_id]
    assert entry["system_info"]["gpu_usage"] == 85 and entry["load"] == 0.8


async def test_acks_only_for_messages_with_an_id(peers):
    client = await peers.client()
    job = await submit(client, requirements={"service_type": "acks"})
    worker = await peers.worker(services=["acks"], subscribe=False)
    await claim(worker)
    await worker.send("job_accepted_by_worker", job_id=job["job_id"], worker_id=worker.worker_id)
    await worker.expect_none("ack")
    ack = await worker.request(
        "update_job_progress", "ack", job_id=job["job_id"], worker_id=worker.worker_id, progress=10
    )
    assert ack["original_type"] == "update_job_progress" and ack["status"] == "processed"


async def test_ping_pong_and_unknown_before_registration(peers):
    raw = await peers.raw()
    pong = await raw.request("ping", "pong")
    assert pong["request_id"]
    await raw.send_raw({"type": "bogus", "timestamp": 1})
    assert (await raw.expect("unknown"))["content"]


async def test_worker_disconnect_hands_jobs_back(peers):
    client = await peers.client()
    job = await submit(client, requirements={"service_type": "bye"})
    worker = await peers.worker(services=["bye"], subscribe=False)
    await claim(worker)
    await worker.send("job_accepted_by_worker", job_id=job["job_id"], worker_id=worker.worker_id)
    await worker.send("disconnect", reason="Client shutdown")
    with pytest.raises(PeerError):
        await worker.expect("pong", timeout=1)
    update = await client.expect("job_update", job_id=job["job_id"], status="queued")
    assert update["previous_status"] == "accepted"
    other = await peers.worker(services=["bye"], subscribe=False)
    (again,) = await claim(other)
    assert again["job_id"] == job["job_id"] and again["retry_count"] == 0


async def test_job_past_its_time_limit_ends_in_timeout(peers):
    client = await peers.client()
    job = await submit(client, requirements={"service_type": "limit"}, timeout_seconds=0.2)
    worker = await peers.worker(services=["limit"], subscribe=False)
    await claim(worker)
    await worker.send("job_accepted_by_worker", job_id=job["job_id"], worker_id=worker.worker_id)
    told = await worker.expect("job_update", job_id=job["job_id"], status="timeout", timeout=3)
    assert told["error"] == "job exceeded its time limit"
    await client.expect("job_update", job_id=job["job_id"], status="timeout")
    late = await worker.request(
        "complete_job",
        "job_completed_ack",
        job_id=job["job_id"],
        worker_id=worker.worker_id,
        result={"success": True},
    )
    assert late["error_code"] == "INVALID_STATE"
    status = await client.request("request_job_status", "response_job_status", job_id=job["job_id"])
    assert status["status"] == "timeout"
