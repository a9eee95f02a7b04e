"""The command table: each message type a peer may send, and the one handler for it.

A handler takes a typed ``Request`` (the session, the parsed message, ``reply``/``ack``/
``refuse``) and does a few lines of checking before calling the job manager or a hub component.
Which role may send which type is ``session.VALIDITY``; what each step does to a job is
``jobs.JobManager``; the table is built from the modules below, one per role:

    registration  register_client, register_worker
    client        submit_job, request_job_status, cancel_job, subscribe_job,
                  subscribe_job_notifications
    worker        claim_job, job_accepted_by_worker, update_job_progress, complete_job, fail_job,
                  worker_heartbeat, worker_status, service_request, connector_ws_status
    monitor       subscribe_stats, request_stats
    connection    ping, pong, disconnect, chunked_message, chunked_message_complete
"""

from __future__ import annotations

from empq.hub.commands import client, connection, monitor, registration, worker
from empq.hub.commands.request import Handler, Request

COMMANDS: dict[str, Handler] = {
    **registration.HANDLERS,
    **client.HANDLERS,
    **worker.HANDLERS,
    **monitor.HANDLERS,
    **connection.HANDLERS,
}

# Messages whose handler makes exactly one Redis call and then only sends: a transport may dispatch
# a connection's next one while the previous one's call is in flight. Redis runs the calls in the
# order they were written and answers in that order, so the effects and the replies keep the order
# of the frames (a worker's accept, progress and complete do not wait for each other).
PIPELINABLE = frozenset({"job_accepted_by_worker", "update_job_progress", "complete_job"})

__all__ = ["COMMANDS", "PIPELINABLE", "Handler", "Request"]
