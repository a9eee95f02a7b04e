"""The hub on a redis-server 7 that speaks only TLS and wants client certificates (mutual TLS),
with ACL users: a job end to end over ``rediss://`` with a private CA and a user holding exactly
the rights README.md lists; clear errors for the wrong CA, a missing client certificate, a plain
``redis://`` URL, a wrong password and a user with too few rights (naming what is missing). The
same URL works for redis-py. Certificates are made by ``openssl`` at run time."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlencode

import pytest
import redis
from conftest import hub_config
from empq.hub.redis_rights import RedisRightsError, acl_rule
from empq.hub.server import HubServer
from redis_rig import Rig

from bench import empq_command
from bench.redis_servers import (
    Certificates,
    RedisProcess,
    free_port,
    openssl_missing,
    redis7_missing,
    tls_server,
)

MISSING = redis7_missing() or openssl_missing()
pytestmark = pytest.mark.skipif(bool(MISSING), reason=MISSING or "")

PREFIX = "{empq-tls}"
USERS = {
    "hub": f"on >hub-secret {acl_rule(PREFIX)}",
    # reads only: no EVALSHA, no writes, no PUBLISH, no SUBSCRIBE
    "reader": "on >reader-secret ~* &* +@read +@connection +multi +discard +info +script|load",
    # every command, but no channel: the bus is refused
    "deaf": f"on >deaf-secret resetchannels ~{PREFIX}* " + acl_rule(PREFIX).split(" ", 2)[2],
}


@dataclass
class TlsRedis:
    server: RedisProcess
    certs: Certificates

    def url(
        self, user: str = "hub", ca: Path | None = None, client_cert: bool = True, scheme: str = "rediss"
    ) -> str:
        query = {"ssl_ca_certs": str(ca or self.certs.ca)}
        if client_cert:
            query |= {"ssl_certfile": str(self.certs.client), "ssl_keyfile": str(self.certs.client_key)}
        password = USERS[user].split(">", 1)[1].split(" ", 1)[0] if user in USERS else "nope"
        userinfo = f"{quote(user)}:{quote(password)}@"
        params = urlencode(query) if scheme == "rediss" else ""
        return f"{scheme}://{userinfo}127.0.0.1:{self.server.tls_port}/0" + (f"?{params}" if params else "")


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsRedis]:
    directory = tmp_path_factory.mktemp("tls")
    certs = Certificates(directory / "certs")
    server = tls_server(directory / "redis", certs, user=[f"{name} {rules}" for name, rules in USERS.items()])
    try:
        yield TlsRedis(server, certs)
    finally:
        server.stop()


async def start_failure(url: str, **overrides: object) -> str:
    server = HubServer(hub_config(url, key_prefix=PREFIX, **overrides))
    with pytest.raises(RuntimeError) as failed:
        await server.start()
    assert server.redis is None
    return str(failed.value)


async def test_a_job_over_tls_with_a_private_ca_and_an_acl_user(tls: TlsRedis) -> None:
    url = tls.url()
    async with Rig(url, key_prefix=PREFIX) as rig:
        assert rig.hub.redis is not None and rig.hub.redis.target.tls is not None
        job_id = await rig.job()
    # the same URL for redis-py tools (here as the ACL user "hub")
    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        assert client.hget(f"{PREFIX}:job:{job_id}", "status") == "completed"
        with pytest.raises(redis.exceptions.NoPermissionError):
            client.get("outside-the-prefix")
    finally:
        client.close()


async def test_the_wrong_ca_is_a_clear_error(tls: TlsRedis) -> None:
    message = await start_failure(tls.url(ca=tls.certs.other_ca))
    assert "cannot reach Redis" in message and "not trusted" in message and "ssl_ca_certs" in message


async def test_no_client_certificate_is_a_clear_error(tls: TlsRedis) -> None:
    message = await start_failure(tls.url(client_cert=False))
    assert "client certificate" in message and "ssl_certfile" in message


async def test_a_plain_url_on_the_tls_port_is_a_clear_error(tls: TlsRedis) -> None:
    message = await start_failure(tls.url(scheme="redis"))
    assert "rediss://" in message


async def test_a_wrong_password_is_a_clear_error(tls: TlsRedis) -> None:
    message = await start_failure(tls.url(user="nobody"))
    assert "refused the URL's user name and password" in message
    assert "nope" not in message  # no password in messages


async def test_a_user_with_too_few_rights_is_told_what_is_missing(tls: TlsRedis) -> None:
    server = HubServer(hub_config(tls.url(user="reader"), key_prefix=PREFIX))
    with pytest.raises(RedisRightsError) as failed:
        await server.start()
    message = str(failed.value)
    assert "'reader' may not run" in message
    for command in ("EVALSHA", "HSET", "ZADD", "PUBLISH", "SUBSCRIBE", "HINCRBY"):  # HINCRBY: only in scripts
        assert command in message
    assert "GET," not in message and "ACL SETUSER reader ~{empq-tls}*" in message

    message = await start_failure(tls.url(user="deaf"))
    assert f"PUBLISH on channel {PREFIX}:bus, SUBSCRIBE on channel {PREFIX}:bus" in message
    assert "EVALSHA" not in message


def test_the_cli_reports_the_wrong_ca_in_one_line(tls: TlsRedis, tmp_path: Path) -> None:
    url = tls.url(ca=tls.certs.other_ca)
    result = subprocess.run(
        [*empq_command("hub", "--redis-url", url, "--ws-port", str(free_port()), "--http-port", "-1")],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    (line,) = [line for line in result.stderr.splitlines() if "cannot reach Redis" in line]
    assert "not trusted" in line and "hub-secret" not in line
