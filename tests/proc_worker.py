"""A worker in its own process, for the tests that kill processes (``tests/hub/test_processes.py``).

    python tests/proc_worker.py --url ws://HUB_A [--url ws://HUB_B ...] --worker-id ID
        [--mode work|hang] [--service sim] [--job-ms 20] [--max-seconds 60]

It prints one JSON line per event on stdout (flushed at once), e.g. ``{"event": "registered",
"url": ..., "resumed": [...]}``, ``{"event": "completed", "job_id": ...}``, so the test can follow
it and kill it at the right moment.

``work``: claim (max_jobs 1) -> job_accepted_by_worker -> update_job_progress -> (job_ms) ->
complete_job, forever. Every request carries an id and waits for its reply; SERVICE_UNAVAILABLE
(storage down) is retried. When the connection drops it connects to the next ``--url`` (round
robin) and registers again with the same worker_id; the jobs the hub says it still holds
(``worker_registered.resumed_jobs``, spec D16) are completed first. After ``server_disconnect`` it
waits until ``reconnect_after`` (at most 2 s).

``hang``: claim one job, accept it, report progress, wait for the ack, print ``holding`` and then
only heartbeat: a worker stuck mid-job, to be killed with SIGKILL.

Both heartbeat at the cadence of ``worker_registered.heartbeat_interval``. The process exits by
itself after ``--max-seconds``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import sys
import time
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from empq import protocol

RETRIES = 100  # SERVICE_UNAVAILABLE retries of one request (0.1 s apart)
REQUEST_TIMEOUT = 5.0


def emit(event: str, **fields: Any) -> None:
    sys.stdout.write(orjson.dumps({"event": event, "t": time.time(), **fields}).decode() + "\n")
    sys.stdout.flush()


class Gone(Exception):
    """The connection is unusable: reconnect."""


class Conn:
    """One registered connection: requests with ids matched to their reply, pushes handled."""

    def __init__(self, ws: ClientConnection, worker_id: str) -> None:
        self.ws = ws
        self.worker_id = worker_id
        self.waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.wake = asyncio.Event()  # job_available arrived
        self.ids = itertools.count(1)
        self.reconnect_after: int | None = None

    async def read(self) -> None:
        """Read every frame until the connection closes; then fail whatever is waiting."""
        try:
            async for raw in self.ws:
                msg = orjson.loads(raw)
                kind = msg.get("type")
                future = self.waiting.pop(msg.get("request_id") or "", None)
                if future is not None and not future.done():
                    future.set_result(msg)
                elif kind == "job_available":
                    self.wake.set()
                elif kind == "server_disconnect":
                    self.reconnect_after = msg.get("reconnect_after")
                    emit("server_disconnect", message=msg)
                elif kind in ("job_update", "job_cancelled", "error"):
                    emit("push", message=msg)
        except ConnectionClosed:
            pass
        finally:
            for future in self.waiting.values():
                if not future.done():
                    future.set_exception(Gone("connection closed"))
            self.waiting.clear()

    async def send(self, kind: str, **fields: Any) -> None:
        message = protocol.make(protocol.MESSAGE_CLASSES[kind], **fields)
        try:
            await self.ws.send(protocol.encode(message).decode())
        except ConnectionClosed as exc:
            raise Gone(str(exc)) from None

    async def request(self, kind: str, **fields: Any) -> dict[str, Any]:
        rid = f"{self.worker_id}-{next(self.ids)}"
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.waiting[rid] = future
        await self.send(kind, id=rid, **fields)
        try:
            return await asyncio.wait_for(future, REQUEST_TIMEOUT)
        except TimeoutError:
            raise Gone(f"no reply to {kind} within {REQUEST_TIMEOUT} s") from None

    async def retrying(self, kind: str, **fields: Any) -> dict[str, Any]:
        """``request``, again while the hub answers SERVICE_UNAVAILABLE (Redis down)."""
        for _ in range(RETRIES):
            reply = await self.request(kind, **fields)
            if reply.get("type") == "error" and reply.get("error_code") == "SERVICE_UNAVAILABLE":
                emit("service_unavailable", request=kind, job_id=fields.get("job_id"))
                await asyncio.sleep(0.1)
                continue
            return reply
        return reply

    async def heartbeat(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            await self.send("worker_heartbeat", worker_id=self.worker_id, status="idle")


def state_of(reply: dict[str, Any]) -> str | None:
    """The job's status an INVALID_STATE error reports (``details.status``)."""
    if reply.get("type") == "error" and reply.get("error_code") == "INVALID_STATE":
        return (reply.get("details") or {}).get("status")
    return None


async def complete(conn: Conn, job_id: str, job_ms: float) -> None:
    wid = conn.worker_id
    reply = await conn.retrying("job_accepted_by_worker", job_id=job_id, worker_id=wid)
    # A retry after SERVICE_UNAVAILABLE may find the first attempt applied (its reply was lost).
    if reply["type"] == "error" and state_of(reply) not in ("accepted", "in_progress"):
        emit("refused", request="job_accepted_by_worker", job_id=job_id, message=reply)
        return
    reply = await conn.retrying("update_job_progress", job_id=job_id, worker_id=wid, progress=50.0)
    if reply["type"] == "error":
        emit("refused", request="update_job_progress", job_id=job_id, message=reply)
        return
    await asyncio.sleep(job_ms / 1000)
    await finish(conn, job_id)


# complete_job sent without a reply yet (the connection dropped): sent again after re-registering,
# as the SDK's EmpWorker does; the hub that applied it may have died before its ack went out.
UNANSWERED: set[str] = set()


async def finish(conn: Conn, job_id: str, again: bool = False) -> None:
    UNANSWERED.add(job_id)
    reply = await conn.retrying(
        "complete_job", job_id=job_id, worker_id=conn.worker_id, result={"success": True}
    )
    UNANSWERED.discard(job_id)
    if reply["type"] == "job_completed_ack":
        emit("completed", job_id=job_id)
    elif state_of(reply) == "completed":  # a retry whose first attempt was applied
        emit("already_completed", job_id=job_id)
    elif again:  # not applied, and no longer this worker's (released while it was away)
        emit("gave_up", request="complete_job", job_id=job_id, message=reply)
    else:
        emit("refused", request="complete_job", job_id=job_id, message=reply)


async def claim_one(conn: Conn) -> dict[str, Any]:
    """Claim until a job is assigned; between claims wait for job_available or 0.1 s."""
    while True:
        conn.wake.clear()
        reply = await conn.retrying("claim_job", worker_id=conn.worker_id, max_jobs=1)
        if reply["type"] == "job_assigned":
            return reply
        if reply["type"] == "error":
            emit("refused", request="claim_job", message=reply)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(conn.wake.wait(), 0.1)


async def session(url: str, args: argparse.Namespace, opened: list[Conn]) -> None:
    async with connect(url, compression=None, open_timeout=3, close_timeout=1) as ws:
        conn = Conn(ws, args.worker_id)
        opened.append(conn)
        reader = asyncio.create_task(conn.read())
        beat: asyncio.Task[None] | None = None
        try:
            reply = await conn.request(
                "register_worker",
                worker_id=args.worker_id,
                capabilities={"services": [args.service], "max_concurrent_jobs": 1},
                subscribe_to_jobs=True,
                version="proc_worker",
            )
            if reply["type"] != "worker_registered":
                emit("refused", request="register_worker", url=url, message=reply)
                raise Gone("registration refused")
            resumed = reply.get("resumed_jobs") or []
            emit("registered", url=url, resumed=resumed)
            interval = (reply.get("heartbeat_interval") or 20_000) / 1000
            beat = asyncio.create_task(conn.heartbeat(interval))
            for job_id in resumed:
                await finish(conn, job_id)
            for job_id in sorted(UNANSWERED - set(resumed)):
                await finish(conn, job_id, again=True)
            if args.mode == "hang":
                assigned = await claim_one(conn)
                job_id = assigned["job_id"]
                emit("assigned", job_id=job_id, claim_timeout=assigned.get("claim_timeout"))
                await conn.retrying("job_accepted_by_worker", job_id=job_id, worker_id=args.worker_id)
                await conn.retrying(
                    "update_job_progress", job_id=job_id, worker_id=args.worker_id, progress=10.0
                )
                emit("holding", job_id=job_id)
                await reader  # until killed (or the connection drops)
                raise Gone("connection closed")
            while True:
                assigned = await claim_one(conn)
                await complete(conn, assigned["job_id"], args.job_ms)
        finally:
            for task in (beat, reader):
                if task is not None:
                    task.cancel()
            await asyncio.gather(*(t for t in (beat, reader) if t is not None), return_exceptions=True)


async def main_async(args: argparse.Namespace) -> int:
    urls = args.url
    async with asyncio.timeout(args.max_seconds):
        for attempt in itertools.count():
            url = urls[attempt % len(urls)]
            opened: list[Conn] = []
            try:
                await session(url, args, opened)
            except (OSError, ConnectionClosed, Gone, TimeoutError) as exc:
                emit("disconnected", url=url, reason=repr(exc))
            if args.mode == "hang":
                return 3
            delay = 0.05
            if opened and opened[0].reconnect_after:
                delay = min(2.0, max(delay, opened[0].reconnect_after / 1000 - time.time()))
            await asyncio.sleep(delay)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", action="append", required=True, help="hub URL (repeat: fail over)")
    parser.add_argument("--worker-id", required=True)
    parser.add_argument("--mode", choices=("work", "hang"), default="work")
    parser.add_argument("--service", default="sim", help="capabilities.services (one)")
    parser.add_argument("--job-ms", type=float, default=20.0, help="time each job takes")
    parser.add_argument("--max-seconds", type=float, default=60.0, help="exit after this")
    args = parser.parse_args()
    try:
        return asyncio.run(main_async(args))
    except TimeoutError:
        emit("max_seconds")
        return 0


if __name__ == "__main__":
    sys.exit(main())
