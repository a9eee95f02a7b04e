"""``EmpQueueClient`` against the real hub (in-process, real sockets, real redis-server): the
reference's interface, waits and update streams, correlation of concurrent requests, token auth,
timeouts, errors, and reconnecting across a hub restart with no job lost (issue 6)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import pytest
import pytest_asyncio
from conftest import hub_config
from empq.generated.messages.cancel_job import CancelJob
from empq.generated.messages.job_completed import JobCompleted
from empq.generated.messages.job_update import JobUpdate
from empq.generated.messages.stats_update import StatsUpdate
from empq.hub.server import HubServer
from waiting import until
from websockets.asyncio.server import serve

from empq import protocol
from empq.client import (
    AuthFailed,
    Backoff,
    EmpQueueClient,
    HubError,
    HubUnreachable,
    JobCancelled,
    JobFailed,
    JobSubmission,
    RequestTimeout,
)
from empq.worker import EmpWorker, Job

FAST = {"heartbeat_interval_ms": 200}
QUICK = Backoff(initial=0.05, maximum=0.3)


class Hub:
    """An in-process hub that can be stopped and started again on the same port, Redis and prefix."""

    def __init__(self, redis_url: str, **overrides: Any) -> None:
        self.config = hub_config(redis_url, **{**FAST, **overrides})
        self.server: HubServer | None = None
        self.url = ""

    async def start(self) -> Hub:
        self.server = HubServer(self.config)
        await self.server.start()
        self.config.ws_port = self.server.port  # a restart listens on the same port
        self.url = f"ws://127.0.0.1:{self.server.port}"
        return self

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop(downtime=0.05)
            self.server = None


@pytest_asyncio.fixture
async def sdk(redis_url):
    """Factory of a hub, clients and workers; everything is stopped at teardown."""
    hubs: list[Hub] = []
    clients: list[EmpQueueClient] = []
    workers: list[EmpWorker] = []

    class Factory:
        async def hub(self, **overrides: Any) -> Hub:
            hub = await Hub(redis_url, **overrides).start()
            hubs.append(hub)
            return hub

        async def client(self, hub: Hub, **kw: Any) -> EmpQueueClient:
            kw.setdefault("backoff", QUICK)
            client = EmpQueueClient(hub.url, **kw)
            await client.connect()
            clients.append(client)
            return client

        async def worker(self, hub: Hub, handler: Any = None, **kw: Any) -> EmpWorker:
            kw.setdefault("services", ["sdk"])
            kw.setdefault("claim_interval", 0.5)
            kw.setdefault("backoff", QUICK)
            worker = EmpWorker(hub.url, handler=handler, **kw)
            await worker.start()
            workers.append(worker)
            return worker

    yield Factory()
    for worker in workers:
        await worker.stop()
    for client in clients:
        await client.disconnect()
    for hub in hubs:
        await hub.stop()


async def echo(job: Job, progress: Any) -> dict[str, Any]:
    for pct in (25, 50, 75):
        await progress(pct, f"at {pct}")
    return {"output_files": [f"out://{job.job_id}"], "metadata": {"payload": job.payload}}


JOB = JobSubmission("text_to_image", {"prompt": "mountains"}, requirements={"service_type": "sdk"})


async def test_reference_interface(sdk):
    """connect(url), submit_job, subscribe_to_job, subscribe_to_stats, on_error, disconnect."""
    hub = await sdk.hub()
    await sdk.worker(hub, echo)
    client = EmpQueueClient(backoff=QUICK)
    await client.connect(hub.url)
    errors: list[Any] = []
    client.on_error(errors.append)
    job_id = await client.submit_job(JOB)
    assert job_id.startswith("job-")
    events: list[Any] = []
    done = asyncio.Event()

    async def on_event(event: Any) -> None:  # async callbacks are supported too
        events.append(event)
        if isinstance(event, JobCompleted):
            done.set()

    await client.subscribe_to_job(job_id, on_event)
    await asyncio.wait_for(done.wait(), 5)
    assert events[-1].result.output_files == [f"out://{job_id}"]
    assert [e.progress for e in events if isinstance(e, JobUpdate) and e.progress is not None][-3:] == [
        25,
        50,
        75,
    ]

    stats: list[StatsUpdate] = []
    confirmed = await client.subscribe_to_stats(stats.append, interval_seconds=1)
    assert confirmed.subscription_type.value == "stats"
    await until(lambda: stats, 3, "a stats_update")
    assert stats[0].stats.jobs is not None and stats[0].stats.jobs.completed == 1
    assert stats[0].stats.workers is not None and stats[0].stats.workers.total == 1

    # an error that answers no request (no id) reaches on_error
    await client.send(protocol.make(CancelJob, job_id="job-does-not-exist"))
    await until(lambda: errors, 3, "on_error")
    assert errors[0].error_code.value == "JOB_NOT_FOUND"
    await client.disconnect()
    assert not client.connected


async def test_wait_updates_status_and_cancel(sdk):
    hub = await sdk.hub()
    await sdk.worker(hub, echo)
    async with EmpQueueClient(hub.url, backoff=QUICK) as client:
        job_id = await client.submit_job(
            {"job_type": "upscale", "payload": {"n": 1}, "requirements": {"service_type": "sdk"}}
        )
        seen = [event async for event in client.updates(job_id)]
        assert isinstance(seen[-1], JobCompleted)
        result = await client.wait(job_id, timeout=5)  # after the fact: answered at once
        assert result.success and result.metadata == {"payload": {"n": 1}}
        status = await client.request_status(job_id)
        assert status.status.value == "completed" and status.result == result

        # a job no worker can run stays queued: cancel it; wait() raises JobCancelled
        stuck = await client.submit(JOB, requirements={"service_type": "nobody"}, priority=90)
        assert stuck.position == 1
        waiting = asyncio.create_task(client.wait(stuck.job_id, timeout=5))
        await asyncio.sleep(0.05)
        cancelled = await client.cancel_job(stuck.job_id, reason="changed my mind")
        assert cancelled.reason == "changed my mind"
        with pytest.raises(JobCancelled, match="changed my mind"):
            await waiting
        with pytest.raises(HubError) as refused:
            await client.cancel_job(stuck.job_id)
        assert refused.value.code == "INVALID_STATE"
        with pytest.raises(TimeoutError):
            await client.wait((await client.submit_job(JOB, requirements={"service_type": "nobody"})), 0.1)
        with pytest.raises(HubError, match="JOB_NOT_FOUND"):
            await client.request_status("job-00000000000000000000000000000000")


async def test_invalid_submission_is_refused_before_sending(sdk):
    hub = await sdk.hub()
    client = await sdk.client(hub)
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        await client.submit_job({"job_type": "t", "payload": {}, "requirements": {"service_typo": "x"}})
    with pytest.raises(ValidationError):
        await client.submit_job(JobSubmission("t", {}, priority=101))


async def test_concurrent_requests_each_get_their_own_reply(sdk):
    hub = await sdk.hub()
    client = await sdk.client(hub)
    accepted = await asyncio.gather(
        *(client.submit(JOB, payload={"i": i}, requirements={"service_type": "idle"}) for i in range(40))
    )
    ids = [a.job_id for a in accepted]
    assert len(set(ids)) == 40
    statuses = await asyncio.gather(*(client.request_status(job_id) for job_id in reversed(ids)))
    assert [s.job_id for s in statuses] == list(reversed(ids))
    assert sorted(s.position for s in statuses if s.position) == list(range(1, 41))
    rtts = await asyncio.gather(*(client.ping() for _ in range(20)), client.request_stats())
    assert all(isinstance(r, float) for r in rtts[:20])


async def test_token_auth(sdk):
    hub = await sdk.hub(client_tokens="client-secret", worker_tokens="worker-secret")
    client = await sdk.client(hub, token="client-secret")
    assert client.registration is not None
    with pytest.raises(AuthFailed, match="AUTH_FAILED"):
        await EmpQueueClient(hub.url, token="wrong").connect()
    with pytest.raises(AuthFailed):
        await EmpQueueClient(hub.url).connect()
    worker = await sdk.worker(hub, echo, token="worker-secret")
    assert await client.wait(await client.submit_job(JOB), timeout=5)
    await until(lambda: worker.counts["completed"] == 1, 3, "the worker's count")


async def test_unreachable_hub_and_request_timeouts(unused_tcp_port):
    started = time.monotonic()
    with pytest.raises(HubUnreachable, match="connection refused"):
        await EmpQueueClient(f"ws://127.0.0.1:{unused_tcp_port}").connect()
    assert time.monotonic() - started < 2

    async def mute(ws: Any) -> None:  # accepts the WebSocket, never answers
        await ws.wait_closed()

    async with serve(mute, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        client = EmpQueueClient(f"ws://127.0.0.1:{port}", request_timeout=0.3)
        started = time.monotonic()
        with pytest.raises(RequestTimeout):
            await client.connect()
        assert time.monotonic() - started < 2


async def test_reconnect_across_hub_restart_no_job_lost(sdk):
    """Stop the hub mid-job and start it again on the same Redis and prefix: the client and the
    worker reconnect by themselves; the running job is resumed by its worker (resumed_jobs) and
    completes once; jobs queued before the restart and submitted after it complete too."""
    hub = await sdk.hub()
    release = asyncio.Event()
    runs: list[str] = []

    async def slow(job: Job, progress: Any) -> dict[str, Any]:
        runs.append(job.job_id)
        await progress(10, "started")
        if job.payload.get("hold"):
            await release.wait()
        await progress(90, "finishing")
        return {"metadata": {"job": job.job_id}}

    worker = await sdk.worker(hub, slow, worker_id="resumable-worker")
    events: list[str] = []
    worker.on_event(lambda event, info: events.append(event))
    client = await sdk.client(hub, client_id="restart-client")
    held = await client.submit_job(JOB, payload={"hold": True})
    await until(lambda: held in runs, 5, "the held job to start")
    queued = [await client.submit_job(JOB, payload={"i": i}) for i in range(3)]
    waits = [asyncio.create_task(client.wait(j, timeout=20)) for j in (held, *queued)]

    await hub.stop()
    await until(lambda: "disconnected" in events, 3, "the worker to notice")
    while_down = asyncio.create_task(client.submit_job(JOB, payload={"while": "down"}))  # waits
    await asyncio.sleep(0.1)
    await hub.start()
    await until(lambda: client.reconnects >= 1 and worker.reconnects >= 1, 5, "both to reconnect")
    assert "reconnected" in events
    assert worker.registration is not None and [j.root for j in worker.registration.resumed_jobs or []] == [
        held
    ]

    release.set()
    results = await asyncio.gather(*waits)
    assert [r.metadata for r in results] == [{"job": j} for j in (held, *queued)]
    later = await client.submit_job(JOB, payload={"after": True})
    assert (await client.wait(later, timeout=10)).success
    assert (await client.wait(await while_down, timeout=10)).success
    assert runs.count(held) == 1  # resumed, not run twice
    status = await client.request_status(held)
    assert status.status.value == "completed" and status.retry_count == 0


async def test_wait_survives_a_restart_while_idle_and_failures_raise(sdk):
    """A job that fails for good while the client is away is reported on re-subscription."""
    hub = await sdk.hub()
    client = await sdk.client(hub, client_id="away-client")
    job_id = await client.submit_job(JOB, max_retries=0, requirements={"service_type": "flaky"})
    waiting = asyncio.create_task(client.wait(job_id, timeout=20))
    await hub.stop()
    await hub.start()

    async def broken(job: Job, progress: Any) -> None:
        raise RuntimeError("model exploded")

    await sdk.worker(hub, broken, services=["flaky"])
    with pytest.raises(JobFailed, match="model exploded") as failed:
        await waiting
    assert failed.value.status == "failed"


@pytest.fixture
def unused_tcp_port() -> int:
    import socket

    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_submit_applied_but_reply_lost_is_retried_once_with_its_key(sdk):
    """D18: Redis applied the submission, the hub lost the reply (SERVICE_UNAVAILABLE); the SDK
    sends it again with the same idempotency_key and gets the first job back — one job, not two."""
    hub = await sdk.hub()
    client = await sdk.client(hub, client_id="sdk-idem")
    assert hub.server is not None and hub.server.core is not None
    store = hub.server.core.store
    real_submit = store.submit
    calls: list[tuple[str, Any]] = []

    async def applied_then_lost(job_id: str, *args: Any) -> int:
        position = await real_submit(job_id, *args)
        calls.append((job_id, args[-1]))
        if len(calls) == 1:
            raise OSError("connection to Redis lost before the reply")
        return position

    store.submit = applied_then_lost  # type: ignore[method-assign]
    accepted = await client.submit(JobSubmission("text_to_image", {"prompt": "once"}), timeout=5)
    assert len(calls) == 1  # the repeat was answered from the key's record: nothing queued
    assert accepted.job_id == calls[0][0]
    assert calls[0][1] is not None  # the key was sent
    status = await client.request_status(accepted.job_id)
    assert status.status.value == "queued"
    redis = hub.server.redis
    assert redis is not None
    listed = await redis.execute("ZCARD", store.key("jobs"))
    assert listed == 1, "the retried submission queued a second job"


async def test_a_refused_submission_is_not_retried(sdk):
    hub = await sdk.hub()
    client = await sdk.client(hub, client_id="sdk-idem-refused", customer_id="acme")
    with pytest.raises(HubError) as refused:
        await client.submit(JobSubmission("text_to_image", {"prompt": "x"}), customer_id="other")
    assert refused.value.code == "PERMISSION_DENIED"
