// A worker written in Node: runs text_to_image jobs of the comfyui service, reporting progress.
// Ctrl-C or SIGTERM drains it: no new jobs, the running one finishes, then it leaves.
//
//   node examples/worker.mjs [ws://127.0.0.1:3002]
import { EmpWorker } from "@empq/client";

const url = process.argv[2] ?? process.env.EMPQ_HUB ?? "ws://127.0.0.1:3002";
const worker = new EmpWorker({ url, services: ["comfyui"], maxConcurrent: 2 });

worker.handle("text_to_image", async (job, progress) => {
  const steps = Number(job.payload.steps ?? 5);
  for (let step = 1; step <= steps; step++) {
    if (job.signal.aborted) return; // cancelled: the outcome is ignored anyway
    await new Promise((resolve) => setTimeout(resolve, Number(job.payload.step_seconds ?? 0.2) * 1000));
    await progress(Math.round((10000 * step) / steps) / 100, `step ${step}/${steps}`);
  }
  return { output_files: [`https://example.invalid/${job.jobId}.png`], metadata: { prompt: job.payload.prompt } };
});

worker.on((event, info) => console.log(event, JSON.stringify(info)));
await worker.run(); // until SIGTERM/SIGINT, then drain
