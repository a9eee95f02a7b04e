"""Failed authentications, counted per address (spec D19).

An address whose peers failed authentication ``limit`` times within ``window_s`` is refused
(RATE_LIMITED, without its token even being checked) until the oldest of those failures is
``window_s`` old: a guesser gets ``limit`` tries a minute, whatever path it uses (a WebSocket
registration, the HTTP API, ``/metrics``). Memory is bounded: at most ``limit`` times per address
and ``max_addresses`` addresses (the least recently failing forgotten first).
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any

log = logging.getLogger("empq.hub")


def refusal(wait_s: float) -> tuple[str, dict[str, Any]]:
    """The RATE_LIMITED error's text and details for an address held back ``wait_s`` more seconds."""
    text = f"too many failed authentications from this address: retry in {wait_s:.0f} s"
    return text, {"reason": "auth_failures", "retry_after_ms": round(wait_s * 1000)}


def host_of(address: str) -> str:
    """``host:port`` (IPv6 too: ``::1:5555``) → the host; '' stays ''."""
    return address.rpartition(":")[0] if ":" in address else address


class FailedAuthThrottle:
    def __init__(
        self,
        limit: int,
        window_s: float = 60.0,
        max_addresses: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit, self.window_s, self.max_addresses, self.clock = limit, window_s, max_addresses, clock
        self.failures: OrderedDict[str, deque[float]] = OrderedDict()

    def retry_after(self, address: str) -> float:
        """Seconds until ``address`` may try again (0: now). Off when ``limit`` is 0."""
        times = self.failures.get(host_of(address)) if self.limit > 0 else None
        if times is None or len(times) < self.limit:
            return 0.0
        wait = times[0] + self.window_s - self.clock()
        return max(0.0, wait)

    def failed(self, address: str) -> bool:
        """Count a failure; True when it is the one that holds the address back (said in the log)."""
        if self.limit <= 0:
            return False
        host = host_of(address)
        times = self.failures.pop(host, None)
        if times is None:
            times = deque(maxlen=self.limit)
            while len(self.failures) >= self.max_addresses:
                self.failures.popitem(last=False)
        now = self.clock()
        times.append(now)
        self.failures[host] = times  # the most recent at the end
        held = len(times) == self.limit and now - times[0] < self.window_s
        if held:
            log.warning(
                "%s failed authentication %d times within %g s: refused until the oldest is that old",
                host or "?",
                self.limit,
                self.window_s,
                extra={"event": "auth_throttled", "address": host},
            )
        return held
