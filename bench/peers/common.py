"""What the Python peer harnesses (arq, Celery) share: the client's tally and the command line."""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field
from typing import Any

from bench.lifecycle import latency_stats


@dataclass
class ClientTally:
    """Enqueue times by job id, completions, latencies; ``result()`` is the harness's JSON line."""

    enqueued: dict[str, float] = field(default_factory=dict)
    to_start: list[float] = field(default_factory=list)
    to_done: list[float] = field(default_factory=list)
    sent: int = 0
    done: int = 0
    failed: int = 0
    first: float | None = None
    last: float | None = None
    cpu0: float = field(default_factory=time.process_time)

    def enqueue(self, job_id: str, at: float) -> None:
        self.first = at if self.first is None else self.first
        self.enqueued[job_id] = at
        self.sent += 1

    def finish(self, job_id: str, now: float, started: float | None) -> None:
        """A job ended: ``started`` is the handler's start time (None: it failed)."""
        t0 = self.enqueued.pop(job_id)
        self.last = now
        self.to_done.append(now - t0)
        if started is None:
            self.failed += 1
        else:
            self.done += 1
            self.to_start.append(started - t0)

    @property
    def ended(self) -> int:
        return self.done + self.failed

    def result(self, label: str, version: str, stopped_by: str) -> dict[str, Any]:
        wall = (self.last - self.first) if self.first is not None and self.last is not None else 0.0
        return {
            "label": label,
            "version": version,
            "stopped_by": stopped_by,
            "submitted": self.sent,
            "completed": self.done,
            "failed": self.failed,
            "wall_s": round(wall, 3),
            "jobs_per_s": round(self.done / wall, 1) if wall > 0 else 0.0,
            "enqueue_to_start": latency_stats(self.to_start),
            "enqueue_to_done": latency_stats(self.to_done),
            "client_cpu_s": round(time.process_time() - self.cpu0, 3),
        }


def parser(description: str, queue: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("role", choices=["worker", "client"])
    p.add_argument("--port", type=int, required=True, help="redis-server port on 127.0.0.1")
    p.add_argument("--queue", default=queue)
    p.add_argument("--jobs", type=int, default=10000)
    p.add_argument("--in-flight", type=int, default=200)
    p.add_argument("--concurrency", type=int, default=50)
    p.add_argument("--poll-ms", type=float, default=5.0, help="poll interval (arq worker; both clients)")
    p.add_argument("--seconds", type=float, default=60.0)
    return p
