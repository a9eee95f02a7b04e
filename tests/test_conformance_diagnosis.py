"""The parts of the suite's diagnosis, without a hub: findings, the run's memory of silences,
causes and hints, per-role URLs, preconditions, INFO and blocked outcomes, the queue lane."""

from __future__ import annotations

import asyncio

import pytest
from empq.conformance import causes
from empq.conformance.ctx import Ctx, Options
from empq.conformance.findings import Findings, frame_causes
from empq.conformance.memory import Memory
from empq.conformance.model import INFO, MUST, Blocked, Case, CaseFailure, Result
from empq.conformance.report import root_causes, summary_line, to_junit
from empq.conformance.runner import Runner, Settings, exit_code
from empq.conformance.schemas import default_schemas

NOW_MS = 1_705_312_345_000


def problems(frame):
    schemas = default_schemas()
    return [(c.key, c.title) for c in frame_causes(frame, schemas.violations(frame), schemas)]


def test_every_violation_of_a_frame_is_told_missing_fields_on_one_line():
    greeting = {"type": "system_status", "timestamp": NOW_MS, "message": "connected"}
    assert problems(greeting) == [
        (
            "schema:system_status:missing:active_jobs, active_workers, alerts, completed_jobs_last_hour, "
            "pending_jobs, system_health",
            "system_status: missing active_jobs, active_workers, alerts, completed_jobs_last_hour, "
            "pending_jobs, system_health",
        )
    ]
    status = {**greeting, "active_workers": -1, "pending_jobs": 0, "active_jobs": 0}
    status |= {"completed_jobs_last_hour": 0, "system_health": "fine", "alerts": [{"category": "x"}]}
    assert [key for key, _ in problems(status)] == [
        "schema:system_status:minimum:active_workers:0",
        "schema:system_status:enum:system_health:'fine'",
        "schema:system_status:missing:alerts[].message, alerts[].severity",  # items told alike
    ]
    assert problems({"type": "pong", "timestamp": NOW_MS}) == []


def test_timestamps_in_seconds_are_one_finding_float_or_integer():
    ack = {
        "type": "worker_heartbeat_ack",
        "timestamp": NOW_MS / 1000,  # a float: the schema refuses it (told as seconds, not as a type)
        "worker_id": "w",
        "status": "acknowledged",
        "next_heartbeat_expected": NOW_MS // 1000 + 30,  # an integer: the schema takes it
    }
    ((key, title),) = problems(ack)
    assert key == "seconds" and title == "timestamps are in seconds, not Unix milliseconds"
    (cause,) = frame_causes(ack, default_schemas().violations(ack), default_schemas())
    assert cause.hint.endswith("Seen in: next_heartbeat_expected, timestamp.")


def test_findings_count_frames_and_cases_once_per_key():
    findings = Findings()
    greeting = causes.other_greeting("system_status")
    for case_id in ("A-001", "A-001", "B-002"):
        findings.add(greeting, case_id, {"type": "system_status"})
    findings.add(causes.no_greeting(), "C-003")
    first, second = findings.ordered()
    assert (first.key, first.frames, first.cases) == ("greeting:system_status", 3, {"A-001", "B-002"})
    assert second.key == "greeting:none" and second.frames == 1


def test_memory_shortens_only_waits_the_hub_never_met():
    memory = Memory(after=1, short=0.3)
    assert memory.timeout("reply:cancel_job", 3.0) == (3.0, False)
    memory.miss("reply:cancel_job")
    assert memory.timeout("reply:cancel_job", 3.0) == (0.3, True)
    memory.hit("reply:ping")
    memory.miss("reply:ping")  # met once: a later silence is not learned
    assert memory.timeout("reply:ping", 3.0) == (3.0, False)


def test_hints_after_a_refused_handshake_or_an_early_close():
    bare = causes.handshake_refused(403, "ws://hub:3002", per_role_urls=False)
    assert (
        bare.key == "handshake:403:ws://hub:3002"
        and bare.title == "handshake refused with HTTP 403 at ws://hub:3002"
    )
    assert "--client-url 'ws://hub:3002/ws/client/{id}'" in bare.hint
    assert (
        "--header 'Authorization: Bearer" in causes.handshake_refused(403, "ws://h/ws/client/{id}", True).hint
    )
    assert causes.handshake_refused(500, "ws://hub:3002", False).hint == ""
    early = causes.closed(4000, "ws://hub:3002", False, early=True, sent=0)
    assert early.title == "the hub closes the connection right after connecting (code 4000)"
    assert "--worker-url" in early.hint
    late = causes.closed(1011, "ws://hub:3002", False, early=False, sent=3)
    assert (late.key, late.hint) == ("closed:1011", "")


def test_a_missing_notification_names_frames_forwarded_as_they_are():
    received = [{"type": "job_update", "status": "assigned"}, {"type": "update_job_progress", "progress": 45}]
    forwarded = causes.missing(("job_update",), "job_client", ["progress"], received)
    assert forwarded.key == "forwarded:job_client" and "update_job_progress" in forwarded.hint
    plain = causes.missing(("job_update",), "job_client", ["progress"], received[:1])
    assert (plain.key, plain.title) == (
        "missing:job_update:job_client:progress",
        "no job_update with progress reaches the job client",
    )


def test_per_role_urls_carry_the_connection_id_and_the_token_where_asked():
    options = Options(url="ws://hub:3002", worker_url="wss://hub/ws/worker/{id}?v=1", worker_token="t w")
    assert options.url_for("job_client") == "ws://hub:3002" and options.per_role_urls
    assert options.connect_url("worker", "w/1", "t w") == "wss://hub/ws/worker/w%2F1?v=1"
    options.token_in = "query"
    assert options.connect_url("worker", "w1", "t w") == "wss://hub/ws/worker/w1?v=1&token=t%20w"
    assert options.connect_headers("t w") is None
    options.token_in, options.headers = "header", {"X-Env": "ci"}
    assert options.connect_headers("t w") == {"X-Env": "ci", "Authorization": "Bearer t w"}


def _case(fn, tier=MUST, messages=("ping", "pong"), budget=None) -> Case:
    return Case("T-001", "Test › Section", "a test case", tier, "-", messages, fn, budget=budget)


def test_a_failed_precondition_blocks_unless_the_case_checks_that_step():
    ctx = Ctx(_case(None), Options(url="ws://unused"))
    with pytest.raises(Blocked) as blocked, ctx.precondition("register_client", "registering client-1"):
        raise CaseFailure("no reply", cause=causes.unanswered("register_client", ("client_registered",), []))
    assert blocked.value.message == "blocked while registering client-1: no reply"
    assert blocked.value.cause and blocked.value.cause.key == "unanswered:register_client"
    with pytest.raises(CaseFailure) as failed, ctx.precondition("ping", "pinging"):
        raise CaseFailure("no pong")
    assert not isinstance(failed.value, Blocked)


async def test_info_cases_are_never_failed_and_a_frame_finding_is_a_crash_s_cause():
    async def cannot_record(ctx: Ctx) -> None:
        ctx.fail("nothing came", cause=causes.no_greeting())

    async def trips_on_a_bad_frame(ctx: Ctx) -> None:
        ctx.finding(causes.other_greeting("system_status"), {"type": "system_status"})
        {}["job_id"]  # noqa: B018  (a case reading a field the hub's frame lacks)

    async def just_broken(ctx: Ctx) -> None:
        {}["job_id"]  # noqa: B018

    runner = Runner(Settings(Options(url="ws://unused")))
    info = await runner.run_case(_case(cannot_record, tier=INFO))
    assert (info.outcome, info.message, info.cause) == ("skipped", "not recorded: nothing came", None)
    tripped = await runner.run_case(_case(trips_on_a_bad_frame))
    assert tripped.outcome == "failed" and tripped.cause and tripped.cause["key"] == "greeting:system_status"
    assert (await runner.run_case(_case(just_broken))).outcome == "error"  # the suite's own bug


def _result(case_id: str, tier: str, outcome: str) -> Result:
    cause = {"key": "k", "title": "the cause", "hint": ""} if outcome in ("failed", "blocked") else None
    return Result(case_id, "t", "S", tier, outcome, 1.0, message="m", cause=cause)


def test_blocked_musts_fail_the_run_info_never_does():
    blocked_must = [_result("A-001", "MUST", "passed"), _result("A-002", "MUST", "blocked")]
    assert exit_code(blocked_must) == 1
    assert summary_line(blocked_must) == "1 passed, 0 failed, 1 blocked, 0 skipped"
    should = [_result("B-001", "SHOULD", "blocked"), _result("B-002", "INFO", "skipped")]
    assert exit_code(should) == 0 and exit_code(should, fail_on_should=True) == 1
    assert summary_line(should) == "0 passed, 0 failed, 1 blocked, 1 skipped"
    (cause,) = root_causes(blocked_must + should)
    assert (cause.blocked, cause.must) == (["A-002", "B-001"], 1)
    assert b"<failure" not in to_junit(should, info=_info())


def _info():
    from empq.conformance.report import RunInfo

    return RunInfo(url="ws://hub", started="2026-01-01T00:00:00Z", duration_s=1.0)


async def test_one_case_at_a_time_submits_and_its_wait_is_not_budget():
    inside: list[str] = []
    seen_together: list[int] = []

    async def submits(ctx: Ctx) -> None:
        async with ctx.lane("submit_job"):  # what ctx.request does around a submit_job and its reply
            inside.append(ctx.case.id)
            seen_together.append(len(inside))
            await asyncio.sleep(0.3)
            inside.remove(ctx.case.id)
        async with ctx.lane("ping"):  # anything else: no lane
            assert not inside

    cases = [
        Case(f"L-00{n}", "S", "lane", MUST, "-", ("submit_job",), submits, budget=0.5) for n in (1, 2, 3)
    ]
    results = await Runner(Settings(Options(url="ws://unused"), concurrency=4)).run(cases)
    assert seen_together == [1, 1, 1]  # never two at once
    assert [r.outcome for r in results] == ["passed"] * 3  # the last waited 0.6 s, more than its budget


async def test_an_exclusive_case_runs_alone_after_the_others():
    running: list[str] = []
    beside: dict[str, list[str]] = {}  # who else was running when each case started

    async def case_fn(ctx: Ctx) -> None:
        beside[ctx.case.id] = list(running)
        running.append(ctx.case.id)
        await asyncio.sleep(0.05)
        running.remove(ctx.case.id)

    big = Case("X-001", "S", "10 MB", MUST, "-", ("submit_job",), case_fn, exclusive=True)
    others = [Case(f"Y-00{n}", "S", "small", MUST, "-", ("ping",), case_fn) for n in (1, 2, 3)]
    results = await Runner(Settings(Options(url="ws://unused"), concurrency=4)).run([big, *others])
    assert [r.id for r in results] == ["X-001", "Y-001", "Y-002", "Y-003"]  # reported in order
    assert beside == {"Y-001": [], "Y-002": ["Y-001"], "Y-003": ["Y-001", "Y-002"], "X-001": []}
