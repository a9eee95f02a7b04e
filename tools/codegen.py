"""Regenerate ``generated/`` from ``schemas/`` with datamodel-code-generator (pinned in tox.ini).

Usage: ``python tools/codegen.py --out generated`` (what ``tox -e codegen`` runs).  The output is
deterministic (no timestamps, built-in formatter) so a test can regenerate into a temporary
folder and compare byte for byte.  Never edit ``generated/`` by hand: change ``schemas/`` and
run this.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

FLAGS = [
    "--input", "schemas",
    "--input-file-type", "jsonschema",
    "--schema-version", "2020-12",
    "--output-model-type", "pydantic_v2.BaseModel",
    "--target-python-version", "3.11",
    "--disable-timestamp",
    "--formatters", "builtin",
    "--use-annotated",
    "--field-constraints",
    "--omit-redundant-constraints",
    "--use-standard-collections",
    "--use-union-operator",
    "--collapse-root-models",
    "--use-title-as-name",
    "--enum-field-as-literal", "one",
    "--use-schema-description",
    "--strict-types", "str", "int", "float", "bool",
    "--type-mappings", "date-time=string",
    "--no-allow-remote-refs",
    "--strict-refs",
    "--ignore-pyproject",
]  # fmt: skip

HEADER = "# Generated from schemas/ by tools/codegen.py (datamodel-code-generator). Do not edit.\n"


def generate(out: Path) -> None:
    out = out.resolve()
    if out.exists():
        shutil.rmtree(out)
    with tempfile.TemporaryDirectory() as tmp:
        # only the JSON files (schemas/ is also a Python package that ships them as data)
        shutil.copytree(
            REPO / "schemas", Path(tmp) / "schemas", ignore=shutil.ignore_patterns("*.py", "__pycache__")
        )
        # generate inside the temporary folder too: the built-in formatter would otherwise pick up
        # settings from a pyproject.toml above the output folder
        made = Path(tmp) / "generated"
        cmd = [sys.executable, "-m", "datamodel_code_generator", *FLAGS, "--output", str(made)]
        subprocess.run(cmd, cwd=tmp, check=True)
        shutil.copytree(made, out)
    (out / "py.typed").write_text("")
    top = out / "__init__.py"
    top.write_text(HEADER + top.read_text(encoding="utf-8"), encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "generated")
    generate(parser.parse_args().out)


if __name__ == "__main__":
    main()
