"""``empq hub --processes N``: N hub processes on one port, so one command uses a machine's cores.

Each child is a whole hub (its own event loop, core and id) listening on ``ws_port`` with
SO_REUSEPORT (Linux): the kernel spreads new connections over them. They share one Redis, as
hubs on one Redis always can (the bus carries job events between them, the registry knows every
worker), so a client on one process learns of its job run by a worker on another.

* The port is reserved by the supervisor (a socket bound with SO_REUSEPORT that never listens),
  so ``--ws-port 0`` means one free port for all, and a restarted child gets the same one back.
* Without ``--redis-url`` the supervisor starts the embedded redis-server on ``data_dir`` first
  and stops it last; the children use it as hubs sharing a data dir do (``embedded_redis.py``),
  and any of them starts it again if it dies.
* Only the first child serves the HTTP API (REST, dashboard, /metrics) on ``http_port``: the
  API's answers come from Redis and are the same from any child, and Prometheus keeps one stable
  series; /metrics counts that child's frames and messages (the job and queue figures are whole).
* A child that dies is started again (its workers reconnect to the others meanwhile); one that
  exits by itself soon after its first start stops everything (a bad setting, a port in use);
  one killed by a signal then (kill -9, the OOM killer) is started again like any other. SIGTERM or SIGINT to
  the supervisor: every child says ``server_disconnect`` to its peers and stops; then Redis.

Children get their settings as ``EMPQ_*`` variables (the resolved settings, flags included, so
tokens never appear in ``ps``), each with ``processes=1``, ``reuse_port`` and its own ``hub_id``
(``<hub_id>-<n>`` when one is set).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from empq.hub.config import HubConfig

log = logging.getLogger("empq.hub.supervisor")

FIRST_START_S = 3.0  # a child that exits sooner on its first start: the hub cannot start at all
STOP_TIMEOUT_S = 30.0  # children that have not stopped by then after SIGTERM are killed


def child_env(config: HubConfig, index: int, port: int, env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of child ``index``: the parent's, with every setting as ``EMPQ_*``."""
    out = dict(os.environ if env is None else env)
    for f in fields(HubConfig):
        value: Any = getattr(config, f.name)
        if value is None:
            value = ""
        elif isinstance(value, bool):
            value = "1" if value else "0"
        out[HubConfig.ENV_PREFIX + f.name.upper()] = str(value)
    overrides = {
        "processes": "1",
        "reuse_port": "1",
        "ws_port": str(port),
        "http_port": str(config.http_port) if index == 0 else "-1",
        "hub_id": f"{config.hub_id}-{index}" if config.hub_id else "",
    }
    for name, value in overrides.items():
        out[HubConfig.ENV_PREFIX + name.upper()] = value
    return out


def reserve_port(host: str, port: int) -> socket.socket:
    """A socket bound to host:port with SO_REUSEPORT that never listens: the port stays this
    group's (nobody without SO_REUSEPORT can take it) and ``port`` 0 becomes one free port."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


@dataclass
class Child:
    index: int
    proc: subprocess.Popen[bytes]
    started: float
    starts: int = 1
    backoff: float = 0.5


class Supervisor:
    def __init__(self, config: HubConfig, python: str = sys.executable) -> None:
        self.config = config
        self.python = python
        self.children: list[Child] = []
        self.stopping = threading.Event()
        self.port = 0
        self.restarts = 0

    def spawn(self, index: int) -> subprocess.Popen[bytes]:
        # -P: never the current directory first on sys.path (a checkout's empq/ is only part of it)
        return subprocess.Popen(
            [self.python, "-P", "-m", "empq", "hub"],
            env=child_env(self.config, index, self.port),
            stdin=subprocess.DEVNULL,
        )

    def run(self) -> int:
        config = self.config
        if not hasattr(socket, "SO_REUSEPORT"):
            log.error("--processes needs SO_REUSEPORT (Linux, BSD); run one hub per port instead")
            return 2
        try:
            reservation = reserve_port(config.host, config.ws_port)
        except OSError as exc:
            log.error("cannot listen on %s:%d: %s", config.host, config.ws_port, exc.strerror)
            return 1
        self.port = int(reservation.getsockname()[1])
        embedded = None
        if not config.redis_url:
            from empq.hub.embedded_redis import EmbeddedRedis

            embedded = EmbeddedRedis(Path(config.data_dir))
            try:
                url = embedded.start()
            except RuntimeError as exc:
                reservation.close()
                log.error("%s", exc)
                return 1
            log.info("embedded redis-server on %s for %d hub processes", url, config.processes)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stopping.set())
        try:
            return self._supervise()
        finally:
            self._stop_children()
            if embedded is not None:
                embedded.stop()
            reservation.close()

    def _supervise(self) -> int:
        now = time.monotonic()
        self.children = [Child(i, self.spawn(i), now) for i in range(self.config.processes)]
        log.info(
            "supervising %d hub processes on ws://%s:%d (pids %s)",
            len(self.children),
            self.config.host,
            self.port,
            ", ".join(str(c.proc.pid) for c in self.children),
            extra={"event": "supervising", "port": self.port},
        )
        while not self.stopping.wait(0.2):
            for child in self.children:
                code = child.proc.poll()
                if code is None:
                    continue
                up = time.monotonic() - child.started
                if child.starts == 1 and up < FIRST_START_S and code >= 0:  # killed by a signal: restart
                    log.error("hub process %d exited with %s while starting: stopping", child.index, code)
                    return code or 1
                if up > 30:
                    child.backoff = 0.5
                log.warning(
                    "hub process %d (pid %d) exited with %s after %.0f s; starting it again in %.1f s",
                    child.index,
                    child.proc.pid,
                    code,
                    up,
                    child.backoff,
                    extra={"event": "child_restarted"},
                )
                if self.stopping.wait(child.backoff):
                    break
                child.proc = self.spawn(child.index)
                child.started, child.starts = time.monotonic(), child.starts + 1
                child.backoff = min(10.0, child.backoff * 2)
                self.restarts += 1
        return 0

    def _stop_children(self) -> None:
        """SIGTERM to every child (each tells its peers server_disconnect), then wait; kill late ones."""
        alive = [c.proc for c in self.children if c.proc.poll() is None]
        if alive:
            log.info("stopping %d hub processes", len(alive), extra={"event": "stopping"})
        for proc in alive:
            proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for proc in alive:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("hub process pid %d did not stop in %.0f s: killed", proc.pid, STOP_TIMEOUT_S)
                proc.kill()
                proc.wait()


def supervise(config: HubConfig) -> int:
    return Supervisor(config).run()
