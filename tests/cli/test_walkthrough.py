"""The README walkthrough as a new user runs it, with real subprocesses: ``empq hub``, two
``empq worker`` (simulate), ten ``empq submit`` of different priorities, ``empq watch`` seeing them
run, ``empq status``, ``empq submit --wait``, SIGTERM draining the workers (issue 6)."""

from __future__ import annotations

import asyncio
import json
import signal
import uuid

from cli_support import REQUIREMENTS, Proc, clean_env, empq, free_port, until

from empq.client import EmpQueueClient


async def test_readme_walkthrough(redis_url, tmp_path):
    """The README walkthrough, as a user pastes it: hub, two simulated workers, ten jobs with
    different priorities, watch them run, all complete; then SIGTERM drains the workers."""
    port = free_port()
    url = f"ws://127.0.0.1:{port}"
    client_id = f"walkthrough-{uuid.uuid4().hex[:6]}"
    env = clean_env(
        EMPQ_KEY_PREFIX=f"{{cli-{uuid.uuid4().hex[:8]}}}",
        EMPQ_SWEEP_INTERVAL_MS="50",
        EMPQ_HEARTBEAT_INTERVAL_MS="500",
        EMPQ_HUB=url,
        EMPQ_CLIENT_ID=client_id,
    )
    hub = await Proc.start("hub", "hub", "--redis-url", redis_url, "--ws-port", str(port), env=env)
    workers: list[Proc] = []
    try:
        await until(lambda: any("listening on" in line for line in hub.lines), 20, "the hub")
        for n in (1, 2):
            workers.append(
                await Proc.start(
                    f"worker{n}",
                    "worker",
                    "--services", "comfyui",
                    "--components", "text-to-image-xl",
                    "--gpu-memory", "16",
                    "--connector", "simulate",
                    "--steps", "3",
                    "--step-seconds", "0.15",
                    "--worker-id", f"gpu-{n}",
                    "--json",
                    env=env,
                )
            )  # fmt: skip
        for w in workers:
            await until(lambda w=w: any(e.get("event") == "registered" for e in w.events()), 20, w.name)

        watch = await Proc.start("watch", "watch", "--json", env=env)
        await until(lambda: watch.lines, 20, "watch's first stats")  # watching before the jobs arrive
        priorities = [10, 20, 30, 40, 50, 60, 70, 80, 90, 100]
        submits = await asyncio.gather(
            *(
                empq(
                    "submit",
                    "--job-type", "text_to_image",
                    "--priority", str(p),
                    "--payload", json.dumps({"prompt": f"mountains #{p}"}),
                    "--requirements", REQUIREMENTS,
                    "--json",
                    env=env,
                )
                for p in priorities
            )
        )  # fmt: skip
        assert all(run.code == 0 for run in submits), submits
        ids = [run.json()["job_id"] for run in submits]
        assert all(run.json()["status"] == "queued" for run in submits)

        async with EmpQueueClient(url, client_id=client_id) as client:  # same client id: sees them
            results = await asyncio.gather(*(client.wait(job_id, timeout=20) for job_id in ids))
        assert [r.metadata["echo"]["prompt"] for r in results] == [f"mountains #{p}" for p in priorities]

        await asyncio.sleep(1.1)  # one more stats update
        assert await watch.stop(signal.SIGINT) == 0, watch.lines  # Ctrl-C ends watch quietly
        frames = watch.events()
        stats = [f["stats"] for f in frames if f.get("type") == "stats"]
        assert any(s["workers"]["total"] == 2 for s in stats)
        assert any(s["workers"]["busy"] >= 1 for s in stats)  # watched them run
        completed = {f["job_id"] for f in frames if f.get("type") == "job_completed"}
        assert completed and completed <= set(ids)
        assert any(f.get("type") == "job_update" and f.get("status") == "in_progress" for f in frames)

        status = await empq("status", ids[0], env=env)
        assert status.code == 0 and "completed" in status.out and ids[0] in status.out
        waited = await empq(
            "submit", "--job-type", "text_to_image", "--payload", '{"prompt": "one more"}', "--wait", env=env
        )
        assert waited.code == 0, waited
        assert "completed job-" in waited.out and '"one more"' in waited.out
        assert "in_progress" in waited.err  # progress lines (no terminal: one per update)

        human = await empq("watch", "--seconds", "1.2", env=env)
        assert human.code == 0 and "workers 2 (idle 2, busy 0" in human.out, human

        for w in workers:
            assert await w.stop(signal.SIGTERM) == 0, w.lines
            events = w.events()
            assert events[-1]["event"] == "stopped" and events[-1]["reason"] == "worker drained"
            assert any(e["event"] == "draining" for e in events)
        done = sum(1 for w in workers for e in w.events() if e["event"] == "job_completed")
        assert done == 11
        assert all(any(e["event"] == "job_completed" for e in w.events()) for w in workers)
    finally:
        for w in workers:
            await w.stop(signal.SIGKILL)
        assert await hub.stop(signal.SIGTERM) == 0, hub.lines
