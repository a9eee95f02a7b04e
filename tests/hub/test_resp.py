"""The hub's RESP client against the real redis-server: encoding (hiredis' packer, with the Python
encoder for what it refuses) and pipelined replies in order, errors as exceptions."""

from __future__ import annotations

import asyncio

import pytest
from empq.hub.resp import RedisReplyError, RespClient, encode_command, encode_command_py

COMMANDS = [
    ("PING",),
    ("SET", "k", "v"),
    ("EVALSHA", "a" * 40, 2, "{empq}:job:x", "{empq}:q:y", "job-1", 1795664394123, 30000, 1.5, -3),
    ("SET", b"bin\x00ary", "é€ unicode"),
    ("X", 0.1, 1e20, 0, ""),
]


@pytest.mark.parametrize("cmd", COMMANDS)
def test_fast_encoder_matches_the_python_encoder(cmd: tuple[object, ...]) -> None:
    assert encode_command(cmd) == encode_command_py(cmd)


def test_values_hiredis_refuses_fall_back() -> None:
    assert encode_command(("SET", "flag", True)) == b"*3\r\n$3\r\nSET\r\n$4\r\nflag\r\n$1\r\n1\r\n"
    assert encode_command(["GET", "k"]) == encode_command_py(("GET", "k"))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        encode_command(("SET", "k", object()))


async def test_pipelined_round_trip(redis_url: str) -> None:
    client = RespClient(redis_url)
    try:
        key = "{t-resp}:k"
        futures = await client.send_many(
            [("DEL", key), ("SET", key, "é€"), ("GET", key), ("INCR", key), ("SET", f"{key}:n", 41),
             ("INCR", f"{key}:n"), ("SET", f"{key}:b", True), ("GET", f"{key}:b")]
        )  # fmt: skip
        results = await asyncio.gather(*futures, return_exceptions=True)
        assert results[1:3] == ["OK", "é€"]
        assert isinstance(results[3], RedisReplyError)  # not an integer: an error, in its place
        assert results[4:] == ["OK", 42, "OK", "1"]
        assert await client.execute("DEL", key, f"{key}:n", f"{key}:b") == 3
    finally:
        await client.close()
