"""hub/progress.py: progress updates written per event-loop tick — the latest per job written and
fanned out, all of a tick in one script call, nothing final coalesced nor overtaking an update.
In-process on a real Redis; frames that arrive "in the same tick" are dispatched together (as the
transport does with the frames of one read)."""

from __future__ import annotations

import asyncio

from empq import protocol


def frame(kind, **fields):
    return protocol.encode(protocol.make(protocol.MESSAGE_CLASSES[kind], **fields))


async def same_tick(conn, *frames):
    """The frames dispatched together, as the frames of one socket read are; what came back."""
    await asyncio.gather(*(conn.core.receive(conn.conn_id, f) for f in frames))
    return conn.new()


async def running(hub, client, worker, n=1):
    """``n`` jobs submitted, claimed and accepted by the worker."""
    jobs = []
    for _ in range(n):
        job_id = (await client.submit())["job_id"]
        (assigned,) = await worker.claim()
        assert assigned["job_id"] == job_id
        await worker.accept(job_id)
        jobs.append(job_id)
    client.new()
    return jobs


def progress(worker, job_id, pct, rid, **fields):
    return frame(
        "update_job_progress", id=rid, job_id=job_id, worker_id=worker.worker_id, progress=pct, **fields
    )


async def test_updates_of_a_job_in_one_tick_are_written_and_fanned_out_once_the_latest(core_hub):
    hub = await core_hub()
    client, worker, watcher = await hub.client(), await hub.worker(max_concurrent_jobs=2), await hub.monitor()
    await watcher.request("subscribe_job_notifications")
    (job_id,) = await running(hub, client, worker)
    watcher.new()
    writer = hub.core.jobs.progress_writer
    calls, coalesced = writer.calls, writer.coalesced
    replies = await same_tick(
        worker,
        progress(worker, job_id, 10, "p1", message="loading model"),
        progress(worker, job_id, 20, "p2", current_step="sampling"),
        progress(worker, job_id, 30, "p3"),
    )
    # each update is acknowledged, in order
    assert [(f["type"], f["request_id"]) for f in replies] == [("ack", "p1"), ("ack", "p2"), ("ack", "p3")]
    # one write, one job_update: the latest one's fields
    assert (writer.calls - calls, writer.coalesced - coalesced) == (1, 2)
    for peer in (client, watcher):
        (update,) = [f for f in peer.new() if f["type"] == "job_update"]
        assert (update["status"], update["progress"]) == ("in_progress", 30)
        assert "message" not in update and "current_step" not in update
    # the job's hash ends as if each had been written: the fields the earlier ones set are kept
    stored = await hub.core.store.status(job_id)
    assert (stored["progress"], stored["message"], stored["current_step"]) == (
        "30.0",
        "loading model",
        "sampling",
    )


async def test_a_final_step_in_the_same_tick_goes_after_the_updates_never_coalesced(core_hub):
    hub = await core_hub()
    client, worker = await hub.client(), await hub.worker(max_concurrent_jobs=2)
    done, failed = await running(hub, client, worker, n=2)
    wid = worker.worker_id
    replies = await same_tick(
        worker,
        progress(worker, done, 50, "d1"),
        progress(worker, failed, 60, "f1"),
        progress(worker, done, 90, "d2"),
        frame("complete_job", id="dc", job_id=done, worker_id=wid, result={"success": True}),
        frame("fail_job", id="ff", job_id=failed, worker_id=wid, error="oom", retry=False),
    )
    assert [f["type"] for f in replies] == ["ack", "ack", "ack", "job_completed_ack", "job_failed_ack"]
    frames = client.new()
    of_done = [(f["type"], f.get("status"), f.get("progress")) for f in frames if f["job_id"] == done]
    assert of_done == [("job_update", "in_progress", 90), ("job_completed", "completed", None)]
    of_failed = [(f["type"], f.get("status"), f.get("progress")) for f in frames if f["job_id"] == failed]
    assert of_failed == [("job_update", "in_progress", 60), ("job_update", "failed", None)]
    assert (await hub.core.store.status(done))["status"] == "completed"
    assert (await hub.core.store.status(failed))["status"] == "failed"
    assert hub.core.jobs.progress_writer.tick is None  # nothing left to write


async def test_the_updates_of_several_jobs_in_one_tick_take_one_script_call_and_a_refusal_stays_its_own(
    core_hub,
):
    hub = await core_hub()
    client, worker = await hub.client(), await hub.worker(max_concurrent_jobs=3)
    other = await hub.worker()
    jobs = await running(hub, client, worker, n=3)
    writer = hub.core.jobs.progress_writer
    calls = writer.calls
    replies = await same_tick(worker, *(progress(worker, j, 40 + i, f"p{i}") for i, j in enumerate(jobs)))
    not_held = await same_tick(other, progress(other, jobs[0], 99, "x"))
    assert writer.calls - calls == 2  # one for the three jobs, one for the other worker's
    assert [(f["type"], f["request_id"]) for f in replies] == [("ack", "p0"), ("ack", "p1"), ("ack", "p2")]
    assert [(f["type"], f.get("error_code")) for f in not_held] == [("error", "NOT_JOB_HOLDER")]
    updates = {f["job_id"]: f["progress"] for f in client.new() if f["type"] == "job_update"}
    assert updates == {jobs[0]: 40, jobs[1]: 41, jobs[2]: 42}


async def test_a_refused_update_leaves_the_others_of_its_call_written(core_hub):
    hub = await core_hub()
    client, worker = await hub.client(), await hub.worker(max_concurrent_jobs=2)
    mine = (await running(hub, client, worker))[0]
    queued = (await client.submit())["job_id"]  # not claimed: nobody holds it
    client.new()
    replies = await same_tick(worker, progress(worker, queued, 5, "q"), progress(worker, mine, 7, "m"))
    assert [(f["type"], f["request_id"]) for f in replies] == [("error", "q"), ("ack", "m")]
    assert [(f["job_id"], f["progress"]) for f in client.new() if f["type"] == "job_update"] == [(mine, 7)]
    assert (await hub.core.store.status(queued))["status"] == "queued"


async def test_without_coalescing_each_update_is_written_and_fanned_out(core_hub):
    hub = await core_hub(coalesce_progress=False)
    client, worker = await hub.client(), await hub.worker()
    (job_id,) = await running(hub, client, worker)
    await same_tick(worker, *(progress(worker, job_id, p, f"p{p}") for p in (10, 20, 30)))
    got = [f["progress"] for f in client.new() if f["type"] == "job_update"]
    assert got == [10, 20, 30]
    assert hub.core.jobs.progress_writer.coalesced == 0


async def test_a_call_that_redis_no_longer_knows_is_sent_again_and_answers_every_update(core_hub):
    hub = await core_hub()
    client, worker = await hub.client(), await hub.worker(max_concurrent_jobs=2)
    first, second = await running(hub, client, worker, n=2)
    await hub.redis.execute("SCRIPT", "FLUSH")  # what a restarted Redis forgets
    updates = [
        progress(worker, first, 11, "a"),
        progress(worker, second, 22, "b"),
        progress(worker, first, 33, "c"),
    ]
    replies = await same_tick(worker, *updates)
    assert [(f["type"], f["request_id"]) for f in replies] == [("ack", "a"), ("ack", "b"), ("ack", "c")]
    updates = [(f["job_id"], f["progress"]) for f in client.new() if f["type"] == "job_update"]
    assert sorted(updates) == sorted([(first, 33), (second, 22)])


async def test_a_workers_update_after_its_final_step_goes_behind_it_while_others_join_the_first_call(
    core_hub,
):
    hub = await core_hub()
    client = await hub.client()
    worker, other = await hub.worker(max_concurrent_jobs=2), await hub.worker()
    first, second = await running(hub, client, worker, n=2)
    (third,) = await running(hub, client, other)
    writer = hub.core.jobs.progress_writer
    calls = writer.calls
    sent = [
        (worker, progress(worker, first, 10, "a")),
        (
            worker,
            frame(
                "complete_job", id="ac", job_id=first, worker_id=worker.worker_id, result={"success": True}
            ),
        ),
        (other, progress(other, third, 30, "c")),  # another worker's: joins the first call
        (worker, progress(worker, second, 20, "b")),  # after its final step: a call behind it
    ]
    await asyncio.gather(*(conn.core.receive(conn.conn_id, f) for conn, f in sent))
    assert writer.calls - calls == 2
    assert [(f["type"], f["request_id"]) for f in worker.new()] == [
        ("ack", "a"),
        ("job_completed_ack", "ac"),
        ("ack", "b"),
    ]
    assert [(f["type"], f["request_id"]) for f in other.new()] == [("ack", "c")]
    of_first = [(f["type"], f.get("progress")) for f in client.new() if f["job_id"] == first]
    assert of_first == [("job_update", 10), ("job_completed", None)]


async def test_an_update_after_the_workers_accept_runs_after_it_though_a_call_was_open_before(core_hub):
    hub = await core_hub()
    client = await hub.client()
    worker, other = await hub.worker(), await hub.worker()
    (busy,) = await running(hub, client, other)
    job_id = (await client.submit())["job_id"]
    (assigned,) = await worker.claim()
    assert assigned["job_id"] == job_id
    client.new()
    sent = [
        (other, progress(other, busy, 5, "o")),  # opens the tick's call, placed first in the batch
        (worker, frame("job_accepted_by_worker", id="acc", job_id=job_id, worker_id=worker.worker_id)),
        (worker, progress(worker, job_id, 50, "p")),  # must not join the call placed before its accept
    ]
    await asyncio.gather(*(conn.core.receive(conn.conn_id, f) for conn, f in sent))
    assert [(f["type"], f["request_id"]) for f in worker.new()] == [("ack", "acc"), ("ack", "p")]
    steps = [(f["status"], f.get("progress")) for f in client.new() if f.get("job_id") == job_id]
    assert steps == [("accepted", None), ("in_progress", 50)]
