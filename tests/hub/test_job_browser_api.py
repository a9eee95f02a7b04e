"""The job browser's HTTP routes (spec D20) on a real hub with tokens bound to customers A and B:
each route keeps what the token may see (D19), actions need what the WebSocket needs."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.asyncio

TOKENS = [
    {"token": "client-a", "role": "job_client", "customer_id": "A"},
    {"token": "client-b", "role": "job_client", "customer_id": "B"},
    {"token": "worker", "role": "worker"},
    {"token": "ops", "role": "monitor", "permissions": ["view_all_jobs", "view_system_stats", "manage_jobs"]},
    {"token": "viewer", "role": "monitor", "permissions": ["view_all_jobs", "view_system_stats"]},
    {
        "token": "mon-a",
        "role": "monitor",
        "customer_id": "A",
        "permissions": ["view_all_jobs", "view_system_stats", "manage_jobs"],
    },
]


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def tenants(start_hub, tmp_path):
    path = tmp_path / "tokens.json"
    path.write_text(json.dumps({"tokens": TOKENS}), encoding="utf-8")
    hub = await start_hub(auth_file=str(path))
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{hub.http.port}", timeout=10) as api:
        api.hub = hub
        yield api


async def submit(api, token: str, **fields: Any) -> str:
    body = {"job_type": "text_to_image", "payload": {"prompt": "a lighthouse"}, **fields}
    r = await api.post("/api/jobs", json=body, headers=auth(token))
    assert r.status_code == 201, r.text
    return r.json()["job_id"]


async def fail_next(api, error: str) -> None:
    """A worker takes the next job and fails it for good."""
    peer = await api.hub.peers.raw("w")
    reply = await peer.request(
        "register_worker",
        "worker_registered",
        worker_id="gpu-http",
        capabilities={"services": ["comfyui"]},
        auth_token="worker",
    )
    assert reply["type"] == "worker_registered", reply
    job = await peer.request("claim_job", "job_assigned", worker_id="gpu-http")
    await peer.request("job_accepted_by_worker", "ack", job_id=job["job_id"], worker_id="gpu-http")
    await peer.request(
        "fail_job",
        "job_failed_ack",
        job_id=job["job_id"],
        worker_id="gpu-http",
        error=error,
        retry=False,
        error_details={"traceback": "line 1"},
    )
    await peer.close()


async def test_the_listing_filters_and_never_shows_another_customers_jobs(tenants):
    api = tenants
    a1 = await submit(api, "client-a", job_type="t2i")
    a2 = await submit(api, "client-a", job_type="upscale")
    b1 = await submit(api, "client-b", job_type="t2i")

    async def ids(token: str, **params: Any) -> list[str]:
        r = await api.get("/api/jobs", params=params, headers=auth(token))
        assert r.status_code == 200, r.text
        return [j["job_id"] for j in r.json()["jobs"]]

    assert await ids("ops") == [b1, a2, a1]
    assert await ids("ops", job_type="t2i") == [b1, a1]
    assert await ids("ops", customer_id="A", status="queued,failed") == [a2, a1]
    assert await ids("ops", q=a2[4:10]) == [a2]
    assert await ids("client-a") == [a2, a1] and await ids("mon-a") == [a2, a1]
    assert await ids("mon-a", customer_id="B") == [] and await ids("client-b", q=a1) == []
    r = await api.get("/api/jobs", params={"status": "queued,bogus"}, headers=auth("ops"))
    assert r.status_code == 422 and r.json()["details"]["field"] == "status"
    r = await api.get("/api/jobs", params={"created_to": "noon"}, headers=auth("ops"))
    assert r.status_code == 422 and r.json()["details"]["field"] == "created_to"


async def test_an_operator_finds_a_failed_job_reads_why_and_retries_it(tenants):
    api = tenants
    job_id = await submit(api, "client-a", max_retries=0)
    await fail_next(api, "CUDA out of memory")
    (row,) = (await api.get("/api/jobs", params={"status": "failed"}, headers=auth("ops"))).json()["jobs"]
    assert row["job_id"] == job_id and row["error"] == "CUDA out of memory" and row["worker_id"] == "gpu-http"

    r = await api.get(f"/api/jobs/{job_id}/detail", headers=auth("ops"))
    assert r.status_code == 200, r.text
    detail = r.json()
    assert detail["error"] == "CUDA out of memory" and detail["error_details"] == {"traceback": "line 1"}
    assert detail["payload"] == {"prompt": "a lighthouse"} and detail["customer_id"] == "A"
    assert [s["event"] for s in detail["timeline"]] == ["submit", "claim", "accept", "fail"]
    assert detail["timeline"][-1]["note"] == "CUDA out of memory"
    assert detail["client_id"] == "http-api"  # the token's digest is not shown
    assert (await api.get(f"/api/jobs/{job_id}/detail", headers=auth("client-b"))).status_code == 404

    assert (await api.post(f"/api/jobs/{job_id}/retry", headers=auth("viewer"))).status_code == 403
    assert (await api.post(f"/api/jobs/{job_id}/retry", headers=auth("client-b"))).status_code == 404
    r = await api.post(f"/api/jobs/{job_id}/retry", headers=auth("ops"))
    assert r.status_code == 201, r.text
    retried = r.json()
    assert (
        retried["type"] == "job_accepted" and retried["retry_of"] == job_id and retried["status"] == "queued"
    )
    again = await api.post(f"/api/jobs/{job_id}/retry", headers=auth("ops"))
    assert again.status_code == 409 and again.json()["details"]["retried_as"] == retried["job_id"]
    new = (await api.get(f"/api/jobs/{retried['job_id']}/detail", headers=auth("client-a"))).json()
    assert new["retry_of"] == job_id and new["customer_id"] == "A"  # still customer A's job
    assert (await api.get(f"/api/jobs/{job_id}/detail", headers=auth("ops"))).json()["retried_as"] == new[
        "job_id"
    ]
    queued = await api.post(f"/api/jobs/{new['job_id']}/retry", headers=auth("client-a"))
    assert queued.status_code == 409 and queued.json()["details"]["status"] == "queued"


async def test_bulk_cancel_is_bounded_and_stays_within_the_tokens_customer(tenants):
    api = tenants
    mine = [await submit(api, "client-a", job_type="flood") for _ in range(3)]
    theirs = await submit(api, "client-b", job_type="flood")
    r = await api.post("/api/jobs/bulk-cancel", json={"job_type": "flood"}, headers=auth("viewer"))
    assert r.status_code == 403
    for bad, field in (({"limit": 0}, "limit"), ({"limit": None}, "limit"), ({"job_type": None}, "job_type")):
        r = await api.post("/api/jobs/bulk-cancel", json=bad, headers=auth("ops"))
        assert r.status_code == 422 and r.json()["details"]["field"] == field, (bad, r.text)
    for bad, field in (({"created_from": "5"}, "created_from"), ({"cursor": 5}, "cursor"), ([], "(body)")):
        r = await api.post("/api/jobs/bulk-cancel", json=bad, headers=auth("ops"))
        assert r.status_code == 422 and r.json()["details"]["field"] == field, (bad, r.text)
    r = await api.post("/api/jobs/bulk-cancel", json={"job_type": "flood", "limit": 2}, headers=auth("mon-a"))
    assert r.status_code == 200, r.text
    first = r.json()
    assert first["cancelled"] == mine[::-1][:2] and first["next_cursor"]
    body = {"job_type": "flood", "cursor": first["next_cursor"], "reason": "flood"}
    rest = (await api.post("/api/jobs/bulk-cancel", json=body, headers=auth("mon-a"))).json()
    assert rest == {"cancelled": [mine[0]], "skipped": [], "next_cursor": None}
    assert (await api.get(f"/api/jobs/{theirs}", headers=auth("client-b"))).json()["status"] == "queued"
    assert (await api.get(f"/api/jobs/{mine[0]}/detail", headers=auth("ops"))).json()[
        "cancel_reason"
    ] == "flood"


async def test_the_last_hour_per_job_type_follows_the_viewer(tenants):
    api = tenants
    await submit(api, "client-a", job_type="t2i")
    await submit(api, "client-b", job_type="secret-b-type")
    r = await api.get("/api/stats/last-hour", headers=auth("ops"))
    assert r.status_code == 200, r.text
    hour = r.json()
    assert {t["job_type"]: t["queued"] for t in hour["job_types"]} == {"t2i": 1, "secret-b-type": 1}
    assert len(hour["per_minute"]["completed"]) == 60
    for token in ("mon-a", "client-a"):
        mine = (await api.get("/api/stats/last-hour", headers=auth(token))).json()
        assert [t["job_type"] for t in mine["job_types"]] == ["t2i"], token
    assert (await api.get("/api/stats/last-hour")).status_code == 401


async def test_in_open_dev_mode_the_dashboard_asks_to_be_a_monitor(hub):
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{hub.http.port}", timeout=10) as api:
        other = await api.post(
            "/api/jobs", json={"job_type": "t", "payload": {}}, headers={"X-Client-Id": "sdk-1"}
        )
        job_id = other.json()["job_id"]
        assert (await api.get("/api/jobs")).json()["jobs"] == []  # the local user's jobs only
        listed = (await api.get("/api/jobs", headers={"X-Empq-Role": "monitor"})).json()["jobs"]
        assert [j["job_id"] for j in listed] == [job_id]
        r = await api.post(f"/api/jobs/{job_id}/cancel", headers={"X-Empq-Role": "monitor"})
        assert r.status_code == 200, r.text
