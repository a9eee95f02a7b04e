"""Who listens to what, per connection (spec D14): job subscriptions, job notification
subscriptions (with filters), stats subscriptions, and the connections still owed a job's final
message (``awaiting``: re-read from Redis when an event may have been lost).

Bounded per connection (D19): ``MAX_JOB`` job subscriptions (a final job frees its own) and
``MAX_NOTIFICATION`` notification subscriptions.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from empq.hub.access import visible
from empq.hub.session import Session
from empq.hub.store import Routing

MAX_JOB = 10_000
MAX_NOTIFICATION = 16
RECENT_FINALS = 10_000  # jobs whose final message this hub delivered lately (to send it once)


@dataclass
class NotificationSub:
    conn_id: str
    filters: dict[str, Any]

    def matches(self, routing: Routing, status: str) -> bool:
        f = self.filters
        if "customer_id" in f and f["customer_id"] != routing.customer_id:
            return False
        if "job_types" in f and routing.job_type not in f["job_types"]:
            return False
        if "priority_min" in f and routing.priority < f["priority_min"]:
            return False
        return not ("status" in f and status not in f["status"])


@dataclass
class StatsSub:
    interval_ms: int
    sections: tuple[str, ...]
    next_at: int


class Subscriptions:
    def __init__(self, hub_id: str) -> None:
        self.hub_id = hub_id
        self.jobs: dict[str, set[str]] = {}  # job id -> subscribed connections
        self.jobs_of: dict[str, set[str]] = {}  # connection -> job ids
        self.notifications: dict[str, NotificationSub] = {}  # subscription id -> subscription
        self.stats: dict[str, StatsSub] = {}  # connection -> its stats subscription
        self.awaiting: dict[str, set[str]] = {}  # job id -> connections owed its final message
        self.awaiting_of: dict[str, set[str]] = {}  # connection -> the job ids it awaits
        # job id -> connections that got its final message: an event and a re-read from Redis
        # racing each other (after a hub loss or a bus outage) deliver it once, not twice
        self.finals: OrderedDict[str, set[str]] = OrderedDict()
        self._ids = itertools.count(1)

    # job subscriptions --------------------------------------------------------------------
    def job_room(self, conn_id: str, job_id: str) -> bool:
        mine = self.jobs_of.get(conn_id, ())
        return job_id in mine or len(mine) < MAX_JOB

    def add_job(self, conn_id: str, job_id: str) -> None:
        self.jobs.setdefault(job_id, set()).add(conn_id)
        self.jobs_of.setdefault(conn_id, set()).add(job_id)

    def remove_job(self, conn_id: str, job_id: str) -> None:
        conns = self.jobs.get(job_id)
        if conns is not None:
            conns.discard(conn_id)
            if not conns:
                del self.jobs[job_id]
        mine = self.jobs_of.get(conn_id)
        if mine is not None:
            mine.discard(job_id)
            if not mine:
                del self.jobs_of[conn_id]

    def await_final(self, job_id: str, conn_id: str) -> None:
        self.awaiting.setdefault(job_id, set()).add(conn_id)
        self.awaiting_of.setdefault(conn_id, set()).add(job_id)

    def not_yet_final(self, job_id: str, conn_ids: Iterable[str]) -> set[str]:
        """Of these connections, those that have not had the job's final message yet."""
        return set(conn_ids) - self.finals.get(job_id, set())

    def final_sent(self, job_id: str, conn_ids: Iterable[str]) -> None:
        self.finals.setdefault(job_id, set()).update(conn_ids)
        self.finals.move_to_end(job_id)
        while len(self.finals) > RECENT_FINALS:
            self.finals.popitem(last=False)

    def job_ended(self, job_id: str) -> None:
        """A final job has no more events: nobody waits on it or stays subscribed to it."""
        for conn_id in self.awaiting.pop(job_id, ()):
            mine = self.awaiting_of.get(conn_id)
            if mine is not None:
                mine.discard(job_id)
                if not mine:
                    del self.awaiting_of[conn_id]
        for conn_id in list(self.jobs.get(job_id, ())):
            self.remove_job(conn_id, job_id)

    # notification subscriptions ------------------------------------------------------------
    def notification_room(self, conn_id: str) -> bool:
        return sum(1 for s in self.notifications.values() if s.conn_id == conn_id) < MAX_NOTIFICATION

    def add_notification(self, conn_id: str, filters: dict[str, Any]) -> str:
        sub_id = f"sub-{self.hub_id}-{next(self._ids)}"
        self.notifications[sub_id] = NotificationSub(conn_id, filters)
        return sub_id

    def remove_notifications(self, conn_id: str, sub_id: str | None = None) -> None:
        """The connection's notification subscriptions: all of them, or ``sub_id``."""
        for s in [s for s, sub in self.notifications.items() if sub.conn_id == conn_id]:
            if sub_id in (None, s):
                del self.notifications[s]

    # stats --------------------------------------------------------------------------------
    def set_stats(self, conn_id: str, sub: StatsSub | None) -> None:
        if sub is None:
            self.stats.pop(conn_id, None)
        else:
            self.stats[conn_id] = sub

    # routing ------------------------------------------------------------------------------
    def targets(
        self, job_id: str, routing: Routing, status: str, sessions: Mapping[str, Session]
    ) -> set[str]:
        """The local connections that hear about this job event: its submitter's, its
        subscribers', and the notification subscribers whose filters match and who may see it."""
        targets: set[str] = set()
        if routing.origin in sessions:
            targets.add(routing.origin)
        targets.update(self.jobs.get(job_id, ()))
        for sub in self.notifications.values():
            if sub.conn_id not in targets and sub.matches(routing, status):
                session = sessions.get(sub.conn_id)
                if session is not None and visible(session, routing.customer_id, routing.client_id):
                    targets.add(sub.conn_id)
        return targets

    def drop(self, conn_id: str) -> None:
        """A connection went away (or said disconnect with cleanup): all its subscriptions go."""
        for job_id in list(self.jobs_of.get(conn_id, ())):
            self.remove_job(conn_id, job_id)
        self.remove_notifications(conn_id)
        self.stats.pop(conn_id, None)
        for job_id in self.awaiting_of.pop(conn_id, ()):
            waiting = self.awaiting.get(job_id)
            if waiting is not None:
                waiting.discard(conn_id)
                if not waiting:
                    del self.awaiting[job_id]
