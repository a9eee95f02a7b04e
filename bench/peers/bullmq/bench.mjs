// BullMQ side of `python -m bench.peers` (see ../README.md). Two roles, run as two processes:
//
//   node bench.mjs worker --port P --queue Q --concurrency 50 --seconds 60
//   node bench.mjs client --port P --queue Q --jobs 10000 --in-flight 200 --seconds 60
//
// The worker runs a no-op processor that returns its start time (epoch ms). The client keeps at
// most --in-flight jobs unfinished (Queue.add), learns each completion from QueueEvents
// 'completed' (Redis stream, pushed) and prints one JSON line with jobs/s and enqueue->start /
// enqueue->done latencies. Both roles stop by themselves after --seconds. Loopback only.
import { Queue, QueueEvents, Worker } from "bullmq";
import { performance } from "node:perf_hooks";

const nowMs = () => performance.timeOrigin + performance.now(); // epoch ms, sub-ms, same clock as Python's time.time()

function parseArgs(argv) {
  const [role, ...rest] = argv;
  const opts = { role, port: 6379, queue: "empq-bench", jobs: 10000, inFlight: 200, concurrency: 50, seconds: 60 };
  for (let i = 0; i < rest.length; i += 2) {
    const key = rest[i].replace(/^--/, "").replace(/-([a-z])/g, (_, c) => c.toUpperCase());
    if (!(key in opts)) throw new Error(`unknown option ${rest[i]}`);
    opts[key] = key === "queue" ? rest[i + 1] : Number(rest[i + 1]);
  }
  if (role !== "worker" && role !== "client") throw new Error("usage: bench.mjs worker|client [options]");
  return opts;
}

function pct(sorted, p) {
  if (!sorted.length) return null;
  const k = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return Math.round(sorted[k] * 1000) / 1000;
}

function stats(values) {
  const s = [...values].sort((a, b) => a - b);
  return { n: s.length, p50_ms: pct(s, 50), p99_ms: pct(s, 99), max_ms: s.length ? s[s.length - 1] : null };
}

async function runWorker(o, connection) {
  const worker = new Worker(o.queue, async () => nowMs(), { connection, concurrency: o.concurrency });
  await worker.waitUntilReady();
  console.log(JSON.stringify({ ready: true }));
  const stop = async () => {
    await worker.close();
    process.exit(0);
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
  setTimeout(stop, o.seconds * 1000 + 5000).unref();
}

async function runClient(o, connection) {
  const queue = new Queue(o.queue, { connection });
  // Read the events stream from its start: the first jobs may complete before the first XREAD.
  const events = new QueueEvents(o.queue, { connection, lastEventId: "0-0" });
  await Promise.all([queue.waitUntilReady(), events.waitUntilReady()]);
  const enqueued = new Map(); // job id -> enqueue time
  const toStart = [];
  const toDone = [];
  let sent = 0;
  let done = 0;
  let failed = 0;
  let first = null;
  let last = null;
  let finish;
  const finished = new Promise((resolve) => (finish = resolve));
  const timer = setTimeout(() => finish("seconds"), o.seconds * 1000);
  const cpu0 = process.cpuUsage();

  const submitOne = () => {
    const id = `j${sent++}`;
    const t = nowMs();
    if (first === null) first = t;
    enqueued.set(id, t);
    queue.add("noop", { n: sent }, { jobId: id }).catch((err) => {
      failed++;
      console.error(`add failed: ${err}`);
    });
  };
  const settle = (jobId) => {
    const t0 = enqueued.get(jobId);
    if (t0 === undefined) return false;
    enqueued.delete(jobId);
    last = nowMs();
    toDone.push(last - t0);
    done++;
    if (done + failed >= o.jobs) finish("jobs");
    else if (sent < o.jobs) submitOne();
    return t0;
  };
  events.on("completed", ({ jobId, returnvalue }) => {
    const t0 = settle(jobId);
    if (t0 === false) return;
    const started = Number(typeof returnvalue === "string" ? JSON.parse(returnvalue) : returnvalue);
    toStart.push(started - t0);
  });
  events.on("failed", ({ jobId }) => {
    if (settle(jobId) !== false) failed++;
  });
  for (let i = 0; i < Math.min(o.inFlight, o.jobs); i++) submitOne();
  const stoppedBy = await finished;
  clearTimeout(timer);
  const cpu = process.cpuUsage(cpu0);
  const wallS = first !== null && last !== null ? (last - first) / 1000 : 0;
  console.log(
    JSON.stringify({
      label: "BullMQ",
      version: (await import("bullmq/package.json", { with: { type: "json" } })).default.version,
      stopped_by: stoppedBy,
      submitted: sent,
      completed: done,
      failed,
      wall_s: Math.round(wallS * 1000) / 1000,
      jobs_per_s: wallS > 0 ? Math.round((done / wallS) * 10) / 10 : 0,
      enqueue_to_start: stats(toStart),
      enqueue_to_done: stats(toDone),
      client_cpu_s: (cpu.user + cpu.system) / 1e6,
    }),
  );
  await Promise.allSettled([events.close(), queue.close()]);
  process.exit(0);
}

const opts = parseArgs(process.argv.slice(2));
const connection = { host: "127.0.0.1", port: opts.port, maxRetriesPerRequest: null };
await (opts.role === "worker" ? runWorker(opts, connection) : runClient(opts, connection));
