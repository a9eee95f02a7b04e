"""The dashboard in a real browser: headless Chromium (Debian's, driven by Playwright) loads it from
a running hub; a simulated worker runs a job submitted during the test; the page shows the worker,
a moving progress bar and the completion.  Screenshot: test-artifacts/dashboard.png."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import time

import httpx
import pytest
from conftest import REPO

PROGRESS_JS = "(s) => { const b = document.querySelector(s); return b ? Number(b.dataset.progress) : null; }"
CHROMIUM = os.environ.get("EMPQ_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"

pytestmark = [
    pytest.mark.asyncio,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="no chromium (apt-get install chromium)"),
]


async def test_dashboard_shows_worker_progress_and_completion(hub):
    playwright_api = pytest.importorskip("playwright.async_api")
    from empq.connectors import SimulateConnector
    from empq.worker import EmpWorker

    base = f"http://127.0.0.1:{hub.http.port}"
    worker = EmpWorker(
        hub.url,
        worker_id="sim-dash",
        services=["comfyui"],
        connectors=[SimulateConnector("comfyui", steps=10, step_seconds=0.3)],
        claim_interval=0.5,
    )
    runner = asyncio.get_running_loop().create_task(worker.run(handle_signals=False))
    artifacts = REPO / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    async with playwright_api.async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
        )
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 900})
            await page.goto(f"{base}/")
            await page.wait_for_selector("#conn.on", timeout=10_000)
            await page.wait_for_selector('#workers tr[data-worker-id="sim-dash"]', timeout=10_000)

            async with httpx.AsyncClient(base_url=base, timeout=10) as api:
                r = await api.post(
                    "/api/jobs",
                    json={
                        "job_type": "text_to_image",
                        "payload": {"prompt": "a lighthouse"},
                        "requirements": {"service_type": "comfyui"},
                    },
                )
                assert r.status_code == 201, r.text
                job_id = r.json()["job_id"]

            bar = f'#running .job[data-job-id="{job_id}"] .bar'
            await page.wait_for_selector(bar, timeout=10_000)
            seen: list[float] = []
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                value = await page.evaluate(PROGRESS_JS, bar)
                if value is None:
                    break  # finished: the row went away
                if not seen or value != seen[-1]:
                    seen.append(value)
                if len(seen) >= 3 and 0 < seen[-1] < 100:
                    await page.screenshot(path=str(artifacts / "dashboard-progress.png"), full_page=True)
                    break
                await asyncio.sleep(0.05)
            moving = [p for p in seen if 0 < p < 100]
            assert len(moving) >= 2 and moving == sorted(moving), f"progress bar did not move: {seen}"
            width = await page.eval_on_selector(bar, "b => b.style.width") if moving else ""
            assert width.endswith("%")

            await page.wait_for_selector(f'#completed li[data-job-id="{job_id}"]', timeout=15_000)
            await page.wait_for_selector(f'#running .job[data-job-id="{job_id}"]', state="detached")
            await page.screenshot(path=str(artifacts / "dashboard.png"), full_page=True)
            assert "sim-dash" in await page.inner_text("#workers")
            assert "comfyui" in await page.inner_text("#workers")  # connector status from heartbeats
        finally:
            await browser.close()
            await worker.stop()
            runner.cancel()
            with contextlib.suppress(BaseException):
                await runner
