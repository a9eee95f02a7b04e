"""generated/ is exactly what tools/codegen.py makes from schemas/, and it discriminates."""

from __future__ import annotations

import filecmp
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

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


# --- the TypeScript types of clients/typescript -----------------------------------------------------

TS_PACKAGE = Path(__file__).resolve().parent.parent / "clients" / "typescript"
TS_GENERATED = TS_PACKAGE / "src" / "generated" / "protocol.ts"


def _ts_generator(cache_root: Path) -> Path:
    """The package's generator script with its pinned dependencies (``npm ci`` from the committed
    package-lock.json into a cache folder keyed by the lock file, once)."""
    lock = (TS_PACKAGE / "package-lock.json").read_bytes()
    home = cache_root / f"ts-codegen-{hashlib.sha256(lock).hexdigest()[:12]}"
    script = home / "scripts" / "generate-types.mjs"
    if not (home / "node_modules" / "json-schema-to-typescript" / "package.json").exists():
        home.mkdir(parents=True, exist_ok=True)
        for name in ("package.json", "package-lock.json"):
            shutil.copyfile(TS_PACKAGE / name, home / name)
        subprocess.run(
            [shutil.which("npm") or "npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund"],
            cwd=home,
            check=True,
            capture_output=True,
            timeout=600,
        )
    script.parent.mkdir(exist_ok=True)
    shutil.copyfile(TS_PACKAGE / "scripts" / "generate-types.mjs", script)
    return script


def test_typescript_types_match_schemas_byte_for_byte(repo, tmp_path):
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are needed to regenerate clients/typescript/src/generated/protocol.ts")
    cache = Path(os.environ.get("TS_CODEGEN_CACHE") or Path.home() / ".cache" / "empq-ts-codegen")
    script = _ts_generator(cache)
    fresh = tmp_path / "protocol.ts"
    node = shutil.which("node") or "node"
    subprocess.run(
        [node, str(script), "--schemas", str(repo / "schemas"), "--out", str(fresh)], check=True, timeout=120
    )
    assert fresh.read_bytes() == TS_GENERATED.read_bytes(), (
        "clients/typescript/src/generated/protocol.ts drifted from schemas/: run `tox -e codegen`"
    )
