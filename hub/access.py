"""Who may see and do what (spec D13, D19): the rules every path applies, in one place.

A session bound to a customer (by its token, or by declaring one in open dev mode) sees only
that customer's jobs and what concerns them, whatever its permissions. Aggregates (counts) are
seen by everyone; identifiers, alerts and telemetry only by those allowed.
"""

from __future__ import annotations

import time

from empq.hub.session import Role, Session

SEES_WORKERS = frozenset({"view_workers", "view_system_stats"})  # per-worker lists and relays
SEES_ALERTS = frozenset({"view_system_stats"})  # system_alert, alerts in status and stats
SEES_STATS = frozenset({"view_system_stats"})  # a monitor's stats (job clients get theirs)


def visible(session: Session, customer_id: str | None, client_id: str | None) -> bool:
    """May this session see (status, subscribe, cancel, be notified of) a job of this customer,
    submitted by this client identity (``Session.identity``)?"""
    if session.customer_id is not None and customer_id != session.customer_id:
        return False
    if "view_all_jobs" in session.permissions:
        return True
    if session.role is Role.JOB_CLIENT:
        return session.customer_id is not None or client_id == session.identity
    return False


def monitor_sees(session: Session, customer_id: str | None, needs: frozenset[str]) -> bool:
    """May this monitor see an alert or relay concerning ``customer_id`` (None: the fleet or the
    system)? It needs one of ``needs``; one bound to a customer sees only what concerns it."""
    if session.role is not Role.MONITOR or not session.permissions & needs:
        return False
    return session.customer_id is None or session.customer_id == customer_id


def may_cancel(session: Session) -> bool:
    """Job clients cancel the jobs they see; monitors need manage_jobs."""
    return session.role is not Role.MONITOR or "manage_jobs" in session.permissions


class SubmissionLimiter:
    """Optional submissions per second per client identity and hub: a token bucket each,
    refilled at ``rate`` up to ``burst`` (0 rate = no limit)."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = float(burst or max(1.0, 2 * rate))
        self.buckets: dict[str, tuple[float, float]] = {}  # identity -> (tokens, at s)

    def wait_ms(self, identity: str) -> int:
        """0 when ``identity`` may submit now (and counts it), else the ms until it may."""
        if self.rate <= 0:
            return 0
        now = time.monotonic()
        tokens, at = self.buckets.get(identity, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        if tokens < 1:
            self.buckets[identity] = (tokens, now)
            return max(1, int((1 - tokens) / self.rate * 1000))
        self.buckets[identity] = (tokens - 1, now)
        return 0

    def forget_full(self) -> None:
        """Drop the buckets that have refilled (an idle identity costs nothing)."""
        if self.buckets and self.rate > 0:
            since = time.monotonic() - self.burst / self.rate
            self.buckets = {k: v for k, v in self.buckets.items() if v[1] > since}
