"""Webhook signatures (spec D21), per Standard Webhooks (https://www.standardwebhooks.com).

The hub signs every webhook it sends with these functions; a receiver checks them with
``verify``::

    from empq.webhooks import verify, WebhookVerificationError

    try:
        event = verify(secret, request.headers, await request.body())  # the message, as a dict
    except WebhookVerificationError:
        return Response(status_code=400)
    seen = event_already_handled(request.headers["webhook-id"])  # at-least-once: de-duplicate

The secret is ``whsec_`` + base64 of random bytes (``generate_secret()``); its bytes are the
HMAC-SHA256 key. A delivery carries ``webhook-id`` (the same on every attempt of one event),
``webhook-timestamp`` (Unix seconds of this attempt) and ``webhook-signature``: ``v1,`` + base64
of HMAC-SHA256 over ``<id>.<timestamp>.<body>`` (several space-separated signatures are allowed,
e.g. while a secret is rotated). Standard library only: usable without the rest of empq.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Mapping
from typing import Any

PREFIX = "whsec_"
TOLERANCE_S = 300  # a timestamp further than this from now is refused (replays)
MIN_KEY_BYTES = 16


class WebhookVerificationError(Exception):
    """The delivery is not signed with the secret, or its timestamp is too old or too new."""


def generate_secret(size: int = 32) -> str:
    """A new secret: ``whsec_`` + base64 of ``size`` random bytes."""
    return PREFIX + base64.b64encode(secrets.token_bytes(size)).decode()


def secret_key(secret: str | bytes) -> bytes:
    """The HMAC key of a secret (``whsec_<base64>``; the prefix may be left out); bytes are
    taken as the key itself. ``ValueError`` when it is not one."""
    if isinstance(secret, bytes):
        key = secret
    else:
        text = secret[len(PREFIX) :] if secret.startswith(PREFIX) else secret
        try:
            key = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(
                "a webhook secret is whsec_ followed by base64 (see generate_secret())"
            ) from None
    if len(key) < MIN_KEY_BYTES:
        raise ValueError(f"a webhook secret holds at least {MIN_KEY_BYTES} bytes (whsec_ + base64)")
    return key


def sign(secret: str | bytes, webhook_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: ``v1,`` + base64 HMAC-SHA256 of ``id.timestamp.body``."""
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def headers(
    secret: str | bytes, webhook_id: str, body: bytes, timestamp: int | None = None
) -> dict[str, str]:
    """The three Standard Webhooks headers of one attempt."""
    ts = int(time.time()) if timestamp is None else timestamp
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": sign(secret, webhook_id, ts, body),
    }


def verify(
    secret: str | bytes,
    received: Mapping[str, str],
    body: bytes | str,
    tolerance_s: float = TOLERANCE_S,
    now: float | None = None,
) -> Any:
    """Check a delivery's signature and timestamp; returns its JSON body parsed (the job event:
    ``job_update``, ``job_completed`` or ``job_cancelled``). ``received``: its headers (any case).
    Raises ``WebhookVerificationError``."""
    lower = {k.lower(): v for k, v in received.items()}
    webhook_id = lower.get("webhook-id")
    stamp = lower.get("webhook-timestamp")
    signatures = lower.get("webhook-signature")
    if not webhook_id or not stamp or not signatures:
        raise WebhookVerificationError("missing webhook-id, webhook-timestamp or webhook-signature")
    try:
        timestamp = int(stamp)
    except ValueError:
        raise WebhookVerificationError(f"webhook-timestamp {stamp!r} is not Unix seconds") from None
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_s:
        raise WebhookVerificationError(
            f"webhook-timestamp {timestamp} is more than {tolerance_s:g} s from now"
        )
    data = body.encode() if isinstance(body, str) else bytes(body)
    expected = sign(secret, webhook_id, timestamp, data).split(",", 1)[1]
    for candidate in signatures.split():
        version, _, value = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(value.encode(), expected.encode()):
            return json.loads(data)
    raise WebhookVerificationError("no valid v1 signature for this secret")
