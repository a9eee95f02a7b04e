"""Validate an AsyncAPI 3.0.0 document with the official JSON Schema and the official parser (test support).

The schema is NOT vendored: it is fetched at test time with
`npm pack @asyncapi/specs@<SPECS_VERSION>` into a cache dir and read from
`package/schemas/3.0.0.json` (a bundled draft-07 schema whose `definitions`
are keyed by their `$id`s, e.g. http://asyncapi.com/definitions/3.0.0/info.json).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
from pathlib import Path

from jsonschema import Draft7Validator
from jsonschema.exceptions import ValidationError
from referencing import Registry
from referencing.jsonschema import DRAFT7

SPECS_PACKAGE = "@asyncapi/specs"
SPECS_VERSION = "6.11.1"  # ships schemas/3.0.0.json (official AsyncAPI 3.0.0 schema)
SCHEMA_MEMBER = "package/schemas/3.0.0.json"


def load_official_schema(cache_dir: str | Path) -> dict:
    """Return the official AsyncAPI 3.0.0 JSON Schema, downloading it via npm once."""
    cache = Path(cache_dir)
    cached = cache / f"asyncapi-specs-{SPECS_VERSION}-3.0.0.json"
    if not cached.exists():
        npm = shutil.which("npm")
        if npm is None:
            raise RuntimeError("npm is required to fetch @asyncapi/specs")
        cache.mkdir(parents=True, exist_ok=True)
        out = subprocess.run(
            [npm, "pack", f"{SPECS_PACKAGE}@{SPECS_VERSION}", "--json", "--pack-destination", str(cache)],
            check=True,
            capture_output=True,
            text=True,
            timeout=300,
        )
        tgz = cache / json.loads(out.stdout)[0]["filename"]
        with tarfile.open(tgz) as tar:
            member = tar.extractfile(SCHEMA_MEMBER)
            assert member is not None, SCHEMA_MEMBER
            data = member.read()
        tmp = cached.with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.replace(cached)  # atomic, safe with parallel test runs
        tgz.unlink(missing_ok=True)
    return json.loads(cached.read_text(encoding="utf-8"))


def make_validator(schema: dict) -> Draft7Validator:
    """Draft-07 validator with an explicit, offline registry.

    Passing `registry=` also disables jsonschema's deprecated fallback of
    fetching unknown http(s) $refs over the network.
    """
    from jsonschema_specifications import REGISTRY as META  # has the draft-07 meta-schema

    registry: Registry = META.with_resources(
        [(schema["$id"], DRAFT7.create_resource(schema))]
        + [
            (s["$id"], DRAFT7.create_resource(s))
            for s in schema.get("definitions", {}).values()
            if isinstance(s, dict) and "$id" in s
        ]
    )
    return Draft7Validator(schema, registry=registry)


def _leaves(err: ValidationError):
    if not err.context:
        yield err
    for sub in err.context:
        yield from _leaves(sub)


def _deepest(err: ValidationError) -> ValidationError:
    """oneOf(Reference | Object) errors hide the real cause; pick the deepest leaf."""
    return max(_leaves(err), key=lambda e: (len(e.absolute_path), "'$ref' is a required" not in e.message))


def validate(doc: dict, cache_dir: str | Path | None = None) -> None:
    """Raise jsonschema.ValidationError (listing all errors) if `doc` is invalid."""
    if cache_dir is None:
        cache_dir = Path.home() / ".cache" / "asyncapi-specs"
    schema = load_official_schema(cache_dir)
    validator = make_validator(schema)
    errors = sorted(validator.iter_errors(doc), key=lambda e: [str(p) for p in e.absolute_path])
    if errors:
        lines = []
        for err in errors:
            # oneOf/anyOf/if-then failures carry the useful detail in .context
            deep = _deepest(err)
            where = "/".join(map(str, deep.absolute_path)) or "<root>"
            lines.append(f"{where}: {deep.message[:300]}")
        raise ValidationError(f"{len(errors)} AsyncAPI schema error(s):\n" + "\n".join(lines))


PARSER_VERSION = "3.6.6"  # @asyncapi/parser; depends on @asyncapi/specs ^6.11.1
_PARSE_JS = r"""
const { Parser, fromFile } = require('@asyncapi/parser');
(async () => {
  const { document, diagnostics } = await fromFile(new Parser(), process.argv[2]).parse();
  const errs = diagnostics.filter(d => d.severity === 0);  // 0 = Error
  for (const d of errs) console.log(`${d.code} ${d.path.join('/')}: ${d.message}`);
  process.exit(document && errs.length === 0 ? 0 : 1);
})();
"""


def parse_with_official_parser(path: str | Path, cache_dir: str | Path) -> None:
    """Run the official JS parser (resolves file $refs, semantic rules). Raises on errors."""
    prefix = Path(cache_dir) / f"asyncapi-parser-{PARSER_VERSION}"
    if not (prefix / "node_modules" / "@asyncapi" / "parser").exists():
        subprocess.run(
            [
                shutil.which("npm") or "npm",
                "install",
                "--prefix",
                str(prefix),
                "--no-audit",
                "--no-fund",
                "--no-save",
                f"@asyncapi/parser@{PARSER_VERSION}",
            ],
            check=True,
            capture_output=True,
            text=True,
            timeout=600,
        )
    script = prefix / "parse.cjs"
    script.write_text(_PARSE_JS, encoding="utf-8")
    res = subprocess.run(
        [shutil.which("node") or "node", str(script), str(Path(path).resolve())],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if res.returncode != 0:
        raise AssertionError(f"@asyncapi/parser rejected {path}:\n{res.stdout}{res.stderr}")
