/**
 * The names the protocol reference's TypeScript interface uses, as aliases of the types generated
 * from schemas/ (src/generated/protocol.ts), plus that interface itself. Names only: every shape
 * is generated.
 */
import type {
  Error as ErrorFrame,
  JobCancelled,
  JobCompleted,
  JobSubmission,
  JobUpdate,
  StatsUpdate,
} from "./generated/protocol.js";

/** The hub's `error` message (schemas/messages/error.json; generated as `Error`). */
export type ErrorMessage = ErrorFrame;

/** What a stats subscription delivers: `stats_update` (schemas/messages/stats_update.json). */
export type SystemStats = StatsUpdate;

/** What a job subscription delivers: progress and state changes (`job_update`, which also
 * reports failure and timeout), completion (`job_completed`) and cancellation (`job_cancelled`). */
export type JobEvent = JobUpdate | JobCompleted | JobCancelled;

/**
 * The JavaScript/TypeScript client interface of the protocol reference ("Client Libraries"),
 * word for word except that a job subscription's callback receives every kind of job event
 * (the reference names them all `JobUpdate`). `EmpQueueClient` implements it.
 */
export interface EmpQueueClientInterface {
  connect(url: string): Promise<void>;
  disconnect(): void;
  submitJob(job: JobSubmission): Promise<string>;
  subscribeToJob(jobId: string, callback: (update: JobEvent) => void): void;
  subscribeToStats(callback: (stats: SystemStats) => void): void;
  onError(callback: (error: ErrorMessage) => void): void;
}
