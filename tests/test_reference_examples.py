"""Every example of the protocol reference against schemas/, the generated models and the spec."""

from __future__ import annotations

import json

import pytest
import yaml
from empq.generated.defs.base import BaseMessage
from reference_examples import (
    MISSING,
    examples_by_type,
    reference_available,
    reference_examples,
    reference_path,
    schema_examples,
)

from empq import protocol

# the reference's examples when it is beside the repository; else these tests are skipped with
# one line (the examples the schemas carry are checked below either way)
needs_reference = pytest.mark.skipif(not reference_available(), reason=MISSING.format(path=reference_path()))
EXAMPLES = reference_examples() if reference_available() else []
IDS = [f"{i:02d}-{ex['type']}" for i, ex in enumerate(EXAMPLES)]


@needs_reference
def test_reference_has_44_message_types():
    assert len(examples_by_type()) == 44


@needs_reference
def test_every_reference_type_has_schema_and_asyncapi_message(repo, schema_set):
    doc = yaml.safe_load((repo / "spec" / "asyncapi.yaml").read_text())
    channel_messages = doc["channels"]["hub"]["messages"]
    for kind in examples_by_type():
        assert kind in schema_set.messages, f"no schema for {kind}"
        assert (repo / "schemas" / "messages" / f"{kind}.json").is_file()
        assert kind in doc["components"]["messages"], f"no AsyncAPI message for {kind}"
        assert kind in channel_messages, f"{kind} not on the hub channel"
        assert kind in protocol.MESSAGE_CLASSES, f"no generated class in an envelope for {kind}"


@needs_reference
@pytest.mark.parametrize("example", EXAMPLES, ids=IDS)
def test_example_validates_with_jsonschema(example, schema_set):
    assert schema_set.violations(example) == []


@needs_reference
@pytest.mark.parametrize("example", EXAMPLES, ids=IDS)
def test_example_parses_into_its_class_and_round_trips(example):
    cls = protocol.MESSAGE_CLASSES[example["type"]]
    # through the class itself
    msg = cls.model_validate_json(json.dumps(example))
    assert type(msg) is cls
    assert protocol.to_dict(msg) == example
    # through every envelope that carries this type: one call, right class, nothing lost
    carried = 0
    for envelope in protocol.ENVELOPES.values():
        if example["type"] in protocol.members(envelope):
            parsed = protocol.parse(envelope, json.dumps(example).encode())
            assert type(parsed) is cls
            assert isinstance(parsed, BaseMessage)
            assert json.loads(protocol.encode(parsed)) == example
            carried += 1
    assert carried >= 2  # its direction's envelope and the to_hub/from_hub union


@needs_reference
@pytest.mark.parametrize("example", EXAMPLES, ids=IDS)
def test_example_is_among_its_schema_examples(example, schema_set):
    """The schema carries the reference's own example."""
    assert example in schema_set.messages[example["type"]]["examples"]


def test_every_schema_has_examples_that_validate_and_parse(schema_set):
    for kind, schema in schema_set.messages.items():
        assert schema["examples"], kind
        for ex in schema["examples"]:
            assert schema_set.violations(ex) == [], (kind, ex)
            cls = protocol.MESSAGE_CLASSES[kind]
            assert protocol.to_dict(cls.model_validate(ex)) == ex


def test_extra_properties_are_kept(schema_set):
    ex = dict(schema_examples()["submit_job"][0])
    ex["x_trace"] = {"span": "abc", "n": [1, 2]}
    assert schema_set.violations(ex) == []
    msg = protocol.parse_to_hub(json.dumps(ex))
    assert msg.model_extra == {"x_trace": {"span": "abc", "n": [1, 2]}}
    assert protocol.to_dict(msg) == ex
