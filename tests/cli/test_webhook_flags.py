"""``empq submit --webhook-url/--webhook-event`` and what ``empq status`` shows of the deliveries
(spec D21), against a real hub (webhook settings for 127.0.0.1) and a real HTTP receiver: a job
cancelled at once is POSTed as its job_cancelled message."""

from __future__ import annotations

import asyncio
import time

import pytest
from cli_support import cli_env, closed_hub, empq, one_line_error
from webhook_receiver import Receiver

from empq.webhooks import generate_secret, verify

SECRET = generate_secret()


@pytest.fixture
async def webhook_hub(redis_url):
    from conftest import hub_config
    from empq.hub.server import HubServer

    config = hub_config(redis_url, webhook_secret=SECRET, webhook_allow_http=True, webhook_allow_private=True)
    server = HubServer(config)
    await server.start()
    server.url = f"ws://127.0.0.1:{server.port}"
    yield server
    await server.stop()


async def test_an_unknown_event_is_refused_before_connecting():
    run = await empq(
        "submit", "--job-type", "t", "--webhook-url", "https://example.com/h", "--webhook-event", "done",
        "--hub", closed_hub(),
    )  # fmt: skip
    assert run.code == 2
    assert one_line_error(run).startswith("empq submit: --webhook-event: 0: Input should be 'accepted'")


async def test_submit_with_a_webhook_then_status_shows_its_delivery(webhook_hub):
    receiver = await Receiver([503]).start()
    try:
        env = cli_env(webhook_hub)
        accepted = await empq(
            "submit", "--job-type", "upscale", "--service", "nobody", "--json",
            "--webhook-url", receiver.url, "--webhook-event", "cancelled", env=env,
        )  # fmt: skip
        assert accepted.code == 0, accepted
        job_id = accepted.json()["job_id"]
        assert (await empq("cancel", job_id, env=env)).code == 0
        await receiver.wait_for(2)
        event = verify(SECRET, receiver.requests[1].headers, receiver.requests[1].body)
        assert event["type"] == "job_cancelled" and event["job_id"] == job_id
        deadline = time.monotonic() + 10
        while True:
            shown = await empq("status", job_id, env=env)
            lines = [line for line in shown.out.splitlines() if line.startswith("webhook")]
            if lines and "delivered" in lines[0] or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
        assert lines == ["webhook   cancelled delivered after 2 attempt(s): 503, 200"], shown.out
    finally:
        await receiver.close()
