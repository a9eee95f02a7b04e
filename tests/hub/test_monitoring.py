"""hub/monitoring.py: the stats sections (D14), system_status to monitors, alerts (a job nobody
can run, a queue outgrowing the workers). In-process on a real redis-server."""

from __future__ import annotations


async def test_request_stats_counts_a_known_sequence_of_jobs(core_hub):
    hub = await core_hub()
    client = await hub.client(permissions=["view_workers"])  # D14: sees the fleet
    worker = await hub.worker(services=["st"], max_concurrent_jobs=3)
    jobs = [(await client.submit(requirements={"service_type": "st"}))["job_id"] for _ in range(7)]
    done, failed = (j["job_id"] for j in await worker.claim(max_jobs=2))
    assert [done, failed] == jobs[:2]
    await worker.accept(done)
    await worker.complete(done, processing_time=2.0)
    ack = await worker.act("fail_job", failed, error="x", retry=False)
    assert ack["retry_scheduled"] is False
    running, accepted, assigned = (j["job_id"] for j in await worker.claim(max_jobs=3))
    await worker.accept(running)
    await worker.act("update_job_progress", running, progress=50)
    await worker.accept(accepted)
    assert (await client.request("cancel_job", job_id=jobs[5]))["type"] == "job_cancelled"
    await hub.core.tick()  # a timer tick refreshes the mean processing time

    reply = await client.request("request_stats")
    stats = reply["stats"]
    assert set(stats) == {"jobs", "workers", "throughput", "system"}  # all sections by default
    assert stats["jobs"] == {
        "queued": 1,
        "assigned": 1,
        "accepted": 1,
        "in_progress": 1,
        "completed": 1,
        "failed": 1,
        "cancelled": 1,
        "timeout": 0,
    }
    assert stats["throughput"] == {
        "completed_last_minute": 1,
        "completed_last_hour": 1,
        "failed_last_hour": 1,
        "avg_processing_time": 2.0,
    }
    workers = stats["workers"]
    assert workers["total"] == 1 and workers["busy"] == 1 and workers["idle"] == 0
    (entry,) = workers["workers"]
    assert entry["worker_id"] == worker.worker_id and entry["status"] == "busy"
    assert sorted(entry["current_jobs"]) == sorted([running, accepted, assigned])
    system = stats["system"]
    assert system["hubs"] == 1 and system["uptime_seconds"] > 0
    assert system["connections"] == {"job_client": 1, "monitor": 0, "worker": 1, "new": 0}
    only = await client.request("request_stats", include_sections=["throughput"])
    assert set(only["stats"]) == {"throughput"}


async def test_stats_show_worker_telemetry(core_hub):
    hub = await core_hub()
    worker = await hub.worker(services=["tele"])
    ack = await worker.request(
        "worker_heartbeat",
        worker_id=worker.worker_id,
        load=0.5,
        system_info={"cpu_usage": 45, "gpu_usage": 85, "uptime": 100},
        connector_status={"comfyui": {"status": "active", "queue_length": 2}},
    )
    assert ack["type"] == "worker_heartbeat_ack"
    relayed = await worker.request(
        "connector_ws_status", worker_id=worker.worker_id, connector_type="a1111", status="error"
    )
    assert relayed["status"] == "processed" and relayed["original_type"] == "connector_ws_status"
    client = await hub.client(permissions=["view_workers"])
    stats = (await client.request("request_stats", include_sections=["workers"]))["stats"]
    assert set(stats) == {"workers"}
    (entry,) = stats["workers"]["workers"]
    assert entry["system_info"] == {"cpu_usage": 45, "gpu_usage": 85, "uptime": 100}
    assert entry["load"] == 0.5 and entry["last_heartbeat"] <= ack["timestamp"]
    assert entry["connector_status"] == {
        "comfyui": {"status": "active", "queue_length": 2},
        "a1111": {"status": "error"},
    }
    assert entry["capabilities"]["services"] == ["tele"]


# --- system_status (D14) ---------------------------------------------------------------------------


async def test_monitor_gets_system_status_on_registration_and_periodically(core_hub):
    hub = await core_hub(status_interval_ms=200)
    monitor = hub.connect()
    registered, first = await monitor.send(
        "register_client", id="mon-1", client_type="monitor", client_id="mon"
    )
    assert registered["type"] == "client_registered" and registered["request_id"] == "mon-1"
    assert first["type"] == "system_status"  # right after registration
    assert first["active_workers"] == 0 and first["pending_jobs"] == 0
    assert first["system_health"] == "healthy" and first["alerts"] == []
    await hub.until(lambda: len(monitor.of("system_status")) >= 4)
    stamps = [s["timestamp"] for s in monitor.of("system_status")[1:4]]
    gaps = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
    assert all(100 <= gap <= 500 for gap in gaps), gaps
    # job clients get no system_status
    client = await hub.client()
    await hub.ticks(0.5)
    assert client.of("system_status") == []


# --- alerts ------------------------------------------------------------------------------------------


async def test_alert_when_no_connected_worker_can_run_a_job(core_hub):
    hub = await core_hub()
    monitor = await hub.monitor()
    client = await hub.client()
    await hub.worker(services=["early"])
    await hub.core.tick()  # the hub's view of every hub's workers now holds the early one
    # a worker that just registered (busy or not subscribed: not notified) still counts
    await hub.worker(services=["capable"], hardware={"gpu_memory_gb": 16})
    runnable = await client.submit(requirements={"service_type": "capable", "hardware": {"gpu_memory_gb": 8}})
    assert runnable["notified_workers"] == 0
    assert monitor.of("system_alert", category="no_capable_worker") == []
    for requirements in (
        {"service_type": "nobody-runs-this"},
        {"service_type": "capable", "hardware": {"gpu_memory_gb": 48}},
    ):
        orphan = await client.submit(requirements=requirements)
        assert orphan["notified_workers"] == 0 and orphan["status"] == "queued"
        alert = monitor.of("system_alert", category="no_capable_worker")[-1]
        assert alert["details"]["job_id"] == orphan["job_id"]
        assert alert["details"]["requirements"] == requirements
        assert alert["severity"] == "warning" and alert["actions_recommended"]
    assert runnable["status"] == "queued"
    assert len(monitor.of("system_alert", category="no_capable_worker")) == 2


async def test_alert_when_the_queue_outgrows_the_workers(core_hub):
    hub = await core_hub(status_interval_ms=100, queue_alert_per_worker=2)
    monitor = await hub.monitor()
    client = await hub.client()
    await hub.worker(services=["deep"])
    for _ in range(2):
        await client.submit(requirements={"service_type": "deep"})
    await hub.ticks(0.4)
    assert monitor.of("system_alert", category="resource_constraint") == []  # 2 <= 2 x 1
    await client.submit(requirements={"service_type": "deep"})
    (alert,) = await hub.until(lambda: monitor.of("system_alert", category="resource_constraint"), within=1)
    assert alert["details"] == {"current_queue_depth": 3, "normal_threshold": 2, "available_workers": 1}
    status = monitor.of("system_status", pending_jobs=3)[0]
    assert status["system_health"] == "degraded"
    assert any(a["category"] == "resource_constraint" for a in status["alerts"])
    # raised once when crossing, not on every round
    await hub.ticks(0.4)
    assert len(monitor.of("system_alert", category="resource_constraint")) == 1
    assert len(monitor.of("system_status", pending_jobs=3)) > 1
