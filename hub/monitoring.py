"""What monitors and stats show (spec D14, D19): alerts, system_status, the stats sections.

Aggregates (counts by status, workers by state, throughput) are read from Redis, so every hub
shows the same numbers. Alerts are this hub's recent ones, each tagged with the customer it
concerns (None: an operator alert about the fleet or the queue), shown to whom may see them.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import orjson
from empq.generated.messages.system_alert import SystemAlert
from empq.generated.messages.system_status import SystemStatus
from empq.hub.access import SEES_ALERTS, SEES_WORKERS, monitor_sees
from empq.hub.lifecycle import ACTIVE, QUEUED, STATUSES
from empq.hub.session import Role, Session

from empq import protocol

if TYPE_CHECKING:
    from empq.hub.core import HubCore

log = logging.getLogger("empq.hub")

ALL_SECTIONS = ("jobs", "workers", "throughput", "system")
KEPT_ALERTS = 50  # recent alerts kept; status and stats show the last 10 a viewer may see


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def customer_workers_only(summary: dict[str, Any], customer_id: str) -> dict[str, Any] | None:
    """D19: a viewer bound to a customer sees the workers bound to that customer (their
    capabilities allow that customer only), not the fleet, and not the jobs they hold."""
    if summary.get("capabilities", {}).get("allowed_customers") != [customer_id]:
        return None
    return {k: v for k, v in summary.items() if k != "current_jobs"}


class Monitoring:
    def __init__(self, hub: HubCore) -> None:
        self.hub = hub
        self.alerts: list[tuple[str | None, dict[str, Any]]] = []  # (customer concerned, alert)
        self.queue_alert_active = False

    # alerts -----------------------------------------------------------------------------------
    def alert(
        self,
        severity: str,
        category: str,
        message: str,
        details: dict[str, Any],
        actions: list[str],
        customer_id: str | None = None,
    ) -> None:
        """system_alert to the monitors that may see it (all hubs); kept for system_status.
        ``customer_id``: the customer whose job it names (its monitors see it too); None for an
        operator alert (the fleet, the queue), seen by unbound monitors only."""
        alert = protocol.make(
            SystemAlert,
            severity=severity,
            category=category,
            message=message,
            details=details,
            actions_recommended=actions,
        )
        record: dict[str, Any] = {"severity": severity, "category": category, "message": message}
        record["timestamp"] = alert.timestamp
        self.alerts = [*self.alerts[1 - KEPT_ALERTS :], (customer_id, record)]
        log.warning("alert %s/%s: %s", severity, category, message)
        self.hub.fanout.to_monitors(alert, customer_id, SEES_ALERTS)

    def alerts_for(self, session: Session | None) -> list[dict[str, Any]]:
        """The recent alerts this session may see, newest last."""
        if session is None:
            return []
        return [a for c, a in self.alerts if monitor_sees(session, c, SEES_ALERTS)][-10:]

    # system_status ------------------------------------------------------------------------------
    async def system_status(self, viewer: Session | None = None) -> SystemStatus:
        """Aggregates (for every monitor), with the recent alerts ``viewer`` may see."""
        fields = await self._status_fields()
        return protocol.make(SystemStatus, **fields, alerts=self.alerts_for(viewer))

    async def _status_fields(self) -> dict[str, Any]:
        store, workers = self.hub.store, self.hub.workers
        counts = await store.counts()
        throughput = await store.throughput()
        pending = max(0, counts.get(QUEUED, 0))
        active = sum(max(0, counts.get(k, 0)) for k in ACTIVE)
        n = len(workers.everywhere) or len(workers.local)
        threshold = self.hub.config.queue_alert_per_worker * max(1, n)
        health = "healthy"
        if pending > threshold:
            health = "degraded"
        if pending and not n:
            health = "critical"
        return {
            "active_workers": n,
            "pending_jobs": pending,
            "active_jobs": active,
            "completed_jobs_last_hour": throughput["completed_last_hour"],
            "system_health": health,
        }

    async def status_round(self) -> None:
        """system_status to local monitors; the queue-depth alert when crossing the threshold."""
        fields = await self._status_fields()
        threshold = self.hub.config.queue_alert_per_worker * max(1, fields["active_workers"])
        over = fields["pending_jobs"] > threshold
        if over and not self.queue_alert_active:
            self.alert(
                "warning",
                "resource_constraint",
                "Queue depth exceeding normal capacity",
                {
                    "current_queue_depth": fields["pending_jobs"],
                    "normal_threshold": threshold,
                    "available_workers": fields["active_workers"],
                },
                ["Consider scaling up workers", "Review job priorities"],
            )
        self.queue_alert_active = over
        frames: dict[bytes, bytes] = {}  # monitors that see the same alerts share one frame
        for conn_id, session in list(self.hub.sessions.items()):
            if session.role is Role.MONITOR:
                alerts = self.alerts_for(session)
                key = orjson.dumps(alerts)
                if key not in frames:
                    frames[key] = protocol.encode(protocol.make(SystemStatus, **fields, alerts=alerts))
                self.hub.fanout.deliver(conn_id, frames[key])

    # stats --------------------------------------------------------------------------------------
    async def stats(self, sections: tuple[str, ...] | list[str] | None, viewer: Session) -> dict[str, Any]:
        """The stats sections ``viewer`` may see: aggregates for every viewer; the per-worker list
        for holders of view_workers or view_system_stats (without the jobs each holds for a viewer
        bound to a customer); alerts as ``alerts_for``."""
        hub = self.hub
        wanted = tuple(sections) if sections else ALL_SECTIONS
        out: dict[str, Any] = {}
        if "jobs" in wanted:
            counts = await hub.store.counts()
            out["jobs"] = {state: max(0, counts.get(state, 0)) for state in STATUSES}
        if "workers" in wanted:
            out["workers"] = await self._worker_stats()
            if not viewer.permissions & SEES_WORKERS:
                del out["workers"]["workers"]
            elif viewer.customer_id is not None:  # its own workers only, without the jobs they hold
                mine = [customer_workers_only(w, viewer.customer_id) for w in out["workers"]["workers"]]
                out["workers"]["workers"] = [w for w in mine if w is not None]
        if "throughput" in wanted:
            out["throughput"] = {
                **await hub.store.throughput(),
                "avg_processing_time": hub.mean_processing_time,
            }
        if "system" in wanted:
            # connections of every hub (as each reported within the last seconds), ours live
            hubs = await hub.fleet.hubs(within_ms=max(5000, 5 * hub.config.sweep_interval_ms))
            connections: dict[str, int] = {"job_client": 0, "monitor": 0, "worker": 0, "new": 0}
            hubs.pop(hub.hub_id, None)
            for info in hubs.values():
                for role, n in info.get("connections", {}).items():
                    connections[role] = connections.get(role, 0) + n
            for session in hub.sessions.values():
                connections[session.role.value] += 1
            status = await self._status_fields()
            out["system"] = {
                "uptime_seconds": (now_ms() - hub.started) / 1000,
                "hubs": len(hubs) + 1,
                "connections": connections,
                "system_health": status["system_health"],
                "alerts": self.alerts_for(viewer),
            }
        return out

    async def _worker_stats(self) -> dict[str, Any]:
        """Workers of every hub, from the shared registry (telemetry as of their last heartbeat)."""
        by_status = {"idle": 0, "busy": 0, "draining": 0, "offline": 0}
        summaries = []
        for worker_id, entry in sorted((await self.hub.fleet.workers()).items()):
            local = self.hub.workers.get(worker_id)
            telemetry = local.telemetry() if local is not None else entry["telemetry"]
            capabilities = entry["capabilities"]
            held = telemetry.get("current_jobs", [])
            declared = telemetry.get("status", "idle")
            slots = int(capabilities.get("max_concurrent_jobs") or 1)
            state = (
                declared
                if declared in ("draining", "offline")
                else ("busy" if len(held) >= slots else "idle")
            )
            by_status[state] += 1
            summary = {
                "worker_id": worker_id,
                "status": state,
                "current_jobs": held,
                "capabilities": capabilities,
            }
            for key in ("load", "system_info", "connector_status"):
                if key in telemetry:
                    summary[key] = telemetry[key]
            if telemetry.get("last_heartbeat"):
                summary["last_heartbeat"] = telemetry["last_heartbeat"]
            summaries.append(summary)
        return {"total": len(summaries), **by_status, "workers": summaries}
