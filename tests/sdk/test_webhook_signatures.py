"""empq.webhooks (spec D21): Standard Webhooks signatures, checked against the definition written
out here with hmac; what verify refuses; JobSubmission carries the webhook fields."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from empq.webhooks import WebhookVerificationError, generate_secret, headers, secret_key, sign, verify

BODY = b'{"type":"job_completed","job_id":"job-1","status":"completed","timestamp":1705312345000}'


def standard(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, f"{webhook_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def test_the_signature_is_standard_webhooks_v1():
    secret = generate_secret()
    assert secret.startswith("whsec_") and len(base64.b64decode(secret[6:])) == 32
    assert sign(secret, "job-1.1", 1705312345, BODY) == standard(secret, "job-1.1", 1705312345, BODY)
    # the same key given without the prefix, or as bytes
    assert sign(secret[6:], "job-1.1", 1, BODY) == sign(base64.b64decode(secret[6:]), "job-1.1", 1, BODY)


def test_verify_returns_the_message_and_accepts_any_of_several_signatures():
    old, new = generate_secret(), generate_secret()
    h = headers(new, "job-1.1", BODY, timestamp=1705312345)
    h["webhook-signature"] = f"{sign(old, 'job-1.1', 1705312345, BODY)} {h['webhook-signature']}"
    upper = {k.upper(): v for k, v in h.items()}  # header names in any case
    assert verify(new, upper, BODY, now=1705312345 + 10)["job_id"] == "job-1"
    assert verify(old, h, BODY.decode(), now=1705312345)["type"] == "job_completed"


@pytest.mark.parametrize(
    ("change", "error"),
    [
        (lambda h, b: (h, b.replace(b"job-1", b"job-2")), "no valid v1 signature"),
        (lambda h, b: ({**h, "webhook-id": "job-1.2"}, b), "no valid v1 signature"),
        (lambda h, b: ({**h, "webhook-timestamp": "1705312044"}, b), "from now"),  # 301 s before
        (lambda h, b: ({**h, "webhook-timestamp": "soon"}, b), "not Unix seconds"),
        (lambda h, b: ({k: v for k, v in h.items() if k != "webhook-signature"}, b), "missing"),
        (lambda h, b: ({**h, "webhook-signature": "v2," + h["webhook-signature"][3:]}, b), "no valid v1"),
    ],
)
def test_verify_refuses(change, error):
    secret = generate_secret()
    received, body = change(headers(secret, "job-1.1", BODY, timestamp=1705312345), BODY)
    with pytest.raises(WebhookVerificationError, match=error):
        verify(secret, received, body, now=1705312345)


@pytest.mark.parametrize(
    "bad", ["", "whsec_", "whsec_not base64!", "whsec_" + base64.b64encode(b"short").decode()]
)
def test_a_bad_secret_is_a_value_error_naming_the_form(bad):
    with pytest.raises(ValueError, match="whsec_"):
        secret_key(bad)


def test_a_bad_hub_secret_stops_the_hub_at_start():
    from empq.hub.config import HubConfig

    with pytest.raises(ValueError, match="whsec_"):
        HubConfig.from_env({"EMPQ_WEBHOOK_SECRET": "hunter2"})


def test_job_submission_carries_the_webhook():
    from empq.client import JobSubmission

    message = JobSubmission(
        "upscale", {}, webhook_url="https://example.com/h", webhook_events=["progress", "completed"]
    ).to_message()
    assert message.webhook_url == "https://example.com/h"
    assert [e.value for e in message.webhook_events or ()] == ["progress", "completed"]
