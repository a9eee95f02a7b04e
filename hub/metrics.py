"""Prometheus metrics of one hub (``GET /metrics`` on the HTTP port).

Counters and histograms count what happened *in this hub process* (Prometheus sums them across
hubs); they are incremented from the real events: the core calls ``job_submitted`` & co. from its
handlers, and ``MeteredOutbox`` counts every frame the core sends (messages out by type, errors
by code).  Gauges that describe shared state (queue depth by priority band, live workers, jobs
by status) are read from Redis at scrape time, so every hub reports the same global number.

Each hub has its own ``CollectorRegistry`` (several hubs may share a process in tests).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Collection
from typing import TYPE_CHECKING, Any

import orjson
from empq.hub.lifecycle import STATUSES
from prometheus_client import CollectorRegistry, Gauge, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.utils import floatToGoString

if TYPE_CHECKING:
    from empq.hub.core import HubCore, Outbox

# priority bands for the queue-depth gauge (inclusive)
BANDS: list[tuple[int, int]] = [(0, 24), (25, 49), (50, 74), (75, 100)]
MAX_LABELS = 200  # distinct label values per metric (job types, message types, error codes)
OTHER = "other"
TIME_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)


def band_label(lo: int, hi: int) -> str:
    return f"{lo}-{hi}"


class LabelledCounters:
    """Counters by one label, as plain dict entries (a hot-path ``+= 1``, no lock, no object per
    label), turned into Prometheus counters only when /metrics is scraped. At most ``MAX_LABELS``
    values: later ones count as "other" (job types are chosen by clients; a flood of one-off types
    must not grow /metrics without bound)."""

    def __init__(self, name: str, documentation: str, label: str) -> None:
        self.name, self.documentation, self.label = name, documentation, label
        self.values: dict[str, float] = {}

    def inc(self, value: str, n: int = 1) -> None:
        values = self.values
        if value in values:
            values[value] += n
        elif len(values) < MAX_LABELS:
            values[value] = n
        else:
            values[OTHER] = values.get(OTHER, 0) + n

    def family(self) -> CounterMetricFamily:
        family = CounterMetricFamily(self.name, self.documentation, labels=[self.label])
        for value, n in self.values.items():
            family.add_metric([value], n)
        return family


class LabelledHistograms:
    """Histograms by one label (or none: ``label=None``), as plain bucket counts: an observation
    is a bisect and two ``+= 1`` (Prometheus' ``Histogram.observe`` takes a lock and walks the
    buckets), turned into a Prometheus histogram when /metrics is scraped. Label values bounded
    as ``LabelledCounters``'."""

    def __init__(
        self, name: str, documentation: str, label: str | None, buckets: tuple[float, ...] = TIME_BUCKETS
    ) -> None:
        self.name, self.documentation, self.label, self.buckets = name, documentation, label, buckets
        self.values: dict[str, tuple[list[int], list[float]]] = {}  # label -> (counts, [sum])

    def observe(self, value: float, label: str = "") -> None:
        entry = self.values.get(label)
        if entry is None:
            if len(self.values) >= MAX_LABELS:
                label = OTHER
            entry = self.values.setdefault(label, ([0] * (len(self.buckets) + 1), [0.0]))
        entry[0][bisect_left(self.buckets, value)] += 1  # le is inclusive; the last is +Inf
        entry[1][0] += value

    def family(self) -> HistogramMetricFamily:
        labels = [self.label] if self.label else []
        family = HistogramMetricFamily(self.name, self.documentation, labels=labels)
        for label, (counts, total) in self.values.items():
            cumulative, running = [], 0
            for le, n in zip((*self.buckets, float("inf")), counts, strict=True):
                running += n
                cumulative.append((floatToGoString(le), running))
            family.add_metric([label] if self.label else [], cumulative, total[0])
        return family


class HubMetrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.submitted = LabelledCounters("empq_jobs_submitted", "Jobs submitted to this hub", "job_type")
        self.completed = LabelledCounters("empq_jobs_completed", "Jobs completed via this hub", "job_type")
        self.failed = LabelledCounters(
            "empq_jobs_failed", "Jobs that failed for good (no retry left or not retryable)", "job_type"
        )
        self.retried = LabelledCounters(
            "empq_jobs_retried", "Failed attempts scheduled for a retry", "job_type"
        )
        self.messages_in = LabelledCounters("empq_messages_in", "Messages received, by type", "type")
        self.messages_out = LabelledCounters("empq_messages_out", "Frames sent, by message type", "type")
        self.errors = LabelledCounters("empq_errors", "error messages sent, by error_code", "error_code")
        self.webhook_deliveries = LabelledCounters(
            "empq_webhook_deliveries",
            "Webhook attempts made by this hub, by outcome: delivered (2xx), retry (timeout, connection "
            "error, 5xx, 429: tried again later), failed (3xx, other 4xx, refused target), expired (still "
            "failing at the end of the retry period)",
            "outcome",
        )
        counters = (
            self.submitted,
            self.completed,
            self.failed,
            self.retried,
            self.messages_in,
            self.messages_out,
            self.errors,
            self.webhook_deliveries,
        )
        self.claim_latency = LabelledHistograms(
            "empq_claim_latency_seconds",
            "Time this hub took to serve a claim_job (the atomic Redis claim), whatever it returned",
            None,
        )
        self.processing_time = LabelledHistograms(
            "empq_processing_time_seconds", "Processing time reported by workers on completion", "job_type"
        )
        self.webhook_latency = LabelledHistograms(
            "empq_webhook_latency_seconds",
            "From a job event to its webhook's 2xx, retries included (deliveries made by this hub)",
            None,
        )
        self.webhook_attempt_time = LabelledHistograms(
            "empq_webhook_attempt_seconds",
            "One webhook attempt: resolve, connect, send, response status",
            None,
        )
        histograms = (
            self.claim_latency,
            self.processing_time,
            self.webhook_latency,
            self.webhook_attempt_time,
        )
        r.register(_Families((*counters, *histograms)))
        self.connections = Gauge(
            "empq_connections", "Open connections of this hub, by role", ["role"], registry=r
        )
        self.queue_depth = Gauge(
            "empq_queue_depth", "Claimable jobs (all hubs), by priority band", ["priority_band"], registry=r
        )
        self.active_workers = Gauge("empq_active_workers", "Registered live workers (all hubs)", registry=r)
        self.jobs = Gauge("empq_jobs", "Jobs by status (all hubs)", ["status"], registry=r)

    # hooks the core calls ---------------------------------------------------------------
    def job_submitted(self, job_type: str) -> None:
        self.submitted.inc(job_type)

    def claim_served(self, latency_s: float) -> None:
        self.claim_latency.observe(max(0.0, latency_s))

    def job_completed(self, job_type: str, processing_time: float | None) -> None:
        self.completed.inc(job_type)
        if processing_time is not None:
            self.processing_time.observe(max(0.0, processing_time), job_type)

    def job_failed(self, job_type: str, retry: bool) -> None:
        (self.retried if retry else self.failed).inc(job_type)

    def webhook_attempt(self, outcome: str, duration_s: float) -> None:
        self.webhook_deliveries.inc(outcome)  # four values
        self.webhook_attempt_time.observe(max(0.0, duration_s))

    def webhook_delivered(self, latency_s: float) -> None:
        self.webhook_latency.observe(latency_s)

    def message_in(self, kind: str) -> None:
        self.messages_in.inc(kind)

    def frame_out(self, data: bytes, n: int = 1) -> None:
        """``n`` connections were sent this frame."""
        kind = _frame_type(data)
        self.messages_out.inc(kind, n)
        if kind == "error":
            try:
                code = orjson.loads(data).get("error_code", "unknown")
            except orjson.JSONDecodeError:
                code = "unknown"
            self.errors.inc(str(code), n)

    # scrape -----------------------------------------------------------------------------
    async def render(self, core: HubCore) -> bytes:
        """Refresh the gauges (Redis for the global ones) and render the text format."""
        counts = {"job_client": 0, "monitor": 0, "worker": 0, "new": 0}
        for conn_id, session in core.sessions.items():
            if not conn_id.startswith("http-"):  # the HTTP API's request-long connections
                counts[session.role.value] += 1
        for role, n in counts.items():
            self.connections.labels(role).set(n)
        depths = await core.store.queue_depths(BANDS)
        for (lo, hi), n in zip(BANDS, depths, strict=True):
            self.queue_depth.labels(band_label(lo, hi)).set(n)
        self.active_workers.set(await core.fleet.live_workers())
        by_status = await core.store.counts()
        for status in STATUSES:
            self.jobs.labels(status).set(max(0, by_status.get(status, 0)))
        return generate_latest(self.registry)


class _Families:
    """A registry collector: the plain counters and histograms as Prometheus families, at scrape time."""

    def __init__(self, counters: tuple[LabelledCounters | LabelledHistograms, ...]) -> None:
        self.counters = counters

    def collect(self) -> Any:
        for counter in self.counters:
            yield counter.family()

    def describe(self) -> Any:
        return [counter.family() for counter in self.counters]


def _frame_type(data: bytes) -> str:
    """The ``type`` of an encoded message without parsing it (it is serialised first)."""
    if data.startswith(b'{"type":"'):
        end = data.find(b'"', 9)
        if end > 9:
            return data[9:end].decode("ascii", "replace")
    try:
        return str(orjson.loads(data).get("type", "unknown"))
    except (orjson.JSONDecodeError, AttributeError):
        return "unknown"


class MeteredOutbox:
    """Wraps the transport's outbox: counts every frame, and diverts the frames of the HTTP API's
    in-process connections (``divert`` maps their conn ids to a list collecting the frames)."""

    def __init__(self, inner: Outbox, metrics: HubMetrics) -> None:
        self.inner = inner
        self.metrics = metrics
        self.divert: dict[str, list[bytes]] = {}

    def send(self, conn_id: str, data: bytes) -> None:
        sink = self.divert.get(conn_id)
        if sink is not None:
            sink.append(data)
            return
        self.metrics.frame_out(data)
        self.inner.send(conn_id, data)

    def send_many(self, conn_ids: Collection[str], data: bytes) -> None:
        """One frame to several connections (a fan-out): counted once for all."""
        if self.divert and not self.divert.keys().isdisjoint(conn_ids):
            for conn_id in conn_ids:
                self.send(conn_id, data)
            return
        self.metrics.frame_out(data, len(conn_ids))
        self.inner.send_many(conn_ids, data)

    def close(self, conn_id: str, code: int, reason: str) -> None:
        if conn_id not in self.divert:
            self.inner.close(conn_id, code, reason)

    def __getattr__(self, name: str) -> Any:  # attach/detach/flush/conns of the inner outbox
        return getattr(self.inner, name)
