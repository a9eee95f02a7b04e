"""The job browser's Redis side (spec D20), in-process on a real Redis: each transition's history
entry (hub/lua/prelude.lua ``record``), the listing's filters and bounds (hub/browse.py), retry
and bulk cancel with who may do them (hub/actions.py), and the last hour per job type."""

from __future__ import annotations

import asyncio
import re

import pytest
from conftest import REPO
from empq.hub import actions
from empq.hub.browse import Browser, JobFilter, percentiles

SUBMIT = {"job_type": "text_to_image", "payload": {"prompt": "a lighthouse"}}
HISTORY_MAX = int(re.search(r"HISTORY_MAX = (\d+)", (REPO / "hub/lua/prelude.lua").read_text())[1])


def session(hub, conn):
    return hub.core.sessions[conn.conn_id]


async def history(hub, job_id):
    return [
        (s["event"], s["status"], s.get("worker_id"), s.get("note"))
        for s in await Browser(hub.core.store).history(job_id)
    ]


async def claim(worker):
    return await worker.request("claim_job", worker_id=worker.worker_id)


async def run(worker, job_id, *steps):
    """The worker's steps on a job it holds: accept, progress, complete or fail:<error>."""
    w = worker.worker_id
    for step in steps:
        if step == "accept":
            await worker.request("job_accepted_by_worker", job_id=job_id, worker_id=w)
        elif step == "progress":
            await worker.request("update_job_progress", job_id=job_id, worker_id=w, progress=50)
        elif step == "complete":
            await worker.request("complete_job", job_id=job_id, worker_id=w, result={"success": True})
        else:
            await worker.request("fail_job", job_id=job_id, worker_id=w, error=step.split(":", 1)[1])


async def failed_job(hub, client, worker, error="CUDA out of memory"):
    job = await client.request("submit_job", **SUBMIT, max_retries=0)
    await claim(worker)
    await run(worker, job["job_id"], "accept", f"fail:{error}")
    return job["job_id"]


# --- the history of each transition -----------------------------------------------------------


async def test_every_transition_appends_one_entry_to_the_jobs_history(core_hub):
    hub = await core_hub(default_max_retries=1)
    client, worker = await hub.client(), await hub.worker("gpu-1")
    job_id = (await client.request("submit_job", **SUBMIT))["job_id"]
    await claim(worker)
    await run(worker, job_id, "accept", "progress", "progress", "fail:oom")
    await asyncio.sleep(0.1)  # the retry delay (0.05 s here)
    await hub.core.tick()
    await claim(worker)
    await run(worker, job_id, "accept", "complete")
    assert await history(hub, job_id) == [
        ("submit", "queued", None, None),
        ("claim", "assigned", "gpu-1", None),
        ("accept", "accepted", "gpu-1", None),
        ("progress", "in_progress", "gpu-1", None),  # the first progress only: a change of state
        ("retry", "queued", "gpu-1", "oom"),
        ("claim", "assigned", "gpu-1", None),
        ("accept", "accepted", "gpu-1", None),
        ("complete", "completed", "gpu-1", None),
    ]
    times = [s["at"] for s in await Browser(hub.core.store).history(job_id)]
    assert times == sorted(times) and times[0] == int((await hub.core.store.status(job_id))["created_at"])


async def test_timers_cancels_and_departing_workers_are_in_the_history(core_hub):
    hub = await core_hub(default_max_retries=1)
    client, worker = await hub.client(), await hub.worker("gpu-2")
    store = hub.core.store
    expired = (await client.request("submit_job", **SUBMIT))["job_id"]
    await store.claim("gpu-2", {"services": ["comfyui"]}, 1, 0, [])  # a claim that expires at once
    await hub.core.tick()
    cancelled = expired
    await claim(worker)
    await client.request("cancel_job", job_id=cancelled, reason="wrong prompt")
    assert (await history(hub, cancelled))[1:] == [
        ("claim", "assigned", "gpu-2", None),
        ("claim_expired", "queued", "gpu-2", None),
        ("claim", "assigned", "gpu-2", None),
        ("cancel", "cancelled", "gpu-2", "wrong prompt"),
    ]
    timed = (await client.request("submit_job", **SUBMIT, timeout_seconds=0.05))["job_id"]
    await claim(worker)
    await run(worker, timed, "accept")
    await asyncio.sleep(0.1)
    await hub.core.tick()
    assert (await history(hub, timed))[-1] == ("time_limit", "timeout", "gpu-2", None)

    left = (await client.request("submit_job", **SUBMIT))["job_id"]
    await claim(worker)
    await worker.send("disconnect")  # graceful: handed back
    lost_worker = await hub.worker("gpu-3")
    await claim(lost_worker)
    await hub.core.worker_lost("gpu-3")  # a retry counted: queued again
    again = await hub.worker("gpu-4")
    await claim(again)
    await hub.core.worker_lost("gpu-4")  # out of retries: failed
    assert [s[:3] for s in (await history(hub, left))[1:]] == [
        ("claim", "assigned", "gpu-2"),
        ("release", "queued", "gpu-2"),
        ("claim", "assigned", "gpu-3"),
        ("release", "queued", "gpu-3"),
        ("claim", "assigned", "gpu-4"),
        ("lost", "failed", "gpu-4"),
    ]


async def test_the_history_is_bounded_and_forgotten_with_its_job(core_hub):
    hub = await core_hub()
    client = await hub.client()
    store = hub.core.store
    job_id = (await client.request("submit_job", **SUBMIT))["job_id"]
    for _ in range(HISTORY_MAX // 2 + 5):  # claimed and expired again and again
        await store.claim("w", {"services": ["comfyui"]}, 1, 0, [])
        await store.sweep()
    steps = await Browser(store).history(job_id)
    assert len(steps) == HISTORY_MAX and steps[-1]["event"] == "claim_expired"
    await client.request("cancel_job", job_id=job_id)
    assert await store.forget_finished(0) == 1
    assert await hub.redis.execute("EXISTS", store.key(f"hist:{job_id}"), store.job_key(job_id)) == 0


# --- retry ------------------------------------------------------------------------------------


async def test_a_failed_job_is_retried_as_a_new_job_linked_both_ways(core_hub):
    hub = await core_hub()
    client, worker = await hub.client(), await hub.worker()
    ops = await hub.monitor(("view_all_jobs", "manage_jobs"))
    original = await failed_job(hub, client, worker)
    accepted = await actions.retry(hub.core, session(hub, ops), original)
    new_id = accepted["job_id"]
    assert accepted["retry_of"] == original and accepted["status"] == "queued" and new_id != original
    new = await actions.job_detail(hub.core, session(hub, ops), new_id)
    old = await actions.job_detail(hub.core, session(hub, ops), original)
    assert new["retry_of"] == original and old["retried_as"] == new_id
    assert new["payload"] == SUBMIT["payload"] and new["job_type"] == SUBMIT["job_type"]
    assert new["status"] == "queued" and new["retry_count"] == 0 and new["max_retries"] == 0
    assert old["status"] == "failed" and old["error"] == "CUDA out of memory"  # stays as it ended
    assert old["timeline"][-1] == {
        "event": "retried",
        "status": "failed",
        "at": new["created_at"],
        "note": new_id,
    }
    assert new["timeline"][0]["note"] == original
    # the submitter sees the new job as its own, and a worker runs it with the same payload
    status = await client.request("request_job_status", job_id=new_id)
    assert status["status"] == "queued"
    assert (await claim(worker))["payload"] == SUBMIT["payload"]


async def test_who_may_retry_what(core_hub):
    hub = await core_hub()
    client, worker = await hub.client(), await hub.worker()
    failed = await failed_job(hub, client, worker)
    queued = (await client.request("submit_job", **SUBMIT))["job_id"]
    viewer = await hub.monitor(("view_all_jobs",))
    stranger = await hub.client()

    async def refused(conn, job_id):
        with pytest.raises(actions.Refused) as caught:
            await actions.retry(hub.core, session(hub, conn), job_id)
        return caught.value.to_dict()["error_code"], caught.value.to_dict().get("details", {})

    assert (await refused(viewer, failed))[0] == "PERMISSION_DENIED"  # monitors need manage_jobs
    assert (await refused(stranger, failed))[0] == "JOB_NOT_FOUND"  # not its job: not disclosed
    assert await refused(client, queued) == ("INVALID_STATE", {"job_id": queued, "status": "queued"})
    retried = await actions.retry(hub.core, session(hub, client), failed)  # its own job
    code, details = await refused(client, failed)  # once: a second click queues nothing
    assert code == "INVALID_STATE" and details["retried_as"] == retried["job_id"]
    await client.request("cancel_job", job_id=queued)
    assert (await actions.retry(hub.core, session(hub, client), queued))["retry_of"] == queued


async def test_a_retry_is_refused_atomically_once_the_job_was_retried_elsewhere(core_hub):
    """Two hubs retrying the same job at once: the submit script queues one."""
    hub = await core_hub()
    client, worker = await hub.client(), await hub.worker()
    failed = await failed_job(hub, client, worker)
    original = await hub.core.store.status(failed)
    results = await asyncio.gather(
        hub.core.jobs.retry(failed, original, "a"),
        hub.core.jobs.retry(failed, original, "b"),
        return_exceptions=True,
    )
    assert sorted(getattr(r, "type", type(r).__name__) for r in results) == ["NotRetryable", "job_accepted"]
    assert (await hub.core.store.counts())["queued"] == 1


# --- listing, filters and bounds ---------------------------------------------------------------


async def test_filters_each_narrow_the_listing(core_hub):
    hub = await core_hub()
    acme, globex = await hub.client("acme"), await hub.client("globex")
    worker = await hub.worker("gpu-9")
    ids = {}
    for name, conn, job_type in (("a1", acme, "t2i"), ("a2", acme, "upscale"), ("g1", globex, "t2i")):
        ids[name] = (await conn.request("submit_job", job_type=job_type, payload={}))["job_id"]
        await asyncio.sleep(0.005)  # distinct created_at
    await claim(worker)  # takes a1
    ops = session(hub, await hub.monitor(("view_all_jobs",)))
    browser = Browser(hub.core.store)

    async def listed(viewer=ops, **criteria):
        query = {k: str(v) for k, v in criteria.items()}  # as query parameters are
        found, _ = await browser.scan(viewer, JobFilter.parse(query), None, 50, 5000)
        return [name for name, job_id in ids.items() for j, _ in found if j == job_id]

    assert await listed() == ["a1", "a2", "g1"]
    assert await listed(status="queued") == ["a2", "g1"]
    assert await listed(status="assigned,failed") == ["a1"]
    assert await listed(job_type="t2i") == ["a1", "g1"]
    assert await listed(customer_id="acme") == ["a1", "a2"]
    assert await listed(worker_id="gpu-9") == ["a1"]
    assert await listed(q=ids["g1"]) == ["g1"]  # an exact id: read directly
    assert await listed(q=ids["a2"][4:12]) == ["a2"]  # the start of one, without job-
    created = {n: int((await hub.core.store.status(j))["created_at"]) for n, j in ids.items()}
    assert await listed(created_from=created["a2"]) == ["a2", "g1"]
    assert await listed(created_to=created["a2"]) == ["a1", "a2"]
    assert await listed(created_from=created["a2"], created_to=created["a2"]) == ["a2"]
    assert await listed(created_to=created["a1"] - 120_000) == []
    # a session bound to a customer never lists another's jobs, whatever it asks
    assert await listed(session(hub, acme)) == ["a1", "a2"]
    assert await listed(session(hub, acme), customer_id="globex") == []


async def test_a_listing_scans_a_bounded_number_of_jobs_and_says_where_to_go_on(core_hub):
    hub = await core_hub()
    client = await hub.client()
    ids = [(await client.request("submit_job", job_type="t", payload={}))["job_id"] for _ in range(30)]
    rare = (await client.request("submit_job", job_type="rare", payload={}))["job_id"]
    ids += [(await client.request("submit_job", job_type="t", payload={}))["job_id"] for _ in range(30)]
    browser, viewer = Browser(hub.core.store), session(hub, client)
    filt = JobFilter.parse({"job_type": "rare"})
    found, cursor = await browser.scan(viewer, filt, None, 10, 20)
    assert found == [] and cursor is not None  # 20 looked at, nothing yet: go on
    found, cursor = await browser.scan(viewer, filt, int(cursor), 10, 20)
    assert [j for j, _ in found] == [rare]
    pages, cursor = [], None
    while True:
        found, cursor = await browser.scan(viewer, JobFilter(), cursor and int(cursor), 25, 5000)
        pages.append([j for j, _ in found])
        if cursor is None:
            break
    assert [len(p) for p in pages] == [25, 25, 11] and sum(pages, []) == list(
        reversed([*ids[:30], rare, *ids[30:]])
    )


@pytest.mark.parametrize(
    "criteria",
    [{"status": "nope"}, {"status": ""}, {"created_from": "yesterday"}, {"q": ""}, {"job_type": "x" * 300}],
)
def test_bad_filters_are_refused_with_the_field(criteria):
    from empq.hub.browse import BadFilter

    with pytest.raises(BadFilter) as caught:
        JobFilter.parse(criteria)
    assert caught.value.field == next(iter(criteria))


# --- bulk cancel --------------------------------------------------------------------------------


async def test_bulk_cancel_cancels_the_matching_jobs_it_may_and_says_which(core_hub):
    hub = await core_hub()
    client, worker = await hub.client(), await hub.worker()
    done = await failed_job(hub, client, worker)  # final: not cancellable
    stuck = [(await client.request("submit_job", job_type="stuck", payload={}))["job_id"] for _ in range(5)]
    other = (await client.request("submit_job", job_type="fine", payload={}))["job_id"]
    ops = session(hub, await hub.monitor(("view_all_jobs", "manage_jobs")))
    first = await actions.bulk_cancel(
        hub.core, ops, JobFilter.parse({"job_type": "stuck"}), "flood", 3, None, 5000
    )
    assert first["cancelled"] == stuck[::-1][:3] and first["next_cursor"] is not None
    rest = await actions.bulk_cancel(hub.core, ops, JobFilter(), "flood", 100, None, 5000)
    assert sorted(rest["cancelled"]) == sorted([*stuck[:2], other]) and rest["next_cursor"] is None
    assert (
        done not in rest["cancelled"] and (await hub.core.store.status(stuck[0]))["cancel_reason"] == "flood"
    )
    viewer = session(hub, await hub.monitor(("view_all_jobs",)))
    with pytest.raises(actions.Refused) as caught:
        await actions.bulk_cancel(hub.core, viewer, JobFilter(), "x", 10, None, 5000)
    assert caught.value.to_dict()["error_code"] == "PERMISSION_DENIED"


# --- the last hour per job type ---------------------------------------------------------------


def test_percentiles_are_nearest_rank():
    assert percentiles([]) is None
    assert percentiles([3.0]) == {"p50": 3.0, "p95": 3.0, "p99": 3.0}
    values = [float(v) for v in range(1, 101)]
    assert percentiles(values) == {"p50": 50.0, "p95": 95.0, "p99": 99.0}


async def test_the_last_hour_per_job_type_from_redis(core_hub):
    hub = await core_hub()
    acme, globex, worker = await hub.client("acme"), await hub.client("globex"), await hub.worker()
    for conn, job_type in ((acme, "t2i"), (acme, "t2i"), (globex, "upscale")):
        job_id = (await conn.request("submit_job", job_type=job_type, payload={}))["job_id"]
        await claim(worker)
        await run(worker, job_id, "accept", "complete")
    failed = await failed_job(hub, acme, worker)
    for _ in range(2):
        await acme.request("submit_job", job_type="t2i", payload={})
    await globex.request("submit_job", job_type="upscale", payload={})

    ops = session(hub, await hub.monitor(("view_all_jobs", "view_system_stats")))
    hour = await actions.hour_stats(hub.core, ops)
    by_type = {t["job_type"]: t for t in hour["job_types"]}
    assert set(by_type) == {"t2i", "upscale", SUBMIT["job_type"]}
    t2i = by_type["t2i"]
    assert (t2i["completed"], t2i["failed"], t2i["queued"]) == (2, 0, 2)
    assert set(t2i["run_seconds"]) == {"p50", "p95", "p99"} and t2i["wait_seconds"]["p50"] >= 0
    assert by_type[SUBMIT["job_type"]]["failed"] == 1 and by_type[SUBMIT["job_type"]]["run_seconds"] is None
    assert sum(hour["per_minute"]["completed"]) == 3 and sum(hour["per_minute"]["failed"]) == 1
    assert len(hour["per_minute"]["completed"]) == 60 and hour["sampled"] == {"completed": 3, "failed": 1}
    assert failed  # the failure counted above

    # a customer's viewer: its own jobs and queues only (the per-minute counts are aggregates, D19)
    mine = await actions.hour_stats(hub.core, session(hub, acme))
    assert {t["job_type"]: (t["completed"], t["queued"]) for t in mine["job_types"]} == {
        "t2i": (2, 2),
        SUBMIT["job_type"]: (0, 0),
    }
    blind = await hub.monitor(("view_all_jobs",))
    with pytest.raises(actions.Refused):
        await actions.hour_stats(hub.core, session(hub, blind))
