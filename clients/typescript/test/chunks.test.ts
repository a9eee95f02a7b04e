/**
 * Chunked messages both ways (spec D15): a large submit_job and a large complete_job go to the hub
 * as chunks; the hub sends the large job_assigned and job_completed back as chunks, which the
 * worker and the client reassemble. The hub chunks at 64 KiB here (EMPQ_CHUNK_THRESHOLD), the
 * TS side at 64 KiB too. Plus the reassembler on its own: any order, broken streams refused.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { ChunkError, EmpQueueClient, EmpWorker, Reassembler, splitIntoChunks, type ChunkedMessage } from "@empq/client";
import { FrameLog, startHub, validatingWebSocket, type Hub } from "./support.js";

const THRESHOLD = 64 * 1024;

describe("chunked messages through a real hub", () => {
  let hub: Hub;
  const clientLog = new FrameLog("hub_to_client", "client_to_hub");
  const workerLog = new FrameLog("hub_to_worker", "worker_to_hub");
  let client: EmpQueueClient;
  let worker: EmpWorker;

  before(async () => {
    hub = await startHub({ env: { EMPQ_CHUNK_THRESHOLD: String(THRESHOLD) } });
    client = new EmpQueueClient({ url: hub.url, chunkThreshold: THRESHOLD, WebSocket: validatingWebSocket(clientLog) });
    worker = new EmpWorker({
      url: hub.url,
      services: ["comfyui"],
      chunkThreshold: THRESHOLD,
      claimIntervalMs: 200,
      WebSocket: validatingWebSocket(workerLog),
    });
    // echoes the (large) input, reversed, as the (large) result
    worker.handle("echo", (job) => ({ text: [...String(job.payload.text)].reverse().join("") }));
    await worker.start();
    await client.connect();
  });

  after(async () => {
    await client?.close();
    await worker?.stop();
    await hub?.stop();
  });

  it("sends and receives messages several times the threshold, with multi-byte text intact", async () => {
    const text = "héllo wörld ✓ ".repeat(20_000); // ~340 KB of UTF-8
    const accepted = await client.submit({ job_type: "echo", payload: { text }, requirements: { service_type: "comfyui" } });
    const result = await client.waitForJob(accepted.job_id, { timeoutMs: 30_000 });
    assert.equal(result.text, [...text].reverse().join(""));

    // client -> hub: the submission went as chunks, each frame below the threshold
    const sentChunks = clientLog.sent.filter((f) => f.type === "chunked_message");
    assert.ok(sentChunks.length >= 5, `${sentChunks.length} chunks sent`);
    assert.ok(sentChunks.every((f) => f.original_type === "submit_job"));
    assert.ok(Math.max(...clientLog.sentSizes) < THRESHOLD);
    assert.ok(!clientLog.sent.some((f) => f.type === "submit_job"), "the submission went whole");
    // hub -> client: job_completed came as chunks, reassembled and acknowledged
    const fromHub = clientLog.received.filter((f) => f.type === "chunked_message" && f.original_type === "job_completed");
    assert.ok(fromHub.length >= 5, `${fromHub.length} job_completed chunks received`);
    assert.ok(clientLog.sent.some((f) => f.type === "chunked_message_complete" && f.chunk_id === fromHub[0]!.chunk_id));

    // hub -> worker: job_assigned came as chunks; worker -> hub: complete_job went as chunks
    assert.ok(workerLog.received.some((f) => f.type === "chunked_message" && f.original_type === "job_assigned"));
    assert.ok(workerLog.sent.some((f) => f.type === "chunked_message" && f.original_type === "complete_job"));
    assert.ok(Math.max(...workerLog.sentSizes) < THRESHOLD);
  });

  it("keeps the order of messages: a small one sent after a large one arrives after it", async () => {
    const job = { job_type: "order", requirements: { service_type: "nobody-runs-this" } };
    const [large, small] = await Promise.all([
      client.submit({ ...job, payload: { text: "x".repeat(4 * THRESHOLD) } }),
      client.submit({ ...job, payload: {} }),
    ]);
    assert.deepEqual([large.position, small.position], [1, 2]); // FIFO within a priority (D7)
    await client.cancelJob(large.job_id);
    await client.cancelJob(small.job_id);
  });

  it("received and sent only frames that validate against schemas/", () => {
    assert.deepEqual(clientLog.invalid, []);
    assert.deepEqual(workerLog.invalid, []);
  });
});

describe("Reassembler", () => {
  async function chunksOf(text: string, size: number): Promise<ChunkedMessage[]> {
    return splitIntoChunks(text, "job_completed", "chunk-t", size);
  }

  it("splits into base64 slices carrying the sha256 of the whole text, and reassembles in any order", async () => {
    const text = JSON.stringify({ type: "job_completed", note: "ünïcödé ".repeat(100) });
    const chunks = await chunksOf(text, 100);
    assert.equal(chunks.length, Math.ceil(Buffer.byteLength(text) / 100));
    assert.equal(chunks[0]!.data_hash, createHash("sha256").update(text).digest("hex"));
    assert.ok(chunks.every((c, i) => c.chunk_index === i && c.total_chunks === chunks.length && c.total_size === Buffer.byteLength(text)));
    const reassembler = new Reassembler();
    const shuffled = [...chunks].reverse();
    for (const chunk of shuffled.slice(0, -1)) assert.equal(await reassembler.add(chunk), undefined);
    const whole = await reassembler.add(shuffled.at(-1)!);
    assert.deepEqual(whole, { chunkId: "chunk-t", originalType: "job_completed", text, totalSize: Buffer.byteLength(text) });
  });

  it("refuses a wrong hash, a duplicate, an index out of range and bad base64", async () => {
    const text = "x".repeat(300);
    const refused = async (chunks: ChunkedMessage[], reason: string): Promise<void> => {
      const reassembler = new Reassembler();
      await assert.rejects(
        (async () => {
          for (const chunk of chunks) await reassembler.add(chunk);
        })(),
        (error: unknown) => error instanceof ChunkError && error.reason === reason,
      );
    };
    const good = await chunksOf(text, 100);
    await refused(good.map((c) => ({ ...c, data_hash: "0".repeat(64) })), "bad_hash");
    await refused([good[0]!, good[0]!], "duplicate_chunk");
    await refused([{ ...good[0]!, chunk_index: 3 }], "index_out_of_range");
    await refused([{ ...good[0]!, data: "not base64!" }], "bad_base64");
    await refused([good[0]!, { ...good[1]!, total_chunks: 9 }], "inconsistent");
  });
});
