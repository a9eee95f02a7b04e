"""Registration (spec D3, D4, D19): a connection becomes a job client, a monitor or a worker."""

from __future__ import annotations

import logging
from typing import Any

import orjson
from empq.generated.messages.client_registered import ClientRegistered
from empq.generated.messages.register_client import RegisterClient
from empq.generated.messages.register_worker import RegisterWorker
from empq.generated.messages.worker_registered import WorkerRegistered
from empq.hub.auth import Grant
from empq.hub.auth_throttle import refusal
from empq.hub.commands.request import Handler, Request
from empq.hub.logs import event
from empq.hub.session import Role
from empq.hub.workers import LocalWorker, now_ms

from empq import protocol

log = logging.getLogger("empq.hub")


def authenticate(req: Request[RegisterClient] | Request[RegisterWorker], role: str) -> Grant | None:
    """D4: the grant for this registration, or None after refusing it (AUTH_FAILED, then close)."""
    msg, session, hub = req.message, req.session, req.hub
    wait_s = 0.0 if hub.auth.open else hub.auth_throttle.retry_after(session.address)
    if wait_s:  # D19: too many failures from this address of late; its token is not even checked
        req.refuse("RATE_LIMITED", *refusal(wait_s))
        hub.outbox.close(session.conn_id, 1008, "too many failed authentications")
        return None
    presented = msg.auth_token or session.handshake_token
    grant = hub.auth.check(role, presented)
    if grant is None:
        who = (
            {"worker_id": msg.worker_id} if isinstance(msg, RegisterWorker) else {"client_id": msg.client_id}
        )
        reason = "missing token" if not presented else f"invalid {role} token"
        log.warning(
            "authentication failed: %s %s from %s (%s)",
            role,
            next(iter(who.values())),
            session.address or "?",
            reason,
            extra={"event": "auth_failed", "role": role, "address": session.address, "reason": reason},
        )
        hub.auth_throttle.failed(session.address)
        req.refuse("AUTH_FAILED", "Authentication failed", {"reason": reason, **who})
        req.hub.outbox.close(session.conn_id, 1008, "authentication failed")
    return grant


def bounded_capabilities(
    req: Request[Any], capabilities: dict[str, Any], customer_id: str | None
) -> dict[str, Any] | None:
    """D19: a worker's capabilities within its bounds (None after refusing them): at most
    ``max_worker_info_bytes`` of JSON, and, for a token bound to a customer, ``allowed_customers``
    that customer only (set when omitted; anything else is refused)."""
    limit = req.hub.config.max_worker_info_bytes
    size = len(orjson.dumps(capabilities))
    if size > limit:
        req.refuse(
            "INVALID_PARAMETERS",
            f"capabilities over {limit} bytes of JSON",
            {"field": "capabilities", "provided_value": f"{size} bytes"},
        )
        return None
    if customer_id is None:
        return capabilities
    declared = capabilities.get("allowed_customers")
    if declared is not None and set(declared) != {customer_id}:
        req.refuse(
            "PERMISSION_DENIED",
            f"this token runs jobs of customer {customer_id} only",
            {"field": "capabilities.allowed_customers", "provided_value": declared},
        )
        return None
    return {**capabilities, "allowed_customers": [customer_id]}


async def register_client(req: Request[RegisterClient]) -> None:
    msg, session, hub = req.message, req.session, req.hub
    role = "monitor" if msg.client_type == "monitor" else "job_client"
    grant = authenticate(req, role)
    if grant is None:
        return
    if not hub.auth.may_name(grant, msg.customer_id):
        # D19: a customer some token is bound to is acted for by those tokens only
        whose = f"customer {grant.customer_id}" if grant.customer_id else "other tokens"
        req.refuse(
            "PERMISSION_DENIED",
            f"customer {msg.customer_id} belongs to {whose}",
            {"field": "customer_id", "provided_value": msg.customer_id},
        )
        return
    asked = frozenset(p.value for p in (msg.permissions or ()))
    session.role = Role.MONITOR if role == "monitor" else Role.JOB_CLIENT
    session.client_id = msg.client_id
    session.owner = grant.owner
    session.grant = grant
    session.customer_id = grant.customer_id or msg.customer_id
    session.permissions = (
        (asked & grant.permissions) if asked else (grant.permissions if not hub.auth.open else asked)
    )
    extra = (msg.capabilities.model_extra or {}) if msg.capabilities else {}
    session.chunked_messages = bool(extra.get("chunked_messages")) or bool(
        msg.capabilities and msg.capabilities.chunked_messages
    )
    fields: dict[str, Any] = {
        "client_id": msg.client_id,
        "status": "registered",
        "assigned_connection_id": session.conn_id,
        "client_type": session.role.value,
        "permissions": sorted(session.permissions),
    }
    if session.customer_id:
        fields["customer_id"] = session.customer_id
    if msg.capabilities and msg.capabilities.webhook_support is not None and session.role is Role.JOB_CLIENT:
        # asked: does this hub deliver webhooks for this client's jobs (D21)?
        fields["capabilities"] = {"webhook_support": hub.webhooks.supported(session.customer_id)}
    req.reply(protocol.make(ClientRegistered, **fields))
    log.info(
        "%s %s registered%s from %s",
        session.role.value,
        msg.client_id,
        f" (customer {session.customer_id})" if session.customer_id else "",
        session.address or "?",
        extra=event(session, "registered"),
    )
    if session.role is Role.MONITOR:
        hub.fanout.send(session.conn_id, await hub.monitoring.system_status(session))


async def register_worker(req: Request[RegisterWorker]) -> None:
    msg, session, hub = req.message, req.session, req.hub
    grant = authenticate(req, "worker")
    if grant is None:
        return
    capabilities = bounded_capabilities(req, protocol.to_dict(msg.capabilities), grant.customer_id)
    if capabilities is None:
        return
    # D19: another token learns nothing of the id (not even that it is connected): ownership first
    if not await hub.fleet.may_register(msg.worker_id, grant.owner):
        _not_yours(req, msg.worker_id)
        return
    if hub.workers.connected(msg.worker_id):
        req.refuse("ALREADY_REGISTERED", f"worker {msg.worker_id} is connected already")
        return
    held = await hub.fleet.register_worker(msg.worker_id, grant.owner, hub.hub_id, capabilities)
    if held is None:  # taken by another token meanwhile (the script checks and writes at once)
        _not_yours(req, msg.worker_id)
        return
    if hub.workers.connected(msg.worker_id):  # the same id registered on this hub meanwhile
        req.refuse("ALREADY_REGISTERED", f"worker {msg.worker_id} is connected already")
        return
    session.owner = grant.owner
    session.customer_id = grant.customer_id
    session.role = Role.WORKER
    session.worker_id = msg.worker_id
    session.capabilities = capabilities
    session.chunked_messages = bool(capabilities.get("chunked_messages"))
    hub.workers.add(
        LocalWorker(
            worker_id=msg.worker_id,
            conn_id=session.conn_id,
            capabilities=capabilities,
            subscribe=msg.subscribe_to_jobs is not False,
            status=msg.status.value if msg.status else "idle",
            held=set(held),
            last_heartbeat=now_ms(),
        )
    )
    hub.monitoring.clear(f"worker_lost:{msg.worker_id}", "the worker is back")
    fields: dict[str, Any] = {
        "worker_id": msg.worker_id,
        "status": "registered",
        "assigned_connection_id": session.conn_id,
        "heartbeat_interval": hub.config.heartbeat_interval_ms,
    }
    if held:
        fields["resumed_jobs"] = held
    req.reply(protocol.make(WorkerRegistered, **fields))
    log.info(
        "worker %s registered%s from %s: %s%s",
        msg.worker_id,
        f" (customer {session.customer_id})" if session.customer_id else "",
        session.address or "?",
        ", ".join(capabilities.get("services") or ()) or "no services",
        f"; resumed {len(held)} job(s)" if held else "",
        extra=event(session, "registered"),
    )


def _not_yours(req: Request[RegisterWorker], worker_id: str) -> None:
    """The id is registered by another token (connected, in its reconnect grace, or holding jobs)."""
    req.refuse(
        "PERMISSION_DENIED",
        f"worker id {worker_id} is registered with another token",
        {"field": "worker_id", "provided_value": worker_id},
    )


HANDLERS: dict[str, Handler] = {
    "register_client": register_client,
    "register_worker": register_worker,
}
