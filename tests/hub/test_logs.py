"""hub/logs.py: the hub's log names what happened and to whom, as text or one JSON object a line;
the libraries' per-connection lines stay out of it (a real `empq hub` process, real sockets)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from empq.conformance.peer import Peer

START = 20.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def run_a_day(url: str, worker_token: str = "", client_token: str = "") -> None:
    """Register a worker and a client, run a job to completion, fail a registration, say goodbye."""
    worker = await Peer.connect(url, "w")
    await worker.expect("connection_established")
    await worker.request(
        "register_worker",
        "worker_registered",
        worker_id="gpu-log",
        capabilities={"services": ["comfyui"]},
        **({"auth_token": worker_token} if worker_token else {}),
    )
    if client_token:  # one that fails first
        stranger = await Peer.connect(url, "s")
        await stranger.expect("connection_established")
        await stranger.request(
            "register_client", "client_registered", client_type="job_client", client_id="nope"
        )
    client = await Peer.connect(url, "c")
    await client.expect("connection_established")
    await client.request(
        "register_client",
        "client_registered",
        client_type="job_client",
        client_id="app-log",
        **({"auth_token": client_token} if client_token else {}),
    )
    job = await client.request("submit_job", "job_accepted", job_type="upscale", payload={})
    await worker.request("claim_job", "job_assigned", worker_id="gpu-log")
    await worker.request(
        "complete_job",
        "job_completed_ack",
        job_id=job["job_id"],
        worker_id="gpu-log",
        result={"success": True},
    )
    await client.expect("job_completed")
    await worker.send("disconnect", reason="maintenance")
    await worker.closed(timeout=3)
    await client.close()


def hub_log(tmp_path: Path, *flags: str, env: dict[str, str] | None = None, **tokens: str) -> str:
    port = free_port()
    log = tmp_path / "hub.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "empq", "hub", "--ws-port", str(port), "--http-port", "-1", *flags],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
            env={**{k: v for k, v in os.environ.items() if not k.startswith("EMPQ_")}, **(env or {})},
        )
        try:
            deadline = time.monotonic() + START
            while "using Redis at" not in log.read_text(errors="replace"):
                assert proc.poll() is None and time.monotonic() < deadline, log.read_text(errors="replace")
                time.sleep(0.05)
            asyncio.run(run_a_day(f"ws://127.0.0.1:{port}", **tokens))
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(10)
    return log.read_text(errors="replace")


def test_json_log_has_an_object_per_line_with_the_events_and_their_fields(tmp_path):
    text = hub_log(tmp_path, "--log-format", "json", "--data-dir", str(tmp_path / "data"))
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    events = {(r.get("event"), r.get("role") or r.get("status")) for r in lines}
    for expected in [
        ("started", None),
        ("registered", "worker"),
        ("registered", "job_client"),
        ("job_final", "completed"),
        ("disconnected", "worker"),
        ("stopped", None),
    ]:
        assert expected in events, (expected, events)
    worker = next(r for r in lines if r.get("event") == "registered" and r.get("role") == "worker")
    assert worker["peer_id"] == "gpu-log" and worker["address"].startswith("127.0.0.1:")
    final = next(r for r in lines if r.get("event") == "job_final")
    assert (final["job_type"], final["worker_id"]) == ("upscale", "gpu-log")
    assert all({"ts", "level", "logger", "message"} <= r.keys() for r in lines)
    assert not [r for r in lines if "connection open" in r["message"] or "connection closed" in r["message"]]


def test_text_log_names_peers_and_auth_failures_not_connections(tmp_path):
    tokens = {"EMPQ_CLIENT_TOKENS": "ct", "EMPQ_WORKER_TOKENS": "wt"}
    text = hub_log(
        tmp_path, "--data-dir", str(tmp_path / "data"), env=tokens, worker_token="wt", client_token="ct"
    )
    assert "settings: 2 token(s)" in text
    assert "worker gpu-log registered from 127.0.0.1:" in text
    assert "authentication failed: job_client nope from 127.0.0.1:" in text  # no token given
    assert "connection open" not in text and "connection closed" not in text
    assert "stopped after" in text
