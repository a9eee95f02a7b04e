"""``empq worker``: run a worker with a connector (``simulate`` or ``http``)."""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from typing import Any

from empq.cli import command
from empq.cli.common import (
    EXIT_OK,
    InputError,
    clock,
    connection_options,
    consoles,
    csv,
    escape,
    hub_url,
    invalid,
    print_json,
    run_async,
    seconds,
    setting,
)

FLAGS = {
    "worker_id": "--worker-id",
    "auth_token": "--token",
    "capabilities.services": "--services",
    "capabilities.components": "--components",
    "capabilities.hardware.gpu_memory_gb": "--gpu-memory",
    "capabilities.hardware.gpu_model": "--gpu-model",
    "capabilities.hardware.cpu_cores": "--cpu-cores",
    "capabilities.hardware.ram_gb": "--ram",
    "capabilities.max_concurrent_jobs": "--max-concurrent",
    "capabilities.allowed_customers": "--allowed-customers",
}
"""Which argument carries each field of ``register_worker`` (named when the model refuses it)."""


def configure(p: argparse.ArgumentParser) -> None:
    connection_options(p, client=False)
    p.add_argument(
        "--worker-id",
        help="stable worker id (EMPQ_WORKER_ID, default <host>-<pid>); keep it to resume jobs "
        "after a restart",
    )
    g = p.add_argument_group("capabilities")
    g.add_argument(
        "--services",
        type=csv,
        metavar="LIST",
        help="comma-separated service types (EMPQ_SERVICES, default comfyui)",
    )
    g.add_argument(
        "--components", type=csv, metavar="LIST", help="comma-separated components (EMPQ_COMPONENTS)"
    )
    g.add_argument("--gpu-memory", type=float, metavar="GB", help="GPU memory in GB (EMPQ_GPU_MEMORY)")
    g.add_argument("--gpu-model", help="GPU model (EMPQ_GPU_MODEL)")
    g.add_argument("--cpu-cores", type=int, metavar="N", help="CPU cores (EMPQ_CPU_CORES)")
    g.add_argument("--ram", type=float, metavar="GB", help="RAM in GB (EMPQ_RAM)")
    g.add_argument(
        "--max-concurrent", type=int, metavar="N", help="jobs at once (EMPQ_MAX_CONCURRENT, default 1)"
    )
    g.add_argument(
        "--allowed-customers",
        type=csv,
        metavar="LIST",
        help="only take these customers' jobs (EMPQ_ALLOWED_CUSTOMERS)",
    )
    c = p.add_argument_group("connector")
    c.add_argument(
        "--connector",
        choices=("simulate", "http"),
        help="what runs the jobs (EMPQ_CONNECTOR, default simulate)",
    )
    c.add_argument(
        "--service-url", metavar="URL", help="http connector: URL the payload is POSTed to (EMPQ_SERVICE_URL)"
    )
    c.add_argument(
        "--health-url", metavar="URL", help="http connector: URL checked with GET at start (EMPQ_HEALTH_URL)"
    )
    c.add_argument("--steps", type=int, metavar="N", help="simulate: steps per job (EMPQ_STEPS, default 5)")
    c.add_argument(
        "--step-seconds",
        type=float,
        metavar="S",
        help="simulate: seconds per step (EMPQ_STEP_SECONDS, default 0.5)",
    )
    c.add_argument(
        "--failure-rate",
        type=float,
        metavar="P",
        help="simulate: probability a job fails, 0-1 (EMPQ_FAILURE_RATE, default 0)",
    )
    c.add_argument("--seed", type=int, help="simulate: random seed (EMPQ_SEED)")
    r = p.add_argument_group("runtime")
    r.add_argument(
        "--claim-interval",
        type=seconds,
        metavar="S",
        help="seconds between claims when idle (EMPQ_CLAIM_INTERVAL, default 5)",
    )
    r.add_argument(
        "--drain-timeout",
        type=float,
        metavar="S",
        help="on SIGTERM, seconds to finish running jobs before handing them back "
        "(EMPQ_DRAIN_TIMEOUT, default 30)",
    )
    r.add_argument(
        "--wait-for-hub",
        type=float,
        metavar="S",
        help="keep trying to reach the hub at start for this long (EMPQ_WAIT_FOR_HUB, default 0)",
    )
    r.add_argument("--json", action="store_true", help="one JSON object per event on stdout")


@command("worker", configure)
def worker(args: argparse.Namespace) -> int:
    """Run a worker: register with the hub, claim the jobs it can run, run them with a connector.

    `simulate` pretends (timed steps with progress, --failure-rate); `http` POSTs each job's payload
    as JSON to --service-url and reports the JSON answer as the result. SIGTERM or Ctrl-C drains:
    no new jobs, running ones finish (up to --drain-timeout), the rest go back to the queue; a
    second Ctrl-C stops at once.
    """
    return run_async("worker", _worker(args))


async def _worker(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from empq.connection import Backoff, HubUnreachable
    from empq.connectors import Connector, HttpConnector, SimulateConnector
    from empq.worker import EmpWorker

    services = setting(args, "services", csv) or ["comfyui"]
    kind = setting(args, "connector", default="simulate")
    connectors: list[Connector] = []
    if kind == "http":
        url = setting(args, "service_url")
        if not url:
            raise InputError("--connector http needs --service-url (or EMPQ_SERVICE_URL)")
        health = setting(args, "health_url")
        connectors = [HttpConnector(url, service, health_url=health) for service in services]
    elif kind == "simulate":
        try:
            connectors = [
                SimulateConnector(
                    service,
                    steps=setting(args, "steps", int, 5),
                    step_seconds=setting(args, "step_seconds", float, 0.5),
                    failure_rate=setting(args, "failure_rate", float, 0.0),
                    seed=setting(args, "seed", int),
                )
                for service in services
            ]
        except ValueError as exc:  # "steps must be at least 1": name the flag
            text = str(exc)
            for name in ("steps", "failure_rate"):
                if text.startswith(f"{name} "):
                    text = f"--{name.replace('_', '-')}: {text[len(name) + 1 :]}"
            raise InputError(text) from None
    else:
        raise InputError(f"unknown connector {kind!r} (simulate or http)")
    hardware = {
        key: value
        for key, value in {
            "gpu_memory_gb": setting(args, "gpu_memory", float),
            "gpu_model": setting(args, "gpu_model"),
            "cpu_cores": setting(args, "cpu_cores", int),
            "ram_gb": setting(args, "ram", float),
        }.items()
        if value is not None
    }
    try:
        worker = EmpWorker(
            hub_url(args),
            worker_id=setting(args, "worker_id", default=f"{os.uname().nodename}-{os.getpid()}"),
            services=services,
            components=setting(args, "components", csv),
            hardware=hardware,
            max_concurrent=setting(args, "max_concurrent", int, 1),
            connectors=connectors,
            token=setting(args, "token"),
            allowed_customers=setting(args, "allowed_customers", csv),
            claim_interval=setting(args, "claim_interval", seconds, 5.0),
            drain_timeout=setting(args, "drain_timeout", float, 30.0),
            request_timeout=setting(args, "timeout", seconds, 10.0),
            backoff=Backoff(maximum=2.0),
        )
    except ValidationError as exc:  # the register_worker model refused a capability
        raise InputError(invalid(exc, FLAGS)) from None
    except ValueError as exc:
        raise InputError(str(exc)) from None
    out, _ = consoles(args)
    as_json = bool(args.json)

    def show(event: str, info: dict[str, Any]) -> None:
        if as_json:
            print_json({"event": event, "time": time.time(), **info})
            return
        out.print(f"[dim]{clock()}[/] {describe_worker_event(worker, event, info)}")

    worker.on_event(show)
    deadline = time.monotonic() + setting(args, "wait_for_hub", float, 0.0)
    delay = 0.2
    while True:
        try:
            await worker.start()
            break
        except HubUnreachable:
            if time.monotonic() + delay > deadline:
                raise
            if not as_json:
                out.print(f"[dim]{clock()}[/] waiting for the hub at {worker.url}...")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
    await worker.run(handle_signals=True)
    return EXIT_OK


def describe_worker_event(worker: Any, event: str, info: dict[str, Any]) -> str:
    """One line of rich markup for a worker event (texts from outside escaped)."""
    info = {k: escape(v) if isinstance(v, str) else v for k, v in info.items()}
    job = info.get("job_id", "")
    if event == "registered":
        services = ", ".join(worker.capabilities["services"])
        return (
            f"[bold]registered[/] as {info['worker_id']} on {info['url']}: services {services}, "
            f"{worker.max_concurrent} slot(s), heartbeat every {info['heartbeat_interval']:g} s"
        )
    if event == "reconnected":
        return f"[bold]reconnected[/] to {info['url']}; resumed {len(info['resumed_jobs'])} job(s)"
    if event == "disconnected":
        return f"[yellow]connection to {info['url']} lost[/]; reconnecting..."
    if event == "job_started":
        retry = f", retry {info['retry_count']}" if info.get("retry_count") else ""
        return f"started   {job} {info['job_type']} (priority {info['priority']}{retry})"
    if event == "job_completed":
        return f"[green]completed[/] {job} in {info['processing_time']:.2f} s"
    if event == "job_failed":
        retry = f"retry in {info['retry_delay']:g} s" if info.get("retry_scheduled") else "no retry"
        return f"[red]failed[/]    {job}: {info['error']} ({retry})"
    if event == "job_cancelled":
        return f"[magenta]cancelled[/] {job} ({info.get('reason')})"
    if event == "job_lost":
        return f"[yellow]taken back[/] {job}: {info.get('reason')}"
    if event == "draining":
        return f"draining: finishing {len(info['running'])} running job(s), up to {info['timeout']:g} s"
    if event == "stopped":
        back = info.get("handed_back") or []
        return f"stopped ({info['reason']})" + (f"; handed back {', '.join(back)}" if back else "")
    return f"{event} {info}"
