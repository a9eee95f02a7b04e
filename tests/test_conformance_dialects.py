"""Issue 13: one run against a partly conforming hub names each deviation, grouped, and passes
what the hub gets right.

Each fake hub in tests/dialect_hubs is the in-memory reference hub changed in exactly one way.
For each, the CORE cases run against it and the test states the exact root causes reported
("fix these first") and the exact cases that fail: every MUST case the dialect violates, and no
other.  The reference hub itself passes every CORE case with nothing to fix.  ``AllEight`` (every
deviation at once, like the hubs the issue was tried on) runs the whole suite.
"""

from __future__ import annotations

import pytest
from dialect_hubs import CORE, DIALECTS, AllEight, ReferenceHub, role_urls
from empq.conformance.ctx import Options
from empq.conformance.model import all_cases, select
from empq.conformance.report import root_causes
from empq.conformance.runner import Runner, Settings

STEP = 1.5  # seconds per step: the fakes answer at once; only what never comes costs a step

MISSING_STATUS = "active_jobs, active_workers, alerts, completed_jobs_last_hour, pending_jobs, system_health"

# dialect -> (the root causes' keys, the cases that fail: MUST and SHOULD)
EXPECTED: dict[str, tuple[set[str], set[str]]] = {
    "other_greeting": (
        {"greeting:system_status", f"schema:system_status:missing:{MISSING_STATUS}"},
        {"CONN-EST-001"},
    ),
    "float_seconds": ({"seconds"}, {"MSG-TS-001"}),
    "lifo": ({"assert:equal priorities were not assigned oldest first"}, {"WORK-CLAIM-008"}),
    "forwarding": (
        {"forwarded:job_client"},
        {
            "JOB-STATUS-002",
            "JOB-CANCEL-004",
            "WORK-PROGRESS-001",
            "WORK-COMPLETE-001",
            "WORK-COMPLETE-002",
            "FLOW-001",
        },
    ),
    "no_pong": ({"unanswered:ping"}, {"PING-001", "PING-002"}),
    "unknown_as_error": (
        {"error-reply:reply to a message of type invalid_type:INVALID_PARAMETERS"},
        {"ERR-UNKNOWN-001"},
    ),
    "no_cancel_reply": (
        {"unanswered:cancel_job"},
        {"JOB-CANCEL-001", "JOB-CANCEL-002", "JOB-CANCEL-004", "ERR-CODE-001", "NEG-016"},
    ),
}

# the MUST cases each dialect violates: none of them may pass
VIOLATED_MUST = {
    "other_greeting": {"CONN-EST-001"},
    "float_seconds": {"MSG-TS-001"},
    "lifo": set(),
    "forwarding": {"JOB-STATUS-002", "WORK-PROGRESS-001", "WORK-COMPLETE-001", "FLOW-001"},
    "no_pong": {"PING-001"},
    "unknown_as_error": {"ERR-UNKNOWN-001"},
    "no_cancel_reply": {"JOB-CANCEL-001"},
}


async def run(hub: ReferenceHub, cases=None, **options):
    runner = Runner(Settings(Options(url=hub.url, timeout=STEP, **options)))
    results = await runner.run(cases or select(all_cases(), list(CORE), None))
    return {r.id: r for r in results}, root_causes(results, runner.findings.ordered())


def explain(results) -> str:
    return "\n".join(f"{r.id} [{r.tier}] {r.outcome}: {r.message}" for r in results.values())


def judged_failures(results) -> set[str]:
    return {r.id for r in results.values() if r.tier in ("MUST", "SHOULD") and r.outcome != "passed"}


async def test_the_reference_hub_passes_every_core_case_with_nothing_to_fix():
    async with ReferenceHub() as hub:
        results, causes = await run(hub)
    assert len(results) >= 35
    assert all(r.outcome == "passed" for r in results.values()), explain(results)
    assert causes == []


@pytest.mark.parametrize("dialect", sorted(EXPECTED))
async def test_each_dialect_is_named_exactly(dialect):
    keys, failing = EXPECTED[dialect]
    async with DIALECTS[dialect]() as hub:
        results, causes = await run(hub)
    assert {c.key for c in causes} == keys, [(c.key, c.title) for c in causes]
    assert judged_failures(results) == failing, explain(results)
    for case_id in VIOLATED_MUST[dialect]:
        assert results[case_id].tier == "MUST" and results[case_id].outcome == "failed"
    # INFO cases are recorded or skipped, never failed
    assert not [r.id for r in results.values() if r.tier == "INFO" and r.outcome in ("failed", "error")]
    # every failure is one of the named causes (no failure without a cause)
    named = {c.key for c in causes}
    assert all(r.cause and r.cause["key"] in named for r in results.values() if r.outcome == "failed")


async def test_a_path_routed_hub_is_named_by_its_handshake_and_passes_with_per_role_urls():
    async with DIALECTS["path_routed"]() as hub:
        results, causes = await run(hub)
        assert [c.key for c in causes] == [f"handshake:403:{hub.url}"]
        (refused,) = causes
        assert refused.title == f"handshake refused with HTTP 403 at {hub.url}"
        assert f"--worker-url '{hub.url}/ws/worker/{{id}}'" in refused.hint  # what to do about it
        assert refused.failed == ["CONN-EST-001"]  # the case that checks connecting
        blocked = {r.id for r in results.values() if r.outcome == "blocked"}
        assert set(refused.blocked) == blocked and len(blocked) >= 30  # blocked by it, not failed
        assert "PING-001" in blocked and results["PING-001"].message.startswith("blocked while connecting")

        # following the hint: each role on its own path, {id} its own id (the fake checks both)
        results, causes = await run(hub, **role_urls(hub.url))
    assert causes == [], [(c.key, c.title) for c in causes]
    assert all(r.outcome == "passed" for r in results.values()), explain(results)


async def test_all_eight_deviations_in_one_run_of_the_whole_suite():
    async with AllEight() as hub:
        results, causes = await run(hub, cases=all_cases(), **role_urls(hub.url))
    keys = {c.key for c in causes}
    deviations = {
        "greeting of another type": "greeting:system_status" in keys,
        "timestamps in seconds": "seconds" in keys,
        "LIFO among equal priorities": "assert:equal priorities were not assigned oldest first" in keys,
        "worker frames forwarded to the client": "forwarded:job_client" in keys,
        "ping never answered": "unanswered:ping" in keys,
        "unknown answered with error": any(
            k.startswith("error-reply:reply to a message of type") for k in keys
        ),
        "cancel never answered": "unanswered:cancel_job" in keys,
    }
    assert all(deviations.values()), deviations  # 7 of 8; the 8th, path routing, is the handshake's
    for case_id in ("REG-CLIENT-001", "REG-WORKER-001", "JOB-SUBMIT-001", "WORK-CLAIM-001", "WORK-HB-001"):
        assert results[case_id].outcome == "passed", (case_id, results[case_id].message)
    for must in set().union(*VIOLATED_MUST.values()):
        assert results[must].outcome == "failed", (must, results[must].outcome)
    # the causes that fail MUST cases come before the findings that fail none
    hits = [c.hits for c in causes]
    assert hits == sorted(hits, reverse=True)
