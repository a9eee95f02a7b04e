"""A hub on a given Redis URL with an SDK worker and client over real sockets, for the tests of
Redis deployments (TLS, ACL, Sentinel, Cluster): ``async with Rig(url) as rig: await rig.job()``."""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from conftest import hub_config
from empq.hub.server import HubServer

from empq.client import Backoff, EmpQueueClient, JobSubmission
from empq.worker import EmpWorker, Job

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.append(str(REPO))  # bench.redis_servers

QUICK = Backoff(initial=0.05, maximum=0.3)


async def echo(job: Job, progress: Any) -> dict[str, Any]:
    await progress(50, "half way")
    return {"output_files": [f"out://{job.job_id}"], "metadata": {"payload": job.payload}}


async def until(predicate: Callable[[], Any], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


class Rig:
    """Hubs (in process) on ``url``, one SDK worker on the first and one SDK client on the last."""

    def __init__(self, url: str, hubs: int = 1, urls: list[str] | None = None, **overrides: Any) -> None:
        self.urls = urls or [url] * hubs
        overrides.setdefault("key_prefix", f"{{t-{uuid.uuid4().hex[:10]}}}")
        self.configs = [hub_config(u, heartbeat_interval_ms=300, **overrides) for u in self.urls]
        self.service = f"rig-{uuid.uuid4().hex[:6]}"
        self.hubs: list[HubServer] = []
        self.worker: EmpWorker | None = None
        self.client: EmpQueueClient | None = None

    @property
    def hub(self) -> HubServer:
        return self.hubs[0]

    def ws(self, hub: HubServer) -> str:
        return f"ws://127.0.0.1:{hub.port}"

    async def __aenter__(self) -> Rig:
        try:
            for config in self.configs:
                hub = HubServer(config)
                await hub.start()
                self.hubs.append(hub)
            self.worker = EmpWorker(
                self.ws(self.hubs[0]),
                handler=echo,
                services=[self.service],
                claim_interval=0.3,
                backoff=QUICK,
            )
            await self.worker.start()
            self.client = EmpQueueClient(self.ws(self.hubs[-1]), backoff=QUICK, request_timeout=30)
            await self.client.connect()
        except BaseException:
            await self.__aexit__()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.worker is not None:
            await self.worker.stop()
        if self.client is not None:
            await self.client.disconnect()
        for hub in self.hubs:
            await hub.stop(downtime=0.05)

    def submission(self, n: int = 0) -> JobSubmission:
        return JobSubmission("rig", {"n": n}, requirements={"service_type": self.service})

    async def job(self, n: int = 0, timeout: float = 30) -> str:
        """Submit a job and wait for its result (an echo of the payload): its id."""
        assert self.client is not None
        job_id = await self.client.submit_job(self.submission(n))
        result = await self.client.wait(job_id, timeout=timeout)
        assert result.success and result.metadata == {"payload": {"n": n}}, result
        return job_id

    async def jobs(self, count: int, concurrency: int = 4, timeout: float = 60) -> list[str]:
        done: list[str] = []
        numbers = iter(range(count))

        async def loop() -> None:
            for n in numbers:
                done.append(await self.job(n, timeout))

        await asyncio.gather(*(loop() for _ in range(concurrency)))
        return done
