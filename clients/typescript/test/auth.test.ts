/**
 * Tokens (spec D4) against a real `empq hub` that requires them: a wrong or missing token is
 * refused with AUTH_FAILED (`AuthFailed`), the right one registers — for a client and a worker.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { AuthFailed, EmpQueueClient, EmpWorker, HubUnreachable } from "@empq/client";
import { FrameLog, startHub, validatingWebSocket, type Hub } from "./support.js";

describe("auth tokens", () => {
  let hub: Hub;
  const log = new FrameLog("hub_to_client", "client_to_hub");

  before(async () => {
    hub = await startHub({ env: { EMPQ_CLIENT_TOKENS: "client-secret", EMPQ_WORKER_TOKENS: "worker-secret" } });
  });

  after(async () => {
    await hub?.stop();
  });

  it("refuses a wrong or missing token with AuthFailed", async () => {
    for (const token of ["wrong", undefined, "worker-secret"]) {
      const client = new EmpQueueClient({ url: hub.url, token, WebSocket: validatingWebSocket(log) });
      const error = await client.connect().then(
        () => assert.fail(`token ${token} was accepted`),
        (e: unknown) => e,
      );
      assert.ok(error instanceof AuthFailed, `token ${token}: ${String(error)}`);
      assert.equal(error.code, "AUTH_FAILED");
      assert.equal(client.connected, false);
    }
    assert.ok(log.received.some((f) => f.type === "error" && f.error_code === "AUTH_FAILED"));
  });

  it("runs a job with the right tokens", async () => {
    const worker = new EmpWorker({ url: hub.url, token: "worker-secret", services: ["comfyui"], claimIntervalMs: 200 });
    worker.handle("t", (job) => ({ seen: job.payload }));
    await worker.start();
    const client = new EmpQueueClient({ url: hub.url, token: "client-secret", WebSocket: validatingWebSocket(log) });
    await client.connect();
    try {
      const jobId = await client.submitJob({ job_type: "t", payload: { a: 1 }, requirements: { service_type: "comfyui" } });
      assert.deepEqual(await client.waitForJob(jobId, { timeoutMs: 30_000 }), { success: true, seen: { a: 1 } });
    } finally {
      await client.close();
      await worker.stop();
    }
  });

  it("says when the hub cannot be reached", async () => {
    const client = new EmpQueueClient({ url: "ws://127.0.0.1:1", connectTimeoutMs: 2000 });
    await assert.rejects(client.connect(), (e: unknown) => e instanceof HubUnreachable && /connection refused/.test(e.message));
  });

  it("received only frames that validate against schemas/", () => {
    assert.deepEqual(log.invalid, []);
  });
});
