"""Frame generators and a WebSocket driver for fuzzing the hub (tests/fuzz and bench/fuzz_long.py).

Generators (hypothesis strategies, all yielding ``Shot``):

- ``valid_frames(kind)``: frames valid against ``schemas/messages/<kind>.json`` (hypothesis-jsonschema
  over the schema with its ``$ref``s inlined), for every inbound message type;
- ``near_valid_frames(kind)``: a valid frame with one field broken (wrong type, out of range,
  missing required, extra nested junk);
- ``mutated_bytes()``: byte-level flips, inserts and deletes on a valid frame's JSON;
- ``hostile_frames()``: non-UTF-8 bytes, oversized strings, deeply nested JSON.

``Driver`` sends a shot over a real WebSocket from a connection in one of the roles (``job_client``,
``monitor``, ``worker``, ``new`` = unregistered), follows it with a ``ping`` and checks what came
back (see ``Driver.fire``).  Every frame received is validated against the schemas by the Peer.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import orjson
import pydantic_core
from empq.conformance.peer import Peer, PeerError
from empq.conformance.schemas import default_schemas
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema
from websockets.exceptions import ConnectionClosed

from empq import protocol

ROLES = ("job_client", "monitor", "worker", "new")
KINDS = tuple(sorted(protocol.INBOUND))
MAX_FRAME = 10 * 1024 * 1024  # the hub's default max_message_size (D1)
UNREGISTERED_FRAME = 128 * 1024  # the hub's default max_unregistered_frame (D19)

# the reply a request of each kind gets (besides error); D6, D10, D14, D15
REPLIES: dict[str, frozenset[str]] = {
    "register_client": frozenset({"client_registered"}),
    "register_worker": frozenset({"worker_registered"}),
    "submit_job": frozenset({"job_accepted"}),
    "request_job_status": frozenset({"response_job_status"}),
    "cancel_job": frozenset({"job_cancelled"}),
    "claim_job": frozenset({"job_assigned", "ack"}),
    "job_accepted_by_worker": frozenset({"ack"}),
    "update_job_progress": frozenset({"ack"}),
    "worker_status": frozenset({"ack"}),
    "service_request": frozenset({"ack"}),
    "connector_ws_status": frozenset({"ack"}),
    "complete_job": frozenset({"job_completed_ack"}),
    "fail_job": frozenset({"job_failed_ack"}),
    "worker_heartbeat": frozenset({"worker_heartbeat_ack"}),
    "subscribe_job": frozenset({"subscription_confirmed"}),
    "subscribe_job_notifications": frozenset({"job_notifications_subscribed"}),
    "subscribe_stats": frozenset({"subscription_confirmed"}),
    "request_stats": frozenset({"stats_response"}),
    "chunked_message": frozenset({"ack", "chunked_message_complete"}),
    "ping": frozenset({"pong"}),
}
SILENT_OK = frozenset({"pong", "chunked_message_complete", "disconnect"})  # receipts: no reply of their own

_DROP = {"$id", "$schema", "format", "description", "title", "examples", "$comment", "$defs", "discriminator"}
_NAMED = {"properties", "patternProperties"}  # their keys are property names, not keywords


@dataclass
class Shot:
    """One frame to send: ``data`` as bytes, ``binary`` when it must go as a binary frame (not UTF-8)."""

    data: bytes
    family: str  # valid | near_valid | bytes | hostile
    binary: bool = False
    aim: int = 0  # seed for pointing ids at live jobs / the connection's own worker id

    def __repr__(self) -> str:
        head = self.data[:300]
        return f"Shot({self.family}, {len(self.data)} bytes, binary={self.binary}, {head!r})"


# --- schemas -> strategies ------------------------------------------------------------------


def _inline(node: Any, resolver: Any, named: bool = False) -> Any:
    if isinstance(node, list):
        return [_inline(v, resolver) for v in node]
    if not isinstance(node, dict):
        return node
    if named:
        return {k: _inline(v, resolver) for k, v in node.items()}
    if "$ref" in node:
        resolved = resolver.lookup(node["$ref"])
        target = _inline(resolved.contents, resolved.resolver)
        rest = _inline({k: v for k, v in node.items() if k != "$ref"}, resolver)
        return {"allOf": [target], **rest} if rest else target
    return {k: _inline(v, resolver, k in _NAMED) for k, v in node.items() if k not in _DROP}


@cache
def inlined_schema(kind: str) -> dict[str, Any]:
    """The message schema of ``kind``, self-contained (refs inlined, ``format`` dropped)."""
    schemas = default_schemas()
    schema = schemas.messages[kind]
    return _inline(schema, schemas.registry.resolver(base_uri=schema["$id"]))


def _json_ok(frame: dict[str, Any]) -> bool:
    try:
        orjson.dumps(frame)
    except TypeError:
        return False
    return True


@cache
def _valid_dicts(kind: str) -> st.SearchStrategy[dict[str, Any]]:
    return from_schema(inlined_schema(kind)).filter(_json_ok)


def valid_frames(kind: str) -> st.SearchStrategy[Shot]:
    return st.builds(
        lambda frame, aim: Shot(orjson.dumps(frame), "valid", aim=aim),
        _valid_dicts(kind),
        st.integers(0, 2**16),
    )


JUNK = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
WRONG = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
)


@st.composite
def _break_one(draw: Any, kind: str) -> Shot:
    frame = draw(_valid_dicts(kind))
    schema = inlined_schema(kind)
    fields = sorted(set(frame) | set(schema.get("properties", {})))
    how = draw(st.sampled_from(("wrong_type", "out_of_range", "missing", "junk", "drop_type", "wrong_kind")))
    name = draw(st.sampled_from(fields))
    if how == "wrong_type":
        frame[name] = draw(WRONG)
    elif how == "out_of_range":
        frame[name] = draw(
            st.sampled_from((-1, -(2**63), 2**63, 2**64, 101, 1e308, -1e-9, "", "x" * 300, 10**30))
        )
    elif how == "missing":
        required = [r for r in frame if r in ("type", "timestamp", *schema.get("required", ()))]
        frame.pop(draw(st.sampled_from(required or fields)), None)
    elif how == "junk":
        target = frame
        for key in draw(st.lists(st.sampled_from(fields), min_size=1, max_size=3)):
            if isinstance(target.get(key), dict):
                target = target[key]
        target[draw(st.text(min_size=1, max_size=10))] = draw(JUNK)
    elif how == "drop_type":
        frame["type"] = draw(st.sampled_from(("", "nonsense", "job_assigned", "error", "PING", 7, None)))
    else:  # a field set that belongs to another message type
        frame["type"] = draw(st.sampled_from(KINDS))
    data = orjson.dumps(frame, option=orjson.OPT_NON_STR_KEYS) if _json_ok(frame) else b"{}"
    return Shot(data, "near_valid", aim=draw(st.integers(0, 2**16)))


def near_valid_frames(kind: str) -> st.SearchStrategy[Shot]:
    return _break_one(kind)


@st.composite
def _mutate(draw: Any) -> Shot:
    base = draw(st.sampled_from(KINDS).flatmap(valid_frames)).data
    data = bytearray(base)
    for _ in range(draw(st.integers(1, 8))):
        op = draw(st.sampled_from(("flip", "insert", "delete", "set")))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete" and data:
            del data[at : at + draw(st.integers(1, 8))]
        elif data:
            data[at] = draw(st.sampled_from(b'{}[]",:\\0\x00\xff\xc3'))
    out = bytes(data)
    return Shot(out, "bytes", binary=not _utf8(out))


def mutated_bytes() -> st.SearchStrategy[Shot]:
    return _mutate()


def _as_json(data: bytes) -> Any:
    """The frame as JSON by the hub's parser (jiter: big integers allowed, nesting limited), or None."""
    try:
        return pydantic_core.from_json(data)
    except ValueError:
        return None


def _utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def nested(depth: int, inside: bool, kind: str = "ping") -> bytes:
    """``depth`` levels of [[[...]]], alone or as a field of an otherwise valid message."""
    deep = b"[" * depth + b"]" * depth
    if not inside:
        return deep
    return b'{"type":"%s","timestamp":1,"id":"deep","payload":%s}' % (kind.encode(), deep)


def big_string(size: int, kind: str = "submit_job") -> bytes:
    text = b"x" * size
    if kind == "submit_job":
        return b'{"type":"submit_job","timestamp":1,"id":"big","job_type":"t","payload":{"s":"%s"}}' % text
    return b'{"type":"%s","timestamp":1,"id":"big","junk":"%s"}' % (kind.encode(), text)


@st.composite
def _hostile(draw: Any) -> Shot:
    what = draw(st.sampled_from(("non_utf8", "nested", "big", "not_object", "numbers", "dup_keys")))
    if what == "non_utf8":
        base = draw(st.sampled_from(KINDS).flatmap(valid_frames)).data
        at = draw(st.integers(0, len(base)))
        bad = draw(st.sampled_from((b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80", b"\x80")))
        return Shot(base[:at] + bad + base[at:], "hostile", binary=True)
    if what == "nested":
        depth = draw(
            st.sampled_from((50, 127, 128, 129, 255, 256, 257, 1000, 1023, 1024, 1025, 5000, 100_000))
        )
        return Shot(nested(depth, draw(st.booleans()), draw(st.sampled_from(KINDS))), "hostile")
    if what == "big":
        size = draw(st.sampled_from((4095, 4097, 65_536, 1_048_577, 2_000_000)))
        return Shot(big_string(size, draw(st.sampled_from(KINDS))), "hostile")
    if what == "not_object":
        raw = draw(
            st.sampled_from((b"", b" ", b"null", b"1", b"[]", b'"ping"', b"true", b"{", b"}", b"1e999"))
        )
        return Shot(raw, "hostile")
    if what == "numbers":
        number = draw(st.sampled_from((b"1e999", b"-0", b"1.0", b"9" * 400, b"-9" * 1, b"0.0000001e-400")))
        return Shot(b'{"type":"ping","id":"n","timestamp":%s}' % number, "hostile")
    return Shot(b'{"type":"ping","type":"submit_job","id":"d","timestamp":1,"timestamp":"x"}', "hostile")


def hostile_frames() -> st.SearchStrategy[Shot]:
    return _hostile()


def any_frame() -> st.SearchStrategy[Shot]:
    kinds = st.sampled_from(KINDS)
    return st.one_of(
        kinds.flatmap(valid_frames),
        kinds.flatmap(near_valid_frames),
        mutated_bytes(),
        hostile_frames(),
    )


# --- the driver -----------------------------------------------------------------------------


class FuzzFailure(AssertionError):
    pass


@dataclass
class Driver:
    """Role connections to a running hub, a sentinel, and the checks made after every frame."""

    url: str
    timeout: float = 10.0
    conns: dict[str, Peer] = field(default_factory=dict)
    worker_ids: dict[str, str] = field(default_factory=dict)
    job_ids: list[str] = field(default_factory=list)
    sentinel: Peer | None = None
    frames: int = 0
    replies: Counter[str] = field(default_factory=Counter)
    families: Counter[str] = field(default_factory=Counter)
    closes: Counter[str] = field(default_factory=Counter)
    # picows answers a frame over its max_frame_size itself: close 1009, then the socket is dropped
    # 10 ms later (picows' _DISCONNECT_AFTER_ERROR_DELAY); a client still sending the frame may see
    # the reset (1006) before the close frame. Counted apart, as "1009-or-reset".
    reset_after_1009_ok: bool = False
    # the unregistered connection is replaced this often: the hub closes connections that do not
    # register within its registration timeout (10 s by default, spec D19)
    fresh_new_every: float = 5.0
    new_since: float = 0.0

    async def start(self) -> None:
        self.sentinel = await self._register("job_client", "sentinel")
        for role in ROLES:
            self.conns[role] = await self._register(role)

    async def stop(self) -> None:
        for peer in [*self.conns.values(), *([self.sentinel] if self.sentinel else [])]:
            try:
                await peer.close()
            except Exception:  # noqa: BLE001 - closing a peer the hub already closed
                pass

    async def _register(self, role: str, name: str | None = None) -> Peer:
        name = name or f"fz-{role}-{uuid.uuid4().hex[:6]}"
        peer = await Peer.connect(self.url, name, timeout=self.timeout)
        await peer.expect("connection_established")
        if role == "new":
            self.new_since = time.monotonic()
        if role in ("job_client", "monitor"):
            perms = ["view_all_jobs", "view_system_stats", "manage_jobs"] if role == "monitor" else None
            reply = await peer.request(
                "register_client",
                "client_registered",
                client_type=role,
                client_id=name,
                **({"permissions": perms} if perms else {}),
            )
            assert reply["type"] == "client_registered", reply
        elif role == "worker":
            reply = await peer.request(
                "register_worker",
                "worker_registered",
                worker_id=name,
                capabilities={"services": ["comfyui", "a1111"], "max_concurrent_jobs": 4},
            )
            assert reply["type"] == "worker_registered", reply
            self.worker_ids[role] = name
        peer.backlog.clear()
        return peer

    def _aim(self, role: str, shot: Shot) -> bytes:
        """Point a parsed frame's ids at live state now and then, so handlers get past lookups."""
        if shot.family not in ("valid", "near_valid") or shot.aim % 3 == 0:
            return shot.data
        try:
            frame = orjson.loads(shot.data)
        except orjson.JSONDecodeError:
            return shot.data
        if not isinstance(frame, dict):
            return shot.data
        if "worker_id" in frame and role == "worker" and shot.aim % 3 == 1:
            frame["worker_id"] = self.worker_ids.get(role)
        if frame.get("type") == "submit_job":
            frame.pop("job_id", None)  # D7: refused otherwise
        elif "job_id" in frame and self.job_ids:
            frame["job_id"] = self.job_ids[shot.aim % len(self.job_ids)]
        return orjson.dumps(frame)

    async def fire(self, role: str, shot: Shot) -> list[dict[str, Any]]:
        """Send ``shot`` from ``role``'s connection, then a ping; check and return the replies.

        Checks: a frame with a string ``id`` gets a reply with that ``request_id`` whose type is the
        request's reply or ``error``/``unknown`` (receipts such as ``pong`` may stay silent); a frame
        that is not a JSON object gets an ``error``; the ping gets its pong (the hub is alive and
        the connection open), unless the frame was over the size limit (1009) or a ``disconnect``
        (1000), the only closes allowed.  Every frame received validates against the schemas.
        """
        if role == "new" and time.monotonic() - self.new_since > self.fresh_new_every:
            await self._replace(role)
        peer = self.conns[role]
        data = self._aim(role, shot)
        self.frames += 1
        self.families[shot.family] += 1
        frame = _as_json(data)  # as the hub reads it (invalid UTF-8 is invalid JSON)
        # a disconnect the hub accepts closes the connection (1000); one it refuses gets an error
        goodbye = isinstance(frame, dict) and frame.get("type") == "disconnect"
        limit = UNREGISTERED_FRAME if role == "new" else MAX_FRAME
        if len(data) > limit:  # D1, D19: refused with 1009, and only this connection
            try:
                await peer.ws.send(data if shot.binary else data.decode())
            except (ConnectionResetError, ConnectionClosed):
                # a loaded machine: the hub's 1009 (and picows' reset after it) came while the
                # rest of the 10 MB frame was still being written
                pass
            code = await peer.closed()
            if code in (1006, None) and self.reset_after_1009_ok and len(data) > MAX_FRAME:
                self.closes["1009-or-reset"] += 1
                await self._replace(role)
                return []
            if code != 1009:
                raise FuzzFailure(f"{role}: close code {code} for a {len(data)}-byte frame, not 1009")
            self.closes[str(code)] += 1
            await self._replace(role)
            return []
        try:
            await peer.ws.send(data if shot.binary else data.decode())
            ping_id = peer.next_id()
            await peer.send("ping", id=ping_id)
        except ConnectionClosed:
            pass
        got: list[dict[str, Any]] = []
        try:
            while True:
                reply = await peer.recv()
                got.append(reply)
                if reply.get("type") == "pong" and reply.get("request_id") == ping_id:
                    break
        except PeerError as exc:
            code = peer.ws.close_code
            closed_ok = code == 1009 and len(data) > limit
            if code is not None and (closed_ok or code == 1000 and goodbye):
                self.closes[str(code)] += 1
                await self._replace(role)
                return got
            raise FuzzFailure(f"{role}: {exc} (close code {code}) after {shot!r}") from exc
        for reply in got:
            self.replies[reply["type"]] += 1
            if reply["type"] in ("job_accepted", "job_assigned") and reply.get("job_id"):
                self.job_ids.append(reply["job_id"])
                del self.job_ids[:-50]
        self._check(role, shot, frame, got)
        if goodbye:  # accepted, the hub closes it once the replies are out (the pong may come first)
            try:
                code = await peer.closed(timeout=1.0)
            except PeerError:
                return got  # refused: still open
            if code != 1000:
                raise FuzzFailure(f"{role}: close code {code} after disconnect, not 1000")
            self.closes[str(code)] += 1
            await self._replace(role)
        if role == "new" and any(r["type"] in ("client_registered", "worker_registered") for r in got):
            await self._replace(role)  # it registered: keep an unregistered one
        return got

    def _check(self, role: str, shot: Shot, frame: Any, got: list[dict[str, Any]]) -> None:
        answers = got[:-1]
        if not isinstance(frame, dict):
            if not any(r["type"] == "error" for r in answers):
                raise FuzzFailure(f"{role}: no error for a frame that is not a JSON object: {shot!r}: {got}")
            return
        rid = frame.get("id")
        kind = frame.get("type")
        if not isinstance(rid, str) or not rid:
            return
        mine = [r for r in answers if r.get("request_id") == rid]
        if not mine:
            if kind in SILENT_OK:
                return
            raise FuzzFailure(f"{role}: silence for {shot!r}: {got}")
        allowed = REPLIES.get(kind, frozenset()) | {"error", "unknown"} if isinstance(kind, str) else None
        if allowed is not None and mine[0]["type"] not in allowed:
            raise FuzzFailure(f"{role}: {mine[0]['type']} is no answer to {kind}: {shot!r}: {got}")

    async def _replace(self, role: str) -> None:
        try:
            await self.conns[role].close()
        except Exception:  # noqa: BLE001 - already closed by the hub
            pass
        self.conns[role] = await self._register(role)

    async def sentinel_ok(self) -> None:
        assert self.sentinel is not None
        reply = await self.sentinel.request("request_stats", "stats_response")
        if reply["type"] != "stats_response":
            raise FuzzFailure(f"sentinel: {reply}")
        self.sentinel.backlog.clear()

    async def lifecycle(self) -> None:
        """A full normal job lifecycle on fresh connections: submit, claim, accept, progress, complete."""
        client = await self._register("job_client")
        worker_id = f"fz-life-{uuid.uuid4().hex[:6]}"
        worker = await Peer.connect(self.url, worker_id, timeout=self.timeout)
        try:
            await worker.expect("connection_established")
            reply = await worker.request(
                "register_worker",
                "worker_registered",
                worker_id=worker_id,
                capabilities={"services": ["fuzz-lifecycle"]},
            )
            assert reply["type"] == "worker_registered", reply
            accepted = await client.request(
                "submit_job",
                "job_accepted",
                job_type="lifecycle",
                priority=100,
                payload={"n": 1},
                requirements={"service_type": "fuzz-lifecycle"},
            )
            assert accepted["type"] == "job_accepted", accepted
            job_id = accepted["job_id"]
            await worker.send("claim_job", id=worker.next_id(), worker_id=worker_id, max_jobs=1)
            assigned = await worker.expect("job_assigned", job_id=job_id)
            assert assigned["job_id"] == job_id
            ok = await worker.request("job_accepted_by_worker", "ack", job_id=job_id, worker_id=worker_id)
            assert ok["type"] == "ack", ok
            ok = await worker.request(
                "update_job_progress", "ack", job_id=job_id, worker_id=worker_id, progress=50
            )
            assert ok["type"] == "ack", ok
            done = await worker.request(
                "complete_job",
                "job_completed_ack",
                job_id=job_id,
                worker_id=worker_id,
                result={"success": True, "data": {}},
            )
            assert done["type"] == "job_completed_ack", done
            await client.expect("job_completed", job_id=job_id)
            status = await client.request("request_job_status", "response_job_status", job_id=job_id)
            assert status.get("status") == "completed", status
        finally:
            await worker.close()
            await client.close()
