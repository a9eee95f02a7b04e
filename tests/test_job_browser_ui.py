"""The dashboard as a job browser (spec D20), in headless Chromium (Debian's, driven by Playwright)
against a real hub: an operator finds a failed job, reads why it failed and retries it; cancels
jobs in bulk; looks at workers and job types; the overview shows what runs at load. A screenshot
of each view is written under test-artifacts/ (browser-*.png)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from browser_rig import ERROR, MARKS, launch, open_page, shot, until
from conftest import REPO

pytestmark = MARKS


@pytest.fixture
async def browser():
    async with launch() as chromium:
        yield chromium


class Fleet:
    """Jobs submitted over HTTP; workers as raw protocol peers that do exactly what a test says."""

    def __init__(self, hub) -> None:
        self.hub = hub
        self.api = httpx.AsyncClient(base_url=f"http://127.0.0.1:{hub.http.port}", timeout=10)

    async def submit(self, job_type: str = "text_to_image", **fields: Any) -> str:
        body = {"job_type": job_type, "payload": {"prompt": "a lighthouse at dusk", "steps": 30}, **fields}
        r = await self.api.post("/api/jobs", json=body)
        assert r.status_code == 201, r.text
        return r.json()["job_id"]

    async def worker(self, name: str, **caps: Any):
        return await self.hub.peers.worker(name, **caps)

    async def run(self, worker, *steps: str, progress: float = 40) -> str:
        """Claim the next job and take it through ``steps`` (accept, progress, complete, fail)."""
        w = worker.worker_id
        job = await worker.request("claim_job", "job_assigned", worker_id=w)
        job_id = job["job_id"]
        for step in steps:
            if step == "accept":
                await worker.request("job_accepted_by_worker", "ack", job_id=job_id, worker_id=w)
            elif step == "progress":
                await worker.request(
                    "update_job_progress", "ack", job_id=job_id, worker_id=w, progress=progress
                )
            elif step == "complete":
                await worker.request(
                    "complete_job",
                    "job_completed_ack",
                    job_id=job_id,
                    worker_id=w,
                    result={"success": True, "url": "s3://out.png"},
                )
            elif step == "fail":
                await worker.request(
                    "fail_job",
                    "job_failed_ack",
                    job_id=job_id,
                    worker_id=w,
                    error=ERROR,
                    retry=False,
                    error_details={"error_type": "OutOfMemoryError", "node": "KSampler", "vram_gb": 24},
                )
        return job_id

    async def close(self) -> None:
        await self.api.aclose()


@pytest.fixture
async def fleet(start_hub):
    hub = await start_hub()
    fleet = Fleet(hub)
    yield fleet
    await fleet.close()


async def rows(page, selector: str) -> list[str]:
    return await page.eval_on_selector_all(
        selector, "els => els.map(e => e.dataset.jobId || e.dataset.workerId)"
    )


async def test_an_operator_finds_a_failed_job_reads_why_and_retries_it(browser, fleet):
    gpu = await fleet.worker("gpu-a100-1", hardware={"gpu_model": "A100", "gpu_memory_gb": 80})
    done = []
    for _ in range(3):
        await fleet.submit()
        done.append(await fleet.run(gpu, "accept", "progress", "complete"))
    await fleet.submit("upscale", max_retries=0)
    failed = await fleet.run(gpu, "accept", "progress", "fail")
    waiting = [await fleet.submit("text_to_image") for _ in range(2)]

    page = await open_page(browser, fleet.hub, "/#/jobs")
    await page.wait_for_selector(f'#jobs .row[data-job-id="{failed}"]')
    assert set(await rows(page, "#jobs .row")) == {*done, failed, *waiting}
    await shot(page, "jobs")

    # live: a listed job changes in place; a new one is offered, not pushed under the reader's eyes
    started = await fleet.run(gpu, "accept", "progress", "complete")
    await page.wait_for_selector(f'#jobs .row[data-job-id="{started}"][data-status="completed"]')
    await fleet.submit("text_to_image")
    await page.wait_for_selector("#jobs-new:has-text('1 new job')")

    # search by id: the start of one is enough
    await page.fill("#f-q", done[1][4:12])
    await until(page, f"location.hash.includes('q={done[1][4:12]}')")
    await until(page, "document.querySelectorAll('#jobs .row').length === 1")
    assert await rows(page, "#jobs .row") == [done[1]]
    await page.click("#f-clear")
    await until(page, "document.querySelectorAll('#jobs .row').length === 7")

    # filter: the failed ones
    await page.click('#f-status label:has(input[value="failed"])')
    await until(page, "location.hash.includes('status=failed')")
    await until(page, "document.querySelectorAll('#jobs .row').length === 1")
    row = page.locator(f'#jobs .row[data-job-id="{failed}"]')
    assert ERROR in await row.inner_text()  # the reason, in the list already

    # detail: why it failed, its timeline, the worker
    await row.click()
    await page.wait_for_selector("#detail #failure")
    assert ERROR in await page.inner_text("#failure .reason")
    assert "OutOfMemoryError" in await page.inner_text("#failure pre")
    events = await page.eval_on_selector_all("#timeline li", "els => els.map(e => e.dataset.event)")
    assert events == ["submit", "claim", "accept", "progress", "fail"]
    assert "gpu-a100-1" in await page.inner_text("#timeline")
    assert "a lighthouse at dusk" in await page.inner_text("#detail")  # the payload
    await shot(page, "job-detail")

    # copyable as JSON
    await page.click("#copy-json")
    copied = json.loads(await page.evaluate("navigator.clipboard.readText()"))
    assert copied["job_id"] == failed and copied["error"] == ERROR and len(copied["timeline"]) == 5

    # retry: a new job, linked both ways
    await page.click("#retry")
    await page.wait_for_selector("#detail #retry-of")
    new_id = await page.evaluate("decodeURIComponent(location.hash.split('/').pop())")
    assert new_id != failed and failed in await page.inner_text("#retry-of")
    assert await page.eval_on_selector_all("#timeline li", "els => els.map(e => e.dataset.event)") == [
        "submit"
    ]
    await shot(page, "job-retried")
    await page.click("#retry-of a")
    await page.wait_for_selector("#detail #retried-as")
    assert new_id in await page.inner_text("#retried-as")
    assert await page.locator("#retry").count() == 0  # once
    status = (await fleet.api.get(f"/api/jobs/{new_id}")).json()
    assert status["status"] == "queued"
    assert page.errors == []


async def test_bulk_cancel_from_the_jobs_view(browser, fleet):
    stuck = [await fleet.submit("stuck-type") for _ in range(5)]
    kept = await fleet.submit("fine-type")
    page = await open_page(browser, fleet.hub, "/#/jobs?job_type=stuck-type")
    await until(page, "document.querySelectorAll('#jobs .row').length === 5")
    await page.click("#bulk-open")
    assert "job_type = stuck-type" in await page.inner_text("#bulk-text")
    await shot(page, "bulk-cancel")
    await page.click("#bulk-go")
    await page.wait_for_selector("#toasts .toast")
    assert "Cancelled 5 jobs" in await page.inner_text("#toasts")
    await until(
        page,
        "[...document.querySelectorAll('#jobs .row')]"
        ".filter(r => r.dataset.status === 'cancelled').length === 5",
    )
    for job_id in stuck:
        assert (await fleet.api.get(f"/api/jobs/{job_id}")).json()["status"] == "cancelled"
    assert (await fleet.api.get(f"/api/jobs/{kept}")).json()["status"] == "queued"


async def test_the_workers_view_shows_hardware_jobs_heartbeats_connectors_and_draining(browser, fleet):
    busy = await fleet.worker("gpu-h100-7", hardware={"gpu_model": "H100", "gpu_memory_gb": 80})
    await busy.request(
        "worker_heartbeat", "worker_heartbeat_ack", worker_id="gpu-h100-7", system_info={"gpu_usage": 93}
    )
    await busy.request(
        "connector_ws_status", "ack", worker_id="gpu-h100-7", connector_type="comfyui", status="connected"
    )
    await fleet.submit()
    running = await fleet.run(busy, "accept", "progress")
    draining = await fleet.worker("gpu-4090-2", hardware={"gpu_model": "RTX 4090", "gpu_memory_gb": 24})
    await draining.request("worker_status", "ack", worker_id="gpu-4090-2", status="draining")
    for i in range(3):
        await fleet.worker(f"cpu-{i}", services=("ffmpeg",))

    page = await open_page(browser, fleet.hub, "/#/workers")
    row = '#workers .row[data-worker-id="gpu-h100-7"]'
    await page.wait_for_selector(row)
    text = await page.inner_text(row)
    assert "H100 · 80 GB" in text and "gpu_usage=93" in text
    assert await page.locator(f'{row} a[href="#/job/{running}"]').count() == 1
    drain = '#workers .row[data-worker-id="gpu-4090-2"]'
    await page.wait_for_selector(f'{drain}[data-status="draining"]', timeout=10_000)
    assert "RTX 4090" in await page.inner_text(drain)
    assert "5 workers" in await page.inner_text("#w-summary")
    await shot(page, "workers")
    await page.fill("#w-filter", "ffmpeg")
    await until(page, "document.querySelectorAll('#workers .row').length === 3")
    await page.fill("#w-filter", "")
    await page.click(f'{row} a[href="#/job/{running}"]')  # a worker's job opens its detail
    await page.wait_for_selector("#detail #timeline")
    assert running in await page.inner_text("#detail h2")


async def test_the_job_types_view_from_redis(browser, fleet):
    gpu = await fleet.worker("gpu-1")
    for job_type in ("text_to_image", "text_to_image", "upscale"):
        await fleet.submit(job_type)
        await fleet.run(gpu, "accept", "progress", "complete")
    await fleet.submit("upscale", max_retries=0)
    await fleet.run(gpu, "accept", "fail")
    await fleet.submit("upscale")  # queued
    page = await open_page(browser, fleet.hub, "/#/types")
    await page.wait_for_selector('#types tr[data-job-type="upscale"]')
    cells = await page.eval_on_selector_all(
        '#types tr[data-job-type="upscale"] td', "els => els.map(e => e.innerText)"
    )
    assert cells[:4] == ["upscale", "1", "1", "1"]  # queued, completed, failed
    assert all(c != "—" for c in cells[5:])  # wait and run percentiles
    t2i = await page.eval_on_selector_all(
        '#types tr[data-job-type="text_to_image"] td', "els => els.map(e => e.innerText)"
    )
    assert t2i[:4] == ["text_to_image", "0", "2", "0"]
    await shot(page, "types")
    await page.click('#types tr[data-job-type="upscale"] a')  # a type opens its jobs
    await until(page, "document.querySelectorAll('#jobs .row').length === 3")


async def test_the_overview_shows_at_load_what_runs_and_what_failed(browser, fleet):
    gpu, other = await fleet.worker("gpu-1"), await fleet.worker("gpu-2")
    await fleet.submit("upscale", max_retries=0)
    failed = await fleet.run(gpu, "accept", "fail")
    await fleet.submit()
    await fleet.run(gpu, "accept", "complete")
    await fleet.submit()
    running = await fleet.run(other, "accept", "progress", progress=60)
    page = await open_page(browser, fleet.hub, "/")
    # the state at load comes from the hub, not from events seen since
    await page.wait_for_selector(f'#running .job[data-job-id="{running}"] .bar[data-progress="60"]')
    await page.wait_for_selector(f'#failed li[data-job-id="{failed}"]')
    assert ERROR in await page.inner_text("#failed")
    await until(page, "document.getElementById('kpi-running').textContent === '1'")
    drawn = await page.evaluate(
        "(() => { const c = document.getElementById('throughput'); const d = c.getContext('2d')"
        ".getImageData(0, 0, c.width, c.height).data; let n = 0;"
        " for (let i = 3; i < d.length; i += 4) n += d[i] > 0; return n; })()"
    )
    assert drawn > 0  # the chart starts with the hour from Redis
    await shot(page, "overview")
    await page.click(f'#failed li[data-job-id="{failed}"] a')
    await page.wait_for_selector("#detail #failure")
    assert page.errors == []


HOSTILE = "<img src=x onerror=window.pwned=1>"  # a receiver's reason phrase: text in the page


async def test_a_jobs_webhook_deliveries_and_their_attempts_in_its_detail(browser, start_hub):
    """D21 in the page: where the job's webhooks go, each delivery's state and every attempt (time,
    status code, how long, error), read again while a delivery is still pending or retrying."""
    from webhook_receiver import Receiver

    from empq.webhooks import generate_secret

    receiver = await Receiver([500, 500], reason=HOSTILE.encode()).start()
    hub = await start_hub(
        webhook_secret=generate_secret(),
        webhook_allow_http=True,
        webhook_allow_private=True,  # the receiver is on 127.0.0.1
        webhook_retry_base_s=0.3,
        webhook_retry_max_s=1.0,
    )
    fleet = Fleet(hub)
    try:
        gpu = await fleet.worker("gpu-hooks")
        job_id = await fleet.submit(webhook_url=receiver.url)
        page = await open_page(browser, hub, f"/#/job/{job_id}")
        await page.wait_for_selector("#detail #webhook-target")
        target = await page.inner_text("#webhook-target")
        assert f"http://127.0.0.1:{receiver.port}" in target
        assert "completed, failed, cancelled, timeout" in target
        assert "source=test" not in await page.inner_text("#detail")  # the URL's path and query: not shown
        assert "No event sent yet" in await page.inner_text("#webhooks")

        await fleet.run(gpu, "accept", "progress", "complete")  # the page is not reloaded from here
        delivered = '#webhooks li[data-event="completed"][data-state="delivered"]'
        await page.wait_for_selector(delivered, timeout=30_000)
        rows_of = f"{delivered} tbody tr"
        statuses = await page.eval_on_selector_all(rows_of, "els => els.map(e => e.dataset.status)")
        assert statuses == ["500", "500", "200"]
        rows = await page.eval_on_selector_all(
            rows_of, "els => els.map(e => [...e.cells].map(c => c.textContent))"
        )
        assert [r[0] for r in rows] == ["1", "2", "3"]
        assert rows[0][4] == f"HTTP 500 {HOSTILE}" and rows[2][4] == ""
        assert await page.evaluate("window.pwned === undefined")
        assert await page.locator("#detail img").count() == 0
        webhook_id = await page.get_attribute(delivered, "data-webhook-id")
        assert {r.webhook_id for r in receiver.requests} == {webhook_id}
        await shot(page, "job-webhooks")
        assert page.errors == []
    finally:
        await fleet.close()
        await receiver.close()


async def test_every_dashboard_module_is_type_checked():
    """tox -e ts runs tsc --checkJs over them (clients/typescript/tsconfig.dashboard.json) against
    the protocol's generated types; a file without // @ts-check would be checked all the same,
    the header says so to whoever opens it."""
    for path in sorted((REPO / "hub" / "static").glob("*.js")):
        assert path.read_text(encoding="utf-8").startswith("// @ts-check"), path.name


TOKENS = [
    {"token": "client-a", "role": "job_client", "customer_id": "A"},
    {"token": "client-b", "role": "job_client", "customer_id": "B"},
    {"token": "worker", "role": "worker"},
    {
        "token": "viewer-a",
        "role": "monitor",
        "customer_id": "A",
        "permissions": ["view_all_jobs", "view_system_stats"],
    },
]


async def test_a_monitor_bound_to_a_customer_sees_its_jobs_only_and_without_manage_jobs_no_action(
    browser, start_hub, tmp_path
):
    """D19 in the page: the token's customer bounds the listing, the detail and the hour; the
    actions are not offered without manage_jobs (and the hub refuses them anyway)."""
    path = tmp_path / "tokens.json"
    path.write_text(json.dumps({"tokens": TOKENS}), encoding="utf-8")
    hub = await start_hub(auth_file=str(path))
    base = f"http://127.0.0.1:{hub.http.port}"
    async with httpx.AsyncClient(base_url=base, timeout=10) as api:
        body = {"job_type": "text_to_image", "payload": {}, "max_retries": 0}
        mine = (await api.post("/api/jobs", json=body, headers={"Authorization": "Bearer client-a"})).json()[
            "job_id"
        ]
        body = {"job_type": "secret-type-of-b", "payload": {}}
        theirs = (await api.post("/api/jobs", json=body, headers={"Authorization": "Bearer client-b"})).json()
    worker = await hub.peers.raw("w")
    await worker.request(
        "register_worker",
        "worker_registered",
        worker_id="gpu-1",
        capabilities={"services": ["comfyui"]},
        auth_token="worker",
    )
    worker.worker_id = "gpu-1"
    await Fleet(hub).run(worker, "accept", "fail")  # A's job (the oldest) fails

    page = await open_page(browser, hub, "/?token=viewer-a#/jobs")
    await page.wait_for_selector(f'#jobs .row[data-job-id="{mine}"]')
    assert await rows(page, "#jobs .row") == [mine]
    await page.click(f'#jobs .row[data-job-id="{mine}"]')
    await page.wait_for_selector("#detail #failure")
    assert not await page.locator("#retry").is_visible()  # no manage_jobs: not offered
    assert not await page.locator("#bulk-open").is_visible()
    await page.evaluate(f"location.hash = '#/job/{theirs['job_id']}'")
    await page.wait_for_selector("#detail .error-line:has-text('JOB_NOT_FOUND')")
    await page.click('nav a[data-view="types"]')
    await page.wait_for_selector('#types tr[data-job-type="text_to_image"]')
    assert "secret-type-of-b" not in await page.inner_text("#view-types")


async def test_a_sparse_filter_stops_scanning_until_the_reader_asks(browser, fleet, monkeypatch):
    """Each listing request looks at a bounded stretch of the index; when ten in a row find
    nothing the page stops asking by itself and offers to search older jobs."""
    import empq.hub.http as http

    monkeypatch.setattr(http, "MAX_SCANNED", 5)  # ten requests look at 50 jobs
    rare = await fleet.submit("rare-type")
    for _ in range(60):
        await fleet.submit("common-type")
    page = await open_page(browser, fleet.hub, "/#/jobs?job_type=rare-type")
    await page.wait_for_selector("#jobs-more:visible")
    assert await rows(page, "#jobs .row") == []
    await page.click("#jobs-more")
    await page.wait_for_selector(f'#jobs .row[data-job-id="{rare}"]')
    assert await page.inner_text("#jobs-count") == "1 job"
