/* Generated from schemas/ by clients/typescript/scripts/generate-types.mjs (json-schema-to-typescript 16.0.0). Do not edit: change schemas/ and run `tox -e codegen`. */

/**
 * Generic acknowledgment: sent for a message that carries an id and has no specific reply (status processed), and as the reply to claim_job when no job matches (status no_job_available).
 */
export type Ack = BaseMessage & {
  /**
   * Always "ack".
   */
  type: "ack";
  /**
   * The id of the acknowledged message (may be generated when it had none).
   */
  message_id: string;
  /**
   * Type of the acknowledged message.
   */
  original_type: string;
  status: "processed" | "no_job_available";
  [k: string]: unknown;
};
/**
 * Cancel a queued or running job. Reply: job_cancelled (or error).
 */
export type CancelJob = BaseMessage & {
  /**
   * Always "cancel_job".
   */
  type: "cancel_job";
  /**
   * A non-empty identifier, without control characters.
   */
  job_id: string;
  /**
   * Why.
   */
  reason?: string;
  [k: string]: unknown;
};
/**
 * One part of a large message. chunk_index is 0-based and below total_chunks; data is base64 of that part of the UTF-8 JSON of the original message; data_hash is the sha256 (hex) of the whole original before splitting.
 */
export type ChunkedMessage = BaseMessage & {
  /**
   * Always "chunked_message".
   */
  type: "chunked_message";
  /**
   * A non-empty identifier, without control characters.
   */
  chunk_id: string;
  chunk_index: number;
  total_chunks: number;
  data: string;
  /**
   * sha256 hex digest of the complete data (64 hex characters; at most 128 characters are taken).
   */
  data_hash?: string;
  /**
   * Type of the message being sent.
   */
  original_type: string;
  total_size?: number;
  [k: string]: unknown;
};
/**
 * The receiver reassembled a chunked message. The hub's receipt omits assembled_message (the sender has it).
 */
export type ChunkedMessageComplete = BaseMessage & {
  /**
   * Always "chunked_message_complete".
   */
  type: "chunked_message_complete";
  /**
   * A non-empty identifier, without control characters.
   */
  chunk_id: string;
  total_size: number;
  /**
   * The reassembled message.
   */
  assembled_message?: {
    [k: string]: unknown;
  };
  /**
   * Type of the reassembled message.
   */
  original_type?: string;
  [k: string]: unknown;
};
/**
 * A worker asks for up to max_jobs jobs it can run. Reply: one job_assigned per job, or ack with status no_job_available.
 */
export type ClaimJob = BaseMessage & {
  /**
   * Always "claim_job".
   */
  type: "claim_job";
  /**
   * A non-empty identifier, without control characters.
   */
  worker_id: string;
  max_jobs?: number;
  /**
   * Job types to prefer when several match.
   */
  preferred_types?: string[];
  current_load?: number;
  available_resources?: {
    gpu_memory_available?: number;
    concurrent_slots?: number;
    [k: string]: unknown;
  };
  /**
   * Milliseconds the worker has to send job_accepted_by_worker before the job goes back to the queue.
   */
  claim_timeout?: number;
  [k: string]: unknown;
};
/**
 * Reply to register_client.
 */
export type ClientRegistered = BaseMessage & {
  /**
   * Always "client_registered".
   */
  type: "client_registered";
  /**
   * A non-empty identifier, without control characters.
   */
  client_id: string;
  status: "registered";
  /**
   * The hub's id for this connection.
   */
  assigned_connection_id: string;
  client_type?: "job_client" | "monitor";
  /**
   * Permissions granted.
   */
  permissions?: Permission[];
  /**
   * Customer the client is bound to, if any.
   */
  customer_id?: string;
  /**
   * empq extension (D21): what the hub offers this client.
   */
  capabilities?: {
    /**
     * The hub delivers this client's job events by webhook (submit_job.webhook_url): a signing secret is configured for its customer or the hub.
     */
    webhook_support?: boolean;
    [k: string]: unknown;
  };
  [k: string]: unknown;
};
/**
 * Monitor and client permissions.
 */
export type Permission = "view_all_jobs" | "view_system_stats" | "view_workers" | "manage_jobs";
/**
 * The worker holding the job reports success. Reply: job_completed_ack; the client and subscribers get job_completed.
 */
export type CompleteJob = BaseMessage & {
  /**
   * Always "complete_job".
   */
  type: "complete_job";
  /**
   * A non-empty identifier, without control characters.
   */
  job_id: string;
  /**
   * A non-empty identifier, without control characters.
   */
  worker_id: string;
  /**
   * Seconds spent (at most 30 days).
   */
  processing_time?: number;
  result: JobResult;
  [k: string]: unknown;
};
/**
 * Sent by the hub as the first frame on every new connection.
 */
export type ConnectionEstablished = BaseMessage & {
  /**
   * Always "connection_established".
   */
  type: "connection_established";
  /**
   * Human-readable greeting.
   */
  message: string;
  /**
   * Version of the hub software.
   */
  server_version: string;
  /**
   * The hub's id for this connection (also returned as assigned_connection_id on registration).
   */
  connection_id?: string;
  /**
   * Largest frame in bytes the hub accepts (10 MB by default). Larger payloads must be sent as chunked_message frames.
   */
  max_message_size?: number;
  /**
   * Messages from the hub larger than this many bytes are sent as chunked_message frames to peers that declared chunked_messages support.
   */
  chunk_threshold?: number;
  [k: string]: unknown;
};
/**
 * A worker's connector WebSocket state changed; relayed to monitors.
 */
export type ConnectorWsStatus = BaseMessage & {
  /**
   * Always "connector_ws_status".
   */
  type: "connector_ws_status";
  /**
   * A non-empty identifier, without control characters.
   */
  worker_id: string;
  /**
   * Connector.
   */
  connector_type: string;
  status: "connected" | "connecting" | "disconnected" | "error";
  details?: {
    url?: string;
    /**
     * Unix time in milliseconds.
     */
    connection_time?: number;
    /**
     * Unix time in milliseconds.
     */
    last_message?: number;
    error?: string;
    [k: string]: unknown;
  };
  [k: string]: unknown;
};
/**
 * Graceful goodbye from a peer: the hub drops its subscriptions and, for a worker, hands its jobs back to the queue at once; then closes.
 */
export type Disconnect = BaseMessage & {
  /**
   * Always "disconnect".
   */
  type: "disconnect";
  /**
   * Why.
   */
  reason?: string;
  cleanup_subscriptions?: boolean;
  [k: string]: unknown;
};
/**
 * The hub could not do what a message asked. details.field names the offending field (dotted path) and details.provided_value its value for INVALID_PARAMETERS; request_id echoes the request's id.
 */
export type Error = BaseMessage & {
  /**
   * Always "error".
   */
  type: "error";
  /**
   * Human-readable message.
   */
  error: string;
  error_code: ErrorCode;
  details?: {
    field?: string;
    message?: string;
    provided_value?: unknown;
    reason?: string;
    [k: string]: unknown;
  };
  [k: string]: unknown;
};
/**
 * Error codes: INVALID_PARAMETERS (bad JSON or schema violation; details.field), AUTH_FAILED (missing/wrong token; connection closed), NOT_REGISTERED (message needs a role), ALREADY_REGISTERED (second registration / worker id in use), PERMISSION_DENIED (role or customer may not do this), JOB_NOT_FOUND, INVALID_STATE (job not in a state that allows this), NOT_JOB_HOLDER (worker does not hold the job), MESSAGE_TOO_LARGE, CHUNK_ERROR, RATE_LIMITED, SERVICE_UNAVAILABLE (storage unreachable), INTERNAL_ERROR.
 */
export type ErrorCode =
  | "INVALID_PARAMETERS"
  | "AUTH_FAILED"
  | "NOT_REGISTERED"
  | "ALREADY_REGISTERED"
  | "PERMISSION_DENIED"
  | "JOB_NOT_FOUND"
  | "INVALID_STATE"
  | "NOT_JOB_HOLDER"
  | "MESSAGE_TOO_LARGE"
  | "CHUNK_ERROR"
  | "RATE_LIMITED"
  | "SERVICE_UNAVAILABLE"
  | "INTERNAL_ERROR";
/**
 * The worker holding the job reports failure. Reply: job_failed_ack.
 */
export type FailJob = BaseMessage & {
  /**
   * Always "fail_job".
   */
  type: "fail_job";
  /**
   * A non-empty identifier, without control characters.
   */
  job_id: string;
  /**
   * A non-empty identifier, without control characters.
   */
  worker_id: string;
  /**
   * What went wrong.
   */
  error: string;
  /**
   * false: do not retry even if retries remain.
   */
  retry?: boolean;
  /**
   * Structured error data.
   */
  error_details?: {
    [k: string]: unknown;
  };
  processing_time?: number;
  [k: string]: unknown;
};
/**
 * Reply to submit_job: the job is queued.
 */
export type JobAccepted = BaseMessage & {
  /**
   * Always "job_accepted".
   */
  type: "job_accepted";
  /**
   * A non-empty identifier, without control characters.
   */
  job_id: string;
  status: "queued";
  /**
   * 1-based place in the queue among jobs of any class that would run before it.
   */
  position: number;
  /**
   * When the job is expected to start, from measured processing times; null until the hub has data.
   */
  estimated_start?: string | null;
  /**
   * Idle workers that can run the job and were sent job_available.
   */
  notified_workers: number;
  [k: string]: unknown;
};
/**
 * The worker confirms an assigned job; it moves to accepted.
 */
export type JobAcceptedByWorker = BaseMessage & {
  /**
   * Always "job_accepted_by_worker".
   */
  type: "job_accepted_by_worker";
  /**
   * A non-empty identifier, without control characters.
   */
  job_id: string;
  /**
   * A non-empty identifier, without control characters.
   */
  worker_id: string;
  /**
   * RFC 3339 date-time, e.g. 2024-01-15T10:05:30Z.
   */
  estimated_completion?: string;
  [k: string]: unknown;
};
/**
 * Reply to claim_job: one job for the worker.
 */
export type JobAssigned = BaseMessage & {
  /**
   * Always "job_assigned".
   */
  type: "job_assigned";
  /**
   * A non-empty identifier, without control characters.
   */
  job_id: string;
  /**
   * A non-empty identifier, without control characters.
   */
  worker_id: string;
  /**
   * Job type.
   */
  job_type: string;
  /**
   * 0-100, higher first.
   */
  priority: number;
  /**
   * The job's input.
   */
  payload: {
    [k: string]: unknown;
  };
  requirements?: Requirements;
  /**
   * Milliseconds to accept.
   */
  claim_timeout: number;
  /**
   * A non-empty identifier, without control characters.
   */
  customer_id?: string;
  retry_count?: number;
  max_retries?: number;
  [k: string]: unknown;
};
/**
 * Tells idle workers that subscribed (subscribe_to_jobs) that a job they can run is queued; they claim with claim_job.
 */
export type JobAvailable = BaseMessage & {
  /**
   * Always "job_available".
   */
  type: "job_available";
  /**
   * A non-empty identifier, without control characters.
   */
  job_id: string;
  /**
   * Job type.
   */
  job_type: string;
  /**
   * 0-100, higher first.
   */
  priority: number;
  requirements_summary?: {
    service_type?: string;
    component?: string;
    gpu_memory_min?: number;
    [k: string]: unknown;
  };
  [k: string]: unknown;
};
/**
 * Reply to cancel_job; also sent to the worker holding a running job (it must stop) and to the job's subscribers.
 */
export type JobCancelled = BaseMessage & {
  /**
   * Always "job_cancelled".
   */
  type: "job_cancelled";
  /**
   * A non-empty identifier, without control characters.
   */
  job_id: string;
  status: "cancelled";
  /**
   * Unix time in milliseconds.
   */
  cancelled_at: number;
  /**
   * Why.
   */
  reason?: string;
  [k: string]: unknown;
};
/**
 * The job finished successfully; sent to the submitting client and subscribers.
 */
export type JobCompleted = BaseMessage & {
  /**
   * Always "job_completed".
   */
  type: "job_completed";
  /**
   * A non-empty identifier, without control characters.
   */
  job_id: string;
  status: "completed";
  /**
   * 0-100, higher first.
   */
  priority?: number;
  processing_time?: number;
  result: JobResult;
  /**
   * Job type.
   */
  job_type?: string;
  [k: string]: unknown;
};
/**
 * Reply to complete_job.
 */
export type JobCompletedAck = BaseMessage & {
  /**
   * Always "job_completed_ack".
   */
  type: "job_completed_ack";
  /**
   * A non-empty identifier, without control characters.
   */
  job_id: string;
  /**
   * A non-empty identifier, without control characters.
   */
  worker_id: string;
  [k: string]: unknown;
};
/**
 * Reply to fail_job: whether a retry was scheduled and after how many seconds.
 */
export type JobFailedAck = BaseMessage & {
  /**
   * Always "job_failed_ack".
   */
  type: "job_failed_ack";
  /**
   * A non-empty identifier, without control characters.
   */
  job_id: string;
  /**
   * A non-empty identifier, without control characters.
   */
  worker_id: string;
  retry_scheduled: boolean;
  /**
   * Seconds until the job is claimable again; null when no retry.
   */
  retry_delay?: number | null;
  /**
   * Retries used so far, including this one.
   */
  retry_count?: number;
  [k: string]: unknown;
};
/**
 * Reply to subscribe_job_notifications.
 */
export type JobNotificationsSubscribed = BaseMessage & {
  /**
   * Always "job_notifications_subscribed".
   */
  type: "job_notifications_subscribed";
  /**
   * A non-empty identifier, without control characters.
   */
  subscription_id: string;
  filters_applied: JobFilters;
  enabled?: boolean;
  [k: string]: unknown;
};
/**
 * Job states. queued -> assigned (claimed) -> accepted (worker confirmed) -> in_progress -> completed | failed | cancelled | timeout; a retry goes back to queued; an unaccepted claim goes back to queued.
 */
export type JobStatus =
  "queued" | "assigned" | "accepted" | "in_progress" | "completed" | "failed" | "cancelled" | "timeout";
/**
 * A job changed state or progressed; sent to the submitting client, job subscribers and matching notification subscribers. Also sent to a worker whose unaccepted claim timed out (status queued).
 */
export type JobUpdate = BaseMessage & {
  /**
   * Always "job_update".
   */
  type: "job_update";
  /**
   * A non-empty identifier, without control characters.
   */
  job_id: string;
  status: JobStatus;
  previous_status?: JobStatus;
  /**
   * Percent done, 0-100.
   */
  progress?: number;
  /**
   * Progress or status text.
   */
  message?: string;
  /**
   * Step name.
   */
  current_step?: string;
  /**
   * RFC 3339 date-time, e.g. 2024-01-15T10:05:30Z.
   */
  estimated_completion?: string;
  retry_count?: number;
  /**
   * Error text for failed jobs.
   */
  error?: string;
  /**
   * Job type.
   */
  job_type?: string;
  /**
   * 0-100, higher first.
   */
  priority?: number;
  /**
   * A non-empty identifier, without control characters.
   */
  customer_id?: string;
  [k: string]: unknown;
};
/**
 * Liveness probe; the hub answers pong (with request_id = the ping's id).
 */
export type Ping = BaseMessage & {
  /**
   * Always "ping".
   */
  type: "ping";
  [k: string]: unknown;
};
/**
 * Answer to ping.
 */
export type Pong = BaseMessage & {
  /**
   * Always "pong".
   */
  type: "pong";
  [k: string]: unknown;
};
/**
 * Registers the connection as a job client (client_type job_client: submits and watches jobs) or as a monitor (client_type monitor: dashboards; may ask for permissions). A token, when the hub requires one, may be given here as auth_token (or in the Authorization header / ?token= query of the WebSocket handshake).
 */
export type RegisterClient = BaseMessage & {
  /**
   * Always "register_client".
   */
  type: "register_client";
  /**
   * job_client or monitor.
   */
  client_type: "job_client" | "monitor";
  /**
   * The client's own name for itself.
   */
  client_id: string;
  /**
   * Client software version.
   */
  version?: string;
  /**
   * For job clients: the customer whose jobs this connection submits and may see. Jobs submitted without customer_id get this one.
   */
  customer_id?: string;
  /**
   * What the client supports.
   */
  capabilities?: {
    webhook_support?: boolean;
    /**
     * Compression schemes the client understands.
     */
    compression?: string[];
    /**
     * The client reassembles chunked_message frames; the hub may send large messages chunked.
     */
    chunked_messages?: boolean;
    [k: string]: unknown;
  };
  /**
   * Permissions asked for (monitors). The hub grants a subset; client_registered says which.
   */
  permissions?: Permission[];
  /**
   * Token for the requested role when the hub requires tokens.
   */
  auth_token?: string;
  [k: string]: unknown;
};
/**
 * Registers the connection as a worker with what it can run. A worker that reconnects with the same worker_id within the grace period keeps the jobs it held.
 */
export type RegisterWorker = BaseMessage & {
  /**
   * Always "register_worker".
   */
  type: "register_worker";
  /**
   * Stable id of the worker (survives reconnects).
   */
  worker_id: string;
  capabilities: WorkerCapabilities;
  /**
   * Send job_available to this worker when a job it can run is queued.
   */
  subscribe_to_jobs?: boolean;
  /**
   * Initial status (default idle).
   */
  status?: WorkerState;
  /**
   * Worker software version.
   */
  version?: string;
  /**
   * Worker token when the hub requires tokens.
   */
  auth_token?: string;
  [k: string]: unknown;
};
/**
 * Worker states.
 */
export type WorkerState = "idle" | "busy" | "draining" | "offline";
/**
 * Ask for a job's state. Reply: response_job_status.
 */
export type RequestJobStatus = BaseMessage & {
  /**
   * Always "request_job_status".
   */
  type: "request_job_status";
  /**
   * A non-empty identifier, without control characters.
   */
  job_id: string;
  [k: string]: unknown;
};
/**
 * Ask for stats now. Reply: stats_response.
 */
export type RequestStats = BaseMessage & {
  /**
   * Always "request_stats".
   */
  type: "request_stats";
  include_sections?: StatsSectionList;
  [k: string]: unknown;
};
/**
 * Sections to include (default all).
 *
 * This interface was referenced by `Stats`'s JSON-Schema
 * via the `definition` "StatsSectionList".
 *
 * Items: This interface was referenced by `Stats`'s JSON-Schema
 * via the `definition` "StatsSection".
 */
export type StatsSectionList = ("jobs" | "workers" | "throughput" | "system")[];
/**
 * Reply to request_job_status, for any state including finished jobs.
 */
export type ResponseJobStatus = BaseMessage & {
  /**
   * Always "response_job_status".
   */
  type: "response_job_status";
  /**
   * A non-empty identifier, without control characters.
   */
  job_id: string;
  status: JobStatus;
  /**
   * Percent done, 0-100.
   */
  progress?: number;
  /**
   * Worker holding the job, if any.
   */
  worker_id?: string | null;
  /**
   * When a worker accepted the job.
   */
  started_at?: number | null;
  /**
   * Worker's estimate.
   */
  estimated_completion?: string | null;
  /**
   * Last progress message.
   */
  message?: string;
  /**
   * The job's type.
   */
  job_type?: string;
  /**
   * 0-100, higher first.
   */
  priority?: number;
  /**
   * A non-empty identifier, without control characters.
   */
  customer_id?: string;
  /**
   * Queue position while queued.
   */
  position?: number;
  /**
   * Unix time in milliseconds.
   */
  created_at?: number;
  /**
   * When the job reached a final state.
   */
  completed_at?: number | null;
  retry_count?: number;
  max_retries?: number;
  result?: JobResult;
  /**
   * Last error, for failed jobs.
   */
  error?: string;
  /**
   * empq extension (D21): for a job submitted with webhook_url, each event queued for it and the latest attempts.
   */
  webhook_deliveries?: WebhookDelivery[];
  [k: string]: unknown;
};
/**
 * empq extension (D21): a job event a webhook is sent for, named after the state the job reached: assigned (claimed by a worker), accepted (the worker confirmed), progress (each progress report), completed, failed (for good), cancelled, timeout.
 */
export type WebhookEvent = "accepted" | "assigned" | "progress" | "completed" | "failed" | "cancelled" | "timeout";
/**
 * The hub is going away (shutdown, maintenance); reconnect after reconnect_after.
 */
export type ServerDisconnect = BaseMessage & {
  /**
   * Always "server_disconnect".
   */
  type: "server_disconnect";
  /**
   * Why.
   */
  reason: string;
  /**
   * Unix time in milliseconds.
   */
  reconnect_after?: number;
  /**
   * Seconds.
   */
  estimated_downtime?: number;
  [k: string]: unknown;
};
/**
 * A worker records a request it made to its service (telemetry); relayed to monitors.
 */
export type ServiceRequest = BaseMessage & {
  /**
   * Always "service_request".
   */
  type: "service_request";
  /**
   * A non-empty identifier, without control characters.
   */
  job_id: string;
  /**
   * A non-empty identifier, without control characters.
   */
  worker_id: string;
  /**
   * Service.
   */
  service_type: string;
  /**
   * Path.
   */
  endpoint?: string;
  method?: "GET" | "POST" | "PUT" | "PATCH" | "DELETE";
  /**
   * Full URL.
   */
  url?: string;
  /**
   * Request body.
   */
  payload?: {
    [k: string]: unknown;
  };
  [k: string]: unknown;
};
/**
 * Reply to request_stats (not in the reference; named by empq). Holds the requested sections.
 */
export type StatsResponse = BaseMessage & {
  /**
   * Always "stats_response".
   */
  type: "stats_response";
  stats: Stats;
  [k: string]: unknown;
};
/**
 * Periodic stats broadcast to a subscribe_stats subscriber (not in the reference; named by empq).
 */
export type StatsUpdate = BaseMessage & {
  /**
   * Always "stats_update".
   */
  type: "stats_update";
  stats: Stats;
  /**
   * Unix time in milliseconds.
   */
  next_broadcast?: number;
  [k: string]: unknown;
};
/**
 * A job client submits a job. Reply: job_accepted (or error).
 */
export type SubmitJob = BaseMessage & {
  /**
   * Always "submit_job".
   */
  type: "submit_job";
  /**
   * Kind of work, e.g. text_to_image.
   */
  job_type: string;
  /**
   * 0-100, higher runs first (default 50); FIFO within a priority.
   */
  priority?: number;
  /**
   * Opaque input for the worker.
   */
  payload: {
    [k: string]: unknown;
  };
  /**
   * Customer the job belongs to (defaults to the client's).
   */
  customer_id?: string;
  requirements?: Requirements;
  /**
   * How many times a failed job is retried before it fails for good.
   */
  max_retries?: number;
  /**
   * Free-form data kept with the job and returned in status replies.
   */
  metadata?: {
    [k: string]: unknown;
  };
  /**
   * Longest the job may run after a worker accepts it; past it the job ends in state timeout. Default: no limit.
   */
  timeout_seconds?: number;
  /**
   * empq extension (D18): a client-chosen key that makes the submission safe to repeat. The hub applies a submit_job at most once per key and client identity within 24 hours: a repeat (e.g. after SERVICE_UNAVAILABLE or a lost connection) gets the first submission's job_accepted again (same job_id and position, notified_workers 0) and queues nothing.
   */
  idempotency_key?: string;
  /**
   * empq extension (D21): the job's events are also POSTed to this URL, signed per Standard Webhooks (webhook-id, webhook-timestamp, webhook-signature). https only unless the hub allows http; a target resolving to a loopback, private, link-local or metadata address is refused (INVALID_PARAMETERS, details.field webhook_url) unless the hub allows private targets.
   */
  webhook_url?: string;
  /**
   * empq extension (D21): which events go to webhook_url (default: the final ones, completed, failed, cancelled and timeout). The body of each is the message the WebSocket carries for it (job_update, job_completed or job_cancelled).
   *
   * @minItems 1
   */
  webhook_events?: [WebhookEvent, ...WebhookEvent[]];
  [k: string]: unknown;
};
/**
 * Receive job_update/job_completed/job_cancelled for one job. Reply: subscription_confirmed (subscription_type job). enabled false unsubscribes.
 */
export type SubscribeJob = BaseMessage & {
  /**
   * Always "subscribe_job".
   */
  type: "subscribe_job";
  /**
   * A non-empty identifier, without control characters.
   */
  job_id: string;
  enabled?: boolean;
  [k: string]: unknown;
};
/**
 * Receive job_update for every job matching the filters. Reply: job_notifications_subscribed. enabled false with a subscription_id removes that subscription (without one: all of them).
 */
export type SubscribeJobNotifications = BaseMessage & {
  /**
   * Always "subscribe_job_notifications".
   */
  type: "subscribe_job_notifications";
  enabled?: boolean;
  filters?: JobFilters;
  /**
   * With enabled false: the subscription to remove.
   */
  subscription_id?: string;
  [k: string]: unknown;
};
/**
 * Receive stats_update every interval_seconds. Reply: subscription_confirmed (subscription_type stats). enabled false stops it.
 */
export type SubscribeStats = BaseMessage & {
  /**
   * Always "subscribe_stats".
   */
  type: "subscribe_stats";
  enabled?: boolean;
  interval_seconds?: number;
  include_sections?: StatsSectionList;
  [k: string]: unknown;
};
/**
 * Reply to subscribe_stats and subscribe_job.
 */
export type SubscriptionConfirmed = BaseMessage & {
  /**
   * Always "subscription_confirmed".
   */
  type: "subscription_confirmed";
  subscription_type: "stats" | "job";
  /**
   * Seconds between stats_update frames.
   */
  update_interval?: number;
  /**
   * Unix time in milliseconds.
   */
  next_broadcast?: number;
  enabled?: boolean;
  include_sections?: StatsSectionList;
  [k: string]: unknown;
};
/**
 * An alert to monitors: queue depth over threshold, a job no connected worker can run, a worker lost.
 */
export type SystemAlert = BaseMessage & {
  /**
   * Always "system_alert".
   */
  type: "system_alert";
  /**
   * This interface was referenced by `Alert`'s JSON-Schema
   * via the `definition` "Severity".
   */
  severity: "info" | "warning" | "error" | "critical";
  /**
   * Alert class, e.g. resource_constraint, no_capable_worker, worker_lost.
   */
  category: string;
  /**
   * Human-readable text.
   */
  message: string;
  /**
   * Numbers behind the alert.
   */
  details?: {
    [k: string]: unknown;
  };
  /**
   * Suggested actions.
   */
  actions_recommended?: string[];
  [k: string]: unknown;
};
/**
 * System summary to monitors (on request via request_stats and with stats subscriptions).
 */
export type SystemStatus = BaseMessage & {
  /**
   * Always "system_status".
   */
  type: "system_status";
  active_workers: number;
  pending_jobs: number;
  active_jobs: number;
  completed_jobs_last_hour: number;
  system_health: "healthy" | "degraded" | "critical";
  /**
   * Alerts in force.
   */
  alerts: Alert[];
  [k: string]: unknown;
};
/**
 * Reply to a frame whose type the hub does not recognise; carries the original frame.
 */
export type Unknown = BaseMessage & {
  /**
   * Always "unknown".
   */
  type: "unknown";
  /**
   * Explanation.
   */
  content: string;
  /**
   * The frame as received (truncated to 4 KB).
   */
  original_message: string;
  [k: string]: unknown;
};
/**
 * Progress from the worker holding the job; relayed as job_update.
 */
export type UpdateJobProgress = BaseMessage & {
  /**
   * Always "update_job_progress".
   */
  type: "update_job_progress";
  /**
   * A non-empty identifier, without control characters.
   */
  job_id: string;
  /**
   * A non-empty identifier, without control characters.
   */
  worker_id: string;
  /**
   * Percent done, 0-100.
   */
  progress: number;
  status?: "in_progress";
  /**
   * Progress text.
   */
  message?: string;
  /**
   * Step name.
   */
  current_step?: string;
  /**
   * RFC 3339 date-time, e.g. 2024-01-15T10:05:30Z.
   */
  estimated_completion?: string;
  connector_details?: {
    connected?: boolean;
    service?: string;
    queue_position?: number;
    service_status?: string;
    [k: string]: unknown;
  };
  [k: string]: unknown;
};
/**
 * Periodic liveness and telemetry. Reply: worker_heartbeat_ack.
 */
export type WorkerHeartbeat = BaseMessage & {
  /**
   * Always "worker_heartbeat".
   */
  type: "worker_heartbeat";
  /**
   * A non-empty identifier, without control characters.
   */
  worker_id: string;
  status?: WorkerState;
  load?: number;
  /**
   * Jobs the worker is running.
   *
   * Items: A non-empty identifier, without control characters.
   */
  current_jobs?: string[];
  system_info?: SystemInfo;
  /**
   * Per-connector health, keyed by connector name.
   */
  connector_status?: {
    [k: string]: ConnectorStatus;
  };
  [k: string]: unknown;
};
/**
 * Reply to worker_heartbeat.
 */
export type WorkerHeartbeatAck = BaseMessage & {
  /**
   * Always "worker_heartbeat_ack".
   */
  type: "worker_heartbeat_ack";
  /**
   * A non-empty identifier, without control characters.
   */
  worker_id: string;
  status: "acknowledged";
  /**
   * Unix time in milliseconds.
   */
  next_heartbeat_expected: number;
  [k: string]: unknown;
};
/**
 * Reply to register_worker.
 */
export type WorkerRegistered = BaseMessage & {
  /**
   * Always "worker_registered".
   */
  type: "worker_registered";
  /**
   * A non-empty identifier, without control characters.
   */
  worker_id: string;
  status: "registered";
  /**
   * A non-empty identifier, without control characters.
   */
  assigned_connection_id: string;
  /**
   * Milliseconds between heartbeats the hub expects.
   */
  heartbeat_interval?: number;
  /**
   * Jobs the worker still holds from before a reconnect within the grace period.
   *
   * Items: A non-empty identifier, without control characters.
   */
  resumed_jobs?: string[];
  [k: string]: unknown;
};
/**
 * The worker's status or capabilities changed. Acked (ack) when it carries an id.
 */
export type WorkerStatus = BaseMessage & {
  /**
   * Always "worker_status".
   */
  type: "worker_status";
  /**
   * A non-empty identifier, without control characters.
   */
  worker_id: string;
  status: WorkerState;
  capabilities?: WorkerCapabilities;
  /**
   * Job in hand, if any.
   */
  current_job_id?: string | null;
  available_slots?: number;
  [k: string]: unknown;
};
/**
 * Any frame a job client or monitor sends to the hub.
 *
 * This interface was referenced by `MessageMap`'s JSON-Schema
 * via the `definition` "ClientToHub".
 */
export type ClientToHub =
  | CancelJob
  | ChunkedMessage
  | ChunkedMessageComplete
  | Disconnect
  | Ping
  | Pong
  | RegisterClient
  | RequestJobStatus
  | RequestStats
  | SubmitJob
  | SubscribeJob
  | SubscribeJobNotifications
  | SubscribeStats;
/**
 * Any frame the hub sends to any peer.
 *
 * This interface was referenced by `MessageMap`'s JSON-Schema
 * via the `definition` "FromHub".
 */
export type FromHub =
  | Ack
  | ChunkedMessage
  | ChunkedMessageComplete
  | ClientRegistered
  | ConnectionEstablished
  | ConnectorWsStatus
  | Error
  | JobAccepted
  | JobAssigned
  | JobAvailable
  | JobCancelled
  | JobCompleted
  | JobCompletedAck
  | JobFailedAck
  | JobNotificationsSubscribed
  | JobUpdate
  | Ping
  | Pong
  | ResponseJobStatus
  | ServerDisconnect
  | ServiceRequest
  | StatsResponse
  | StatsUpdate
  | SubscriptionConfirmed
  | SystemAlert
  | SystemStatus
  | Unknown
  | WorkerHeartbeatAck
  | WorkerRegistered;
/**
 * Any frame the hub sends to a job client.
 *
 * This interface was referenced by `MessageMap`'s JSON-Schema
 * via the `definition` "HubToClient".
 */
export type HubToClient =
  | Ack
  | ChunkedMessage
  | ChunkedMessageComplete
  | ClientRegistered
  | ConnectionEstablished
  | Error
  | JobAccepted
  | JobCancelled
  | JobCompleted
  | JobNotificationsSubscribed
  | JobUpdate
  | Ping
  | Pong
  | ResponseJobStatus
  | ServerDisconnect
  | StatsResponse
  | StatsUpdate
  | SubscriptionConfirmed
  | Unknown;
/**
 * Any frame the hub sends to a monitor.
 *
 * This interface was referenced by `MessageMap`'s JSON-Schema
 * via the `definition` "HubToMonitor".
 */
export type HubToMonitor =
  | Ack
  | ChunkedMessage
  | ChunkedMessageComplete
  | ClientRegistered
  | ConnectionEstablished
  | ConnectorWsStatus
  | Error
  | JobAccepted
  | JobCancelled
  | JobCompleted
  | JobNotificationsSubscribed
  | JobUpdate
  | Ping
  | Pong
  | ResponseJobStatus
  | ServerDisconnect
  | ServiceRequest
  | StatsResponse
  | StatsUpdate
  | SubscriptionConfirmed
  | SystemAlert
  | SystemStatus
  | Unknown;
/**
 * Any frame the hub sends to a worker.
 *
 * This interface was referenced by `MessageMap`'s JSON-Schema
 * via the `definition` "HubToWorker".
 */
export type HubToWorker =
  | Ack
  | ChunkedMessage
  | ChunkedMessageComplete
  | ConnectionEstablished
  | Error
  | JobAssigned
  | JobAvailable
  | JobCancelled
  | JobCompletedAck
  | JobFailedAck
  | JobUpdate
  | Ping
  | Pong
  | ServerDisconnect
  | Unknown
  | WorkerHeartbeatAck
  | WorkerRegistered;
/**
 * Any frame a peer (job client, monitor or worker) sends to the hub: what the hub parses before it knows the peer's role.
 *
 * This interface was referenced by `MessageMap`'s JSON-Schema
 * via the `definition` "ToHub".
 */
export type ToHub =
  | CancelJob
  | ChunkedMessage
  | ChunkedMessageComplete
  | ClaimJob
  | CompleteJob
  | ConnectorWsStatus
  | Disconnect
  | FailJob
  | JobAcceptedByWorker
  | Ping
  | Pong
  | RegisterClient
  | RegisterWorker
  | RequestJobStatus
  | RequestStats
  | ServiceRequest
  | SubmitJob
  | SubscribeJob
  | SubscribeJobNotifications
  | SubscribeStats
  | UpdateJobProgress
  | WorkerHeartbeat
  | WorkerStatus;
/**
 * Any frame a worker sends to the hub.
 *
 * This interface was referenced by `MessageMap`'s JSON-Schema
 * via the `definition` "WorkerToHub".
 */
export type WorkerToHub =
  | ChunkedMessage
  | ChunkedMessageComplete
  | ClaimJob
  | CompleteJob
  | ConnectorWsStatus
  | Disconnect
  | FailJob
  | JobAcceptedByWorker
  | Ping
  | Pong
  | RegisterWorker
  | ServiceRequest
  | UpdateJobProgress
  | WorkerHeartbeat
  | WorkerStatus;

/**
 * Every protocol message, by its `type`.
 */
export interface MessageMap {
  ack: Ack;
  cancel_job: CancelJob;
  chunked_message: ChunkedMessage;
  chunked_message_complete: ChunkedMessageComplete;
  claim_job: ClaimJob;
  client_registered: ClientRegistered;
  complete_job: CompleteJob;
  connection_established: ConnectionEstablished;
  connector_ws_status: ConnectorWsStatus;
  disconnect: Disconnect;
  error: Error;
  fail_job: FailJob;
  job_accepted: JobAccepted;
  job_accepted_by_worker: JobAcceptedByWorker;
  job_assigned: JobAssigned;
  job_available: JobAvailable;
  job_cancelled: JobCancelled;
  job_completed: JobCompleted;
  job_completed_ack: JobCompletedAck;
  job_failed_ack: JobFailedAck;
  job_notifications_subscribed: JobNotificationsSubscribed;
  job_update: JobUpdate;
  ping: Ping;
  pong: Pong;
  register_client: RegisterClient;
  register_worker: RegisterWorker;
  request_job_status: RequestJobStatus;
  request_stats: RequestStats;
  response_job_status: ResponseJobStatus;
  server_disconnect: ServerDisconnect;
  service_request: ServiceRequest;
  stats_response: StatsResponse;
  stats_update: StatsUpdate;
  submit_job: SubmitJob;
  subscribe_job: SubscribeJob;
  subscribe_job_notifications: SubscribeJobNotifications;
  subscribe_stats: SubscribeStats;
  subscription_confirmed: SubscriptionConfirmed;
  system_alert: SystemAlert;
  system_status: SystemStatus;
  unknown: Unknown;
  update_job_progress: UpdateJobProgress;
  worker_heartbeat: WorkerHeartbeat;
  worker_heartbeat_ack: WorkerHeartbeatAck;
  worker_registered: WorkerRegistered;
  worker_status: WorkerStatus;
}
/**
 * Fields every message may carry (the reference's BaseMessage). Extra properties are allowed.
 */
export interface BaseMessage {
  /**
   * Message type identifier.
   */
  type: string;
  /**
   * Unix time in milliseconds.
   */
  timestamp: number;
  /**
   * A non-empty identifier, without control characters.
   */
  id?: string;
  /**
   * Message source identifier.
   */
  source?: string;
  /**
   * A non-empty identifier, without control characters.
   */
  job_id?: string;
  /**
   * A non-empty identifier, without control characters.
   */
  worker_id?: string;
  /**
   * On replies: the id of the request being answered (empq addition).
   */
  request_id?: string;
  [k: string]: unknown;
}
/**
 * What a job produced.
 */
export interface JobResult {
  success: boolean;
  output_files?: string[];
  metadata?: {
    [k: string]: unknown;
  };
  connector_info?: {
    [k: string]: unknown;
  };
  error?: string;
  [k: string]: unknown;
}
/**
 * What a worker needs to run a job. Unknown keys are refused.
 */
export interface Requirements {
  /**
   * Must be one of the worker's services.
   */
  service_type?: string;
  /**
   * Must be one of the worker's components.
   */
  component?: string;
  hardware?: HardwareRequirements;
}
/**
 * Hardware minima of a job; a worker matches when each of its values is at least the minimum. Unknown keys are refused so a typo cannot silently widen matching.
 */
export interface HardwareRequirements {
  gpu_memory_gb?: number;
  cpu_cores?: number;
  ram_gb?: number;
}
/**
 * Filters of a job notification subscription; all given filters must match.
 */
export interface JobFilters {
  /**
   * A non-empty identifier, without control characters.
   */
  customer_id?: string;
  job_types?: string[];
  /**
   * 0-100, higher first.
   */
  priority_min?: number;
  status?: JobStatus[];
}
/**
 * What a worker can run.
 */
export interface WorkerCapabilities {
  /**
   * Service types the worker runs (comfyui, a1111...).
   *
   * @minItems 1
   */
  services: [string, ...string[]];
  /**
   * Components (models/workflows) the worker has.
   */
  components?: string[];
  hardware?: Hardware;
  max_concurrent_jobs?: number;
  /**
   * If present, the worker only takes jobs of these customers.
   *
   * Items: A non-empty identifier, without control characters.
   */
  allowed_customers?: string[];
  /**
   * The worker reassembles chunked_message frames.
   */
  chunked_messages?: boolean;
  [k: string]: unknown;
}
/**
 * A worker's hardware. Extra properties allowed.
 */
export interface Hardware {
  gpu_memory_gb?: number;
  gpu_model?: string;
  cpu_cores?: number;
  ram_gb?: number;
  [k: string]: unknown;
}
/**
 * empq extension (D21): one job event sent by webhook, and its attempts (the latest ones; response bodies are never kept).
 */
export interface WebhookDelivery {
  /**
   * The webhook-id header: the same on every attempt of this event, for de-duplication.
   */
  webhook_id: string;
  event: WebhookEvent;
  /**
   * pending: queued, not attempted yet; retrying: an attempt failed, another is scheduled (next_attempt_at); delivered: the receiver answered 2xx; failed: stopped (the receiver answered a 3xx or a 4xx other than 429, or the target was refused); expired: still failing when the retry period ended.
   *
   * This interface was referenced by `WebhookDelivery`'s JSON-Schema
   * via the `definition` "WebhookDeliveryState".
   */
  state: "pending" | "retrying" | "delivered" | "failed" | "expired";
  /**
   * Unix time in milliseconds.
   */
  queued_at?: number;
  /**
   * Unix time in milliseconds.
   */
  next_attempt_at?: number;
  attempts: WebhookAttempt[];
  [k: string]: unknown;
}
/**
 * One HTTP POST of a delivery.
 *
 * This interface was referenced by `WebhookDelivery`'s JSON-Schema
 * via the `definition` "WebhookAttempt".
 */
export interface WebhookAttempt {
  /**
   * 1 for the first attempt.
   */
  attempt: number;
  /**
   * Unix time in milliseconds.
   */
  at: number;
  /**
   * The receiver's HTTP status, when it answered.
   */
  status_code?: number;
  /**
   * Why the attempt failed (timeout, connection refused, HTTP 500, ...).
   */
  error?: string;
  /**
   * How long the attempt took.
   */
  duration_ms?: number;
  [k: string]: unknown;
}
/**
 * Stats sections; only requested sections are present.
 */
export interface Stats {
  jobs?: JobCounts;
  workers?: WorkerCounts;
  throughput?: Throughput;
  system?: SystemSection;
  [k: string]: unknown;
}
/**
 * Jobs by state.
 *
 * This interface was referenced by `Stats`'s JSON-Schema
 * via the `definition` "JobCounts".
 */
export interface JobCounts {
  queued?: number;
  assigned?: number;
  accepted?: number;
  in_progress?: number;
  completed?: number;
  failed?: number;
  cancelled?: number;
  timeout?: number;
  [k: string]: unknown;
}
/**
 * Workers by state, and each worker.
 *
 * This interface was referenced by `Stats`'s JSON-Schema
 * via the `definition` "WorkerCounts".
 */
export interface WorkerCounts {
  total?: number;
  idle?: number;
  busy?: number;
  draining?: number;
  offline?: number;
  workers?: WorkerSummary[];
  [k: string]: unknown;
}
/**
 * This interface was referenced by `Stats`'s JSON-Schema
 * via the `definition` "WorkerSummary".
 */
export interface WorkerSummary {
  /**
   * A non-empty identifier, without control characters.
   */
  worker_id: string;
  status: WorkerState;
  /**
   * Items: A non-empty identifier, without control characters.
   */
  current_jobs?: string[];
  capabilities?: WorkerCapabilities;
  load?: number;
  system_info?: SystemInfo;
  connector_status?: {
    [k: string]: ConnectorStatus;
  };
  /**
   * Unix time in milliseconds.
   */
  last_heartbeat?: number;
  [k: string]: unknown;
}
/**
 * Worker machine telemetry.
 */
export interface SystemInfo {
  cpu_usage?: number;
  memory_usage?: number;
  gpu_usage?: number;
  gpu_memory_usage?: number;
  uptime?: number;
  [k: string]: unknown;
}
/**
 * Health of one connector.
 */
export interface ConnectorStatus {
  status: "active" | "idle" | "connecting" | "disconnected" | "error";
  queue_length?: number;
  response_time_ms?: number;
  /**
   * RFC 3339 date-time, e.g. 2024-01-15T10:05:30Z.
   */
  last_health_check?: string;
  [k: string]: unknown;
}
/**
 * This interface was referenced by `Stats`'s JSON-Schema
 * via the `definition` "Throughput".
 */
export interface Throughput {
  completed_last_minute?: number;
  completed_last_hour?: number;
  failed_last_hour?: number;
  /**
   * Seconds; null without data.
   */
  avg_processing_time?: number | null;
  [k: string]: unknown;
}
/**
 * This interface was referenced by `Stats`'s JSON-Schema
 * via the `definition` "SystemSection".
 */
export interface SystemSection {
  uptime_seconds?: number;
  hubs?: number;
  connections?: {
    [k: string]: number;
  };
  system_health?: "healthy" | "degraded" | "critical";
  alerts?: Alert[];
  [k: string]: unknown;
}
/**
 * An alert in force.
 */
export interface Alert {
  /**
   * This interface was referenced by `Alert`'s JSON-Schema
   * via the `definition` "Severity".
   */
  severity: "info" | "warning" | "error" | "critical";
  category: string;
  message: string;
  /**
   * Unix time in milliseconds.
   */
  timestamp?: number;
  [k: string]: unknown;
}
/**
 * A job to submit: the fields of submit_job without type and timestamp (derived from schemas/messages/submit_job.json by the generator).
 *
 * This interface was referenced by `MessageMap`'s JSON-Schema
 * via the `definition` "JobSubmission".
 */
export interface JobSubmission {
  /**
   * Kind of work, e.g. text_to_image.
   */
  job_type: string;
  /**
   * 0-100, higher runs first (default 50); FIFO within a priority.
   */
  priority?: number;
  /**
   * Opaque input for the worker.
   */
  payload: {
    [k: string]: unknown;
  };
  /**
   * Customer the job belongs to (defaults to the client's).
   */
  customer_id?: string;
  requirements?: Requirements;
  /**
   * How many times a failed job is retried before it fails for good.
   */
  max_retries?: number;
  /**
   * Free-form data kept with the job and returned in status replies.
   */
  metadata?: {
    [k: string]: unknown;
  };
  /**
   * Longest the job may run after a worker accepts it; past it the job ends in state timeout. Default: no limit.
   */
  timeout_seconds?: number;
  /**
   * empq extension (D18): a client-chosen key that makes the submission safe to repeat. The hub applies a submit_job at most once per key and client identity within 24 hours: a repeat (e.g. after SERVICE_UNAVAILABLE or a lost connection) gets the first submission's job_accepted again (same job_id and position, notified_workers 0) and queues nothing.
   */
  idempotency_key?: string;
  /**
   * empq extension (D21): the job's events are also POSTed to this URL, signed per Standard Webhooks (webhook-id, webhook-timestamp, webhook-signature). https only unless the hub allows http; a target resolving to a loopback, private, link-local or metadata address is refused (INVALID_PARAMETERS, details.field webhook_url) unless the hub allows private targets.
   */
  webhook_url?: string;
  /**
   * empq extension (D21): which events go to webhook_url (default: the final ones, completed, failed, cancelled and timeout). The body of each is the message the WebSocket carries for it (job_update, job_completed or job_cancelled).
   *
   * @minItems 1
   */
  webhook_events?: [WebhookEvent, ...WebhookEvent[]];
  [k: string]: unknown;
}
