"""Stats (spec D14, D19): one answer, or one every interval. Monitors need view_system_stats;
job clients get the aggregates (no per-worker list, no alerts)."""

from __future__ import annotations

from typing import Any

from empq.generated.messages.request_stats import RequestStats
from empq.generated.messages.stats_response import StatsResponse
from empq.generated.messages.subscribe_stats import SubscribeStats
from empq.generated.messages.subscription_confirmed import SubscriptionConfirmed
from empq.hub.access import SEES_STATS
from empq.hub.commands.request import Handler, Request
from empq.hub.monitoring import ALL_SECTIONS
from empq.hub.session import Role
from empq.hub.subscriptions import StatsSub
from empq.hub.workers import now_ms

from empq import protocol


def _sections(req: Request[Any], asked: tuple[str, ...]) -> tuple[str, ...] | None:
    """The sections this session may have (None after refusing): job clients and monitors with
    view_system_stats any; a monitor with only view_workers the workers section (D14, D19)."""
    session = req.session
    if session.role is not Role.MONITOR or session.permissions & SEES_STATS:
        return asked or ALL_SECTIONS
    if "view_workers" in session.permissions and set(asked or ("workers",)) == {"workers"}:
        return ("workers",)
    req.refuse("PERMISSION_DENIED", "stats need view_system_stats (view_workers: the workers section)")
    return None


async def subscribe_stats(req: Request[SubscribeStats]) -> None:
    msg, subs = req.message, req.hub.subs
    if msg.enabled is False:
        subs.set_stats(req.conn_id, None)
        req.reply(protocol.make(SubscriptionConfirmed, subscription_type="stats", enabled=False))
        return
    sections = _sections(req, tuple(s.value for s in msg.include_sections or ()))
    if sections is None:
        return
    interval = msg.interval_seconds if msg.interval_seconds is not None else 5
    next_at = now_ms() + int(interval * 1000)
    subs.set_stats(req.conn_id, StatsSub(int(interval * 1000), sections, next_at))
    req.reply(
        protocol.make(
            SubscriptionConfirmed,
            subscription_type="stats",
            update_interval=interval,
            next_broadcast=next_at,
            enabled=True,
            include_sections=list(sections),
        )
    )


async def request_stats(req: Request[RequestStats]) -> None:
    sections = _sections(req, tuple(s.value for s in req.message.include_sections or ()))
    if sections is None:
        return
    stats = await req.hub.monitoring.stats(sections, req.session)
    req.reply(protocol.make(StatsResponse, stats=stats))


HANDLERS: dict[str, Handler] = {
    "subscribe_stats": subscribe_stats,
    "request_stats": request_stats,
}
