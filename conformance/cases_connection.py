"""Connection Flow: the hub greets every connection.  Message Format: timestamps in milliseconds."""

from __future__ import annotations

import time

from empq.conformance import causes
from empq.conformance.ctx import Ctx
from empq.conformance.findings import SECONDS_BELOW, SECONDS_HINT, seconds_cause
from empq.conformance.model import INFO, MUST, Cause, StepTimeout, case
from empq.conformance.wire import summary

SECTION = "Connection Flow › Connection Establishment"
FORMAT = "Message Format"
DAY_MS = 86_400_000


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
    try:
        first = await peer.wait("connection_established", lambda f: True, ctx.timeout)
    except StepTimeout as timed_out:
        timed_out.cause = causes.no_greeting()
        raise
    ctx.check(
        first.get("type") == "connection_established",
        f"the first frame is {first.get('type')!r}, not connection_established",
        expected="connection_established",
        received=summary(first),
        cause=causes.other_greeting(first.get("type")),
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


@case(
    "MSG-TS-001",
    section=FORMAT,
    title="timestamp is Unix time in milliseconds: an integer near the suite's clock",
    tier=MUST,
    reference="""
interface BaseMessage {
  type: string;           // Message type identifier
  timestamp: number;      // Unix timestamp in milliseconds
""",
    messages=("client_registered",),
    hint=SECONDS_HINT,
)
async def timestamps_in_millis(ctx: Ctx) -> None:
    peer = await ctx.client()
    received = [e.frame for e in peer.wire if e.direction == "received" and isinstance(e.frame, dict)]
    now = time.time() * 1000
    for frame in received:
        ts, kind = frame.get("timestamp", "(absent)"), frame.get("type")
        seconds = isinstance(ts, int | float) and not isinstance(ts, bool) and 0 < ts < SECONDS_BELOW
        ctx.check(
            not seconds,
            f"{kind}.timestamp {ts!r} is in seconds, not Unix milliseconds",
            expected="an integer of Unix milliseconds, e.g. 1705312345000",
            received=summary(frame) | {"timestamp": ts},
            cause=seconds_cause("timestamp"),
        )
        ctx.check(
            isinstance(ts, int) and not isinstance(ts, bool) and abs(ts - now) < DAY_MS,
            f"{kind}.timestamp {ts!r} is not an integer of Unix milliseconds within a day of now",
            expected=f"an integer near {int(now)}",
            received=summary(frame) | {"timestamp": ts},
            cause=Cause("timestamp:not-millis", "timestamp is not an integer of Unix milliseconds near now"),
        )
    ctx.note(f"checked {len(received)} frames: {', '.join(str(f.get('type')) for f in received)}")
