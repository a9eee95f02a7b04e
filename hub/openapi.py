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
from empq.generated.messages.job_completed import JobCompleted
from empq.generated.messages.job_update import JobUpdate
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
        (JobUpdate, "serialization"),
        (JobCompleted, "serialization"),
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
        (JobUpdate, "JobUpdate"),
        (JobCompleted, "JobCompleted"),
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
        "webhooks": {"jobEvent": _job_event_webhook()},
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


def _job_event_webhook() -> dict[str, Any]:
    """What the hub POSTs to a job's webhook_url (spec D21): the WebSocket's message, signed."""

    def header(name: str, text: str, pattern: str) -> dict[str, Any]:
        return {"name": name, "in": "header", "required": True, "description": text,
                "schema": {"type": "string", "pattern": pattern}}  # fmt: skip

    return {
        "post": {
            "operationId": "jobEventWebhook",
            "summary": "A job event, POSTed to the job's webhook_url (empq extension, spec D21)",
            "description": "Sent for each event in the job's webhook_events (default: completed, failed, "
            "cancelled, timeout). The body is the message the WebSocket carries for the event "
            "(job_update, job_completed or job_cancelled; its timestamp is the transition's). Signed per "
            "Standard Webhooks: webhook-signature is v1, + base64 HMAC-SHA256 of "
            "`<webhook-id>.<webhook-timestamp>.<body>` with the secret's bytes (whsec_ + base64; the "
            "customer's from the auth file, else the hub's EMPQ_WEBHOOK_SECRET). At least once: "
            "de-duplicate on webhook-id. A 2xx ends the delivery; a timeout, connection error, 5xx or "
            "429 (Retry-After honoured) is retried with exponential backoff and jitter for "
            "webhook_max_age_s (default 24 h); a 3xx or another 4xx stops it. The response body is not read.",
            "security": [],
            "parameters": [
                header("webhook-id", "The delivery's id: the same on every attempt of one event", "^.+$"),
                header("webhook-timestamp", "Unix seconds of this attempt", "^[0-9]+$"),
                header("webhook-signature", "v1,<base64 HMAC-SHA256> (space-separated if several)", "^v1,"),
            ],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "oneOf": [
                                {"$ref": REF.format(model=name)}
                                for name in ("JobUpdate", "JobCompleted", "JobCancelled")
                            ]
                        }
                    }
                },
            },
            "responses": {
                "2XX": {"description": "Received: the delivery ends"},
                "429": {"description": "Busy: tried again later (after Retry-After, if given)"},
                "5XX": {"description": "Tried again later"},
                "default": {"description": "A 3xx or another 4xx: the delivery stops (failed)"},
            },
        }
    }


def main() -> None:
    """Print the OpenAPI document (``python -m empq.hub.openapi > spec/openapi.json``)."""
    print(orjson.dumps(openapi_document(), option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
