"""Webhooks (spec D21) with real ``empq hub`` processes killed with SIGKILL, and two hubs at once.

1. the issue's "done when": a job submitted over the HTTP API with a webhook_url reaches a
   receiver that answers 500 twice, with a valid signature, after a hub kill -9 in between;
2. a delivery whose hub is killed before any attempt (it was queued with the transition), then
   whose next hub is killed during the attempt (its lease runs out), is delivered by a third;
3. two hubs on one Redis share the deliveries (both send at once) and never make the same
   attempt twice: each event reaches the receiver once.

The processes, the Redis server and the ``procs`` fixture are ``tests/hub/test_processes.py``'s;
the receiver is ``tests/webhook_receiver.py`` on 127.0.0.1. Every wait is bounded; figures are
printed (``pytest -s``), never asserted.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from test_processes import free_port, procs  # noqa: F401 - procs is the fixture
from webhook_receiver import Receiver

from empq.webhooks import generate_secret, verify

SECRET = generate_secret()
WEBHOOKS = {
    "EMPQ_WEBHOOK_SECRET": SECRET,
    "EMPQ_WEBHOOK_ALLOW_HTTP": "1",
    "EMPQ_WEBHOOK_ALLOW_PRIVATE": "1",  # the receiver is on 127.0.0.1
    "EMPQ_WEBHOOK_RETRY_BASE_S": "0.1",
    "EMPQ_WEBHOOK_RETRY_MAX_S": "0.5",
    "EMPQ_WEBHOOK_TIMEOUT_S": "1",  # lease: 2 x 1 + 1 = 3 s
}
JOB = {"job_type": "noop", "payload": {"n": 1}, "requirements": {"service_type": "sim"}}


async def eventually(check: Callable[[], Awaitable[Any]], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.05)


def deliveries_of(reply: dict[str, Any]) -> list[dict[str, Any]]:
    assert reply["type"] == "response_job_status", reply
    return list(reply.get("webhook_deliveries") or [])


async def test_done_when_two_500s_and_a_hub_kill_still_deliver_a_signed_webhook(procs):  # noqa: F811
    receiver = await Receiver([500, 500]).start()
    try:
        await procs.redis()
        first_port = free_port()
        hub = await procs.hub("hub-a", EMPQ_HTTP_PORT=str(first_port), **WEBHOOKS)
        worker = await procs.worker([hub.url], "gpu-1")
        await worker.wait_event("registered")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{first_port}", timeout=10) as api:
            accepted = await api.post("/api/jobs", json={**JOB, "webhook_url": receiver.url})
            assert accepted.status_code == 201, accepted.text
            job_id = accepted.json()["job_id"]
            await receiver.wait_for(1)

            async def first_attempt_recorded() -> Any:
                reply = (await api.get(f"/api/jobs/{job_id}")).json()
                return [d for d in deliveries_of(reply) if d["attempts"]]

            (recorded,) = await eventually(
                first_attempt_recorded, 10, "the first attempt in the job's status"
            )
        assert recorded["state"] == "retrying" and recorded["attempts"][0]["status_code"] == 500
        killed = time.monotonic()
        hub.kill9()

        second_port = free_port()
        await procs.hub("hub-b", EMPQ_HTTP_PORT=str(second_port), **WEBHOOKS)
        await receiver.wait_for(3, timeout=20)
        restarted = time.monotonic() - killed
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{second_port}", timeout=10) as api:

            async def settled() -> Any:
                reply = (await api.get(f"/api/jobs/{job_id}")).json()
                return [d for d in deliveries_of(reply) if d["state"] == "delivered"]

            (delivery,) = await eventually(settled, 10, "the delivery to be recorded as delivered")
        await asyncio.sleep(0.3)  # a 4th request would come by now (the hub polls every 50 ms)
        assert len(receiver.requests) == 3
        assert [a["status_code"] for a in delivery["attempts"]] == [500, 500, 200]
        assert {r.webhook_id for r in receiver.requests} == {delivery["webhook_id"]}
        for request in receiver.requests:
            event = verify(SECRET, request.headers, request.body)
            assert event["type"] == "job_completed" and event["job_id"] == job_id
            assert event["result"]["success"] is True
        print(f"\n[webhook] delivered {restarted:.2f} s after kill -9 (hub restart included)")
    finally:
        await receiver.close()


async def test_a_delivery_outlives_a_hub_killed_before_and_one_killed_during_its_attempt(procs):  # noqa: F811
    receiver = await Receiver(["hang"]).start()
    try:
        await procs.redis()
        queuer = await procs.hub("queuer", EMPQ_WEBHOOK_CONCURRENCY="0", **WEBHOOKS)  # sends none
        worker = await procs.worker([queuer.url], "gpu-1")
        await worker.wait_event("registered")
        client = await procs.client(queuer.url, client_id="webhook-client")
        accepted = await client.request("submit_job", **JOB, webhook_url=receiver.url)
        job_id = accepted["job_id"]

        async def queued() -> Any:
            reply = await client.request("request_job_status", job_id=job_id)
            return reply["status"] == "completed" and deliveries_of(reply)

        (pending,) = await eventually(queued, 10, "the job completed with its delivery queued")
        assert pending["state"] == "pending" and pending["attempts"] == []
        queuer.kill9()  # between queueing and delivery

        sender = await procs.hub("sender", **WEBHOOKS)
        await receiver.wait_for(1)  # its attempt hangs...
        sender.kill9()  # ...and its hub dies during it: the lease (3 s) runs out
        started = time.monotonic()
        last = await procs.hub("last", **WEBHOOKS)
        await receiver.wait_for(2, timeout=20)
        retaken = time.monotonic() - started
        viewer = await procs.client(last.url, client_id="webhook-client")

        async def settled() -> Any:
            reply = await viewer.request("request_job_status", job_id=job_id)
            return [d for d in deliveries_of(reply) if d["state"] == "delivered"]

        (delivery,) = await eventually(settled, 10, "the delivery recorded as delivered")
        assert [a["attempt"] for a in delivery["attempts"]] == [2]  # attempt 1 died with its hub
        assert [r.webhook_id for r in receiver.requests] == [pending["webhook_id"]] * 2
        assert verify(SECRET, receiver.requests[1].headers, receiver.requests[1].body)["job_id"] == job_id
        print(f"\n[webhook] attempt retaken {retaken:.2f} s after the sending hub's kill (lease 3 s)")
    finally:
        await receiver.close()


async def test_two_hubs_share_deliveries_and_never_send_one_attempt_twice(procs):  # noqa: F811
    jobs = 8
    settings = {**WEBHOOKS, "EMPQ_WEBHOOK_PER_TARGET": "2", "EMPQ_WEBHOOK_TIMEOUT_S": "15"}
    # requests are held until 3 are open at once: more than one hub's bound for this target
    receiver = await Receiver(hold_until=3, hold_timeout=5).start()
    try:
        await procs.redis()
        hub_a = await procs.hub("hub-a", **settings)
        hub_b = await procs.hub("hub-b", **settings)
        worker = await procs.worker([hub_a.url], "gpu-1", job_ms=5)
        await worker.wait_event("registered")
        client = await procs.client(hub_b.url)
        ids = [
            (await client.request("submit_job", **JOB, webhook_url=receiver.url))["job_id"]
            for _ in range(jobs)
        ]
        await receiver.wait_for(jobs, timeout=30)

        async def all_delivered() -> Any:
            replies = [await client.request("request_job_status", job_id=j) for j in ids]
            found = [d for r in replies for d in deliveries_of(r)]
            return len(found) == jobs and all(d["state"] == "delivered" for d in found) and found

        found = await eventually(all_delivered, 20, "every delivery recorded as delivered")
        await asyncio.sleep(0.3)
        per_id = Counter(r.webhook_id for r in receiver.requests)
        assert len(per_id) == jobs and set(per_id.values()) == {1}, per_id
        assert all([a["attempt"] for a in d["attempts"]] == [1] for d in found)
        assert receiver.max_open >= 3  # both hubs were sending at once (2 each at most)
        assert sorted(r.json()["job_id"] for r in receiver.requests) == sorted(ids)
    finally:
        await receiver.close()
