"""hub/lifecycle.py: the job state machine, one table, checked against the schema and the Lua."""

from __future__ import annotations

import json
import re

from conftest import REPO
from empq.hub import lifecycle
from empq.hub.lifecycle import FINAL, HELD, STATUSES, TRANSITIONS
from empq.hub.redis_batch import load_lua


def test_states_are_the_schemas(repo):
    schema = json.loads((repo / "schemas" / "defs" / "job_status.json").read_text())
    assert list(STATUSES) == schema["enum"]
    named = {v for k, v in vars(lifecycle).items() if k.isupper() and isinstance(v, str)}
    assert named == set(STATUSES)


def test_every_state_is_reached_and_finals_are_final():
    targets = {t.target for t in TRANSITIONS}
    assert targets == set(STATUSES)
    for t in TRANSITIONS:
        assert not t.sources & FINAL, f"{t.event} leaves a final state"
        assert t.sources <= set(STATUSES)
    starts = {s for t in TRANSITIONS for s in t.sources}
    assert starts == set(STATUSES) - FINAL  # every other state has a way out
    assert {"queued"} == {t.target for t in TRANSITIONS if t.event == "submit"}


def test_the_workers_steps_start_only_from_held_states():
    for event in ("progress", "complete", "fail", "retry", "release", "lost"):
        assert lifecycle.sources(event) == HELD, event
    assert lifecycle.sources("accept") == {"assigned"} and lifecycle.sources("claim") == {"queued"}


JOB_SCRIPTS = {  # script -> the lifecycle events it makes
    "submit": {"submit"},
    "claim": {"claim"},
    "accept": {"accept"},
    "progress": {"progress"},
    "complete": {"complete"},
    "fail": {"retry", "fail"},
    "cancel": {"cancel"},
    "sweep": {"claim_expired", "time_limit"},
    "release": {"release", "lost"},
}


def test_every_transition_is_made_by_a_script_that_reads_the_table(repo):
    made = set()
    for script, events in JOB_SCRIPTS.items():
        source = (repo / "hub" / "lua" / f"{script}.lua").read_text()
        for event in events:
            # the script names the event: held(..., 'event'), may('event', ...), TO.event or TO[event]
            assert re.search(rf"'{event}'|TO\.{event}\b", source), (script, event)
        states = "|".join(STATUSES)
        by_hand = re.search(rf"HINCRBY', KEYS\[\d\], (prev|s\[1\]|'({states})')", source)
        assert by_hand is None, (script, "counts by status move with count()")
        made |= events
    assert made == {t.event for t in TRANSITIONS}


def test_each_script_carries_its_rows_of_the_table_and_the_helpers_it_uses():
    for script, events in JOB_SCRIPTS.items():
        loaded = load_lua(script)
        assert "TO." not in loaded, script  # every TO.<event> is written as its target state
        for t in TRANSITIONS:
            if t.event in events and t.sources and "local function may" in loaded:
                states = " or ".join(f"status == '{s}'" for s in sorted(t.sources))
                assert f"if event == '{t.event}' then return {states} end" in loaded, (script, t.event)
            if t.event in events:
                source = (REPO / "hub" / "lua" / f"{script}.lua").read_text()
                if f"TO.{t.event}" in source:
                    assert f"'{t.target}'" in loaded, (script, t.event)
    accept = load_lua("accept")
    order = [accept.index(m) for m in ("local function may", "local function held", "-- A worker confirms")]
    assert order == sorted(order)
    assert "local function enqueue" not in accept  # accept never queues: not carried
    assert "local function may" not in load_lua("capabilities")  # no job transition at all


async def test_a_step_from_a_state_the_table_refuses_is_refused_by_redis(core_hub):
    hub = await core_hub()
    client, worker = await hub.client(), await hub.worker()
    job = await client.request("submit_job", job_type="t", payload={})
    assert (await worker.request("claim_job", worker_id=worker.worker_id))["type"] == "job_assigned"
    # accept twice: the second starts from 'accepted', which the table does not allow for accept
    ok = await worker.request("job_accepted_by_worker", job_id=job["job_id"], worker_id=worker.worker_id)
    again = await worker.request("job_accepted_by_worker", job_id=job["job_id"], worker_id=worker.worker_id)
    assert ok["type"] == "ack" and again["error_code"] == "INVALID_STATE"
    assert again["details"]["status"] == "accepted"
