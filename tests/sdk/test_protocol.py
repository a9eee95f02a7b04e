"""empq.protocol: build, encode, parse and explain messages."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Literal

import orjson
import pytest
from empq.conformance.schemas import default_schemas
from empq.generated.defs.base import BaseMessage
from empq.generated.messages.job_accepted import JobAccepted
from empq.generated.messages.submit_job import SubmitJob
from pydantic import ValidationError, field_validator
from schema_variants import variants

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


def test_outgoing_writes_what_make_and_encode_write():
    """The hot path's frames (orjson from the fields) say what the model's would."""
    fields = dict(job_id="job-1", status="queued", position=2, notified_workers=0, estimated_start=None)
    fast = protocol.outgoing(JobAccepted, timestamp=1_800_000_000_000, **fields)
    slow = protocol.make(JobAccepted, timestamp=1_800_000_000_000, **fields)
    assert json.loads(protocol.encode(fast)) == json.loads(protocol.encode(slow))
    assert protocol.to_dict(fast) == protocol.to_dict(slow)
    assert fast.type == "job_accepted" and fast.request_id is None
    fast.request_id = "r-1"
    assert json.loads(protocol.encode(fast))["request_id"] == "r-1"
    # JSON encoded already (a stored payload) is written as it is; a model as encode writes it
    from empq.generated.messages.job_update import JobUpdate

    nested = protocol.outgoing(JobUpdate, job_id="j", status="queued", payload=orjson.Fragment(b'{"a":[1]}'))
    assert json.loads(protocol.encode(nested))["payload"] == {"a": [1]}


def test_outgoing_frames_are_checked_by_their_model_when_asked(monkeypatch):
    """EMPQ_CHECK_FRAMES (on in the tests): a frame its model refuses, or would write otherwise,
    is an error where it is built — not a frame a peer receives."""
    monkeypatch.setattr(protocol, "CHECK_FRAMES", True)
    with pytest.raises(protocol.FrameCheckError, match="JobAccepted refuses"):
        protocol.encode(
            protocol.outgoing(JobAccepted, job_id="", status="queued", position=0, notified_workers=0)
        )
    with pytest.raises(protocol.FrameCheckError, match="JobAccepted refuses"):  # the models are strict
        protocol.encode(
            protocol.outgoing(JobAccepted, job_id="j", status="queued", position="2", notified_workers=0)
        )

    class Shouting(BaseMessage):  # a model that rewrites what it is given
        type: Literal["shouting"]
        text: str

        @field_validator("text")
        @classmethod
        def louder(cls, value: str) -> str:
            return value.upper()

    with pytest.raises(protocol.FrameCheckError, match="the model writes"):
        protocol.encode(protocol.outgoing(Shouting, text="hi"))
    monkeypatch.setattr(protocol, "CHECK_FRAMES", False)  # production: written as given
    bad = protocol.outgoing(JobAccepted, job_id="j", status="queued", position="2", notified_workers=0)
    assert json.loads(protocol.encode(bad))["position"] == "2"


def test_the_tests_check_every_outgoing_frame():
    assert protocol.CHECK_FRAMES, "tests/conftest.py sets EMPQ_CHECK_FRAMES=1 before empq is imported"


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


# --- lazy imports: a frame loads only its own class --------------------------------------------


def _from_hub_frames():
    """Every message the hub sends: its schema's examples and their invalid variants, and
    frames that name no such message."""
    schemas = default_schemas()
    tags = protocol.envelope_tags("from_hub")
    for kind in sorted(tags):
        schema = schemas.messages[kind]
        resolver = schemas.registry.resolver(base_uri=schema["$id"])
        for n, example in enumerate(schema["examples"]):
            yield pytest.param(json.dumps(example), id=f"{kind}-example-{n}")
        for label, _, bad in variants(schema, resolver, schema["examples"][0]):
            yield pytest.param(json.dumps(bad), id=f"{kind}-{label}")
    others = {
        "inbound-type": {"type": "submit_job", "job_type": "t", "payload": {}, "timestamp": 1},
        "unknown-type": {"type": "no_such_type", "timestamp": 1},
        "no-type": {"timestamp": 1},
        "type-not-a-string": {"type": 7, "timestamp": 1},
    }
    for label, frame in others.items():
        yield pytest.param(json.dumps(frame), id=label)
    for label, text in {
        "not-json": "{nope",
        "a-list": "[1, 2]",
        "huge-int": '{"type": "ping", "timestamp": 1e999}',
    }.items():
        yield pytest.param(text, id=label)


@pytest.mark.parametrize("frame", list(_from_hub_frames()))
def test_parse_from_hub_is_the_envelope_parse(frame):
    """Parsing with the class the frame's type names accepts and refuses exactly what the FromHub
    union does, with the same result and the same errors."""
    envelope = protocol.envelope("from_hub")
    try:
        expected = protocol.parse(envelope, frame)
    except ValidationError as exc:
        with pytest.raises(ValidationError) as info:
            protocol.parse_from_hub(frame)
        assert info.value.errors() == exc.errors()
        return
    got = protocol.parse_from_hub(frame)
    assert type(got) is type(expected)
    assert got == expected


def test_envelope_tags_and_message_classes_match_the_generated_envelopes():
    for name in protocol.ENVELOPE_NAMES:
        members = protocol.members(protocol.envelope(name))
        assert protocol.envelope_tags(name) == set(members), name
        for tag, cls in members.items():
            assert protocol.message_class(tag) is cls
    assert protocol.message_tags() == set(protocol.MESSAGE_CLASSES)
    assert protocol.ENVELOPES["from_hub"] is protocol.envelope("from_hub")
    with pytest.raises(KeyError):
        protocol.message_class("no_such_type")


def _modules_after(code: str) -> set[str]:
    """The modules a fresh interpreter has loaded after running ``code``."""
    script = f"import json, sys\n{code}\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-P", "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    return set(json.loads(out.stdout.splitlines()[-1]))


def test_importing_and_parsing_loads_only_the_classes_used():
    modules = _modules_after(
        "from empq import protocol\n"
        'protocol.parse_from_hub(\'{"type": "pong", "timestamp": 1}\')\n'
        "protocol.make(protocol.message_class('ping'))"
    )
    messages = {m.rsplit(".", 1)[1] for m in modules if m.startswith("empq.generated.messages.")}
    assert messages == {"pong", "ping"}
    assert not any(m.startswith("empq.generated.envelopes") for m in modules)
    every = _modules_after("from empq import protocol\nprotocol.MESSAGE_CLASSES")
    assert len([m for m in every if m.startswith("empq.generated.messages.")]) == len(protocol.message_tags())
