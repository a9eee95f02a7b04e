"""hub/supervisor.py: ``empq hub --processes N`` — N hub processes on one port (SO_REUSEPORT) and
one embedded redis-server, a dead child started again, SIGTERM stopping them all (each says
server_disconnect) and then Redis. Real processes, real sockets, every wait bounded."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from empq.conformance.peer import Peer
from empq.hub.config import HubConfig
from empq.hub.supervisor import child_env, reserve_port
from peer_steps import accept, claim_eventually, complete, submit

pytestmark = pytest.mark.skipif(not hasattr(socket, "SO_REUSEPORT"), reason="needs SO_REUSEPORT")

START_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def children_of(pid: int) -> list[int]:
    """The hub processes the supervisor ``pid`` started (not its embedded redis-server)."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split() if "empq" in _cmdline(int(p))]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return ""


def redis_of(data_dir: Path) -> list[int]:
    found = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            cmdline = _cmdline(int(p.name))
            if "redis-server" in cmdline and str(data_dir) in cmdline:
                found.append(int(p.name))
    return found


def test_each_child_gets_the_settings_by_environment_and_its_own_part():
    config = HubConfig(processes=3, hub_id="edge", http_port=3001, client_tokens="secret", ws_port=4000)
    first, second = child_env(config, 0, 4000, env={}), child_env(config, 1, 4000, env={})
    assert first["EMPQ_PROCESSES"] == second["EMPQ_PROCESSES"] == "1"  # a child never supervises
    assert first["EMPQ_REUSE_PORT"] == "1" and first["EMPQ_WS_PORT"] == "4000"
    assert (first["EMPQ_HTTP_PORT"], second["EMPQ_HTTP_PORT"]) == ("3001", "-1")  # only the first: HTTP
    assert (first["EMPQ_HUB_ID"], second["EMPQ_HUB_ID"]) == ("edge-0", "edge-1")
    assert first["EMPQ_CLIENT_TOKENS"] == "secret"  # by environment, never on a command line
    parsed = HubConfig.from_env(second)
    assert (parsed.processes, parsed.reuse_port, parsed.http_port) == (1, True, -1)
    assert parsed.client_tokens == "secret"


def test_a_port_taken_without_reuse_port_stops_the_supervisor(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError):
            reserve_port("127.0.0.1", port)
        done = subprocess.run(
            [sys.executable, "-P", "-m", "empq", "hub", "--processes", "2", "--ws-port", str(port),
             "--http-port", "-1", "--data-dir", str(tmp_path / "data")],
            capture_output=True, timeout=60, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    assert done.returncode == 1, done.stderr[-2000:]
    assert b"cannot listen" in done.stderr
    assert not redis_of(tmp_path / "data")  # it never started Redis, or stopped it


async def connect_registered(url: str, name: str) -> tuple[Peer, str]:
    peer = await Peer.connect(url, name)
    greeting = await peer.expect("connection_established")
    hub_id = greeting["connection_id"].split("-")[1]  # conn-<hub_id>-<incarnation>-<n>
    return peer, hub_id


async def peers_on_each(url: str, want: int, tries: int = 60) -> dict[str, Peer]:
    """Connections until ``want`` different hub processes answered: one peer on each."""
    on: dict[str, Peer] = {}
    for i in range(tries):
        peer, hub_id = await connect_registered(url, f"probe-{i}")
        if hub_id in on:
            await peer.close()
        else:
            on[hub_id] = peer
        if len(on) == want:
            return on
    raise AssertionError(f"only {len(on)} hub process(es) answered in {tries} connections")


async def test_two_processes_share_the_port_restart_a_dead_one_and_stop_together(tmp_path):
    port, data_dir = free_port(), tmp_path / "data"
    env = {**os.environ, "EMPQ_SWEEP_INTERVAL_MS": "50"}
    proc = subprocess.Popen(
        [sys.executable, "-P", "-m", "empq", "hub", "--processes", "2", "--ws-port", str(port),
         "--http-port", "-1", "--data-dir", str(data_dir), "--log-level", "warning"],
        env=env, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"ws://127.0.0.1:{port}"
    opened: list[Peer] = []
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while len(children_of(proc.pid)) < 2 or not _listening(port):
            assert proc.poll() is None and time.monotonic() < deadline, "the hub processes did not start"
            await asyncio.sleep(0.1)
        on = await peers_on_each(url, 2)
        opened += on.values()
        assert len(redis_of(data_dir)) == 1  # one embedded redis-server for both
        # a job submitted on one process is run by a worker on the other
        (hub_a, raw_client), (hub_b, raw_worker) = on.items()
        client_id, worker_id = f"c-{uuid.uuid4().hex[:6]}", f"w-{uuid.uuid4().hex[:6]}"
        reply = await raw_client.request(
            "register_client", "client_registered", client_type="job_client", client_id=client_id
        )
        assert reply["type"] == "client_registered"
        raw_worker.worker_id = worker_id
        reply = await raw_worker.request(
            "register_worker", "worker_registered",
            worker_id=worker_id, capabilities={"services": ["comfyui"]}, subscribe_to_jobs=False,
        )  # fmt: skip
        assert reply["type"] == "worker_registered"
        job_id = (await submit(raw_client, requirements={"service_type": "comfyui"}))["job_id"]
        await claim_eventually(raw_worker, job_id, within=10)
        await accept(raw_worker, job_id)
        assert (await complete(raw_worker, job_id))["type"] == "job_completed_ack"
        done = await raw_client.expect("job_completed", job_id=job_id, timeout=10)
        assert done["worker_id"] == raw_worker.worker_id
        # a child killed with SIGKILL is started again: a third hub id answers on the same port
        victim = children_of(proc.pid)[0]
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + START_TIMEOUT
        seen = set(on)
        while True:
            assert time.monotonic() < deadline, "the dead hub process was not started again"
            alive = children_of(proc.pid)
            if len(alive) == 2 and victim not in alive and _listening(port):
                try:
                    peer, hub_id = await connect_registered(url, "after")
                except Exception:  # noqa: BLE001 - the new child is still starting
                    await asyncio.sleep(0.1)
                    continue
                opened.append(peer)
                if hub_id not in seen:
                    break
            await asyncio.sleep(0.1)
        # SIGTERM: every child tells its peers, exits; then Redis stops; the supervisor exits 0
        survivor = opened[-1]
        proc.send_signal(signal.SIGTERM)
        notice = await survivor.expect("server_disconnect", timeout=15)
        assert notice["reason"]
        assert await asyncio.to_thread(proc.wait, 60) == 0
        deadline = time.monotonic() + 10
        while redis_of(data_dir):
            assert time.monotonic() < deadline, "the embedded redis-server was left running"
            await asyncio.sleep(0.1)
    finally:
        for peer in opened:
            try:
                await asyncio.wait_for(peer.close(), 2)
            except Exception:  # noqa: BLE001 - the hub closed it
                pass
        if proc.poll() is None:
            for child in children_of(proc.pid):
                os.kill(child, signal.SIGKILL)
            proc.kill()
            proc.wait()
        for pid in redis_of(data_dir):
            os.kill(pid, signal.SIGKILL)


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False
