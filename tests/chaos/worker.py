"""A chaos worker: ``tests/proc_worker.py`` (mode ``work``) plus two things the chaos driver needs.

    python tests/chaos/worker.py --url ws://HUB_A --url ws://HUB_B --worker-id ID [--job-ms 20]

- every ``job_assigned`` it receives is logged as ``{"event": "assigned", "job_id": ...}`` before
  the job is worked on (so the driver can check that a worker only ever completed, or was handed
  back through ``resumed_jobs``, jobs it was assigned);
- SIGUSR1 drops the connection abruptly (the TCP transport is aborted: no close frame, no
  ``disconnect``), logged as ``dropped``; the worker then reconnects to the next URL as after any
  drop.

The driver redirects stdout (one JSON line per event, flushed at once) to a file per worker: its
``completed`` lines are the worker's completion acks (``job_completed_ack``).
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests/: proc_worker

import proc_worker  # noqa: E402

_current: list[proc_worker.Conn] = []  # the live connection (at most one)
_original_claim_one = proc_worker.claim_one


class ChaosConn(proc_worker.Conn):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _current[:] = [self]


async def claim_one(conn: proc_worker.Conn) -> dict[str, Any]:
    assigned = await _original_claim_one(conn)
    proc_worker.emit("assigned", job_id=assigned["job_id"])
    return assigned


def drop() -> None:
    if not _current:
        proc_worker.emit("drop_ignored")
        return
    transport = getattr(_current[0].ws, "transport", None)
    if transport is None:
        proc_worker.emit("drop_ignored")
        return
    proc_worker.emit("dropped")
    transport.abort()


def main() -> int:
    original = proc_worker.main_async

    async def run(args: Any) -> int:
        asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, drop)
        return await original(args)

    proc_worker.Conn = ChaosConn  # type: ignore[misc]
    proc_worker.claim_one = claim_one
    proc_worker.main_async = run  # type: ignore[assignment]
    return proc_worker.main()


if __name__ == "__main__":
    sys.exit(main())
