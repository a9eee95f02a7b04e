"""hub/core.py: the transport's entry points without sockets — the greeting, frames refused before
any handler (D1, D5), errors mapped to their codes (storage unavailable, internal), connections
that never register (D19). In-process on a real redis-server."""

from __future__ import annotations

from empq.hub import commands
from empq.hub.resp import RespClient


async def test_a_connection_is_greeted_with_the_hubs_limits(core_hub):
    hub = await core_hub(max_message_size=65536, chunk_threshold=4096, server_version="9.9.9")
    conn_id = hub.core.new_conn_id()
    hub.core.connect(conn_id)
    (greeting,) = hub.outbox.frames[conn_id]
    assert greeting["type"] == "connection_established" and greeting["connection_id"] == conn_id
    assert (greeting["max_message_size"], greeting["chunk_threshold"]) == (65536, 4096)
    assert greeting["server_version"] == "9.9.9" and greeting["message"]
    assert hub.core.unregistered_conn(conn_id)


async def test_bad_input_is_answered_and_the_connection_survives(core_hub):
    hub = await core_hub()
    client = await hub.client()
    (err,) = await client.send_raw(b"{not json")
    assert err["error_code"] == "INVALID_PARAMETERS" and err["details"]["reason"] == "invalid_json"
    (unknown,) = await client.send_raw({"type": "invalid_type", "timestamp": 1, "id": "u1"})
    assert unknown["type"] == "unknown" and "invalid_type" in unknown["original_message"]
    (err,) = await client.send_raw(
        {
            "type": "submit_job",
            "timestamp": 1,
            "id": "b1",
            "job_type": "t",
            "payload": {},
            "requirements": {"hardware": {"gpu_memory_gb": -1}},
        }
    )
    assert err["request_id"] == "b1" and err["error_code"] == "INVALID_PARAMETERS"
    assert err["details"]["field"] == "requirements.hardware.gpu_memory_gb"
    assert err["details"]["provided_value"] == -1
    (err,) = await client.send_raw(
        {"type": "submit_job", "timestamp": 1, "id": "b2", "job_type": "t", "payload": {}, "priority": 101}
    )
    assert err["request_id"] == "b2"
    assert err["details"]["field"] == "priority" and err["details"]["provided_value"] == 101
    (err,) = await client.send_raw({"type": "job_assigned", "timestamp": 1, "id": "b3"})
    assert err["request_id"] == "b3" and err["details"]["field"] == "type"
    (err,) = await client.send_raw("[1, 2]")
    assert err["error_code"] == "INVALID_PARAMETERS"
    (err,) = await client.send_raw(
        {"type": "submit_job", "timestamp": 1, "id": "b4", "job_type": "t", "payload": {}, "job_id": "mine"}
    )
    assert err["request_id"] == "b4" and err["details"]["field"] == "job_id"
    (err,) = await client.send_raw(b'{"type":"ping","timestamp":NaN,"id":"b5"}')
    assert err["error_code"] == "INVALID_PARAMETERS" and err["details"]["reason"] == "invalid_json"
    # still usable
    job = await client.submit()
    assert job["status"] == "queued"
    unknown_job = await client.status("job-nope")
    assert unknown_job["error_code"] == "JOB_NOT_FOUND"
    assert client.closed is None


async def test_storage_unavailable_is_service_unavailable_and_changes_nothing(core_hub, tmp_path):
    hub = await core_hub()
    client = await hub.client()
    batch = hub.core.store.batch
    real = batch.client
    batch.client = RespClient(f"unix://{tmp_path}/no-redis-here.sock", connect_timeout=1)  # unreachable
    try:
        refused = await client.request("submit_job", job_type="t", payload={})
        assert refused["error_code"] == "SERVICE_UNAVAILABLE"
        await hub.core.tick()  # the timers survive it too
    finally:
        batch.client = real
    jobs = hub.core.store.key("jobs")
    assert int(await hub.redis.execute("ZCARD", jobs)) == 0  # not applied
    assert (await client.submit())["status"] == "queued"  # retry: applied once
    assert int(await hub.redis.execute("ZCARD", jobs)) == 1


async def test_a_handler_that_fails_answers_internal_error(core_hub, monkeypatch, caplog):
    async def broken(req):
        raise RuntimeError("boom")

    hub = await core_hub()
    client = await hub.client()
    monkeypatch.setitem(commands.COMMANDS, "ping", broken)
    refused = await client.request("ping")
    assert refused["error_code"] == "INTERNAL_ERROR" and "boom" not in refused["error"]
    assert "handler for ping failed" in caplog.text
    monkeypatch.undo()
    assert (await client.request("ping"))["type"] == "pong"


async def test_a_connection_that_never_registers_is_told_and_closed(core_hub):
    hub = await core_hub(registration_timeout_ms=0)
    idle = hub.connect()
    registered = await hub.client()
    await hub.core.tick()
    (told,) = idle.new()
    assert told["error_code"] == "NOT_REGISTERED" and told["details"] == {"reason": "registration_timeout"}
    assert idle.closed == 1008 and registered.closed is None
    assert await idle.send("ping") == []  # closing: later frames are moot
    await hub.core.tick()
    assert idle.new() == []  # told once


async def test_unregistered_connections_are_bounded(core_hub):
    hub = await core_hub(max_unregistered_connections=2)
    first, second = hub.connect(), hub.connect()
    assert hub.core.full()  # the transport refuses the next one (1013)
    await first.request("register_client", client_type="job_client", client_id="c")
    assert not hub.core.full()
    await hub.drop(second)
    assert len(hub.core.unregistered) == 0
