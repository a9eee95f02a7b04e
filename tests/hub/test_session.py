"""The sans-I/O session: no sockets, no Redis.  The VALIDITY table is the documentation and,
here, the test: every (role, message type) pair is tried."""

from __future__ import annotations

import json

import pytest
from empq.hub.session import VALIDITY, Accepted, Refused, Role, Session
from reference_examples import schema_examples

from empq import protocol

EXAMPLES = {kind: items[0] for kind, items in schema_examples().items() if items}


def session_as(role: Role) -> Session:
    return Session("conn-1", role=role, client_id="app", worker_id="worker-gpu-01")


def expected_senders(repo) -> dict[str, set[Role]]:
    """Who may send what, from sources other than the VALIDITY table: the direction envelopes of
    schemas/ (what a job client, what a worker sends) and spec D3 (before registering only ping,
    pong and disconnect, besides registering; a monitor submits no job; one registration only)."""
    envelope = {
        name: set(
            json.loads((repo / "schemas" / "envelopes" / f"{name}.json").read_text())["discriminator"][
                "mapping"
            ]
        )
        for name in ("client_to_hub", "worker_to_hub")
    }
    expected: dict[str, set[Role]] = {}
    for kind in envelope["client_to_hub"] | envelope["worker_to_hub"]:
        roles: set[Role] = set()
        if kind in ("register_client", "register_worker", "ping", "pong", "disconnect"):
            roles.add(Role.NEW)
        if kind not in ("register_client", "register_worker"):
            if kind in envelope["client_to_hub"]:
                roles.add(Role.JOB_CLIENT)
                if kind != "submit_job":
                    roles.add(Role.MONITOR)
            if kind in envelope["worker_to_hub"]:
                roles.add(Role.WORKER)
        expected[kind] = roles
    return expected


def test_table_is_what_the_schemas_and_d3_say(repo):
    assert {kind: set(roles) for kind, roles in VALIDITY.items()} == expected_senders(repo)
    assert set(VALIDITY) == set(protocol.INBOUND)


@pytest.mark.parametrize("kind", sorted(VALIDITY))
@pytest.mark.parametrize("role", list(Role))
def test_each_role_and_type(role, kind, repo):
    allowed = expected_senders(repo)[kind]
    example = dict(EXAMPLES.get(kind) or {"type": kind, "timestamp": 1})
    if kind == "chunked_message_complete":
        example = {"type": kind, "chunk_id": "c", "total_size": 1, "timestamp": 1}
    example["id"] = "req-1"
    outcome = session_as(role).receive(json.dumps(example))
    if role in allowed:
        assert isinstance(outcome, Accepted), outcome
        assert outcome.message.type == kind and outcome.request_id == "req-1"
        return
    assert isinstance(outcome, Refused)
    registering = kind in ("register_client", "register_worker")
    if role is Role.NEW:
        expected = "NOT_REGISTERED"
    elif registering:
        expected = "ALREADY_REGISTERED"
    else:
        expected = "PERMISSION_DENIED"
    assert outcome.reply.error_code.value == expected
    assert outcome.reply.request_id == "req-1"


def test_invalid_json_unknown_type_and_outbound_type():
    s = session_as(Role.JOB_CLIENT)
    bad = s.receive(b"{nope")
    assert isinstance(bad, Refused) and protocol.to_dict(bad.reply)["details"]["reason"] == "invalid_json"
    unknown = s.receive(b'{"type":"invalid_type","timestamp":1,"id":"x"}')
    assert isinstance(unknown, Refused) and unknown.reply.type == "unknown"
    assert unknown.reply.request_id == "x" and "invalid_type" in unknown.reply.original_message
    outbound = s.receive(b'{"type":"job_assigned","timestamp":1}')
    assert isinstance(outbound, Refused) and protocol.to_dict(outbound.reply)["details"]["field"] == "type"
    not_object = s.receive(b"[1]")
    assert isinstance(not_object, Refused) and not_object.reply.error_code.value == "INVALID_PARAMETERS"


def test_unknown_echo_is_bounded():
    s = session_as(Role.JOB_CLIENT)
    frame = json.dumps({"type": "zzz", "timestamp": 1, "blob": "x" * 100_000})
    out = s.receive(frame)
    assert isinstance(out, Refused) and len(out.reply.original_message) == 4096


def test_worker_cannot_speak_for_another_worker():
    s = session_as(Role.WORKER)
    out = s.receive(json.dumps({**EXAMPLES["worker_heartbeat"], "worker_id": "someone-else"}))
    assert isinstance(out, Refused) and out.reply.error_code.value == "PERMISSION_DENIED"
    assert protocol.to_dict(out.reply)["details"]["field"] == "worker_id"


def test_schema_violation_names_the_field_and_value():
    s = session_as(Role.JOB_CLIENT)
    frame = dict(EXAMPLES["submit_job"], priority=500, id="p")
    out = s.receive(json.dumps(frame))
    assert isinstance(out, Refused)
    assert protocol.to_dict(out.reply)["details"] == {
        "field": "priority",
        "message": "Input should be less than or equal to 100",
        "provided_value": 500,
    }
    assert out.reply.request_id == "p"
