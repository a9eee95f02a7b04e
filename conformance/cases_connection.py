"""Connection Flow: the hub greets every connection."""

from __future__ import annotations

from empq.conformance.ctx import Ctx
from empq.conformance.model import INFO, MUST, case
from empq.conformance.wire import summary

SECTION = "Connection Flow › Connection Establishment"


@case(
    "CONN-EST-001",
    section=SECTION,
    title="connection_established is the first frame on a new connection",
    tier=MUST,
    reference="""
// Server sends on connection
{"type": "connection_established", "message": "Connected to EmProps Job Queue Hub",
 "server_version": "1.0.0", "timestamp": 1705312345000}
""",
    messages=("connection_established",),
)
async def connection_established_first(ctx: Ctx) -> None:
    peer = await ctx.raw(greeting=False)
    ctx.step = "waiting for the first frame"
    first = await peer.wait("connection_established", lambda f: True, ctx.timeout)
    ctx.check(
        first.get("type") == "connection_established",
        f"the first frame is {first.get('type')!r}, not connection_established",
        expected="connection_established",
        received=summary(first),
    )
    ctx.note(f"server_version {first.get('server_version')!r}")


@case(
    "CONN-EST-002",
    section=SECTION,
    title="What connection_established tells beyond the reference (recorded)",
    tier=INFO,
    reference="""
Connection Flow: Client->>Hub: WebSocket Connect; Hub-->>Client: Connection Established
""",
    messages=("connection_established",),
)
async def connection_established_extras(ctx: Ctx) -> None:
    peer = await ctx.raw(greeting=False)
    frame = await ctx.expect(peer, "connection_established")
    documented = {"type", "message", "server_version", "timestamp"}
    extra = sorted(set(frame) - documented)
    ctx.note(f"message {frame.get('message')!r}; extra fields: {extra or 'none'}")
    for key in extra:
        ctx.note(f"{key} = {frame[key]!r}")
