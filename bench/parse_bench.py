"""Per-message cost of parsing a submit_job frame through the generated envelope union.

    python -m bench.parse_bench [--seconds 2] [--json out.json]

Compares: the hub's path (``ToHub.model_validate_json`` — one call, discriminated union), the
message class alone, serialising back (``protocol.encode``), and jsonschema validation (what
the conformance suite uses; too slow for the hub's hot path).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

import orjson
from empq.conformance.schemas import default_schemas
from empq.generated.envelopes.to_hub import ToHub
from empq.generated.messages.submit_job import SubmitJob

from empq import protocol

FRAME = orjson.dumps(
    {
        "type": "submit_job",
        "job_type": "text_to_image",
        "priority": 75,
        "payload": {
            "prompt": "a beautiful landscape with mountains",
            "steps": 30,
            "cfg_scale": 7.5,
            "width": 1024,
            "height": 1024,
        },
        "customer_id": "customer-123",
        "requirements": {
            "service_type": "comfyui",
            "component": "text-to-image-xl",
            "hardware": {"gpu_memory_gb": 8},
        },
        "timestamp": 1705312345000,
    }
)


def measure(fn: Callable[[], object], seconds: float) -> float:
    """Microseconds per call: repeat batches until ``seconds`` have passed (bounded)."""
    fn()
    calls, batch = 0, 1000
    start = time.perf_counter()
    while time.perf_counter() - start < seconds and calls < 50_000_000:
        for _ in range(batch):
            fn()
        calls += batch
    return (time.perf_counter() - start) / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--json", dest="json_out")
    args = parser.parse_args()

    schemas = default_schemas()
    validator = schemas.validator("submit_job")
    parsed = ToHub.model_validate_json(FRAME).root
    assert type(parsed) is SubmitJob
    cases = {
        "ToHub.model_validate_json (hub path)": lambda: ToHub.model_validate_json(FRAME).root,
        "SubmitJob.model_validate_json": lambda: SubmitJob.model_validate_json(FRAME),
        "protocol.encode (serialise)": lambda: protocol.encode(parsed),
        "orjson.loads + jsonschema validate": lambda: validator.validate(orjson.loads(FRAME)),
    }
    results = {}
    print(f"frame: {len(FRAME)} bytes")
    print(f"{'operation':42} {'µs/message':>10}")
    for name, fn in cases.items():
        seconds = args.seconds if "jsonschema" not in name else min(args.seconds, 1.0)
        results[name] = round(measure(fn, seconds), 2)
        print(f"{name:42} {results[name]:10.2f}")
    if args.json_out:
        with open(args.json_out, "w") as fh:
            json.dump({"frame_bytes": len(FRAME), "us_per_message": results}, fh, indent=2)


if __name__ == "__main__":
    main()
