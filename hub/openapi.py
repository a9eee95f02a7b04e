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
from empq.hub.openapi_browse import FILTERS, REF, browser_paths, browser_schemas, error_responses, ok
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

import empq

MAX_LIMIT = 500  # jobs per page of GET /api/jobs

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
    schemas.update(browser_schemas())
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
    role_header = {
        "name": "X-Empq-Role",
        "in": "header",
        "required": False,
        "description": "Without a token (open dev mode): register the request as this role (the "
        "dashboard asks for monitor, to see every job). With a token, the token's role decides.",
        "schema": {"type": "string", "enum": ["job_client", "monitor"]},
    }
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
                        "200": ok("Health", "Redis reachable"),
                        "503": ok("Health", "Redis unreachable"),
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
                            **ok("JobAccepted", "Queued (the job_accepted message)"),
                            "links": {
                                "GetJob": {
                                    "operationId": "getJob",
                                    "parameters": {"job_id": "$response.body#/job_id"},
                                },
                                "CancelJob": {
                                    "operationId": "cancelJob",
                                    "parameters": {"job_id": "$response.body#/job_id"},
                                },
                                "GetJobDetail": {
                                    "operationId": "getJobDetail",
                                    "parameters": {"job_id": "$response.body#/job_id"},
                                },
                                "RetryJob": {
                                    "operationId": "retryJob",
                                    "parameters": {"job_id": "$response.body#/job_id"},
                                },
                            },
                        },
                        **error_responses(401, 403, 422, 429, 503),
                    },
                },
                "get": {
                    "operationId": "listJobs",
                    "summary": "Jobs visible to the token, newest first, paginated",
                    "description": "Filters: every one given must match. Each request looks at 5,000 "
                    "jobs of the index at most: a page may be short (follow next_cursor). A `created_to` "
                    "without a cursor starts at the newest job created by then.",
                    "parameters": [
                        *(
                            {"name": name, "in": "query", "schema": schema}
                            for name, schema in FILTERS.items()
                        ),
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
                        "200": ok("JobPage", "One page of jobs"),
                        **error_responses(401, 403, 422, 503),
                    },
                },
            },
            "/api/jobs/{job_id}": {
                "get": {
                    "operationId": "getJob",
                    "summary": "A job's status (the response_job_status message)",
                    "parameters": [job_id_param],
                    "responses": {
                        "200": ok("ResponseJobStatus", "The job"),
                        **error_responses(401, 403, 404, 422, 503),
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
                        "200": ok("JobCancelled", "Cancelled (the job_cancelled message)"),
                        **error_responses(401, 403, 404, 409, 422, 503),
                    },
                }
            },
            **browser_paths(job_id_param),
            "/api/workers": {
                "get": {
                    "operationId": "listWorkers",
                    "summary": "Workers of every hub (as request_stats: a monitor needs view_system_stats)",
                    "responses": {"200": ok("WorkerCounts", "Workers"), **error_responses(401, 403, 503)},
                }
            },
            "/api/stats": {
                "get": {
                    "operationId": "getStats",
                    "summary": "System statistics (the stats_response message)",
                    "responses": {"200": ok("StatsResponse", "Stats"), **error_responses(401, 403, 503)},
                }
            },
        },
    }
    for path, item in _DOCUMENT["paths"].items():  # every request registers as a peer
        for operation in item.values():
            if path.startswith("/api/"):
                operation["parameters"] = [*operation.get("parameters", []), role_header]
                operation["responses"].setdefault("422", error_responses(422)["422"])
                operation["responses"] = dict(sorted(operation["responses"].items()))
    return _DOCUMENT


def main() -> None:
    """Print the OpenAPI document (``python -m empq.hub.openapi > spec/openapi.json``)."""
    print(orjson.dumps(openapi_document(), option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
