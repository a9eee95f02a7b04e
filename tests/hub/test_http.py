"""The HTTP API: same core as the WebSocket (validation, auth, isolation), OpenAPI in sync."""

from __future__ import annotations

import json

import httpx
import pytest
from conftest import REPO, hub_config

pytestmark = pytest.mark.asyncio


@pytest.fixture
async def api(hub):
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{hub.http.port}", timeout=10) as client:
        yield client


async def test_health(api):
    r = await api.get("/health")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok" and body["redis"] == "ok" and body["version"]


async def test_submit_status_cancel_roundtrip(api, peers):
    r = await api.post(
        "/api/jobs", json={"job_type": "text_to_image", "payload": {"prompt": "a cat"}, "priority": 70}
    )
    assert r.status_code == 201, r.text
    accepted = r.json()
    assert accepted["type"] == "job_accepted" and accepted["status"] == "queued" and accepted["position"] == 1
    job_id = accepted["job_id"]

    r = await api.get(f"/api/jobs/{job_id}")
    assert r.status_code == 200
    status = r.json()
    assert status["type"] == "response_job_status"
    assert (status["job_id"], status["status"], status["priority"]) == (job_id, "queued", 70)

    # the job is the same one the WebSocket sees
    client = await peers.client()
    reply = await client.request("request_job_status", "response_job_status", job_id=job_id)
    assert reply["type"] in ("response_job_status", "error")

    r = await api.post(f"/api/jobs/{job_id}/cancel", json={"reason": "changed my mind"})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "cancelled" and r.json()["reason"] == "changed my mind"
    r = await api.post(f"/api/jobs/{job_id}/cancel")
    assert r.status_code == 409 and r.json()["error_code"] == "INVALID_STATE"
    assert (await api.get(f"/api/jobs/{job_id}")).json()["status"] == "cancelled"


async def test_validation_errors_are_the_protocols(api):
    r = await api.post("/api/jobs", json={"job_type": "x", "payload": {}, "priority": 500})
    assert r.status_code == 422
    err = r.json()
    assert err["type"] == "error" and err["error_code"] == "INVALID_PARAMETERS"
    assert err["details"]["field"] == "priority" and err["details"]["provided_value"] == 500
    r = await api.post("/api/jobs", json={"payload": {}})
    assert r.status_code == 422 and r.json()["details"]["field"] == "job_type"
    r = await api.post("/api/jobs", json={"job_type": "x", "payload": {}, "job_id": "mine"})
    assert r.status_code == 422 and r.json()["details"] == {"field": "job_id", "provided_value": "mine"}
    r = await api.post("/api/jobs", content=b"not json", headers={"content-type": "application/json"})
    assert r.status_code == 422
    r = await api.get("/api/jobs", params={"limit": "0"})
    assert r.status_code == 422 and r.json()["details"]["field"] == "limit"
    r = await api.get("/api/jobs", params={"status": "bogus"})
    assert r.status_code == 422 and r.json()["details"]["field"] == "status"


async def test_unknown_job_404(api):
    r = await api.get("/api/jobs/job-nope")
    assert r.status_code == 404 and r.json()["error_code"] == "JOB_NOT_FOUND"
    r = await api.post("/api/jobs/job-nope/cancel")
    assert r.status_code == 404


async def test_list_jobs_filters_and_pagination(api):
    ids = []
    for i in range(7):
        job_type = "a" if i % 2 == 0 else "b"
        r = await api.post("/api/jobs", json={"job_type": job_type, "payload": {"i": i}})
        ids.append(r.json()["job_id"])
    await api.post(f"/api/jobs/{ids[0]}/cancel")
    seen = []
    cursor = None
    pages = 0
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = (await api.get("/api/jobs", params=params)).json()
        pages += 1
        seen += [j["job_id"] for j in page["jobs"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(ids)) and pages == 3
    only_a = (await api.get("/api/jobs", params={"job_type": "a"})).json()["jobs"]
    assert [j["job_id"] for j in only_a] == [ids[6], ids[4], ids[2], ids[0]]
    cancelled = (await api.get("/api/jobs", params={"status": "cancelled"})).json()["jobs"]
    assert [j["job_id"] for j in cancelled] == [ids[0]]


async def test_out_of_range_integers_beyond_64_bits_are_refused_not_crashed(api):
    """Regression (schemathesis): limit=-15029899753753012224 gave a 500 — the error echoed the
    value and JSON encoding refused an integer beyond 64 bits."""
    for name, raw in (
        ("limit", "-15029899753753012224"),
        ("cursor", "99999999999999999999999"),
        ("limit", "0"),
    ):
        r = await api.get("/api/jobs", params={name: raw})
        assert r.status_code == 422, (name, raw, r.status_code, r.text)
        body = r.json()
        assert body["error_code"] == "INVALID_PARAMETERS" and body["details"]["field"] == name
        assert str(body["details"]["provided_value"]) == raw


async def test_workers_and_stats(api, peers):
    worker = await peers.worker(name="w-http")
    r = await api.get("/api/workers")
    assert r.status_code == 200
    workers = r.json()
    assert workers["total"] == 1 and workers["workers"][0]["worker_id"] == "w-http"
    r = await api.get("/api/stats")
    assert r.status_code == 200
    stats = r.json()
    assert stats["type"] == "stats_response" and stats["stats"]["workers"]["total"] == 1
    await worker.close()


async def test_auth_and_customer_isolation(redis_url, tmp_path):
    from empq.hub.server import HubServer

    auth = tmp_path / "auth.json"
    auth.write_text(
        json.dumps(
            {
                "tokens": [
                    {"token": "acme", "role": "job_client", "customer_id": "acme"},
                    {"token": "globex", "role": "job_client", "customer_id": "globex"},
                    {"token": "mon", "role": "monitor", "permissions": ["view_workers"]},
                    {"token": "ops", "role": "monitor", "permissions": ["view_system_stats"]},
                    {"token": "wrk", "role": "worker"},
                ]
            }
        )
    )
    server = HubServer(hub_config(redis_url, auth_file=str(auth)))
    await server.start()
    try:
        base = f"http://127.0.0.1:{server.http.port}"
        async with httpx.AsyncClient(base_url=base, timeout=10) as api:
            body = {"job_type": "t", "payload": {}}
            r = await api.post("/api/jobs", json=body)
            assert r.status_code == 401 and r.json()["error_code"] == "AUTH_FAILED"
            r = await api.post("/api/jobs", json=body, headers={"Authorization": "Bearer nope"})
            assert r.status_code == 401
            r = await api.post("/api/jobs", json=body, headers={"Authorization": "Bearer wrk"})
            assert r.status_code == 403
            r = await api.post("/api/jobs", json=body, headers={"Authorization": "Bearer mon"})
            assert r.status_code == 403 and r.json()["error_code"] == "PERMISSION_DENIED"
            r = await api.post("/api/jobs?token=acme", json=body)
            assert r.status_code == 201
            job_id = r.json()["job_id"]
            acme = {"Authorization": "Bearer acme"}
            globex = {"Authorization": "Bearer globex"}
            assert (await api.get(f"/api/jobs/{job_id}", headers=acme)).json()["customer_id"] == "acme"
            assert (await api.get(f"/api/jobs/{job_id}", headers=globex)).status_code == 404
            assert (await api.post(f"/api/jobs/{job_id}/cancel", headers=globex)).status_code == 404
            assert [j["job_id"] for j in (await api.get("/api/jobs", headers=acme)).json()["jobs"]] == [
                job_id
            ]
            assert (await api.get("/api/jobs", headers=globex)).json()["jobs"] == []
            r = await api.post("/api/jobs", json={**body, "customer_id": "acme"}, headers=globex)
            assert r.status_code == 403
            assert (await api.get("/api/workers", headers=acme)).status_code == 403
            # D14, D19: view_workers alone gives the workers section (the worker list), nothing else
            assert (await api.get("/api/workers", headers={"Authorization": "Bearer mon"})).status_code == 200
            only = (await api.get("/api/stats", headers={"Authorization": "Bearer mon"})).json()
            assert list(only["stats"]) == ["workers"]
            assert (await api.get("/api/workers", headers={"Authorization": "Bearer ops"})).status_code == 200
            assert (await api.get("/api/stats", headers={"Authorization": "Bearer ops"})).status_code == 200
    finally:
        await server.stop()


async def test_openapi_served_and_committed_copy_in_sync(api):
    from empq.hub.openapi import openapi_document

    served = (await api.get("/openapi.json")).json()
    assert served == openapi_document()
    committed = json.loads((REPO / "spec" / "openapi.json").read_text())
    assert committed == served, "spec/openapi.json is stale: python -m empq.hub.openapi > spec/openapi.json"


async def test_http_port_off(redis_url):
    from empq.hub.server import HubServer

    server = HubServer(hub_config(redis_url, http_port=-1))
    await server.start()
    try:
        assert server.http is None
    finally:
        await server.stop()


async def test_in_open_dev_mode_the_http_api_sees_the_local_users_cli_jobs(hub):
    from empq.client import EmpQueueClient, default_client_id

    async with EmpQueueClient(hub.url, client_id=default_client_id()) as sdk:  # as `empq submit` does
        job_id = await sdk.submit_job({"job_type": "t", "payload": {}})
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{hub.http.port}", timeout=10) as api:
        listed = (await api.get("/api/jobs")).json()["jobs"]
        assert [j["job_id"] for j in listed] == [job_id]
        assert (await api.get(f"/api/jobs/{job_id}")).json()["status"] == "queued"
        other = await api.get("/api/jobs", headers={"X-Client-Id": "someone-else"})
        assert other.json()["jobs"] == []
