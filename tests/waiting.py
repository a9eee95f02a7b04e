"""Waiting in tests: ``until`` polls a condition with a bound in time (never a timed assertion: the
bound only ends a wait that would otherwise hang)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any


async def until(
    predicate: Callable[[], Any], timeout: float = 5.0, what: str = "condition", step: float = 0.02
) -> Any:
    """The predicate's first truthy value; AssertionError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(step)
