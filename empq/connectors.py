"""Connectors: what runs a job on the worker's machine (a ComfyUI, an A1111, any HTTP service).

A connector serves one service type (``comfyui``, ``a1111``...) and reports its health: the worker
relays ``ws_status`` changes to the hub as ``connector_ws_status`` and puts ``health()`` in every
heartbeat's ``connector_status`` (keyed by the connector's service).

Shipped:

- ``SimulateConnector``: timed steps with progress, a configurable failure rate, seedable — for
  trying the queue without a GPU, demos and tests.
- ``HttpConnector``: POSTs the job's payload as JSON to a service URL (stdlib ``urllib`` in a
  thread: no extra dependency) and reports the JSON it answers as the job's result.

Write your own by subclassing ``Connector`` and implementing ``run`` (and ``start``/``stop`` if it
holds a connection).
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar

from empq.generated.defs.connector_status import ConnectorStatus

if TYPE_CHECKING:
    from empq.worker import Job

Progress = Callable[..., Awaitable[None]]

WS_STATES = ("connected", "connecting", "disconnected", "error")


class JobError(Exception):
    """Raise from a handler or connector to fail the job with this text.

    ``retry=False``: fail for good even if retries remain (bad input, refused by the service).
    ``details``: sent as ``fail_job.error_details``."""

    def __init__(self, message: str, *, retry: bool = True, details: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.retry = retry
        self.details = dict(details or {})


def _iso_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Connector:
    """Base class. ``service``: the service type it runs (a worker capability); ``type``: the
    connector kind reported as ``connector_type``."""

    type: ClassVar[str] = "connector"

    def __init__(self, service: str) -> None:
        self.service = service
        self.ws_status = "disconnected"
        self.details: dict[str, Any] = {}
        self.active = 0  # jobs running through it now
        self.response_time_ms: float | None = None
        self.last_health_check: str | None = None
        self._listener: Callable[[Connector], None] | None = None

    def attach(self, listener: Callable[[Connector], None]) -> None:
        """The worker's hook: called with the connector whenever ``ws_status`` changes."""
        self._listener = listener

    def set_status(self, status: str, **details: Any) -> None:
        """Record a connection state (connected, connecting, disconnected, error) and tell the worker."""
        if status not in WS_STATES:
            raise ValueError(f"connector status must be one of {WS_STATES}, not {status!r}")
        changed = status != self.ws_status or details != self.details
        self.ws_status = status
        self.details = details
        self.last_health_check = _iso_now()
        if changed and self._listener is not None:
            self._listener(self)

    def health(self) -> ConnectorStatus:
        """This connector's entry of a heartbeat's ``connector_status``."""
        status = {"connected": "active" if self.active else "idle"}.get(self.ws_status, self.ws_status)
        fields: dict[str, Any] = {"status": status, "queue_length": self.active}
        if self.response_time_ms is not None:
            fields["response_time_ms"] = round(self.response_time_ms, 3)
        if self.last_health_check:
            fields["last_health_check"] = self.last_health_check
        return ConnectorStatus(**fields)

    async def start(self) -> None:
        """Connect to the service (the worker calls it once, before registering)."""
        self.set_status("connected")

    async def stop(self) -> None:
        self.set_status("disconnected")

    async def run(self, job: Job, progress: Progress) -> Mapping[str, Any] | None:
        """Run one job; return its result (``success`` defaults to true) or raise (``JobError``)."""
        raise NotImplementedError

    async def __call__(self, job: Job, progress: Progress) -> Mapping[str, Any] | None:
        self.active += 1
        started = time.monotonic()
        try:
            return await self.run(job, progress)
        finally:
            self.active -= 1
            self.response_time_ms = (time.monotonic() - started) * 1000


class SimulatedFailure(JobError):
    """The simulate connector's planned failure."""


class SimulateConnector(Connector):
    """Pretends to generate: ``steps`` steps of ``step_seconds``, a progress report after each.

    A job's payload may override ``steps``, ``step_seconds`` and force ``fail`` (true). Otherwise a
    job fails (retryably, at a random step) with probability ``failure_rate``. ``seed`` makes the
    failures and the reported seeds reproducible.
    """

    type = "simulate"

    def __init__(
        self,
        service: str = "comfyui",
        *,
        steps: int = 5,
        step_seconds: float = 0.5,
        failure_rate: float = 0.0,
        seed: int | None = None,
    ) -> None:
        super().__init__(service)
        if steps < 1:
            raise ValueError("steps must be at least 1")
        if not 0.0 <= failure_rate <= 1.0:
            raise ValueError("failure_rate must be between 0 and 1")
        self.steps = steps
        self.step_seconds = step_seconds
        self.failure_rate = failure_rate
        self.rng = random.Random(seed)

    async def start(self) -> None:
        self.set_status("connected", url=f"simulate://{self.service}")

    async def run(self, job: Job, progress: Progress) -> Mapping[str, Any]:
        payload = job.payload
        steps = max(1, int(payload.get("steps", self.steps)))
        step_seconds = float(payload.get("step_seconds", self.step_seconds))
        fail_at = None
        if payload.get("fail") or self.rng.random() < self.failure_rate:
            fail_at = self.rng.randint(1, steps)
        seed = self.rng.randrange(2**31)
        for step in range(1, steps + 1):
            await asyncio.sleep(step_seconds)
            if step == fail_at:
                raise SimulatedFailure(
                    f"simulated failure at step {step}/{steps}",
                    details={"error_type": "SimulatedFailure", "connector": self.type, "step": step},
                )
            await progress(round(100 * step / steps, 2), f"step {step}/{steps}")
        return {
            "success": True,
            "output_files": [f"sim://{self.service}/{job.job_id}/output.png"],
            "metadata": {"steps": steps, "seed": seed, "echo": dict(payload)},
            "connector_info": {"connector_type": self.type, "service": self.service},
        }


class HttpConnector(Connector):
    """POSTs the job's payload (JSON) to ``url`` and reports the JSON answer as the result.

    The request carries ``X-Empq-Job-Id`` and ``X-Empq-Job-Type`` headers. A JSON object answer
    is the result (``success`` defaults to true; ``success: false`` fails the job without retry,
    with its ``error``); any other JSON goes under ``output``. HTTP 5xx and connection errors fail
    the job with retry; 4xx without. ``health_url`` (optional) is checked with GET at start.
    Cancelling a job abandons its request (the thread finishes it in the background).
    """

    type = "http"

    def __init__(
        self,
        url: str,
        service: str = "comfyui",
        *,
        timeout: float = 300.0,
        health_url: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(service)
        self.url = url
        self.timeout = timeout
        self.health_url = health_url
        self.headers = dict(headers or {})

    async def start(self) -> None:
        if not self.health_url:
            self.set_status("connected", url=self.url)
            return
        self.set_status("connecting", url=self.health_url)
        try:
            await asyncio.to_thread(self._get, self.health_url)
        except OSError as exc:
            self.set_status("error", url=self.health_url, error=str(exc))
        else:
            self.set_status("connected", url=self.url, connection_time=int(time.time() * 1000))

    def _get(self, url: str) -> int:
        with urllib.request.urlopen(url, timeout=min(self.timeout, 10)) as response:
            return int(response.status)

    def _post(self, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        request = urllib.request.Request(self.url, data=body, method="POST", headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return int(response.status), response.read()
        except urllib.error.HTTPError as exc:
            return int(exc.code), exc.read()

    async def run(self, job: Job, progress: Progress) -> Mapping[str, Any]:
        body = json.dumps(job.payload).encode()
        headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "X-Empq-Job-Id": job.job_id,
            "X-Empq-Job-Type": job.job_type,
            **self.headers,
        }
        await job.report_service_request(self.service, method="POST", url=self.url, payload=job.payload)
        await progress(0, f"POST {self.url}")
        started = time.monotonic()
        try:
            status, raw = await asyncio.to_thread(self._post, body, headers)
        except OSError as exc:  # refused, DNS, timeout (URLError is an OSError)
            self.set_status("error", url=self.url, error=str(exc))
            raise JobError(
                f"service at {self.url} unreachable: {getattr(exc, 'reason', exc)}",
                details={"error_type": type(exc).__name__, "connector": self.type, "service_url": self.url},
            ) from exc
        elapsed_ms = (time.monotonic() - started) * 1000
        self.set_status("connected", url=self.url, last_message=int(time.time() * 1000))
        text = raw.decode("utf-8", "replace")
        try:
            data: Any = json.loads(text) if text.strip() else None
        except ValueError:
            data = text
        info = {
            "connector_type": self.type,
            "url": self.url,
            "status_code": status,
            "response_time_ms": elapsed_ms,
        }
        if status >= 400:
            raise JobError(
                f"service answered HTTP {status}",
                retry=status >= 500,
                details={
                    "connector": self.type,
                    "service_url": self.url,
                    "status_code": status,
                    "body": text[:2000],
                },
            )
        if isinstance(data, dict):
            if data.get("success") is False:
                raise JobError(
                    str(data.get("error") or "service reported failure"), retry=False, details=data
                )
            result = {"success": True, **data}
            result.setdefault("connector_info", info)
        else:
            result = {"success": True, "output": data, "connector_info": info}
        await progress(100, f"HTTP {status} in {elapsed_ms:.0f} ms")
        return result


CONNECTORS: dict[str, type[Connector]] = {"simulate": SimulateConnector, "http": HttpConnector}

__all__ = [
    "CONNECTORS",
    "Connector",
    "HttpConnector",
    "JobError",
    "Progress",
    "SimulateConnector",
    "SimulatedFailure",
]
