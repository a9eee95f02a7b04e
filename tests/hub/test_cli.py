"""The real ``empq hub`` command in a subprocess: embedded redis-server, persistence across
restarts, clean failures (port taken, Redis unreachable), configuration by environment and flags,
help text.

Every wait is bounded and every hub process is killed in a ``finally``; the hub listens on
127.0.0.1 only, on ports picked by binding to port 0 first.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest
from empq.conformance.peer import Peer

START_TIMEOUT = 15.0  # hub + embedded redis-server up and listening
STOP_TIMEOUT = 5.0  # SIGTERM to exit
RUN_TIMEOUT = 20.0  # a command expected to fail (or print help) and exit on its own


def empq_command() -> list[str]:
    """The ``empq`` console script installed next to this interpreter, else its entry point."""
    script = Path(sys.executable).with_name("empq")
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-c", "import sys; from empq.cli import main; sys.exit(main())"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any EMPQ_* variable (tox passes them through), plus extra."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMPQ_")}
    env.update(extra)
    return env


def is_listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def redis_answers(sock: Path) -> bool:
    """Does something on this unix socket answer PING?"""
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(0.5)
            s.connect(str(sock))
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def redis_pids(data_dir: Path) -> list[int]:
    """redis-server processes whose command line (proc title) names this data dir (Linux /proc)."""
    found = []
    needle = str(data_dir.resolve())
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "redis-server" in cmdline and needle in cmdline:
            found.append(int(entry.name))
    return found


def kill_redis(data_dir: Path) -> None:
    """Kill a redis-server a failed test left behind for this data dir (by its pid)."""
    for pid in redis_pids(data_dir):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def assert_redis_gone(data_dir: Path) -> None:
    sock = data_dir.resolve() / "redis.sock"
    deadline = time.monotonic() + STOP_TIMEOUT
    while time.monotonic() < deadline:
        if not redis_pids(data_dir) and not redis_answers(sock):
            return
        time.sleep(0.05)
    raise AssertionError(f"redis-server still running for {data_dir}: pids {redis_pids(data_dir)}")


class Hub:
    """One ``empq hub`` process; stdout and stderr go to a log file read by the test.

    ``data_dir``: where its embedded redis-server lives, so ``cleanup`` can stop one a killed hub
    left behind (the hub starts it in a new session; a SIGKILLed hub cannot stop it).
    ``command``: what runs ``empq`` (default: the installed command).
    """

    def __init__(
        self,
        args: Sequence[str],
        log: Path,
        env: dict[str, str] | None = None,
        data_dir: Path | None = None,
        command: Sequence[str] | None = None,
    ) -> None:
        self.log = log
        self.data_dir = data_dir
        self._out = open(log, "wb")  # closed in cleanup()
        self.proc = subprocess.Popen(
            [*(command or empq_command()), "hub", *args],
            stdin=subprocess.DEVNULL,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            env=env if env is not None else clean_env(),
            cwd=log.parent,  # a default data dir (.empq) would land in the test's tmp dir
        )

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_listening(self, port: int, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"hub exited with {self.proc.returncode}:\n{self.text()}")
            if is_listening(port) and "using Redis at" in self.text():
                return
            time.sleep(0.05)
        raise AssertionError(f"hub not listening on {port} within {timeout} s:\n{self.text()}")

    def terminate(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM; the exit code (fails if the hub does not exit within ``timeout``)."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"hub still running {timeout} s after SIGTERM:\n{self.text()}") from None

    def cleanup(self) -> None:
        """Whatever happened: the hub gone (SIGTERM, then SIGKILL), no redis-server left for its data."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(STOP_TIMEOUT)
        self._out.close()
        if self.data_dir is not None:
            kill_redis(self.data_dir)


@contextmanager
def running_hub(
    args: Sequence[str],
    log: Path,
    port: int,
    env: dict[str, str] | None = None,
    data_dir: Path | None = None,
) -> Iterator[Hub]:
    hub = Hub(args, log, env, data_dir)
    try:
        hub.wait_listening(port)
        yield hub
    finally:
        hub.cleanup()


def run_empq(
    args: Sequence[str], env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*empq_command(), *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        env=env if env is not None else clean_env(),
        cwd=cwd,
    )


def redis_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if "using Redis at" in line]


async def connect(port: int, name: str) -> Peer:
    peer = await Peer.connect(f"ws://127.0.0.1:{port}", name, timeout=5.0)
    await peer.expect("connection_established")
    return peer


async def register_client(peer: Peer, client_id: str) -> None:
    reply = await peer.request(
        "register_client", "client_registered", client_type="job_client", client_id=client_id
    )
    assert reply["type"] == "client_registered", reply


# --- the embedded redis-server -----------------------------------------------------------------


async def test_embedded_redis_start_connect_and_sigterm(tmp_path):
    data_dir = tmp_path / "data"
    port = free_port()
    hub = Hub(["--data-dir", str(data_dir), "--ws-port", str(port)], tmp_path / "hub.log", data_dir=data_dir)
    try:
        hub.wait_listening(port)
        (line,) = redis_lines(hub.text())  # exactly one line says which Redis
        assert "embedded redis-server" in line, line
        assert str(data_dir.resolve()) in line, line
        assert redis_pids(data_dir), "no redis-server process for the data dir"
        assert redis_answers(data_dir / "redis.sock")

        peer = await Peer.connect(f"ws://127.0.0.1:{port}", "cli", timeout=5.0)
        try:
            established = await peer.expect("connection_established")
            assert established["type"] == "connection_established"
        finally:
            await peer.close()

        assert hub.terminate() == 0, hub.text()
        assert not is_listening(port)
        assert_redis_gone(data_dir)
    finally:
        hub.cleanup()
    assert "Traceback" not in hub.text()


async def test_jobs_persist_across_restarts(tmp_path):
    data_dir = tmp_path / "data"
    port = free_port()
    args = ["--data-dir", str(data_dir), "--ws-port", str(port)]

    hub = Hub(args, tmp_path / "first.log", data_dir=data_dir)
    try:
        hub.wait_listening(port)
        client = await connect(port, "before")
        try:
            await register_client(client, "persist-client")
            accepted = await client.request(
                "submit_job", "job_accepted", job_type="text_to_image", payload={"prompt": "lake"}
            )
            assert accepted["type"] == "job_accepted" and accepted["status"] == "queued", accepted
            job_id = accepted["job_id"]
        finally:
            await client.close()
        assert hub.terminate() == 0, hub.text()
    finally:
        hub.cleanup()
    assert_redis_gone(data_dir)
    assert (data_dir / "appendonly.aof").is_file()

    with running_hub(args, tmp_path / "second.log", port, data_dir=data_dir) as hub:
        client = await connect(port, "after")
        try:
            await register_client(client, "persist-client")  # same client: the job is visible to it
            status = await client.request("request_job_status", "response_job_status", job_id=job_id)
            assert status["type"] == "response_job_status", status
            assert status["job_id"] == job_id and status["status"] == "queued", status
        finally:
            await client.close()
        assert hub.terminate() == 0, hub.text()
    assert_redis_gone(data_dir)


# --- failures: one clear line, no traceback ------------------------------------------------------


def test_port_already_taken(tmp_path):
    data_dir = tmp_path / "data"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        try:
            result = run_empq(["hub", "--ws-port", str(port), "--data-dir", str(data_dir)])
        finally:
            gone = not redis_pids(data_dir)
            kill_redis(data_dir)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if "cannot listen" in line]
    assert len(errors) == 1, result.stderr
    assert f"127.0.0.1:{port}" in errors[0], errors[0]
    assert (data_dir / "appendonly.aof").is_file()  # it did start the embedded redis-server...
    assert gone, "redis-server left running after the failed start"  # ...and stopped it
    assert not redis_answers(data_dir / "redis.sock")


def test_redis_unreachable(tmp_path):
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    result = run_empq(["hub", "--redis-url", url, "--ws-port", str(free_port())], cwd=tmp_path)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if "cannot reach Redis" in line]
    assert len(errors) == 1, result.stderr
    assert url in errors[0], errors[0]
    assert not (tmp_path / ".empq").exists()  # with a Redis URL no embedded data dir is made


# --- configuration: environment, flags win ---------------------------------------------------------


def test_config_from_environment(tmp_path):
    data_dir = tmp_path / "env-data"
    port = free_port()
    env = clean_env(EMPQ_WS_PORT=str(port), EMPQ_DATA_DIR=str(data_dir))
    with running_hub([], tmp_path / "hub.log", port, env, data_dir) as hub:
        assert f"listening on ws://127.0.0.1:{port}" in hub.text()
        (line,) = redis_lines(hub.text())
        assert str(data_dir.resolve()) in line, line
        assert redis_answers(data_dir / "redis.sock")
        assert hub.terminate() == 0, hub.text()
    assert_redis_gone(data_dir)


def test_flags_override_environment(tmp_path):
    env_dir, flag_dir = tmp_path / "env-data", tmp_path / "flag-data"
    env_port, flag_port = free_port(), free_port()
    env = clean_env(EMPQ_WS_PORT=str(env_port), EMPQ_DATA_DIR=str(env_dir))
    args = ["--ws-port", str(flag_port), "--data-dir", str(flag_dir)]
    with running_hub(args, tmp_path / "hub.log", flag_port, env, flag_dir) as hub:
        assert f"listening on ws://127.0.0.1:{flag_port}" in hub.text()
        assert not is_listening(env_port)
        (line,) = redis_lines(hub.text())
        assert str(flag_dir.resolve()) in line, line
        assert not env_dir.exists()
        assert hub.terminate() == 0, hub.text()
    assert_redis_gone(flag_dir)


def test_help():
    top = run_empq(["--help"])
    assert top.returncode == 0, top.stderr
    assert "hub" in top.stdout
    hub = run_empq(["hub", "--help"])
    assert hub.returncode == 0, hub.stderr
    for option in ("--ws-port", "--redis-url", "--data-dir", "EMPQ_WS_PORT"):
        assert option in hub.stdout, option


@pytest.mark.parametrize("module", ["empq", "empq.cli"])
def test_python_dash_m(module, tmp_path):
    """``python -m empq`` and ``python -m empq.cli`` run the same CLI, with its commands registered.

    Run outside the checkout: there the source folder ``empq/`` (without ``hub/``, which is
    installed as ``empq.hub``) would shadow the installed package."""
    result = subprocess.run(
        [sys.executable, "-m", module, "hub", "--help"],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        env=clean_env(),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "--ws-port" in result.stdout


# --- an external Redis ------------------------------------------------------------------------------


async def test_external_redis_url(tmp_path):
    from empq.hub.embedded_redis import EmbeddedRedis

    redis_port = free_port()
    external = EmbeddedRedis(tmp_path / "external", port=redis_port)
    url = external.start()
    assert url == f"redis://127.0.0.1:{redis_port}/0"
    try:
        port = free_port()
        with running_hub(["--redis-url", url, "--ws-port", str(port)], tmp_path / "hub.log", port) as hub:
            (line,) = redis_lines(hub.text())
            assert url in line and "embedded" not in line, line
            peer = await connect(port, "external")
            await peer.close()
            assert hub.terminate() == 0, hub.text()
        # the hub does not stop a Redis it did not start
        assert redis_answers(tmp_path / "external" / "redis.sock")
    finally:
        external.stop()


# --- regressions: settings errors, shared data dir, a signal during start-up -------------------------


@pytest.mark.parametrize(
    ("args", "env", "says"),
    [
        (["--ws-port", "70000"], {}, "not a port"),
        ([], {"EMPQ_WS_PORT": "abc"}, "EMPQ_WS_PORT"),
        (["--data-dir", "/proc/empq-nope"], {}, "cannot use data dir"),
    ],
)
def test_bad_settings_get_one_line_errors(tmp_path, args, env, says):
    result = run_empq(["hub", *args], env=clean_env(**env), cwd=tmp_path)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    assert says in result.stderr, result.stderr


async def test_hubs_sharing_a_data_dir_keep_redis_until_the_last_stops(tmp_path):
    data_dir = tmp_path / "shared"
    port_a, port_b = free_port(), free_port()
    with running_hub(["--ws-port", str(port_a), "--data-dir", str(data_dir)], tmp_path / "a.log", port_a,
                     data_dir=data_dir) as hub_a:  # fmt: skip
        with running_hub(
            ["--ws-port", str(port_b), "--data-dir", str(data_dir)], tmp_path / "b.log", port_b
        ) as hub_b:
            assert hub_a.terminate() == 0
            assert redis_answers(data_dir / "redis.sock")  # hub B still uses it
            peer = await connect(port_b, "after-a")
            try:
                await register_client(peer, "still-works")
                reply = await peer.request("submit_job", "job_accepted", job_type="t", payload={})
                assert reply["type"] == "job_accepted", reply
            finally:
                await peer.close()
            assert hub_b.terminate() == 0
        assert not redis_answers(data_dir / "redis.sock")  # the last one out stopped it


def process_state(pid: int) -> str:
    """The state letter of a process (``T``: stopped), from /proc (Linux)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0]


# empq with the embedded redis-server binary replaced (test only): $REDIS_SERVER_FOR_TEST
WITH_REDIS_SERVER = [
    sys.executable,
    "-P",
    "-c",
    "import os, sys, empq.hub.embedded_redis as embedded\n"
    "embedded.redis_server_binary = lambda: os.environ['REDIS_SERVER_FOR_TEST']\n"
    "from empq.cli import main\n"
    "sys.exit(main())",
]


def test_sigterm_during_start_leaves_no_redis(tmp_path):
    """SIGTERM while the hub is starting, its embedded redis-server launched but not answering yet:
    the hub stops starting (never listens), stops that redis-server and exits 0.

    The start is held there deterministically, not by timing: the hub runs a wrapper that stops
    itself (SIGSTOP) before exec'ing the real redis-server, and the test lets it go on (SIGCONT)
    only once the SIGTERM has been sent."""
    from empq.hub.embedded_redis import redis_server_binary

    wrapper = tmp_path / "bin" / "redis-server"  # its command line names redis-server and the data dir
    wrapper.parent.mkdir()
    wrapper.write_text(f'#!/bin/sh\nkill -STOP $$\nexec "{redis_server_binary()}" "$@"\n')
    wrapper.chmod(0o755)
    data_dir = tmp_path / "early"
    port = free_port()
    hub = Hub(
        ["--ws-port", str(port), "--data-dir", str(data_dir)],
        tmp_path / "early.log",
        env=clean_env(REDIS_SERVER_FOR_TEST=str(wrapper)),
        data_dir=data_dir,
        command=WITH_REDIS_SERVER,
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        held = []
        while not held:
            if hub.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the hub never launched its redis-server:\n{hub.text()}")
            held = [pid for pid in redis_pids(data_dir) if process_state(pid) == "T"]
            time.sleep(0.02)
        assert hub.proc.poll() is None and not is_listening(port)  # still starting
        hub.proc.send_signal(signal.SIGTERM)
        os.kill(held[0], signal.SIGCONT)  # the real redis-server starts, the hub goes on and sees the signal
        assert hub.proc.wait(START_TIMEOUT) == 0, hub.text()
        assert "stopped while starting" in hub.text()
        assert "listening on" not in hub.text() and not is_listening(port)
        assert (data_dir / "appendonly.aof").is_file()  # the real redis-server did run
        assert_redis_gone(data_dir)
    finally:
        hub.cleanup()
