"""Regressions for hub bugs the fuzzer found (one test per fix)."""

from __future__ import annotations

import pytest
from conftest import TRANSPORTS
from empq.hub.session import Refused, Session

# Valid JSON that orjson refuses (1e999, integers beyond the double range) but the
# hub's own parser (pydantic/jiter) reads: the refusal was "frame is not valid JSON" without the
# request_id (D2) and with a field that contradicted the reason.
VALID_JSON_ORJSON_REFUSES = [
    (b'{"type":"ping","id":"r1","timestamp":1e999}', "timestamp"),
    (
        b'{"type":"submit_job","id":"r1","timestamp":1,"job_type":"t","priority":%s}' % (b"9" * 400),
        "priority",
    ),
    (
        b'{"type":"claim_job","id":"r1","timestamp":1,"worker_id":"w","max_jobs":-%s}' % (b"9" * 40),
        "max_jobs",
    ),
]


@pytest.mark.parametrize(("frame", "field"), VALID_JSON_ORJSON_REFUSES)
def test_schema_error_in_valid_json_keeps_request_id(frame, field):
    outcome = Session("c1").receive(frame)
    assert isinstance(outcome, Refused)
    reply = outcome.reply
    assert reply.error_code == "INVALID_PARAMETERS"
    assert reply.request_id == "r1"
    assert reply.details.field == field
    assert "not valid JSON" not in reply.error


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_schema_error_in_valid_json_over_the_wire(peers):
    peer = await peers.raw()
    await peer.send_raw(VALID_JSON_ORJSON_REFUSES[0][0])
    reply = await peer.expect("error", request_id="r1")
    assert reply["error_code"] == "INVALID_PARAMETERS" and reply["details"]["field"] == "timestamp"
    assert (await peer.request("ping", "pong"))["type"] == "pong"


def test_really_invalid_json_still_says_so():
    for frame in (b'{"type":"ping","id":"r1"', b"\xff\xfe", b"[" * 100_000 + b"]" * 100_000):
        reply = Session("c1").receive(frame).reply
        assert reply.error_code == "INVALID_PARAMETERS" and reply.details.reason == "invalid_json"
        assert getattr(reply, "request_id", None) is None


# A worker's service_request with a known field set to null (the models accept it, the schema does
# not) was relayed to monitors as is: they received a frame that violates the schema.
@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize(
    ("kind", "fields"),
    [
        ("service_request", {"job_id": "job-x", "service_type": "comfyui", "endpoint": None, "url": None}),
        ("connector_ws_status", {"connector_type": "comfyui", "status": "connected", "details": None}),
    ],
)
async def test_relay_to_monitors_drops_null_fields(peers, kind, fields):
    monitor = await peers.monitor()
    worker = await peers.worker()
    await worker.send_raw({"type": kind, "timestamp": 1, "id": "n1", "worker_id": worker.worker_id, **fields})
    reply = await worker.expect(("ack", "error"), request_id="n1")
    assert reply["type"] == "ack", reply
    relayed = await monitor.expect(kind)  # the Peer validates it against the schema
    assert all(value is not None for value in relayed.values()), relayed
