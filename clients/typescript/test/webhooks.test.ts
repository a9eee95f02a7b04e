/**
 * Webhooks (spec D21): `verifyWebhook` / `signWebhook` against Standard Webhooks' definition written
 * out here with node:crypto, and against a real `empq hub` that POSTs a job's completion to a
 * node:http receiver on 127.0.0.1 (first answer 500: the retry carries the same webhook-id).
 */
import assert from "node:assert/strict";
import { createHmac, randomBytes } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";
import { EmpQueueClient, EmpWorker, WebhookVerificationError, signWebhook, verifyWebhook } from "@empq/client";
import { startHub, until, type Hub } from "./support.js";

const SECRET = `whsec_${randomBytes(32).toString("base64")}`;

function standard(secret: string, id: string, timestamp: number, body: string): string {
  const key = Buffer.from(secret.slice("whsec_".length), "base64");
  return `v1,${createHmac("sha256", key).update(`${id}.${timestamp}.${body}`).digest("base64")}`;
}

describe("webhook signatures", () => {
  const body = JSON.stringify({ type: "job_completed", job_id: "job-1", status: "completed" });
  const now = Math.floor(Date.now() / 1000);

  it("signs as Standard Webhooks defines it and verifies what is signed", async () => {
    const signature = await signWebhook(SECRET, "job-1.1", now, body);
    assert.equal(signature, standard(SECRET, "job-1.1", now, body));
    const headers = { "webhook-id": "job-1.1", "webhook-timestamp": String(now), "webhook-signature": `v1,bogus ${signature}` };
    const event = await verifyWebhook(SECRET, headers, body);
    assert.equal(event.type, "job_completed");
    const asFetch = new Headers(headers);
    assert.equal((await verifyWebhook(SECRET, asFetch, new TextEncoder().encode(body))).job_id, "job-1");
  });

  it("refuses another secret, a changed body, an old timestamp, missing headers", async () => {
    const signature = await signWebhook(SECRET, "job-1.1", now, body);
    const headers = { "webhook-id": "job-1.1", "webhook-timestamp": String(now), "webhook-signature": signature };
    const other = `whsec_${randomBytes(32).toString("base64")}`;
    await assert.rejects(verifyWebhook(other, headers, body), WebhookVerificationError);
    await assert.rejects(verifyWebhook(SECRET, headers, body.replace("job-1", "job-2")), WebhookVerificationError);
    await assert.rejects(verifyWebhook(SECRET, headers, body, { nowSeconds: now + 301 }), /from now/);
    await assert.rejects(verifyWebhook(SECRET, { "webhook-id": "x" }, body), /missing/);
  });
});

describe("a real hub's webhook", () => {
  let hub: Hub;
  let worker: EmpWorker;
  let client: EmpQueueClient;
  let server: http.Server;
  const received: Array<{ headers: http.IncomingHttpHeaders; body: string }> = [];

  before(async () => {
    server = http.createServer((request, response) => {
      let body = "";
      request.on("data", (chunk: Buffer) => (body += chunk.toString()));
      request.on("end", () => {
        received.push({ headers: request.headers, body });
        response.writeHead(received.length === 1 ? 500 : 204).end();
      });
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    hub = await startHub({
      env: {
        EMPQ_WEBHOOK_SECRET: SECRET,
        EMPQ_WEBHOOK_ALLOW_HTTP: "1",
        EMPQ_WEBHOOK_ALLOW_PRIVATE: "1",
        EMPQ_WEBHOOK_RETRY_BASE_S: "0.05",
      },
    });
    worker = new EmpWorker({ url: hub.url, services: ["comfyui"], claimIntervalMs: 200 });
    worker.handle("upscale", (job) => ({ success: true, scaled: job.payload.image }));
    await worker.start();
    client = new EmpQueueClient({ url: hub.url });
    await client.connect();
  });

  after(async () => {
    await client?.close();
    await worker?.stop();
    await hub?.stop();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  it("is the job_completed message, signed, and retried with the same webhook-id", async () => {
    const { port } = server.address() as AddressInfo;
    const accepted = await client.submit({
      job_type: "upscale",
      payload: { image: "s3://in.png" },
      webhook_url: `http://127.0.0.1:${port}/hooks`,
    });
    await until(() => received.length >= 2, "two webhook requests");
    const [first, second] = received;
    assert.equal(first!.headers["webhook-id"], second!.headers["webhook-id"]);
    for (const { headers, body } of received) {
      const event = await verifyWebhook(SECRET, headers, body);
      assert.equal(event.type, "job_completed");
      assert.equal(event.job_id, accepted.job_id);
    }
    const delivered = async (): Promise<boolean> =>
      (await client.getJobStatus(accepted.job_id)).webhook_deliveries?.[0]?.state === "delivered";
    await until(delivered, "the delivery recorded as delivered");
    const delivery = (await client.getJobStatus(accepted.job_id)).webhook_deliveries![0]!;
    assert.deepEqual(delivery.attempts.map((a) => a.status_code), [500, 204]);
  });
});
