"""Notification Messages (system) and Service Messages: what monitors hear about."""

from __future__ import annotations

from empq.conformance.ctx import Ctx
from empq.conformance.model import INFO, SHOULD, case
from empq.conformance.wire import summary

SYSTEM = "Notification Messages › System Notifications"
SERVICE = "Service Messages › Service Requests"


@case(
    "NOTIF-SYS-001",
    section=SYSTEM,
    title="Monitors receive system_status (when: recorded)",
    tier=INFO,
    reference="""
// System status update
{"type": "system_status", "active_workers": 3, "pending_jobs": 15, "active_jobs": 2,
 "completed_jobs_last_hour": 45, "system_health": "healthy", "alerts": []}
""",
    messages=("system_status",),
)
async def system_status(ctx: Ctx) -> None:
    monitor = await ctx.monitor()
    status = await monitor.quiet(lambda f: f.get("type") == "system_status", 2.0)
    if status is None:
        ctx.note("no system_status within 2 s of registering")
    else:
        ctx.note(
            f"system_status within 2 s of registering: health {status.get('system_health')!r}, "
            f"{status.get('active_workers')} workers, {status.get('pending_jobs')} pending"
        )


@case(
    "NOTIF-ALERT-001",
    section=SYSTEM,
    title="A job no connected worker can run: is a system_alert sent to monitors? (recorded)",
    tier=INFO,
    reference="""
// System alert
{"type": "system_alert", "severity": "warning", "category": "resource_constraint",
 "message": "Queue depth exceeding normal capacity", "details": {...}, "actions_recommended": [...]}
""",
    messages=("system_alert",),
)
async def system_alert(ctx: Ctx) -> None:
    monitor = await ctx.monitor()
    client = await ctx.client()
    job_id = (await ctx.submit(client))["job_id"]
    alert = await monitor.quiet(
        lambda f: f.get("type") == "system_alert" and job_id in str(f.get("details")), 1.5
    )
    if alert is None:
        ctx.note("no system_alert about the job within 1.5 s")
    else:
        ctx.note(f"system_alert {alert.get('severity')}/{alert.get('category')}: {alert.get('message')}")


SERVICE_REQUEST_REFERENCE = """
// Service request (internal)
{"type": "service_request", "job_id": "job-abc123", "worker_id": "worker-gpu-01", "service_type": "comfyui",
 "endpoint": "/api/v1/generate", "method": "POST", "url": "http://localhost:8188/api/v1/generate",
 "payload": {"prompt": "a beautiful landscape", "steps": 30}}
"""

CONNECTOR_REFERENCE = """
// Connector WebSocket status
{"type": "connector_ws_status", "worker_id": "worker-gpu-01", "connector_type": "comfyui",
 "status": "connected",
 "details": {"url": "ws://localhost:8188/ws", "connection_time": 1705312300000,
             "last_message": 1705312340000}}
"""


@case(
    "SVC-REQ-001",
    section=SERVICE,
    title="A worker's service_request is taken without an error (relay to monitors recorded)",
    tier=SHOULD,
    reference=SERVICE_REQUEST_REFERENCE,
    messages=("service_request",),
)
async def service_request(ctx: Ctx) -> None:
    monitor = await ctx.monitor()
    client = await ctx.client()
    worker = await ctx.worker()
    job_id = (await ctx.submit(client))["job_id"]
    await ctx.claim_one(worker, job_id)
    await ctx.send(
        worker,
        "service_request",
        job_id=job_id,
        worker_id=worker.worker_id,
        service_type=ctx.service,
        endpoint="/api/v1/generate",
        method="POST",
        url="http://localhost:8188/api/v1/generate",
        payload={"prompt": "a beautiful landscape", "steps": 30},
    )
    await ctx.alive(worker)
    refused = await worker.quiet(lambda f: f.get("type") == "error", 0.1)
    ctx.check(
        refused is None,
        "service_request was refused",
        expected="no error",
        received=refused and summary(refused),
    )
    relay = await monitor.quiet(
        lambda f: f.get("type") == "service_request" and f.get("job_id") == job_id, 1.0
    )
    ctx.note("relayed to monitors" if relay else "not relayed to monitors within 1 s")


@case(
    "SVC-CONN-001",
    section=SERVICE,
    title="A worker's connector_ws_status is taken without an error (relay to monitors recorded)",
    tier=SHOULD,
    reference=CONNECTOR_REFERENCE,
    messages=("connector_ws_status",),
)
async def connector_status(ctx: Ctx) -> None:
    monitor = await ctx.monitor()
    worker = await ctx.worker()
    await ctx.send(
        worker,
        "connector_ws_status",
        worker_id=worker.worker_id,
        connector_type=ctx.service,
        status="connected",
        details={
            "url": "ws://localhost:8188/ws",
            "connection_time": 1705312300000,
            "last_message": 1705312340000,
        },
    )
    await ctx.alive(worker)
    refused = await worker.quiet(lambda f: f.get("type") == "error", 0.1)
    ctx.check(
        refused is None,
        "connector_ws_status was refused",
        expected="no error",
        received=refused and summary(refused),
    )
    relay = await monitor.quiet(
        lambda f: f.get("type") == "connector_ws_status" and f.get("worker_id") == worker.worker_id, 1.0
    )
    ctx.note("relayed to monitors" if relay else "not relayed to monitors within 1 s")
