"""Check at start that the Redis user may run every command the hub (and its Lua scripts) will.

With ACL users a missing right would otherwise show up later, one failed job transition at a
time (commands called from a Lua script are checked when the script runs them).  Redis checks
a command's rights — the command, its keys, its channels — when it is queued in a
transaction, so every command is queued between ``MULTI`` and ``DISCARD`` with a key and the
channel of the hub's prefix: nothing runs, and each refusal names what is missing.

The rights the hub needs are in README.md ("Redis users and rights"); ``ACL_COMMANDS`` is that
list, and a test checks that a user with exactly those rights runs jobs.
"""

from __future__ import annotations

import logging
import re
from importlib import resources
from typing import Any

from empq.hub.resp import RedisReplyError, RespClient

log = logging.getLogger("empq.hub.redis")

# one harmless probe per command: (arguments after the command name); K = a key, C = the bus channel
PROBES: dict[str, tuple[str, ...]] = {
    # called by the hub itself
    "PING": (),
    "INFO": ("server",),
    "SCRIPT": ("LOAD", "return 1"),
    "EVALSHA": ("0" * 40, "1", "K"),
    "GET": ("K",),
    "HGETALL": ("K",),
    "HMGET": ("K", "f"),
    "HSET": ("K", "f", "v"),
    "HDEL": ("K", "f"),
    "ZADD": ("K", "1", "m"),
    "ZREM": ("K", "m"),
    "ZRANGE": ("K", "0", "-1"),
    "ZCOUNT": ("K", "0", "1"),
    "ZCARD": ("K",),
    "SMEMBERS": ("K",),
    "DEL": ("K",),
    "LPUSH": ("K", "v"),
    "LTRIM": ("K", "0", "1"),
    "LRANGE": ("K", "0", "-1"),  # a job's history (the job browser)
    "PUBLISH": ("C", '{"hub": "acl-probe", "kind": "probe"}'),  # never sent; hubs would ignore it
    "SUBSCRIBE": ("C",),  # (on the bus connection)
    # called by the Lua scripts
    "EXISTS": ("K",),
    "HGET": ("K", "f"),
    "HINCRBY": ("K", "f", "1"),
    "HINCRBYFLOAT": ("K", "f", "1"),
    "HSETNX": ("K", "f", "v"),
    "INCR": ("K",),
    "RPUSH": ("K", "v"),
    "SADD": ("K", "m"),
    "SET": ("K", "v"),
    "SREM": ("K", "m"),
    "SRANDMEMBER": ("K", "1"),
    "UNLINK": ("K",),
    "ZRANGEBYSCORE": ("K", "0", "1"),
    "ZREMRANGEBYSCORE": ("K", "0", "1"),
    "ZSCORE": ("K", "m"),
}
# besides: MULTI and DISCARD (this check); WAIT with --redis-wait-replicas; CLUSTER SLOTS and
# ASKING in a Redis Cluster; SELECT for a database other than 0
ACL_COMMANDS = sorted(
    {name.lower() for name in PROBES if name != "SCRIPT"}
    | {"script|load", "multi", "discard", "wait", "cluster|slots", "asking", "select"}
)


def script_commands() -> set[str]:
    """Every command the Lua scripts call (``redis.call('NAME', …)``)."""
    names: set[str] = set()
    for path in resources.files("empq.hub").joinpath("lua").iterdir():
        if path.name.endswith(".lua"):
            text = path.read_text(encoding="utf-8")
            names |= {m.upper() for m in re.findall(r"redis\.p?call\(\s*['\"]([A-Za-z]+)['\"]", text)}
    return names


def acl_rule(prefix: str) -> str:
    """The ACL rules of a user that may run the hub on ``prefix``'s keys and channel."""
    return f"~{prefix}* &{prefix}* " + " ".join(f"+{c}" for c in ACL_COMMANDS)


class RedisRightsError(RuntimeError):
    pass


async def check_rights(client: RespClient, prefix: str, extra: tuple[tuple[Any, ...], ...] = ()) -> None:
    """Raise ``RedisRightsError`` naming every command (or key/channel right) the user lacks."""
    wait, client.wait = client.wait, None  # no WAIT inside the transaction
    try:
        await _check(client, prefix, extra)
    finally:
        client.wait = wait


async def _check(client: RespClient, prefix: str, extra: tuple[tuple[Any, ...], ...]) -> None:
    try:
        await client.execute("MULTI")
    except RedisReplyError as exc:
        log.warning("cannot check the Redis user's rights (%s): a missing right will show when used", exc)
        return
    key, channel = f"{prefix}:acl-probe", f"{prefix}:bus"
    probes = [
        (name, *(key if a == "K" else channel if a == "C" else a for a in args))
        for name, args in PROBES.items()
    ]
    probes += list(extra)
    futures = await client.send_many([*probes, ("DISCARD",)])
    missing: list[str] = []
    for probe, future in zip(probes, futures, strict=False):
        try:
            await future
        except RedisReplyError as exc:
            text = str(exc)
            if not text.startswith("NOPERM"):
                continue
            name = " ".join(str(p) for p in probe[:2]) if probe[0] in ("SCRIPT", "CLUSTER") else str(probe[0])
            if "keys" in text:
                name = f"{name} on keys {prefix}*"
            elif "channel" in text:
                name = f"{name} on channel {channel}"
            missing.append(name)
    try:
        await futures[-1]
    except RedisReplyError:
        pass
    if missing:
        user = client.target.username or "default"
        raise RedisRightsError(
            f"the Redis user {user!r} may not run {', '.join(missing)}, which the hub needs. Grant the "
            f"hub's rights, e.g. ACL SETUSER {user} {acl_rule(prefix)} (README: Redis users and rights)"
        )
