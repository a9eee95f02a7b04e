"""The suite can fail: small fake hubs (plain websockets servers) that are broken on purpose.

Each runs the whole suite and checks that the relevant cases fail (or are blocked) with a precise
message and cause, that unrelated cases are unaffected where the fake allows it, that INFO cases
are never failed, and that the run ends well within a minute.  (The fakes that each speak one
dialect of the protocol, otherwise correctly, are in tests/dialect_hubs.)
"""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from empq.conformance.ctx import Options
from empq.conformance.model import all_cases
from empq.conformance.report import root_causes
from empq.conformance.runner import Runner, Settings
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

Handler = Callable[[ServerConnection], Awaitable[None]]


def now() -> int:
    return int(time.time() * 1000)


def reply_to(msg: Any, kind: str, **fields: Any) -> str:
    out = {"type": kind, "timestamp": now(), **fields}
    if isinstance(msg, dict) and isinstance(msg.get("id"), str):
        out["request_id"] = msg["id"]
    return json.dumps(out)


async def say(ws: ServerConnection, text: str) -> None:
    with contextlib.suppress(ConnectionClosed):  # the suite may have closed already
        await ws.send(text)


async def greet(ws: ServerConnection) -> None:
    await say(
        ws,
        json.dumps(
            {
                "type": "connection_established",
                "message": "fake",
                "server_version": "0.0.0",
                "timestamp": now(),
            }
        ),
    )


def basics(msg: Any) -> str | None:
    """What the half-working fakes get right: registration and ping."""
    if not isinstance(msg, dict):
        return None
    kind = msg.get("type")
    if kind == "register_client":
        return reply_to(
            msg,
            "client_registered",
            client_id=msg.get("client_id"),
            status="registered",
            assigned_connection_id="c1",
        )
    if kind == "register_worker":
        return reply_to(
            msg,
            "worker_registered",
            worker_id=msg.get("worker_id"),
            status="registered",
            assigned_connection_id="w1",
        )
    if kind == "ping":
        return reply_to(msg, "pong")
    return None


def parse(raw: str | bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None


async def silent(ws: ServerConnection) -> None:
    """Accepts the connection, then never says anything."""
    async for _ in ws:
        pass


async def wrong_type(ws: ServerConnection) -> None:
    """Greets, registers and pongs correctly; answers everything else with an ack."""
    await greet(ws)
    async for raw in ws:
        msg = parse(raw)
        kind = msg.get("type") if isinstance(msg, dict) else None
        message_id = str(msg.get("id", "x")) if isinstance(msg, dict) else "x"
        ack = reply_to(msg, "ack", message_id=message_id, original_type=str(kind), status="processed")
        await say(ws, basics(msg) or ack)


async def invalid_frames(ws: ServerConnection) -> None:
    """Registers correctly; job_accepted lacks job_id, pong's timestamp is a string."""
    await greet(ws)
    async for raw in ws:
        msg = parse(raw)
        kind = msg.get("type") if isinstance(msg, dict) else None
        if kind == "submit_job":
            await say(ws, reply_to(msg, "job_accepted", status="queued", position=1, notified_workers=0))
        elif kind == "ping":
            await say(ws, json.dumps({"type": "pong", "timestamp": "now"}))
        else:
            error = reply_to(msg, "error", error="not implemented", error_code="INTERNAL_ERROR")
            await say(ws, basics(msg) or error)


async def greeting_only(ws: ServerConnection) -> None:
    """Greets, then never says anything else."""
    await greet(ws)
    async for _ in ws:
        pass


async def dropper(ws: ServerConnection) -> None:
    """Greets, then drops the TCP connection (no close frame) on the first message."""
    await greet(ws)
    await ws.recv()
    ws.transport.abort()


@contextlib.asynccontextmanager
async def fake_hub(handler: Handler):
    async with serve(handler, "127.0.0.1", 0, compression=None) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        yield f"ws://127.0.0.1:{port}"


async def run_against(url: str, timeout: float = 3.0, strict: bool = False):
    start = time.monotonic()
    runner = Runner(Settings(Options(url=url, timeout=timeout, strict=strict)))
    results = await runner.run(all_cases())
    elapsed = time.monotonic() - start
    assert not [r.id for r in results if r.tier == "INFO" and r.outcome == "failed"]  # never judged
    return {r.id: r for r in results}, elapsed, root_causes(results, runner.findings.ordered())


def judged(results):
    return [r for r in results.values() if r.outcome != "skipped"]


def cause(result) -> str:
    return (result.cause or {}).get("key", "")


@pytest.mark.timeout(90)
async def test_silent_hub_fails_every_case_fast():
    async with fake_hub(silent) as url:
        results, elapsed, causes = await run_against(url)  # the default 3 s step timeout
    assert elapsed < 60, f"a run against a silent hub took {elapsed:.1f} s"
    assert all(r.outcome in ("failed", "blocked") for r in judged(results))
    first = results["CONN-EST-001"]
    assert "no connection_established within 3 s" in first.message and "nothing received" in first.message
    assert cause(first) == "greeting:none"
    submit = results["JOB-SUBMIT-001"]  # registering is its precondition: blocked, not failed
    assert submit.outcome == "blocked" and cause(submit) == "unanswered:register_client"
    assert submit.message.startswith("blocked while registering client-1 as job client: client-1: no ")
    assert causes[0].key == "unanswered:register_client" and len(causes[0].blocked) > 50
    assert "wait shortened" in results["NEG-022"].message  # the run learned: not a full step per case
    assert results["DISC-003"].outcome == "skipped"


async def test_a_hub_that_only_greets_is_diagnosed_by_its_silence_to_registration():
    async with fake_hub(greeting_only) as url:
        results, elapsed, causes = await run_against(url)
    assert elapsed < 60
    assert results["CONN-EST-001"].outcome == "passed"
    assert [c.key for c in causes[:2]] == ["unanswered:register_client", "unanswered:register_worker"]
    assert set(causes[0].failed) >= {"REG-CLIENT-001", "REG-MONITOR-001"}
    assert causes[0].hint == "The reference answers register_client with client_registered."
    assert all(r.outcome in ("failed", "blocked") for r in judged(results) if not r.id.startswith("CONN-EST"))


async def test_wrong_reply_type_fails_the_cases_that_need_it():
    async with fake_hub(wrong_type) as url:
        results, elapsed, causes = await run_against(url)
    assert elapsed < 60
    for case_id in (
        "CONN-EST-001",
        "REG-CLIENT-001",
        "REG-MONITOR-001",
        "REG-WORKER-001",
        "PING-001",
        "PING-002",
    ):
        assert results[case_id].outcome == "passed", (case_id, results[case_id].message)
    submit = results["JOB-SUBMIT-001"]
    assert submit.outcome == "failed"
    assert submit.message == "client-1: expected job_accepted (or error) answering submit_job, received ack"
    assert submit.received["type"] == "ack" and submit.received["original_type"] == "submit_job"
    assert results["FLOW-001"].outcome == "failed" and "received ack" in results["FLOW-001"].message
    assert results["JOB-STATUS-001"].outcome == "blocked"  # it needed a job accepted
    assert causes[0].key == "wrong-reply:submit_job:ack"
    assert causes[0].title == "submit_job is answered with ack, not job_accepted"
    assert {"JOB-SUBMIT-001", "FLOW-001"} <= set(causes[0].failed) and "JOB-STATUS-001" in causes[0].blocked
    heartbeat = results["WORK-HB-001"]
    assert heartbeat.outcome == "failed" and "received ack" in heartbeat.message
    assert results["ERR-UNKNOWN-001"].outcome == "failed"
    assert "type is 'ack', expected 'unknown'" in results["ERR-UNKNOWN-001"].message


async def test_schema_violations_are_findings_and_the_case_goes_on():
    async with fake_hub(invalid_frames) as url:
        results, elapsed, causes = await run_against(url)
    assert elapsed < 60
    assert results["REG-CLIENT-001"].outcome == "passed"
    ping = results["PING-001"]  # its pong's timestamp is a string: a finding, not a failure
    assert ping.outcome == "passed" and "schema:pong:type:timestamp:a string" in ping.findings
    submit = results["JOB-SUBMIT-001"]  # job_accepted without job_id: it fails on its own check
    assert submit.outcome == "failed" and submit.message == "job_accepted carries no job_id"
    by_key = {c.key: c for c in causes}
    missing = by_key["schema:job_accepted:missing:job_id"]  # the finding, counted over the run
    assert missing.title == "job_accepted: missing job_id" and missing.frames >= 10 and missing.hits == 0
    assert "JOB-SUBMIT-001" in missing.seen_in
    pong = by_key["schema:pong:type:timestamp:a string"]
    assert pong.title == "pong: timestamp is a string, not of type integer" and pong.frames >= 3
    assert by_key["accepted:no-job-id"].failed[0] == "JOB-SUBMIT-001"


async def test_strict_schema_violations_fail_with_path_and_value():
    async with fake_hub(invalid_frames) as url:
        results, elapsed, causes = await run_against(url, strict=True)
    assert elapsed < 60
    assert results["REG-CLIENT-001"].outcome == "passed"
    assert results["REG-WORKER-001"].outcome == "passed"
    submit = results["JOB-SUBMIT-001"]
    assert submit.outcome == "failed"
    assert (
        "job_accepted frame violates its schema at (message): 'job_id' is a required property"
        in submit.message
    )
    assert submit.expected == "a frame valid against schemas/messages/job_accepted.json"
    assert submit.received["path"] == "(message)" and "job_id" not in submit.received["frame"]
    assert "(value" not in submit.message  # at the top level the value is the whole frame: not repeated
    ping = results["PING-001"]
    assert ping.outcome == "failed"
    assert (
        "pong frame violates its schema at timestamp: 'now' is not of type 'integer' (value 'now')"
        in ping.message
    )
    assert ping.received["path"] == "timestamp" and ping.received["value"] == "now"
    # the invalid frame is in the wire log too
    frames = [e["frame"] for entries in ping.wire.values() for e in entries if e["dir"] == "received"]
    assert {"type": "pong", "timestamp": "now"} in frames
    # the same violation is one root cause, with every case it ended
    pong = next(c for c in causes if c.key == "schema:pong:type:timestamp:a string")
    assert "PING-001" in pong.failed and len(pong.failed) + len(pong.blocked) >= 3


async def test_dropped_connection_fails_precisely():
    async with fake_hub(dropper) as url:
        results, elapsed, causes = await run_against(url)
    assert elapsed < 60
    assert results["CONN-EST-001"].outcome == "passed"  # the greeting came before the drop
    assert results["CONN-EST-002"].outcome == "passed"
    for case_id in ("REG-CLIENT-001", "JOB-SUBMIT-001", "PING-002", "NEG-001"):
        r = results[case_id]
        assert r.outcome in ("failed", "blocked")
        assert "connection closed by the hub (no close frame)" in r.message, (case_id, r.message)
    assert results["REG-CLIENT-001"].outcome == "failed" and results["JOB-SUBMIT-001"].outcome == "blocked"
    assert all(r.outcome in ("failed", "blocked") for r in judged(results) if not r.id.startswith("CONN-EST"))
    (dropped,) = causes  # one cause behind every failure, with what to try
    assert (
        dropped.title
        == "the hub closes the connection at the first message, before answering (no close frame)"
    )
    assert "--worker-url" in dropped.hint


async def test_nothing_listening_fails_every_case_at_once():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    results, elapsed, causes = await run_against(f"ws://127.0.0.1:{port}")
    assert elapsed < 20
    for r in judged(results):
        assert (
            r.outcome in ("failed", "blocked") and f"cannot connect to ws://127.0.0.1:{port}" in r.message
        ), (
            r.id,
            r.message,
        )
    assert len(causes) == 1 and causes[0].title.startswith(f"cannot connect to ws://127.0.0.1:{port}")
