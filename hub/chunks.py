"""Reassembly of chunked messages a peer sends (spec D15), bounded per connection and per hub.

``ChunkStreams.add`` takes one ``chunked_message`` and says what became of it: refused (the
stream is freed), taken (more to come), or complete (the original message's bytes, hash checked).
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field

from empq.generated.messages.chunked_message import ChunkedMessage

MAX_STREAMS = 8  # per connection
MAX_BYTES = 64 * 1024 * 1024  # per connection
MAX_BYTES_ALL = 256 * 1024 * 1024  # all connections of this hub together (D19)
STREAM_TTL_MS = 60_000
PART_OVERHEAD = 256  # bytes counted per part on top of its data (an empty part is not free)


@dataclass
class ChunkStream:
    total: int
    original_type: str
    data_hash: str | None
    started: int
    parts: dict[int, bytes] = field(default_factory=dict)
    size: int = 0


@dataclass(frozen=True)
class Refused:
    reason: str
    text: str


@dataclass(frozen=True)
class Complete:
    data: bytes
    original_type: str


TAKEN = None  # a part stored, more to come


class ChunkStreams:
    def __init__(self) -> None:
        self.streams: dict[str, dict[str, ChunkStream]] = {}  # connection -> chunk id -> stream

    def bytes_held(self) -> int:
        return sum(s.size for streams in self.streams.values() for s in streams.values())

    def add(self, conn_id: str, msg: ChunkedMessage, now: int) -> Refused | Complete | None:
        streams = self.streams.setdefault(conn_id, {})
        outcome = self._add(streams, msg, now)
        if isinstance(outcome, Refused):
            streams.pop(msg.chunk_id, None)
        return outcome

    def _add(
        self, streams: dict[str, ChunkStream], msg: ChunkedMessage, now: int
    ) -> Refused | Complete | None:
        stream = streams.get(msg.chunk_id)
        if stream is None:
            if len(streams) >= MAX_STREAMS:
                return Refused("too_many_streams", f"at most {MAX_STREAMS} chunk streams per connection")
            stream = streams[msg.chunk_id] = ChunkStream(
                msg.total_chunks, msg.original_type, msg.data_hash, now
            )
        if msg.total_chunks != stream.total or msg.original_type != stream.original_type:
            return Refused("inconsistent", "total_chunks or original_type changed within the stream")
        if msg.chunk_index >= msg.total_chunks:
            return Refused(
                "index_out_of_range", f"chunk_index {msg.chunk_index} >= total_chunks {msg.total_chunks}"
            )
        if msg.chunk_index in stream.parts:
            return Refused("duplicate_chunk", f"chunk {msg.chunk_index} received twice")
        try:
            part = base64.b64decode(msg.data, validate=True)
        except ValueError:
            return Refused("bad_base64", "data is not valid base64")
        stream.size += len(part) + PART_OVERHEAD
        if stream.size > MAX_BYTES or sum(s.size for s in streams.values()) > MAX_BYTES:
            return Refused("too_large", f"chunked data over {MAX_BYTES} bytes")
        if self.bytes_held() > MAX_BYTES_ALL:
            return Refused("hub_busy", "the hub holds too much chunked data: retry later")
        stream.parts[msg.chunk_index] = part
        if msg.data_hash and not stream.data_hash:
            stream.data_hash = msg.data_hash
        if len(stream.parts) < stream.total:
            return TAKEN
        whole = b"".join(stream.parts[i] for i in range(stream.total))
        del streams[msg.chunk_id]
        if stream.data_hash and hashlib.sha256(whole).hexdigest() != stream.data_hash.lower():
            return Refused("bad_hash", "sha256 of the reassembled data does not match data_hash")
        return Complete(whole, stream.original_type)

    def expired(self, now: int) -> list[tuple[str, str]]:
        """Streams older than ``STREAM_TTL_MS``, freed: (connection, chunk id) each."""
        gone = []
        for conn_id, streams in self.streams.items():
            for chunk_id, stream in list(streams.items()):
                if now - stream.started > STREAM_TTL_MS:
                    del streams[chunk_id]
                    gone.append((conn_id, chunk_id))
        return gone

    def drop(self, conn_id: str) -> None:
        self.streams.pop(conn_id, None)
