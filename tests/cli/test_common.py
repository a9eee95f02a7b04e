"""``empq.cli.common``: an unreachable hub is one line and exit 3 for every command; a value the
generated models refuse names the argument that carried it; ``EMPQ_*`` settings are checked too."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from cli_support import clean_env, closed_hub, empq, one_line_error
from empq.generated.messages.submit_job import SubmitJob

from empq.cli.common import InputError, check
from empq.cli.submit import FLAGS


async def test_unreachable_hub_one_clear_line_exit_3():
    url = closed_hub()
    runs = await asyncio.gather(
        empq("submit", "--hub", url, "--job-type", "t"),
        empq("status", "--hub", url, "job-x"),
        empq("cancel", "--hub", url, "job-x"),
        empq("watch", "--hub", url, "--seconds", "1"),
        empq("worker", "--hub", url),
        empq("submit", "--job-type", "t", env=clean_env(EMPQ_HUB=url)),
    )
    for run in runs:
        line = one_line_error(run, 3)
        assert f"cannot reach the hub at {url}: connection refused" in line
        assert "EMPQ_HUB" in line


def refusal(**fields: Any) -> str:
    flags = {**FLAGS, "requirements.service_type": "--service"}
    with pytest.raises(InputError) as info:
        check(SubmitJob, flags, **{"job_type": "t", "payload": {}, **fields})
    return str(info.value)


def test_a_refused_field_names_its_argument():
    assert refusal(priority=101) == "--priority: Input should be less than or equal to 100 (got 101)"
    assert refusal(requirements={"hardware": {"gpu_memory_gb": -1}}) == (
        "--requirements: hardware.gpu_memory_gb: Input should be greater than 0 (got -1)"
    )
    assert refusal(requirements={"service_type": ""}) == (
        "--service: String should have at least 1 character (got '')"
    )
    assert refusal(job_type="x" * 300) == (
        f"--job-type: String should have at most 128 characters (got '{'x' * 35}…', 300 characters)"
    )
    assert "priority" not in check(SubmitJob, FLAGS, job_type="t", payload={}, priority=None).model_fields_set


async def test_settings_from_the_environment_are_checked(hub):
    timeout, client_id = await asyncio.gather(
        empq("status", "job-1", env=clean_env(EMPQ_HUB=closed_hub(), EMPQ_TIMEOUT="soon")),
        empq("status", "job-1", env=clean_env(EMPQ_HUB=hub.url, EMPQ_CLIENT_ID="x" * 300)),
    )
    assert "EMPQ_TIMEOUT='soon' is not valid" in one_line_error(timeout)
    assert "--client-id: String should have at most" in one_line_error(client_id)
