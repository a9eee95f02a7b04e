"""hub/server.py: what needs the transport — the frame size limit (D1), graceful shutdown (D17),
a worker's pipelined frames keeping their order, wss:// (TLS). Real sockets, real redis-server."""

from __future__ import annotations

import shutil
import ssl
import subprocess

import pytest
from conftest import TRANSPORTS
from peer_steps import claim_eventually, now_ms, status_of, still_works, submit
from websockets.asyncio.client import connect

from empq import protocol

# every test here runs on both WebSocket I/O layers (--transport websockets | picows)
pytestmark = pytest.mark.parametrize("transport", TRANSPORTS)

# --- frame size limit (D1) ----------------------------------------------------------------------


async def test_frame_over_the_size_limit_closes_only_that_connection(start_hub):
    hub = await start_hub(max_message_size=64 * 1024)
    big = await hub.peers.client("big")
    other = await hub.peers.client("other")
    near = await submit(other, payload={"blob": "x" * 60_000})  # under the limit: fine
    assert near["status"] == "queued"
    await big.send("submit_job", job_type="t", payload={"blob": "x" * 70_000})
    assert await big.closed(timeout=3) == 1009
    await still_works(other)
    assert (await submit(other))["status"] == "queued"
    fresh = await hub.peers.raw()
    assert fresh.wire[-1].frame["max_message_size"] == 64 * 1024


# --- graceful shutdown (D17) --------------------------------------------------------------------


async def test_shutdown_tells_every_peer_and_keeps_jobs(start_hub):
    hub = await start_hub()
    client = await hub.peers.client("keeper", customer_id="shut")
    job = (await submit(client))["job_id"]
    everyone = [client, await hub.peers.worker(), await hub.peers.monitor(), await hub.peers.raw()]
    before = now_ms()
    await hub.stop(reason="Server maintenance", downtime=30)
    hub.stopped = True
    for peer in everyone:
        notice = await peer.expect("server_disconnect", timeout=2)
        assert notice["reason"] == "Server maintenance" and notice["estimated_downtime"] == 30
        assert before + 30_000 <= notice["reconnect_after"] <= now_ms() + 30_000
        assert await peer.closed(timeout=2) == 1001
    # the job outlives the hub
    again = await start_hub(key_prefix=hub.config.key_prefix)
    other = await again.peers.client("keeper-2", customer_id="shut")
    assert (await status_of(other, job))["status"] == "queued"


# --- a connection's frames: pipelined dispatch keeps their order --------------------------------


async def test_a_workers_frames_sent_back_to_back_keep_their_order(start_hub):
    """PIPELINABLE frames (accept, progress, complete) are dispatched without waiting for each
    other's Redis reply; their effects and replies keep the frames' order, and the next other
    frame (here claim_job) sees all of them (the freed slot)."""
    hub = await start_hub()
    client = await hub.peers.client("pipelined", customer_id="pipe")
    worker = await hub.peers.worker()
    first, second = [(await submit(client))["job_id"] for _ in range(2)]
    await claim_eventually(worker, first)
    wid = worker.worker_id
    await worker.send("job_accepted_by_worker", id="a", job_id=first, worker_id=wid)
    for pct in range(10, 100, 10):
        await worker.send("update_job_progress", id=f"p{pct}", job_id=first, worker_id=wid, progress=pct)
    await worker.send("complete_job", id="c", job_id=first, worker_id=wid, result={"success": True})
    await worker.send("claim_job", id="next", worker_id=wid, max_jobs=1)
    order = []
    for _ in range(11):
        frame = await worker.expect(("ack", "job_completed_ack"))
        order.append(frame["request_id"])
    assert order == ["a", *(f"p{p}" for p in range(10, 100, 10)), "c"]
    assigned = await worker.expect(("job_assigned", "ack", "error"), request_id="next")
    assert (assigned["type"], assigned["job_id"]) == ("job_assigned", second)  # the slot was free
    seen, progress = [], []
    while True:
        frame = await client.expect(("job_update", "job_completed"), job_id=first)
        seen.append(frame["status"] if frame["type"] == "job_update" else "completed")
        if frame["type"] == "job_completed":
            break
        if frame["status"] == "in_progress":
            progress.append(frame["progress"])
    # updates that arrived in the same tick are coalesced (the latest written and fanned out):
    # the client sees some of them, in order, always the last, and the final message after them
    assert seen == ["assigned", "accepted", *["in_progress"] * len(progress), "completed"]
    assert progress == sorted(set(progress)) and progress[-1] == 90


# --- wss:// with --tls-cert/--tls-key -------------------------------------------------------------


@pytest.fixture
def certificate(tmp_path):
    """A self-signed certificate made by openssl for the test."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


async def test_hub_serves_wss(redis_url, certificate, transport):
    from conftest import hub_config
    from empq.hub.server import HubServer

    cert, key = certificate
    server = HubServer(hub_config(redis_url, tls_cert=str(cert), tls_key=str(key), transport=transport))
    await server.start()
    try:
        context = ssl.create_default_context(cafile=str(cert))
        async with connect(f"wss://127.0.0.1:{server.port}", ssl=context, compression=None) as ws:
            greeting = protocol.parse_from_hub(await ws.recv())
            assert greeting.type == "connection_established"
        with pytest.raises(Exception):  # noqa: B017 - a plain client cannot speak to a TLS endpoint
            async with connect(f"ws://127.0.0.1:{server.port}", open_timeout=3) as ws:
                await ws.recv()
    finally:
        await server.stop()
