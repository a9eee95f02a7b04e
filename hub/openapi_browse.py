"""The job browser's part of the OpenAPI document (spec D20: listing filters, a job's detail,
retry, bulk cancel, the last hour per job type), and the response helpers both parts use."""

from __future__ import annotations

from typing import Any

from empq.hub.lifecycle import STATUSES as JOB_STATUSES

MAX_BULK = 500  # jobs one POST /api/jobs/bulk-cancel cancels at most (actions.MAX_BULK)
STATUS_LIST = f"^({'|'.join(JOB_STATUSES)})(,({'|'.join(JOB_STATUSES)}))*$"
TEXT = {"type": "string", "minLength": 1, "maxLength": 256}
MS = {"type": "integer", "minimum": 0, "maximum": 2**53 - 1, "description": "Unix milliseconds"}
FILTERS: dict[str, dict[str, Any]] = {
    "status": {
        "type": "string",
        "pattern": STATUS_LIST,
        "description": "One status or several, comma-separated (e.g. `assigned,accepted,in_progress`)",
    },
    "job_type": TEXT,
    "customer_id": TEXT,
    "worker_id": {**TEXT, "description": "The worker holding the job, or the last one that did"},
    "created_from": {**MS, "description": "Created at or after (Unix ms)"},
    "created_to": {**MS, "description": "Created at or before (Unix ms)"},
    "q": {**TEXT, "description": "A job id, or the start of one (with or without `job-`)"},
}

REF = "#/components/schemas/{model}"


def error_responses(*codes: int) -> dict[str, Any]:
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


def ok(model: str, description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": REF.format(model=model)}}},
    }


def browser_schemas() -> dict[str, Any]:
    """The job browser's bodies (spec D20)."""
    seconds = {
        "anyOf": [
            {
                "type": "object",
                "required": ["p50", "p95", "p99"],
                "properties": {p: {"type": "number"} for p in ("p50", "p95", "p99")},
            },
            {"type": "null"},
        ]
    }
    return {
        "JobSummary": {
            "type": "object",
            "required": ["job_id", "status", "job_type", "priority", "progress", "created_at", "retry_count"],
            "properties": {
                "job_id": {"type": "string"},
                "status": {"type": "string", "enum": list(JOB_STATUSES)},
                "job_type": {"type": "string"},
                "priority": {"type": "integer"},
                "progress": {"type": "number"},
                "created_at": {"type": "integer"},
                "started_at": {"type": "integer"},
                "completed_at": {"type": "integer", "description": "When it ended (any final state)"},
                "retry_count": {"type": "integer"},
                "customer_id": {"type": "string"},
                "worker_id": {"type": "string"},
                "error": {"type": "string", "description": "The last error (its first 300 characters)"},
                "retry_of": {"type": "string", "description": "The job this one retries (D20)"},
                "retried_as": {"type": "string", "description": "The job that retries this one (D20)"},
            },
        },
        "TimelineStep": {
            "type": "object",
            "description": "One transition (spec D9, hub/lifecycle.py), or `retried` (D20): the job was "
            "submitted again as the job in `note`.",
            "required": ["event", "status", "at"],
            "properties": {
                "event": {"type": "string"},
                "status": {"type": "string", "description": "The state it led to"},
                "at": {"type": "integer", "description": "Unix ms"},
                "worker_id": {"type": "string"},
                "note": {"type": "string", "description": "The error, the cancel reason, the retry's job id"},
            },
        },
        "JobDetail": {
            "type": "object",
            "description": "Everything known about a job, with every transition and its time (spec D20).",
            "required": [
                "job_id",
                "status",
                "job_type",
                "priority",
                "progress",
                "retry_count",
                "max_retries",
                "created_at",
                "client_id",
                "timeline",
            ],  # fmt: skip
            "properties": {
                **{
                    k: {"type": "string"}
                    for k in ("job_id", "job_type", "client_id", "customer_id", "worker_id")
                },
                "status": {"type": "string", "enum": list(JOB_STATUSES)},
                **{k: {"type": "integer"} for k in ("priority", "retry_count", "max_retries", "position")},
                **{k: {"type": "number"} for k in ("progress", "processing_time", "timeout_seconds")},
                **{
                    k: {"type": "integer", "description": "Unix ms"}
                    for k in (
                        "created_at",
                        "assigned_at",
                        "started_at",
                        "completed_at",
                        "cancelled_at",
                        "retry_at",
                    )
                },
                "payload": {"description": "As submitted"},
                "requirements": {"type": "object"},
                "metadata": {"type": "object"},
                "result": {"description": "The worker's result (completed)"},
                "error_details": {"description": "The worker's error_details (failed)"},
                **{
                    k: {"type": "string"}
                    for k in ("message", "error", "cancel_reason", "retry_of", "retried_as")
                },
                "timeline": {"type": "array", "items": {"$ref": REF.format(model="TimelineStep")}},
                "webhook_target": {
                    "type": "string",
                    "description": "A job submitted with webhook_url (D21): where its webhooks go, as "
                    "scheme://host:port (the URL's path and query are not shown)",
                },
                "webhook_events": {
                    "type": "array",
                    "items": {"$ref": REF.format(model="WebhookEvent")},
                    "description": "The events it wants (D21)",
                },
                "webhook_deliveries": {
                    "type": "array",
                    "items": {"$ref": REF.format(model="WebhookDelivery")},
                    "description": "Each event queued for its webhook and its latest attempts (D21), as "
                    "response_job_status.webhook_deliveries",
                },
            },
        },
        "RetryAccepted": {
            "allOf": [{"$ref": REF.format(model="JobAccepted")}],
            "type": "object",
            "required": ["retry_of"],
            "properties": {"retry_of": {"type": "string", "description": "The job it retries"}},
        },
        "BulkCancel": {
            "type": "object",
            "description": "Which jobs (the listing's filters, D20), why, how many at most, and where to "
            "go on from (a previous answer's next_cursor).",
            "properties": {
                **FILTERS,
                "reason": {"type": "string", "minLength": 1, "maxLength": 1000},
                "limit": {"type": "integer", "minimum": 1, "maximum": MAX_BULK, "default": 100},
                "cursor": {
                    "anyOf": [{"type": "string", "pattern": "^[0-9]{1,18}$"}, {"type": "null"}],
                    "description": "A previous answer's next_cursor (null: from the newest)",
                },
            },
        },
        "BulkCancelled": {
            "type": "object",
            "required": ["cancelled", "skipped", "next_cursor"],
            "properties": {
                "cancelled": {"type": "array", "items": {"type": "string"}},
                "skipped": {
                    "type": "array",
                    "description": "Jobs that ended between the scan and their cancel",
                    "items": {
                        "type": "object",
                        "required": ["job_id", "status"],
                        "properties": {"job_id": {"type": "string"}, "status": {"type": "string"}},
                    },
                },
                "next_cursor": {"anyOf": [{"type": "string"}, {"type": "null"}]},
            },
        },
        "LastHour": {
            "type": "object",
            "description": "The last hour, from Redis (every hub answers the same): per job type over the "
            "jobs the token sees, and completions and failures per minute (aggregates).",
            "required": ["now", "window_seconds", "sampled", "per_minute", "job_types"],
            "properties": {
                "now": {"type": "integer"},
                "window_seconds": {
                    "type": "number",
                    "description": "What completed_per_minute is over: the hour, or less when more jobs "
                    "completed than the sample holds (2,000 completions, 1,000 failures)",
                },
                "sampled": {
                    "type": "object",
                    "properties": {"completed": {"type": "integer"}, "failed": {"type": "integer"}},
                },
                "per_minute": {
                    "type": "object",
                    "required": ["start", "completed", "failed"],
                    "properties": {
                        "start": {"type": "integer"},
                        "completed": {"type": "array", "items": {"type": "integer"}},
                        "failed": {"type": "array", "items": {"type": "integer"}},
                    },
                },
                "job_types": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["job_type", "queued", "completed", "failed", "completed_per_minute"],
                        "properties": {
                            "job_type": {"type": "string"},
                            "queued": {
                                "anyOf": [{"type": "integer"}, {"type": "null"}],
                                "description": "Claimable now (null: the token sees no whole queue)",
                            },
                            "completed": {"type": "integer"},
                            "failed": {"type": "integer"},
                            "completed_per_minute": {"type": "number"},
                            "wait_seconds": {**seconds, "description": "Created to started (the last start)"},
                            "run_seconds": {**seconds, "description": "Started to completed"},
                        },
                    },
                },
            },
        },
    }


def browser_paths(job_id_param: dict[str, Any]) -> dict[str, Any]:
    return {
        "/api/jobs/{job_id}/detail": {
            "get": {
                "operationId": "getJobDetail",
                "summary": "A job in full: payload, requirements, result, error, retries, its timeline",
                "parameters": [job_id_param],
                "responses": {
                    "200": ok("JobDetail", "The job"),
                    **error_responses(401, 403, 404, 422, 503),
                },
            }
        },
        "/api/jobs/{job_id}/retry": {
            "post": {
                "operationId": "retryJob",
                "summary": "Retry a failed, cancelled or timed-out job (D20): a new job with the same "
                "payload, linked both ways (retry_of, retried_as); once per job. Job clients retry the jobs "
                "they see; monitors need manage_jobs.",
                "parameters": [job_id_param],
                "responses": {
                    "201": ok("RetryAccepted", "The new job, queued"),
                    **error_responses(401, 403, 404, 409, 422, 429, 503),
                },
            }
        },
        "/api/jobs/bulk-cancel": {
            "post": {
                "operationId": "bulkCancelJobs",
                "summary": "Cancel the jobs that match the filters and may still be cancelled (at most "
                f"{MAX_BULK} per request; follow next_cursor). Monitors need manage_jobs.",
                "requestBody": {
                    "required": False,
                    "content": {"application/json": {"schema": {"$ref": REF.format(model="BulkCancel")}}},
                },
                "responses": {
                    "200": ok("BulkCancelled", "What was cancelled"),
                    **error_responses(401, 403, 422, 503),
                },
            }
        },
        "/api/stats/last-hour": {
            "get": {
                "operationId": "getLastHour",
                "summary": "Per job type: throughput, queue depth, wait and run time percentiles over the "
                "last hour (monitors need view_system_stats)",
                "responses": {"200": ok("LastHour", "The last hour"), **error_responses(401, 403, 503)},
            }
        },
    }
