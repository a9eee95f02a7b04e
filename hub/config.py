"""Hub settings: defaults, ``EMPQ_*`` environment variables, command-line flags (flags win)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from empq.hub.redis_url import RedisUrlError, parse_redis_url, redact


@dataclass
class HubConfig:
    host: str = "127.0.0.1"
    ws_port: int = 3002
    http_port: int = 3001  # HTTP API, /metrics, dashboard; 0 = any free port, -1 = off
    transport: str = "websockets"  # the WebSocket I/O layer: websockets | picows (pip install empq[fast])
    processes: int = 1  # hub processes sharing the port (SO_REUSEPORT) under one supervisor
    reuse_port: bool = False  # listen with SO_REUSEPORT (set for the processes --processes starts)
    # of a job's progress updates that arrive in the same event-loop tick, only the latest is
    # written to Redis and fanned out (each is still acknowledged); off: each one is
    coalesce_progress: bool = True
    redis_url: str | None = None  # None: start an embedded redis-server (see hub/redis_url.py)
    # WAIT after each batch of Redis calls: a call is answered once this many replicas have its
    # writes (0: asynchronous replication, the default; see README "Redis Sentinel")
    redis_wait_replicas: int = 0
    redis_wait_timeout_ms: int = 1000
    data_dir: Path = field(default_factory=lambda: Path(".empq"))
    key_prefix: str = "{empq}"  # one hash tag: every key in one Redis Cluster slot
    hub_id: str = ""  # default: generated at start
    server_version: str = "1.0.0"
    max_message_size: int = 10 * 1024 * 1024
    chunk_threshold: int = 1024 * 1024
    claim_timeout_ms: int = 30_000
    retry_base_seconds: float = 5.0
    retry_max_seconds: float = 300.0
    default_max_retries: int = 3
    heartbeat_interval_ms: int = 20_000
    notify_fanout: int = 1  # idle workers sent job_available per submitted job (D7)
    sweep_interval_ms: int = 200  # claim/run deadlines and retry promotion
    heartbeat_timeout_ms: int = 60_000  # a worker silent this long is gone (its jobs are requeued)
    reconnect_grace_ms: int = 30_000  # a dropped worker that returns within this keeps its jobs
    status_interval_ms: int = 10_000  # system_status to monitors
    # finished jobs (completed, failed, cancelled, timeout) are forgotten this long after their final
    # transition: hash and listing entry (D9); 0 = keep them forever
    job_retention_s: float = 7 * 24 * 3600
    idempotency_ttl_s: float = 24 * 3600  # a submit_job idempotency_key is remembered this long (D18)
    queue_alert_per_worker: int = 5  # system_alert when queued jobs > this x max(1, workers)
    client_tokens: str = ""  # comma-separated tokens for job clients (none anywhere: open dev mode)
    worker_tokens: str = ""
    monitor_tokens: str = ""
    monitor_permissions: str = "view_all_jobs,view_system_stats,view_workers"  # granted to monitor tokens
    auth_file: str = ""  # JSON: {"tokens": [{"token", "role", "customer_id"?, "permissions"?}]}
    # resource bounds (spec D19)
    registration_timeout_ms: int = 10_000  # a connection that has not registered by then is closed
    max_unregistered_frame: int = 128 * 1024  # frame size limit until a connection registers
    max_unregistered_connections: int = 1000  # more connections not yet registered are refused (1013)
    max_outbound_buffer: int = 8 * 1024 * 1024  # bytes queued to a peer that does not read: then dropped
    max_worker_info_bytes: int = 64 * 1024  # capabilities, system_info, connector_status (each, as JSON)
    auth_failures_per_minute: int = 60  # failed authentications per address a minute; then refused (0 = off)
    submit_rate: float = 0.0  # submissions per second per client identity and hub (0 = no limit)
    submit_burst: int = 0  # submissions allowed at once above the rate (0 = max(1, 2 x submit_rate))
    max_queued_jobs: int = 0  # submissions refused (RATE_LIMITED) while this many jobs wait (0 = no bound)
    max_queued_per_customer: int = 0  # the same, per customer (0 = no bound)
    metrics_public: bool = False  # with tokens configured, /metrics needs an unbound monitor token unless set
    # webhooks (spec D21): a job's events POSTed to its webhook_url, signed, durable, retried
    webhook_secret: str = ""  # whsec_<base64>: signs deliveries (a customer's own, from auth_file, wins)
    webhook_allow_http: bool = False  # http:// targets too (default: https only)
    webhook_allow_private: bool = False  # loopback, private, link-local, metadata targets too
    webhook_timeout_s: float = 10.0  # one attempt: resolve, connect, send, response headers
    webhook_max_age_s: float = 24 * 3600  # retries stop this long after the event
    webhook_retry_base_s: float = 5.0  # first retry delay (doubles, with jitter)
    webhook_retry_max_s: float = 3600.0  # longest retry delay
    webhook_concurrency: int = 32  # attempts in flight per hub; 0 = this hub sends none
    webhook_per_target: int = 4  # attempts in flight per hub to one scheme://host:port
    tls_cert: str = ""
    tls_key: str = ""
    log_level: str = "info"
    log_format: str = "text"  # text | json (one JSON object per line)

    ENV_PREFIX = "EMPQ_"

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: Any) -> HubConfig:
        """Defaults ← ``EMPQ_<FIELD>`` variables ← non-None ``overrides`` (e.g. parsed flags)."""
        env = dict(os.environ) if env is None else env
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(cls.ENV_PREFIX + f.name.upper())
            if raw is not None and raw != "":
                try:
                    values[f.name] = _convert(f.type, raw)
                except ValueError:
                    raise ValueError(
                        f"{cls.ENV_PREFIX}{f.name.upper()}={raw!r} is not a valid {f.type}"
                    ) from None
        values.update({k: v for k, v in overrides.items() if v is not None})
        if "data_dir" in values:
            values["data_dir"] = Path(values["data_dir"])
        config = cls(**values)
        if not 0 <= config.ws_port <= 65535:
            raise ValueError(f"ws_port {config.ws_port} is not a port (0-65535)")
        if not -1 <= config.http_port <= 65535:
            raise ValueError(f"http_port {config.http_port} is not a port (0-65535, -1 = off)")
        if config.transport not in TRANSPORTS:
            raise ValueError(f"transport {config.transport!r} must be one of {', '.join(TRANSPORTS)}")
        if config.transport == "picows":
            try:
                import picows  # noqa: F401
            except ImportError:
                raise ValueError("transport picows needs picows: pip install 'empq[fast]'") from None
        if not 1 <= config.processes <= 256:
            raise ValueError(f"processes {config.processes} must be 1..256")
        if config.log_format not in ("text", "json"):
            raise ValueError(f"log_format {config.log_format!r} must be text or json")
        if config.redis_url:
            try:
                parse_redis_url(config.redis_url).ssl_context()  # the TLS files must load
            except RedisUrlError as exc:
                raise ValueError(f"redis_url {redact(config.redis_url)}: {exc}") from None
        if config.redis_wait_replicas < 0 or config.redis_wait_timeout_ms <= 0:
            raise ValueError("redis_wait_replicas must be >= 0 and redis_wait_timeout_ms > 0")
        if config.webhook_secret:
            from empq.webhooks import secret_key

            secret_key(config.webhook_secret)  # ValueError naming the expected form
        if not (
            config.webhook_timeout_s > 0 and config.webhook_retry_base_s > 0 and config.webhook_max_age_s >= 0
        ):
            raise ValueError("webhook_timeout_s and webhook_retry_base_s must be > 0, webhook_max_age_s >= 0")
        if config.webhook_concurrency < 0 or config.webhook_per_target < 1:
            raise ValueError("webhook_concurrency must be >= 0 and webhook_per_target >= 1")
        if not config.job_retention_s >= 0:
            raise ValueError(f"job_retention_s {config.job_retention_s:g} must be >= 0 (0 = keep forever)")
        return config

    @property
    def redis_wait(self) -> tuple[int, int] | None:
        """(replicas, timeout ms) for WAIT after each batch, or None."""
        if self.redis_wait_replicas <= 0:
            return None
        return self.redis_wait_replicas, self.redis_wait_timeout_ms


# What each setting does: the CLI's --help, README's settings table (tools/settings_table.py,
# kept in sync by a test) and the error for a bad value all read it.
HELP: dict[str, str] = {
    "host": "interface to listen on (WebSocket and HTTP)",
    "ws_port": "WebSocket port",
    "http_port": "HTTP API, /metrics and dashboard port; 0 = any free port, -1 = off",
    "transport": "WebSocket I/O layer: websockets, or picows (faster; pip install 'empq[fast]')",
    "processes": "hub processes sharing ws_port (SO_REUSEPORT, Linux) under one supervisor that restarts "
    "a dead one; only the first serves the HTTP API",
    "reuse_port": "listen on ws_port with SO_REUSEPORT, so several hubs share it (--processes sets it)",
    "coalesce_progress": "of a job's progress updates arriving in the same event-loop tick, write and fan "
    "out only the latest (each is still acknowledged; final messages are never coalesced)",
    "redis_url": "Redis URL: redis://, rediss:// (TLS), unix://, redis+sentinel://host:26379/name "
    "(README: Redis deployments); none: an embedded redis-server in data_dir",
    "redis_wait_replicas": "answer a call once this many replicas have its writes (Redis WAIT); "
    "0 = asynchronous replication",
    "redis_wait_timeout_ms": "how long WAIT waits for them; then the call fails as SERVICE_UNAVAILABLE",
    "data_dir": "data dir of the embedded redis-server (AOF)",
    "key_prefix": "prefix of every Redis key, with one hash tag (one Redis Cluster slot); hubs sharing "
    "a prefix share their queues",
    "hub_id": "this hub's id among hubs on one Redis; none: generated at start",
    "server_version": "server_version announced in connection_established",
    "max_message_size": "largest frame in bytes (larger: close 1009; use chunked_message)",
    "chunk_threshold": "messages to a peer over this many bytes go as chunks if it asked for them",
    "claim_timeout_ms": "claim_timeout when a claim_job gives none: unaccepted jobs go back to the queue",
    "retry_base_seconds": "retry delay after the first failure (doubles each time)",
    "retry_max_seconds": "longest retry delay",
    "default_max_retries": "max_retries of a job that gives none",
    "heartbeat_interval_ms": "heartbeat cadence asked of workers",
    "notify_fanout": "idle workers sent job_available per submitted job",
    "sweep_interval_ms": "how often timers fire (claim and run deadlines, retries, reaping)",
    "heartbeat_timeout_ms": "a worker silent this long is gone: its jobs are requeued",
    "reconnect_grace_ms": "a worker whose connection dropped keeps its jobs this long",
    "status_interval_ms": "how often monitors get system_status",
    "job_retention_s": "finished jobs are forgotten this long after they end; 0 = keep",
    "idempotency_ttl_s": "how long a submission's idempotency_key is remembered",
    "queue_alert_per_worker": "alert when queued jobs exceed this many per worker",
    "client_tokens": "comma-separated job-client tokens (no token anywhere: open dev mode)",
    "worker_tokens": "comma-separated worker tokens",
    "monitor_tokens": "comma-separated monitor tokens",
    "monitor_permissions": "permissions of the monitor tokens above",
    "auth_file": "JSON token file: role, customer binding, permissions per token",
    "registration_timeout_ms": "a connection that has not registered by then is closed",
    "max_unregistered_frame": "largest frame in bytes before a connection registers",
    "max_unregistered_connections": "connections not yet registered; more are refused (1013)",
    "max_outbound_buffer": "bytes a peer may leave unread before it is disconnected",
    "max_worker_info_bytes": "largest worker capabilities, telemetry or relayed message (JSON bytes)",
    "auth_failures_per_minute": "failed authentications from one address in a minute; then it is refused "
    "(RATE_LIMITED) until the oldest is a minute old; 0 = no limit",
    "submit_rate": "submissions per second per client identity and hub; 0 = no limit",
    "submit_burst": "submissions at once above the rate; 0 = twice the rate",
    "max_queued_jobs": "refuse submissions while this many jobs wait; 0 = no bound",
    "max_queued_per_customer": "the same, per customer; 0 = no bound",
    "metrics_public": "serve /metrics without a token when tokens are configured",
    "webhook_secret": "webhook signing secret, whsec_<base64> (Standard Webhooks); a customer's "
    "webhook_secret in auth_file wins; none: submissions with webhook_url are refused",
    "webhook_allow_http": "deliver webhooks to http:// URLs too (default: https only)",
    "webhook_allow_private": "deliver webhooks to loopback, private, link-local and metadata addresses too",
    "webhook_timeout_s": "one webhook attempt (resolve, connect, send, response) at most this long",
    "webhook_max_age_s": "webhook retries stop this long after the event",
    "webhook_retry_base_s": "first webhook retry delay (then doubling, with jitter)",
    "webhook_retry_max_s": "longest webhook retry delay",
    "webhook_concurrency": "webhook attempts in flight in this hub; 0 = this hub sends none",
    "webhook_per_target": "webhook attempts in flight in this hub to one scheme://host:port",
    "tls_cert": "certificate (PEM) to serve wss:// and https://",
    "tls_key": "private key (PEM) of tls_cert",
    "log_level": "debug, info, warning or error",
    "log_format": "text, or json: one JSON object per line, for log shippers",
}
TRANSPORTS = ("websockets", "picows")
SECRETS = frozenset(
    {"client_tokens", "worker_tokens", "monitor_tokens", "webhook_secret"}
)  # by environment only


def _convert(kind: Any, raw: str) -> Any:
    text = str(kind)
    if text.startswith("int"):
        return int(raw)
    if text.startswith("float"):
        return float(raw)
    if text.startswith("bool"):
        return raw.lower() in ("1", "true", "yes", "on")
    return raw
