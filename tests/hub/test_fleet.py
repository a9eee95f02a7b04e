"""hub/fleet.py: the fleet in Redis — worker ids bound to the token that registered them (D19),
signs of life and the reaper (D16), every hub's workers for stats, the hubs themselves. On a real
redis-server, through a core's ``FleetStore`` (and the core where the protocol is involved)."""

from __future__ import annotations

import json

from peer_steps import now_ms


async def test_a_worker_id_is_bound_to_its_first_owner_and_resumes_what_it_holds(core_hub):
    hub = await core_hub()
    fleet = hub.core.fleet
    assert await fleet.may_register("w-1", "tok:a")
    assert await fleet.register_worker("w-1", "tok:a", "hub-1", {"services": ["x"]}) == []
    assert not await fleet.may_register("w-1", "tok:b")
    assert await fleet.register_worker("w-1", "tok:b", "hub-1", {"services": ["x"]}) is None  # DENIED
    await hub.redis.execute("SADD", fleet.worker_jobs_key("w-1"), "job-2", "job-1")
    assert await fleet.register_worker("w-1", "tok:a", "hub-2", {"services": ["y"]}) == ["job-1", "job-2"]
    (entry,) = (await fleet.workers()).values()
    assert entry["hub"] == "hub-2" and entry["capabilities"] == {"services": ["y"]}
    await fleet.worker_gone("w-1")  # its registration ends: the id is free again
    assert await fleet.workers() == {} and await fleet.may_register("w-1", "tok:b")
    # open dev mode registers with no owner: the id binds nothing
    assert await fleet.register_worker("w-open", "", "hub-1", {}) == []
    assert await fleet.may_register("w-open", "tok:anyone")


async def test_the_reaper_takes_each_silent_worker_once(core_hub):
    hub = await core_hub()
    fleet = hub.core.fleet
    now = now_ms()
    for worker_id in ("quiet", "chatty"):
        await fleet.register_worker(worker_id, "", "hub-1", {"services": ["x"]})
    await fleet.worker_seen("quiet", now - 10_000)
    await fleet.worker_seen("chatty", now, {"status": "busy", "current_jobs": []})
    assert await fleet.reap_workers(now - 5_000) == ["quiet"]
    assert await fleet.reap_workers(now - 5_000) == []  # each to one hub only
    workers = await fleet.workers()
    assert list(workers) == ["chatty"] and workers["chatty"]["telemetry"]["status"] == "busy"
    assert workers["chatty"]["last_seen"] == now and await fleet.live_workers() == 1
    # its entry (and owner) stays until its hub has handed its jobs back (core.worker_lost)
    assert await hub.redis.execute("EXISTS", fleet.worker_key("quiet"))
    await fleet.worker_gone("quiet")
    assert not await hub.redis.execute("EXISTS", fleet.worker_key("quiet"))


async def test_every_workers_capabilities_in_one_reply_parsed_once(core_hub):
    hub = await core_hub()
    fleet = hub.core.fleet
    same = {"services": ["x"], "hardware": {"gpu_memory_gb": 24}}
    for worker_id in ("a", "b"):
        await fleet.register_worker(worker_id, "", "hub-1", same)
    await fleet.register_worker("c", "", "hub-1", {"services": ["y"]})
    found = await fleet.worker_capabilities()
    assert {w: e["capabilities"] for w, e in found.items()} == {
        "a": same,
        "b": same,
        "c": {"services": ["y"]},
    }
    assert found["a"]["capabilities"] is found["b"]["capabilities"]  # one document, one parse


async def test_hubs_are_those_that_reported_lately(core_hub):
    hub = await core_hub()
    fleet = hub.core.fleet
    await fleet.hub_alive("hub-a", {"connections": {"worker": 2}})
    await fleet.hub_alive("hub-b", {})
    await hub.redis.execute(
        "HSET", fleet.key("hubs"), "hub-old", json.dumps({"seen": now_ms() - 60_000})
    )  # a hub that stopped reporting
    alive = await fleet.hubs(within_ms=5000)
    assert set(alive) == {"hub-a", "hub-b"} and alive["hub-a"]["connections"] == {"worker": 2}
    assert await hub.redis.execute("HEXISTS", fleet.key("hubs"), "hub-old") == 0  # dropped
    await fleet.hub_gone("hub-b")
    assert set(await fleet.hubs(within_ms=5000)) == {"hub-a"}


async def test_service_requests_keep_the_latest(core_hub):
    hub = await core_hub()
    fleet = hub.core.fleet
    for i in range(5):
        await fleet.record_service_request(json.dumps({"n": i}).encode(), keep=3)
    kept = await hub.redis.execute("LRANGE", fleet.key("service_requests"), 0, -1)
    assert [json.loads(k)["n"] for k in kept] == [4, 3, 2]


async def test_a_reaped_workers_id_is_not_anyones_while_its_jobs_are_not_back(core_hub, tmp_path):
    tokens = [
        {"token": "fleet", "role": "worker"},
        {"token": "other", "role": "worker"},
        {"token": "client", "role": "job_client"},
    ]
    (tmp_path / "tokens.json").write_text(json.dumps({"tokens": tokens}))
    hub = await core_hub(auth_file=str(tmp_path / "tokens.json"), reconnect_grace_ms=0)
    client = await hub.client(auth_token="client")
    job = await client.submit()
    worker = hub.connect(token="fleet")
    await worker.request("register_worker", worker_id="w-x", capabilities={"services": ["comfyui"]})
    worker.worker_id = "w-x"
    await worker.claim()
    await hub.drop(worker)  # gone without goodbye, no grace: the reaper's next round takes it
    assert await hub.core.fleet.reap_workers(now_ms()) == ["w-x"]  # what tick does first...
    thief = hub.connect(token="other")  # ...and a frame handled before its worker_lost runs
    refused = await thief.request("register_worker", worker_id="w-x", capabilities={"services": ["comfyui"]})
    assert job["job_id"] not in refused.get("resumed_jobs", []), refused  # not the other token's jobs
    assert refused.get("error_code") == "PERMISSION_DENIED", refused
