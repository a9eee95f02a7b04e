"""One webhook attempt over HTTP/1.1 (spec D21): which targets are allowed, and the POST.

A target is ``https://`` (``http://`` only with ``webhook_allow_http``) without credentials in the
URL. Its host must resolve to public addresses only: loopback, private, link-local (cloud metadata
at 169.254.169.254 among them), shared, multicast, reserved and unspecified addresses are refused
unless ``webhook_allow_private`` is set. The check runs at submission (a clear error then) and
again at every attempt (the name may since point elsewhere: DNS rebinding).

Why asyncio streams and h11 rather than an HTTP client library: the connection must go to the very
address that passed the check (a client that resolves the name again could be sent elsewhere
between the two), and every step must be bounded: the whole attempt (resolve, connect, TLS, send,
response head) within ``webhook_timeout_s``, the response head within h11's 16 KiB, the response
body never read (the connection is closed once the status is known; nothing of it is kept). h11
is already installed (uvicorn's HTTP/1.1 parser), so this adds no dependency. One connection per
attempt: no pool to bound or to poison.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import socket
import ssl
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

import h11


class Refused(Exception):
    """The target is not allowed: ``reason`` (scheme, url, credentials, unresolvable,
    private_address) and a sentence saying why."""

    def __init__(self, reason: str, text: str) -> None:
        super().__init__(text)
        self.reason = reason
        self.text = text


@dataclass(frozen=True, slots=True)
class Target:
    scheme: str  # https | http
    host: str  # lowercase; an IPv6 address without brackets
    port: int
    path: str  # path and query, as sent in the request line

    @property
    def key(self) -> str:
        """scheme://host:port: what the per-target bound counts (and the queue it waits in)."""
        return f"{self.scheme}://{self.netloc(always_port=True)}"

    def netloc(self, always_port: bool = False) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default and not always_port else f"{host}:{self.port}"


def parse(url: str, allow_http: bool) -> Target:
    """The target of a webhook URL, or ``Refused``."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise Refused("url", f"not a valid URL: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http") or (scheme == "http" and not allow_http):
        allowed = "https or http" if allow_http else "https (http needs the hub's webhook_allow_http)"
        raise Refused("scheme", f"webhook URLs are {allowed}, not {scheme or 'none'}")
    if parts.username is not None or parts.password is not None:
        raise Refused("credentials", "no user or password in a webhook URL (use its path or query)")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise Refused("url", "the webhook URL has no host")
    try:
        host.encode("idna")
    except UnicodeError:
        raise Refused("url", f"{host!r} is not a valid host name") from None
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(scheme, host, port or (443 if scheme == "https" else 80), path)


def public(address: str) -> bool:
    """May a webhook go to this address without ``webhook_allow_private``?"""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


async def resolve(target: Target, allow_private: bool) -> list[str]:
    """The target's addresses, all allowed; ``Refused`` when it has none or any is not allowed
    (a name that also resolves to a private address is refused as a whole)."""
    try:
        ipaddress.ip_address(target.host)
        addresses = [target.host]
    except ValueError:
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise Refused("unresolvable", f"cannot resolve {target.host}: {exc}") from None
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addresses:
        raise Refused("unresolvable", f"{target.host} has no address")
    if not allow_private:
        for address in addresses:
            if not public(address):
                raise Refused(
                    "private_address",
                    f"{target.host} resolves to {address}: webhooks do not go to loopback, private, "
                    "link-local or metadata addresses (the hub's webhook_allow_private allows them)",
                )
    return addresses


@dataclass(frozen=True, slots=True)
class Answer:
    """What one attempt got: the receiver's status, or an error (then ``status`` is None)."""

    status: int | None
    error: str | None = None
    retry_after: float | None = None  # seconds, from a Retry-After header
    refused: bool = False  # the target was refused: do not try again
    duration: float = 0.0


@functools.cache
def _tls() -> ssl.SSLContext:
    return ssl.create_default_context()


async def post(
    target: Target, headers: Mapping[str, str], body: bytes, timeout: float, allow_private: bool
) -> Answer:
    """POST ``body`` to the target; never raises for what the network or the receiver do."""
    started = time.monotonic()
    try:
        async with asyncio.timeout(timeout):
            addresses = await resolve(target, allow_private)
            answer = await _exchange(target, addresses, headers, body)
    except Refused as refused:
        answer = Answer(None, refused.text, refused=True)
    except TimeoutError:
        answer = Answer(None, f"no answer within {timeout:g} s")
    except h11.ProtocolError as exc:
        answer = Answer(None, f"invalid HTTP response: {exc}")
    except ssl.SSLError as exc:
        answer = Answer(None, f"TLS: {exc.reason or exc}")
    except OSError as exc:
        answer = Answer(None, f"connection failed: {exc.strerror or exc}")
    return Answer(answer.status, answer.error, answer.retry_after, answer.refused, time.monotonic() - started)


async def _exchange(target: Target, addresses: list[str], headers: Mapping[str, str], body: bytes) -> Answer:
    tls = _tls() if target.scheme == "https" else None
    failure: OSError | None = None
    for address in addresses:  # the checked addresses only, in order
        try:
            reader, writer = await asyncio.open_connection(
                address, target.port, ssl=tls, server_hostname=target.host if tls else None
            )
        except OSError as exc:
            failure = exc
            continue
        try:
            return await _request(reader, writer, target, headers, body)
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
    assert failure is not None
    raise failure


async def _request(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    target: Target,
    headers: Mapping[str, str],
    body: bytes,
) -> Answer:
    conn = h11.Connection(h11.CLIENT)  # refuses a response head over 16 KiB
    request = h11.Request(
        method="POST",
        target=target.path,
        headers=[
            ("Host", target.netloc()),
            ("Content-Length", str(len(body))),
            ("Connection", "close"),
            *headers.items(),
        ],
    )
    writer.write(conn.send(request) + conn.send(h11.Data(data=body)) + conn.send(h11.EndOfMessage()))
    await writer.drain()
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(await reader.read(16384))
        elif isinstance(event, h11.Response):
            status = int(event.status_code)
            error = (
                None if 200 <= status < 300 else f"HTTP {status} {event.reason.decode('latin-1')}".rstrip()
            )
            return Answer(status, error[:200] if error else None, _retry_after(event.headers))
        elif isinstance(event, h11.ConnectionClosed):
            raise OSError("the receiver closed the connection without answering")
        # an InformationalResponse (1xx): the final answer follows


def _retry_after(headers: Iterable[tuple[bytes, bytes]]) -> float | None:
    for name, value in headers:
        if name == b"retry-after":
            try:
                return max(0.0, float(value))
            except ValueError:
                return None  # an HTTP date: the backoff decides
    return None
