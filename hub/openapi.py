"""The HTTP API's OpenAPI 3.1 document (served at ``/openapi.json``; committed as
``spec/openapi.json``, kept equal by a test: ``python -m empq.hub.openapi > spec/openapi.json``).
Its schemas are the generated models' (``schemas/``), so the HTTP bodies are the protocol's."""

from __future__ import annotations

import copy
from typing import Any

import orjson
from empq.generated.defs.stats import WorkerCounts
from empq.generated.messages.cancel_job import CancelJob
from empq.generated.messages.error import Error
from empq.generated.messages.job_accepted import JobAccepted
from empq.generated.messages.job_cancelled import JobCancelled
from empq.generated.messages.response_job_status import ResponseJobStatus
from empq.generated.messages.stats_response import StatsResponse
from empq.generated.messages.submit_job import SubmitJob
from empq.hub.lifecycle import STATUSES as JOB_STATUSES
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

import empq

MAX_LIMIT = 500  # jobs per page of GET /api/jobs

REF = "#/components/schemas/{model}"


def _error_responses(*codes: int) -> dict[str, Any]:
    names = {
        401: "Authentication failed (AUTH_FAILED)",
        403: "Not allowed (PERMISSION_DENIED)",
        404: "No such job, or not visible to this token (JOB_NOT_FOUND)",
        409: "The job's state does not allow it (INVALID_STATE)",
        429: "Over the submission rate, or the queue is full (RATE_LIMITED: details.reason)",
        422: "Invalid parameters (INVALID_PARAMETERS: details.field, details.provided_value)",
        503: "Storage unavailable (SERVICE_UNAVAILABLE)",
    }
    return {
        str(code): {
            "description": names[code],
            "content": {"application/json": {"schema": {"$ref": REF.format(model="Error")}}},
        }
        for code in codes
    }


def _ok(model: str, description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": REF.format(model=model)}}},
    }


_DOCUMENT: dict[str, Any] | None = None


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 document; schemas are the generated models' (``schemas/``) JSON Schema."""
    global _DOCUMENT
    if _DOCUMENT is not None:
        return _DOCUMENT
    models: list[tuple[type[BaseModel], Any]] = [
        (SubmitJob, "validation"),
        (JobAccepted, "serialization"),
        (ResponseJobStatus, "serialization"),
        (JobCancelled, "serialization"),
        (StatsResponse, "serialization"),
        (WorkerCounts, "serialization"),
        (Error, "serialization"),
    ]
    keys, top = models_json_schema(models, ref_template=REF)
    schemas: dict[str, Any] = dict(top.get("$defs", {}))
    names = {model: keys[(model, mode)]["$ref"].rsplit("/", 1)[1] for model, mode in models}
    body = copy.deepcopy(schemas[names[SubmitJob]])
    for name in ("type", "timestamp", "id", "request_id", "source", "worker_id"):
        body["properties"].pop(name, None)
    body["required"] = [r for r in body.get("required", []) if r in body["properties"]]
    body["title"] = "SubmitJobBody"
    body["description"] = "The submit_job fields (type, id and timestamp are set by the HTTP API)."
    schemas["SubmitJobBody"] = body
    schemas["JobSummary"] = {
        "type": "object",
        "required": ["job_id", "status", "job_type", "priority", "progress", "created_at"],
        "properties": {
            "job_id": {"type": "string"},
            "status": {"type": "string", "enum": list(JOB_STATUSES)},
            "job_type": {"type": "string"},
            "priority": {"type": "integer"},
            "progress": {"type": "number"},
            "created_at": {"type": "integer"},
            "customer_id": {"type": "string"},
            "worker_id": {"type": "string"},
        },
    }
    schemas["JobPage"] = {
        "type": "object",
        "required": ["jobs", "next_cursor"],
        "properties": {
            "jobs": {"type": "array", "items": {"$ref": REF.format(model="JobSummary")}},
            "next_cursor": {
                "anyOf": [{"type": "string"}, {"type": "null"}],
                "description": "Pass as ?cursor= for the next (older) page; null at the end. A page "
                "may hold fewer jobs than asked (each request looks at 5,000 jobs at most): go on while "
                "next_cursor is not null.",
            },
        },
    }
    schemas["Health"] = {
        "type": "object",
        "required": ["status", "redis", "version"],
        "properties": {
            "status": {"type": "string", "enum": ["ok", "unavailable"]},
            "redis": {"type": "string"},
            "version": {"type": "string"},
            "server_version": {"type": "string"},
            "hub_id": {"type": "string"},
        },
    }
    schemas["Error"] = schemas.pop(names[Error])
    for model, name in (
        (JobAccepted, "JobAccepted"),
        (ResponseJobStatus, "ResponseJobStatus"),
        (JobCancelled, "JobCancelled"),
        (StatsResponse, "StatsResponse"),
        (WorkerCounts, "WorkerCounts"),
    ):
        if names[model] != name:
            schemas[name] = schemas.pop(names[model])
    schemas.pop(names[SubmitJob], None)
    job_id_param = {
        "name": "job_id",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "minLength": 1, "maxLength": 256, "pattern": "^[^/]+$"},
    }
    _DOCUMENT = {
        "openapi": "3.1.0",
        "info": {
            "title": "empq hub HTTP API",
            "version": empq.__version__,
            "description": "The hub's REST API: every request is handled by the same core as the "
            "WebSocket protocol (same validation, auth tokens and customer isolation). Send the "
            "token as `Authorization: Bearer <token>` (or `?token=`).",
        },
        "components": {
            "schemas": dict(sorted(schemas.items())),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{}, {"bearer": []}],
        "paths": {
            "/health": {
                "get": {
                    "operationId": "health",
                    "summary": "Hub and Redis health",
                    "security": [],
                    "responses": {
                        "200": _ok("Health", "Redis reachable"),
                        "503": _ok("Health", "Redis unreachable"),
                    },
                }
            },
            "/api/jobs": {
                "post": {
                    "operationId": "submitJob",
                    "summary": "Submit a job (the submit_job message)",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {"schema": {"$ref": REF.format(model="SubmitJobBody")}}
                        },
                    },
                    "responses": {
                        "201": {
                            **_ok("JobAccepted", "Queued (the job_accepted message)"),
                            "links": {
                                "GetJob": {
                                    "operationId": "getJob",
                                    "parameters": {"job_id": "$response.body#/job_id"},
                                },
                                "CancelJob": {
                                    "operationId": "cancelJob",
                                    "parameters": {"job_id": "$response.body#/job_id"},
                                },
                            },
                        },
                        **_error_responses(401, 403, 422, 429, 503),
                    },
                },
                "get": {
                    "operationId": "listJobs",
                    "summary": "Jobs visible to the token, newest first, paginated",
                    "parameters": [
                        {
                            "name": "status",
                            "in": "query",
                            "schema": {"type": "string", "enum": list(JOB_STATUSES)},
                        },
                        {"name": "job_type", "in": "query", "schema": {"type": "string"}},
                        {
                            "name": "limit",
                            "in": "query",
                            "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": 50},
                        },
                        {
                            "name": "cursor",
                            "in": "query",
                            "schema": {"type": "string", "pattern": "^[0-9]{1,18}$"},
                        },
                    ],
                    "responses": {
                        "200": _ok("JobPage", "One page of jobs"),
                        **_error_responses(401, 403, 422, 503),
                    },
                },
            },
            "/api/jobs/{job_id}": {
                "get": {
                    "operationId": "getJob",
                    "summary": "A job's status (the response_job_status message)",
                    "parameters": [job_id_param],
                    "responses": {
                        "200": _ok("ResponseJobStatus", "The job"),
                        **_error_responses(401, 403, 404, 422, 503),
                    },
                }
            },
            "/api/jobs/{job_id}/cancel": {
                "post": {
                    "operationId": "cancelJob",
                    "summary": "Cancel a job (the cancel_job message)",
                    "parameters": [job_id_param],
                    "requestBody": {
                        "required": False,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "properties": {
                                        "reason": CancelJob.model_json_schema()["properties"]["reason"]
                                    },
                                }
                            }
                        },
                    },
                    "responses": {
                        "200": _ok("JobCancelled", "Cancelled (the job_cancelled message)"),
                        **_error_responses(401, 403, 404, 409, 422, 503),
                    },
                }
            },
            "/api/workers": {
                "get": {
                    "operationId": "listWorkers",
                    "summary": "Workers of every hub (as request_stats: a monitor needs view_system_stats)",
                    "responses": {"200": _ok("WorkerCounts", "Workers"), **_error_responses(401, 403, 503)},
                }
            },
            "/api/stats": {
                "get": {
                    "operationId": "getStats",
                    "summary": "System statistics (the stats_response message)",
                    "responses": {"200": _ok("StatsResponse", "Stats"), **_error_responses(401, 403, 503)},
                }
            },
        },
    }
    return _DOCUMENT


def main() -> None:
    """Print the OpenAPI document (``python -m empq.hub.openapi > spec/openapi.json``)."""
    print(orjson.dumps(openapi_document(), option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
