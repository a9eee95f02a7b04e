"""The hub's HTTP API (starlette on uvicorn, in the hub's event loop): REST, /metrics, dashboard.

No second copy of the logic: each API request opens a short-lived in-process connection to the
same ``HubCore`` (a conn id whose frames ``MeteredOutbox`` diverts to a list instead of a socket),
registers it with the request's bearer token (``Authorization: Bearer`` or ``?token=``) exactly as
a WebSocket peer would, sends the protocol message built from the request, takes the reply whose
``request_id`` matches, and disconnects.  Auth, validation, customer isolation and error details
are therefore the WebSocket's; protocol error codes map to HTTP statuses (``STATUS``).

The job browser's routes (spec D20) are reads the protocol lacks and operator actions: the
listing pages through the ``P:jobs`` index with filters, a job's detail has its timeline
(``browse.py``); retry and bulk cancel (``actions.py``) go through the job manager. They keep
what ``access.visible`` lets the registered session see, and need what the WebSocket needs.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import re
import socket
from collections.abc import AsyncIterator, Iterator
from importlib import resources
from typing import Any

import orjson
import uvicorn
from empq.hub import actions
from empq.hub.auth import ALL_PERMISSIONS, handshake_token
from empq.hub.auth_throttle import refusal
from empq.hub.browse import BadFilter, Browser, JobFilter, summary
from empq.hub.core import HubCore, now_ms
from empq.hub.metrics import MeteredOutbox
from empq.hub.openapi import MAX_LIMIT, openapi_document
from empq.hub.openapi_browse import FILTERS
from empq.hub.session import Session, error
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

import empq
from empq import protocol

log = logging.getLogger("empq.hub.http")

STATUS = {
    "INVALID_PARAMETERS": 422,
    "AUTH_FAILED": 401,
    "PERMISSION_DENIED": 403,
    "JOB_NOT_FOUND": 404,
    "INVALID_STATE": 409,
    "SERVICE_UNAVAILABLE": 503,
    "RATE_LIMITED": 429,
    "INTERNAL_ERROR": 500,
}

# the dashboard: scripts only from our own files (no inline script, no eval), no framing, the
# monitor token never sent along as a Referer (D19)
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}
DEFAULT_CLIENT_ID = "http-api"  # with tokens: the client id of a request without X-Client-Id
MAX_SCANNED = 5000  # jobs of the index one GET /api/jobs looks at (a page may then be short)
ROLES = ("job_client", "monitor")  # X-Empq-Role: what a request without a token registers as
CURSOR = re.compile(r"^[0-9]{1,18}$")
BULK_FIELDS = frozenset({*FILTERS, "reason", "limit"})  # a bulk cancel's fields that take no null


class ApiError(Exception):
    def __init__(self, message: dict[str, Any]) -> None:
        super().__init__(message.get("error_code"))
        self.message = message

    @property
    def status(self) -> int:
        return STATUS.get(str(self.message.get("error_code")), 400)


def _address(request: Request) -> str:
    """The peer's ``host:port``, as the WebSocket layers write it (failed authentications are
    counted per host, D19)."""
    client = request.client
    return f"{client.host}:{client.port}" if client else ""


def _invalid(text: str, field: str, value: Any) -> ApiError:
    if isinstance(value, int) and abs(value) >= 2**63:
        value = str(value)  # beyond 64 bits JSON encoders (orjson) refuse the number: shown as text
    shown = value if isinstance(value, (str, int, float, bool)) or value is None else repr(value)[:200]
    return ApiError(
        protocol.to_dict(error("INVALID_PARAMETERS", text, None, {"field": field, "provided_value": shown}))
    )


def _json(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


class HttpApi:
    """The ASGI app and the bridge into the core; ``serve``/``stop`` run it under uvicorn."""

    def __init__(self, core: HubCore, outbox: MeteredOutbox, ws_port: int, ws_tls: bool) -> None:
        self.core = core
        self.outbox = outbox
        self.ws_port = ws_port
        self.ws_tls = ws_tls
        self._ids = itertools.count(1)
        # in open dev mode a request without X-Client-Id is the local user, as the CLI is
        # (empq-cli-<user>): one local user sees its jobs from both
        self.default_client_id = DEFAULT_CLIENT_ID
        if core.auth.open:
            from empq.client import default_client_id

            self.default_client_id = default_client_id()
        self.server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None
        self.port = 0
        static = resources.files("empq.hub") / "static"
        routes = [
            Route("/health", self.health),
            Route("/openapi.json", self.openapi),
            Route("/metrics", self.metrics),
            Route("/api/jobs", self.jobs, methods=["GET", "POST"]),
            Route("/api/jobs/bulk-cancel", self.bulk_cancel, methods=["POST"]),
            Route("/api/jobs/{job_id:path}/cancel", self.cancel_job, methods=["POST"]),
            Route("/api/jobs/{job_id:path}/retry", self.retry_job, methods=["POST"]),
            Route("/api/jobs/{job_id:path}/detail", self.job_detail, methods=["GET"]),
            Route("/api/jobs/{job_id:path}", self.job_status, methods=["GET"]),
            Route("/api/workers", self.workers),
            Route("/api/stats", self.stats),
            Route("/api/stats/last-hour", self.last_hour),
            Route("/", self.dashboard),
            Route("/dashboard", self.dashboard),
            Route("/dashboard/config.json", self.dashboard_config),
            Mount("/static", app=_Headers(StaticFiles(directory=str(static)), PAGE_HEADERS)),
        ]
        self.app = Starlette(
            routes=routes,
            exception_handlers={HTTPException: self._http_error, ApiError: self._api_error},  # type: ignore[dict-item]
        )

    # running ----------------------------------------------------------------------------
    async def serve(self, host: str, port: int) -> None:
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            sock.close()
            raise
        sock.listen(1024)
        sock.setblocking(False)
        self.port = int(sock.getsockname()[1])
        config = uvicorn.Config(
            self.app, log_level="warning", lifespan="off", access_log=False, proxy_headers=False
        )
        self.server = _QuietServer(config)
        self._task = asyncio.get_running_loop().create_task(self.server.serve(sockets=[sock]))
        while not self.server.started:
            if self._task.done():
                self._task.result()
                raise RuntimeError("HTTP server stopped while starting")
            await asyncio.sleep(0.005)

    async def stop(self) -> None:
        if self.server is not None and self._task is not None:
            self.server.should_exit = True
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._task, 5)

    # the bridge ---------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def session(self, request: Request, prefer: str) -> AsyncIterator[Session]:
        """A registered in-process connection for one request.  Its role: the token's (a job
        client or monitor token), else the ``X-Empq-Role`` header's, else ``prefer`` (open dev
        mode; with tokens the registration fails without one)."""
        core = self.core
        token = handshake_token(str(request.url), request.headers.get("authorization"))
        asked = request.headers.get("x-empq-role")
        if asked is not None and asked not in ROLES:
            raise _invalid(f"X-Empq-Role must be one of {', '.join(ROLES)}", "X-Empq-Role", asked)
        role = asked or prefer
        grant = core.auth.tokens.get(token or "")
        if grant is not None:
            if grant.role == "worker":
                raise ApiError(
                    protocol.to_dict(error("PERMISSION_DENIED", "worker tokens cannot use the HTTP API"))
                )
            role = grant.role
        conn_id = f"http-{core.hub_id}-{next(self._ids)}"
        self.outbox.divert[conn_id] = []
        core.connect(conn_id, token, _address(request))
        try:
            fields: dict[str, Any] = {
                "client_type": role,
                "client_id": request.headers.get("x-client-id") or self.default_client_id,
            }
            if role == "monitor":
                fields["permissions"] = sorted(ALL_PERMISSIONS)  # intersected with the token's
            await self.exchange(conn_id, "register_client", fields)
            yield core.sessions[conn_id]
        finally:
            self.outbox.divert.pop(conn_id, None)
            await core.disconnected(conn_id)

    async def exchange(self, conn_id: str, kind: str, fields: dict[str, Any]) -> dict[str, Any]:
        """Send one message on the connection; its reply (an ``error`` raises ``ApiError``)."""
        request_id = f"http-{next(self._ids)}"
        frame = orjson.dumps({**fields, "type": kind, "id": request_id, "timestamp": now_ms()})
        sink = self.outbox.divert[conn_id]
        start = len(sink)
        await self.core.receive(conn_id, frame)
        for data in sink[start:]:
            reply = orjson.loads(data)
            if reply.get("request_id") not in (request_id, None):
                continue
            if reply.get("type") == "error":
                raise ApiError(reply)
            if reply.get("request_id") == request_id:
                return dict(reply)
        raise ApiError(protocol.to_dict(error("INTERNAL_ERROR", f"no reply to {kind}")))

    async def call(self, request: Request, prefer: str, kind: str, fields: dict[str, Any]) -> dict[str, Any]:
        async with self.session(request, prefer) as session:
            return await self.exchange(session.conn_id, kind, fields)

    # endpoints ----------------------------------------------------------------------------
    async def health(self, request: Request) -> Response:
        body: dict[str, Any] = {
            "status": "ok",
            "redis": "ok",
            "version": empq.__version__,
            "server_version": self.core.config.server_version,
            "hub_id": self.core.hub_id,
        }
        try:
            await asyncio.wait_for(self.core.store.batch.command("PING"), 2)
        except Exception as exc:  # noqa: BLE001 - any failure means Redis is not usable
            body.update(status="unavailable", redis=f"unreachable: {exc or type(exc).__name__}")
            return _json(body, 503)
        return _json(body)

    async def openapi(self, request: Request) -> Response:
        return _json(openapi_document())

    async def metrics(self, request: Request) -> Response:
        """Prometheus text. Its labels name job types (tenant data): with tokens configured it
        needs a monitor token with view_system_stats and no customer binding, unless
        ``metrics_public`` is set (D19)."""
        core = self.core
        if not core.auth.open and not core.config.metrics_public:
            address = _address(request)
            wait_s = core.auth_throttle.retry_after(address)
            if wait_s:  # D19: too many failed authentications from this address of late
                held, details = refusal(wait_s)
                raise ApiError(protocol.to_dict(error("RATE_LIMITED", held, None, details)))
            token = handshake_token(str(request.url), request.headers.get("authorization"))
            grant = core.auth.tokens.get(token or "")
            if grant is None:
                core.auth_throttle.failed(address)
                raise ApiError(protocol.to_dict(error("AUTH_FAILED", "/metrics needs a monitor token")))
            if grant.role != "monitor" or "view_system_stats" not in grant.permissions or grant.customer_id:
                raise ApiError(
                    protocol.to_dict(
                        error(
                            "PERMISSION_DENIED",
                            "/metrics needs a monitor token with view_system_stats and no customer binding",
                        )
                    )
                )
        text = await core.metrics.render(core)
        return Response(text, media_type="text/plain; version=0.0.4; charset=utf-8")

    async def jobs(self, request: Request) -> Response:
        return await (self.submit_job if request.method == "POST" else self.list_jobs)(request)

    async def submit_job(self, request: Request) -> Response:
        raw = await request.body()
        try:
            body = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            raise _invalid(
                "request body is not valid JSON", "(body)", raw[:200].decode("utf-8", "replace")
            ) from None
        if not isinstance(body, dict):
            raise _invalid("the body must be a JSON object (the submit_job fields)", "(body)", body)
        return _json(await self.call(request, "job_client", "submit_job", body), 201)

    async def job_status(self, request: Request) -> Response:
        job_id = request.path_params["job_id"]
        return _json(await self.call(request, "job_client", "request_job_status", {"job_id": job_id}))

    async def cancel_job(self, request: Request) -> Response:
        fields: dict[str, Any] = {"job_id": request.path_params["job_id"]}
        body = await _body(request)
        if "reason" in body:
            fields["reason"] = body["reason"]
        return _json(await self.call(request, "job_client", "cancel_job", fields))

    async def workers(self, request: Request) -> Response:
        async with self.session(request, "monitor") as session:
            reply = await self.exchange(session.conn_id, "request_stats", {"include_sections": ["workers"]})
        workers = reply["stats"]["workers"]
        if "workers" not in workers:  # a job client: counts without the per-worker list (D14)
            raise ApiError(protocol.to_dict(error("PERMISSION_DENIED", "the worker list needs view_workers")))
        return _json(workers)

    async def stats(self, request: Request) -> Response:
        return _json(await self.call(request, "monitor", "request_stats", {}))

    async def list_jobs(self, request: Request) -> Response:
        q = request.query_params
        filt = _filter(q)
        limit = _int_param(q.get("limit"), "limit", 50, 1, MAX_LIMIT) or 50
        cursor = _int_param(q.get("cursor"), "cursor", None, 0, 2**62)
        async with self.session(request, "job_client") as session:
            found, next_cursor = await Browser(self.core.store).scan(
                session, filt, cursor, limit, MAX_SCANNED
            )
        return _json({"jobs": [summary(job_id, job) for job_id, job in found], "next_cursor": next_cursor})

    async def job_detail(self, request: Request) -> Response:
        async with self.session(request, "job_client") as session:
            return _json(
                await self._act(actions.job_detail(self.core, session, request.path_params["job_id"]))
            )

    async def retry_job(self, request: Request) -> Response:
        async with self.session(request, "job_client") as session:
            return _json(
                await self._act(actions.retry(self.core, session, request.path_params["job_id"])), 201
            )

    async def bulk_cancel(self, request: Request) -> Response:
        body = await _body(request)
        for name, value in body.items():  # absent is the default; null is not a value of these
            if value is None and name in BULK_FIELDS:
                raise _invalid(f"{name} may be left out, not null", name, value)
        filt = _filter(body, query=False)
        reason = body.get("reason", "cancelled in bulk")
        if not isinstance(reason, str) or not 0 < len(reason) <= 1000:
            raise _invalid("reason must be a string of 1 to 1000 characters", "reason", reason)
        limit = _int_value(body.get("limit"), "limit", 100, 1, actions.MAX_BULK)
        raw_cursor = body.get("cursor")
        if raw_cursor is not None and not (isinstance(raw_cursor, str) and CURSOR.match(raw_cursor)):
            raise _invalid("cursor must be a next_cursor (digits)", "cursor", raw_cursor)
        cursor = _int_param(raw_cursor, "cursor", None, 0, 2**62)
        async with self.session(request, "job_client") as session:
            work = actions.bulk_cancel(self.core, session, filt, reason, limit, cursor, MAX_SCANNED)
            return _json(await self._act(work))

    async def last_hour(self, request: Request) -> Response:
        async with self.session(request, "monitor") as session:
            return _json(await self._act(actions.hour_stats(self.core, session)))

    async def _act(self, work: Any) -> Any:
        try:
            return await work
        except actions.Refused as refused:
            raise ApiError(refused.to_dict()) from None

    async def dashboard(self, request: Request) -> Response:
        page = (resources.files("empq.hub") / "static" / "dashboard.html").read_text(encoding="utf-8")
        # the page may open this hub's WebSocket and no other (it carries the monitor token)
        ws = f"{'wss' if self.ws_tls else 'ws'}://{request.url.hostname}:{self.ws_port}"
        policy = PAGE_HEADERS["Content-Security-Policy"].replace(
            "connect-src 'self'", f"connect-src 'self' {ws}"
        )
        return HTMLResponse(page, headers={**PAGE_HEADERS, "Content-Security-Policy": policy})

    async def dashboard_config(self, request: Request) -> Response:
        return _json({"ws_port": self.ws_port, "ws_scheme": "wss" if self.ws_tls else "ws"})

    # errors -------------------------------------------------------------------------------
    async def _api_error(self, request: Request, exc: ApiError) -> Response:
        response = _json(exc.message, exc.status)
        retry_ms = (exc.message.get("details") or {}).get("retry_after_ms")
        if exc.status == 429 and isinstance(retry_ms, int):
            response.headers["Retry-After"] = str(max(1, -(-retry_ms // 1000)))
        return response

    async def _http_error(self, request: Request, exc: HTTPException) -> Response:
        # an error_code of the protocol's list (ErrorCode): a missing route is a bad request path
        jobs = exc.status_code == 404 and request.url.path.startswith("/api/jobs")
        code = "JOB_NOT_FOUND" if jobs else "INVALID_PARAMETERS"
        body = protocol.to_dict(error(code, str(exc.detail)))
        return JSONResponse(body, exc.status_code, headers=exc.headers)


class _Headers:
    """An ASGI app with extra response headers (the static files of the dashboard)."""

    def __init__(self, app: Any, headers: dict[str, str]) -> None:
        self.app = app
        self.headers = [(k.lower().encode(), v.encode()) for k, v in headers.items()]

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async def with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *self.headers]}
            await send(message)

        await self.app(scope, receive, with_headers)


class _QuietServer(uvicorn.Server):
    """uvicorn without its signal handlers: the hub owns SIGTERM/SIGINT and stops us."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _int_param(raw: str | None, name: str, default: int | None, lo: int, hi: int) -> int | None:
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise _invalid(f"{name} must be an integer", name, raw) from None
    if not lo <= value <= hi:
        raise _invalid(f"{name} must be between {lo} and {hi}", name, value)
    return value


def _int_value(raw: Any, name: str, default: int, lo: int, hi: int) -> int:
    if raw is None:
        return default
    if not isinstance(raw, int) or isinstance(raw, bool) or not lo <= raw <= hi:
        raise _invalid(f"{name} must be an integer between {lo} and {hi}", name, raw)
    return raw


def _filter(params: Any, query: bool = True) -> JobFilter:
    try:
        return JobFilter.parse(params, query)
    except BadFilter as bad:
        raise _invalid(str(bad), bad.field, bad.value) from None


async def _body(request: Request) -> dict[str, Any]:
    """A request's JSON object body ({} when empty)."""
    raw = await request.body()
    if not raw:
        return {}
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise _invalid(
            "request body is not valid JSON", "(body)", raw[:200].decode("utf-8", "replace")
        ) from None
    if not isinstance(body, dict):
        raise _invalid("the body must be a JSON object", "(body)", body)
    return body
