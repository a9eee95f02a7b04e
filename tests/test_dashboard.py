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
            await page.goto(f"{base}/#/workers")
            await page.wait_for_selector("#conn.on", timeout=10_000)
            await page.wait_for_selector('#workers .row[data-worker-id="sim-dash"]', timeout=10_000)
            await page.click('nav a[data-view="overview"]')

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
                running = await page.evaluate("document.getElementById('kpi-running').textContent")
                if len(seen) >= 3 and 0 < seen[-1] < 100 and running == "1":  # the count agrees
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
            await page.click('nav a[data-view="workers"]')
            row = '#workers .row[data-worker-id="sim-dash"]'
            # the connector's status, from heartbeats
            await page.wait_for_selector(f'{row} .chip:has-text("comfyui")', timeout=10_000)
        finally:
            await browser.close()
            await worker.stop()
            runner.cancel()
            with contextlib.suppress(BaseException):
                await runner


INJECTIONS = {
    # each would run script if written into the page as markup
    "gpu_model": '<img src=x onerror="window.__pwned = (window.__pwned || 0) + 1">',
    "gpu_memory_used_gb": "<svg onload=\"window.__pwned = 'svg'\"></svg>",
    "gpu_memory_total_gb": '"><script>window.__pwned = "script"</script>',
}


async def test_peer_strings_are_text_the_token_leaves_the_url_and_scripts_are_ours_only(start_hub):
    """D19: a worker's telemetry, job types and errors are shown as text, never run; the dashboard
    is served with a Content-Security-Policy without inline script; ?token= is moved out of the
    address bar at load (it read location.search before)."""
    playwright_api = pytest.importorskip("playwright.async_api")
    hub = await start_hub(monitor_tokens="secret-monitor", worker_tokens="w", client_tokens="c")
    base = f"http://127.0.0.1:{hub.http.port}"
    async with httpx.AsyncClient(base_url=base, timeout=10) as api:
        for path in ("/", "/static/dashboard.js"):
            r = await api.get(path)
            csp = r.headers.get("content-security-policy", "")
            assert "script-src 'self'" in csp and "unsafe-inline" not in csp, (path, r.headers)
            assert r.headers.get("referrer-policy") == "no-referrer"
    worker = await hub.peers.raw("evil")
    registered = await worker.request(
        "register_worker",
        "worker_registered",
        worker_id="evil-worker",
        capabilities={"services": ["comfyui"]},
        auth_token="w",
    )
    assert registered["type"] == "worker_registered", registered
    ack = await worker.request(
        "worker_heartbeat", "worker_heartbeat_ack", worker_id="evil-worker", system_info=INJECTIONS
    )
    assert ack["type"] == "worker_heartbeat_ack", ack
    await worker.request(
        "connector_ws_status",
        "ack",
        worker_id="evil-worker",
        connector_type='<img src=x onerror="window.__pwned=2">',
        status="connected",
    )
    artifacts = REPO / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    async with playwright_api.async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
        )
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 700})
            violations: list[str] = []
            page.on("console", lambda m: violations.append(m.text) if "Content Security" in m.text else None)
            await page.goto(f"{base}/?token=secret-monitor#/workers")
            row = '#workers .row[data-worker-id="evil-worker"]'
            await page.wait_for_selector(row, timeout=10_000)
            assert "token" not in page.url and "secret-monitor" not in page.url
            assert await page.evaluate("location.search") == ""
            assert await page.evaluate("sessionStorage.getItem('empq-token')") == "secret-monitor"
            text = await page.inner_text(row)
            assert "<img src=x" in text and "<svg" in text, text  # shown as text
            assert await page.evaluate("document.querySelectorAll('#workers img, #workers svg').length") == 0
            await asyncio.sleep(1.5)  # a stats round or two more
            assert await page.evaluate("window.__pwned === undefined"), await page.evaluate("window.__pwned")
            await page.screenshot(path=str(artifacts / "dashboard-injection.png"), full_page=True)
        finally:
            await browser.close()


async def test_the_dashboard_script_never_writes_markup():
    sinks = ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function")
    for path in (REPO / "hub" / "static").glob("*.js"):  # dashboard.js and its modules
        source = path.read_text(encoding="utf-8")
        for sink in sinks:
            assert sink not in source, (path.name, sink)
    page = (REPO / "hub" / "static" / "dashboard.html").read_text(encoding="utf-8")
    assert "<script>" not in page  # scripts only by src (the CSP refuses inline ones anyway)
