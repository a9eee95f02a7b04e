/**
 * EmpWorker against a real `empq hub`: a Python client's job (`empq submit --wait`) run by a TS
 * worker, progress, completion, failure with and without retry, cancellation, heartbeats,
 * concurrency, drain. Every frame the worker receives and sends validates against schemas/.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { EmpQueueClient, EmpWorker, JobError, JobFailed, JobGone, type Job } from "@empq/client";
import { FrameLog, runEmpq, startHub, until, validatingWebSocket, type Hub } from "./support.js";

describe("EmpWorker", () => {
  let hub: Hub;
  let worker: EmpWorker;
  let client: EmpQueueClient;
  const workerLog = new FrameLog("hub_to_worker", "worker_to_hub");
  const clientLog = new FrameLog("hub_to_client", "client_to_hub");
  const started: Job[] = [];
  const release = new Map<string, () => void>(); // job id -> let its handler finish
  const aborted: Array<{ jobId: string; reason: unknown }> = [];

  before(async () => {
    hub = await startHub({ env: { EMPQ_HEARTBEAT_INTERVAL_MS: "200" } });
    worker = new EmpWorker({
      url: hub.url,
      services: ["comfyui"],
      maxConcurrent: 2,
      // claims come from job_available and finished jobs: the timer alone would be too slow here
      claimIntervalMs: 60_000,
      WebSocket: validatingWebSocket(workerLog),
    });
    worker.handle("caption", async (job, progress) => {
      await progress(50, "half way");
      return { output_files: [`file://${job.jobId}.txt`], caption: `a caption of ${String(job.payload.image)}` };
    });
    worker.handle("flaky", (job) => {
      if (job.retryCount === 0) throw new Error("first attempt fails");
      return { attempt: job.retryCount };
    });
    worker.handle("broken", () => {
      throw new JobError("input is unusable", { retry: false, details: { field: "image" } });
    });
    worker.handle("held", async (job) => {
      started.push(job);
      // runs until the test releases it, or the job is taken away (job.signal)
      await new Promise<void>((resolve, reject) => {
        release.set(job.jobId, resolve);
        job.signal.addEventListener("abort", () => {
          aborted.push({ jobId: job.jobId, reason: job.signal.reason });
          reject(job.signal.reason as Error);
        });
      });
      return { held: true };
    });
    await worker.start();
    client = new EmpQueueClient({ url: hub.url, WebSocket: validatingWebSocket(clientLog) });
    await client.connect();
  });

  after(async () => {
    await client?.close();
    await worker?.stop();
    await hub?.stop();
  });

  it("runs a Python client's job (empq submit --wait)", async () => {
    const run = await runEmpq([
      "submit",
      "--hub",
      hub.url,
      "--job-type",
      "caption",
      "--service",
      "comfyui",
      "--payload",
      '{"image": "cat.png"}',
      "--wait",
      "--wait-timeout",
      "30",
      "--json",
    ]);
    assert.equal(run.code, 0, run.stderr);
    const outcome = JSON.parse(run.stdout.trim().split("\n").at(-1)!) as {
      job_id: string;
      status: string;
      result: Record<string, unknown>;
    };
    assert.equal(outcome.status, "completed");
    assert.equal(outcome.result.success, true);
    assert.equal(outcome.result.caption, "a caption of cat.png");
    assert.deepEqual(outcome.result.output_files, [`file://${outcome.job_id}.txt`]);
    assert.ok(workerLog.sent.some((f) => f.type === "update_job_progress" && f.job_id === outcome.job_id && f.progress === 50));
  });

  it("tells a monitor's notification subscription about the jobs its filters match", async () => {
    const monitorLog = new FrameLog("hub_to_monitor", "client_to_hub");
    const monitor = new EmpQueueClient({
      url: hub.url,
      clientType: "monitor",
      permissions: ["view_all_jobs", "view_system_stats"],
      WebSocket: validatingWebSocket(monitorLog),
    });
    await monitor.connect();
    try {
      const seen: Array<[string, string]> = [];
      const confirmed = await monitor.subscribeToNotifications((e) => seen.push([e.type, e.job_id]), { job_types: ["caption"] });
      assert.equal(confirmed.type, "job_notifications_subscribed");
      const other = await client.submitJob({ job_type: "flaky", payload: {}, requirements: { service_type: "comfyui" } });
      const jobId = await client.submitJob({ job_type: "caption", payload: { image: "dog.png" }, requirements: { service_type: "comfyui" } });
      await client.waitForJob(other, { timeoutMs: 30_000 });
      await client.waitForJob(jobId, { timeoutMs: 30_000 });
      await until(() => seen.some(([type, id]) => type === "job_completed" && id === jobId), "the monitor to hear of the completion");
      assert.ok(seen.every(([, id]) => id === jobId), "an event of a job the filter does not match");
      assert.ok(monitorLog.types("received").includes("system_status"));
      assert.deepEqual(monitorLog.invalid, []);
      assert.ok((await monitor.ping()) >= 0);
    } finally {
      await monitor.close();
    }
  });

  it("retries a failed job, and fails for good with JobError({ retry: false })", async () => {
    const flaky = await client.submitJob({ job_type: "flaky", payload: {}, requirements: { service_type: "comfyui" } });
    assert.deepEqual(await client.waitForJob(flaky, { timeoutMs: 30_000 }), { success: true, attempt: 1 });
    assert.equal((await client.getJobStatus(flaky)).retry_count, 1);

    const broken = await client.submitJob({ job_type: "broken", payload: {}, requirements: { service_type: "comfyui" } });
    const error = await client.waitForJob(broken, { timeoutMs: 30_000 }).catch((e: unknown) => e);
    assert.ok(error instanceof JobFailed, String(error));
    assert.equal(error.error, "input is unusable");
    const fail = workerLog.sent.find((f) => f.type === "fail_job" && f.job_id === broken);
    assert.equal(fail?.retry, false);
    assert.deepEqual(fail?.error_details, { error_type: "JobError", field: "image" });
  });

  it("fails a job it has no handler for, without retry", async () => {
    const orphan = await client.submitJob({ job_type: "nobody-handles-this", payload: {}, requirements: { service_type: "comfyui" } });
    const error = await client.waitForJob(orphan, { timeoutMs: 30_000 }).catch((e: unknown) => e);
    assert.ok(error instanceof JobFailed, String(error));
    assert.match(error.message, /no handler for job type nobody-handles-this/);
  });

  it("runs up to maxConcurrent jobs at once and aborts a cancelled one", async () => {
    const first = await client.submitJob({ job_type: "held", payload: { n: 1 }, requirements: { service_type: "comfyui" } });
    const second = await client.submitJob({ job_type: "held", payload: { n: 2 }, requirements: { service_type: "comfyui" } });
    await until(() => started.length === 2, "two held jobs running at once");
    assert.equal(worker.free, 0);

    await client.cancelJob(first, "no longer needed");
    await until(() => aborted.some((a) => a.jobId === first), "the cancelled job's signal");
    const reason = aborted.find((a) => a.jobId === first)!.reason;
    assert.ok(reason instanceof JobGone);
    assert.match(reason.message, /cancelled: no longer needed/);
    assert.equal(worker.counts.cancelled, 1);
    await until(() => worker.free === 1, "the cancelled job's slot to free");

    release.get(second)!();
    assert.deepEqual(await client.waitForJob(second, { timeoutMs: 30_000 }), { success: true, held: true });
    // the cancelled job's handler outcome (a rejection) was not reported
    assert.ok(!workerLog.sent.some((f) => (f.type === "fail_job" || f.type === "complete_job") && f.job_id === first));
  });

  it("heartbeats at the hub's cadence", async () => {
    assert.equal(worker.heartbeatIntervalMs, 200);
    const before = workerLog.types("sent").filter((t) => t === "worker_heartbeat").length;
    await until(
      () => workerLog.types("received").filter((t) => t === "worker_heartbeat_ack").length >= before + 2,
      "two more heartbeat acks",
    );
    const beat = workerLog.sent.filter((f) => f.type === "worker_heartbeat").at(-1)!;
    assert.equal(beat.worker_id, worker.workerId);
    assert.ok(["idle", "busy"].includes(String(beat.status)));
  });

  it("drains: finishes the running job, claims nothing more, then stops", async () => {
    const running = await client.submitJob({ job_type: "held", payload: { n: 3 }, requirements: { service_type: "comfyui" } });
    await until(() => started.some((job) => job.jobId === running), "the job to run");
    const drained = worker.drain(30_000);
    await until(() => workerLog.sent.some((f) => f.type === "worker_status" && f.status === "draining"), "worker_status draining");
    const queued = await client.submitJob({ job_type: "caption", payload: {}, requirements: { service_type: "comfyui" } });
    release.get(running)!();
    await drained;
    await worker.stopped;
    assert.equal((await client.getJobStatus(running)).status, "completed");
    assert.equal((await client.getJobStatus(queued)).status, "queued");
    assert.equal(workerLog.sent.at(-1)?.type, "disconnect");
  });

  it("received and sent only frames that validate against schemas/", () => {
    assert.deepEqual(workerLog.invalid, []);
    assert.deepEqual(clientLog.invalid, []);
    for (const type of ["connection_established", "worker_registered", "job_available", "job_assigned", "ack", "job_completed_ack", "job_failed_ack", "job_cancelled", "worker_heartbeat_ack"]) {
      assert.ok(workerLog.types("received").includes(type), `the worker received no ${type}`);
    }
    for (const type of ["register_worker", "claim_job", "job_accepted_by_worker", "update_job_progress", "complete_job", "fail_job", "worker_heartbeat", "worker_status", "disconnect"]) {
      assert.ok(workerLog.types("sent").includes(type), `the worker sent no ${type}`);
    }
  });
});
