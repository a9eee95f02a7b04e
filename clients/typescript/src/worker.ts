/**
 * `EmpWorker`: a worker written in Node (or anywhere with a WebSocket) pulls jobs from the hub and
 * runs them — the Python `EmpWorker`'s behaviour (spec/README.md):
 *
 *     const worker = new EmpWorker({ url: "ws://127.0.0.1:3002", services: ["comfyui"], maxConcurrent: 2 });
 *     worker.handle("text_to_image", async (job, progress) => {
 *       for (let step = 1; step <= 10; step++) {
 *         await doOneStep(job.payload, job.signal);
 *         await progress(step * 10, `step ${step}/10`);
 *       }
 *       return { output_files: ["https://.../image.png"] };      // success defaults to true
 *     });
 *     await worker.run();   // until SIGTERM/SIGINT: then drain (finish, or hand jobs back)
 *
 * - registers with its capabilities (services, components, hardware, `max_concurrent_jobs`,
 *   `chunked_messages`) and heartbeats at the cadence the hub gives (D16);
 * - claims (D10) right after registering and after each job, on `job_available` and on a timer,
 *   never more jobs than its free slots; confirms each with `job_accepted_by_worker`;
 * - runs the handler of the job's type, else of its `requirements.service_type`, else the default
 *   handler; `progress(percent, message)` sends `update_job_progress`; the return value is the
 *   `complete_job` result, a thrown error a `fail_job` (retried by the hub unless
 *   `new JobError(..., { retry: false })`, D12);
 * - when the job is cancelled (`job_cancelled`, D13) or taken back (claim timeout, run limit) it
 *   aborts `job.signal` — a handler that does long work should watch it — ignores the handler's
 *   outcome and frees the slot;
 * - `drain()` (SIGTERM under `run()`): stops claiming (`worker_status` draining), lets running
 *   jobs finish within `drainTimeoutMs`, then sends `disconnect`, which hands any job still
 *   running back to the queue without counting a retry;
 * - when the connection drops it reconnects and registers again with the same worker_id: within
 *   the hub's grace period it keeps its jobs (`resumed_jobs`) and reports results it could not
 *   send while away; jobs the hub no longer gives it are aborted.
 */
import { HubConnection, message, sleep, VERSION, type ConnectionOptions } from "./connection.js";
import { ConnectionLost, EmpqError, HubError, RequestTimeout } from "./errors.js";
import type {
  FromHub,
  Hardware,
  JobAssigned,
  JobResult,
  RegisterWorker,
  Requirements,
  ToHub,
  UpdateJobProgress,
  WorkerCapabilities,
  WorkerHeartbeatAck,
  WorkerRegistered,
} from "./generated/protocol.js";

const GONE_CODES: ReadonlySet<string> = new Set(["NOT_JOB_HOLDER", "JOB_NOT_FOUND"]);
const RELEASED_STATES: ReadonlySet<string> = new Set(["queued", "timeout", "failed", "cancelled", "completed"]);

/** Throw it from a handler to fail the job with `details`; `retry: false` fails it for good. */
export class JobError extends Error {
  override name = "JobError";
  readonly retry: boolean;
  readonly details: Record<string, unknown>;
  constructor(message: string, options: { retry?: boolean; details?: Record<string, unknown> } = {}) {
    super(message);
    this.retry = options.retry ?? true;
    this.details = options.details ?? {};
  }
}

/** The hub no longer gives this job to this worker (cancelled, timed out, requeued). */
export class JobGone extends EmpqError {
  override name = "JobGone";
}

/** INVALID_STATE: the job is already past what the message asks (e.g. completed by an earlier
 * attempt whose reply the dropped connection lost). */
class Past extends EmpqError {
  constructor(readonly status: string | undefined) {
    super(`job is ${status}`);
  }
}

export type ProgressFields = Pick<UpdateJobProgress, "current_step" | "estimated_completion" | "connector_details">;
/** Report progress (0-100); resolves once the hub acknowledged it (never rejects). */
export type Progress = (percent: number, message?: string, fields?: ProgressFields) => Promise<void>;
export type HandlerResult = JobResult | Record<string, unknown> | undefined | void;
export type Handler = (job: Job, progress: Progress) => Promise<HandlerResult> | HandlerResult;

export type WorkerEventName =
  | "registered"
  | "reconnected"
  | "disconnected"
  | "job_started"
  | "job_completed"
  | "job_failed"
  | "job_cancelled"
  | "job_lost"
  | "draining"
  | "stopped";
export type WorkerEventCallback = (event: WorkerEventName, info: Record<string, unknown>) => void;

/** A flag to wait on (asyncio.Event): `set` wakes every waiter until `clear`. */
class Flag {
  private isSet = false;
  private waiters = new Set<() => void>();

  set(): void {
    this.isSet = true;
    for (const wake of this.waiters) wake();
    this.waiters.clear();
  }

  clear(): void {
    this.isSet = false;
  }

  /** Resolves true when set, false after `timeoutMs` or when `stop` aborts. */
  wait(timeoutMs: number, stop?: AbortSignal): Promise<boolean> {
    if (this.isSet) return Promise.resolve(true);
    return new Promise((resolve) => {
      const done = (value: boolean): void => {
        clearTimeout(timer);
        this.waiters.delete(wake);
        stop?.removeEventListener("abort", aborted);
        resolve(value);
      };
      const wake = (): void => done(true);
      const aborted = (): void => done(false);
      const timer = setTimeout(() => done(false), Math.max(0, timeoutMs));
      this.waiters.add(wake);
      stop?.addEventListener("abort", aborted, { once: true });
    });
  }
}

/** One job in this worker's hands: the `job_assigned` message and what the worker tracks. */
export class Job {
  state: "assigned" | "running" | "reporting" = "assigned";
  /** The hub took it back (cancelled, timed out, released while away). */
  lost = false;
  lostReason: string | undefined;
  started = 0;
  readonly sending = new Set<Promise<void>>(); // progress reports in flight
  private readonly controller = new AbortController();

  constructor(
    readonly assignment: JobAssigned,
    private readonly worker: EmpWorker,
  ) {}

  get jobId(): string {
    return this.assignment.job_id;
  }
  get jobType(): string {
    return this.assignment.job_type;
  }
  get payload(): Record<string, unknown> {
    return this.assignment.payload;
  }
  get priority(): number {
    return this.assignment.priority;
  }
  get requirements(): Requirements | undefined {
    return this.assignment.requirements;
  }
  get service(): string | undefined {
    return this.assignment.requirements?.service_type;
  }
  get customerId(): string | undefined {
    return this.assignment.customer_id;
  }
  get retryCount(): number {
    return this.assignment.retry_count ?? 0;
  }
  get maxRetries(): number | undefined {
    return this.assignment.max_retries;
  }
  /** Aborted when the job is cancelled or taken back: stop working on it. */
  get signal(): AbortSignal {
    return this.controller.signal;
  }

  /** Report progress (`update_job_progress`); resolves once acknowledged (never rejects). */
  progress: Progress = (percent, text, fields) => {
    const sent = this.worker.sendProgress(this, percent, text, fields);
    this.sending.add(sent);
    void sent.finally(() => this.sending.delete(sent));
    return sent;
  };

  /** @internal */
  abort(reason: string): void {
    this.controller.abort(new JobGone(reason));
  }
}

export interface WorkerOptions extends ConnectionOptions {
  /** Stable id; keep it to resume jobs after a reconnect (default: a fresh one). */
  workerId?: string;
  /** Service types this worker runs (D8); at least one. */
  services: string[];
  components?: string[];
  hardware?: Hardware;
  /** Jobs at once (default 1). */
  maxConcurrent?: number;
  /** The default handler (for jobs no `handle()` registration matches). */
  handler?: Handler;
  allowedCustomers?: string[];
  preferredTypes?: string[];
  /** Between claims when idle and not told of a job (default 5000). */
  claimIntervalMs?: number;
  /** Ask the hub for this claim timeout (D10). */
  claimTimeoutMs?: number;
  /** How long a drain waits for running jobs before handing them back (default 30000). */
  drainTimeoutMs?: number;
  /** How long a result waits (across reconnects) to reach the hub (default 120000). */
  reportTimeoutMs?: number;
  subscribeToJobs?: boolean;
  /** More capability fields (D8 matching ignores unknown ones). */
  capabilities?: Record<string, unknown>;
}

function isNode(): boolean {
  return typeof (globalThis as { process?: { versions?: { node?: string } } }).process?.versions?.node === "string";
}

type OsModule = { loadavg(): number[]; cpus(): unknown[]; totalmem(): number; freemem(): number };
let nodeOs: Promise<OsModule | undefined> | undefined;

function loadOs(): Promise<OsModule | undefined> {
  const specifier = "node:os";
  nodeOs ??= isNode() ? import(/* @vite-ignore */ specifier).catch(() => undefined) : Promise.resolve(undefined);
  return nodeOs;
}

export class EmpWorker extends HubConnection {
  readonly workerId: string;
  readonly maxConcurrent: number;
  readonly capabilities: WorkerCapabilities;
  readonly preferredTypes: string[] | undefined;
  readonly claimIntervalMs: number;
  readonly claimTimeoutMs: number | undefined;
  readonly drainTimeoutMs: number;
  readonly reportTimeoutMs: number;
  readonly subscribeToJobs: boolean;
  registration: WorkerRegistered | undefined;
  /** Milliseconds; the hub's value once registered. */
  heartbeatIntervalMs = 20_000;
  readonly jobs = new Map<string, Job>();
  /** completed, failed, cancelled, lost, handed_back. */
  readonly counts: Record<string, number> = { completed: 0, failed: 0, cancelled: 0, lost: 0, handed_back: 0 };
  draining = false;
  /** Resolves when the worker has stopped. */
  readonly stopped: Promise<void>;

  private byType = new Map<string, Handler>();
  private byService = new Map<string, Handler>();
  private defaultHandler: Handler | undefined;
  private eventCallbacks: WorkerEventCallback[] = [];
  private wake = new Flag();
  private jobsChanged = new Flag();
  private loops: Promise<void>[] = [];
  private stopLoops = new AbortController();
  private stopping = false;
  private markStopped!: () => void;
  private startedAt = Date.now();
  private os: OsModule | undefined;

  constructor(options: WorkerOptions) {
    super(options, "worker");
    const maxConcurrent = options.maxConcurrent ?? 1;
    if (!Number.isInteger(maxConcurrent) || maxConcurrent < 1) throw new RangeError("maxConcurrent must be at least 1");
    const [first, ...rest] = options.services ?? [];
    if (first === undefined) throw new RangeError("a worker needs at least one service");
    this.workerId = options.workerId ?? `worker-ts-${Math.random().toString(16).slice(2, 10)}`;
    this.maxConcurrent = maxConcurrent;
    this.capabilities = {
      ...options.capabilities,
      services: [first, ...rest],
      max_concurrent_jobs: maxConcurrent,
      chunked_messages: true,
      ...(options.components ? { components: options.components } : {}),
      ...(options.hardware ? { hardware: options.hardware } : {}),
      ...(options.allowedCustomers ? { allowed_customers: options.allowedCustomers } : {}),
    };
    this.defaultHandler = options.handler;
    this.preferredTypes = options.preferredTypes;
    this.claimIntervalMs = options.claimIntervalMs ?? 5_000;
    this.claimTimeoutMs = options.claimTimeoutMs;
    this.drainTimeoutMs = options.drainTimeoutMs ?? 30_000;
    this.reportTimeoutMs = options.reportTimeoutMs ?? 120_000;
    this.subscribeToJobs = options.subscribeToJobs ?? true;
    this.stopped = new Promise((resolve) => (this.markStopped = resolve));
  }

  // handlers ----------------------------------------------------------------------------------
  /** Run jobs of `jobType` with `fn`. */
  handle(jobType: string, fn: Handler): this {
    this.byType.set(jobType, fn);
    return this;
  }

  /** Run jobs whose `requirements.service_type` is `service` with `fn` (when no job type matches). */
  handleService(service: string, fn: Handler): this {
    this.byService.set(service, fn);
    return this;
  }

  /** The handler of every other job. */
  handleDefault(fn: Handler): this {
    this.defaultHandler = fn;
    return this;
  }

  handlerFor(job: Job): Handler | undefined {
    return (
      this.byType.get(job.jobType) ?? (job.service !== undefined ? this.byService.get(job.service) : undefined) ?? this.defaultHandler
    );
  }

  /** `callback(event, info)` for what the worker does: registered, reconnected, disconnected,
   * job_started, job_completed, job_failed, job_cancelled, job_lost, draining, stopped. */
  on(callback: WorkerEventCallback): this {
    this.eventCallbacks.push(callback);
    return this;
  }

  private emit(event: WorkerEventName, info: Record<string, unknown> = {}): void {
    for (const callback of this.eventCallbacks) this.call(callback, event, info);
  }

  /** Slots free for new jobs (0 while draining or stopping). */
  get free(): number {
    return this.draining || this.stopping ? 0 : Math.max(0, this.maxConcurrent - this.jobs.size);
  }

  // lifecycle ---------------------------------------------------------------------------------
  /** Connect and register, start heartbeating and claiming. */
  async start(url?: string): Promise<void> {
    this.startedAt = Date.now();
    this.os = await loadOs();
    await this.connect(url);
    const stop = this.stopLoops.signal;
    this.loops = [this.claimLoop(stop), this.heartbeatLoop(stop)].map((loop) =>
      loop.catch((error: unknown) => this.logger.error("a worker loop failed", error)),
    );
    await this.announce();
  }

  /** `start`, then work until stopped; in Node SIGTERM/SIGINT drain (a second one stops at once). */
  async run(url?: string, options: { handleSignals?: boolean } = {}): Promise<void> {
    await this.start(url);
    const proc = (globalThis as { process?: NodeJS.Process }).process;
    const signals = options.handleSignals !== false && isNode() && proc ? (["SIGTERM", "SIGINT"] as const) : [];
    let draining = false;
    const onSignal = (signal: NodeJS.Signals): void => {
      if (!draining) {
        draining = true;
        this.logger.info(`${signal}: draining (finishing running jobs, up to ${this.drainTimeoutMs} ms)`);
        void this.drain();
      } else {
        this.logger.info(`${signal} again: stopping now, handing running jobs back`);
        void this.stop();
      }
    };
    for (const signal of signals) proc!.on(signal, onSignal);
    try {
      await this.stopped;
    } finally {
      for (const signal of signals) proc!.off(signal, onSignal);
    }
  }

  /** Stop claiming, let running jobs finish (up to `timeoutMs`, default `drainTimeoutMs`), then
   * `stop` — which hands back whatever is still running. */
  async drain(timeoutMs = this.drainTimeoutMs): Promise<void> {
    if (!this.draining) {
      this.draining = true;
      this.wake.set();
      this.emit("draining", { running: [...this.jobs.keys()].sort(), timeout_ms: timeoutMs });
      if (this.connected) {
        const status = message("worker_status", { worker_id: this.workerId, status: "draining", available_slots: 0 });
        await this.ask(status, "ack", { timeoutMs: Math.min(this.requestTimeoutMs, 5000) }).catch(() => {});
      }
    }
    const deadline = Date.now() + timeoutMs;
    while (this.jobs.size > 0 && Date.now() < deadline) {
      this.jobsChanged.clear();
      await this.jobsChanged.wait(deadline - Date.now());
    }
    await this.stop(this.jobs.size === 0 ? "worker drained" : "drain timeout: handing jobs back");
  }

  /** Stop at once: `disconnect` (the hub requeues held jobs without counting a retry, D16),
   * abort running handlers. */
  async stop(reason = "worker shutdown"): Promise<void> {
    if (this.stopping) return this.stopped;
    this.stopping = true;
    this.stopLoops.abort();
    const handedBack = [...this.jobs.values()].filter((job) => !job.lost);
    for (const job of handedBack) {
      job.lost = true;
      job.lostReason = "handed back (worker stopping)";
      job.abort(job.lostReason);
    }
    await this.shutdown(message("disconnect", { reason, cleanup_subscriptions: true }));
    await Promise.all(this.loops);
    this.jobs.clear();
    this.counts.handed_back! += handedBack.length;
    this.emit("stopped", { reason, handed_back: handedBack.map((job) => job.jobId) });
    this.markStopped();
  }

  // registration ------------------------------------------------------------------------------
  protected override registerMessage(): RegisterWorker {
    return message("register_worker", {
      worker_id: this.workerId,
      capabilities: this.capabilities,
      subscribe_to_jobs: this.subscribeToJobs,
      status: this.draining ? "draining" : "idle",
      version: VERSION,
      ...(this.token ? { auth_token: this.token } : {}),
    });
  }

  protected override registered(reply: FromHub, first: boolean): void {
    if (reply.type !== "worker_registered") throw new EmpqError(`unexpected reply ${reply.type} to register_worker`);
    this.registration = reply;
    if (reply.heartbeat_interval) this.heartbeatIntervalMs = reply.heartbeat_interval;
    const resumed = new Set(reply.resumed_jobs ?? []);
    for (const job of [...this.jobs.values()]) {
      if (!resumed.has(job.jobId)) this.lose(job, "released by the hub while the worker was away");
    }
    for (const jobId of [...resumed].sort()) {
      // held by this worker id but unknown here (this process restarted): give it back
      if (!this.jobs.has(jobId)) void this.failUnknown(jobId);
    }
    this.emit(first ? "registered" : "reconnected", {
      url: this.url,
      worker_id: this.workerId,
      heartbeat_interval_ms: this.heartbeatIntervalMs,
      resumed_jobs: [...resumed].sort(),
    });
  }

  protected override async resumed(): Promise<void> {
    await this.announce();
  }

  protected override lost(): void {
    if (!this.stopping) this.emit("disconnected", { url: this.url });
  }

  protected override gone(): void {
    // closed for good without stop(): e.g. AUTH_FAILED on reconnect
    if (!this.stopping) void this.stop("connection closed for good");
  }

  /** After (re)registering: a heartbeat, a claim. */
  private async announce(): Promise<void> {
    await this.heartbeat().catch(() => {});
    this.wake.set();
  }

  // frames from the hub -----------------------------------------------------------------------
  protected override received(frame: FromHub): void {
    if (frame.type === "job_assigned") this.assigned(frame);
    else if (frame.type === "job_available") this.wake.set();
    else if (frame.type === "job_cancelled") {
      const job = this.jobs.get(frame.job_id);
      if (job) {
        this.counts.cancelled! += 1;
        this.lose(job, frame.reason ? `cancelled: ${frame.reason}` : "cancelled", "job_cancelled");
      }
    } else if (frame.type === "job_update") {
      const job = this.jobs.get(frame.job_id);
      if (job && RELEASED_STATES.has(frame.status)) {
        this.lose(job, frame.message ?? frame.error ?? `job is ${frame.status} now`);
      }
    }
  }

  private assigned(frame: JobAssigned): void {
    if (this.jobs.has(frame.job_id)) return;
    const job = new Job(frame, this);
    this.jobs.set(frame.job_id, job);
    this.pulse();
    void this.runJob(job);
  }

  private lose(job: Job, reason: string, event: WorkerEventName = "job_lost"): void {
    if (job.lost) return;
    job.lost = true;
    job.lostReason = reason;
    if (event === "job_lost") this.counts.lost! += 1;
    this.emit(event, { job_id: job.jobId, reason });
    if (job.state !== "reporting") {
      job.abort(reason);
      if (this.jobs.get(job.jobId) === job) this.jobs.delete(job.jobId); // the slot is free now
      this.pulse();
      this.wake.set();
    }
  }

  private pulse(): void {
    this.jobsChanged.set();
  }

  // claiming ----------------------------------------------------------------------------------
  private async claimLoop(stop: AbortSignal): Promise<void> {
    while (!this.draining && !stop.aborted) {
      await this.wake.wait(this.claimIntervalMs, stop);
      this.wake.clear();
      while (this.free > 0 && this.connected && !this.draining && !stop.aborted) {
        const want = Math.min(this.free, 100);
        let got: number;
        try {
          got = await this.claim(want);
        } catch (error) {
          this.logger.debug(`claim failed: ${(error as Error).message}`);
          break;
        }
        if (got < want) break;
      }
    }
  }

  /** One `claim_job`; resolves with how many jobs were assigned (each is started at once). */
  async claim(maxJobs: number): Promise<number> {
    const claim = message("claim_job", {
      worker_id: this.workerId,
      max_jobs: maxJobs,
      current_load: Math.round((this.jobs.size / this.maxConcurrent) * 1000) / 1000,
      available_resources: { concurrent_slots: this.free },
      ...(this.preferredTypes ? { preferred_types: this.preferredTypes } : {}),
      ...(this.claimTimeoutMs ? { claim_timeout: this.claimTimeoutMs } : {}),
    });
    const assigned = (frames: FromHub[]): number => frames.filter((f) => f.type === "job_assigned").length;
    const frames = await this.request(claim, {
      doneWhen: (got) => got[got.length - 1]?.type === "ack" || assigned(got) >= maxJobs,
    });
    return assigned(frames);
  }

  // running a job -----------------------------------------------------------------------------
  private async runJob(job: Job): Promise<void> {
    try {
      try {
        await this.report(job, message("job_accepted_by_worker", { job_id: job.jobId, worker_id: this.workerId }), "ack");
      } catch (error) {
        // accepted by an attempt whose reply a dropped connection lost
        if (!(error instanceof Past)) throw error;
        if (error.status !== "accepted" && error.status !== "in_progress") throw new JobGone(error.message);
      }
      if (job.lost) return;
      const handler = this.handlerFor(job);
      job.state = "running";
      job.started = Date.now();
      this.emit("job_started", {
        job_id: job.jobId,
        job_type: job.jobType,
        priority: job.priority,
        retry_count: job.retryCount,
      });
      if (!handler) {
        const error = new JobError(`no handler for job type ${job.jobType} (service ${job.service})`, { retry: false });
        await this.fail(job, error, 0);
        return;
      }
      let result: HandlerResult;
      try {
        result = await handler(job, job.progress);
      } catch (error) {
        if (!job.lost) await this.fail(job, error, this.elapsed(job));
        return;
      }
      if (!job.lost) await this.complete(job, result, this.elapsed(job));
    } catch (error) {
      if (error instanceof JobGone) this.lose(job, error.message);
      else if (error instanceof EmpqError) this.logger.warn(`job ${job.jobId}: could not report to the hub: ${error.message}`);
      else this.logger.error(`job ${job.jobId}: worker error`, error);
    } finally {
      if (this.jobs.get(job.jobId) === job) this.jobs.delete(job.jobId);
      this.pulse();
      this.wake.set();
    }
  }

  private elapsed(job: Job): number {
    return (Date.now() - job.started) / 1000;
  }

  /** Progress reports still in flight go before the outcome (the hub refuses them after). */
  private async flushProgress(job: Job): Promise<void> {
    if (job.sending.size) await Promise.race([Promise.all(job.sending), sleep(this.requestTimeoutMs)]);
  }

  private async complete(job: Job, result: HandlerResult, elapsed: number): Promise<void> {
    if (result !== undefined && (result === null || typeof result !== "object" || Array.isArray(result))) {
      await this.fail(job, new JobError(`the handler returned ${JSON.stringify(result)}, not an object`, { retry: false }), elapsed);
      return;
    }
    const body = { success: true, ...(result ?? {}) } as JobResult;
    if (typeof body.success !== "boolean") {
      await this.fail(job, new JobError("the handler's result has a success that is not a boolean", { retry: false }), elapsed);
      return;
    }
    const msg = message("complete_job", {
      job_id: job.jobId,
      worker_id: this.workerId,
      result: body,
      processing_time: Math.round(elapsed * 1e6) / 1e6,
    });
    await this.flushProgress(job);
    job.state = "reporting";
    try {
      await this.report(job, msg, "job_completed_ack");
    } catch (error) {
      if (!(error instanceof Past)) throw error;
    }
    this.counts.completed! += 1;
    this.emit("job_completed", { job_id: job.jobId, job_type: job.jobType, processing_time: elapsed });
  }

  private async fail(job: Job, error: unknown, elapsed: number): Promise<void> {
    const err = error instanceof Error ? error : new Error(String(error));
    const retry = err instanceof JobError ? err.retry : true;
    const details: Record<string, unknown> = { error_type: err.name };
    if (err instanceof JobError) Object.assign(details, err.details);
    else if (err.stack) details.traceback = err.stack.slice(-2000);
    const text = (err.message || err.name).slice(0, 2000);
    const msg = message("fail_job", {
      job_id: job.jobId,
      worker_id: this.workerId,
      error: text,
      retry,
      error_details: details,
      processing_time: Math.round(elapsed * 1e6) / 1e6,
    });
    await this.flushProgress(job);
    job.state = "reporting";
    let ack: Extract<FromHub, { type: "job_failed_ack" }> | undefined;
    try {
      ack = await this.report(job, msg, "job_failed_ack");
    } catch (e) {
      if (!(e instanceof Past)) throw e;
    }
    this.counts.failed! += 1;
    this.emit("job_failed", {
      job_id: job.jobId,
      job_type: job.jobType,
      error: text,
      retry_scheduled: Boolean(ack?.retry_scheduled),
      retry_delay: ack?.retry_delay,
    });
  }

  /** Send a job message until the hub answers, across reconnects (within `reportTimeoutMs`).
   * `Past` when the hub says the job is already past it (INVALID_STATE); `JobGone` when the job
   * is no longer this worker's. */
  private async report<K extends "ack" | "job_completed_ack" | "job_failed_ack">(
    job: Job | undefined,
    msg: ToHub,
    reply: K,
  ): Promise<Extract<FromHub, { type: K }>> {
    const deadline = Date.now() + this.reportTimeoutMs;
    for (;;) {
      if (job && job.lost && job.state !== "reporting") throw new JobGone(job.lostReason ?? "job taken back");
      try {
        const timeoutMs = Math.max(1, Math.min(this.requestTimeoutMs, deadline - Date.now()));
        return await this.ask(msg, reply, { timeoutMs });
      } catch (error) {
        if (error instanceof HubError) {
          if (GONE_CODES.has(error.code)) throw new JobGone(`the hub says ${error.code} for ${msg.job_id}`);
          if (error.code === "INVALID_STATE") throw new Past(error.details.status as string | undefined);
          if (error.code !== "SERVICE_UNAVAILABLE" || Date.now() >= deadline) throw error;
          await sleep(200);
        } else if (error instanceof ConnectionLost || error instanceof RequestTimeout) {
          if (this.stopping || Date.now() >= deadline) throw error;
          await sleep(50);
        } else throw error;
      }
    }
  }

  private async failUnknown(jobId: string): Promise<void> {
    const msg = message("fail_job", {
      job_id: jobId,
      worker_id: this.workerId,
      error: "the worker restarted and lost this job",
      retry: true,
      error_details: { error_type: "WorkerRestarted" },
    });
    await this.report(undefined, msg, "job_failed_ack").catch(() => {});
    this.emit("job_lost", { job_id: jobId, reason: "unknown to this process: handed back with fail_job" });
  }

  /** @internal `Job.progress` */
  async sendProgress(job: Job, percent: number, text?: string, fields: ProgressFields = {}): Promise<void> {
    if (job.lost || this.stopping) return;
    const msg = message("update_job_progress", {
      job_id: job.jobId,
      worker_id: this.workerId,
      progress: Math.max(0, Math.min(100, Number(percent))),
      ...Object.fromEntries(Object.entries(fields).filter(([, v]) => v !== undefined)),
      ...(text !== undefined ? { message: text } : {}),
    });
    try {
      await this.ask(msg, "ack");
    } catch (error) {
      if (error instanceof HubError && GONE_CODES.has(error.code)) {
        if (job.state === "running" && this.jobs.get(job.jobId) === job) this.lose(job, `the hub says ${error.code}`);
      } else this.logger.debug(`progress of ${job.jobId} not acknowledged: ${(error as Error).message}`);
    }
  }

  // heartbeats --------------------------------------------------------------------------------
  private async heartbeatLoop(stop: AbortSignal): Promise<void> {
    while (!stop.aborted) {
      await sleep(this.heartbeatIntervalMs, stop);
      if (stop.aborted) return;
      if (this.connected) {
        await this.heartbeat().catch((error: Error) => this.logger.debug(`heartbeat not acknowledged: ${error.message}`));
      }
    }
  }

  private heartbeat(): Promise<WorkerHeartbeatAck> {
    const running = [...this.jobs.values()].filter((job) => !job.lost).map((job) => job.jobId).sort();
    const status = this.draining ? "draining" : running.length >= this.maxConcurrent ? "busy" : "idle";
    const msg = message("worker_heartbeat", {
      worker_id: this.workerId,
      status,
      load: Math.round(Math.min(1, running.length / this.maxConcurrent) * 1000) / 1000,
      current_jobs: running,
      system_info: this.systemInfo(),
    });
    return this.ask(msg, "worker_heartbeat_ack", {
      timeoutMs: Math.min(this.requestTimeoutMs, Math.max(1000, this.heartbeatIntervalMs)),
    });
  }

  private systemInfo(): Record<string, number> {
    const info: Record<string, number> = { uptime: (Date.now() - this.startedAt) / 1000 };
    const os = this.os;
    if (os) {
      const cpus = Math.max(1, os.cpus().length);
      info.cpu_usage = Math.round(Math.min(100, ((os.loadavg()[0] ?? 0) / cpus) * 100) * 10) / 10;
      info.memory_usage = Math.round((1 - os.freemem() / os.totalmem()) * 1000) / 10;
    }
    return info;
  }
}
