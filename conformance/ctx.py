"""What a case gets: registered peers, unique names, checks, and the protocol's common moves.

Every case runs with its own service type (``ctx.service``), customer and ids, so its jobs can be
claimed only by its own workers and it can share a hub with other users (and other cases running
at the same time).  Everything it opens is closed afterwards and every job it submitted and did
not see finish is cancelled (best effort).

Each role connects to its own URL when the run has one (``--worker-url ws://hub/ws/worker/{id}``;
``{id}`` becomes the connection's own client or worker id), else to the hub's URL.  A step that is
only a precondition of the case (connecting, registering, a job accepted, a job assigned) turns a
failure into ``Blocked``: the case is reported as blocked by that cause, not as one more failure,
unless the case itself checks that message type (its ``messages``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, NoReturn
from urllib.parse import quote, urlsplit, urlunsplit

import orjson
from empq.conformance import causes
from empq.conformance.findings import Findings, frame_causes
from empq.conformance.memory import Memory
from empq.conformance.model import Blocked, Case, CaseFailure, CaseSkipped, Cause, StepTimeout
from empq.conformance.schemas import Violation, default_schemas
from empq.conformance.wire import ConnectionLost, HandshakeRefused, SuitePeer, WrongReply, summary
from websockets.exceptions import InvalidHandshake, InvalidStatus, InvalidURI

DEFAULT_PERMISSIONS = ("view_all_jobs", "view_system_stats")
QUEUE_TYPES = frozenset({"submit_job", "claim_job", "chunked_message"})  # sent in the queue lane
ROLES = ("job_client", "worker", "monitor")
TOKEN_PLACES = ("message", "header", "query")


@dataclass
class Options:
    url: str
    timeout: float = 3.0  # per step
    client_token: str | None = None
    worker_token: str | None = None
    monitor_token: str | None = None
    client_url: str | None = None  # per-role URLs; {id} becomes the connection's client/worker id
    worker_url: str | None = None
    monitor_url: str | None = None
    headers: dict[str, str] = field(default_factory=dict)  # sent on every handshake
    token_in: str = "message"  # where a role's token goes: message (auth_token) | header | query
    strict: bool = False  # a schema violation in a received frame ends the case
    silence: float = 1.0  # seconds of quiet taken as "nothing comes" (e.g. an empty claim)

    @property
    def has_tokens(self) -> bool:
        return bool(self.client_token or self.worker_token or self.monitor_token)

    @property
    def per_role_urls(self) -> bool:
        return bool(self.client_url or self.worker_url or self.monitor_url)

    def token(self, role: str) -> str | None:
        return {"job_client": self.client_token, "worker": self.worker_token, "monitor": self.monitor_token}[
            role
        ]

    def url_for(self, role: str) -> str:
        """The role's URL as given (``{id}`` not replaced)."""
        given = {"job_client": self.client_url, "worker": self.worker_url, "monitor": self.monitor_url}[role]
        return given or self.url

    def connect_url(self, role: str, conn_id: str, token: str | None) -> str:
        url = self.url_for(role).replace("{id}", quote(conn_id, safe=""))
        if token and self.token_in == "query":
            parts = urlsplit(url)
            query = "&".join(q for q in (parts.query, f"token={quote(token, safe='')}") if q)
            url = urlunsplit(parts._replace(query=query))
        return url

    def connect_headers(self, token: str | None) -> dict[str, str] | None:
        headers = dict(self.headers)
        if token and self.token_in == "header":
            headers["Authorization"] = f"Bearer {token}"
        return headers or None


class Ctx:
    def __init__(
        self,
        case: Case,
        options: Options,
        step_timeout: float | None = None,
        memory: Memory | None = None,
        findings: Findings | None = None,
    ) -> None:
        self.case = case
        self.options = options
        self.url = options.url
        self.timeout = step_timeout if step_timeout is not None else options.timeout
        self.memory = memory if memory is not None else Memory()
        self.findings = findings if findings is not None else Findings()
        self.seen: set[str] = set()  # keys of the findings this case's frames had
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
        self.lane_guard: contextlib.AbstractAsyncContextManager[None] | None = None  # the run's queue lane

    @property
    def silence(self) -> float:
        """How long quiet counts as "nothing comes" (never longer than a step)."""
        return min(self.timeout, self.options.silence)

    # judging ----------------------------------------------------------------------------
    def check(
        self, cond: Any, message: str, expected: Any = None, received: Any = None, cause: Cause | None = None
    ) -> None:
        if not cond:
            raise CaseFailure(message, expected, received, cause)

    def fail(
        self, message: str, expected: Any = None, received: Any = None, cause: Cause | None = None
    ) -> NoReturn:
        raise CaseFailure(message, expected, received, cause)

    def skip(self, reason: str) -> NoReturn:
        raise CaseSkipped(reason)

    def note(self, text: str) -> None:
        """Record an observation (shown in the reports; INFO cases mostly do this)."""
        self.notes.append(text)

    def finding(self, cause: Cause, example: Any = None) -> None:
        """Record something a frame (or its absence) got wrong, without failing the case."""
        self.findings.add(cause, self.case.id, example)
        self.seen.add(cause.key)

    def _frame_problems(self, frame: dict[str, Any], violations: list[Violation]) -> list[Cause]:
        found = frame_causes(frame, violations, default_schemas())
        for cause in found:
            self.finding(cause, frame)
        return found

    @contextlib.contextmanager
    def precondition(self, kind: str, step: str) -> Iterator[None]:
        """A step the case needs but does not check: its failure blocks the case (unless the case
        lists ``kind`` among its messages, i.e. checks that step itself)."""
        try:
            yield
        except Blocked:
            raise
        except CaseFailure as failure:
            if kind in self.case.messages:
                raise
            raise Blocked(failure, step) from None

    # peers ------------------------------------------------------------------------------
    def _name(self, role: str) -> str:
        return f"{role}-{next(self._names)}"

    async def raw(
        self,
        name: str | None = None,
        *,
        role: str = "job_client",
        conn_id: str | None = None,
        token: str | None = None,
        greeting: bool = True,
    ) -> SuitePeer:
        """A connected, unregistered peer on ``role``'s URL (after its greeting when ``greeting``).

        ``conn_id`` is the id the connection will register with (``{id}`` in the role's URL);
        ``token`` replaces the role's token on the handshake ("" for none) with --token-in
        header or query.
        """
        name = name or self._name("raw")
        conn_id = conn_id or f"conf-conn-{uuid.uuid4().hex[:10]}"
        token = self.options.token(role) if token is None else token
        with self.precondition("connection_established", f"connecting {name}"):
            peer = await self._open(name, role, conn_id, token or None)
            if greeting:
                await self._greeting(peer)
        return peer

    async def _open(self, name: str, role: str, conn_id: str, token: str | None) -> SuitePeer:
        o = self.options
        template, url = o.url_for(role), o.connect_url(role, conn_id, token)
        self.step = f"connecting {name}"
        try:
            peer = await SuitePeer.open(url, name, timeout=self.timeout, headers=o.connect_headers(token))
        except TimeoutError:
            raise StepTimeout(
                f"{name}: cannot connect to {url}: no WebSocket handshake within {self.timeout:g} s",
                expected="a WebSocket connection",
                received="no handshake",
                cause=causes.no_handshake(template, self.timeout),
            ) from None
        except InvalidStatus as exc:
            status = exc.response.status_code
            raise HandshakeRefused(
                f"{name}: cannot connect to {url}: the hub refused the handshake with HTTP {status}",
                status,
                exc.response.reason_phrase,
                causes.handshake_refused(status, template, o.per_role_urls),
            ) from None
        except (OSError, InvalidHandshake, InvalidURI) as exc:
            raise CaseFailure(
                f"{name}: cannot connect to {url}: {exc}",
                expected="a WebSocket connection",
                received=f"{type(exc).__name__}: {exc}",
                cause=causes.cannot_connect(template, exc),
            ) from None
        peer.role, peer.url_template, peer.per_role_urls = role, template, o.per_role_urls
        peer.strict, peer.sink = o.strict, self._frame_problems
        self.peers.append(peer)
        return peer

    async def _greeting(self, peer: SuitePeer) -> None:
        """Strict: connection_established must come.  Otherwise a missing greeting or one of another
        type is a finding and the case goes on (a greeting of another type stays in the backlog)."""
        if self.options.strict:
            await self.expect(peer, "connection_established")
            return
        timeout, _ = self.memory.timeout("greeting", self.timeout)
        self.step = f"{peer.name}: waiting for connection_established"
        try:
            first = await peer.wait("connection_established", lambda f: True, timeout)
        except StepTimeout:
            self.memory.miss("greeting")
            self.finding(causes.no_greeting())
            return
        self.memory.hit("greeting")
        if first.get("type") != "connection_established":
            peer.backlog.insert(0, first)
            self.finding(causes.other_greeting(first.get("type")), first)

    async def client(
        self, customer_id: str | None = None, *, name: str | None = None, **fields: Any
    ) -> SuitePeer:
        """A registered job client (customer ``customer_id``, default this case's own customer)."""
        client_id = f"conf-client-{uuid.uuid4().hex[:8]}"
        peer = await self.raw(name or self._name("client"), role="job_client", conn_id=client_id)
        peer.customer_id = customer_id or self.customer
        peer.client_id = client_id
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
        client_id = f"conf-monitor-{uuid.uuid4().hex[:8]}"
        peer = await self.raw(name or self._name("monitor"), role="monitor", conn_id=client_id)
        peer.client_id = client_id
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
        worker_id = f"conf-worker-{uuid.uuid4().hex[:10]}"
        peer = await self.raw(name or self._name("worker"), role="worker", conn_id=worker_id)
        peer.worker_id = worker_id
        caps = {"services": list(services if services is not None else [self.service]), **capabilities}
        await self.register(
            peer, "worker", worker_id=peer.worker_id, capabilities=caps, subscribe_to_jobs=subscribe
        )
        return peer

    def auth_fields(self, role: str, token: str | None = None) -> dict[str, str]:
        """The register message's ``auth_token`` (the role's token unless given), with --token-in message."""
        token = self.options.token(role) if token is None else token
        return {"auth_token": token} if token and self.options.token_in == "message" else {}

    async def register(self, peer: SuitePeer, role: str, **fields: Any) -> dict[str, Any]:
        """Register ``peer`` (with this role's token when the run has one)."""
        kind = "register_worker" if role == "worker" else "register_client"
        reply = "worker_registered" if role == "worker" else "client_registered"
        fields.update(self.auth_fields(role))
        with self.precondition(kind, f"registering {peer.name} as {causes.ROLE_NAMES[role]}"):
            frame = await self.request(peer, kind, reply, **fields)
            if frame["type"] == "error":
                self.fail(
                    f"{peer.name}: {kind} was refused: {frame.get('error_code')} {frame.get('error')}",
                    expected=reply,
                    received=frame,
                    cause=causes.refused(kind, frame.get("error_code")),
                )
        return frame

    # the protocol's moves ---------------------------------------------------------------
    async def send(self, peer: SuitePeer, kind: str, **fields: Any) -> dict[str, Any]:
        async with self.lane(kind):
            self.step = f"{peer.name}: sending {kind}"
            return await peer.send(kind, **fields)

    def lane(self, kind: str = "submit_job") -> contextlib.AbstractAsyncContextManager[None]:
        """Around a submission or claim (send and reply): the run's queue lane, one at a time."""
        if kind in QUEUE_TYPES and self.lane_guard is not None:
            return self.lane_guard
        return contextlib.nullcontext()

    async def expect(
        self, peer: SuitePeer, kind: str | tuple[str, ...], timeout: float | None = None, **match: Any
    ) -> dict[str, Any]:
        """The next frame of ``kind`` whose fields equal ``match`` (other frames are kept)."""
        kinds = (kind,) if isinstance(kind, str) else kind
        want = "/".join(kinds) + (f" with {match}" if match else "")
        keys = sorted(k for k in match if k != "job_id")
        key = f"frame:{'/'.join(kinds)}:{peer.role}:{','.join(keys)}"
        limit, shortened = self.memory.timeout(key, self.timeout if timeout is None else timeout)
        self.step = f"{peer.name}: waiting for {want}"
        try:
            frame = await peer.wait(
                want,
                lambda f: f.get("type") in kinds and all(f.get(k) == v for k, v in match.items()),
                limit,
            )
        except StepTimeout as timed_out:
            self.memory.miss(key)
            received = [e.frame for e in peer.wire if e.direction == "received" and isinstance(e.frame, dict)]
            timed_out.cause = causes.missing(kinds, peer.role, keys, received)
            if shortened:
                timed_out.message += " (wait shortened: none has come in this run)"
            raise
        self.memory.hit(key)
        return frame

    async def request(
        self, peer: SuitePeer, kind: str, reply: str | tuple[str, ...], **fields: Any
    ) -> dict[str, Any]:
        """Send ``kind`` (with an ``id``) and return its reply: a frame of ``reply`` or ``error``.

        A reply is recognised by type; when it carries ``request_id`` (empq's D2, not in the
        reference) it must be ours.  A frame that carries our request_id but has another type
        fails the case at once.
        """
        replies = (reply,) if isinstance(reply, str) else reply
        kinds = (*replies, "error")
        rid = f"conf-{uuid.uuid4().hex[:12]}"
        async with self.lane(kind):
            await self.send(peer, kind, id=rid, **fields)
            want = f"{'/'.join(replies)} (or error) answering {kind}"
            stale, peer.backlog[:] = list(peer.backlog), []  # what came before answers no part of it
            try:
                return await self._reply(
                    peer,
                    kind,
                    replies,
                    want,
                    lambda f: f.get("type") in kinds and f.get("request_id") in (None, rid),
                    wrong=lambda f: f.get("request_id") == rid and f.get("type") not in kinds,
                )
            finally:
                peer.backlog[:0] = stale

    async def _reply(
        self,
        peer: SuitePeer,
        kind: str,
        replies: tuple[str, ...],
        want: str,
        match: Any,
        wrong: Any = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """Wait for the reply to ``kind`` (shortened once the run learned the hub does not answer it)."""
        key = f"reply:{kind}"
        limit, shortened = self.memory.timeout(key, self.timeout if timeout is None else timeout)
        self.step = f"{peer.name}: waiting for {want}"
        try:
            frame = await peer.wait(want, match, limit, wrong=wrong)
        except StepTimeout as timed_out:
            self.memory.miss(key)
            timed_out.cause = causes.unanswered(kind, replies, [f.get("type") for f in peer.backlog])
            if shortened:
                timed_out.message += f" (wait shortened: {kind} has not been answered in this run)"
            raise
        except WrongReply as wrong_reply:
            self.memory.hit(key)
            wrong_reply.cause = causes.wrong_reply(kind, wrong_reply.frame.get("type"), replies)
            raise
        if frame.get("type") in replies or "request_id" in frame:  # an error without request_id may be
            self.memory.hit(key)  # an earlier message's: it does not show that the hub answers this one
        return frame

    async def answer(
        self, peer: SuitePeer, frame: bytes | str | dict[str, Any], timeout: float | None = None
    ) -> dict[str, Any]:
        """Send any frame and return the first frame received after it (whatever its type)."""
        kind = _kind_of(frame)
        async with self.lane(kind):
            stale, peer.backlog[:] = list(peer.backlog), []  # only what arrives after sending counts
            try:
                self.step = f"{peer.name}: sending a raw frame"
                await peer.send_raw(frame)
                want = f"a reply to {kind}"
                return await self._reply(
                    peer, kind, ("error", "unknown"), want, lambda f: True, None, timeout
                )
            finally:
                peer.backlog[:0] = stale

    async def alive(self, peer: SuitePeer) -> None:
        """ping -> pong: the connection still works.  Unless the case checks ping itself, a hub that
        does not answer ping passes this with its connection still open (and a note)."""
        try:
            frame = await self.request(peer, "ping", "pong")
            if frame["type"] == "error" and "request_id" not in frame:  # perhaps an earlier message's error
                peer.backlog.append(frame)
                frame = await self._reply(peer, "ping", ("pong",), "pong answering ping", _is_pong)
        except StepTimeout:
            if "ping" in self.case.messages or not peer.is_open:
                raise
            self.note(f"{peer.name}: ping not answered; the connection is still open")
            return
        self.check(
            frame["type"] == "pong",
            f"{peer.name}: ping answered with {frame['type']}",
            expected="pong",
            received=summary(frame),
            cause=causes.wrong_reply("ping", frame["type"], ("pong",)),
        )

    async def submit(self, client: SuitePeer, **fields: Any) -> dict[str, Any]:
        """submit_job (this case's service and job type unless given) -> job_accepted."""
        fields.setdefault("job_type", self.job_type)
        fields.setdefault("payload", {"prompt": "a beautiful landscape with mountains", "steps": 30})
        fields.setdefault("requirements", {"service_type": self.service})
        with self.precondition("submit_job", "submitting a job"):
            frame = await self.request(client, "submit_job", "job_accepted", **fields)
            if frame["type"] != "job_accepted":
                self.fail(
                    f"{client.name}: submit_job was refused: {frame.get('error_code')} {frame.get('error')}",
                    expected="job_accepted",
                    received=frame,
                    cause=causes.refused("submit_job", frame.get("error_code")),
                )
            job_id = frame.get("job_id")
            if not isinstance(job_id, str) or not job_id:
                self.fail(
                    "job_accepted carries no job_id",
                    expected="job_id",
                    received=frame,
                    cause=Cause("accepted:no-job-id", "job_accepted carries no job_id"),
                )
        self.jobs[job_id] = client
        return frame

    async def claim(self, worker: SuitePeer, max_jobs: int = 1, **fields: Any) -> list[dict[str, Any]]:
        """claim_job -> the job_assigned frames received (up to ``max_jobs``).

        The claim is over at ``max_jobs`` assignments, at any other reply to it (empq ends an
        unsatisfied claim with ``ack`` no_job_available), or after ``silence`` seconds of quiet.
        """
        async with self.lane("claim_job"):
            return await self._claim(worker, max_jobs, **fields)

    async def _claim(self, worker: SuitePeer, max_jobs: int, **fields: Any) -> list[dict[str, Any]]:
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
                self.silence,
            )
            if frame is None:
                break
            if frame["type"] == "error":
                self.fail(
                    f"{worker.name}: claim_job refused: {frame.get('error_code')} {frame.get('error')}",
                    expected="job_assigned or no job",
                    received=frame,
                    cause=causes.refused("claim_job", frame.get("error_code")),
                )
            if frame["type"] != "job_assigned":
                break
            if not isinstance(frame.get("job_id"), str):
                self.fail(
                    f"{worker.name}: job_assigned carries no job_id",
                    expected="job_id",
                    received=frame,
                    cause=Cause("assigned:no-job-id", "job_assigned carries no job_id"),
                )
            jobs.append(frame)
        return jobs

    async def claim_one(self, worker: SuitePeer, job_id: str, **fields: Any) -> dict[str, Any]:
        with self.precondition("claim_job", f"having {worker.name} claim the job"):
            jobs = await self.claim(worker, **fields)
            self.check(
                [j["job_id"] for j in jobs] == [job_id],
                f"{worker.name}: claim_job did not assign the queued job",
                expected=f"job_assigned for {job_id}",
                received=[summary(j) for j in jobs] or "no job_assigned",
                cause=Cause(
                    "claim:not-assigned", "claim_job does not assign the queued job the worker can run"
                ),
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
        with self.precondition("complete_job", f"having {worker.name} complete the job"):
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
                cause=causes.refused("complete_job", frame.get("error_code")),
            )
        self.finished(job_id)
        return frame

    def track(self, frame: dict[str, Any] | None, client: SuitePeer) -> None:
        """A job_accepted the case did not ask for (bad input accepted): cancelled at cleanup."""
        if frame is not None and frame.get("type") == "job_accepted" and isinstance(frame.get("job_id"), str):
            self.jobs[frame["job_id"]] = client

    def finished(self, job_id: str) -> None:
        """The case saw this job end: no cancellation needed at cleanup."""
        self.jobs.pop(job_id, None)

    # cleanup ----------------------------------------------------------------------------
    async def cleanup(self, graceful: bool = True) -> None:
        """Cancel jobs that may still be queued, close every peer; errors are ignored.  After a
        failure connections are dropped, not closed: a hub in trouble must not stall the run."""
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._cancel_leftovers(), 2.0)
        await asyncio.gather(*(self._leave(p, graceful) for p in self.peers), return_exceptions=True)

    async def _leave(self, peer: SuitePeer, graceful: bool) -> None:
        """Say goodbye (a worker's jobs go back at once, not after a reconnect grace), then close."""
        if peer.is_open:
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


def _is_pong(frame: dict[str, Any]) -> bool:
    return frame.get("type") == "pong"


def _kind_of(frame: bytes | str | dict[str, Any]) -> str:
    """The type of a frame about to be sent, for the words of its reply's cause."""
    if not isinstance(frame, dict):
        try:
            frame = orjson.loads(frame)
        except orjson.JSONDecodeError:
            return "a frame that is not JSON"
    if not isinstance(frame, dict):
        return "a JSON frame that is not an object"
    kind = frame.get("type")
    return kind if isinstance(kind, str) and kind else "a message without a string type"


def expect_field(ctx: Ctx, frame: dict[str, Any], name: str, expected: Any, what: str = "") -> None:
    """Check one field of a received frame against the value that follows from what was sent."""
    got = frame.get(name, "(absent)")
    cause = None
    if name == "type" and got == "error" and what:  # the hub refused what we asked: the same cause everywhere
        code = frame.get("error_code")
        kind = what.removeprefix("reply to ")
        if kind in default_schemas().messages:
            cause = causes.refused(kind, code)
        else:
            cause = Cause(f"error-reply:{what}:{code}", f"{what} is an error {code}, not {expected}")
    ctx.check(
        got == expected,
        f"{what or frame.get('type')}: {name} is {got!r}, expected {expected!r}",
        expected={name: expected},
        received=summary(frame) | {name: got},
        cause=cause,
    )


__all__ = ["ConnectionLost", "Ctx", "Options", "expect_field"]
