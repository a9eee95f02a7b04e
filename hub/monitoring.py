"""What monitors and stats show (spec D14, D19): alerts, system_status, the stats sections.

Aggregates (counts by status, workers by state, throughput) are read from Redis, so every hub
shows the same numbers. Alerts are this hub's recent ones, each tagged with the customer it
concerns (None: an operator alert about the fleet or the queue), shown to whom may see them.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
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
KEPT_ALERTS = 50  # alerts in force kept (oldest give way); status and stats show the last 10


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def customer_workers_only(summary: dict[str, Any], customer_id: str) -> dict[str, Any] | None:
    """D19: a viewer bound to a customer sees the workers bound to that customer (their
    capabilities allow that customer only), not the fleet, and not the jobs they hold."""
    if summary.get("capabilities", {}).get("allowed_customers") != [customer_id]:
        return None
    return {k: v for k, v in summary.items() if k != "current_jobs"}


@dataclass
class Alert:
    """An alert in force until its condition ends (``Monitoring.clear``)."""

    key: str  # the condition: "no_capable_worker:<job>", "queue", "worker_lost:<worker>"
    customer_id: str | None  # the customer it concerns (None: the fleet or the queue)
    record: dict[str, Any]  # as shown in system_status and stats: severity, category, message, timestamp
    details: dict[str, Any]


class Monitoring:
    def __init__(self, hub: HubCore) -> None:
        self.hub = hub
        self.active: dict[str, Alert] = {}  # alerts in force, oldest first

    # alerts -----------------------------------------------------------------------------------
    def alert(
        self,
        key: str,
        severity: str,
        category: str,
        message: str,
        details: dict[str, Any],
        actions: list[str],
        customer_id: str | None = None,
    ) -> None:
        """Raise an alert for the condition ``key`` (once while it lasts): system_alert to the
        monitors that may see it (all hubs), kept in force for system_status and stats.
        ``customer_id``: the customer whose job it names (its monitors see it too); None for an
        operator alert (the fleet, the queue), seen by unbound monitors only."""
        if key in self.active:
            return
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
        self.active[key] = Alert(key, customer_id, record, details)
        while len(self.active) > KEPT_ALERTS:  # the oldest gives way
            self.active.pop(next(iter(self.active)))
        log.warning("alert %s/%s: %s", severity, category, message)
        self.hub.fanout.to_monitors(alert, customer_id, SEES_ALERTS)

    def clear(self, key: str, why: str) -> None:
        """The condition ended: the alert leaves those in force, and monitors are told with a
        system_alert of severity info, the same category and details.cleared true."""
        alert = self.active.pop(key, None)
        if alert is None:
            return
        category = alert.record["category"]
        message = f"resolved: {alert.record['message']} ({why})"
        log.info("alert %s cleared: %s", category, why)
        notice = protocol.make(
            SystemAlert,
            severity="info",
            category=category,
            message=message,
            details={**alert.details, "cleared": True},
        )
        self.hub.fanout.to_monitors(notice, alert.customer_id, SEES_ALERTS)

    async def review(self) -> None:
        """End the no_capable_worker alerts whose job left the queue or found a worker."""
        for key in list(self.active):
            if not key.startswith("no_capable_worker:"):
                continue
            job_id = key.split(":", 1)[1]
            status, class_id, customer = await self.hub.store.fields(job_id, "status", "class", "customer_id")
            job_class = self.hub.store.classes.get(class_id or "")
            if status != QUEUED:
                self.clear(key, f"job {status or 'gone'}")
            elif job_class is not None and self.hub.workers.someone_can_run(job_class, customer or None):
                self.clear(key, "a connected worker can run it now")

    def alerts_for(self, session: Session | None) -> list[dict[str, Any]]:
        """The alerts in force this session may see, newest last."""
        if session is None:
            return []
        return [a.record for a in self.active.values() if monitor_sees(session, a.customer_id, SEES_ALERTS)][
            -10:
        ]

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
        if over:
            self.alert(
                "queue",
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
        else:
            self.clear("queue", f"{fields['pending_jobs']} queued, threshold {threshold}")
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
