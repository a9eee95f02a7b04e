"""hub/embedded_redis.py, supervised by the hub (spec D19's hardening): a redis-server that dies is
started again on the same data (jobs survive, SERVICE_UNAVAILABLE meanwhile); one left running by
a killed hub is adopted, said so in the log, and stopped by the last hub on its data dir."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from typing import Any

from conftest import Peers
from empq.hub.server import HubServer
from peer_steps import submit


async def test_the_embedded_redis_is_restarted_when_it_dies(tmp_path, caplog):
    from conftest import hub_config

    caplog.set_level(logging.INFO, logger="empq.hub")
    server = HubServer(hub_config(None, data_dir=tmp_path / "data", http_port=-1))
    await server.start()
    try:
        url = f"ws://127.0.0.1:{server.port}"
        peers = Peers(url)
        c = await peers.client("survivor")
        job = await submit(c)
        await asyncio.sleep(1.2)  # AOF everysec: the job is on disk
        assert server.embedded is not None and server.embedded.process is not None
        os.kill(server.embedded.process.pid, signal.SIGKILL)
        deadline = time.monotonic() + 15
        status: dict[str, Any] = {}
        while time.monotonic() < deadline:
            status = await c.request("request_job_status", "response_job_status", job_id=job["job_id"])
            if status["type"] == "response_job_status":
                break
            assert status["error_code"] == "SERVICE_UNAVAILABLE", status
            await asyncio.sleep(0.2)
        assert status.get("status") == "queued", status
        assert server.embedded.restarts == 1
        assert "exited" in caplog.text and "starting it again" in caplog.text
        await peers.close()
    finally:
        await server.stop()


async def test_an_orphaned_embedded_redis_is_adopted_and_said_so(tmp_path, caplog):
    from conftest import hub_config
    from empq.hub.embedded_redis import EmbeddedRedis

    data = tmp_path / "data"
    left = EmbeddedRedis(data)
    left.start()
    pid = left.process.pid if left.process else 0
    assert left._lock is not None
    left._lock.close()  # what a kill -9 of its hub does: the lock goes, the server stays
    caplog.set_level(logging.INFO, logger="empq.hub")
    server = HubServer(hub_config(None, data_dir=data, http_port=-1))
    await server.start()
    try:
        assert f"adopted redis-server pid {pid}" in caplog.text
        peers = Peers(f"ws://127.0.0.1:{server.port}")
        assert (await submit(await peers.client("adopter")))["type"] == "job_accepted"
        await peers.close()
    finally:
        await server.stop()  # the last hub on the data dir stops the adopted server
    assert left.process is not None and left.process.wait(5) == 0
