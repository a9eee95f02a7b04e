"""What the run has learned about the hub's silences, shared by every case of the run.

Each wait for something the hub should send has a key (``reply:cancel_job``, ``greeting``,
``frame:job_update:job_client:progress``).  Once a key has waited in vain ``after`` times and never
been met, later waits for it last ``short`` seconds instead of the full step timeout: a hub that
never answers ``cancel_job`` costs one full timeout in a run (one per case running at that time),
not one per case.  A correct hub meets every key at once, so its waits are never shortened; a key
met once is never shortened again.
"""

from __future__ import annotations

from collections import Counter


class Memory:
    def __init__(self, after: int = 1, short: float = 0.3) -> None:
        self.after = after
        self.short = short
        self.hits: Counter[str] = Counter()
        self.misses: Counter[str] = Counter()

    def learned(self, key: str) -> bool:
        """The hub has never sent what ``key`` waits for, and the run has waited for it ``after`` times."""
        return self.hits[key] == 0 and self.misses[key] >= self.after

    def timeout(self, key: str, full: float) -> tuple[float, bool]:
        """How long to wait for ``key``: (seconds, shortened)."""
        if self.learned(key):
            return min(full, self.short), True
        return full, False

    def hit(self, key: str) -> None:
        self.hits[key] += 1

    def miss(self, key: str) -> None:
        self.misses[key] += 1
