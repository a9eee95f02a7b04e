/**
 * @empq/client — the TypeScript client and worker SDK of the EmProps Job Queue (empq).
 *
 * Every message type is generated from the JSON Schemas in schemas/ (`./generated/protocol.js`,
 * re-exported here): one type per message, named after its schema's title, the per-direction
 * unions (`ClientToHub`, `HubToClient`, `WorkerToHub`, `HubToWorker`, `HubToMonitor`, `ToHub`,
 * `FromHub`), `MessageMap` (type → message) and `JobSubmission`.
 */
export type * from "./generated/protocol.js";
export type { EmpQueueClientInterface, ErrorMessage, JobEvent, SystemStats } from "./types.js";
export { EmpQueueClient, FINAL_STATES, isFinal, outcome, type ClientOptions, type StatsOptions } from "./client.js";
export {
  EmpWorker,
  Job,
  JobError,
  JobGone,
  type Handler,
  type HandlerResult,
  type Progress,
  type ProgressFields,
  type WorkerEventCallback,
  type WorkerEventName,
  type WorkerOptions,
} from "./worker.js";
export {
  DEFAULT_BACKOFF,
  DEFAULT_HUB_URL,
  HubConnection,
  VERSION,
  defaultLogger,
  message,
  type Backoff,
  type ConnectionOptions,
  type Fields,
  type FromHubOf,
  type Logger,
  type RequestOptions,
} from "./connection.js";
export {
  AuthFailed,
  ConnectionLost,
  EmpqError,
  HubError,
  HubUnreachable,
  JobCancelledError,
  JobFailed,
  RequestTimeout,
} from "./errors.js";
export type { SocketOptions, WebSocketConstructor, WebSocketLike } from "./transport.js";
export { ChunkError, Reassembler, splitIntoChunks, type Assembled } from "./chunks.js";
export {
  WEBHOOK_TOLERANCE_SECONDS,
  WebhookVerificationError,
  signWebhook,
  verifyWebhook,
  webhookSecretKey,
  type WebhookMessage,
  type WebhookHeaders,
} from "./webhooks.js";
