"""generated/ is exactly what tools/codegen.py makes from schemas/, and it discriminates."""

from __future__ import annotations

import filecmp
import subprocess
import sys

import pytest
from pydantic import ValidationError

from empq import protocol


def _tree(root):
    return sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    )


def test_generated_matches_schemas_byte_for_byte(repo, tmp_path):
    out = tmp_path / "generated"
    subprocess.run([sys.executable, str(repo / "tools" / "codegen.py"), "--out", str(out)], check=True)
    ours, fresh = _tree(repo / "generated"), _tree(out)
    assert ours == fresh, "file list differs: run `tox -e codegen`"
    differ = [name for name in ours if not filecmp.cmp(repo / "generated" / name, out / name, shallow=False)]
    assert not differ, f"generated/ drifted from schemas/ in {differ}: run `tox -e codegen`"


def test_generated_files_carry_no_timestamp(repo):
    for path in (repo / "generated").rglob("*.py"):
        head = path.read_text().splitlines()[:4]
        assert not any("timestamp:" in line for line in head), path


def test_union_discriminates_to_the_right_class():
    frame = (
        b'{"type":"job_assigned","job_id":"j","worker_id":"w","job_type":"t",'
        b'"priority":1,"payload":{},"claim_timeout":5,"timestamp":1}'
    )
    msg = protocol.parse_from_hub(frame)
    assert type(msg).__name__ == "JobAssigned"
    assert msg.job_id == "j"
    for envelope in protocol.ENVELOPES.values():
        assert envelope.model_fields["root"].discriminator == "type", envelope
        # a wrong tag is refused by the tagged union (one error), not tried against each member
        with pytest.raises(ValidationError) as refused:
            envelope.model_validate({"type": "nope", "timestamp": 1})
        assert [e["type"] for e in refused.value.errors()] == ["union_tag_invalid"]


def test_every_message_class_is_named_after_its_schema_title(schema_set):
    for kind, schema in schema_set.messages.items():
        assert protocol.MESSAGE_CLASSES[kind].__name__ == schema["title"]
