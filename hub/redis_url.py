"""Redis URLs the hub understands, parsed once into settings for ``resp.RespClient``.

- ``redis://[[user]:password@]host[:port][/db]`` — one Redis, or any node of a Redis Cluster
  (detected at connect); several ``host:port`` separated by commas are seeds tried in order;
- ``rediss://…`` — the same over TLS;
- ``unix://[[user]:password@]/path/to/redis.sock[?db=N]``;
- ``redis+sentinel://[[user]:password@]host:26379[,host2:26379…]/service[/db]`` (and
  ``rediss+sentinel://`` for TLS to the Sentinels and the primary): the primary of ``service``
  as the Sentinels name it, looked up again after a failover. The user and password are the
  primary's; ``sentinel_username`` / ``sentinel_password`` are the Sentinels' own, if they
  require one.

Query parameters use redis-py's names and meanings, so a ``redis://``, ``rediss://`` or
``unix://`` URL given to the hub works unchanged for redis-py (``redis.Redis.from_url``):
``db``, ``username``, ``password``, ``socket_connect_timeout``, ``ssl_ca_certs``,
``ssl_ca_path``, ``ssl_certfile``, ``ssl_keyfile``, ``ssl_password``, ``ssl_cert_reqs``
(``required`` by default, ``optional``, ``none``) and ``ssl_check_hostname`` (default true).
redis-py's other connection settings (timeouts, pool size, health checks…) are accepted and mean
nothing to the hub's single pipelined connection; any other parameter is refused, so a typo in
``ssl_ca_certs`` cannot silently drop the certificate check.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote, urlsplit

SCHEMES = ("redis", "rediss", "unix", "redis+sentinel", "rediss+sentinel")
DEFAULT_PORT = {"redis": 6379, "rediss": 6379, "redis+sentinel": 26379, "rediss+sentinel": 26379}
TLS_PARAMETERS = (
    "ssl_ca_certs",
    "ssl_ca_path",
    "ssl_certfile",
    "ssl_keyfile",
    "ssl_password",
    "ssl_cert_reqs",
    "ssl_check_hostname",
)
OWN_PARAMETERS = ("db", "username", "password", "socket_connect_timeout", *TLS_PARAMETERS)
SENTINEL_PARAMETERS = ("sentinel_username", "sentinel_password")
# redis-py settings of its own connections and pools: accepted (the URL is shared), not used
IGNORED_PARAMETERS = (
    "socket_timeout",
    "socket_keepalive",
    "socket_read_size",
    "retry_on_timeout",
    "retry_on_error",
    "max_connections",
    "health_check_interval",
    "client_name",
    "protocol",
    "timeout",
    "decode_responses",
    "encoding",
    "encoding_errors",
    "single_connection_client",
)
CERT_REQS = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL, "required": ssl.CERT_REQUIRED}
TRUE, FALSE = ("1", "true", "yes", "on", "y"), ("0", "false", "no", "off", "n", "")


class RedisUrlError(ValueError):
    pass


@dataclass(frozen=True)
class TlsSettings:
    ca_certs: str | None = None
    ca_path: str | None = None
    certfile: str | None = None
    keyfile: str | None = None
    password: str | None = None
    cert_reqs: str = "required"
    check_hostname: bool = True

    def context(self) -> ssl.SSLContext:
        """A client context: the server's certificate checked against ``ca_certs``/``ca_path``
        (the system's CAs when neither is given), our own certificate for mutual TLS."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        verify = CERT_REQS[self.cert_reqs]
        context.check_hostname = self.check_hostname and verify != ssl.CERT_NONE
        context.verify_mode = verify
        try:
            if self.ca_certs or self.ca_path:
                context.load_verify_locations(cafile=self.ca_certs, capath=self.ca_path)
            elif verify != ssl.CERT_NONE:
                context.load_default_certs(ssl.Purpose.SERVER_AUTH)
            if self.certfile:
                context.load_cert_chain(self.certfile, self.keyfile, self.password)
        except (OSError, ssl.SSLError) as exc:
            files = ", ".join(f for f in (self.ca_certs, self.ca_path, self.certfile, self.keyfile) if f)
            raise RedisUrlError(f"cannot load the TLS files of the Redis URL ({files}): {exc}") from exc
        return context


@dataclass(frozen=True)
class RedisUrl:
    url: str
    scheme: str
    hosts: tuple[tuple[str, int], ...] = ()  # seeds, or the Sentinels
    path: str = ""  # unix socket
    db: int = 0
    username: str | None = None
    password: str | None = None
    tls: TlsSettings | None = None
    service: str = ""  # the Sentinels' name of the primary
    sentinel_username: str | None = None
    sentinel_password: str | None = None
    connect_timeout: float = 5.0
    _context: list[ssl.SSLContext] = field(default_factory=list, compare=False, repr=False)

    @property
    def sentinel(self) -> bool:
        return self.scheme.endswith("+sentinel")

    @property
    def unix(self) -> bool:
        return self.scheme == "unix"

    def ssl_context(self) -> ssl.SSLContext | None:
        if self.tls is None:
            return None
        if not self._context:
            self._context.append(self.tls.context())
        return self._context[0]

    def auth_command(self) -> tuple[str, ...] | None:
        if self.password is None:
            return None
        return ("AUTH", self.username, self.password) if self.username else ("AUTH", self.password)

    def sentinel_auth_command(self) -> tuple[str, ...] | None:
        if self.sentinel_password is None:
            return None
        if self.sentinel_username:
            return ("AUTH", self.sentinel_username, self.sentinel_password)
        return ("AUTH", self.sentinel_password)

    def redacted(self) -> str:
        """The URL without its passwords (for logs and error messages)."""
        return redact(self.url)


def redact(url: str) -> str:
    """``url`` with the password of its user part and any ``*password`` parameter replaced by ***."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable Redis URL>"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, hosts = netloc.rsplit("@", 1)
        user, sep, _ = userinfo.partition(":")
        netloc = f"{user}{':***' if sep else ''}@{hosts}"
    query = "&".join(
        f"{name}=***" if name.endswith("password") else f"{name}={value}"
        for name, _, value in (item.partition("=") for item in parts.query.split("&") if item)
    )
    return parts._replace(netloc=netloc, query=query).geturl()


def parse_redis_url(url: str) -> RedisUrl:
    """Parse and check ``url``; ``RedisUrlError`` (a ValueError) says what is wrong."""
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise RedisUrlError(f"not a URL: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        known = ", ".join(s + "://" for s in SCHEMES)
        raise RedisUrlError(f"Redis URL scheme {parts.scheme or '(none)'!r} is not one of {known}")
    query: dict[str, str] = {}
    accepted = OWN_PARAMETERS + IGNORED_PARAMETERS + (SENTINEL_PARAMETERS if "sentinel" in scheme else ())
    for name, values in parse_qs(parts.query, keep_blank_values=True).items():
        if name not in accepted:
            raise RedisUrlError(
                f"unknown parameter {name!r} in the Redis URL; the hub reads {', '.join(OWN_PARAMETERS)}"
                + (f", {', '.join(SENTINEL_PARAMETERS)}" if "sentinel" in scheme else "")
            )
        query[name] = values[-1]
    userinfo, _, netloc = parts.netloc.rpartition("@")
    username, password = _userinfo(userinfo)
    username = query.get("username", username)
    password = query.get("password", password)
    tls_given = [name for name in TLS_PARAMETERS if name in query]
    tls = None
    if scheme.startswith("rediss"):
        tls = _tls(query)
    elif tls_given:
        raise RedisUrlError(
            f"{', '.join(tls_given)} given for a {scheme}:// URL, which does not use TLS: use "
            f"{'rediss+sentinel' if 'sentinel' in scheme else 'rediss'}://"
        )
    timeout = _number(query, "socket_connect_timeout", 5.0)
    db = _integer(query, "db", None)
    common = dict(
        url=url, scheme=scheme, username=username, password=password, tls=tls, connect_timeout=timeout
    )
    if scheme == "unix":
        if not parts.path:
            raise RedisUrlError("a unix:// URL needs the socket's path, e.g. unix:///run/redis.sock")
        return RedisUrl(path=unquote(parts.path), db=db or 0, **common)  # type: ignore[arg-type]
    hosts = _hosts(netloc, DEFAULT_PORT[scheme])
    segments = [unquote(s) for s in parts.path.split("/") if s]
    if scheme.endswith("+sentinel"):
        if not segments:
            raise RedisUrlError(
                "a Sentinel URL names the primary's service: redis+sentinel://host:26379/mymaster"
            )
        service, rest = segments[0], segments[1:]
        if db is None and rest:
            db = _as_int(rest[0], "database number")
        return RedisUrl(
            hosts=hosts,
            service=service,
            db=db or 0,
            sentinel_username=query.get("sentinel_username"),
            sentinel_password=query.get("sentinel_password"),
            **common,  # type: ignore[arg-type]
        )
    if db is None and segments:
        db = _as_int(segments[0], "database number")
    return RedisUrl(hosts=hosts, db=db or 0, **common)  # type: ignore[arg-type]


def _userinfo(userinfo: str) -> tuple[str | None, str | None]:
    if not userinfo:
        return None, None
    user, sep, password = userinfo.partition(":")
    return (unquote(user) or None), (unquote(password) if sep else None)


def _hosts(netloc: str, default_port: int) -> tuple[tuple[str, int], ...]:
    hosts = []
    for item in netloc.split(","):
        item = item.strip()
        if not item:
            continue
        if item.startswith("["):  # [IPv6]:port
            host, _, rest = item[1:].partition("]")
            port_text = rest[1:] if rest.startswith(":") else ""
        else:
            host, _, port_text = item.rpartition(":") if ":" in item else (item, "", "")
        port = _as_int(port_text, "port") if port_text else default_port
        if not 0 < port < 65536:
            raise RedisUrlError(f"port {port} of {item!r} is not a port")
        hosts.append((unquote(host) or "127.0.0.1", port))
    return tuple(hosts) or (("127.0.0.1", default_port),)


def _tls(query: dict[str, str]) -> TlsSettings:
    reqs = query.get("ssl_cert_reqs", "required").lower().removeprefix("cert_")
    if reqs not in CERT_REQS:
        raise RedisUrlError(f"ssl_cert_reqs={reqs!r}: one of none, optional, required")
    check = query.get("ssl_check_hostname", "true").lower()
    if check not in TRUE + FALSE:
        raise RedisUrlError(f"ssl_check_hostname={check!r}: true or false")
    return TlsSettings(
        ca_certs=query.get("ssl_ca_certs") or None,
        ca_path=query.get("ssl_ca_path") or None,
        certfile=query.get("ssl_certfile") or None,
        keyfile=query.get("ssl_keyfile") or None,
        password=query.get("ssl_password") or None,
        cert_reqs=reqs,
        check_hostname=check in TRUE,
    )


def _as_int(text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise RedisUrlError(f"{text!r} is not a {what}") from None


def _integer(query: dict[str, str], name: str, default: int | None) -> int | None:
    return _as_int(query[name], name) if name in query else default


def _number(query: dict[str, str], name: str, default: float) -> float:
    if name not in query:
        return default
    try:
        value = float(query[name])
    except ValueError:
        raise RedisUrlError(f"{name}={query[name]!r} is not a number") from None
    if not value > 0:
        raise RedisUrlError(f"{name} must be > 0")
    return value


def hash_tag(key: str) -> str:
    """The part of ``key`` Redis Cluster hashes: between the first ``{`` and the next ``}`` when
    not empty, else the whole key."""
    start = key.find("{")
    if start >= 0:
        end = key.find("}", start + 1)
        if end > start + 1:
            return key[start + 1 : end]
    return key


def prefix_slot_tag(prefix: str) -> str | None:
    """The hash tag every ``prefix:…`` key shares, or None when the keys would spread over slots."""
    start = prefix.find("{")
    if start < 0:
        return None
    end = prefix.find("}", start + 1)
    return prefix[start + 1 : end] if end > start + 1 else None


def key_slot(key: str) -> int:
    """Redis Cluster's slot of ``key``: CRC16 (XMODEM) of its hash tag, modulo 16384."""
    crc = 0
    for byte in hash_tag(key).encode():
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
            crc &= 0xFFFF
    return crc % 16384
