"""Chunked messages (spec D15) as a peer makes and reads them: a message cut into
``chunked_message`` fields, and chunks put back together (checking what D15 promises)."""

from __future__ import annotations

import base64
import hashlib
import math
import time
import uuid
from typing import Any

import orjson


def chunk_frames(
    message: dict[str, Any], parts: int, data_hash: str | None = None, chunk_id: str | None = None
) -> list[dict[str, Any]]:
    """``message`` as ``parts`` chunked_message fields (D15), chunk_index 0-based."""
    text = orjson.dumps(message)
    size = math.ceil(len(text) / parts)
    chunk_id = chunk_id or f"chunk-{uuid.uuid4().hex[:12]}"
    digest = data_hash or hashlib.sha256(text).hexdigest()
    return [
        {
            "chunk_id": chunk_id,
            "chunk_index": i,
            "total_chunks": parts,
            "data": base64.b64encode(text[i * size : (i + 1) * size]).decode(),
            "data_hash": digest,
            "original_type": message["type"],
            "total_size": len(text),
        }
        for i in range(parts)
    ]


def reassemble(frames: list[dict[str, Any]]) -> dict[str, Any]:
    """The message a complete set of chunked_message frames carries."""
    first = frames[0]
    assert sorted(f["chunk_index"] for f in frames) == list(range(first["total_chunks"]))
    assert {f["chunk_id"] for f in frames} == {first["chunk_id"]}
    whole = b"".join(base64.b64decode(f["data"]) for f in sorted(frames, key=lambda f: f["chunk_index"]))
    assert hashlib.sha256(whole).hexdigest() == first["data_hash"]
    assert len(whole) == first["total_size"]
    message = orjson.loads(whole)
    assert message["type"] == first["original_type"]
    return message


def big_submit(rid: str, service: str) -> dict[str, Any]:
    """A submit_job worth chunking, with multi-byte UTF-8 that chunks cut across."""
    return {
        "type": "submit_job",
        "timestamp": time.time_ns() // 1_000_000,
        "id": rid,
        "job_type": "text_to_image",
        "payload": {"prompt": "é" * 1500 + "mountains"},  # multi-byte UTF-8 cut across chunks
        "requirements": {"service_type": service},
    }
