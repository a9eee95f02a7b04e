/**
 * The package in a browser: headless Chromium loads dist/ as ES modules from a local page and,
 * with the browser's own WebSocket (no `ws`, no Node), connects to a real `empq hub`, submits a
 * job larger than its chunk threshold (so base64 and SHA-256 run on Web APIs), follows it and
 * disconnects; a TS worker in this process runs the job. The page posts its outcome back.
 * Skipped (with the reason) when no Chromium is installed.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { EmpWorker } from "@empq/client";
import { envelopeValidators, startHub, type Hub } from "./support.js";

const packageDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const chromium = [process.env.CHROMIUM_BIN, "/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"].find(
  (candidate): candidate is string => Boolean(candidate && existsSync(candidate)),
);

function page(hubUrl: string): string {
  return `<!doctype html><meta charset="utf-8"><title>empq</title>
<script type="module">
import { EmpQueueClient } from "/dist/index.js";
const report = (body) => fetch("/result", { method: "POST", body: JSON.stringify(body) });
const frames = [];
try {
  const client = new EmpQueueClient({ chunkThreshold: 16384 });
  client.onMessage((frame) => frames.push(frame));
  await client.connect(${JSON.stringify(hubUrl)});
  const text = "ünïcödé ".repeat(4000);
  const jobId = await client.submitJob({ job_type: "browser", payload: { text }, requirements: { service_type: "web" } });
  const events = [];
  client.subscribeToJob(jobId, (event) => events.push(event.type));
  const result = await client.waitForJob(jobId, { timeoutMs: 20000 });
  const status = await client.getJobStatus(jobId);
  client.disconnect();
  report({ ok: true, jobId, result, status: status.status, events, frames, node: typeof process !== "undefined", sent: text.length });
} catch (error) {
  report({ ok: false, error: String((error && error.stack) || error) });
}
</script>`;
}

describe("in a browser (Chromium, native WebSocket)", { skip: chromium ? false : "no Chromium installed (set CHROMIUM_BIN)" }, () => {
  let hub: Hub;
  let worker: EmpWorker;
  let server: http.Server;
  let result: (body: string) => void;
  const posted = new Promise<string>((resolve) => (result = resolve));

  before(async () => {
    hub = await startHub();
    worker = new EmpWorker({ url: hub.url, services: ["web"], claimIntervalMs: 200 });
    worker.handle("browser", (job) => ({ length: String(job.payload.text).length }));
    await worker.start();
    server = http.createServer((req, res) => {
      if (req.method === "POST" && req.url === "/result") {
        let body = "";
        req.on("data", (d: Buffer) => (body += d.toString()));
        req.on("end", () => {
          res.end("ok");
          result(body);
        });
        return;
      }
      if (req.url === "/") {
        res.setHeader("content-type", "text/html; charset=utf-8");
        res.end(page(hub.url));
        return;
      }
      const file = path.join(packageDir, path.normalize(req.url ?? "/").replace(/^\/+/, ""));
      if (req.url?.startsWith("/dist/") && file.startsWith(path.join(packageDir, "dist")) && existsSync(file)) {
        res.setHeader("content-type", "text/javascript; charset=utf-8");
        res.end(readFileSync(file));
        return;
      }
      res.statusCode = 404;
      res.end();
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  });

  after(async () => {
    await new Promise((resolve) => server?.close(resolve));
    await worker?.stop();
    await hub?.stop();
  });

  it("runs a job end to end with the browser's WebSocket and Web Crypto", async () => {
    const profile = mkdtempSync(path.join(os.tmpdir(), "empq-chromium-"));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
    const browser = spawn(
      chromium!,
      ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run", `--user-data-dir=${profile}`, url],
      { stdio: "ignore", detached: true }, // its own process group: its helpers go with it
    );
    const exited = new Promise((resolve) => browser.once("exit", resolve));
    try {
      const timeout = new Promise<never>((_, reject) => setTimeout(() => reject(new Error("the page reported nothing")), 45_000).unref());
      const outcome = JSON.parse(await Promise.race([posted, timeout])) as {
        ok: boolean;
        error?: string;
        jobId: string;
        result: unknown;
        status: string;
        events: string[];
        frames: Array<Record<string, unknown>>;
        node: boolean;
        sent: number;
      };
      assert.ok(outcome.ok, outcome.error);
      assert.equal(outcome.node, false);
      assert.deepEqual(outcome.result, { success: true, length: outcome.sent });
      assert.equal(outcome.status, "completed");
      assert.ok(outcome.events.includes("job_completed"), String(outcome.events));
      // every message the page received validates against schemas/ (hub -> client)
      const validate = envelopeValidators().get("hub_to_client")!;
      const invalid = outcome.frames.filter((frame) => !validate(frame));
      assert.deepEqual(invalid, []);
      assert.ok(outcome.frames.some((f) => f.type === "job_accepted" && f.job_id === outcome.jobId));
      // the submission went as chunks: the hub's receipt of the reassembled submit_job
      assert.ok(outcome.frames.some((f) => f.type === "chunked_message_complete" && f.original_type === "submit_job"));
    } finally {
      try {
        process.kill(-browser.pid!, "SIGKILL");
      } catch {
        /* gone already */
      }
      await exited;
      rmSync(profile, { recursive: true, force: true, maxRetries: 10, retryDelay: 100 });
    }
  });
});
