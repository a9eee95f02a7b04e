"""Start a real hub (``empq hub``, embedded Redis) on a free port, run the conformance suite
against it, stop the hub; exit with the suite's exit code.  Used by ``tox -e conformance``.

    python tools/run_conformance.py [--no-auth] [--transport picows] [suite options, e.g. --report DIR]

(``tox -e conformance -- --transport picows`` runs the suite against the picows I/O layer.)

By default the hub is started with one token per role and the suite is given them, so the auth
cases run too; ``--no-auth`` runs an open hub (the auth cases are then skipped).  Both processes
run with ``python -P`` so the installed package is used, not the source folders of the checkout.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, hub: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if hub.poll() is not None:
            raise RuntimeError(f"the hub exited with code {hub.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"the hub did not listen on port {port} within {timeout:g} s")


def stop(hub: subprocess.Popen[bytes]) -> None:
    if hub.poll() is None:
        hub.send_signal(signal.SIGTERM)
        try:
            hub.wait(15)
        except subprocess.TimeoutExpired:
            hub.kill()
            hub.wait(5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--no-auth", action="store_true", help="run the hub without tokens")
    parser.add_argument("--transport", help="the hub's WebSocket I/O layer: websockets | picows")
    args, suite_args = parser.parse_known_args(argv)
    port = free_port()
    env = dict(os.environ, EMPQ_LOG_LEVEL="warning")
    if args.transport:
        env["EMPQ_TRANSPORT"] = args.transport
    token_args: list[str] = []
    if not args.no_auth:
        tokens = {role: f"{role}-{secrets.token_hex(8)}" for role in ("client", "worker", "monitor")}
        for role, token in tokens.items():
            env[f"EMPQ_{role.upper()}_TOKENS"] = token
            token_args += [f"--{role}-token", token]
    with tempfile.TemporaryDirectory(prefix="empq-conformance-") as tmp:
        log_path = Path(tmp) / "hub.log"
        with log_path.open("wb") as log:
            command = [
                sys.executable,
                "-P",
                "-m",
                "empq.cli",
                "hub",
                "--host",
                "127.0.0.1",
                "--ws-port",
                str(port),
            ]
            hub = subprocess.Popen(
                [*command, "--data-dir", str(Path(tmp) / "data")], env=env, stdout=log, stderr=log
            )
            try:
                try:
                    wait_for_port(port, hub)
                except RuntimeError as exc:
                    print(
                        f"run_conformance: {exc}\n{log_path.read_text(errors='replace')[-4000:]}",
                        file=sys.stderr,
                    )
                    return 2
                url = f"ws://127.0.0.1:{port}"
                print(f"run_conformance: hub on {url} ({'tokens' if token_args else 'open'})", flush=True)
                suite = [sys.executable, "-P", "-m", "empq.cli", "conformance", url, *token_args, *suite_args]
                return subprocess.call(suite)
            finally:
                stop(hub)


if __name__ == "__main__":
    sys.exit(main())
