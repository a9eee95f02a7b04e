/**
 * The reference's interface end to end, against a real `empq hub` with a Python `empq worker`
 * (simulate connector) running the jobs: a TS client's job run by a Python worker. Every frame the
 * client receives (and sends) validates against schemas/.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import {
  EmpQueueClient,
  HubError,
  JobCancelledError,
  JobFailed,
  type EmpQueueClientInterface,
  type ErrorMessage,
  type JobEvent,
  type JobSubmission,
  type SystemStats,
} from "@empq/client";
import { FrameLog, startHub, startPythonWorker, until, validatingWebSocket, type Hub, type PythonWorker } from "./support.js";

// compile-time: the class has exactly the reference's interface, and JobSubmission is submit_job's
// fields without type and timestamp
const asInterface: EmpQueueClientInterface = new EmpQueueClient();
void asInterface;
// @ts-expect-error job_type is required
const noJobType: JobSubmission = { payload: {} };
void noJobType;

describe("EmpQueueClient (the reference's six methods) with a Python empq worker", () => {
  let hub: Hub;
  let worker: PythonWorker;
  const log = new FrameLog("hub_to_client", "client_to_hub");
  const clients: EmpQueueClient[] = [];

  function newClient(): EmpQueueClient {
    const client = new EmpQueueClient({ WebSocket: validatingWebSocket(log) });
    clients.push(client);
    return client;
  }

  before(async () => {
    hub = await startHub();
    worker = startPythonWorker(hub.url, ["--services", "comfyui"]);
  });

  after(async () => {
    for (const client of clients) await client.close();
    const code = await worker?.stop();
    await hub?.stop();
    assert.equal(code, 0, `empq worker exited with ${code}:\n${worker?.log()}`);
  });

  it("runs a job end to end through connect, submitJob, subscribeToJob, subscribeToStats, onError, disconnect", async () => {
    const client = newClient();
    await client.connect(hub.url);
    const errors: ErrorMessage[] = [];
    client.onError((error) => errors.push(error));
    const stats: SystemStats[] = [];
    client.subscribeToStats((update) => stats.push(update), { intervalSeconds: 1 });

    const job: JobSubmission = {
      job_type: "text_to_image",
      payload: { prompt: "mountains", steps: 3, step_seconds: 0.05 },
      priority: 70,
      requirements: { service_type: "comfyui" },
    };
    const jobId = await client.submitJob(job);
    assert.match(jobId, /^job-[0-9a-f]{32}$/);

    const events: JobEvent[] = [];
    client.subscribeToJob(jobId, (update) => events.push(update));
    await until(() => events.some((e) => e.type === "job_completed"), "job_completed");
    const completed = events.find((e) => e.type === "job_completed");
    assert.ok(completed && completed.type === "job_completed");
    assert.equal(completed.job_id, jobId);
    assert.equal(completed.result.success, true);
    // the simulate connector echoes the payload and names its output after the job
    assert.deepEqual((completed.result.metadata as { echo: unknown }).echo, job.payload);
    assert.deepEqual(completed.result.output_files, [`sim://comfyui/${jobId}/output.png`]);
    // progress came as job_update, in order, for this job only
    const updates = events.filter((e) => e.type === "job_update");
    assert.ok(updates.length > 0, "no job_update");
    assert.ok(events.every((e) => e.job_id === jobId));
    const progress = updates.map((e) => e.progress).filter((p): p is number => typeof p === "number");
    assert.deepEqual(progress, [...progress].sort((a, b) => a - b));
    assert.equal(progress.at(-1), 100);

    await until(() => stats.length > 0, "a stats_update");
    assert.equal(stats[0]!.type, "stats_update");
    assert.ok(typeof stats[0]!.stats.jobs === "object");

    // onError: a subscription the hub refuses (unknown job) reaches the error callbacks
    client.subscribeToJob("job-00000000000000000000000000000000", () => assert.fail("no events for an unknown job"));
    await until(() => errors.length > 0, "the JOB_NOT_FOUND error");
    assert.equal(errors[0]!.type, "error");
    assert.equal(errors[0]!.error_code, "JOB_NOT_FOUND");

    client.disconnect();
    await until(() => !client.connected, "the client to close");
    await assert.rejects(client.submitJob(job), /not connected/);
  });

  it("waits for a job, reads its status, and reports failure and cancellation", async () => {
    const client = newClient();
    await client.connect(hub.url);
    const base = { job_type: "upscale", requirements: { service_type: "comfyui" } };

    const ok = await client.submit({ ...base, payload: { steps: 2, step_seconds: 0.05 } });
    assert.equal(ok.type, "job_accepted");
    const result = await client.waitForJob(ok.job_id, { timeoutMs: 30_000 });
    assert.equal(result.success, true);
    const status = await client.getJobStatus(ok.job_id);
    assert.equal(status.status, "completed");
    assert.equal(status.job_id, ok.job_id);
    // after the fact: the final event is remembered
    assert.equal((await client.waitForJob(ok.job_id)).success, true);

    const failing = await client.submitJob({ ...base, payload: { fail: true, steps: 1, step_seconds: 0.01 }, max_retries: 0 });
    const failure = await client.waitForJob(failing, { timeoutMs: 30_000 }).then(
      () => assert.fail("a failing job resolved"),
      (error: unknown) => error,
    );
    assert.ok(failure instanceof JobFailed, String(failure));
    assert.equal(failure.status, "failed");
    assert.match(failure.message, /simulated failure/);

    // a long job, cancelled while it runs: the client sees job_cancelled, the worker stops it
    const long = await client.submitJob({ ...base, payload: { steps: 200, step_seconds: 0.1 } });
    const events: JobEvent[] = [];
    await client.watchJob(long, (e) => events.push(e));
    await until(() => events.some((e) => e.type === "job_update" && e.status === "in_progress"), "the long job to run");
    const waiting = client.waitForJob(long);
    const cancelled = await client.cancelJob(long, "test says stop");
    assert.equal(cancelled.type, "job_cancelled");
    assert.equal(cancelled.job_id, long);
    await assert.rejects(waiting, (error: unknown) => error instanceof JobCancelledError && error.jobId === long);
    await until(() => events.some((e) => e.type === "job_cancelled"), "job_cancelled on the subscription");
    await until(() => worker.events.some((e) => e.event === "job_cancelled" && e.job_id === long), "the worker to stop the job");
    await assert.rejects(client.cancelJob(long), (error: unknown) => error instanceof HubError && error.code === "INVALID_STATE");

    // jobEvents: an async iterator that ends with the final event
    const last = await client.submitJob({ ...base, payload: { steps: 2, step_seconds: 0.05 } });
    const seen: string[] = [];
    for await (const event of client.jobEvents(last)) seen.push(event.type === "job_update" ? event.status : event.type);
    assert.equal(seen.at(-1), "job_completed");
    await client.close();
  });

  it("received and sent only frames that validate against schemas/", () => {
    assert.ok(log.received.length > 10, `only ${log.received.length} frames received`);
    assert.deepEqual(log.invalid, []);
    for (const type of ["connection_established", "client_registered", "job_accepted", "job_update", "job_completed", "stats_update", "error", "job_cancelled", "response_job_status", "subscription_confirmed"]) {
      assert.ok(log.types("received").includes(type), `no ${type} received`);
    }
  });
});
