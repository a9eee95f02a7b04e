"""hub/commands/worker.py: claim_job, job_accepted_by_worker, update_job_progress, complete_job,
fail_job, worker_heartbeat, worker_status, service_request, connector_ws_status (spec D6, D10-D12,
D16, D19) — what each answers, what it refuses (error_code, details) and what it changes.
In-process on a real redis-server."""

from __future__ import annotations

import json

from peer_steps import now_ms

# --- claim_job (D10) -------------------------------------------------------------------------------


async def test_claim_job_assigns_up_to_max_jobs_within_the_free_slots(core_hub):
    hub = await core_hub(claim_timeout_ms=4321)
    client = await hub.client()
    jobs = [(await client.submit())["job_id"] for _ in range(5)]
    worker = await hub.worker(max_concurrent_jobs=2)
    got = await worker.claim(max_jobs=5)  # two slots: two jobs, then the ack that ends the claim
    assert [j["job_id"] for j in got] == jobs[:2]
    assert {j["claim_timeout"] for j in got} == {4321}  # the hub's default when the claim names none
    assert hub.core.workers.get(worker.worker_id).held == set(jobs[:2])
    assert await worker.claim() == []  # no free slot
    await worker.complete(jobs[0])
    (third,) = await worker.claim(max_jobs=1, claim_timeout=1500)
    assert third["job_id"] == jobs[2] and third["claim_timeout"] == 1500


async def test_claim_job_with_nothing_to_run_acks_no_job_available(core_hub):
    hub = await core_hub()
    worker = await hub.worker()
    (ack,) = await worker.send("claim_job", id="c-1", worker_id=worker.worker_id)
    assert ack["type"] == "ack" and ack["status"] == "no_job_available"
    assert (ack["request_id"], ack["message_id"], ack["original_type"]) == ("c-1", "c-1", "claim_job")
    (ack,) = await worker.send("claim_job", worker_id=worker.worker_id)  # ends a claim without an id too
    assert ack["status"] == "no_job_available" and ack["message_id"]


async def test_claim_job_refusals(core_hub):
    hub = await core_hub()
    client = await hub.client()
    await client.submit()
    worker = await hub.worker()
    other = await worker.request("claim_job", worker_id="someone-else")
    assert other["error_code"] == "PERMISSION_DENIED"
    assert other["details"] == {"field": "worker_id", "provided_value": "someone-else"}
    denied = await client.request("claim_job", worker_id=worker.worker_id)
    assert denied["error_code"] == "PERMISSION_DENIED"
    await worker.request("worker_status", worker_id=worker.worker_id, status="draining")
    assert await worker.claim() == []  # draining: no free slot
    assert hub.core.workers.get(worker.worker_id).held == set()


# --- a holder's steps (D11) ------------------------------------------------------------------------


async def test_the_holders_steps_are_acked_and_told_to_the_client(core_hub):
    hub = await core_hub()
    client = await hub.client()
    job = (await client.submit())["job_id"]
    worker = await hub.worker()
    await worker.claim()
    ack = await worker.act("job_accepted_by_worker", job)
    assert (ack["type"], ack["status"], ack["original_type"]) == (
        "ack",
        "processed",
        "job_accepted_by_worker",
    )
    ack = await worker.act("update_job_progress", job, progress=40, message="step 2", current_step="denoise")
    assert (ack["status"], ack["original_type"]) == ("processed", "update_job_progress")
    (update,) = client.of("job_update", job_id=job, status="in_progress")
    assert (update["progress"], update["message"], update["current_step"]) == (40, "step 2", "denoise")
    assert update["previous_status"] == "accepted" and update["worker_id"] == worker.worker_id
    done = await worker.act("complete_job", job, result={"success": True}, processing_time=1.5)
    assert (done["type"], done["job_id"], done["worker_id"]) == ("job_completed_ack", job, worker.worker_id)
    (completed,) = client.of("job_completed", job_id=job)
    assert completed["processing_time"] == 1.5
    assert hub.core.workers.get(worker.worker_id).held == set()


async def test_acks_only_for_messages_with_an_id(core_hub):
    hub = await core_hub()
    client = await hub.client()
    job = await client.submit(requirements={"service_type": "acks"})
    worker = await hub.worker(services=["acks"])
    await worker.claim()
    assert await worker.send("job_accepted_by_worker", job_id=job["job_id"], worker_id=worker.worker_id) == []
    ack = await worker.act("update_job_progress", job["job_id"], progress=10)
    assert ack["original_type"] == "update_job_progress" and ack["status"] == "processed"


async def test_stale_worker_is_refused_and_changes_nothing(core_hub):
    hub = await core_hub()
    client = await hub.client()
    job = await client.submit(requirements={"service_type": "stale"})
    holder = await hub.worker(services=["stale"])
    intruder = await hub.worker(services=["stale"])
    await holder.claim()
    for kind, extra in (
        ("job_accepted_by_worker", {}),
        ("update_job_progress", {"progress": 99}),
        ("complete_job", {"result": {"success": True}}),
        ("fail_job", {"error": "x"}),
    ):
        refused = await intruder.act(kind, job["job_id"], **extra)
        assert refused["error_code"] == "NOT_JOB_HOLDER", refused
        assert refused["details"] == {"job_id": job["job_id"]}  # D19: nothing of its state
    status = await client.status(job["job_id"])
    assert (
        status["status"] == "assigned" and status["worker_id"] == holder.worker_id and status["progress"] == 0
    )
    await holder.accept(job["job_id"])
    await holder.act("update_job_progress", job["job_id"], progress=50)
    await holder.complete(job["job_id"])
    assert client.of("job_completed", job_id=job["job_id"])


async def test_a_step_on_an_unknown_job_is_job_not_found(core_hub):
    hub = await core_hub()
    worker = await hub.worker()
    refused = await worker.act("job_accepted_by_worker", "job-nope")
    assert refused["error_code"] == "JOB_NOT_FOUND"


async def test_complete_job_with_a_result_that_cannot_be_stored_changes_nothing(core_hub):
    hub = await core_hub()
    client = await hub.client()
    job = (await client.submit())["job_id"]
    worker = await hub.worker()
    await worker.claim()
    frame = (
        f'{{"type":"complete_job","id":"big","timestamp":{now_ms()},"job_id":"{job}",'
        f'"worker_id":"{worker.worker_id}","result":{{"success":true,"n":{2**70}}}}}'
    )
    (refused,) = await worker.send_raw(frame)
    assert refused["request_id"] == "big" and refused["error_code"] == "INVALID_PARAMETERS"
    assert (await client.status(job))["status"] == "assigned"
    assert hub.core.workers.get(worker.worker_id).held == {job}
    await worker.complete(job)


async def test_fail_job_answers_whether_a_retry_is_scheduled(core_hub):
    hub = await core_hub(default_max_retries=1)
    client = await hub.client()
    job = (await client.submit())["job_id"]
    worker = await hub.worker()
    await worker.claim()
    ack = await worker.act("fail_job", job, error="oom", error_details={"gpu": 0})
    assert ack["type"] == "job_failed_ack" and (ack["job_id"], ack["worker_id"]) == (job, worker.worker_id)
    assert (ack["retry_scheduled"], ack["retry_delay"], ack["retry_count"]) == (True, 0.05, 1)
    assert hub.core.workers.get(worker.worker_id).held == set()
    (again,) = await hub.until(worker.claim)
    ack = await worker.act("fail_job", job, error="oom")  # out of retries
    assert (ack["retry_scheduled"], ack["retry_delay"], ack["retry_count"]) == (False, None, 1)
    other = (await client.submit())["job_id"]
    await worker.claim()
    ack = await worker.act("fail_job", other, error="bad input", retry=False)  # retries left, none wanted
    assert (ack["retry_scheduled"], ack["retry_count"]) == (False, 0)
    assert (await client.status(other))["status"] == "failed"


# --- worker_heartbeat (D16) ------------------------------------------------------------------------


async def test_heartbeat_ack_names_the_next_expected_heartbeat(core_hub):
    hub = await core_hub(heartbeat_interval_ms=400)
    worker = await hub.worker()
    assert worker.registered["heartbeat_interval"] == 400
    before = now_ms()
    ack = await worker.request("worker_heartbeat", worker_id=worker.worker_id)
    after = now_ms()
    assert ack["status"] == "acknowledged" and ack["worker_id"] == worker.worker_id
    assert before + 400 <= ack["next_heartbeat_expected"] <= after + 400
    # refused: another worker's id, and a heartbeat from a job client
    other = await worker.request("worker_heartbeat", worker_id="someone-else")
    assert other["error_code"] == "PERMISSION_DENIED"
    client = await hub.client()
    denied = await client.request("worker_heartbeat", worker_id=worker.worker_id)
    assert denied["error_code"] == "PERMISSION_DENIED"


async def test_heartbeat_and_worker_status(core_hub):
    hub = await core_hub()
    worker = await hub.worker()
    ack = await worker.request(
        "worker_heartbeat",
        worker_id=worker.worker_id,
        status="busy",
        load=0.8,
        system_info={"cpu_usage": 45, "gpu_usage": 85},
    )
    assert ack["status"] == "acknowledged" and ack["next_heartbeat_expected"] > ack["timestamp"]
    acked = await worker.request(
        "worker_status", worker_id=worker.worker_id, status="idle", available_slots=2
    )
    assert acked["status"] == "processed" and acked["original_type"] == "worker_status"
    client = await hub.client()
    counts_only = await client.request("request_stats", include_sections=["workers"])
    assert "workers" not in counts_only["stats"]["workers"]  # job clients see counts, not the fleet (D14)
    monitor = await hub.monitor()
    stats = await monitor.request("request_stats", include_sections=["workers"])
    (entry,) = [w for w in stats["stats"]["workers"]["workers"] if w["worker_id"] == worker.worker_id]
    assert entry["system_info"]["gpu_usage"] == 85 and entry["load"] == 0.8


async def test_heartbeat_telemetry_is_bounded(core_hub):
    hub = await core_hub(max_worker_info_bytes=200)
    worker = await hub.worker()
    ok = await worker.request("worker_heartbeat", worker_id=worker.worker_id, system_info={"cpu_usage": 5})
    assert ok["type"] == "worker_heartbeat_ack"
    for name, value in (
        ("system_info", {"cpu_usage": 1, "notes": "x" * 300}),
        ("connector_status", {"comfyui": {"status": "active", "notes": "x" * 300}}),
    ):
        refused = await worker.request(
            "worker_heartbeat", worker_id=worker.worker_id, status="busy", **{name: value}
        )
        assert refused["error_code"] == "INVALID_PARAMETERS", refused
        assert refused["details"]["field"] == name
    local = hub.core.workers.get(worker.worker_id)
    assert local.system_info == {"cpu_usage": 5} and local.connector_status is None
    assert local.status == "idle"  # a refused heartbeat changes nothing


# --- worker_status ----------------------------------------------------------------------------------


async def test_worker_status_changes_status_and_capabilities(core_hub):
    hub = await core_hub()
    client = await hub.client()
    job = (await client.submit(requirements={"service_type": "new-skill"}))["job_id"]
    worker = await hub.worker(subscribe=True)
    assert await worker.send("worker_status", worker_id=worker.worker_id, status="draining") == []  # no id
    assert hub.core.workers.get(worker.worker_id).status == "draining"
    ack = await worker.request(
        "worker_status", worker_id=worker.worker_id, status="idle", capabilities={"services": ["new-skill"]}
    )
    assert ack["status"] == "processed"
    assert hub.core.workers.get(worker.worker_id).capabilities == {"services": ["new-skill"]}
    assert [j["job_id"] for j in await worker.claim()] == [job]  # it runs the new service now


async def test_worker_status_capabilities_are_bounded(core_hub, tmp_path):
    tokens = [{"token": "worker-a", "role": "worker", "customer_id": "A"}]
    (tmp_path / "tokens.json").write_text(json.dumps({"tokens": tokens}))
    hub = await core_hub(auth_file=str(tmp_path / "tokens.json"), max_worker_info_bytes=256)
    conn = hub.connect(token="worker-a")
    await conn.request("register_worker", worker_id="w-a", capabilities={"services": ["comfyui"]})
    refused = await conn.request(
        "worker_status", worker_id="w-a", status="busy", capabilities={"services": ["x" * 300]}
    )
    assert refused["error_code"] == "INVALID_PARAMETERS" and refused["details"]["field"] == "capabilities"
    refused = await conn.request(
        "worker_status",
        worker_id="w-a",
        status="busy",
        capabilities={"services": ["s"], "allowed_customers": ["B"]},
    )
    assert refused["error_code"] == "PERMISSION_DENIED"
    assert refused["details"] == {"field": "capabilities.allowed_customers", "provided_value": ["B"]}
    local = hub.core.workers.get("w-a")
    assert local.status == "idle" and local.capabilities == {
        "services": ["comfyui"],
        "allowed_customers": ["A"],
    }
    await conn.request("worker_status", worker_id="w-a", status="idle", capabilities={"services": ["s"]})
    assert local.capabilities == {"services": ["s"], "allowed_customers": ["A"]}  # still bound to A


async def test_worker_status_capabilities_reach_the_shared_registry(core_hub):
    hub = await core_hub()
    worker = await hub.worker(services=["old"])
    await worker.request(
        "worker_status", worker_id=worker.worker_id, status="idle", capabilities={"services": ["new"]}
    )
    monitor = await hub.monitor()
    stats = await monitor.request("request_stats", include_sections=["workers"])
    (entry,) = stats["stats"]["workers"]["workers"]
    assert entry["capabilities"] == {"services": ["new"]}
    await hub.core.tick()  # every hub's view of the fleet, as another hub would refresh it
    assert hub.core.workers.everywhere[worker.worker_id]["capabilities"] == {"services": ["new"]}


# --- service_request, connector_ws_status: relayed to monitors ---------------------------------------


async def test_worker_service_requests_and_connector_status_are_relayed_to_monitors(core_hub):
    hub = await core_hub()
    monitors = [await hub.monitor(), await hub.monitor(permissions=("view_workers",))]
    blind = await hub.monitor(permissions=("view_all_jobs",))
    client = await hub.client()
    worker = await hub.worker(services=["relay"])
    ack = await worker.request(
        "service_request",
        job_id="job-123",
        worker_id=worker.worker_id,
        service_type="comfyui",
        endpoint="/prompt",
        method="POST",
        payload={"steps": 30},
    )
    assert ack["status"] == "processed" and ack["original_type"] == "service_request"
    no_ack = await worker.send(
        "connector_ws_status",
        worker_id=worker.worker_id,
        connector_type="comfyui",
        status="disconnected",
        details={"error": "refused"},
    )
    assert no_ack == []  # no id: no ack (D6)
    for monitor in monitors:
        (relayed,) = monitor.of("service_request", job_id="job-123")
        assert relayed["worker_id"] == worker.worker_id and relayed["payload"] == {"steps": 30}
        (ws_status,) = monitor.of("connector_ws_status", worker_id=worker.worker_id)
        assert ws_status["status"] == "disconnected" and ws_status["details"] == {"error": "refused"}
    for peer in (client, blind):  # D19: relays need view_workers or view_system_stats
        assert peer.of("service_request") == peer.of("connector_ws_status") == []
    kept = await hub.redis.execute("LRANGE", hub.core.fleet.key("service_requests"), 0, -1)
    assert [json.loads(k)["job_id"] for k in kept] == ["job-123"]
    assert hub.core.workers.get(worker.worker_id).connector_status == {"comfyui": {"status": "disconnected"}}
    # only workers send them
    denied = await client.request("service_request", job_id="job-1", worker_id="w", service_type="comfyui")
    assert denied["error_code"] == "PERMISSION_DENIED"


async def test_relays_are_bounded(core_hub):
    hub = await core_hub(max_worker_info_bytes=300)
    monitor = await hub.monitor()
    worker = await hub.worker()
    refused = await worker.request(
        "service_request", job_id="j", worker_id=worker.worker_id, service_type="s", payload={"x": "y" * 400}
    )
    assert refused["error_code"] == "INVALID_PARAMETERS"
    assert refused["details"]["field"] == "(message)"
    assert monitor.of("service_request") == []
    assert await hub.redis.execute("LLEN", hub.core.fleet.key("service_requests")) == 0
