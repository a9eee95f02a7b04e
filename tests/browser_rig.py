"""Headless Chromium (Debian's, driven by Playwright) for the dashboard's browser tests: a
``browser`` fixture, a page on a hub, waits, screenshots under test-artifacts/."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil

import pytest
from conftest import REPO

CHROMIUM = os.environ.get("EMPQ_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = REPO / "test-artifacts"
ERROR = "CUDA out of memory: tried to allocate 2.50 GiB"
MARKS = [
    pytest.mark.asyncio,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="no chromium (apt-get install chromium)"),
]


@contextlib.asynccontextmanager
async def launch():
    """Chromium, for a test module's ``browser`` fixture."""
    playwright_api = pytest.importorskip("playwright.async_api")
    ARTIFACTS.mkdir(exist_ok=True)
    async with playwright_api.async_playwright() as pw:
        chromium = await pw.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
        )
        try:
            yield chromium
        finally:
            await chromium.close()


async def open_page(browser, hub, path: str = "/"):
    """A page on the hub's dashboard, connected; ``page.errors`` collects script errors."""
    context = await browser.new_context(viewport={"width": 1440, "height": 900})
    await context.grant_permissions(["clipboard-read", "clipboard-write"])
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.errors = errors
    await page.goto(f"http://127.0.0.1:{hub.http.port}{path}")
    await page.wait_for_selector("#conn.on", timeout=10_000)
    return page


async def until(page, expression: str, timeout: float = 10) -> None:
    """Wait until a JavaScript expression is true in the page (polled from here: the page's CSP
    refuses the eval that Playwright's wait_for_function polls with)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await page.evaluate(expression):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not true within {timeout}s: {expression}")
        await asyncio.sleep(0.05)


async def shot(page, name: str) -> None:
    await page.screenshot(path=str(ARTIFACTS / f"browser-{name}.png"))
