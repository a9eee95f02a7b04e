"""The connectors (``empq.connectors``): ``simulate`` is seedable; ``http`` run by a worker against
the real hub posts each payload to a small HTTP service and reports its answer (2xx: result, 4xx:
failed without retry, 5xx: retried)."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from empq.generated.messages.job_assigned import JobAssigned

from empq.client import Backoff, EmpQueueClient, JobFailed, JobSubmission
from empq.connectors import HttpConnector, JobError, SimulateConnector
from empq.worker import EmpWorker, Job

QUICK = Backoff(initial=0.05, maximum=0.3)


def job(service: str, **fields: Any) -> JobSubmission:
    return JobSubmission(
        fields.pop("job_type", "text_to_image"),
        fields.pop("payload", {}),
        requirements={"service_type": service},
        **fields,
    )


def test_simulate_connector_is_seedable():
    async def run(seed: int) -> list[bool]:
        connector = SimulateConnector("sim", steps=2, step_seconds=0, failure_rate=0.5, seed=seed)
        outcomes = []
        for i in range(20):
            fake = Job(JobAssigned.model_construct(job_id=f"job-{i}", payload={}, job_type="t"), worker=None)  # type: ignore[arg-type]

            async def progress(*args: Any, **kw: Any) -> None:
                return None

            try:
                await connector(fake, progress)
                outcomes.append(True)
            except JobError:
                outcomes.append(False)
        return outcomes

    first, again, other = (asyncio.run(run(s)) for s in (7, 7, 8))
    assert first == again and first != other
    assert 3 < first.count(False) < 17


@pytest.fixture
def service() -> Iterator[dict[str, Any]]:
    """A small HTTP service: echoes the posted JSON; payload {"status": N} answers HTTP N."""
    seen: dict[str, Any] = {"requests": []}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen["requests"].append({"body": body, "job_id": self.headers["X-Empq-Job-Id"]})
            status = int(body.get("status", 200))
            answer = {"output_files": ["https://cdn.example/x.png"], "metadata": {"echo": body}}
            data = json.dumps(answer if status == 200 else {"error": "nope"}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    seen["url"] = f"http://127.0.0.1:{server.server_address[1]}"
    yield seen
    server.shutdown()
    server.server_close()


async def test_http_connector(start_hub, service):
    hub = await start_hub(heartbeat_interval_ms=150, claim_timeout_ms=3000)
    connector = HttpConnector(f"{service['url']}/generate", "comfyui", health_url=f"{service['url']}/health")
    worker = EmpWorker(hub.url, connectors=[connector], services=[], claim_interval=0.5, backoff=QUICK)
    async with EmpQueueClient(hub.url, backoff=QUICK) as client:
        await worker.start()
        try:
            await _run_http_jobs(client, connector, service)
        finally:
            await worker.stop()


async def _run_http_jobs(client: EmpQueueClient, connector: HttpConnector, service: dict[str, Any]) -> None:
    assert connector.ws_status == "connected"
    job_id = await client.submit_job(job("comfyui", payload={"prompt": "a cat"}))
    result = await client.wait(job_id, timeout=5)
    assert result.output_files == ["https://cdn.example/x.png"]
    assert result.metadata == {"echo": {"prompt": "a cat"}}
    assert result.connector_info["status_code"] == 200
    assert service["requests"][0] == {"body": {"prompt": "a cat"}, "job_id": job_id}

    refused = await client.submit_job(job("comfyui", payload={"status": 400}, max_retries=3))
    with pytest.raises(JobFailed, match="HTTP 400"):
        await client.wait(refused, timeout=5)
    assert len([r for r in service["requests"] if r["job_id"] == refused]) == 1  # 4xx: no retry
    flaky = await client.submit_job(job("comfyui", payload={"status": 503}, max_retries=1))
    with pytest.raises(JobFailed, match="HTTP 503"):
        await client.wait(flaky, timeout=5)
    assert len([r for r in service["requests"] if r["job_id"] == flaky]) == 2  # 5xx: retried
