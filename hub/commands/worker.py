"""What workers send: claim and run jobs (spec D10–D12), liveness (D16), telemetry relays."""

from __future__ import annotations

from typing import Any

import orjson
from empq.generated.messages.claim_job import ClaimJob
from empq.generated.messages.complete_job import CompleteJob
from empq.generated.messages.connector_ws_status import ConnectorWsStatus
from empq.generated.messages.fail_job import FailJob
from empq.generated.messages.job_accepted_by_worker import JobAcceptedByWorker
from empq.generated.messages.job_completed_ack import JobCompletedAck
from empq.generated.messages.job_failed_ack import JobFailedAck
from empq.generated.messages.service_request import ServiceRequest
from empq.generated.messages.update_job_progress import UpdateJobProgress
from empq.generated.messages.worker_heartbeat import WorkerHeartbeat
from empq.generated.messages.worker_heartbeat_ack import WorkerHeartbeatAck
from empq.generated.messages.worker_status import WorkerStatus
from empq.hub.access import SEES_WORKERS
from empq.hub.commands.registration import bounded_capabilities
from empq.hub.commands.request import Handler, Request
from empq.hub.workers import LocalWorker, now_ms

from empq import protocol


def _worker(req: Request[Any]) -> LocalWorker:
    worker = req.hub.workers.get(req.session.worker_id or "")
    assert worker is not None, "a registered worker session has its local worker"
    return worker


async def claim_job(req: Request[ClaimJob]) -> None:
    msg, hub = req.message, req.hub
    worker = _worker(req)
    # the model fills the schema's default (30000) when absent: the hub's configured default wins then
    sent = "claim_timeout" in msg.model_fields_set and msg.claim_timeout
    claim_timeout = sent or hub.config.claim_timeout_ms
    preferred = [str(getattr(t, "root", t)) for t in msg.preferred_types or ()]
    wanted = msg.max_jobs or 1
    claimed = await hub.jobs.claim(worker, wanted, claim_timeout, preferred)
    for job in claimed:
        req.reply_frame(hub.jobs.assignment(job, worker.worker_id, claim_timeout, req.id))
    if len(claimed) < wanted:
        req.ack("no_job_available")  # D10: ends a partly satisfied claim


async def job_accepted_by_worker(req: Request[JobAcceptedByWorker]) -> None:
    await req.hub.jobs.accept(req.session.worker_id or "", req.message.job_id)
    req.ack()


async def update_job_progress(req: Request[UpdateJobProgress]) -> None:
    msg = req.message
    fields = {
        "message": msg.message,
        "current_step": msg.current_step,
        "estimated_completion": msg.estimated_completion,
    }
    await req.hub.jobs.progress(req.session.worker_id or "", msg.job_id, msg.progress, fields)
    req.ack()


async def complete_job(req: Request[CompleteJob]) -> None:
    msg, worker_id = req.message, req.session.worker_id or ""
    await req.hub.jobs.complete(worker_id, msg.job_id, protocol.to_dict(msg.result), msg.processing_time)
    req.reply(protocol.outgoing(JobCompletedAck, job_id=msg.job_id, worker_id=worker_id))


async def fail_job(req: Request[FailJob]) -> None:
    msg, worker_id = req.message, req.session.worker_id or ""
    failed = await req.hub.jobs.fail(
        worker_id, msg.job_id, msg.error, msg.retry is not False, msg.error_details
    )
    req.reply(
        protocol.make(
            JobFailedAck,
            job_id=msg.job_id,
            worker_id=worker_id,
            retry_scheduled=failed.retry,
            retry_delay=failed.delay_ms / 1000 if failed.retry else None,
            retry_count=failed.retry_count,
        )
    )


async def worker_heartbeat(req: Request[WorkerHeartbeat]) -> None:
    msg, hub = req.message, req.hub
    worker = _worker(req)
    telemetry: dict[str, Any] = {}
    if msg.system_info is not None:
        telemetry["system_info"] = protocol.to_dict(msg.system_info)
    if msg.connector_status is not None:
        telemetry["connector_status"] = {k: protocol.to_dict(v) for k, v in msg.connector_status.items()}
    for name, value in telemetry.items():
        if not _within_bound(req, name, len(orjson.dumps(value))):  # shown to monitors every second
            return
    now = now_ms()
    if msg.status is not None:
        hub.workers.set_status(worker, msg.status.value)
    hub.workers.heartbeat(worker, now, msg.load, telemetry)
    await hub.fleet.worker_seen(worker.worker_id, now, worker.telemetry())
    req.reply(
        protocol.make(
            WorkerHeartbeatAck,
            worker_id=worker.worker_id,
            status="acknowledged",
            next_heartbeat_expected=now + hub.config.heartbeat_interval_ms,
        )
    )


async def worker_status(req: Request[WorkerStatus]) -> None:
    msg, hub = req.message, req.hub
    worker = _worker(req)
    capabilities = None
    if msg.capabilities is not None:
        declared = protocol.to_dict(msg.capabilities)
        capabilities = bounded_capabilities(req, declared, req.session.customer_id)
        if capabilities is None:
            return
    hub.workers.set_status(worker, msg.status.value)
    if capabilities is not None:
        hub.workers.set_capabilities(worker, capabilities)
        req.session.capabilities = capabilities
        await hub.fleet.capabilities_changed(worker.worker_id, capabilities)
    req.ack()


async def relay_to_monitors(req: Request[ServiceRequest] | Request[ConnectorWsStatus]) -> None:
    """service_request and connector_ws_status: recorded and relayed to the monitors that may see
    the worker (D19: like its stats, to holders of view_workers or view_system_stats)."""
    msg, hub = req.message, req.hub
    # a known field sent as null passes the models but not the schemas: neither kept nor relayed
    msg.__pydantic_fields_set__ -= {k for k in type(msg).model_fields if getattr(msg, k) is None}
    data = protocol.encode(msg)
    worker = hub.workers.get(req.session.worker_id or "")
    connectors = None
    if worker is not None and isinstance(msg, ConnectorWsStatus):
        connectors = dict(worker.connector_status or {})
        state = msg.status.value
        connectors[msg.connector_type] = {"status": "active" if state == "connected" else state}
    size = len(orjson.dumps(connectors)) if connectors is not None else len(data)
    if not _within_bound(req, "(message)", size):  # kept in Redis and shown to every monitor
        return
    if worker is not None and connectors is not None:
        hub.workers.set_connector(worker, connectors)
        await hub.fleet.worker_seen(worker.worker_id, now_ms(), worker.telemetry())
    elif isinstance(msg, ServiceRequest):
        await hub.fleet.record_service_request(data)
    hub.fanout.to_monitors(msg, req.session.customer_id, SEES_WORKERS)
    req.ack()


def _within_bound(req: Request[Any], field: str, size: int) -> bool:
    """D19: worker telemetry and relays are at most ``max_worker_info_bytes`` of JSON."""
    limit = req.hub.config.max_worker_info_bytes
    if size <= limit:
        return True
    name = req.message.type if field == "(message)" else field
    req.refuse(
        "INVALID_PARAMETERS",
        f"{name} over {limit} bytes of JSON",
        {"field": field, "provided_value": f"{size} bytes"},
    )
    return False


HANDLERS: dict[str, Handler] = {
    "claim_job": claim_job,
    "job_accepted_by_worker": job_accepted_by_worker,
    "update_job_progress": update_job_progress,
    "complete_job": complete_job,
    "fail_job": fail_job,
    "worker_heartbeat": worker_heartbeat,
    "worker_status": worker_status,
    "service_request": relay_to_monitors,
    "connector_ws_status": relay_to_monitors,
}
