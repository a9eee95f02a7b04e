// Submit one job and follow it to the end with the six methods of the protocol reference's
// interface (connect, submitJob, subscribeToJob, subscribeToStats, onError, disconnect).
//
//   node examples/submit.mjs [ws://127.0.0.1:3002]
//
// Prints one line per event and per stats update; once the job is final and a stats update came,
// disconnects: exit code 0 when the job completed, 1 when it failed or was cancelled.
import { EmpQueueClient } from "@empq/client";

const url = process.argv[2] ?? process.env.EMPQ_HUB ?? "ws://127.0.0.1:3002";
const client = new EmpQueueClient();

client.onError((error) => console.error(`hub error ${error.error_code}: ${error.error}`));
await client.connect(url);

const jobId = await client.submitJob({
  job_type: "text_to_image",
  payload: { prompt: "a beautiful landscape with mountains", steps: 3, step_seconds: 0.2 },
  priority: 75,
  requirements: { service_type: "comfyui" },
});
console.log(`submitted ${jobId}`);

let statsSeen = false;
let exitCode; // set once the job is final

client.subscribeToStats((update) => {
  const jobs = update.stats.jobs ?? {};
  console.log(`stats: ${jobs.queued ?? 0} queued, ${jobs.in_progress ?? 0} in progress, ${jobs.completed ?? 0} completed`);
  statsSeen = true;
  finishWhenDone();
}, { intervalSeconds: 1 });

client.subscribeToJob(jobId, (update) => {
  if (update.type === "job_update") {
    console.log(`${update.status}${update.progress !== undefined ? ` ${update.progress}%` : ""}`);
    if (update.status === "failed" || update.status === "timeout") final(1, `failed: ${update.error ?? ""}`);
  } else if (update.type === "job_completed") {
    final(0, `completed: ${JSON.stringify(update.result)}`);
  } else {
    final(1, `cancelled: ${update.reason ?? ""}`);
  }
});

function final(code, line) {
  console.log(line);
  exitCode = code;
  finishWhenDone();
}

function finishWhenDone() {
  if (exitCode === undefined || !statsSeen || process.exitCode !== undefined) return;
  process.exitCode = exitCode;
  client.disconnect();
}
