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


def _refused(req: Request[Any]) -> bool:
    if req.session.role is Role.MONITOR and not req.session.permissions & SEES_STATS:
        req.refuse("PERMISSION_DENIED", "stats need view_system_stats")
        return True
    return False


async def subscribe_stats(req: Request[SubscribeStats]) -> None:
    msg, subs = req.message, req.hub.subs
    if msg.enabled is False:
        subs.set_stats(req.conn_id, None)
        req.reply(protocol.make(SubscriptionConfirmed, subscription_type="stats", enabled=False))
        return
    if _refused(req):
        return
    interval = msg.interval_seconds if msg.interval_seconds is not None else 5
    sections = tuple(s.value for s in msg.include_sections) if msg.include_sections else ALL_SECTIONS
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
    if _refused(req):
        return
    msg = req.message
    sections = [s.value for s in msg.include_sections] if msg.include_sections else None
    stats = await req.hub.monitoring.stats(sections, req.session)
    req.reply(protocol.make(StatsResponse, stats=stats))


HANDLERS: dict[str, Handler] = {
    "subscribe_stats": subscribe_stats,
    "request_stats": request_stats,
}
