"""Start a real hub (embedded Redis, free ports) and run schemathesis against its HTTP API.

    python tools/run_schemathesis.py [--max-examples N] [--report DIR] [extra schemathesis args]

Every operation of the served ``/openapi.json`` is exercised (examples, coverage, fuzzing and the
stateful phase that follows the document's links: submit -> get / cancel).  Checks: all of
schemathesis' except ``positive_data_acceptance``: JSON Schema cannot tell ``43.0`` from ``43``,
while the protocol's models (shared with the WebSocket) refuse a float where an integer is due,
so "schema-valid" bodies such as ``{"priority": 43.0}`` are rightly answered 422.  Exit status:
schemathesis'.  The number of generated test cases is in its summary ("N generated").
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-examples", type=int, default=50)
    parser.add_argument("--report", type=Path, help="directory for the JUnit report")
    args, extra = parser.parse_known_args()
    with tempfile.TemporaryDirectory(prefix="empq-api-") as tmp:
        # the hub's log goes to a file, shown only if something fails: every job schemathesis
        # submits has no worker, so each raises an alert, hundreds of lines of expected noise
        hub_log = (args.report or Path(tmp)) / "hub.log"
        hub_log.parent.mkdir(parents=True, exist_ok=True)
        log_file = open(hub_log, "wb")  # noqa: SIM115 - closed in finally
        http_port, ws_port = free_port(), free_port()
        env = {**os.environ, "EMPQ_LOG_LEVEL": "warning"}
        env.pop("EMPQ_REDIS_URL", None)
        hub = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "empq",
                "hub",
                "--ws-port",
                str(ws_port),
                "--http-port",
                str(http_port),
                "--data-dir",
                str(Path(tmp) / "data"),
            ],
            env=env,
            cwd=tmp,  # not the checkout: its empq/ folder would shadow the installed package
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        base = f"http://127.0.0.1:{http_port}"
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    with urllib.request.urlopen(f"{base}/health", timeout=2) as r:
                        if r.status == 200:
                            break
                except OSError:
                    pass
                if hub.poll() is not None or time.monotonic() > deadline:
                    print(
                        "the hub did not start:", hub_log.read_text(errors="replace")[-3000:], file=sys.stderr
                    )
                    return 2
                time.sleep(0.2)
            command = [
                sys.executable,
                "-m",
                "schemathesis.cli",
                "run",
                f"{base}/openapi.json",
                "--checks",
                "all",
                "--exclude-checks",
                "positive_data_acceptance",
                "--max-examples",
                str(args.max_examples),
                *(["--report", "junit", "--report-dir", str(args.report)] if args.report else []),
                *extra,
            ]
            print("+", " ".join(command), flush=True)
            code = subprocess.call(command, cwd=tmp)
            if code != 0:
                print(f"hub log ({hub_log}), last lines:", file=sys.stderr)
                print(hub_log.read_text(errors="replace")[-5000:], file=sys.stderr)
            else:
                print(f"hub log: {hub_log}")
            return code
        finally:
            hub.terminate()
            try:
                hub.wait(10)
            except subprocess.TimeoutExpired:
                hub.kill()
            log_file.close()


if __name__ == "__main__":
    sys.exit(main())
