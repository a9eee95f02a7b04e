"""Client Registration: job clients, monitors and workers register and are confirmed."""

from __future__ import annotations

import uuid

from empq.conformance.ctx import Ctx, expect_field
from empq.conformance.model import MUST, SHOULD, case
from empq.conformance.wire import summary

SECTION = "Client Registration"


@case(
    "REG-CLIENT-001",
    section=f"{SECTION} › Job Client Registration",
    title="register_client (job_client) is confirmed with client_registered",
    tier=MUST,
    reference="""
// Client -> Hub
{"type": "register_client", "client_type": "job_client", "client_id": "my-app-v1.0", "version": "1.0.0",
 "capabilities": {"webhook_support": true, "compression": ["gzip"]}}
// Hub -> Client (confirmation)
{"type": "client_registered", "client_id": "my-app-v1.0", "status": "registered",
 "assigned_connection_id": "conn-abc123"}
""",
    messages=("register_client", "client_registered"),
)
async def register_job_client(ctx: Ctx) -> None:
    client_id = f"conf-app-{uuid.uuid4().hex[:8]}"
    peer = await ctx.raw(role="job_client", conn_id=client_id)
    reply = await ctx.request(
        peer,
        "register_client",
        "client_registered",
        client_type="job_client",
        client_id=client_id,
        version="1.0.0",
        capabilities={"webhook_support": True, "compression": ["gzip"]},
        **ctx.auth_fields("job_client"),
    )
    expect_field(ctx, reply, "type", "client_registered", "reply to register_client")
    expect_field(ctx, reply, "client_id", client_id)
    expect_field(ctx, reply, "status", "registered")


@case(
    "REG-MONITOR-001",
    section=f"{SECTION} › Monitor Registration",
    title="register_client (monitor, with permissions) is confirmed with client_registered",
    tier=MUST,
    reference="""
// Monitor -> Hub
{"type": "register_client", "client_type": "monitor", "client_id": "admin-dashboard",
 "permissions": ["view_all_jobs", "view_system_stats"]}
Connection Flow: Client->>Hub: Register Client/Worker; Hub-->>Client: Registration Confirmed
""",
    messages=("register_client", "client_registered"),
)
async def register_monitor(ctx: Ctx) -> None:
    client_id = f"conf-dashboard-{uuid.uuid4().hex[:8]}"
    peer = await ctx.raw(role="monitor", conn_id=client_id)
    reply = await ctx.request(
        peer,
        "register_client",
        "client_registered",
        client_type="monitor",
        client_id=client_id,
        permissions=["view_all_jobs", "view_system_stats"],
        **ctx.auth_fields("monitor"),
    )
    expect_field(ctx, reply, "type", "client_registered", "reply to register_client")
    expect_field(ctx, reply, "client_id", client_id)
    expect_field(ctx, reply, "status", "registered")


@case(
    "REG-WORKER-001",
    section=f"{SECTION} › Worker Registration",
    title="register_worker is confirmed with worker_registered for the same worker_id",
    tier=MUST,
    reference="""
// Worker -> Hub
{"type": "register_worker", "worker_id": "worker-gpu-01",
 "capabilities": {"services": ["comfyui", "a1111"], "components": ["text-to-image-xl"],
                  "hardware": {"gpu_memory_gb": 16, "gpu_model": "RTX 4090"}},
 "subscribe_to_jobs": true, "status": "idle"}
// Hub -> Worker (confirmation)
{"type": "worker_registered", "worker_id": "worker-gpu-01", "status": "registered",
 "assigned_connection_id": "worker-conn-def456"}
""",
    messages=("register_worker", "worker_registered"),
)
async def register_worker(ctx: Ctx) -> None:
    worker_id = f"conf-worker-gpu-{uuid.uuid4().hex[:8]}"
    peer = await ctx.raw(role="worker", conn_id=worker_id)
    reply = await ctx.request(
        peer,
        "register_worker",
        "worker_registered",
        worker_id=worker_id,
        capabilities={
            "services": [ctx.service],
            "components": ["text-to-image-xl"],
            "hardware": {"gpu_memory_gb": 16, "gpu_model": "RTX 4090"},
        },
        subscribe_to_jobs=True,
        status="idle",
        **ctx.auth_fields("worker"),
    )
    expect_field(ctx, reply, "type", "worker_registered", "reply to register_worker")
    expect_field(ctx, reply, "worker_id", worker_id)
    expect_field(ctx, reply, "status", "registered")


@case(
    "REG-SEQ-001",
    section=SECTION,
    title="A job message before registering is refused with an error, not processed",
    tier=SHOULD,
    reference="""
Connection Flow: Client->>Hub: WebSocket Connect; Hub-->>Client: Connection Established;
Client->>Hub: Register Client/Worker; Hub-->>Client: Registration Confirmed
""",
    messages=("submit_job", "error"),
)
async def before_registration(ctx: Ctx) -> None:
    peer = await ctx.raw()
    reply = await ctx.request(
        peer,
        "submit_job",
        "job_accepted",
        job_type=ctx.job_type,
        payload={},
        requirements={"service_type": ctx.service},
    )
    ctx.track(reply, peer)
    ctx.check(
        reply["type"] == "error",
        "submit_job before registering was accepted",
        expected="error (empq: NOT_REGISTERED)",
        received=summary(reply),
    )
    ctx.note(f"error_code {reply.get('error_code')}")
    await ctx.alive(peer)


@case(
    "REG-SEQ-002",
    section=SECTION,
    title="A second registration on the same connection is refused with an error",
    tier=SHOULD,
    reference="Client->>Hub: Register Client/Worker; Hub-->>Client: Registration Confirmed (once)",
    messages=("register_client", "register_worker", "error"),
)
async def register_twice(ctx: Ctx) -> None:
    client = await ctx.client()
    reply = await ctx.request(
        client,
        "register_worker",
        "worker_registered",
        worker_id=f"conf-twice-{uuid.uuid4().hex[:8]}",
        capabilities={"services": [ctx.service]},
        **ctx.auth_fields("worker"),
    )
    ctx.check(
        reply["type"] == "error",
        "a registered job client could register again, as a worker",
        expected="error (empq: ALREADY_REGISTERED)",
        received=summary(reply),
    )
    ctx.note(f"error_code {reply.get('error_code')}")
    await ctx.alive(client)


@case(
    "REG-SEQ-003",
    section=SECTION,
    title="A worker_id already connected cannot be registered by another connection",
    tier=SHOULD,
    reference='Worker Registration: worker_id identifies the worker ("worker-gpu-01")',
    messages=("register_worker", "error"),
)
async def worker_id_in_use(ctx: Ctx) -> None:
    worker = await ctx.worker()
    twin = await ctx.raw(role="worker")
    reply = await ctx.request(
        twin,
        "register_worker",
        "worker_registered",
        worker_id=worker.worker_id,
        capabilities={"services": [ctx.service]},
        **ctx.auth_fields("worker"),
    )
    ctx.check(
        reply["type"] == "error",
        "a second connection registered a worker_id that is connected",
        expected="error (empq: ALREADY_REGISTERED)",
        received=summary(reply),
    )
    await ctx.alive(worker)


@case(
    "REG-ROLE-001",
    section=SECTION,
    title="Roles are enforced: a job client cannot claim, a worker cannot submit",
    tier=SHOULD,
    reference="Job Submission: Client -> Hub submit_job; Job Request (Pull-based): Worker -> Hub claim_job",
    messages=("claim_job", "submit_job", "error"),
)
async def roles_enforced(ctx: Ctx) -> None:
    client = await ctx.client()
    worker = await ctx.worker()
    reply = await ctx.request(client, "claim_job", "job_assigned", worker_id=worker.worker_id)
    ctx.check(
        reply["type"] == "error",
        "a job client's claim_job was not refused",
        expected="error (empq: PERMISSION_DENIED)",
        received=summary(reply),
    )
    reply = await ctx.request(
        worker,
        "submit_job",
        "job_accepted",
        job_type=ctx.job_type,
        payload={},
        requirements={"service_type": ctx.service},
    )
    ctx.track(reply, client)
    ctx.check(
        reply["type"] == "error",
        "a worker's submit_job was not refused",
        expected="error (empq: PERMISSION_DENIED)",
        received=summary(reply),
    )
    await ctx.alive(client)
    await ctx.alive(worker)
