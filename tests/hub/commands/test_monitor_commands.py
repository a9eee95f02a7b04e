"""hub/commands/monitor.py: subscribe_stats and request_stats (spec D14, D19) — what each
answers (the sections a viewer may have), what it refuses, what a subscription sends and when.
In-process on a real redis-server."""

from __future__ import annotations

import pytest
from peer_steps import now_ms

ALL = ["jobs", "workers", "throughput", "system"]


async def test_stats_subscription_sends_the_asked_sections_every_interval_until_disabled(core_hub):
    hub = await core_hub()
    client = await hub.client()
    before = now_ms()
    confirmed = await client.request("subscribe_stats", interval_seconds=1, include_sections=["jobs"])
    assert confirmed["type"] == "subscription_confirmed", confirmed
    assert confirmed["subscription_type"] == "stats" and confirmed["update_interval"] == 1
    assert confirmed["include_sections"] == ["jobs"] and confirmed["enabled"] is True
    assert before + 1000 <= confirmed["next_broadcast"] <= now_ms() + 1000
    await hub.until(lambda: len(client.of("stats_update")) >= 2, within=3)
    first, second = client.of("stats_update")
    for update in (first, second):
        assert set(update["stats"]) == {"jobs"}
        assert update["stats"]["jobs"]["queued"] == 0
    assert abs(first["timestamp"] - confirmed["next_broadcast"]) < 300
    assert 800 <= second["timestamp"] - first["timestamp"] <= 1300
    assert second["next_broadcast"] - second["timestamp"] == pytest.approx(1000, abs=50)
    off = await client.request("subscribe_stats", enabled=False)
    assert off["enabled"] is False and off["subscription_type"] == "stats"
    assert client.conn_id not in hub.core.subs.stats
    await hub.ticks(1.1)  # past the next interval
    assert len(client.of("stats_update")) == 2
    # workers may not subscribe to stats
    worker = await hub.worker()
    denied = await worker.request("subscribe_stats", interval_seconds=1)
    assert denied["error_code"] == "PERMISSION_DENIED"


async def test_subscribe_stats_defaults_to_every_section_every_5_seconds(core_hub):
    hub = await core_hub()
    monitor = await hub.monitor()
    confirmed = await monitor.request("subscribe_stats")
    assert confirmed["update_interval"] == 5 and confirmed["include_sections"] == ALL
    assert hub.core.subs.stats[monitor.conn_id].interval_ms == 5000


@pytest.mark.parametrize("kind", ["request_stats", "subscribe_stats"])
async def test_a_monitor_needs_view_system_stats_or_view_workers_for_the_workers_section(core_hub, kind):
    hub = await core_hub()
    blind = await hub.monitor(permissions=("view_all_jobs",))
    denied = await blind.request(kind)
    assert denied["error_code"] == "PERMISSION_DENIED"
    workers_only = await hub.monitor(permissions=("view_workers",))
    for asked in (["jobs"], ["workers", "system"]):
        denied = await workers_only.request(kind, include_sections=asked)
        assert denied["error_code"] == "PERMISSION_DENIED", asked
    assert not hub.core.subs.stats  # a refused subscription is not kept
    allowed = await workers_only.request(kind, include_sections=["workers"])
    bare = await workers_only.request(kind)  # no sections asked: the one it may have
    if kind == "request_stats":
        assert set(allowed["stats"]) == set(bare["stats"]) == {"workers"}
        assert allowed["stats"]["workers"]["workers"] == []  # the per-worker list (none here)
    else:
        assert allowed["include_sections"] == bare["include_sections"] == ["workers"]


async def test_request_stats_gives_job_clients_the_aggregates_only(core_hub):
    hub = await core_hub()
    monitor = await hub.monitor()
    worker = await hub.worker()
    client = await hub.client()
    await client.submit(requirements={"service_type": "nobody"})  # raises an alert
    assert monitor.of("system_alert")
    stats = (await client.request("request_stats"))["stats"]
    assert set(stats) == set(ALL) and stats["jobs"]["queued"] == 1
    assert stats["workers"]["total"] == 1 and "workers" not in stats["workers"]  # counts, no ids
    assert stats["system"]["alerts"] == []  # job clients get none (D19)
    seen = (await monitor.request("request_stats", include_sections=["workers", "system"]))["stats"]
    assert [w["worker_id"] for w in seen["workers"]["workers"]] == [worker.worker_id]
    assert [a["category"] for a in seen["system"]["alerts"]] == ["no_capable_worker"]
