/**
 * The examples of the walkthrough (clients/README.md), run as a newcomer runs them, against a real
 * `empq hub`: examples/submit.mjs with a Python `empq worker` (simulate connector) running the job,
 * and examples/worker.mjs running a Python client's job (`empq submit --wait`), then draining on
 * SIGTERM while a job runs.
 */
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { EmpQueueClient } from "@empq/client";
import { runEmpq, startHub, startPythonWorker, until, type Hub } from "./support.js";

const packageDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");

function runExample(name: string, url: string): { child: ChildProcess; output: () => string; exited: Promise<number | null> } {
  const child = spawn(process.execPath, [path.join(packageDir, "examples", name), url], {
    cwd: packageDir,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stdout!.on("data", (d: Buffer) => (output += d.toString()));
  child.stderr!.on("data", (d: Buffer) => (output += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  const timer = setTimeout(() => child.kill("SIGKILL"), 60_000);
  void exited.then(() => clearTimeout(timer));
  return { child, output: () => output, exited };
}

describe("the walkthrough's examples", () => {
  let hub: Hub;

  before(async () => {
    hub = await startHub();
  });

  after(async () => {
    await hub?.stop();
  });

  it("examples/submit.mjs runs a job end to end through the six methods, on a Python empq worker", async () => {
    const worker = startPythonWorker(hub.url, ["--services", "comfyui"]);
    try {
      const run = runExample("submit.mjs", hub.url);
      assert.equal(await run.exited, 0, run.output());
      const lines = run.output().trim().split("\n");
      assert.match(lines[0]!, /^submitted job-[0-9a-f]{32}$/);
      assert.ok(lines.some((l) => l.startsWith("in_progress ")), run.output());
      assert.ok(lines.some((l) => /^completed: \{"success":true,"output_files":\["sim:\/\/comfyui\/job-/.test(l)), run.output());
      assert.ok(lines.some((l) => /^stats: \d+ queued, \d+ in progress, \d+ completed$/.test(l)), run.output());
    } finally {
      assert.equal(await worker.stop(), 0, worker.log());
    }
  });

  it("examples/worker.mjs runs a Python client's job, and drains on SIGTERM", async () => {
    const run = runExample("worker.mjs", hub.url);
    try {
      await until(() => run.output().includes("registered "), "the example worker to register");
      const submitted = await runEmpq(["submit", "--hub", hub.url, "--job-type", "text_to_image", "--service", "comfyui", "--payload", '{"prompt": "a lake", "steps": 2, "step_seconds": 0.05}', "--wait", "--wait-timeout", "30", "--json"]);
      assert.equal(submitted.code, 0, submitted.stderr);
      const outcome = JSON.parse(submitted.stdout.trim().split("\n").at(-1)!) as { status: string; result: { metadata: unknown } };
      assert.equal(outcome.status, "completed");
      assert.deepEqual(outcome.result.metadata, { prompt: "a lake" });

      // SIGTERM while a job runs: it finishes, then the worker leaves
      const client = new EmpQueueClient({ url: hub.url });
      await client.connect();
      try {
        const jobId = await client.submitJob({ job_type: "text_to_image", payload: { steps: 10, step_seconds: 0.1 }, requirements: { service_type: "comfyui" } });
        const statuses: string[] = [];
        await client.watchJob(jobId, (e) => statuses.push(e.type === "job_update" ? e.status : e.type));
        await until(() => statuses.includes("in_progress"), "the job to run");
        run.child.kill("SIGTERM");
        assert.equal((await client.waitForJob(jobId, { timeoutMs: 30_000 })).success, true);
        assert.equal(await run.exited, 0, run.output());
        assert.match(run.output(), /^draining /m);
        assert.match(run.output(), /^stopped \{"reason":"worker drained","handed_back":\[\]\}$/m);
      } finally {
        await client.close();
      }
    } finally {
      run.child.kill("SIGKILL");
    }
  });
});
