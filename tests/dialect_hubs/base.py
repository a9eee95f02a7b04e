"""A small in-memory hub that speaks the reference's protocol, as far as the conformance cases in
``CORE`` need: the base every dialect changes in exactly one way (one hook each, see dialects.py).

Plain asyncio + websockets on 127.0.0.1, no Redis.  Incoming frames are checked with the generated
models (so bad input gets error INVALID_PARAMETERS); replies carry the request's id as request_id.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from empq import protocol

# cases the base hub passes (besides their INFO siblings): every dialect runs these
CORE = (
    "CONN-EST-*",
    "MSG-TS-001",
    "REG-CLIENT-001",
    "REG-MONITOR-001",
    "REG-WORKER-001",
    "JOB-SUBMIT-001",
    "JOB-STATUS-00[1-3]",
    "JOB-CANCEL-00[124]",
    "WORK-CLAIM-00[1235-8]",
    "WORK-PROGRESS-001",
    "WORK-COMPLETE-00[12]",
    "WORK-FAIL-00[13]",
    "WORK-HB-00[12]",
    "ERR-UNKNOWN-001",
    "ERR-CODE-001",
    "PING-*",
    "FLOW-001",
    "NEG-00[15]",
    "NEG-016",
    "NEG-020",
    "DISC-001",
)

FINAL = ("completed", "failed", "cancelled")


@dataclass
class Conn:
    ws: ServerConnection
    path: str
    role: str = ""  # job_client | monitor | worker, once registered
    client_id: str = ""
    worker_id: str = ""
    services: list[str] = field(default_factory=list)


@dataclass
class Job:
    job_id: str
    seq: int
    job_type: str
    priority: int
    payload: Any
    requirements: dict[str, Any] | None
    client: Conn
    status: str = "queued"
    worker: Conn | None = None
    progress: float | None = None


class ReferenceHub:
    def __init__(self) -> None:
        self.jobs: dict[str, Job] = {}
        self.seq = itertools.count(1)
        self.server: Server | None = None
        self.url = ""

    async def __aenter__(self) -> ReferenceHub:
        self.server = await serve(
            self.handle, "127.0.0.1", 0, process_request=self.process_request, compression=None
        )
        port = next(iter(self.server.sockets)).getsockname()[1]
        self.url = f"ws://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    # hooks: each dialect overrides exactly one ------------------------------------------------
    def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        return None  # every path is the hub

    def stamp(self, ms: int) -> int | float:
        """A point in time as sent on the wire: Unix milliseconds."""
        return ms

    def greeting(self) -> dict[str, Any]:
        return self.frame("connection_established", message="Connected to a fake hub", server_version="0.1")

    def pick(self, queued: list[Job]) -> Job:
        """Highest priority first, then the oldest."""
        return min(queued, key=lambda j: (-j.priority, j.seq))

    async def relay_progress(self, job: Job, msg: dict[str, Any]) -> None:
        fields = {k: msg[k] for k in ("message", "current_step") if k in msg}
        await self.send(
            job.client,
            self.frame(
                "job_update",
                job_id=job.job_id,
                status="in_progress",
                progress=job.progress,
                worker_id=msg["worker_id"],
                **fields,
            ),
        )

    async def relay_completion(self, job: Job, msg: dict[str, Any]) -> None:
        done = self.frame(
            "job_completed",
            job_id=job.job_id,
            status="completed",
            worker_id=msg["worker_id"],
            priority=job.priority,
            result=msg["result"],
        )
        await self.send(job.client, done)

    async def on_ping(self, conn: Conn, msg: dict[str, Any]) -> None:
        await self.reply(conn, msg, "pong")

    async def on_unknown(self, conn: Conn, raw: str | bytes) -> None:
        text = raw if isinstance(raw, str) else raw.decode("utf-8", "replace")
        frame = self.frame("unknown", content="Received unrecognized message type", original_message=text)
        await self.send(conn, frame)

    async def on_cancel_job(self, conn: Conn, msg: dict[str, Any]) -> None:
        job = await self.job(conn, msg)
        if job is None:
            return
        if job.status in FINAL:
            await self.error(conn, msg, "INVALID_STATE", f"job is {job.status}")
            return
        job.status = "cancelled"
        cancelled = {"job_id": job.job_id, "status": "cancelled", "cancelled_at": self.now()}
        await self.reply(conn, msg, "job_cancelled", **cancelled)
        if job.worker is not None:
            await self.send(job.worker, self.frame("job_cancelled", **cancelled))

    # the wire ---------------------------------------------------------------------------------
    def now(self) -> int | float:
        return self.stamp(time.time_ns() // 1_000_000)

    def frame(self, kind: str, **fields: Any) -> dict[str, Any]:
        return {"type": kind, "timestamp": self.now(), **{k: v for k, v in fields.items() if v is not None}}

    async def send(self, conn: Conn, frame: dict[str, Any]) -> None:
        with contextlib.suppress(ConnectionClosed):
            await conn.ws.send(json.dumps(frame))

    async def reply(self, conn: Conn, msg: dict[str, Any], kind: str, **fields: Any) -> None:
        await self.send(conn, self.frame(kind, request_id=msg.get("id"), **fields))

    async def error(self, conn: Conn, msg: dict[str, Any], code: str, text: str, **details: Any) -> None:
        await self.reply(conn, msg, "error", error=text, error_code=code, details=details or None)

    async def handle(self, ws: ServerConnection) -> None:
        conn = Conn(ws, ws.request.path if ws.request else "/")
        await self.send(conn, self.greeting())
        try:
            async for raw in ws:
                await self.dispatch(conn, raw)
        except ConnectionClosed:
            pass
        finally:
            for job in self.jobs.values():  # a worker that left hands its jobs back
                if job.worker is conn and job.status in ("assigned", "in_progress"):
                    job.status, job.worker = "queued", None

    async def dispatch(self, conn: Conn, raw: str | bytes) -> None:
        try:
            msg = json.loads(raw)
        except (ValueError, RecursionError):
            await self.error(conn, {}, "INVALID_PARAMETERS", "not JSON")
            return
        kind = msg.get("type") if isinstance(msg, dict) else None
        if not isinstance(kind, str) or not kind:
            await self.error(conn, msg if isinstance(msg, dict) else {}, "INVALID_PARAMETERS", "no type")
            return
        if kind not in protocol.INBOUND:
            await self.on_unknown(conn, raw)
            return
        try:
            protocol.INBOUND[kind].model_validate(msg)
        except ValidationError as exc:
            where = ".".join(str(p) for p in exc.errors()[0]["loc"])
            await self.error(conn, msg, "INVALID_PARAMETERS", "invalid message", field=where)
            return
        handler = getattr(self, f"on_{kind}", None)
        if handler is None:
            await self.error(conn, msg, "INTERNAL_ERROR", f"{kind} is not implemented by this fake hub")
            return
        await handler(conn, msg)

    async def job(self, conn: Conn, msg: dict[str, Any], holder: bool = False) -> Job | None:
        """The message's job (an error sent when there is none, or ``holder`` and not this worker's)."""
        job = self.jobs.get(msg["job_id"])
        if job is None:
            await self.error(conn, msg, "JOB_NOT_FOUND", "no such job")
        elif holder and job.worker is not conn:
            await self.error(conn, msg, "NOT_JOB_HOLDER", "not this worker's job")
            return None
        return job

    # the protocol -----------------------------------------------------------------------------
    async def path_refuses(self, conn: Conn, msg: dict[str, Any], role: str, conn_id: str) -> bool:
        """A connection whose path names a role and id (/ws/worker/w1) registers only as those."""
        parts = conn.path.strip("/").split("/")
        if len(parts) == 3 and parts[0] == "ws" and (parts[1], parts[2]) != (role, conn_id):
            await self.error(conn, msg, "PERMISSION_DENIED", f"this connection is /ws/{parts[1]}/{parts[2]}")
            return True
        return False

    async def on_register_client(self, conn: Conn, msg: dict[str, Any]) -> None:
        role = "client" if msg["client_type"] == "job_client" else "monitor"
        if await self.path_refuses(conn, msg, role, msg["client_id"]):
            return
        conn.role, conn.client_id = msg["client_type"], msg["client_id"]
        registered = {
            "client_id": conn.client_id,
            "status": "registered",
            "assigned_connection_id": conn.client_id,
        }
        await self.reply(conn, msg, "client_registered", **registered)

    async def on_register_worker(self, conn: Conn, msg: dict[str, Any]) -> None:
        if await self.path_refuses(conn, msg, "worker", msg["worker_id"]):
            return
        conn.role, conn.worker_id = "worker", msg["worker_id"]
        conn.services = list(msg["capabilities"].get("services") or [])
        registered = {
            "worker_id": conn.worker_id,
            "status": "registered",
            "assigned_connection_id": conn.worker_id,
        }
        await self.reply(conn, msg, "worker_registered", **registered)

    async def on_submit_job(self, conn: Conn, msg: dict[str, Any]) -> None:
        job = Job(
            job_id=f"job-{uuid.uuid4().hex[:12]}",
            seq=next(self.seq),
            job_type=msg["job_type"],
            priority=msg.get("priority", 50),
            payload=msg["payload"],
            requirements=msg.get("requirements"),
            client=conn,
        )
        self.jobs[job.job_id] = job
        position = sum(1 for j in self.jobs.values() if j.status == "queued" and self.pick([j, job]) is j)
        accepted = {"job_id": job.job_id, "status": "queued", "position": position, "notified_workers": 0}
        await self.reply(conn, msg, "job_accepted", **accepted)

    async def on_request_job_status(self, conn: Conn, msg: dict[str, Any]) -> None:
        job = await self.job(conn, msg)
        if job is not None:
            worker_id = job.worker.worker_id if job.worker else None
            status = {
                "job_id": job.job_id,
                "status": job.status,
                "progress": job.progress,
                "worker_id": worker_id,
            }
            await self.reply(conn, msg, "response_job_status", **status)

    async def on_claim_job(self, conn: Conn, msg: dict[str, Any]) -> None:
        assigned = 0
        for _ in range(msg.get("max_jobs") or 1):
            queued = [
                j
                for j in self.jobs.values()
                if j.status == "queued" and (j.requirements or {}).get("service_type") in conn.services
            ]
            if not queued:
                break
            job = self.pick(queued)
            job.status, job.worker, assigned = "assigned", conn, assigned + 1
            await self.reply(
                conn,
                msg,
                "job_assigned",
                job_id=job.job_id,
                worker_id=conn.worker_id,
                job_type=job.job_type,
                priority=job.priority,
                payload=job.payload,
                requirements=job.requirements,
                claim_timeout=30000,
            )
        if assigned < (msg.get("max_jobs") or 1):
            ack = {
                "message_id": msg.get("id") or "claim",
                "original_type": "claim_job",
                "status": "no_job_available",
            }
            await self.reply(conn, msg, "ack", **ack)

    async def on_job_accepted_by_worker(self, conn: Conn, msg: dict[str, Any]) -> None:
        job = await self.job(conn, msg, holder=True)
        if job is not None:
            update = self.frame("job_update", job_id=job.job_id, status="assigned", worker_id=conn.worker_id)
            await self.send(job.client, update)

    async def on_update_job_progress(self, conn: Conn, msg: dict[str, Any]) -> None:
        job = await self.job(conn, msg, holder=True)
        if job is not None:
            job.status, job.progress = "in_progress", msg["progress"]
            await self.relay_progress(job, msg)

    async def on_complete_job(self, conn: Conn, msg: dict[str, Any]) -> None:
        job = await self.job(conn, msg, holder=True)
        if job is not None:
            job.status = "completed"
            await self.reply(conn, msg, "job_completed_ack", job_id=job.job_id, worker_id=conn.worker_id)
            await self.relay_completion(job, msg)

    async def on_fail_job(self, conn: Conn, msg: dict[str, Any]) -> None:
        job = await self.job(conn, msg, holder=True)
        if job is not None:
            job.status = "failed"
            ack = {"job_id": job.job_id, "worker_id": conn.worker_id, "retry_scheduled": False}
            await self.reply(conn, msg, "job_failed_ack", **ack)
            failed = self.frame("job_update", job_id=job.job_id, status="failed", error=msg["error"])
            await self.send(job.client, failed)

    async def on_worker_heartbeat(self, conn: Conn, msg: dict[str, Any]) -> None:
        ack = {
            "worker_id": msg["worker_id"],
            "status": "acknowledged",
            "next_heartbeat_expected": self.stamp(time.time_ns() // 1_000_000 + 30_000),
        }
        await self.reply(conn, msg, "worker_heartbeat_ack", **ack)

    async def on_worker_status(self, conn: Conn, msg: dict[str, Any]) -> None:
        pass

    async def on_pong(self, conn: Conn, msg: dict[str, Any]) -> None:
        pass

    async def on_disconnect(self, conn: Conn, msg: dict[str, Any]) -> None:
        await conn.ws.close()
