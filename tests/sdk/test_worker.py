"""``EmpWorker`` against the real hub (in-process, real sockets, real redis-server): priorities
across two workers, cancellation reaching a running handler, retries then failure seen by
``wait()``, concurrency limits, heartbeats and connector reports, draining, run time limits,
handler dispatch (issue 6). The connectors themselves: ``test_connectors.py``."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import pytest_asyncio
from conftest import hub_config
from empq.hub.server import HubServer
from waiting import until

from empq import protocol
from empq.client import Backoff, EmpQueueClient, JobCancelled, JobFailed, JobSubmission
from empq.connectors import JobError, SimulateConnector
from empq.worker import EmpWorker, Job

QUICK = Backoff(initial=0.05, maximum=0.3)


@pytest_asyncio.fixture
async def env(redis_url):
    """A hub with short timers, and factories of clients and workers stopped at teardown."""
    server = HubServer(hub_config(redis_url, heartbeat_interval_ms=150, claim_timeout_ms=3000))
    await server.start()
    url = f"ws://127.0.0.1:{server.port}"
    clients: list[EmpQueueClient] = []
    workers: list[EmpWorker] = []

    class Env:
        hub = server

        async def client(self, **kw: Any) -> EmpQueueClient:
            client = EmpQueueClient(url, backoff=QUICK, **kw)
            await client.connect()
            clients.append(client)
            return client

        def worker(self, handler: Any = None, **kw: Any) -> EmpWorker:
            kw.setdefault("services", ["sim"])
            kw.setdefault("claim_interval", 0.5)
            worker = EmpWorker(url, handler=handler, backoff=QUICK, **kw)
            workers.append(worker)
            return worker

    yield Env()
    for worker in workers:
        await worker.stop()
    for client in clients:
        await client.disconnect()
    await server.stop(downtime=0.05)


def job(service: str = "sim", **fields: Any) -> JobSubmission:
    return JobSubmission(
        fields.pop("job_type", "text_to_image"),
        fields.pop("payload", {}),
        requirements={"service_type": service},
        **fields,
    )


async def test_two_workers_ten_jobs_run_by_priority(env):
    """The walkthrough in SDK form: ten jobs of different priorities, two simulated workers."""
    client = await env.client()
    priorities = [30, 90, 10, 70, 50, 100, 20, 80, 40, 60]
    ids = {
        await client.submit_job(job(priority=p, payload={"p": p, "steps": 2, "step_seconds": 0.02})): p
        for p in priorities
    }
    started: list[int] = []
    workers = [env.worker(connectors=[SimulateConnector("sim", seed=i)]) for i in range(2)]
    for worker in workers:
        worker.on_event(lambda event, info: event == "job_started" and started.append(info["priority"]))
        await worker.start()
    results = await asyncio.gather(*(client.wait(job_id, timeout=10) for job_id in ids))
    assert all(r.success and r.output_files for r in results)
    assert [r.metadata["echo"]["p"] for r in results] == list(ids.values())
    ranked = sorted(priorities, reverse=True)
    # two workers claim concurrently: each start is within one place of the priority order
    assert all(abs(ranked.index(p) - i) <= 1 for i, p in enumerate(started)), started
    await until(lambda: sum(w.counts["completed"] for w in workers) == 10, 3, "the workers' counts")
    assert all(w.counts["completed"] > 0 for w in workers)  # the work was shared


async def test_cancellation_reaches_the_running_handler(env):
    client = await env.client()
    running, cancelled = asyncio.Event(), asyncio.Event()

    async def forever(job: Job, progress: Any) -> None:
        await progress(5, "thinking")
        running.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    worker = env.worker(forever)
    await worker.start()
    job_id = await client.submit_job(job())
    waiting = asyncio.create_task(client.wait(job_id, timeout=10))
    await asyncio.wait_for(running.wait(), 5)
    await client.cancel_job(job_id, "user pressed stop")
    await asyncio.wait_for(cancelled.wait(), 3)
    with pytest.raises(JobCancelled, match="user pressed stop"):
        await waiting
    await until(lambda: not worker.jobs, 3, "the slot to be free")
    assert worker.counts["cancelled"] == 1
    # the freed slot takes the next job
    running.clear()
    next_id = await client.submit_job(job())
    await asyncio.wait_for(running.wait(), 5)
    assert next_id in worker.jobs


async def test_raising_handler_is_retried_then_fails(env):
    client = await env.client()
    attempts: list[int] = []

    async def broken(job: Job, progress: Any) -> None:
        attempts.append(job.retry_count)
        if job.payload.get("fatal"):
            raise JobError("bad prompt", retry=False, details={"field": "prompt"})
        raise RuntimeError("CUDA out of memory")

    worker = env.worker(broken)
    await worker.start()
    job_id = await client.submit_job(job(max_retries=2))
    with pytest.raises(JobFailed, match="CUDA out of memory") as failed:
        await client.wait(job_id, timeout=10)
    assert failed.value.status == "failed" and attempts == [0, 1, 2]
    status = await client.request_status(job_id)
    assert status.status.value == "failed" and status.retry_count == 2

    attempts.clear()
    fatal = await client.submit_job(job(max_retries=5, payload={"fatal": True}))
    with pytest.raises(JobFailed, match="bad prompt"):
        await client.wait(fatal, timeout=5)
    assert attempts == [0]  # JobError(retry=False): no retry


async def test_concurrency_limit_is_respected(env):
    client = await env.client()
    running = 0
    peak = 0

    async def work(job: Job, progress: Any) -> dict[str, Any]:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        try:
            await asyncio.sleep(0.1)
        finally:
            running -= 1
        return {}

    worker = env.worker(work, max_concurrent=3)
    await worker.start()
    ids = await asyncio.gather(*(client.submit_job(job(payload={"i": i})) for i in range(12)))
    await asyncio.gather(*(client.wait(job_id, timeout=10) for job_id in ids))
    assert peak == 3
    await until(lambda: worker.counts["completed"] == 12, 3, "the worker's count")


async def test_heartbeats_and_connector_reports(env):
    monitor = await env.client(client_type="monitor", permissions=["view_system_stats", "view_workers"])
    relayed: list[Any] = []
    monitor.on_message(lambda msg: msg.type == "connector_ws_status" and relayed.append(msg))
    worker = env.worker(
        connectors=[SimulateConnector("sim", steps=1, step_seconds=0.01)], worker_id="hb-worker"
    )
    await worker.start()
    await until(lambda: relayed, 3, "connector_ws_status at the monitor")
    assert relayed[0].worker_id == "hb-worker" and relayed[0].status.value == "connected"
    assert worker.heartbeat_interval == pytest.approx(0.15)
    await asyncio.sleep(0.5)  # a few heartbeats
    stats = await monitor.request_stats(["workers"])
    (summary,) = [w for w in stats.workers.workers if w.worker_id == "hb-worker"]
    assert summary.connector_status["sim"].status.value in ("idle", "active")
    assert summary.system_info is not None and summary.system_info.uptime is not None
    assert protocol.now_ms() - summary.last_heartbeat < 1000
    assert summary.capabilities.max_concurrent_jobs == 1


async def test_drain_finishes_short_jobs_and_hands_back_the_rest(env):
    client = await env.client()

    async def work(job: Job, progress: Any) -> dict[str, Any]:
        await asyncio.sleep(job.payload["seconds"])
        return {"metadata": {"by": "first"}}

    first = env.worker(work, max_concurrent=2, worker_id="drainer")
    await first.start()
    short = await client.submit_job(job(payload={"seconds": 0.1}))
    long = await client.submit_job(job(payload={"seconds": 3600}))
    await until(lambda: len(first.jobs) == 2, 5, "both jobs running")
    await first.drain(timeout=0.5)
    assert (await client.wait(short, timeout=5)).metadata == {"by": "first"}
    assert first.counts["completed"] == 1 and first.counts["handed_back"] == 1
    for _ in range(100):  # the hub handles the disconnect while we ask
        status = await client.request_status(long)
        if status.status.value == "queued":
            break
        await asyncio.sleep(0.02)
    assert status.status.value == "queued" and status.retry_count == 0  # handed back: no retry counted

    async def quick(job: Job, progress: Any) -> dict[str, Any]:
        return {"metadata": {"by": "second"}}

    second = env.worker(quick)
    await second.start()
    assert (await client.wait(long, timeout=5)).metadata == {"by": "second"}


async def test_run_time_limit_stops_the_handler(env):
    client = await env.client()
    stopped = asyncio.Event()

    async def slow(job: Job, progress: Any) -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            stopped.set()
            raise

    worker = env.worker(slow)
    await worker.start()
    job_id = await client.submit_job(job(timeout_seconds=0.3))
    with pytest.raises(JobFailed) as failed:
        await client.wait(job_id, timeout=5)
    assert failed.value.status == "timeout"
    await asyncio.wait_for(stopped.wait(), 3)  # job_update timeout reached the worker
    await until(lambda: not worker.jobs, 3, "the slot to be free")


async def test_handler_dispatch(env):
    client = await env.client()
    worker = env.worker(
        services=["sim", "other"], connectors=[SimulateConnector("conn", steps=1, step_seconds=0.01)]
    )

    @worker.handler("special")
    async def by_type(job: Job, progress: Any) -> dict[str, Any]:
        return {"metadata": {"via": "type"}}

    @worker.handler(service="other")
    async def by_service(job: Job, progress: Any) -> dict[str, Any]:
        return {"metadata": {"via": "service"}}

    @worker.handler()
    async def fallback(job: Job, progress: Any) -> dict[str, Any]:
        return {"metadata": {"via": "default"}}

    await worker.start()
    cases = {
        "type": job("other", job_type="special"),
        "service": job("other"),
        "connector": job("conn"),
        "default": job("sim"),
    }
    for via, submission in cases.items():
        result = await client.wait(await client.submit_job(submission), timeout=5)
        if via == "connector":
            assert result.connector_info == {"connector_type": "simulate", "service": "conn"}
        else:
            assert result.metadata == {"via": via}


async def test_unawaited_progress_goes_before_the_result(env):
    client = await env.client()

    async def hasty(job: Job, progress: Any) -> dict[str, Any]:
        for pct in (10, 50, 100):
            progress(pct, f"{pct}%")  # not awaited: still sent, in order, before the result
        return {}

    events: list[str] = []
    worker = env.worker(hasty)
    worker.on_event(lambda event, info: events.append(event))
    await worker.start()
    job_id = await client.submit_job(job())
    seen = [event async for event in client.updates(job_id)]
    progress = [e.progress for e in seen if getattr(e, "progress", None) is not None]
    # updates that reach the hub in one tick are coalesced (the latest fanned out): the client
    # sees them in order, the last one always, and the result after them
    assert progress == sorted(set(progress)) and progress[-1] == 100 and seen[-1].type == "job_completed"
    await until(lambda: "job_completed" in events, 3, "the worker's event")
    assert "job_lost" not in events


async def test_claims_on_a_timer_without_job_available(env):
    client = await env.client()
    worker = env.worker(
        lambda job, progress: asyncio.sleep(0, {"ok": True}), subscribe_to_jobs=False, claim_interval=0.2
    )
    await worker.start()
    job_id = await client.submit_job(job())
    assert (await client.wait(job_id, timeout=5)).model_extra == {"ok": True}


async def test_a_restarted_worker_hands_back_jobs_it_cannot_know(env):
    """A worker process that dies (no disconnect) and comes back with the same id within the grace
    period is given its old jobs (resumed_jobs); not knowing them, it fails them with retry, and
    runs them again."""
    client = await env.client()
    started = asyncio.Event()

    async def stuck(job: Job, progress: Any) -> None:
        started.set()
        await asyncio.sleep(3600)

    crashed = env.worker(stuck, worker_id="phoenix", reconnect=False)
    await crashed.start()
    job_id = await client.submit_job(job())
    await asyncio.wait_for(started.wait(), 5)
    crashed._link.ws.transport.abort()  # the process "dies": no disconnect
    await until(lambda: crashed._stopped.is_set(), 3, "the crashed worker to stop")

    async def fine(job: Job, progress: Any) -> dict[str, Any]:
        return {"metadata": {"attempt": job.retry_count}}

    reborn = env.worker(fine, worker_id="phoenix")
    for _ in range(50):  # until the hub has noticed the old connection is gone
        try:
            await reborn.start()
            break
        except Exception:
            await asyncio.sleep(0.05)
    assert [j.root for j in reborn.registration.resumed_jobs] == [job_id]
    assert (await client.wait(job_id, timeout=5)).metadata == {"attempt": 1}
