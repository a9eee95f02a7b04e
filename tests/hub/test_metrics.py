"""GET /metrics: exact values after a known sequence of jobs over the WebSocket."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from peer_steps import accept, claim, complete, submit
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.asyncio


async def scrape(hub) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    async with httpx.AsyncClient(timeout=10) as http:
        r = await http.get(f"http://127.0.0.1:{hub.http.port}/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(r.text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def v(metrics, name: str, **labels: str) -> float:
    return metrics.get((name, tuple(sorted(labels.items()))), 0.0)


async def claim_one(worker, job_id: str) -> None:
    jobs = await claim(worker)
    assert [j["job_id"] for j in jobs] == [job_id]
    await accept(worker, job_id)


async def test_metrics_exact_counts(hub, peers):
    client = await peers.client()
    worker = await peers.worker(name="w-metrics", services=("comfyui",))

    high = (await submit(client, job_type="img", priority=80))["job_id"]
    mid = (await submit(client, job_type="img", priority=50))["job_id"]
    txt = (await submit(client, job_type="txt", priority=50))["job_id"]
    low = (await submit(client, job_type="img", priority=10))["job_id"]
    await client.send_raw(
        {
            "type": "submit_job",
            "id": "bad-1",
            "timestamp": 1,
            "job_type": "img",
            "payload": {},
            "priority": 500,
        }
    )
    bad = await client.expect("error", request_id="bad-1")
    assert bad["error_code"] == "INVALID_PARAMETERS"
    missing = await client.request("cancel_job", "job_cancelled", job_id="job-missing")
    assert missing["error_code"] == "JOB_NOT_FOUND"

    m = await scrape(hub)
    assert v(m, "empq_jobs_submitted_total", job_type="img") == 3
    assert v(m, "empq_jobs_submitted_total", job_type="txt") == 1
    assert v(m, "empq_queue_depth", priority_band="75-100") == 1
    assert v(m, "empq_queue_depth", priority_band="50-74") == 2
    assert v(m, "empq_queue_depth", priority_band="25-49") == 0
    assert v(m, "empq_queue_depth", priority_band="0-24") == 1
    assert v(m, "empq_jobs", status="queued") == 4
    assert v(m, "empq_active_workers") == 1
    assert v(m, "empq_connections", role="job_client") == 1
    assert v(m, "empq_connections", role="worker") == 1
    assert v(m, "empq_connections", role="monitor") == 0

    await claim_one(worker, high)  # priority first
    await complete(worker, high, processing_time=2.0)
    await claim_one(worker, mid)  # then FIFO within a priority
    ack = await worker.request("fail_job", "job_failed_ack", job_id=mid, worker_id="w-metrics", error="flaky")
    assert ack["retry_scheduled"] is True
    await claim_one(worker, txt)
    ack = await worker.request(
        "fail_job", "job_failed_ack", job_id=txt, worker_id="w-metrics", error="bad", retry=False
    )
    assert ack["retry_scheduled"] is False
    await asyncio.sleep(0.4)  # the retry delay (at most 0.2 s here) passes: mid is claimable again
    await claim_one(worker, mid)
    await complete(worker, mid, processing_time=0.5)
    await claim_one(worker, low)
    await complete(worker, low, processing_time=20)

    m = await scrape(hub)
    assert v(m, "empq_jobs_submitted_total", job_type="img") == 3
    assert v(m, "empq_jobs_completed_total", job_type="img") == 3
    assert v(m, "empq_jobs_completed_total", job_type="txt") == 0
    assert v(m, "empq_jobs_failed_total", job_type="txt") == 1
    assert v(m, "empq_jobs_failed_total", job_type="img") == 0
    assert v(m, "empq_jobs_retried_total", job_type="img") == 1
    assert v(m, "empq_processing_time_seconds_count", job_type="img") == 3
    assert v(m, "empq_processing_time_seconds_sum", job_type="img") == 22.5
    assert v(m, "empq_processing_time_seconds_bucket", job_type="img", le="1.0") == 1
    assert v(m, "empq_processing_time_seconds_bucket", job_type="img", le="2.5") == 2
    assert v(m, "empq_claim_latency_seconds_count") == 5
    assert v(m, "empq_messages_in_total", type="submit_job") == 4  # the invalid one never got in
    assert v(m, "empq_messages_in_total", type="claim_job") == 5
    assert v(m, "empq_messages_in_total", type="job_accepted_by_worker") == 5
    assert v(m, "empq_messages_in_total", type="complete_job") == 3
    assert v(m, "empq_messages_in_total", type="fail_job") == 2
    assert v(m, "empq_messages_in_total", type="cancel_job") == 1
    assert v(m, "empq_messages_out_total", type="job_accepted") == 4
    assert v(m, "empq_messages_out_total", type="job_assigned") == 5
    assert v(m, "empq_messages_out_total", type="job_completed_ack") == 3
    assert v(m, "empq_messages_out_total", type="job_failed_ack") == 2
    assert v(m, "empq_errors_total", error_code="INVALID_PARAMETERS") == 1
    assert v(m, "empq_errors_total", error_code="JOB_NOT_FOUND") == 1
    assert v(m, "empq_jobs", status="completed") == 3
    assert v(m, "empq_jobs", status="failed") == 1
    assert v(m, "empq_jobs", status="queued") == 0
    for band in ("0-24", "25-49", "50-74", "75-100"):
        assert v(m, "empq_queue_depth", priority_band=band) == 0


async def test_queue_depth_is_global_across_hubs(hub, peers, redis_url):
    """Two hubs on one Redis report the same queue depth whichever was submitted to."""
    from conftest import hub_config
    from empq.hub.server import HubServer

    other = HubServer(hub_config(redis_url, key_prefix=hub.config.key_prefix))
    await other.start()
    try:
        client = await peers.client()
        await submit(client, job_type="img", priority=90)
        await submit(client, job_type="img", priority=30)
        for server in (hub, other):
            m = await scrape(server)
            assert v(m, "empq_queue_depth", priority_band="75-100") == 1
            assert v(m, "empq_queue_depth", priority_band="25-49") == 1
        assert v(await scrape(other), "empq_jobs_submitted_total", job_type="img") == 0  # per-hub counter
    finally:
        await other.stop()


async def test_a_fan_out_is_counted_once_per_recipient_and_an_http_requests_copy_is_diverted():
    from empq.hub.jobs import job_update
    from empq.hub.metrics import HubMetrics, MeteredOutbox
    from inprocess import RecordingOutbox

    from empq import protocol

    inner, metrics = RecordingOutbox(), HubMetrics()
    outbox = MeteredOutbox(inner, metrics)
    data = protocol.encode(job_update("job-1", "assigned", "queued", worker_id="w"))
    outbox.send_many(["a", "b", "c"], data)
    assert metrics.messages_out.values["job_update"] == 3
    assert inner.fanouts == [data] and {c: len(f) for c, f in inner.frames.items()} == {
        "a": 1,
        "b": 1,
        "c": 1,
    }
    sink: list[bytes] = []
    outbox.divert["http-1"] = sink  # an HTTP API request's in-process connection among them
    outbox.send_many(["a", "http-1"], data)
    assert sink == [data] and len(inner.frames["a"]) == 2 and "http-1" not in inner.frames
    assert metrics.messages_out.values["job_update"] == 4  # the diverted copy is not a frame out


async def test_plain_histograms_export_what_prometheus_histograms_do():
    """The hot path's histograms are plain bucket counts, exported at scrape time with
    Prometheus' meaning: a bucket counts the values up to and including its bound, cumulatively;
    at most MAX_LABELS label values, then "other"."""
    from empq.hub.metrics import MAX_LABELS, LabelledHistograms
    from prometheus_client import CollectorRegistry, Histogram, generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    plain = LabelledHistograms("plain_seconds", "d", "job_type")
    registry = CollectorRegistry()
    reference = Histogram("plain_seconds", "d", ["job_type"], buckets=plain.buckets, registry=registry)
    for value in (0.0, 0.005, 0.0051, 1.0, 2.5, 3.0, 3600.0, 4000.0):
        plain.observe(value, "img")
        reference.labels("img").observe(value)

    def samples(families):
        return sorted(
            (s.name, tuple(sorted(s.labels.items())), s.value)
            for f in families
            for s in f.samples
            if not s.name.endswith("_created")
        )

    assert samples([plain.family()]) == samples(
        text_string_to_metric_families(generate_latest(registry).decode())
    )
    for n in range(MAX_LABELS + 5):
        plain.observe(1.0, f"type-{n}")
    assert len(plain.values) == MAX_LABELS + 1  # "img" and 199 others, then "other"
    counts, _ = plain.values["other"]
    assert sum(counts) == 6
