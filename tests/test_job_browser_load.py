"""The job browser with 10,000 jobs and 1,000 workers (spec D20) in headless Chromium: the page
keeps a bounded number of rows in the DOM (a virtual list), loads every job by scrolling, opens a
job's detail from the middle of the list, and filters the workers. No timed assertion: the
timings (and the longest task the page ran) are written to test-artifacts/browser-load.json."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import pytest
from browser_rig import ARTIFACTS, MARKS, launch, shot, until
from empq.hub.matching import JobClass

pytestmark = MARKS


@pytest.fixture
async def browser():
    async with launch() as chromium:
        yield chromium


JOBS = 10_000
WORKERS = 1_000
MAX_ROWS = 80  # rows in the DOM at most: what a viewport shows, and a few more
LONG_TASKS = """
window.__longest = 0;
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) window.__longest = Math.max(window.__longest, e.duration);
}).observe({ type: "longtask", buffered: true });
"""


async def fill(hub) -> None:
    """10,000 jobs (a few hundred failed) and 1,000 workers, written through the store and the
    fleet registry: what submissions and registrations leave in Redis, without 11,000 sockets."""
    store, fleet = hub.core.store, hub.core.fleet
    classes = [
        JobClass.of(t, {"service_type": "comfyui"}) for t in ("text_to_image", "upscale", "inpaint", "video")
    ]
    now = int(time.time() * 1000)
    for start in range(0, JOBS, 500):
        calls = []
        for i in range(start, min(JOBS, start + 500)):
            job_id, job_class = f"job-{uuid.uuid4().hex}", classes[i % len(classes)]
            fields = {
                "id": job_id,
                "job_type": job_class.job_type,
                "priority": 50,
                "payload": json.dumps({"prompt": f"image {i}"}),
                "requirements": json.dumps({"service_type": "comfyui"}),
                "customer_id": f"customer-{i % 3}",
                "client_id": "load",
                "origin": "load",
                "max_retries": 0,
                "retry_count": 0,
                "created_at": now - (JOBS - i) * 10,
            }
            calls.append(store.submit(job_id, job_class, 50, fields))
        await asyncio.gather(*calls)
    caps = {"services": ["comfyui"]}
    for _ in range(6):  # a few hundred end in failure, through the scripts
        for job in await store.claim("gpu-load", caps, 50, 60_000, []):
            await store.fail("gpu-load", job.job_id, "CUDA out of memory", False, 1000, 1000, None)
    for start in range(0, WORKERS, 250):
        calls = []
        for i in range(start, min(WORKERS, start + 250)):
            worker_id = f"gpu-{i:04d}"
            hardware = {
                "gpu_model": ("A100", "H100", "RTX 4090")[i % 3],
                "gpu_memory_gb": (80, 80, 24)[i % 3],
            }
            telemetry = {
                "status": "draining" if i % 50 == 0 else "idle",
                "current_jobs": [],
                "last_heartbeat": now,
                "system_info": {"gpu_usage": i % 100, "cpu_usage": 12},
                "connector_status": {"comfyui": {"status": "active"}},
            }
            calls.append(
                fleet.register_worker(worker_id, "", hub.core.hub_id, {**caps, "hardware": hardware})
            )
            calls.append(fleet.worker_seen(worker_id, now + 600_000, telemetry))
        await asyncio.gather(*calls)


async def test_ten_thousand_jobs_and_a_thousand_workers_keep_the_page_responsive(browser, start_hub):
    hub = await start_hub(heartbeat_timeout_ms=600_000)
    started = time.monotonic()
    await fill(hub)
    timings: dict[str, float] = {"fill_s": time.monotonic() - started}

    context = await browser.new_context(viewport={"width": 1440, "height": 900})
    await context.add_init_script(LONG_TASKS)
    page = await context.new_page()
    started = time.monotonic()
    await page.goto(f"http://127.0.0.1:{hub.http.port}/#/jobs")
    await page.wait_for_selector("#jobs .row", timeout=20_000)
    timings["first_rows_s"] = time.monotonic() - started
    await shot(page, "load-jobs")

    # scroll to the end, page after page, until all 10,000 are in the list
    started = time.monotonic()
    for _ in range(200):
        loaded = await page.evaluate("document.getElementById('jobs-count').textContent")
        if loaded == f"{JOBS:,} jobs":
            break
        await page.evaluate(
            "(() => { const v = document.getElementById('jobs'); v.scrollTop = v.scrollHeight; })()"
        )
        await asyncio.sleep(0.1)
    assert loaded == f"{JOBS:,} jobs", loaded
    timings["all_jobs_loaded_s"] = time.monotonic() - started
    in_dom = await page.evaluate("document.querySelectorAll('#jobs .row').length")
    assert 0 < in_dom <= MAX_ROWS, in_dom

    # a job from the middle of the list opens its detail (the rows are recycled as the list
    # scrolls: wait until the window moved, then click the row by its job id, not its position)
    first = "document.querySelector('#jobs .row').dataset.jobId"
    before = await page.evaluate(first)
    await page.evaluate(
        "(() => { const v = document.getElementById('jobs'); v.scrollTop = v.scrollHeight / 2; })()"
    )
    await until(page, f"document.querySelectorAll('#jobs .row').length > 10 && {first} !== {before!r}")
    job_id = await page.locator("#jobs .row").nth(10).get_attribute("data-job-id")
    started = time.monotonic()
    await page.locator(f'#jobs .row[data-job-id="{job_id}"]').click()
    await page.wait_for_selector(f'#detail h2:has-text("{job_id}")')
    await page.wait_for_selector("#timeline li")
    timings["row_click_to_detail_s"] = time.monotonic() - started
    assert await page.evaluate("document.querySelectorAll('#jobs .row').length") <= MAX_ROWS

    # the failed ones, by filter
    started = time.monotonic()
    await page.goto(f"http://127.0.0.1:{hub.http.port}/#/jobs?status=failed")
    await until(page, "document.querySelectorAll('#jobs .row[data-status=\"failed\"]').length > 0", 20)
    timings["failed_filter_s"] = time.monotonic() - started

    # 1,000 workers
    started = time.monotonic()
    await page.goto(f"http://127.0.0.1:{hub.http.port}/#/workers")
    await until(page, "document.getElementById('w-summary').textContent.startsWith('1000 workers')", 20)
    timings["workers_shown_s"] = time.monotonic() - started
    assert 0 < await page.evaluate("document.querySelectorAll('#workers .row').length") <= MAX_ROWS
    await shot(page, "load-workers")
    await page.fill("#w-filter", "gpu-0999")
    await until(page, "document.querySelectorAll('#workers .row').length === 1")
    await page.fill("#w-filter", "draining")
    await until(page, "document.querySelectorAll('#workers .row[data-status=\"draining\"]').length === 20")

    timings["longest_task_ms"] = await page.evaluate("window.__longest")
    await context.close()
    (ARTIFACTS / "browser-load.json").write_text(
        json.dumps({k: round(v, 3) for k, v in timings.items()}, indent=2)
    )
    print("job browser with", JOBS, "jobs and", WORKERS, "workers:", timings)
