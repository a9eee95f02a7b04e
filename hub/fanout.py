"""Getting frames to the right connections, on this hub and on the others.

``Fanout`` sends to local connections (as chunks to peers that asked for them, D15), routes job
events to whoever listens (submitter, subscribers, matching notification subscribers, D9/D14),
reaches workers and monitors wherever they are connected, and speaks the bus: a Redis pub/sub
channel shared by every hub on the same Redis (``P:bus``), used only when other hubs are alive.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import uuid
from collections.abc import Collection
from dataclasses import astuple
from typing import TYPE_CHECKING, Any

import orjson
from empq.generated.messages.chunked_message import ChunkedMessage
from empq.hub.access import monitor_sees
from empq.hub.lifecycle import FINAL
from empq.hub.matching import JobClass
from empq.hub.store import Routing
from pydantic import BaseModel

from empq import protocol
from empq.protocol import Outgoing

if TYPE_CHECKING:
    from empq.hub.core import HubCore

log = logging.getLogger("empq.hub")


class Fanout:
    def __init__(self, hub: HubCore) -> None:
        self.hub = hub
        self.channel = f"{hub.store.p}:bus"
        self.peer_ids: set[str] = set()  # other live hubs on this Redis (the registry, each second)

    @property
    def peer_hubs(self) -> int:
        """Other live hubs on this Redis: events go over the bus when > 0."""
        return len(self.peer_ids)

    # local connections ------------------------------------------------------------------------
    def send(self, conn_id: str, message: BaseModel | Outgoing) -> None:
        self.deliver(conn_id, protocol.encode(message))

    def deliver(self, conn_id: str, data: bytes) -> None:
        """Send an encoded message; over the chunk threshold, as chunks to peers that declared
        support for them (D15)."""
        if len(data) > self.hub.config.chunk_threshold:
            session = self.hub.sessions.get(conn_id)
            if session is not None and session.chunked_messages:
                for chunk in self._chunks_of(data):
                    self.hub.outbox.send(conn_id, chunk)
                return
        self.hub.outbox.send(conn_id, data)

    def deliver_many(self, conn_ids: Collection[str], data: bytes) -> None:
        """The same encoded message to several connections (a fan-out): encoded once, counted
        once, the same bytes queued for each (over the chunk threshold: each as ``deliver``)."""
        if len(data) > self.hub.config.chunk_threshold:
            for conn_id in conn_ids:
                self.deliver(conn_id, data)
        elif len(conn_ids) == 1:
            for conn_id in conn_ids:
                self.hub.outbox.send(conn_id, data)
        elif conn_ids:
            self.hub.outbox.send_many(conn_ids, data)

    def _chunks_of(self, data: bytes) -> list[bytes]:
        size = max(1, self.hub.config.chunk_threshold // 2)  # base64 grows the data by 4/3
        parts = [data[i : i + size] for i in range(0, len(data), size)]
        chunk_id = f"chunk-{uuid.uuid4().hex[:16]}"
        digest = hashlib.sha256(data).hexdigest()
        original_type = orjson.loads(data).get("type", "unknown")
        return [
            protocol.encode(
                protocol.make(
                    ChunkedMessage,
                    chunk_id=chunk_id,
                    chunk_index=i,
                    total_chunks=len(parts),
                    data=base64.b64encode(part).decode(),
                    data_hash=digest,
                    original_type=original_type,
                    total_size=len(data),
                )
            )
            for i, part in enumerate(parts)
        ]

    # job events -------------------------------------------------------------------------------
    def publish(
        self,
        job_id: str,
        routing: Routing,
        message: BaseModel | Outgoing,
        status: str,
        exclude: str | None = None,
    ) -> None:
        """A job event to its submitter's connection, its subscribers and the matching
        notification subscribers — each once, on every hub."""
        data = protocol.encode(message)
        self._job_event(job_id, routing, data, status, exclude)
        if self.peer_hubs > 0:  # the submitter or subscribers may be on another hub
            self.broadcast(
                "job", job_id=job_id, routing=list(astuple(routing)), frame=data.decode(), status=status
            )

    def _job_event(
        self, job_id: str, routing: Routing, data: bytes, status: str, exclude: str | None
    ) -> None:
        subs = self.hub.subs
        targets = subs.targets(job_id, routing, status, self.hub.sessions)
        targets.discard(exclude or "")
        if status in FINAL:
            targets = subs.not_yet_final(job_id, targets)
            subs.final_sent(job_id, targets)
            subs.job_ended(job_id)
        self.deliver_many(targets, data)

    # workers and monitors, wherever they are -------------------------------------------------
    def to_worker(self, worker_id: str, message: BaseModel | Outgoing, release: str | None = None) -> None:
        """Send to a worker wherever it is connected; ``release``: a job it no longer holds."""
        worker = self.hub.workers.get(worker_id)
        if worker is not None:
            if release:
                self.hub.workers.release(worker_id, release)
            self.send(worker.conn_id, message)
        else:
            frame = protocol.encode(message).decode()
            self.broadcast("worker", worker_id=worker_id, frame=frame, release=[release] if release else [])

    def to_monitors(self, message: BaseModel, customer_id: str | None, needs: frozenset[str]) -> None:
        """To the monitors (all hubs) that may see it (``access.monitor_sees``)."""
        data = protocol.encode(message)
        self._to_monitors(data, customer_id, needs)
        self.broadcast("monitors", frame=data.decode(), customer_id=customer_id, needs=sorted(needs))

    def _to_monitors(self, data: bytes, customer_id: str | None, needs: frozenset[str]) -> None:
        sessions = self.hub.sessions.items()
        self.deliver_many([c for c, s in sessions if monitor_sees(s, customer_id, needs)], data)

    # the bus ------------------------------------------------------------------------------------
    def broadcast(self, kind: str, **fields: Any) -> None:
        """Tell the other hubs on this Redis (pub/sub); nothing when this hub is alone."""
        if self.peer_hubs > 0:
            payload = orjson.dumps({"hub": self.hub.hub_id, "kind": kind, **fields})
            future = self.hub.store.batch.command("PUBLISH", self.channel, payload)
            future.add_done_callback(_log_failure)

    def on_bus(self, data: bytes) -> None:
        """An event from another hub."""
        event = orjson.loads(data)
        if event.get("hub") == self.hub.hub_id:
            return
        kind = event["kind"]
        if kind == "job":
            routing = Routing(*event["routing"])
            self._job_event(event["job_id"], routing, event["frame"].encode(), event["status"], None)
        elif kind == "worker":
            worker = self.hub.workers.get(event["worker_id"])
            if worker is not None:
                for job_id in event.get("release", ()):
                    self.hub.workers.release(worker.worker_id, job_id)
                self.deliver(worker.conn_id, event["frame"].encode())
        elif kind == "available":
            classes = self.hub.store.classes
            job_class = classes.get(event["class_id"])
            if job_class is None and event.get("class"):  # a class first submitted on that hub
                job_class = classes.setdefault(event["class_id"], JobClass.from_json(event["class"]))
            if job_class is not None:
                self.hub.workers.notify(
                    event["job_id"], job_class, event.get("customer_id"), event["priority"]
                )
        elif kind == "monitors":
            self._to_monitors(event["frame"].encode(), event.get("customer_id"), frozenset(event["needs"]))
        elif kind == "hello":
            self.peer_ids.add(event["hub"])

    async def hello(self) -> None:
        """A hub starting says so on the bus before it serves: the others publish their job events
        from then on (the registry, read once a second, would tell them up to a second later, and
        the events of that second — a completion for a client of this hub — would be lost)."""
        if self.peer_hubs > 0:
            await self.hub.store.batch.command(
                "PUBLISH", self.channel, orjson.dumps({"hub": self.hub.hub_id, "kind": "hello"})
            )

    def job_claimable(self, job_id: str, class_id: str, customer_id: str | None, priority: int) -> int:
        """A job can be claimed (new or back in its queue): notify idle local workers; when fewer
        than the fan-out were found, ask the other hubs."""
        job_class = self.hub.store.classes.get(class_id)
        sent = 0
        if job_class is not None:
            sent = self.hub.workers.notify(job_id, job_class, customer_id, priority)
        if sent < self.hub.config.notify_fanout:
            self.broadcast(
                "available",
                job_id=job_id,
                class_id=class_id,
                customer_id=customer_id,
                priority=priority,
                **({"class": job_class.to_json().decode()} if job_class is not None else {}),
            )
        return sent

    def hubs_changed(self, peers: set[str]) -> set[str]:
        """The registry's live peers now; returns those that vanished."""
        gone, self.peer_ids = self.peer_ids - peers, peers
        return gone


def _log_failure(future: Any) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.warning("bus publish failed: %s", future.exception())
