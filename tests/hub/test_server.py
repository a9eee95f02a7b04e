"""hub/server.py: what needs the transport — the frame size limit (D1), graceful shutdown (D17),
a worker's pipelined frames keeping their order, wss:// (TLS). Real sockets, real redis-server."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess

import orjson
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


# --- fan-out: one frame, the same bytes for every recipient -------------------------------------


async def _raw(url, kind, reply, **fields):
    """A raw WebSocket connection, greeted, that sent one message and got its reply."""
    ws = await connect(url, max_size=None)
    assert orjson.loads(await ws.recv())["type"] == "connection_established"
    await ws.send(protocol.encode(protocol.make(protocol.MESSAGE_CLASSES[kind], **fields)).decode())
    await _until(ws, lambda f: f["type"] == reply)
    return ws


async def _until(ws, wanted, seconds=10.0):
    """The raw text of the first frame ``wanted`` accepts (parsed)."""
    async with asyncio.timeout(seconds):
        while True:
            raw = await ws.recv()
            if wanted(orjson.loads(raw)):
                return raw


async def test_a_fan_out_gives_every_recipient_the_same_bytes_and_frames_of_every_size_arrive_whole(
    start_hub,
):
    """Job events go to the submitter and each matching notification subscriber as one encoded
    frame (the same bytes); the transport frames them itself: headers of 1, 3 and 9 bytes
    (payloads under 126 bytes, under 64 KiB, above) all reach a standard client whole."""
    hub = await start_hub()
    url, opened = hub.url, []
    try:
        client = await _raw(
            url, "register_client", "client_registered", client_type="job_client", client_id="c"
        )
        monitors = []
        for name in ("m1", "m2"):
            monitor = await _raw(
                url, "register_client", "client_registered",
                client_type="monitor", client_id=name, permissions=["view_all_jobs"],
            )  # fmt: skip
            await monitor.send(
                protocol.encode(
                    protocol.make(protocol.MESSAGE_CLASSES["subscribe_job_notifications"])
                ).decode()
            )
            await _until(monitor, lambda f: f["type"] == "job_notifications_subscribed")
            monitors.append(monitor)
        worker = await _raw(
            url, "register_worker", "worker_registered",
            worker_id="w-fan", capabilities={"services": ["comfyui"]}, subscribe_to_jobs=False,
        )  # fmt: skip
        opened += [client, *monitors, worker]
        big = "x" * 70_000  # job_assigned over 64 KiB: a 9-byte header
        await client.send(
            protocol.encode(
                protocol.make(protocol.MESSAGE_CLASSES["submit_job"], job_type="t", payload={"p": big})
            ).decode()
        )
        job_id = orjson.loads(await _until(client, lambda f: f["type"] == "job_accepted"))["job_id"]
        for peer in monitors:  # the queued job_update reached the monitors (not the submitter)
            await _until(peer, lambda f: f.get("job_id") == job_id and f.get("status") == "queued")
        claim = protocol.make(protocol.MESSAGE_CLASSES["claim_job"], worker_id="w-fan", max_jobs=1)
        await worker.send(protocol.encode(claim).decode())
        assigned = orjson.loads(await _until(worker, lambda f: f["type"] == "job_assigned"))
        assert assigned["payload"] == {"p": big}
        seen = [await _until(p, lambda f: f.get("status") == "assigned") for p in (client, *monitors)]
        assert seen[0] == seen[1] == seen[2] and orjson.loads(seen[0])["job_id"] == job_id
        result = {"success": True, "text": "y" * 1000}  # a 3-byte header
        done = protocol.make(
            protocol.MESSAGE_CLASSES["complete_job"], job_id=job_id, worker_id="w-fan", result=result
        )
        await worker.send(protocol.encode(done).decode())
        ack = await _until(worker, lambda f: f["type"] == "job_completed_ack")  # a 2-byte header
        assert len(ack.encode()) < 126 and orjson.loads(ack)["job_id"] == job_id
        finals = [await _until(p, lambda f: f["type"] == "job_completed") for p in (client, *monitors)]
        assert finals[0] == finals[1] == finals[2] and orjson.loads(finals[0])["result"] == result
    finally:
        for ws in opened:
            await ws.close()


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
