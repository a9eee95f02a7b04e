"""hub/matching.py: job classes and the matching rules (spec D8) — who is told of a job and who
can claim it, in-process on a real redis-server, and the rules on their own."""

from __future__ import annotations

import pytest
from empq.hub.matching import JobClass, can_run, customer_allowed


@pytest.mark.parametrize(
    ("requirements", "capabilities", "runs"),
    [
        ({"service_type": "comfyui"}, {"services": ["comfyui"]}, True),
        ({"service_type": "a1111"}, {"services": ["comfyui"]}, False),
        ({"component": "upscale"}, {"services": ["x"], "components": ["upscale"]}, True),
        ({"component": "upscale"}, {"services": ["x"], "components": ["inpaint"]}, False),
        ({"component": "upscale"}, {"services": ["x"]}, False),
        ({"hardware": {"gpu_memory_gb": 8}}, {"services": ["x"], "hardware": {"gpu_memory_gb": 8}}, True),
        ({"hardware": {"gpu_memory_gb": 24}}, {"services": ["x"], "hardware": {"gpu_memory_gb": 16}}, False),
        ({"hardware": {"gpu_memory_gb": 8}}, {"services": ["x"]}, False),
        (
            {"hardware": {"cpu_cores": 4, "ram_gb": 32}},
            {"services": ["x"], "hardware": {"cpu_cores": 8, "ram_gb": 64}},
            True,
        ),
        ({"hardware": {"cpu_cores": 16}}, {"services": ["x"], "hardware": {"cpu_cores": 8}}, False),
        (None, {"services": ["x"], "allowed_customers": ["acme"]}, True),  # job of customer acme
        (None, {"services": ["x"], "allowed_customers": ["other"]}, False),
    ],
)
async def test_matching_rules(core_hub, requirements, capabilities, runs):
    hub = await core_hub()
    client = await hub.client("acme")
    worker = await hub.worker(subscribe=True, **capabilities)
    fields = {"requirements": requirements} if requirements else {}
    job = await client.submit(**fields)
    assert job["notified_workers"] == (1 if runs else 0)
    jobs = await worker.claim()
    assert [j["job_id"] for j in jobs] == ([job["job_id"]] if runs else [])


def test_a_class_is_its_job_type_and_requirements():
    req = {"service_type": "comfyui", "component": "sdxl", "hardware": {"gpu_memory_gb": 8, "ram_gb": 32}}
    one = JobClass.of("t", req)
    assert one == JobClass.of("t", {**req, "hardware": {"ram_gb": 32, "gpu_memory_gb": 8}})  # key order
    assert one.id != JobClass.of("u", req).id and one.id != JobClass.of("t", {**req, "component": "x"}).id
    assert JobClass.from_json(one.to_json()) == one
    assert one.summary() == {"service_type": "comfyui", "component": "sdxl", "gpu_memory_min": 8}
    assert JobClass.of("t", None).summary() == {}


def test_a_minimum_is_met_only_by_a_declared_number():
    job_class = JobClass.of("t", {"hardware": {"cpu_cores": 1}})
    assert can_run({"hardware": {"cpu_cores": 1}}, job_class)
    for have in (None, "8", True):  # undeclared, not a number, a boolean
        assert not can_run({"hardware": {"cpu_cores": have}}, job_class), have


def test_a_worker_bound_to_customers_runs_none_of_a_job_without_one():
    assert customer_allowed({}, None) and customer_allowed({}, "acme")
    assert customer_allowed({"allowed_customers": ["acme"]}, "acme")
    assert not customer_allowed({"allowed_customers": ["acme"]}, None)
