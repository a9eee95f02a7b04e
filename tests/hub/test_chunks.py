"""hub/chunks.py: reassembly of the chunked messages a peer sends (spec D15) — in any order, hash
checked, processed as if sent whole; broken streams refused and freed; bounded per connection and
per hub, and by age. In-process on a real redis-server, and ``ChunkStreams`` on its own."""

from __future__ import annotations

import base64
import hashlib

import pytest
from chunking import big_submit, chunk_frames
from empq.generated.messages.chunked_message import ChunkedMessage
from empq.hub import chunks
from empq.hub.chunks import ChunkStreams, Complete, Refused

from empq import protocol


def replies(frames: list[dict], kind: str, **match: object) -> list[dict]:
    return [f for f in frames if f["type"] == kind and all(f.get(k) == v for k, v in match.items())]


async def test_chunked_submit_is_processed_as_if_sent_whole(core_hub):
    hub = await core_hub()
    client = await hub.client()
    worker = await hub.worker(services=["chunked"], max_concurrent_jobs=2)
    for n, order in enumerate(([0, 1, 2], [2, 0, 1])):
        message = big_submit(f"whole-{n}", "chunked")
        frames = chunk_frames(message, 3)
        got = []
        for i in order:
            got += await client.send("chunked_message", **frames[i])
        (receipt,) = replies(got, "chunked_message_complete", chunk_id=frames[0]["chunk_id"])
        assert receipt["original_type"] == "submit_job"
        assert receipt["total_size"] == frames[0]["total_size"]
        (accepted,) = [f for f in got if f.get("request_id") == message["id"]]
        assert accepted["type"] == "job_accepted", accepted
        (job,) = await worker.claim()
        assert job["job_id"] == accepted["job_id"] and job["payload"] == message["payload"]
    assert client.of("ack") == []  # chunks without an id are not acked


async def test_broken_chunk_streams_are_refused_and_the_connection_survives(core_hub):
    hub = await core_hub()
    client = await hub.client()
    message = big_submit("broken-1", "chunk-err")

    frames = chunk_frames(message, 3, data_hash=hashlib.sha256(b"something else").hexdigest())
    got = []
    for frame in frames:
        got += await client.send("chunked_message", **frame)
    (err,) = replies(got, "error")
    assert err["error_code"] == "CHUNK_ERROR" and err["details"]["reason"] == "bad_hash"
    assert replies(got, "job_accepted") == replies(got, "chunked_message_complete") == []
    assert (await client.request("ping"))["type"] == "pong"

    frames = chunk_frames(message, 3)
    await client.send("chunked_message", **frames[0])
    err = await client.request("chunked_message", **frames[0])
    assert err["error_code"] == "CHUNK_ERROR" and err["details"]["reason"] == "duplicate_chunk"
    assert (await client.request("ping"))["type"] == "pong"

    err = await client.request("chunked_message", **{**frames[1], "chunk_index": 3})
    assert err["error_code"] == "CHUNK_ERROR" and err["details"]["reason"] == "index_out_of_range"
    assert err["details"]["chunk_id"] == frames[1]["chunk_id"]
    assert (await client.request("ping"))["type"] == "pong"

    frames = chunk_frames(message, 3)
    got = await client.send("chunked_message", **frames[0])
    got += await client.send("chunked_message", **frames[2])
    assert got == []  # nothing yet: no receipt, no job, no error
    assert (await client.request("ping"))["type"] == "pong"
    got = await client.send("chunked_message", **frames[1])  # the missing piece completes it
    assert replies(got, "chunked_message_complete", chunk_id=frames[0]["chunk_id"])
    (accepted,) = [f for f in got if f.get("request_id") == "broken-1"]
    assert accepted["type"] == "job_accepted", accepted


async def test_a_stream_left_unfinished_expires_with_chunk_error(core_hub, monkeypatch):
    hub = await core_hub()
    client = await hub.client()
    frames = chunk_frames(big_submit("never", "chunk-ttl"), 2)
    await client.send("chunked_message", **frames[0])
    await hub.core.tick()
    assert client.new() == []  # younger than the stream TTL: kept
    monkeypatch.setattr(chunks, "STREAM_TTL_MS", -1)
    await hub.core.tick()
    (err,) = client.new()
    assert err["error_code"] == "CHUNK_ERROR"
    assert err["details"] == {"chunk_id": frames[0]["chunk_id"], "reason": "expired"}
    assert hub.core.chunks.bytes_held() == 0


async def test_a_connection_that_goes_frees_its_streams(core_hub):
    hub = await core_hub()
    client = await hub.client()
    await client.send("chunked_message", **chunk_frames(big_submit("gone", "chunk-drop"), 2)[0])
    assert hub.core.chunks.bytes_held() > 0
    await hub.drop(client)
    assert hub.core.chunks.bytes_held() == 0 and client.conn_id not in hub.core.chunks.streams


# --- ChunkStreams on its own ---------------------------------------------------------------------------


def part(chunk_id: str, index: int, total: int, data: bytes = b"x", **fields: object) -> ChunkedMessage:
    values: dict[str, object] = {
        "chunk_id": chunk_id,
        "chunk_index": index,
        "total_chunks": total,
        "data": base64.b64encode(data).decode(),
        "original_type": "submit_job",
        **fields,
    }
    return protocol.make(ChunkedMessage, **values)


def test_parts_in_any_order_make_the_original_bytes():
    streams = ChunkStreams()
    text = b'{"type":"ping"}'
    digest = hashlib.sha256(text).hexdigest().upper()  # compared without case
    assert streams.add("c", part("s", 1, 2, text[8:], data_hash=digest), 0) is chunks.TAKEN
    done = streams.add("c", part("s", 0, 2, text[:8]), 0)
    assert done == Complete(text, "submit_job")
    assert streams.bytes_held() == 0  # a complete stream is freed


@pytest.mark.parametrize(
    ("second", "reason"),
    [
        (part("s", 1, 3), "inconsistent"),  # total_chunks changed
        (part("s", 1, 2, original_type="ping"), "inconsistent"),
        (part("s", 0, 2), "duplicate_chunk"),
        (part("s", 2, 2), "index_out_of_range"),
        (part("s", 1, 2, data_hash="0" * 64), "bad_hash"),
    ],
)
def test_a_broken_stream_is_refused_and_freed(second, reason):
    streams = ChunkStreams()
    assert streams.add("c", part("s", 0, 2), 0) is chunks.TAKEN
    outcome = streams.add("c", second, 0)
    assert isinstance(outcome, Refused) and outcome.reason == reason
    assert streams.streams["c"] == {} and streams.bytes_held() == 0


def test_data_that_is_not_base64_is_refused():
    bad = protocol.make(
        ChunkedMessage, chunk_id="s", chunk_index=0, total_chunks=2, data="not base64!", original_type="x"
    )
    outcome = ChunkStreams().add("c", bad, 0)
    assert isinstance(outcome, Refused) and outcome.reason == "bad_base64"


def test_streams_are_bounded_per_connection_in_count_and_size(monkeypatch):
    streams = ChunkStreams()
    for i in range(chunks.MAX_STREAMS):
        assert streams.add("c", part(f"s{i}", 0, 2), 0) is chunks.TAKEN
    outcome = streams.add("c", part("one-more", 0, 2), 0)
    assert isinstance(outcome, Refused) and outcome.reason == "too_many_streams"
    assert streams.add("other-conn", part("s0", 0, 2), 0) is chunks.TAKEN  # per connection
    # each part counts PART_OVERHEAD more than its data: empty parts are not free
    monkeypatch.setattr(chunks, "MAX_BYTES", 3 * chunks.PART_OVERHEAD)
    small = ChunkStreams()
    for i in range(3):
        assert small.add("c", part("e", i, 9, b""), 0) is chunks.TAKEN
    outcome = small.add("c", part("e", 3, 9, b""), 0)
    assert isinstance(outcome, Refused) and outcome.reason == "too_large"


def test_the_hub_holds_a_bounded_amount_of_chunked_data(monkeypatch):
    monkeypatch.setattr(chunks, "MAX_BYTES_ALL", 2 * (chunks.PART_OVERHEAD + 10))
    streams = ChunkStreams()
    assert streams.add("a", part("s", 0, 2, b"0123456789"), 0) is chunks.TAKEN
    assert streams.add("b", part("s", 0, 2, b"0123456789"), 0) is chunks.TAKEN
    outcome = streams.add("c", part("s", 0, 2, b"0123456789"), 0)
    assert isinstance(outcome, Refused) and outcome.reason == "hub_busy"
    streams.drop("a")
    assert streams.add("c", part("s", 0, 2, b"0123456789"), 0) is chunks.TAKEN


def test_streams_older_than_the_ttl_are_freed():
    streams = ChunkStreams()
    streams.add("c", part("old", 0, 2), 0)
    streams.add("c", part("new", 0, 2), 5000)
    assert streams.expired(chunks.STREAM_TTL_MS) == []
    assert streams.expired(chunks.STREAM_TTL_MS + 1) == [("c", "old")]
    assert list(streams.streams["c"]) == ["new"]
