/**
 * `EmpQueueClient`: a job client (or, with `clientType: "monitor"`, a monitor) of the EmProps Job
 * Queue hub. It has exactly the interface of the protocol reference's "Client Libraries" section
 *
 *     const client = new EmpQueueClient();
 *     await client.connect("ws://127.0.0.1:3002");
 *     const jobId = await client.submitJob({ job_type: "text_to_image", payload: { prompt: "mountains" } });
 *     client.subscribeToJob(jobId, (update) => console.log(update.type, update.status));
 *     client.subscribeToStats((stats) => console.log(stats.stats.jobs));
 *     client.onError((error) => console.error(error.error_code, error.error));
 *     client.disconnect();
 *
 * and on top of it what the Python SDK has: `waitForJob`, `getJobStatus`, `cancelJob`,
 * `jobEvents` (an async iterator), `requestStats`, notifications, awaitable forms of the
 * subscriptions (`watchJob`, `watchStats`) and of `disconnect` (`close`), reconnect with renewed
 * subscriptions, and idempotent resubmission (spec D18).
 */
import {
  HubConnection,
  message,
  randomKey,
  sleep,
  VERSION,
  type ConnectionOptions,
  type Fields,
} from "./connection.js";
import { ConnectionLost, EmpqError, HubError, JobCancelledError, JobFailed, RequestTimeout } from "./errors.js";
import type {
  ClientRegistered,
  FromHub,
  JobAccepted,
  JobCancelled,
  JobFilters,
  JobNotificationsSubscribed,
  JobResult,
  JobSubmission,
  Permission,
  RegisterClient,
  ResponseJobStatus,
  Stats,
  StatsSectionList,
  SubscriptionConfirmed,
  ToHub,
} from "./generated/protocol.js";
import type { EmpQueueClientInterface, ErrorMessage, JobEvent, SystemStats } from "./types.js";

export const FINAL_STATES: ReadonlySet<string> = new Set(["completed", "failed", "cancelled", "timeout"]);
const MAX_FINALS_KEPT = 10_000; // final job events remembered, so a wait after the fact still answers

/** Is this the last event of its job (completion, failure, timeout or cancellation)? */
export function isFinal(event: JobEvent): boolean {
  return event.type !== "job_update" || FINAL_STATES.has(event.status);
}

/** The result of a final job event; throws `JobFailed` or `JobCancelledError` for the others. */
export function outcome(event: JobEvent): JobResult {
  if (event.type === "job_completed") return event.result;
  if (event.type === "job_cancelled") throw new JobCancelledError(event.job_id, event.reason, event);
  if (event.status === "completed") return { success: true }; // a bare job_update
  if (event.status === "cancelled") throw new JobCancelledError(event.job_id, event.message, event);
  throw new JobFailed(event.job_id, event.status, event.error ?? event.message, event);
}

const LOST = Symbol("lost");

/** Events of one job for one waiter, in order. */
class EventQueue {
  private items: Array<JobEvent | typeof LOST> = [];
  private waiting: ((item: JobEvent | typeof LOST) => void) | undefined;

  push(item: JobEvent | typeof LOST): void {
    const waiting = this.waiting;
    if (waiting) {
      this.waiting = undefined;
      waiting(item);
    } else this.items.push(item);
  }

  next(): Promise<JobEvent | typeof LOST> {
    const item = this.items.shift();
    if (item !== undefined) return Promise.resolve(item);
    return new Promise((resolve) => (this.waiting = resolve));
  }
}

export interface ClientOptions extends ConnectionOptions {
  /** A job client without customer sees only the jobs its client_id submitted (spec D13): give
   * the same id to every connection that must see the same jobs. Default: a fresh one. */
  clientId?: string;
  /** The customer whose jobs this client submits and may see. */
  customerId?: string;
  clientType?: RegisterClient["client_type"];
  /** Permissions asked for (monitors). */
  permissions?: Permission[];
}

export interface StatsOptions {
  /** Seconds between `stats_update` messages (≥ 1, default 5). */
  intervalSeconds?: number;
  sections?: StatsSectionList;
}

type JobCallback = (update: JobEvent) => void;
type StatsFields = Fields<Extract<ToHub, { type: "subscribe_stats" }>>;

export class EmpQueueClient extends HubConnection implements EmpQueueClientInterface {
  readonly clientId: string;
  readonly customerId: string | undefined;
  readonly clientType: RegisterClient["client_type"];
  readonly permissions: Permission[] | undefined;
  /** The hub's `client_registered` of the current (or last) connection. */
  registration: ClientRegistered | undefined;

  private jobCallbacks = new Map<string, JobCallback[]>();
  private jobQueues = new Map<string, Set<EventQueue>>();
  private subscribed = new Set<string>(); // jobs subscribed on the current connection
  private finals = new Map<string, JobEvent>();
  private statsCallbacks: Array<(stats: SystemStats) => void> = [];
  private statsFields: StatsFields | undefined;
  private notificationCallbacks: JobCallback[] = [];
  private notificationFilters: JobFilters | undefined;

  constructor(options: ClientOptions = {}) {
    super(options, "client");
    this.clientId = options.clientId ?? `empq-ts-client-${randomKey().slice(0, 8)}`;
    this.customerId = options.customerId;
    this.clientType = options.clientType ?? "job_client";
    this.permissions = options.permissions;
  }

  // connection --------------------------------------------------------------------------------
  protected override registerMessage(): RegisterClient {
    return message("register_client", {
      client_type: this.clientType,
      client_id: this.clientId,
      version: VERSION,
      capabilities: { chunked_messages: true },
      ...(this.customerId ? { customer_id: this.customerId } : {}),
      ...(this.permissions ? { permissions: this.permissions } : {}),
      ...(this.token ? { auth_token: this.token } : {}),
    });
  }

  protected override registered(reply: FromHub): void {
    if (reply.type !== "client_registered") throw new EmpqError(`unexpected reply ${reply.type} to register_client`);
    this.registration = reply;
  }

  protected override lost(): void {
    this.subscribed.clear();
  }

  protected override gone(): void {
    for (const queues of this.jobQueues.values()) for (const queue of queues) queue.push(LOST);
  }

  /** Renew every subscription after a reconnect: jobs being watched, stats, notifications. */
  protected override async resumed(): Promise<void> {
    const jobs = new Set([...this.jobCallbacks.keys(), ...this.jobQueues.keys()]);
    await Promise.all(
      [...jobs]
        .filter((jobId) => !this.finals.has(jobId))
        .map((jobId) =>
          this.ensureSubscribed(jobId).catch((error: Error) =>
            this.logger.warn(`could not renew the subscription to ${jobId}: ${error.message}`),
          ),
        ),
    );
    if (this.statsFields) {
      await this.ask(message("subscribe_stats", this.statsFields), "subscription_confirmed", { retry: true });
    }
    if (this.notificationFilters) await this.subscribeNotifications(this.notificationFilters);
  }

  /** Say goodbye (`disconnect`) and close; pending requests and waits end with `ConnectionLost`.
   * `close()` is the same, awaitable. */
  disconnect(): void {
    this.close().catch((error: unknown) => this.logger.warn("disconnect failed", error));
  }

  /** `disconnect`, resolved once the connection is closed. */
  close(): Promise<void> {
    return this.shutdown(message("disconnect", { reason: "client shutdown", cleanup_subscriptions: true }));
  }

  // frames ------------------------------------------------------------------------------------
  protected override received(frame: FromHub): void {
    if (frame.type === "job_update" || frame.type === "job_completed" || frame.type === "job_cancelled") {
      const jobId = frame.job_id;
      if (isFinal(frame)) {
        this.finals.delete(jobId);
        this.finals.set(jobId, frame);
        if (this.finals.size > MAX_FINALS_KEPT) this.finals.delete(this.finals.keys().next().value!);
      }
      for (const callback of [...(this.jobCallbacks.get(jobId) ?? [])]) this.call(callback, frame);
      for (const queue of [...(this.jobQueues.get(jobId) ?? [])]) queue.push(frame);
      for (const callback of [...this.notificationCallbacks]) this.call(callback, frame);
    } else if (frame.type === "stats_update") {
      for (const callback of [...this.statsCallbacks]) this.call(callback, frame);
    }
  }

  // jobs --------------------------------------------------------------------------------------
  /** Submit a job; resolves with the hub's `job_accepted` (job_id, position, estimated_start,
   * notified_workers).
   *
   * Every submission carries an `idempotency_key` (a fresh one unless given; spec D18), so it is
   * sent again — and never applied twice — when the connection drops before the reply or the
   * hub answers SERVICE_UNAVAILABLE, until `timeoutMs` (default `requestTimeoutMs`). */
  async submit(job: JobSubmission, options: { timeoutMs?: number } = {}): Promise<JobAccepted> {
    const { type: _type, timestamp: _timestamp, id: _id, ...fields } = job as JobSubmission & Record<string, unknown>;
    const msg = message("submit_job", { ...fields, idempotency_key: job.idempotency_key ?? randomKey() } as Fields<
      Extract<ToHub, { type: "submit_job" }>
    >);
    const deadline = Date.now() + (options.timeoutMs ?? this.requestTimeoutMs);
    let delay = 50;
    for (;;) {
      try {
        const timeoutMs = Math.max(1, deadline - Date.now());
        return await this.ask(msg, "job_accepted", { timeoutMs, retry: true });
      } catch (error) {
        if (!(error instanceof HubError) || error.code !== "SERVICE_UNAVAILABLE" || Date.now() + delay >= deadline) {
          throw error;
        }
      }
      await sleep(delay);
      delay = Math.min(delay * 2, 1000);
    }
  }

  /** Submit a job; resolves with its job id. */
  async submitJob(job: JobSubmission): Promise<string> {
    return (await this.submit(job)).job_id;
  }

  /** The job's state now (any state, final ones included). */
  getJobStatus(jobId: string, options: { timeoutMs?: number } = {}): Promise<ResponseJobStatus> {
    return this.ask(message("request_job_status", { job_id: jobId }), "response_job_status", {
      ...options,
      retry: true,
    });
  }

  /** Cancel a job that is not final yet (`HubError` INVALID_STATE for a final one). */
  cancelJob(jobId: string, reason?: string, options: { timeoutMs?: number } = {}): Promise<JobCancelled> {
    return this.ask(message("cancel_job", { job_id: jobId, ...(reason ? { reason } : {}) }), "job_cancelled", options);
  }

  /** `callback(event)` for each `job_update`, `job_completed` and `job_cancelled` of the job
   * (failure and timeout are `job_update`s with that status). A job already final is reported
   * at once. A refusal (e.g. JOB_NOT_FOUND) goes to the `onError` callbacks; `watchJob` is the
   * same call, awaitable. */
  subscribeToJob(jobId: string, callback: (update: JobEvent) => void): void {
    this.watchJob(jobId, callback).catch((error: unknown) => this.reportFailure(`subscribe to ${jobId}`, error));
  }

  /** `subscribeToJob`, resolved once the hub confirmed the subscription (rejected, and the
   * callback removed, when it refused). */
  async watchJob(jobId: string, callback: (update: JobEvent) => void): Promise<void> {
    const callbacks = this.jobCallbacks.get(jobId) ?? [];
    callbacks.push(callback);
    this.jobCallbacks.set(jobId, callbacks);
    try {
      await this.ensureSubscribed(jobId);
    } catch (error) {
      this.removeCallback(jobId, callback);
      throw error;
    }
  }

  /** Remove one callback of the job (or all); unsubscribes when nothing else watches it. */
  async unsubscribeFromJob(jobId: string, callback?: (update: JobEvent) => void): Promise<void> {
    if (callback) this.removeCallback(jobId, callback);
    else this.jobCallbacks.delete(jobId);
    await this.maybeUnsubscribe(jobId);
  }

  /** Wait until the job is final: its `JobResult` when completed; rejects with `JobFailed`
   * (failed or timeout), `JobCancelledError`, `RequestTimeout` after `timeoutMs` (default: no
   * limit) or `ConnectionLost` when the client closes. Carries on across reconnects. */
  async waitForJob(jobId: string, options: { timeoutMs?: number } = {}): Promise<JobResult> {
    const queue = new EventQueue();
    this.addQueue(jobId, queue);
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      const timedOut = new Promise<never>((_, reject) => {
        if (options.timeoutMs !== undefined) {
          timer = setTimeout(
            () => reject(new RequestTimeout(`job ${jobId} not final after ${options.timeoutMs} ms`)),
            options.timeoutMs,
          );
        }
      });
      timedOut.catch(() => {});
      const known = this.finals.get(jobId);
      if (known) return outcome(known);
      await Promise.race([this.ensureSubscribed(jobId), timedOut]);
      for (;;) {
        const event = await Promise.race([queue.next(), timedOut]);
        if (event === LOST) throw new ConnectionLost(`connection to ${this.url} closed while waiting for ${jobId}`);
        if (isFinal(event)) return outcome(event);
      }
    } finally {
      clearTimeout(timer);
      this.removeQueue(jobId, queue);
    }
  }

  /** Every event of the job from now on, ending with the final one. Continues across
   * reconnects; ends with `ConnectionLost` when the client closes.
   *
   *     for await (const event of client.jobEvents(jobId)) console.log(event.type, event.status);
   */
  async *jobEvents(jobId: string): AsyncGenerator<JobEvent, void, undefined> {
    const queue = new EventQueue();
    this.addQueue(jobId, queue);
    try {
      const known = this.finals.get(jobId);
      if (known) {
        yield known;
        return;
      }
      await this.ensureSubscribed(jobId);
      for (;;) {
        const event = await queue.next();
        if (event === LOST) throw new ConnectionLost(`connection to ${this.url} closed while watching ${jobId}`);
        yield event;
        if (isFinal(event)) return;
      }
    } finally {
      this.removeQueue(jobId, queue);
    }
  }

  private addQueue(jobId: string, queue: EventQueue): void {
    const queues = this.jobQueues.get(jobId) ?? new Set();
    queues.add(queue);
    this.jobQueues.set(jobId, queues);
  }

  private removeQueue(jobId: string, queue: EventQueue): void {
    const queues = this.jobQueues.get(jobId);
    if (!queues) return;
    queues.delete(queue);
    if (queues.size === 0) this.jobQueues.delete(jobId);
    if (!this.closing && this.connected) this.maybeUnsubscribe(jobId).catch(() => {});
  }

  private async ensureSubscribed(jobId: string): Promise<void> {
    if (this.subscribed.has(jobId)) return;
    await this.ask(message("subscribe_job", { job_id: jobId }), "subscription_confirmed", { retry: true });
    if (this.connected) this.subscribed.add(jobId);
  }

  private async maybeUnsubscribe(jobId: string): Promise<void> {
    if (this.jobCallbacks.get(jobId)?.length || this.jobQueues.get(jobId)?.size || !this.subscribed.has(jobId)) return;
    this.subscribed.delete(jobId);
    try {
      await this.ask(message("subscribe_job", { job_id: jobId, enabled: false }), "subscription_confirmed");
    } catch (error) {
      if (!(error instanceof EmpqError)) throw error;
    }
  }

  private removeCallback(jobId: string, callback: JobCallback): void {
    const callbacks = this.jobCallbacks.get(jobId) ?? [];
    const at = callbacks.indexOf(callback);
    if (at >= 0) callbacks.splice(at, 1);
    if (callbacks.length === 0) this.jobCallbacks.delete(jobId);
  }

  // stats and notifications -------------------------------------------------------------------
  /** `callback(update)` with every `stats_update` (every `intervalSeconds`, default 5). Job
   * clients get the counts; monitors with view_system_stats also the per-worker list (D14).
   * A refusal goes to the `onError` callbacks; `watchStats` is the same call, awaitable. */
  subscribeToStats(callback: (stats: SystemStats) => void, options: StatsOptions = {}): void {
    this.watchStats(callback, options).catch((error: unknown) => this.reportFailure("subscribe to stats", error));
  }

  /** `subscribeToStats`, resolved with the hub's `subscription_confirmed`. */
  async watchStats(callback: (stats: SystemStats) => void, options: StatsOptions = {}): Promise<SubscriptionConfirmed> {
    const fields: StatsFields = { enabled: true, interval_seconds: options.intervalSeconds ?? 5 };
    if (options.sections) fields.include_sections = options.sections;
    this.statsCallbacks.push(callback);
    try {
      const reply = await this.ask(message("subscribe_stats", fields), "subscription_confirmed", { retry: true });
      this.statsFields = fields;
      return reply;
    } catch (error) {
      this.statsCallbacks.splice(this.statsCallbacks.indexOf(callback), 1);
      throw error;
    }
  }

  async unsubscribeFromStats(): Promise<void> {
    this.statsCallbacks = [];
    this.statsFields = undefined;
    await this.ask(message("subscribe_stats", { enabled: false }), "subscription_confirmed");
  }

  /** Stats now (`request_stats` → `stats_response`). */
  async requestStats(sections?: StatsSectionList): Promise<Stats> {
    const reply = await this.ask(message("request_stats", sections ? { include_sections: sections } : {}), "stats_response", {
      retry: true,
    });
    return reply.stats;
  }

  /** `callback(event)` for the events of every job the filters match (customer_id, job_types,
   * priority_min, status) that this peer may see (spec D13/D14). */
  async subscribeToNotifications(
    callback: (event: JobEvent) => void,
    filters: JobFilters = {},
  ): Promise<JobNotificationsSubscribed> {
    this.notificationCallbacks.push(callback);
    try {
      const reply = await this.subscribeNotifications(filters);
      this.notificationFilters = filters;
      return reply;
    } catch (error) {
      this.notificationCallbacks.splice(this.notificationCallbacks.indexOf(callback), 1);
      throw error;
    }
  }

  private subscribeNotifications(filters: JobFilters): Promise<JobNotificationsSubscribed> {
    const fields = Object.keys(filters).length ? { enabled: true, filters } : { enabled: true };
    return this.ask(message("subscribe_job_notifications", fields), "job_notifications_subscribed", { retry: true });
  }
}

export type { ErrorMessage, JobEvent, SystemStats };
