"""A null hub: the job lifecycle in memory, over the same WebSocket frames as the real hub.

    python -m bench.null_hub [--port 3102] [--max-seconds 0]

It is the ceiling the load harness (``bench.lifecycle``) compares the real hub against: no Redis,
no validation (``orjson`` dicts in and out), no matching (every worker can run every job), no
timers (claim timeout, heartbeats, retries). What it does implement, frame for frame as the real
hub does (spec/README.md D2, D6, D7, D9, D10):

* on connect ``connection_established``; ``register_client`` -> ``client_registered``;
  ``register_worker`` -> ``worker_registered``; ``ping`` -> ``pong``;
* ``submit_job`` -> ``job_accepted`` (``job-`` + 32 hex, position, notified_workers), then
  ``job_available`` to at most one idle worker that subscribed and was not notified since its last
  claim;
* ``claim_job`` -> up to ``max_jobs`` ``job_assigned`` (higher priority first, FIFO within a
  priority) each with a ``job_update`` (assigned) to the submitting client, or ``ack``
  no_job_available;
* ``job_accepted_by_worker`` -> client ``job_update`` (accepted); ``update_job_progress`` -> client
  ``job_update`` (in_progress, progress); both ``ack`` processed when they carry an ``id`` (D6);
* ``complete_job`` -> worker ``job_completed_ack``, client ``job_completed``;
* ``subscribe_job_notifications`` (a monitor, no filters) -> ``job_notifications_subscribed``, then
  every job event the clients get (``job_update``, ``job_completed``) also goes to each such monitor,
  encoded once for all (as the real hub fans out; added for ``bench.aiload``);
* ``worker_heartbeat`` -> ``worker_heartbeat_ack``.

Every reply to a request carrying ``id`` carries ``request_id`` (D2). Every frame has ``type`` and
an integer millisecond ``timestamp``. Listens on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import heapq
import itertools
import signal
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

HOST = "127.0.0.1"
SERVER_VERSION = "null-hub-0.1"
MAX_MESSAGE_SIZE = 10 * 1024 * 1024  # D1
DEFAULT_CLAIM_TIMEOUT = 30_000


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(eq=False)
class Job:
    job_id: str
    seq: int
    priority: int
    job_type: str
    payload: Any
    requirements: Any
    customer_id: Any
    max_retries: int
    client: Peer | None
    status: str = "queued"
    worker: Peer | None = None


@dataclass(eq=False)
class Peer:
    ws: ServerConnection
    conn_id: str
    role: str | None = None  # "client" | "monitor" | "worker"
    peer_id: str | None = None
    subscribe_to_jobs: bool = True
    notified: bool = False  # job_available sent since the last claim_job
    held: dict[str, Job] = field(default_factory=dict)


class NullHub:
    """All state in memory; one event loop, so no locks."""

    def __init__(self) -> None:
        self.jobs: dict[str, Job] = {}
        self.queue: list[tuple[int, int, str]] = []  # (-priority, seq, job_id): heapq
        self.queued_by_priority: dict[int, int] = {}
        self.seq = itertools.count()
        # Idle workers (hold no job) that subscribed and were not notified since their last claim,
        # oldest first.
        self.idle: dict[str, Peer] = {}
        self.workers: dict[str, Peer] = {}
        self.watchers: dict[str, Peer] = {}  # monitors subscribed to every job's notifications
        self.frames_in = 0
        self.frames_out = 0

    # -- plumbing ---------------------------------------------------------------------------------

    async def send(self, peer: Peer | None, msg: dict[str, Any]) -> None:
        if peer is None:
            return
        msg["timestamp"] = now_ms()
        self.frames_out += 1
        with contextlib.suppress(ConnectionClosed):
            await peer.ws.send(orjson.dumps(msg), text=True)

    async def job_event(self, job: Job, msg: dict[str, Any]) -> None:
        """A job event to its client and to every watching monitor: one encoding for all."""
        msg["timestamp"] = now_ms()
        data = orjson.dumps(msg)
        for peer in (job.client, *self.watchers.values()):
            if peer is not None:
                self.frames_out += 1
                with contextlib.suppress(ConnectionClosed):
                    await peer.ws.send(data, text=True)

    @staticmethod
    def reply_to(msg: dict[str, Any], out: dict[str, Any]) -> dict[str, Any]:
        rid = msg.get("id")
        if rid is not None:
            out["request_id"] = rid
        return out

    async def handler(self, ws: ServerConnection) -> None:
        peer = Peer(ws=ws, conn_id=f"conn-{uuid.uuid4().hex[:12]}")
        await self.send(
            peer,
            {
                "type": "connection_established",
                "message": "Connected to EmProps Job Queue Hub (null hub)",
                "server_version": SERVER_VERSION,
                "connection_id": peer.conn_id,
                "max_message_size": MAX_MESSAGE_SIZE,
            },
        )
        try:
            while True:
                raw = await ws.recv(decode=False)
                self.frames_in += 1
                try:
                    msg = orjson.loads(raw)
                except orjson.JSONDecodeError:
                    await self.error(peer, {}, "INVALID_PARAMETERS", "Invalid JSON")
                    continue
                if not isinstance(msg, dict):
                    await self.error(peer, {}, "INVALID_PARAMETERS", "Frame is not a JSON object")
                    continue
                handle = self.HANDLERS.get(msg.get("type"))  # type: ignore[arg-type]
                if handle is None:
                    await self.send(
                        peer,
                        {
                            "type": "unknown",
                            "content": "Received unrecognized message type",
                            "original_message": bytes(raw[:4096]).decode("utf-8", "replace"),
                        },
                    )
                    continue
                await handle(self, peer, msg)
        except ConnectionClosed:
            pass
        finally:
            self.drop(peer)

    def drop(self, peer: Peer) -> None:
        self.watchers.pop(peer.conn_id, None)
        if peer.role != "worker" or peer.peer_id is None:
            return
        self.idle.pop(peer.peer_id, None)
        if self.workers.get(peer.peer_id) is peer:
            del self.workers[peer.peer_id]
        for job in peer.held.values():  # back to the queue at its original place
            job.status, job.worker = "queued", None
            heapq.heappush(self.queue, (-job.priority, job.seq, job.job_id))
            self.queued_by_priority[job.priority] = self.queued_by_priority.get(job.priority, 0) + 1
        peer.held.clear()

    async def error(self, peer: Peer, msg: dict[str, Any], code: str, text: str) -> None:
        await self.send(peer, self.reply_to(msg, {"type": "error", "error": text, "error_code": code}))

    async def refuse(self, peer: Peer, msg: dict[str, Any], text: str) -> None:
        if peer.role is None:
            await self.error(peer, msg, "NOT_REGISTERED", "Register first")
        else:
            await self.error(peer, msg, "PERMISSION_DENIED", text)

    def set_idle(self, peer: Peer) -> None:
        if (
            peer.peer_id is not None
            and peer.subscribe_to_jobs
            and not peer.notified
            and not peer.held
            and self.workers.get(peer.peer_id) is peer
        ):
            self.idle[peer.peer_id] = peer

    # -- registration -----------------------------------------------------------------------------

    async def on_ping(self, peer: Peer, msg: dict[str, Any]) -> None:
        await self.send(peer, self.reply_to(msg, {"type": "pong"}))

    async def on_pong(self, peer: Peer, msg: dict[str, Any]) -> None:
        return None

    async def on_register_client(self, peer: Peer, msg: dict[str, Any]) -> None:
        if peer.role is not None:
            await self.error(peer, msg, "ALREADY_REGISTERED", "Already registered")
            return
        client_type = msg.get("client_type", "job_client")
        peer.role = "monitor" if client_type == "monitor" else "client"
        peer.peer_id = str(msg.get("client_id") or peer.conn_id)
        await self.send(
            peer,
            self.reply_to(
                msg,
                {
                    "type": "client_registered",
                    "client_id": peer.peer_id,
                    "status": "registered",
                    "assigned_connection_id": peer.conn_id,
                    "client_type": client_type,
                },
            ),
        )

    async def on_register_worker(self, peer: Peer, msg: dict[str, Any]) -> None:
        if peer.role is not None:
            await self.error(peer, msg, "ALREADY_REGISTERED", "Already registered")
            return
        peer.role = "worker"
        peer.peer_id = str(msg.get("worker_id") or peer.conn_id)
        peer.subscribe_to_jobs = msg.get("subscribe_to_jobs", True) is not False
        old = self.workers.get(peer.peer_id)
        if old is not None:
            self.idle.pop(peer.peer_id, None)
        self.workers[peer.peer_id] = peer
        await self.send(
            peer,
            self.reply_to(
                msg,
                {
                    "type": "worker_registered",
                    "worker_id": peer.peer_id,
                    "status": "registered",
                    "assigned_connection_id": peer.conn_id,
                    "heartbeat_interval": 30_000,
                },
            ),
        )
        self.set_idle(peer)

    async def on_disconnect(self, peer: Peer, msg: dict[str, Any]) -> None:
        await peer.ws.close()

    # -- jobs -------------------------------------------------------------------------------------

    async def on_submit_job(self, peer: Peer, msg: dict[str, Any]) -> None:
        if peer.role != "client":
            await self.refuse(peer, msg, "Only job clients submit jobs")
            return
        priority = msg.get("priority", 50)
        if not isinstance(priority, int):
            priority = 50
        job = Job(
            job_id=f"job-{uuid.uuid4().hex}",
            seq=next(self.seq),
            priority=priority,
            job_type=msg.get("job_type", ""),
            payload=msg.get("payload", {}),
            requirements=msg.get("requirements"),
            customer_id=msg.get("customer_id"),
            max_retries=msg.get("max_retries", 3),
            client=peer,
        )
        self.jobs[job.job_id] = job
        position = 1 + sum(n for p, n in self.queued_by_priority.items() if p >= priority)
        heapq.heappush(self.queue, (-priority, job.seq, job.job_id))
        self.queued_by_priority[priority] = self.queued_by_priority.get(priority, 0) + 1
        worker: Peer | None = None
        if self.idle:
            worker_id = next(iter(self.idle))
            worker = self.idle.pop(worker_id)
            worker.notified = True
        await self.send(
            peer,
            self.reply_to(
                msg,
                {
                    "type": "job_accepted",
                    "job_id": job.job_id,
                    "status": "queued",
                    "position": position,
                    "estimated_start": None,
                    "notified_workers": 0 if worker is None else 1,
                },
            ),
        )
        if worker is not None:
            available: dict[str, Any] = {
                "type": "job_available",
                "job_id": job.job_id,
                "job_type": job.job_type,
                "priority": priority,
            }
            if isinstance(job.requirements, dict):
                available["requirements_summary"] = {
                    k: job.requirements[k] for k in ("service_type", "component") if k in job.requirements
                }
            await self.send(worker, available)

    async def on_claim_job(self, peer: Peer, msg: dict[str, Any]) -> None:
        if peer.role != "worker":
            await self.refuse(peer, msg, "Only workers claim jobs")
            return
        max_jobs = msg.get("max_jobs", 1)
        if not isinstance(max_jobs, int) or max_jobs < 1:
            max_jobs = 1
        claim_timeout = msg.get("claim_timeout", DEFAULT_CLAIM_TIMEOUT)
        peer.notified = False
        claimed: list[Job] = []
        while self.queue and len(claimed) < max_jobs:
            _, _, job_id = heapq.heappop(self.queue)
            job = self.jobs.get(job_id)
            if job is None or job.status != "queued":
                continue
            self.queued_by_priority[job.priority] -= 1
            job.status, job.worker = "assigned", peer
            peer.held[job.job_id] = job
            claimed.append(job)
        if not claimed:
            self.set_idle(peer)
            await self.send(
                peer,
                self.reply_to(
                    msg,
                    {
                        "type": "ack",
                        "message_id": msg.get("id") or f"msg-{uuid.uuid4().hex[:12]}",
                        "original_type": "claim_job",
                        "status": "no_job_available",
                    },
                ),
            )
            return
        self.idle.pop(peer.peer_id or "", None)
        for job in claimed:
            assigned: dict[str, Any] = {
                "type": "job_assigned",
                "job_id": job.job_id,
                "worker_id": peer.peer_id,
                "job_type": job.job_type,
                "priority": job.priority,
                "payload": job.payload,
                "claim_timeout": claim_timeout,
                "retry_count": 0,
                "max_retries": job.max_retries,
            }
            if job.requirements is not None:
                assigned["requirements"] = job.requirements
            if job.customer_id is not None:
                assigned["customer_id"] = job.customer_id
            await self.send(peer, self.reply_to(msg, assigned))
            await self.job_event(
                job,
                {
                    "type": "job_update",
                    "job_id": job.job_id,
                    "status": "assigned",
                    "previous_status": "queued",
                    "worker_id": peer.peer_id,
                },
            )

    async def held_job(self, peer: Peer, msg: dict[str, Any]) -> Job | None:
        job_id = msg.get("job_id")
        job = self.jobs.get(job_id) if isinstance(job_id, str) else None
        if job is None:
            await self.error(peer, msg, "JOB_NOT_FOUND", f"Job {job_id} not found")
            return None
        if job.worker is not peer or peer.role != "worker":
            await self.error(peer, msg, "NOT_JOB_HOLDER", "This worker does not hold the job")
            return None
        return job

    async def ack_processed(self, peer: Peer, msg: dict[str, Any]) -> None:
        if msg.get("id") is not None:
            await self.send(
                peer,
                self.reply_to(
                    msg,
                    {
                        "type": "ack",
                        "message_id": msg["id"],
                        "original_type": msg["type"],
                        "status": "processed",
                    },
                ),
            )

    async def on_job_accepted_by_worker(self, peer: Peer, msg: dict[str, Any]) -> None:
        job = await self.held_job(peer, msg)
        if job is None:
            return
        previous, job.status = job.status, "accepted"
        await self.ack_processed(peer, msg)
        await self.job_event(
            job,
            {
                "type": "job_update",
                "job_id": job.job_id,
                "status": "accepted",
                "previous_status": previous,
                "worker_id": peer.peer_id,
            },
        )

    async def on_update_job_progress(self, peer: Peer, msg: dict[str, Any]) -> None:
        job = await self.held_job(peer, msg)
        if job is None:
            return
        previous, job.status = job.status, "in_progress"
        await self.ack_processed(peer, msg)
        update: dict[str, Any] = {
            "type": "job_update",
            "job_id": job.job_id,
            "status": "in_progress",
            "previous_status": previous,
            "worker_id": peer.peer_id,
            "progress": msg.get("progress"),
        }
        if "message" in msg:
            update["message"] = msg["message"]
        await self.job_event(job, update)

    async def on_complete_job(self, peer: Peer, msg: dict[str, Any]) -> None:
        job = await self.held_job(peer, msg)
        if job is None:
            return
        job.status, job.worker = "completed", None
        peer.held.pop(job.job_id, None)
        del self.jobs[job.job_id]  # memory stays bounded over long runs
        self.set_idle(peer)
        await self.send(
            peer,
            self.reply_to(
                msg, {"type": "job_completed_ack", "job_id": job.job_id, "worker_id": peer.peer_id}
            ),
        )
        completed: dict[str, Any] = {
            "type": "job_completed",
            "job_id": job.job_id,
            "status": "completed",
            "worker_id": peer.peer_id,
            "priority": job.priority,
            "job_type": job.job_type,
            "result": msg.get("result"),
        }
        if "processing_time" in msg:
            completed["processing_time"] = msg["processing_time"]
        await self.job_event(job, completed)

    async def on_subscribe_job_notifications(self, peer: Peer, msg: dict[str, Any]) -> None:
        if peer.role != "monitor":
            await self.refuse(peer, msg, "Only monitors subscribe to job notifications")
            return
        self.watchers[peer.conn_id] = peer
        await self.send(
            peer,
            self.reply_to(
                msg,
                {
                    "type": "job_notifications_subscribed",
                    "subscription_id": f"sub-{peer.conn_id}",
                    "filters_applied": {},
                    "enabled": True,
                },
            ),
        )

    async def on_worker_heartbeat(self, peer: Peer, msg: dict[str, Any]) -> None:
        if peer.role != "worker":
            await self.refuse(peer, msg, "Only workers heartbeat")
            return
        ack = {
            "type": "worker_heartbeat_ack",
            "worker_id": peer.peer_id,
            "status": "acknowledged",
            "next_heartbeat_expected": now_ms() + 30_000,
        }
        await self.send(peer, self.reply_to(msg, ack))

    HANDLERS: dict[str, Any] = {
        "ping": on_ping,
        "pong": on_pong,
        "register_client": on_register_client,
        "register_worker": on_register_worker,
        "disconnect": on_disconnect,
        "submit_job": on_submit_job,
        "claim_job": on_claim_job,
        "job_accepted_by_worker": on_job_accepted_by_worker,
        "update_job_progress": on_update_job_progress,
        "complete_job": on_complete_job,
        "subscribe_job_notifications": on_subscribe_job_notifications,
        "worker_heartbeat": on_worker_heartbeat,
    }


def bound_port(server: Server) -> int:
    return int(next(iter(server.sockets)).getsockname()[1])


async def serve_null_hub(host: str = HOST, port: int = 0) -> Server:
    """Start a null hub on host:port (0 = a free port; see ``bound_port``). Close it with
    ``server.close(); await server.wait_closed()`` or use it as ``async with``."""
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise ValueError("the null hub listens on the loopback interface only")
    hub = NullHub()
    server = await serve(hub.handler, host, port, compression=None, max_size=MAX_MESSAGE_SIZE)
    server.null_hub = hub  # type: ignore[attr-defined]  # for tests: inspect the state
    return server


@contextlib.asynccontextmanager
async def null_hub(port: int = 0) -> AsyncIterator[str]:
    """``async with null_hub() as url:`` — a running null hub on 127.0.0.1, closed on exit."""
    server = await serve_null_hub(HOST, port)
    try:
        yield f"ws://{HOST}:{bound_port(server)}"
    finally:
        server.close()
        await server.wait_closed()


async def main_async(port: int, max_seconds: float) -> None:
    server = await serve_null_hub(HOST, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    # The harness reads this line to learn the port (it starts us with --port 0).
    print(f"null hub listening on ws://{HOST}:{bound_port(server)}", flush=True)
    try:
        if max_seconds > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), max_seconds)
        else:
            await stop.wait()
    finally:
        server.close()
        await server.wait_closed()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=3102, help="0 picks a free port (printed)")
    parser.add_argument(
        "--max-seconds", type=float, default=0, help="exit by itself after this long (0: run until killed)"
    )
    args = parser.parse_args()
    asyncio.run(main_async(args.port, args.max_seconds))


if __name__ == "__main__":
    main()
