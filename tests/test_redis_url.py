"""Redis URLs (hub/redis_url.py): redis-py's conventions, Sentinel URLs, clear refusals, no
password in what is logged; Redis Cluster's slot function; the rights check's command table; a
plain Redis stays on the plain (non-routed) connection."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
import redis
from empq.hub.config import HubConfig
from empq.hub.redis_rights import ACL_COMMANDS, PROBES, acl_rule, check_rights, script_commands
from empq.hub.redis_url import RedisUrlError, key_slot, parse_redis_url, prefix_slot_tag, redact
from empq.hub.resp import RespClient, _Protocol


def test_plain_urls() -> None:
    u = parse_redis_url("redis://cache.example:6380/2")
    assert (u.hosts, u.db, u.username, u.password, u.tls) == ((("cache.example", 6380),), 2, None, None, None)
    u = parse_redis_url("redis://empq:p%40ss%3Aword@10.0.0.5?db=3")
    assert (u.hosts, u.db, u.username, u.password) == ((("10.0.0.5", 6379),), 3, "empq", "p@ss:word")
    assert u.auth_command() == ("AUTH", "empq", "p@ss:word")
    assert parse_redis_url("redis://:only-password@h").auth_command() == ("AUTH", "only-password")
    u = parse_redis_url("unix:///run/redis/redis.sock?db=1")
    assert (u.unix, u.path, u.db) == (True, "/run/redis/redis.sock", 1)
    assert parse_redis_url("redis://[::1]:7000,10.0.0.2:7001,h3").hosts == (
        ("::1", 7000),
        ("10.0.0.2", 7001),
        ("h3", 6379),
    )


def test_tls_urls(tmp_path: Path) -> None:
    u = parse_redis_url(
        "rediss://h:6390?ssl_ca_certs=/ca.pem&ssl_certfile=/c.pem&ssl_keyfile=/k.pem&ssl_check_hostname=false"
    )
    assert u.tls is not None
    assert (u.tls.ca_certs, u.tls.certfile, u.tls.keyfile, u.tls.cert_reqs, u.tls.check_hostname) == (
        "/ca.pem",
        "/c.pem",
        "/k.pem",
        "required",
        False,
    )
    context = parse_redis_url("rediss://h?ssl_cert_reqs=none").ssl_context()
    assert context is not None and context.verify_mode == ssl.CERT_NONE and not context.check_hostname
    context = parse_redis_url("rediss://h").ssl_context()  # the system's CAs, hostname checked
    assert context is not None and context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    with pytest.raises(RedisUrlError, match="cannot load the TLS files"):
        parse_redis_url(f"rediss://h?ssl_ca_certs={tmp_path}/missing.pem").ssl_context()


def test_sentinel_urls() -> None:
    u = parse_redis_url("redis+sentinel://u:pw@s1:26379,s2/mymaster/2?sentinel_password=sp")
    assert u.sentinel and u.service == "mymaster" and u.db == 2
    assert u.hosts == (("s1", 26379), ("s2", 26379))
    assert u.auth_command() == ("AUTH", "u", "pw") and u.sentinel_auth_command() == ("AUTH", "sp")
    u = parse_redis_url("rediss+sentinel://s1/mymaster?ssl_ca_certs=/ca.pem")
    assert u.tls is not None and u.tls.ca_certs == "/ca.pem" and u.sentinel_auth_command() is None
    with pytest.raises(RedisUrlError, match="names the primary's service"):
        parse_redis_url("redis+sentinel://s1:26379")


@pytest.mark.parametrize(
    "url, message",
    [
        ("http://h", "scheme 'http'"),
        ("redis://h?ssl_ca_cert=/ca.pem", "unknown parameter 'ssl_ca_cert'"),  # a typo is not ignored
        ("redis://h?ssl_ca_certs=/ca.pem", "use rediss://"),  # TLS settings on a plain URL
        ("redis://h:99999", "not a port"),
        ("redis://h/x", "not a database number"),
        ("rediss://h?ssl_cert_reqs=maybe", "one of none, optional, required"),
        ("redis://h?socket_connect_timeout=-1", "must be > 0"),
        ("redis://h?sentinel_password=x", "unknown parameter"),
        ("unix://", "needs the socket's path"),
    ],
)
def test_refusals(url: str, message: str) -> None:
    with pytest.raises(RedisUrlError, match=message):
        parse_redis_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "redis://user:pw@127.0.0.1:6380/3",
        "rediss://user:pw@h:6390/0?ssl_ca_certs=/ca.pem&ssl_certfile=/c.pem&ssl_keyfile=/k.pem&ssl_cert_reqs=required",
        "unix://:pw@/tmp/redis.sock?db=2",
        "redis://h?socket_timeout=3&health_check_interval=10",  # redis-py's own settings: accepted
    ],
)
def test_the_same_url_means_the_same_to_redis_py(url: str) -> None:
    ours = parse_redis_url(url)
    theirs = redis.connection.parse_url(url)
    assert theirs.get("db", 0) == ours.db
    assert theirs.get("password") == ours.password and theirs.get("username") == ours.username
    if ours.unix:
        assert theirs["path"] == ours.path
    else:
        assert (theirs["host"], theirs.get("port", 6379)) == ours.hosts[0]
    if ours.tls is not None:
        assert theirs["connection_class"] is redis.SSLConnection
        assert (
            theirs.get("ssl_ca_certs") == ours.tls.ca_certs
            and theirs.get("ssl_certfile") == ours.tls.certfile
        )


def test_passwords_are_redacted() -> None:
    assert redact("redis://empq:s3cret@h:6379/0") == "redis://empq:***@h:6379/0"
    assert (
        redact("rediss://:s3cret@h?ssl_password=k3y&ssl_ca_certs=/ca")
        == "rediss://:***@h?ssl_password=***&ssl_ca_certs=/ca"
    )
    assert (
        redact("redis+sentinel://s1,s2/m?sentinel_password=x")
        == "redis+sentinel://s1,s2/m?sentinel_password=***"
    )
    assert redact("redis://h") == "redis://h"


def test_cluster_slots() -> None:
    # known values: Redis' CRC16 check value, the docs' example, the slot in the MOVED
    assert key_slot("123456789") == 0x31C3
    assert key_slot("foo") == 12182
    assert key_slot("{empq}:job:x") == key_slot("{empq}:q:y") == 6722
    assert key_slot("{}x") != key_slot("{}y")  # an empty tag is no tag
    assert prefix_slot_tag("{empq}") == "empq" and prefix_slot_tag("tenant-{a}") == "a"
    assert (
        prefix_slot_tag("empq") is None and prefix_slot_tag("{}") is None and prefix_slot_tag("{open") is None
    )


def test_the_rights_check_covers_every_command_of_the_scripts() -> None:
    called = script_commands()
    assert {"HINCRBY", "ZADD", "HSETNX"} <= called
    assert called <= set(PROBES), f"no probe for {called - set(PROBES)}: add one to PROBES"
    assert all(name.lower() in ACL_COMMANDS for name in PROBES if name != "SCRIPT")


def test_settings_check_the_url(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown parameter"):
        HubConfig.from_env({}, redis_url="redis://h?tls=1")
    with pytest.raises(ValueError, match="missing.pem"):
        HubConfig.from_env({}, redis_url=f"rediss://h?ssl_ca_certs={tmp_path}/missing.pem")
    with pytest.raises(ValueError, match="redis_wait_replicas"):
        HubConfig.from_env({"EMPQ_REDIS_WAIT_REPLICAS": "-1"})
    config = HubConfig.from_env({"EMPQ_REDIS_WAIT_REPLICAS": "1"})
    assert config.redis_wait == (1, 1000) and HubConfig().redis_wait is None


async def test_a_plain_redis_keeps_the_plain_connection(redis_url: str) -> None:
    """Not a cluster, not Sentinel: the connection keeps no commands (the hot path is unchanged),
    and the default user passes the rights check."""
    client = RespClient(redis_url, slot_key="{t-plain}")
    try:
        await check_rights(client, "{t-plain}")
        assert await client.execute("PING") == "PONG"
        assert client.mode == "direct" and not client.routed
        assert type(client._protocol) is _Protocol and client._protocol.commands is None
        assert await client.execute("EXISTS", "{t-plain}:acl-probe") == 0  # the probes ran nowhere
    finally:
        await client.close()


def test_the_readme_lists_the_rights_the_hub_checks(repo: Path) -> None:
    text = (repo / "README.md").read_text(encoding="utf-8")
    assert f"ACL SETUSER empq on >secret {acl_rule('{empq}')}\n" in text
