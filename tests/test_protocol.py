"""empq.protocol: build, encode, parse and explain messages."""

from __future__ import annotations

import json

import pytest
from empq.generated.messages.job_accepted import JobAccepted
from empq.generated.messages.submit_job import SubmitJob
from pydantic import ValidationError

from empq import protocol


def test_make_fills_type_and_timestamp_and_encode_keeps_only_what_was_set():
    msg = protocol.make(JobAccepted, job_id="job-1", status="queued", position=1, notified_workers=0)
    data = json.loads(protocol.encode(msg))
    assert data["type"] == "job_accepted"
    assert isinstance(data["timestamp"], int) and data["timestamp"] > 1_700_000_000_000
    assert set(data) == {"type", "timestamp", "job_id", "status", "position", "notified_workers"}
    assert type(protocol.parse_from_hub(protocol.encode(msg))) is JobAccepted


def test_explicit_null_is_kept():
    msg = protocol.make(
        JobAccepted, job_id="j", status="queued", position=2, notified_workers=0, estimated_start=None
    )
    assert json.loads(protocol.encode(msg))["estimated_start"] is None


def test_make_validates():
    with pytest.raises(ValidationError):
        protocol.make(JobAccepted, job_id="", status="queued", position=0, notified_workers=0)


def test_error_details_for_nested_field():
    frame = {"type": "submit_job", "job_type": "t", "payload": {}, "timestamp": 1,
             "requirements": {"hardware": {"gpu_memory_gb": -1}}}  # fmt: skip
    with pytest.raises(ValidationError) as info:
        protocol.parse_to_hub(json.dumps(frame))
    details = protocol.error_details(info.value, frame)
    assert details["field"] == "requirements.hardware.gpu_memory_gb"
    assert details["provided_value"] == -1
    assert "greater than 0" in details["message"]


def test_error_details_for_missing_field_and_bad_json():
    with pytest.raises(ValidationError) as info:
        protocol.parse_to_hub('{"type":"submit_job","payload":{},"timestamp":1}')
    assert protocol.error_details(info.value)["field"] == "job_type"
    with pytest.raises(ValidationError) as info:
        protocol.parse_to_hub("{not json")
    details = protocol.error_details(info.value)
    assert details["reason"] == "invalid_json"


def test_inbound_and_outbound_cover_all_types(schema_set):
    assert set(protocol.MESSAGE_CLASSES) == set(schema_set.messages)
    assert "submit_job" in protocol.INBOUND and "submit_job" not in protocol.OUTBOUND
    assert "job_assigned" in protocol.OUTBOUND
    assert SubmitJob is protocol.INBOUND["submit_job"]
