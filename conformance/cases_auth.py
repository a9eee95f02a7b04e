"""Authentication (Error Handling: AUTH_FAILED) — run only when the run is given role tokens.

How a token is presented is not in the reference; the suite sends it as the register message's
``auth_token`` field, or with ``--token-in header|query`` on the handshake (``Authorization: Bearer``
or ``?token=``; empq D4 takes all three).  A wrong or missing token goes where the right one would.
"""

from __future__ import annotations

import uuid
from typing import Any

from empq.conformance.ctx import Ctx, expect_field
from empq.conformance.model import MUST, SHOULD, Blocked, case
from empq.conformance.wire import HandshakeRefused, SuitePeer, summary

SECTION = "Error Handling › Authentication"

AUTH_REFERENCE = """
// Authentication error
{"type": "error", "error": "Authentication failed", "error_code": "AUTH_FAILED",
 "details": {"reason": "Invalid worker token", "worker_id": "worker-gpu-01"}}
"""


def _role(ctx: Ctx) -> str:
    for role in ("worker", "job_client", "monitor"):
        if ctx.options.token(role):
            return role
    ctx.skip("no role token given")


async def _connect(ctx: Ctx, role: str, token: str) -> tuple[SuitePeer | None, dict[str, Any]]:
    """Connect on ``role``'s URL presenting ``token`` ("" for none) and register: the reply.

    With --token-in header or query a hub may refuse the handshake (401/403) instead: that is the
    refusal (``{"type": "error", "error_code": "AUTH_FAILED", "handshake": status}``, no peer)."""
    conn_id = f"conf-auth-{uuid.uuid4().hex[:8]}"
    try:
        peer = await ctx.raw(role=role, conn_id=conn_id, token=token)
    except Blocked as blocked:
        refused = blocked.failure
        if ctx.options.token_in == "message" or not (
            isinstance(refused, HandshakeRefused) and refused.status in (401, 403)
        ):
            raise
        return None, {"type": "error", "error_code": "AUTH_FAILED", "handshake": refused.status}
    extra = ctx.auth_fields(role, token)
    if role == "worker":
        reply = await ctx.request(
            peer,
            "register_worker",
            "worker_registered",
            worker_id=conn_id,
            capabilities={"services": [ctx.service]},
            **extra,
        )
    else:
        reply = await ctx.request(
            peer,
            "register_client",
            "client_registered",
            client_type="monitor" if role == "monitor" else "job_client",
            client_id=conn_id,
            **extra,
        )
    return peer, reply


@case(
    "AUTH-001",
    section=SECTION,
    title="A wrong token is refused with error AUTH_FAILED",
    tier=MUST,
    reference=AUTH_REFERENCE,
    messages=("register_worker", "error"),
    needs_tokens=True,
)
async def wrong_token(ctx: Ctx) -> None:
    role = _role(ctx)
    _, reply = await _connect(ctx, role, f"wrong-{uuid.uuid4().hex}")
    expect_field(ctx, reply, "type", "error", f"reply to registering as {role} with a wrong token")
    expect_field(ctx, reply, "error_code", "AUTH_FAILED")


@case(
    "AUTH-002",
    section=SECTION,
    title="After AUTH_FAILED the hub closes the connection",
    tier=SHOULD,
    reference=AUTH_REFERENCE,
    messages=("register_client", "error"),
    needs_tokens=True,
)
async def wrong_token_closes(ctx: Ctx) -> None:
    role = _role(ctx)
    peer, reply = await _connect(ctx, role, f"wrong-{uuid.uuid4().hex}")
    expect_field(ctx, reply, "error_code", "AUTH_FAILED")
    if peer is None:
        ctx.note(f"refused on the handshake with HTTP {reply['handshake']}")
        return
    code = await peer.wait_closed(ctx.timeout)
    ctx.note(f"closed with code {code}")


@case(
    "AUTH-003",
    section=SECTION,
    title="A registration without a token is refused with error AUTH_FAILED",
    tier=MUST,
    reference=AUTH_REFERENCE,
    messages=("register_client", "error"),
    needs_tokens=True,
)
async def missing_token(ctx: Ctx) -> None:
    role = _role(ctx)
    _, reply = await _connect(ctx, role, "")
    expect_field(ctx, reply, "type", "error", f"reply to registering as {role} without a token")
    expect_field(ctx, reply, "error_code", "AUTH_FAILED")


@case(
    "AUTH-004",
    section=SECTION,
    title="The right token registers each role it was given for",
    tier=MUST,
    reference=AUTH_REFERENCE + "Client Registration: register_client / register_worker -> confirmation",
    messages=("register_client", "client_registered", "register_worker", "worker_registered"),
    needs_tokens=True,
)
async def right_token(ctx: Ctx) -> None:
    done = []
    if ctx.options.client_token:
        await ctx.client()
        done.append("job_client")
    if ctx.options.worker_token:
        await ctx.worker()
        done.append("worker")
    if ctx.options.monitor_token:
        await ctx.monitor()
        done.append("monitor")
    ctx.note(f"registered: {', '.join(done)}")


@case(
    "AUTH-005",
    section=SECTION,
    title="One role's token does not register another role",
    tier=SHOULD,
    reference=AUTH_REFERENCE,
    messages=("register_worker", "error"),
    needs_tokens=True,
)
async def token_of_other_role(ctx: Ctx) -> None:
    token = ctx.options.client_token or ctx.options.monitor_token
    if not token or not ctx.options.worker_token:
        ctx.skip("needs a worker token and a client or monitor token")
    if token == ctx.options.worker_token:
        ctx.skip("the worker token is also given for another role")
    _, reply = await _connect(ctx, "worker", token)
    ctx.check(
        reply["type"] == "error" and reply.get("error_code") == "AUTH_FAILED",
        "a job client's (or monitor's) token registered a worker",
        expected="error AUTH_FAILED",
        received=summary(reply),
    )
