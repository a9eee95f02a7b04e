"""Alerts are in force while their condition lasts (hub/monitoring.py): raised once, cleared when
the condition ends (monitors get a system_alert of severity info with details.cleared)."""

from __future__ import annotations

import asyncio


async def alerts_in_force(monitor) -> list[dict]:
    return (await monitor.request("request_stats", include_sections=["system"]))["stats"]["system"]["alerts"]


async def test_no_capable_worker_alert_ends_with_its_job_or_when_a_worker_can_run_it(core_hub):
    hub = await core_hub()
    monitor, client = await hub.monitor(), await hub.client()
    cancelled = await client.request(
        "submit_job", job_type="t", payload={}, requirements={"service_type": "x"}
    )
    waiting = await client.request("submit_job", job_type="t", payload={}, requirements={"service_type": "y"})
    raised = [f for f in monitor.of("system_alert") if f["category"] == "no_capable_worker"]
    assert [a["details"]["job_id"] for a in raised] == [cancelled["job_id"], waiting["job_id"]]
    assert len(await alerts_in_force(monitor)) == 2

    await client.request("cancel_job", job_id=cancelled["job_id"])
    await hub.core.monitoring.review()
    (left,) = await alerts_in_force(monitor)
    assert waiting["job_id"] in left["message"]
    cleared = [f for f in monitor.of("system_alert") if f["severity"] == "info"]
    assert cleared[0]["details"] == {**raised[0]["details"], "cleared": True}
    assert cleared[0]["message"].startswith("resolved: ") and "cancelled" in cleared[0]["message"]

    await hub.worker(services=["y"])  # now someone can run the other one
    await hub.core.monitoring.review()
    assert await alerts_in_force(monitor) == []


async def test_the_same_condition_is_alerted_once_and_a_lost_worker_clears_when_back(core_hub):
    hub = await core_hub()
    monitor = await hub.monitor()
    worker = await hub.worker("gpu-7")
    await worker.send("worker_heartbeat", worker_id="gpu-7")
    await hub.core.worker_lost("gpu-7")
    await hub.core.worker_lost("gpu-7")  # the same condition: not raised twice
    assert len([f for f in monitor.of("system_alert") if f["category"] == "worker_lost"]) == 1
    await hub.worker("gpu-7")
    assert await alerts_in_force(monitor) == []
    assert monitor.of("system_alert")[-1]["details"]["cleared"] is True


async def test_queue_depth_alert_clears_once_the_queue_is_back_under_its_threshold(core_hub):
    hub = await core_hub(queue_alert_per_worker=1)
    monitor, client = await hub.monitor(), await hub.client()
    jobs = [await client.request("submit_job", job_type="t", payload={}) for _ in range(3)]
    await hub.core.monitoring.status_round()
    assert any(a["category"] == "resource_constraint" for a in await alerts_in_force(monitor))
    for job in jobs:
        await client.request("cancel_job", job_id=job["job_id"])
    await asyncio.sleep(0)
    await hub.core.monitoring.status_round()
    assert not any(a["category"] == "resource_constraint" for a in await alerts_in_force(monitor))
