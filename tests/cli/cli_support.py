"""Running the real ``empq`` command in tests: subprocesses (exit code, stdout, stderr), long-running
ones whose output is read as it comes, pseudo-terminals (rich sees a real terminal), and the
modules a command loads. Every wait is bounded."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import pty
import re
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import waiting

COMMANDS = ("worker", "submit", "status", "cancel", "watch")
REQUIREMENTS = '{"service_type":"comfyui","component":"text-to-image-xl","hardware":{"gpu_memory_gb":8}}'


def empq_command() -> list[str]:
    script = Path(sys.executable).with_name("empq")
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-P", "-c", "import sys; from empq.cli import main; sys.exit(main())"]


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMPQ_")}
    env.update(COLUMNS="80", LINES="24", PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


def cli_env(hub: Any) -> dict[str, str]:
    """The environment of CLI calls against ``hub`` as one client of their own."""
    return clean_env(EMPQ_HUB=hub.url, EMPQ_CLIENT_ID=f"cli-{uuid.uuid4().hex[:6]}")


def free_port() -> int:
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def closed_hub() -> str:
    """A hub URL nothing listens on."""
    return f"ws://127.0.0.1:{free_port()}"


@dataclass
class Run:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


async def empq(*args: str, env: dict[str, str] | None = None, timeout: float = 30) -> Run:
    proc = await asyncio.create_subprocess_exec(
        *empq_command(),
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env or clean_env(),
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(f"empq {' '.join(args)} still running after {timeout} s") from None
    assert proc.returncode is not None
    return Run(proc.returncode, out.decode(), err.decode())


def one_line_error(run: Run, code: int = 2) -> str:
    """The run failed with ``code`` and said why on exactly one line of stderr (no traceback)."""
    assert run.code == code, run
    lines = run.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in run.err, run.err
    return lines[0]


async def until(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    return await waiting.until(predicate, timeout, what, step=0.05)


class Proc:
    """A long-running ``empq`` process whose stdout lines are collected as they come."""

    def __init__(self, proc: asyncio.subprocess.Process, name: str) -> None:
        self.proc = proc
        self.name = name
        self.lines: list[str] = []
        self.reader = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def start(cls, name: str, *args: str, env: dict[str, str]) -> Proc:
        proc = await asyncio.create_subprocess_exec(
            *empq_command(),
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=env,
        )
        return cls(proc, name)

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            self.lines.append(line.decode().rstrip("\n"))

    def events(self) -> list[dict[str, Any]]:
        out = []
        for line in self.lines:
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
        return out

    async def stop(self, sig: int = signal.SIGTERM, timeout: float = 10) -> int:
        if self.proc.returncode is None:
            self.proc.send_signal(sig)
        try:
            code = await asyncio.wait_for(self.proc.wait(), timeout)
        except TimeoutError:
            self.proc.kill()
            code = await self.proc.wait()
        await self.reader
        return code


class Terminal:
    """An ``empq`` command in a pseudo-terminal of ``columns`` columns (rich sees a real terminal),
    its output read as it comes, so a test waits for what it expects on screen."""

    def __init__(self, args: Sequence[str], env: dict[str, str], columns: int = 100) -> None:
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, columns, 0, 0))
        self.proc = subprocess.Popen(
            [*empq_command(), *args],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env={**env, "TERM": "xterm-256color", "COLUMNS": str(columns)},
            close_fds=True,
        )
        os.close(slave)
        self.master = master
        self.chunks: list[bytes] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self.master, 65536)
            except OSError:  # EIO: the child closed the terminal
                return
            if not data:
                return
            self.chunks.append(data)

    def raw(self) -> str:
        return b"".join(self.chunks).decode("utf-8", "replace")

    def text(self) -> str:
        return plain(self.raw())

    async def shows(self, *texts: str, timeout: float = 30) -> None:
        """Wait until every one of ``texts`` has appeared on the screen."""
        await until(lambda: all(t in self.text() for t in texts), timeout, f"{texts} on the screen")

    def interrupt(self) -> None:
        """Ctrl-C."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)

    def finish(self, timeout: float = 30) -> tuple[int, str]:
        """Wait for the command to end (killed after ``timeout``): exit code, everything shown."""
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self.reader.join(timeout)
        os.close(self.master)
        return code, self.raw()


def pty_run(
    args: Sequence[str], env: dict[str, str], columns: int = 100, timeout: float = 30
) -> tuple[int, str]:
    """Run to the end in a pseudo-terminal: exit code, everything shown."""
    return Terminal(args, env, columns).finish(timeout)


def plain(screen: str) -> str:
    """Terminal output without escape sequences and carriage returns."""
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen)
    return text.replace("\r\n", "\n").replace("\r", "\n")


# --- what a command loads ---------------------------------------------------------------------------

HEAVY = (
    "empq.generated.envelopes",  # every message model at once
    "empq.hub",
    "empq.conformance",
    "websockets",
    "redis",
    "hiredis",
    "starlette",
    "uvicorn",
    "rich",
    "jsonschema",
    "yaml",
    "prometheus_client",
)
"""Modules that ``empq --version`` and parsing a client command's arguments must not load."""

_MODULES_SCRIPT = """
import json, sys
out, argv = sys.argv[1], sys.argv[2:]
from empq.cli import main, parse_args
try:
    if argv[0] == "--parse-only":
        parse_args(argv[1:])
        code = 0
    else:
        code = main(argv)
except SystemExit as exc:
    code = exc.code
with open(out, "w") as f:
    json.dump({"code": code, "modules": sorted(sys.modules)}, f)
"""


def modules_of(*argv: str, env: dict[str, str] | None = None) -> tuple[int, set[str]]:
    """Run ``empq argv`` (``--parse-only ...``: only parse the arguments) in a fresh interpreter:
    its exit code and every module it had loaded at the end."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "modules.json"
        run = subprocess.run(  # -P: the installed package, not the checkout's source folders
            [sys.executable, "-P", "-c", _MODULES_SCRIPT, str(out), *argv],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
            env=env or clean_env(),
            check=False,
        )
        assert out.is_file(), run.stderr
        data = json.loads(out.read_text())
    return int(data["code"] or 0), set(data["modules"])


def heavy_in(modules: set[str]) -> list[str]:
    """The ``HEAVY`` modules (or their submodules) among ``modules``."""
    return sorted(m for m in modules if any(m == h or m.startswith(f"{h}.") for h in HEAVY))


def messages_in(modules: set[str]) -> set[str]:
    """The message types whose generated models were imported."""
    prefix = "empq.generated.messages."
    return {m[len(prefix) :] for m in modules if m.startswith(prefix)}
