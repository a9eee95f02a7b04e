"""Webhooks (spec D21), in-process on a real Redis, to real HTTP receivers on 127.0.0.1.

The hub's core runs in the test's event loop (``tests/inprocess.py``); its timers (``tick``: the
sweep, then the webhook sender's poll) are driven by the test, and each attempt is a real HTTP
POST to a ``Receiver`` (``tests/webhook_receiver.py``). Every wait is bounded; no assertion on
time.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from typing import Any

import orjson
import pytest
from inprocess import Hub
from webhook_receiver import Receiver

from empq.webhooks import WebhookVerificationError, generate_secret, verify

SECRET = generate_secret()
SUBMIT = {"job_type": "text_to_image", "payload": {"prompt": "a lighthouse"}}
LOCAL = {  # tests send to 127.0.0.1 over http
    "webhook_secret": SECRET,
    "webhook_allow_http": True,
    "webhook_allow_private": True,
    "webhook_retry_base_s": 0.02,
    "webhook_retry_max_s": 0.1,
    "webhook_timeout_s": 2.0,
}


@pytest.fixture
async def hubs(redis_url):
    """``await hubs(**settings)``: a core on its own prefix (webhook settings for 127.0.0.1 unless
    overridden); its webhook attempts are stopped and receivers closed at teardown."""
    started: list[Hub] = []
    receivers: list[Receiver] = []

    async def start(**settings: Any) -> Hub:
        hub = await Hub.start(redis_url, **{**LOCAL, **settings})
        started.append(hub)
        return hub

    async def receiver(*script: int | str, **options: Any) -> Receiver:
        r = await Receiver(list(script), **options).start()
        receivers.append(r)
        return r

    start.receiver = receiver  # type: ignore[attr-defined]
    yield start
    for hub in started:
        await hub.core.webhooks.stop(grace=0)
        await hub.close()
    for r in receivers:
        await r.close()


async def run_until(hub: Hub, done: Any, what: str, timeout: float = 20.0) -> Any:
    """Tick the hub (timers, webhook sender) until ``await done()`` is truthy."""
    deadline = time.monotonic() + timeout
    while True:
        await hub.core.tick()
        value = await done()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def status(client: Any, job_id: str) -> dict[str, Any]:
    reply = await client.request("request_job_status", job_id=job_id)
    assert reply["type"] == "response_job_status", reply
    return reply


async def delivered(hub: Hub, client: Any, job_id: str, count: int = 1) -> list[dict[str, Any]]:
    async def done() -> Any:
        deliveries = (await status(client, job_id)).get("webhook_deliveries", [])
        settled = [d for d in deliveries if d["state"] in ("delivered", "failed", "expired")]
        return deliveries if len(settled) >= count else None

    return await run_until(hub, done, f"{count} settled webhook deliveries of {job_id}")


async def run_job(client: Any, worker: Any, result: dict[str, Any] | None = None, **submit: Any) -> str:
    job = await client.request("submit_job", **{**SUBMIT, **submit})
    assert job["type"] == "job_accepted", job
    assigned = await worker.request("claim_job", worker_id=worker.worker_id)
    assert assigned["job_id"] == job["job_id"], assigned
    done = await worker.request(
        "complete_job", job_id=job["job_id"], worker_id=worker.worker_id, result=result or {"success": True}
    )
    assert done["type"] == "job_completed_ack", done
    return str(job["job_id"])


def without_timestamp(message: dict[str, Any]) -> dict[str, Any]:
    """A message without its timestamp, nor the request_id of a reply (a cancel_job's)."""
    return {k: v for k, v in message.items() if k not in ("timestamp", "request_id")}


def standard_signature(secret: str, webhook_id: str, timestamp: str, body: bytes) -> str:
    """Standard Webhooks' v1 signature, written out independently of empq.webhooks."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, f"{webhook_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


# --- delivery ---------------------------------------------------------------------------------


async def test_a_completion_is_posted_signed_retried_on_5xx_and_delivered_once(hubs):
    hub = await hubs()
    receiver = await hubs.receiver(500, 503)
    client, worker = await hub.client(), await hub.worker()
    job_id = await run_job(client, worker, {"success": True, "url": "s3://out.png"}, webhook_url=receiver.url)
    (deliveries,) = [await delivered(hub, client, job_id)]
    for _ in range(5):  # more ticks: nothing more is sent once the receiver said 2xx
        await hub.core.tick()
    await asyncio.sleep(0.05)
    assert len(receiver.requests) == 3
    first, *_ = receiver.requests
    assert {r.webhook_id for r in receiver.requests} == {first.webhook_id}  # one event, one id
    assert all(r.body == first.body for r in receiver.requests)
    assert first.path == "/hooks/empq?source=test"
    for request in receiver.requests:
        h = request.headers
        assert h["content-type"] == "application/json"
        assert h["webhook-signature"] == standard_signature(
            SECRET, h["webhook-id"], h["webhook-timestamp"], request.body
        )
        assert verify(SECRET, h, request.body) == request.json()
    with pytest.raises(WebhookVerificationError):
        verify(generate_secret(), first.headers, first.body)
    with pytest.raises(WebhookVerificationError):
        verify(SECRET, first.headers, first.body.replace(b"out.png", b"evil.png"))
    # the body is the message the WebSocket carried (its timestamp: the transition's)
    (over_ws,) = client.of("job_completed")
    assert without_timestamp(first.json()) == without_timestamp(over_ws)
    (delivery,) = deliveries
    assert delivery["state"] == "delivered" and delivery["event"] == "completed"
    assert delivery["webhook_id"] == first.webhook_id
    assert [a["status_code"] for a in delivery["attempts"]] == [500, 503, 200]
    assert [a["attempt"] for a in delivery["attempts"]] == [1, 2, 3]
    assert "HTTP 500" in delivery["attempts"][0]["error"] and "error" not in delivery["attempts"][2]
    text = (await hub.core.metrics.render(hub.core)).decode()
    assert 'empq_webhook_deliveries_total{outcome="retry"} 2.0' in text
    assert 'empq_webhook_deliveries_total{outcome="delivered"} 1.0' in text
    assert "empq_webhook_latency_seconds_count 1.0" in text


async def test_each_wanted_event_is_the_websocket_message(hubs):
    hub = await hubs()
    receiver = await hubs.receiver()
    client, worker = await hub.client(), await hub.worker()
    wanted = ["assigned", "accepted", "progress", "completed", "failed", "cancelled", "timeout"]
    hook = {"webhook_url": receiver.url, "webhook_events": wanted}
    ran = await client.request("submit_job", **SUBMIT, **hook)
    await worker.request("claim_job", worker_id=worker.worker_id)
    await worker.request("job_accepted_by_worker", job_id=ran["job_id"], worker_id=worker.worker_id)
    await hub.core.tick()  # one progress at a time (not yet sent progress coalesces, see below)
    await receiver.wait_for(2)
    await worker.request(
        "update_job_progress",
        job_id=ran["job_id"],
        worker_id=worker.worker_id,
        progress=40,
        message="step 12/30",
        current_step="sampling",
    )
    await hub.core.tick()
    await receiver.wait_for(3)
    await worker.request(
        "complete_job", job_id=ran["job_id"], worker_id=worker.worker_id, result={"success": True, "n": 1}
    )
    cancelled = await client.request("submit_job", **SUBMIT, **hook, priority=1)
    await client.request("cancel_job", job_id=cancelled["job_id"], reason="changed my mind")
    failed = await client.request("submit_job", **SUBMIT, **hook, max_retries=0)
    await worker.request("claim_job", worker_id=worker.worker_id)
    await worker.request("fail_job", job_id=failed["job_id"], worker_id=worker.worker_id, error="oom")
    timed = await client.request("submit_job", **SUBMIT, **hook, timeout_seconds=0.01)
    await worker.request("claim_job", worker_id=worker.worker_id)
    await worker.request("job_accepted_by_worker", job_id=timed["job_id"], worker_id=worker.worker_id)
    lost_worker = await hub.worker()
    lost = await client.request("submit_job", **SUBMIT, **hook, max_retries=0)
    await lost_worker.request("claim_job", worker_id=lost_worker.worker_id)
    await asyncio.sleep(0.03)
    await hub.core.worker_lost(lost_worker.worker_id)

    async def all_sent() -> bool:
        return len(receiver.requests) >= 12

    await run_until(hub, all_sent, "every event's webhook")
    posted = [r.json() for r in receiver.requests]
    over_ws = [f for f in client.frames if f["type"] in ("job_update", "job_completed", "job_cancelled")]
    assert sorted(map(orjson.dumps, map(without_timestamp, posted))) == sorted(
        map(orjson.dumps, map(without_timestamp, over_ws))
    )
    by_job = {}
    for message in posted:
        by_job.setdefault(message["job_id"], []).append(message.get("status"))
    assert by_job[ran["job_id"]] == ["assigned", "accepted", "in_progress", "completed"]
    assert by_job[cancelled["job_id"]] == ["cancelled"]
    assert by_job[failed["job_id"]] == ["assigned", "failed"]
    assert by_job[timed["job_id"]] == ["assigned", "accepted", "timeout"]
    assert by_job[lost["job_id"]] == ["assigned", "failed"]
    assert len({r.webhook_id for r in receiver.requests}) == 12


async def test_only_the_final_events_by_default_and_a_pending_progress_takes_the_latest(hubs):
    hub = await hubs()
    receiver = await hubs.receiver()
    client, worker = await hub.client(), await hub.worker()
    job_id = await run_job(client, worker, webhook_url=receiver.url)
    await delivered(hub, client, job_id)
    assert [r.json()["type"] for r in receiver.requests] == ["job_completed"]
    job = await client.request("submit_job", **SUBMIT, webhook_url=receiver.url, webhook_events=["progress"])
    await worker.request("claim_job", worker_id=worker.worker_id)
    for n in (10, 20, 30):  # not sent in between: one delivery, the latest progress
        await worker.request(
            "update_job_progress", job_id=job["job_id"], worker_id=worker.worker_id, progress=n
        )
    (delivery,) = await delivered(hub, client, job["job_id"])
    assert receiver.requests[-1].json()["progress"] == 30 and len(receiver.requests) == 2
    assert delivery["event"] == "progress"


async def test_a_4xx_stops_at_once_a_429_is_retried(hubs):
    hub = await hubs()
    gone = await hubs.receiver(410)
    busy = await hubs.receiver(429)
    client, worker = await hub.client(), await hub.worker()
    stopped = await run_job(client, worker, webhook_url=gone.url)
    retried = await run_job(client, worker, webhook_url=busy.url)
    (stop,) = await delivered(hub, client, stopped)
    (retry,) = await delivered(hub, client, retried)
    assert stop["state"] == "failed" and [a["status_code"] for a in stop["attempts"]] == [410]
    assert retry["state"] == "delivered" and [a["status_code"] for a in retry["attempts"]] == [429, 200]
    assert len(gone.requests) == 1 and len(busy.requests) == 2


async def test_retries_end_after_the_retry_period(hubs):
    hub = await hubs(webhook_max_age_s=0.2)
    receiver = await hubs.receiver(default=500)
    client, worker = await hub.client(), await hub.worker()
    job_id = await run_job(client, worker, webhook_url=receiver.url)
    (delivery,) = await delivered(hub, client, job_id)
    assert delivery["state"] == "expired" and len(delivery["attempts"]) == len(receiver.requests) >= 2
    count = len(receiver.requests)
    for _ in range(5):
        await hub.core.tick()
    await asyncio.sleep(0.05)
    assert len(receiver.requests) == count


async def test_a_response_body_is_neither_read_whole_nor_kept(hubs):
    hub = await hubs()
    receiver = await hubs.receiver(500, body=b"SECRET-IN-BODY " * 200_000)  # 3 MB, then 2xx
    client, worker = await hub.client(), await hub.worker()
    job_id = await run_job(client, worker, webhook_url=receiver.url)
    (delivery,) = await delivered(hub, client, job_id)
    assert delivery["state"] == "delivered"
    assert b"SECRET-IN-BODY" not in orjson.dumps(await status(client, job_id))
    logged = await hub.redis.execute("LRANGE", hub.core.store.key(f"whlog:{job_id}"), 0, -1)
    assert not any("SECRET-IN-BODY" in entry for entry in logged)


# --- safety -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("https://127.0.0.1/hook", "private_address"),
        ("https://localhost:8443/hook", "private_address"),
        ("https://10.1.2.3/hook", "private_address"),
        ("https://192.168.0.10/hook", "private_address"),
        ("https://169.254.169.254/latest/meta-data/", "private_address"),
        ("https://[::1]/hook", "private_address"),
        ("https://[::ffff:127.0.0.1]/hook", "private_address"),
        ("https://100.64.0.1/hook", "private_address"),
        ("https://0.0.0.0/hook", "private_address"),
        ("http://93.184.216.34/hook", "scheme"),
        ("https://user:pw@93.184.216.34/hook", "credentials"),
        ("https://no-such-host.invalid/hook", "unresolvable"),
    ],
)
async def test_a_refused_target_is_said_at_submission_and_nothing_is_queued(hubs, url, reason):
    hub = await hubs(webhook_allow_http=False, webhook_allow_private=False)
    client = await hub.client()
    refused = await client.request("submit_job", **SUBMIT, webhook_url=url)
    assert refused["type"] == "error" and refused["error_code"] == "INVALID_PARAMETERS", refused
    assert refused["details"]["field"] == "webhook_url" and refused["details"]["reason"] == reason, refused
    assert refused["details"]["provided_value"] == url
    assert await hub.core.store.counts() == {}  # nothing queued


async def test_post_api_jobs_refuses_a_private_target_with_a_clear_error(start_hub):
    """The HTTP API's submission: the same check, a 422 that says what and why."""
    import httpx

    hub = await start_hub(webhook_secret=SECRET)  # neither webhook_allow_http nor _private
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{hub.http.port}", timeout=10) as api:
        r = await api.post("/api/jobs", json={**SUBMIT, "webhook_url": "https://169.254.169.254/hook"})
        assert r.status_code == 422, r.text
        body = r.json()
        assert body["error_code"] == "INVALID_PARAMETERS"
        assert body["details"] == {
            "field": "webhook_url",
            "provided_value": "https://169.254.169.254/hook",
            "reason": "private_address",
        }
        assert "169.254.169.254" in body["error"] and "webhook_allow_private" in body["error"]
        assert (await api.get("/api/jobs")).json()["jobs"] == []  # nothing queued


async def test_a_public_https_target_is_accepted_and_webhooks_need_a_secret(hubs):
    hub = await hubs(webhook_allow_http=False, webhook_allow_private=False)
    client = await hub.client(capabilities={"webhook_support": True})
    accepted = await client.request("submit_job", **SUBMIT, webhook_url="https://93.184.216.34/hook")
    assert accepted["type"] == "job_accepted", accepted
    (registered,) = client.of("client_registered")
    assert registered["capabilities"] == {"webhook_support": True}
    no_url = await client.request("submit_job", **SUBMIT, webhook_events=["completed"])
    assert no_url["details"]["field"] == "webhook_events", no_url
    unsigned = await hubs(webhook_secret="")
    other = await unsigned.client(capabilities={"webhook_support": True})
    (registered,) = other.of("client_registered")
    assert registered["capabilities"] == {"webhook_support": False}
    refused = await other.request("submit_job", **SUBMIT, webhook_url="https://93.184.216.34/hook")
    assert refused["details"]["reason"] == "not_configured", refused


async def test_a_target_that_became_private_is_refused_when_sending(hubs):
    """DNS rebinding: the name was checked at submission, and is checked again at each attempt."""
    hub = await hubs()
    receiver = await hubs.receiver()
    client, worker = await hub.client(), await hub.worker()
    job_id = await run_job(client, worker, webhook_url=receiver.url)
    hub.core.config.webhook_allow_private = False  # as if 127.0.0.1 were what the name now gives
    (delivery,) = await delivered(hub, client, job_id)
    assert delivery["state"] == "failed" and "resolves to 127.0.0.1" in delivery["attempts"][0]["error"]
    assert receiver.requests == []


async def test_a_receiver_that_hangs_holds_only_its_own_slots(hubs):
    hub = await hubs(webhook_per_target=2, webhook_timeout_s=1.0)
    hanging = await hubs.receiver(default="hang")
    healthy = await hubs.receiver()
    client, worker = await hub.client(), await hub.worker()
    stuck = [await run_job(client, worker, webhook_url=hanging.url) for _ in range(4)]
    fine = [await run_job(client, worker, webhook_url=healthy.url) for _ in range(3)]
    for job_id in fine:
        await delivered(hub, client, job_id)
    assert hanging.open == 2 and hanging.max_open == 2  # its two slots, held: the others went on
    assert len(healthy.requests) == 3

    async def timed_out() -> Any:
        deliveries = [(await status(client, j))["webhook_deliveries"][0] for j in stuck]
        return [d for d in deliveries if d["attempts"]]

    tried = await run_until(hub, timed_out, "the hanging receiver's attempts to time out")
    assert tried[0]["state"] == "retrying" and "no answer within 1 s" in tried[0]["attempts"][0]["error"]
    assert hanging.max_open <= 2


# --- durability and several hubs --------------------------------------------------------------


async def second_hub(redis_url: str, prefix: str) -> Hub:
    """Another core on the same Redis and key prefix: another hub of the same group."""
    return await Hub.start(redis_url, **LOCAL, key_prefix=prefix)


async def test_a_lapsed_lease_goes_to_another_hub_and_the_late_report_changes_nothing(hubs, redis_url):
    hub = await hubs(webhook_timeout_s=0.05)  # lease: 2 x timeout + 1 s
    receiver = await hubs.receiver()
    client, worker = await hub.client(), await hub.worker()
    job_id = await run_job(client, worker, webhook_url=receiver.url)
    first = await hub.core.webhooks._claim(1)  # taken, then this "hub" stalls
    assert [attempt for _, attempt, _ in first] == [1]
    assert await hub.core.webhooks._claim(1) == []  # leased: nobody else takes it
    other = await second_hub(redis_url, hub.core.config.key_prefix)
    try:
        await asyncio.sleep(hub.core.webhooks.lease_ms / 1000 + 0.05)
        (delivery,) = await delivered(other, client, job_id)
        assert delivery["state"] == "delivered" and [a["attempt"] for a in delivery["attempts"]] == [2]
        delivery_id, attempt, facts = first[0]
        from empq.hub.webhook_http import Answer

        await hub.core.webhooks._record(delivery_id, attempt, facts, Answer(500, "HTTP 500"))
        (after,) = (await status(client, job_id))["webhook_deliveries"]
        assert after["state"] == "retrying"  # the log shows the late report...
        queued = await hub.redis.execute("ZCARD", hub.core.store.key(f"whq:{facts['target']}"))
        assert queued == 0 and len(receiver.requests) == 1  # ...but nothing is sent again
    finally:
        await other.core.webhooks.stop(grace=0)
        await other.close()


async def test_a_customer_signs_with_its_own_secret(hubs, tmp_path):
    own = generate_secret()
    auth = tmp_path / "auth.json"
    auth.write_text(
        json.dumps(
            {
                "tokens": [
                    {"token": "acme-token", "role": "job_client", "customer_id": "acme"},
                    {"token": "plain-token", "role": "job_client"},
                    {"token": "worker-token", "role": "worker"},
                ],
                "customers": {"acme": {"webhook_secret": own}},
            }
        )
    )
    hub = await hubs(auth_file=str(auth))
    receiver = await hubs.receiver()
    acme = await hub.client(auth_token="acme-token")
    plain = await hub.client(auth_token="plain-token")
    worker = hub.connect()
    worker.worker_id = "gpu-1"
    registered = await worker.request(
        "register_worker",
        worker_id="gpu-1",
        capabilities={"services": ["comfyui"]},
        auth_token="worker-token",
    )
    assert registered["type"] == "worker_registered", registered
    ids = [
        await run_job(acme, worker, webhook_url=receiver.url),
        await run_job(plain, worker, webhook_url=receiver.url),
    ]
    for client, job_id in ((acme, ids[0]), (plain, ids[1])):
        await delivered(hub, client, job_id)
    by_job = {r.json()["job_id"]: r for r in receiver.requests}
    acme_hook, plain_hook = by_job[ids[0]], by_job[ids[1]]
    assert verify(own, acme_hook.headers, acme_hook.body)
    assert verify(SECRET, plain_hook.headers, plain_hook.body)
    with pytest.raises(WebhookVerificationError):
        verify(SECRET, acme_hook.headers, acme_hook.body)


# --- the job browser (D20) --------------------------------------------------------------------


async def test_the_job_detail_shows_each_delivery_and_its_attempts_as_the_status_does(hubs):
    from empq.hub import actions

    hub = await hubs()
    receiver = await hubs.receiver(500)
    client, worker = await hub.client(), await hub.worker()
    job_id = await run_job(client, worker, webhook_url=receiver.url)
    plain = await run_job(client, worker)
    await delivered(hub, client, job_id)
    session = hub.core.sessions[client.conn_id]
    detail = await actions.job_detail(hub.core, session, job_id)
    assert detail["webhook_deliveries"] == (await status(client, job_id))["webhook_deliveries"]
    (delivery,) = detail["webhook_deliveries"]
    assert [a["status_code"] for a in delivery["attempts"]] == [500, 200]
    assert "HTTP 500" in delivery["attempts"][0]["error"]
    assert detail["webhook_events"] == ["completed", "failed", "cancelled", "timeout"]
    assert detail["webhook_target"] == f"http://127.0.0.1:{receiver.port}"
    assert b"source=test" not in orjson.dumps(detail)  # the URL's path and query are not shown
    without = await actions.job_detail(hub.core, session, plain)
    assert not {"webhook_target", "webhook_events", "webhook_deliveries"} & set(without)


async def test_a_retried_job_keeps_its_webhook(hubs):
    from empq.hub import actions

    hub = await hubs()
    receiver = await hubs.receiver()
    client, worker = await hub.client(), await hub.worker()
    job = await client.request("submit_job", **SUBMIT, webhook_url=receiver.url, max_retries=0)
    await worker.request("claim_job", worker_id=worker.worker_id)
    await worker.request("fail_job", job_id=job["job_id"], worker_id=worker.worker_id, error="oom")
    await delivered(hub, client, job["job_id"])
    retried = await actions.retry(hub.core, hub.core.sessions[client.conn_id], job["job_id"])
    await worker.request("claim_job", worker_id=worker.worker_id)
    await worker.request(
        "complete_job", job_id=retried["job_id"], worker_id=worker.worker_id, result={"success": True}
    )
    (delivery,) = await delivered(hub, client, retried["job_id"])
    assert delivery["event"] == "completed" and delivery["state"] == "delivered"
    sent = [(r.json()["job_id"], r.json()["status"]) for r in receiver.requests]
    assert sent == [(job["job_id"], "failed"), (retried["job_id"], "completed")]
    assert verify(SECRET, receiver.requests[1].headers, receiver.requests[1].body)
