"""For every message schema, invalid variants are rejected by jsonschema AND the generated models.

The variants are derived from each schema (see ``schema_variants``), so a schema that loses a
constraint, or a generated model that stops enforcing one, fails here.  The hub reports the path of
the first problem as ``error.details.field``; that path is checked too.
"""

from __future__ import annotations

import json

import pytest
from empq.conformance.schemas import default_schemas
from pydantic import ValidationError
from schema_variants import variants

from empq import protocol

SCHEMAS = default_schemas()


def _cases():
    for kind, schema in sorted(SCHEMAS.messages.items()):
        resolver = SCHEMAS.registry.resolver(base_uri=schema["$id"])
        for example in schema["examples"][:1]:
            for label, path, bad in variants(schema, resolver, example):
                yield pytest.param(kind, path, bad, id=f"{kind}-{label}")


CASES = list(_cases())


def test_enough_variants():
    kinds = {c.values[0] for c in CASES}
    assert kinds == set(SCHEMAS.messages)
    assert len(CASES) > 400


@pytest.mark.parametrize(("kind", "path", "bad"), CASES)
def test_variant_rejected_by_jsonschema(kind, path, bad):
    assert SCHEMAS.violations(bad, kind), f"jsonschema accepted {path} in {bad}"


@pytest.mark.parametrize(("kind", "path", "bad"), CASES)
def test_variant_rejected_by_generated_model(kind, path, bad):
    cls = protocol.MESSAGE_CLASSES[kind]
    frame = json.dumps(bad)
    with pytest.raises(ValidationError) as info:
        cls.model_validate_json(frame)
    if bad.get("type") == kind:
        # through the envelope the hub uses, the reported field is the variant's path
        envelope = (
            protocol.ENVELOPES["to_hub"] if kind in protocol.INBOUND else protocol.ENVELOPES["from_hub"]
        )
        with pytest.raises(ValidationError) as info:
            protocol.parse(envelope, frame)
        details = protocol.error_details(info.value, bad)
        assert details["field"] == path or details["field"].startswith(path + "."), details


def test_wrong_type_const_rejected_by_every_envelope():
    frame = json.dumps({"type": "no_such_type", "timestamp": 1})
    for envelope in protocol.ENVELOPES.values():
        with pytest.raises(ValidationError) as info:
            protocol.parse(envelope, frame)
        assert protocol.error_details(info.value)["field"] == "type"


def test_direction_envelopes_refuse_other_directions():
    assigned = SCHEMAS.messages["job_assigned"]["examples"][0]
    with pytest.raises(ValidationError):
        protocol.parse(protocol.ENVELOPES["to_hub"], json.dumps(assigned))
    assert type(protocol.parse_from_hub(json.dumps(assigned))).__name__ == "JobAssigned"
