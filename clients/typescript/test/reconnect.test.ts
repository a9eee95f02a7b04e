/**
 * Dropped connections, through a TCP proxy the test cuts, against a real `empq hub`:
 * - a submission whose reply was lost with its connection is sent again with the same
 *   idempotency_key on the next connection, and the hub applies it once (spec D18);
 * - a job subscription is renewed after a reconnect, and a job that ended while the client was
 *   away is reported on re-subscription (D14);
 * - a worker that loses its connection mid-job reconnects with the same worker_id, keeps the job
 *   (resumed_jobs, D16) and reports the result it could not send while away;
 * - a client outlives a hub restart: `server_disconnect` (D17), reconnect to the new hub process,
 *   subscriptions renewed, the job it waits on finishes.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { EmpQueueClient, EmpWorker, type Job } from "@empq/client";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { FrameLog, freePort, startHub, startProxy, until, validatingWebSocket, type Hub, type Proxy } from "./support.js";

describe("reconnecting", () => {
  let hub: Hub;
  const proxies: Proxy[] = [];
  const peers: Array<EmpQueueClient | EmpWorker> = [];
  const clientLog = new FrameLog("hub_to_client", "client_to_hub");
  const workerLog = new FrameLog("hub_to_worker", "worker_to_hub");

  async function proxy(): Promise<Proxy> {
    const p = await startProxy(hub.port);
    proxies.push(p);
    return p;
  }

  function client(url: string): EmpQueueClient {
    const c = new EmpQueueClient({ url, WebSocket: validatingWebSocket(clientLog), backoff: { initialMs: 50, maxMs: 200 } });
    peers.push(c);
    return c;
  }

  before(async () => {
    hub = await startHub();
  });

  after(async () => {
    for (const peer of peers) await (peer instanceof EmpWorker ? peer.stop() : peer.close());
    for (const p of proxies) await p.close();
    await hub?.stop();
  });

  it("resubmits a submission whose reply was lost, and the hub applies it once (D18)", async () => {
    const link = await proxy();
    const c = client(link.url);
    await c.connect();
    link.loseNextReply();
    const accepted = await c.submit({ job_type: "d18", payload: { n: 1 }, requirements: { service_type: "nobody-runs-this" } });
    assert.equal(link.connections, 2, "the client did not reconnect");
    assert.equal(c.reconnects, 1);
    const sent = clientLog.sent.filter((f) => f.type === "submit_job");
    assert.equal(sent.length, 2, "the submission was not sent again");
    assert.equal(sent[0]!.idempotency_key, sent[1]!.idempotency_key);
    assert.notEqual(sent[0]!.id, sent[1]!.id);
    assert.equal(accepted.notified_workers, 0);
    const stats = await c.requestStats();
    assert.equal(stats.jobs?.queued, 1, "the hub queued the job twice");
    assert.equal((await c.getJobStatus(accepted.job_id)).status, "queued");
  });

  it("renews job subscriptions after a reconnect and hears of a job that ended meanwhile (D14)", async () => {
    const worker = new EmpWorker({ url: hub.url, services: ["svc-a"], claimIntervalMs: 200 });
    peers.push(worker);
    const release = new Map<string, () => void>();
    worker.handle("held", (job: Job) => new Promise((resolve) => release.set(job.jobId, () => resolve({ done: job.jobId }))));
    await worker.start();

    const link = await proxy();
    const c = client(link.url);
    await c.connect();
    const jobId = await c.submitJob({ job_type: "held", payload: {}, requirements: { service_type: "svc-a" } });
    const events: string[] = [];
    await c.watchJob(jobId, (e) => events.push(e.type));
    const result = c.waitForJob(jobId, { timeoutMs: 30_000 });
    await until(() => release.has(jobId), "the job to run");

    link.pause();
    link.cut();
    await until(() => !c.connected, "the client to notice the drop");
    release.get(jobId)!();
    await until(() => worker.counts.completed === 1, "the worker to complete the job");
    link.resume();

    assert.deepEqual(await result, { success: true, done: jobId });
    await until(() => events.includes("job_completed"), "job_completed on the renewed subscription");
    assert.ok(c.reconnects >= 1);
  });

  it("keeps a worker's job across a dropped connection and reports the result made while away", async () => {
    const link = await proxy();
    const worker = new EmpWorker({
      url: link.url,
      workerId: "ts-worker-resume",
      services: ["svc-b"],
      claimIntervalMs: 200,
      backoff: { initialMs: 50, maxMs: 200 },
      WebSocket: validatingWebSocket(workerLog),
    });
    peers.push(worker);
    const events: Array<[string, Record<string, unknown>]> = [];
    worker.on((event, info) => events.push([event, info]));
    const release = new Map<string, () => void>();
    worker.handle("held", (job: Job) => new Promise((resolve) => release.set(job.jobId, () => resolve({ by: worker.workerId }))));
    await worker.start();

    const c = client(hub.url);
    await c.connect();
    const jobId = await c.submitJob({ job_type: "held", payload: {}, requirements: { service_type: "svc-b" } });
    const result = c.waitForJob(jobId, { timeoutMs: 30_000 });
    await until(() => release.has(jobId), "the job to run");

    link.pause();
    link.cut();
    await until(() => events.some(([e]) => e === "disconnected"), "the worker to notice the drop");
    release.get(jobId)!(); // the handler finishes while the worker is away: complete_job waits
    link.resume();

    assert.deepEqual(await result, { success: true, by: "ts-worker-resume" });
    const reconnected = events.find(([e]) => e === "reconnected");
    assert.ok(reconnected, "no reconnected event");
    assert.deepEqual(reconnected[1].resumed_jobs, [jobId]);
    await until(() => worker.counts.completed === 1, "the worker to count the job completed");
    assert.equal(worker.counts.lost, 0);
  });

  it("outlives a hub restart: server_disconnect, reconnect, renewed subscription (D17)", async () => {
    const dataDir = mkdtempSync(path.join(os.tmpdir(), "empq-ts-restart-"));
    const port = await freePort();
    let restarted: Hub | undefined = await startHub({ port, dataDir });
    try {
      const c = client(restarted.url);
      await c.connect();
      const jobId = await c.submitJob({ job_type: "after-restart", payload: {}, requirements: { service_type: "svc-c" } });
      const events: string[] = [];
      await c.watchJob(jobId, (e) => events.push(e.type === "job_update" ? e.status : e.type));
      const result = c.waitForJob(jobId, { timeoutMs: 60_000 });

      await restarted.stop();
      await until(() => !c.connected, "the client to notice the hub is gone");
      const goodbye = clientLog.received.filter((f) => f.type === "server_disconnect").at(-1);
      assert.ok(goodbye, "no server_disconnect");
      assert.equal(typeof goodbye.reconnect_after, "number");
      restarted = await startHub({ port, dataDir });
      await until(() => c.connected, "the client to reconnect to the new hub process");

      const worker = new EmpWorker({ url: restarted.url, services: ["svc-c"], claimIntervalMs: 200 });
      peers.push(worker);
      worker.handle("after-restart", () => ({ survived: true }));
      await worker.start();
      assert.deepEqual(await result, { success: true, survived: true });
      await until(() => events.includes("job_completed"), "job_completed on the renewed subscription");
      assert.ok(c.reconnects >= 1);
      await c.close();
      await worker.stop();
    } finally {
      await restarted?.stop();
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  it("received and sent only frames that validate against schemas/", () => {
    assert.deepEqual(clientLog.invalid, []);
    assert.deepEqual(workerLog.invalid, []);
  });
});
