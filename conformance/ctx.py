"""What a case gets: registered peers, unique names, checks, and the protocol's common moves.

Every case runs with its own service type (``ctx.service``), customer and ids, so its jobs can be
claimed only by its own workers and it can share a hub with other users.  Everything it opens is
closed afterwards and every job it submitted and did not see finish is cancelled (best effort).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any, NoReturn

from empq.conformance.model import Case, CaseFailure, CaseSkipped, StepTimeout
from empq.conformance.wire import ConnectionLost, SuitePeer, summary
from websockets.exceptions import InvalidHandshake, InvalidURI

DEFAULT_PERMISSIONS = ("view_all_jobs", "view_system_stats")


@dataclass
class Options:
    url: str
    timeout: float = 3.0  # per step
    client_token: str | None = None
    worker_token: str | None = None
    monitor_token: str | None = None

    @property
    def has_tokens(self) -> bool:
        return bool(self.client_token or self.worker_token or self.monitor_token)

    def token(self, role: str) -> str | None:
        return {"job_client": self.client_token, "worker": self.worker_token, "monitor": self.monitor_token}[
            role
        ]


class Ctx:
    def __init__(
        self, case: Case, options: Options, step_timeout: float | None = None, degraded: bool = False
    ) -> None:
        self.case = case
        self.degraded = degraded  # the runner shortened timeouts: the hub keeps timing out
        self.options = options
        self.url = options.url
        self.timeout = step_timeout if step_timeout is not None else options.timeout
        tag = uuid.uuid4().hex[:6]
        slug = re.sub(r"[^a-z0-9]+", "-", case.id.lower()).strip("-")
        self.service = f"conf-{slug}-{tag}"  # only this case's workers can run this case's jobs
        self.job_type = f"conf-{slug}-type"
        self.customer = f"conf-cust-{slug}-{tag}"
        self.peers: list[SuitePeer] = []
        self.notes: list[str] = []
        self.jobs: dict[str, SuitePeer] = {}  # submitted, not seen to finish -> submitting peer
        self.started = time.monotonic()
        self.step = "start"
        self._names = itertools.count(1)

    # judging ----------------------------------------------------------------------------
    def check(self, cond: Any, message: str, expected: Any = None, received: Any = None) -> None:
        if not cond:
            raise CaseFailure(message, expected, received)

    def fail(self, message: str, expected: Any = None, received: Any = None) -> NoReturn:
        raise CaseFailure(message, expected, received)

    def skip(self, reason: str) -> NoReturn:
        raise CaseSkipped(reason)

    def note(self, text: str) -> None:
        """Record an observation (shown in the reports; INFO cases mostly do this)."""
        self.notes.append(text)

    # peers ------------------------------------------------------------------------------
    def _name(self, role: str) -> str:
        return f"{role}-{next(self._names)}"

    async def raw(
        self, name: str | None = None, *, token: str | None = None, greeting: bool = True
    ) -> SuitePeer:
        """A connected, unregistered peer (after ``connection_established`` when ``greeting``)."""
        name = name or self._name("raw")
        self.step = f"connecting {name}"
        headers = {"Authorization": f"Bearer {token}"} if token else None
        try:
            peer = await SuitePeer.open(self.url, name, timeout=self.timeout, headers=headers)
        except TimeoutError:
            raise StepTimeout(
                f"{name}: cannot connect to {self.url}: no WebSocket handshake within {self.timeout:g} s",
                expected="a WebSocket connection",
                received="no handshake",
            ) from None
        except (OSError, InvalidHandshake, InvalidURI) as exc:
            raise CaseFailure(
                f"{name}: cannot connect to {self.url}: {exc}",
                expected="a WebSocket connection",
                received=f"{type(exc).__name__}: {exc}",
            ) from None
        self.peers.append(peer)
        if greeting:
            self.step = f"{name}: waiting for connection_established"
            await self.expect(peer, "connection_established")
        return peer

    async def client(
        self, customer_id: str | None = None, *, name: str | None = None, **fields: Any
    ) -> SuitePeer:
        """A registered job client (customer ``customer_id``, default this case's own customer)."""
        peer = await self.raw(name or self._name("client"))
        peer.customer_id = customer_id or self.customer
        peer.client_id = f"conf-client-{uuid.uuid4().hex[:8]}"
        await self.register(
            peer,
            "job_client",
            client_type="job_client",
            client_id=peer.client_id,
            customer_id=peer.customer_id,
            **fields,
        )
        return peer

    async def monitor(
        self, permissions: tuple[str, ...] = DEFAULT_PERMISSIONS, name: str | None = None
    ) -> SuitePeer:
        peer = await self.raw(name or self._name("monitor"))
        peer.client_id = f"conf-monitor-{uuid.uuid4().hex[:8]}"
        await self.register(
            peer, "monitor", client_type="monitor", client_id=peer.client_id, permissions=list(permissions)
        )
        return peer

    async def worker(
        self,
        services: tuple[str, ...] | list[str] | None = None,
        *,
        subscribe: bool = False,
        name: str | None = None,
        **capabilities: Any,
    ) -> SuitePeer:
        """A registered worker that can run this case's service (unless ``services`` says otherwise)."""
        peer = await self.raw(name or self._name("worker"))
        peer.worker_id = f"conf-worker-{uuid.uuid4().hex[:10]}"
        caps = {"services": list(services if services is not None else [self.service]), **capabilities}
        await self.register(
            peer, "worker", worker_id=peer.worker_id, capabilities=caps, subscribe_to_jobs=subscribe
        )
        return peer

    async def register(self, peer: SuitePeer, role: str, **fields: Any) -> dict[str, Any]:
        """Register ``peer`` (with this role's token when the run has one)."""
        kind = "register_worker" if role == "worker" else "register_client"
        reply = "worker_registered" if role == "worker" else "client_registered"
        token = self.options.token(role)
        if token:
            fields["auth_token"] = token
        frame = await self.request(peer, kind, reply, **fields)
        if frame["type"] == "error":
            self.fail(
                f"{peer.name}: {kind} was refused: {frame.get('error_code')} {frame.get('error')}",
                expected=reply,
                received=frame,
            )
        return frame

    # the protocol's moves ---------------------------------------------------------------
    async def send(self, peer: SuitePeer, kind: str, **fields: Any) -> dict[str, Any]:
        self.step = f"{peer.name}: sending {kind}"
        return await peer.send(kind, **fields)

    async def expect(
        self, peer: SuitePeer, kind: str | tuple[str, ...], timeout: float | None = None, **match: Any
    ) -> dict[str, Any]:
        """The next frame of ``kind`` whose fields equal ``match`` (other frames are kept)."""
        kinds = (kind,) if isinstance(kind, str) else kind
        want = "/".join(kinds) + (f" with {match}" if match else "")
        self.step = f"{peer.name}: waiting for {want}"
        return await peer.wait(
            want,
            lambda f: f.get("type") in kinds and all(f.get(k) == v for k, v in match.items()),
            self.timeout if timeout is None else timeout,
        )

    async def request(
        self, peer: SuitePeer, kind: str, reply: str | tuple[str, ...], **fields: Any
    ) -> dict[str, Any]:
        """Send ``kind`` (with an ``id``) and return its reply: a frame of ``reply`` or ``error``.

        A reply is recognised by type; when it carries ``request_id`` (empq's D2, not in the
        reference) it must be ours.  A frame that carries our request_id but has another type
        fails the case at once.
        """
        kinds = ((reply,) if isinstance(reply, str) else reply) + ("error",)
        rid = f"conf-{uuid.uuid4().hex[:12]}"
        await self.send(peer, kind, id=rid, **fields)
        want = f"{'/'.join(kinds[:-1])} (or error) answering {kind}"
        self.step = f"{peer.name}: waiting for {want}"
        return await peer.wait(
            want,
            lambda f: f.get("type") in kinds and f.get("request_id") in (None, rid),
            self.timeout,
            wrong=lambda f: f.get("request_id") == rid and f.get("type") not in kinds,
        )

    async def answer(
        self, peer: SuitePeer, frame: bytes | str | dict[str, Any], timeout: float | None = None
    ) -> dict[str, Any]:
        """Send any frame and return the first frame received after it (whatever its type)."""
        stale, peer.backlog[:] = list(peer.backlog), []  # only what arrives after sending counts
        try:
            self.step = f"{peer.name}: sending a raw frame"
            await peer.send_raw(frame)
            self.step = f"{peer.name}: waiting for any reply"
            return await peer.wait("any reply", lambda f: True, self.timeout if timeout is None else timeout)
        finally:
            peer.backlog[:0] = stale

    async def alive(self, peer: SuitePeer) -> None:
        """ping -> pong: the connection still works."""
        frame = await self.request(peer, "ping", "pong")
        self.check(
            frame["type"] == "pong",
            f"{peer.name}: ping answered with {frame['type']}",
            expected="pong",
            received=summary(frame),
        )

    async def submit(self, client: SuitePeer, **fields: Any) -> dict[str, Any]:
        """submit_job (this case's service and job type unless given) -> job_accepted."""
        fields.setdefault("job_type", self.job_type)
        fields.setdefault("payload", {"prompt": "a beautiful landscape with mountains", "steps": 30})
        fields.setdefault("requirements", {"service_type": self.service})
        frame = await self.request(client, "submit_job", "job_accepted", **fields)
        if frame["type"] != "job_accepted":
            self.fail(
                f"{client.name}: submit_job was refused: {frame.get('error_code')} {frame.get('error')}",
                expected="job_accepted",
                received=frame,
            )
        job_id = frame.get("job_id")
        if not isinstance(job_id, str) or not job_id:
            self.fail("job_accepted carries no job_id", expected="job_id", received=frame)
        self.jobs[job_id] = client
        return frame

    async def claim(self, worker: SuitePeer, max_jobs: int = 1, **fields: Any) -> list[dict[str, Any]]:
        """claim_job -> the job_assigned frames received (up to ``max_jobs``).

        The claim is over at ``max_jobs`` assignments, at any other reply to it (empq ends an
        unsatisfied claim with ``ack`` no_job_available), or after a quiet step timeout.
        """
        rid = f"conf-{uuid.uuid4().hex[:12]}"
        await self.send(worker, "claim_job", id=rid, worker_id=worker.worker_id, max_jobs=max_jobs, **fields)
        self.step = f"{worker.name}: waiting for job_assigned"
        jobs: list[dict[str, Any]] = []
        while len(jobs) < max_jobs:
            frame = await worker.quiet(
                lambda f: (
                    f.get("type") == "job_assigned"
                    or (f.get("request_id") == rid)
                    or (f.get("type") == "ack" and f.get("original_type") == "claim_job")
                    or (f.get("type") == "error" and f.get("request_id") in (None, rid))
                ),
                self.timeout,
            )
            if frame is None:
                break
            if frame["type"] == "error":
                self.fail(
                    f"{worker.name}: claim_job refused: {frame.get('error_code')} {frame.get('error')}",
                    expected="job_assigned or no job",
                    received=frame,
                )
            if frame["type"] != "job_assigned":
                break
            jobs.append(frame)
        return jobs

    async def claim_one(self, worker: SuitePeer, job_id: str, **fields: Any) -> dict[str, Any]:
        jobs = await self.claim(worker, **fields)
        self.check(
            [j["job_id"] for j in jobs] == [job_id],
            f"{worker.name}: claim_job did not assign the queued job",
            expected=f"job_assigned for {job_id}",
            received=[summary(j) for j in jobs] or "no job_assigned",
        )
        return jobs[0]

    async def claim_and_accept(self, worker: SuitePeer, job_id: str) -> dict[str, Any]:
        """Claim the queued job and confirm it (job_accepted_by_worker): the job is the worker's."""
        assigned = await self.claim_one(worker, job_id)
        await self.send(worker, "job_accepted_by_worker", job_id=job_id, worker_id=worker.worker_id)
        return assigned

    async def complete(
        self, worker: SuitePeer, job_id: str, result: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        frame = await self.request(
            worker,
            "complete_job",
            "job_completed_ack",
            job_id=job_id,
            worker_id=worker.worker_id,
            result=result or {"success": True},
            processing_time=1.5,
        )
        self.check(
            frame["type"] == "job_completed_ack",
            f"{worker.name}: complete_job answered with {frame['type']}",
            expected="job_completed_ack",
            received=frame,
        )
        self.finished(job_id)
        return frame

    def finished(self, job_id: str) -> None:
        """The case saw this job end: no cancellation needed at cleanup."""
        self.jobs.pop(job_id, None)

    # cleanup ----------------------------------------------------------------------------
    async def cleanup(self) -> None:
        """Cancel jobs that may still be queued, close every peer; errors are ignored."""
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._cancel_leftovers(), 2.0)
        await asyncio.gather(*(self._leave(p) for p in self.peers), return_exceptions=True)

    async def _leave(self, peer: SuitePeer) -> None:
        """Say goodbye (a worker's jobs go back at once, not after a reconnect grace), then close.
        With shortened timeouts (the hub keeps timing out) connections are just dropped."""
        graceful = not self.degraded
        if peer.is_open and graceful:
            with contextlib.suppress(Exception):
                await peer.send("disconnect", reason="conformance case done")
        await peer.close(graceful)

    async def _cancel_leftovers(self) -> None:
        sent: list[SuitePeer] = []
        for job_id, owner in list(self.jobs.items()):
            with contextlib.suppress(Exception):
                if not owner.is_open:
                    owner = await self.client(owner.customer_id, name=f"cleanup-{next(self._names)}")
                await owner.send("cancel_job", job_id=job_id, reason="conformance cleanup")
                sent.append(owner)
        if sent:
            await asyncio.sleep(0.05)  # let the cancellations reach the hub before closing


def expect_field(ctx: Ctx, frame: dict[str, Any], name: str, expected: Any, what: str = "") -> None:
    """Check one field of a received frame against the value that follows from what was sent."""
    got = frame.get(name, "(absent)")
    ctx.check(
        got == expected,
        f"{what or frame.get('type')}: {name} is {got!r}, expected {expected!r}",
        expected={name: expected},
        received=summary(frame) | {name: got},
    )


__all__ = ["ConnectionLost", "Ctx", "Options", "expect_field"]
