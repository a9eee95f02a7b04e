/**
 * Chunked messages (spec D15), in Node and in browsers: a message whose UTF-8 JSON text is larger
 * than a threshold goes as `chunked_message` frames (`data` is base64 of a slice of the text,
 * `data_hash` the sha256 hex of the whole text); the receiver reassembles in any order, checks
 * the hash and processes the original as if it had been sent whole.
 */
import type { ChunkedMessage } from "./generated/protocol.js";

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

type BufferLike = { from(data: Uint8Array | string, encoding?: string): Uint8Array & { toString(enc: string): string } };
const NodeBuffer = (globalThis as { Buffer?: BufferLike }).Buffer;

export function utf8(text: string): Uint8Array {
  return encoder.encode(text);
}

export function fromUtf8(bytes: Uint8Array): string {
  return decoder.decode(bytes);
}

export function toBase64(bytes: Uint8Array): string {
  if (NodeBuffer) return NodeBuffer.from(bytes).toString("base64");
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

export function fromBase64(text: string): Uint8Array {
  if (text.length % 4 !== 0 || !BASE64.test(text)) throw new Error("data is not valid base64");
  if (NodeBuffer) return new Uint8Array(NodeBuffer.from(text, "base64"));
  const binary = atob(text);
  const out = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) out[i] = binary.charCodeAt(i);
  return out;
}

type Subtle = { digest(algorithm: string, data: Uint8Array): Promise<ArrayBuffer> };
let subtle: Promise<Subtle> | undefined;

function webCrypto(): Promise<Subtle> {
  const global = (globalThis as { crypto?: { subtle?: Subtle } }).crypto?.subtle;
  if (global) return Promise.resolve(global);
  // Node 18 without the global: node:crypto's webcrypto (a variable specifier keeps bundlers out)
  const specifier = "node:crypto";
  return import(/* @vite-ignore */ specifier).then((mod: { webcrypto: { subtle: Subtle } }) => mod.webcrypto.subtle);
}

export async function sha256Hex(bytes: Uint8Array): Promise<string> {
  subtle ??= webCrypto();
  const digest = new Uint8Array(await (await subtle).digest("SHA-256", bytes));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** The `chunked_message` frames of `text` (the encoded original message), `partSize` bytes of it
 * each. `id(i)` names chunk i's frame (its replies carry it as request_id), or leaves it without. */
export async function splitIntoChunks(
  text: string,
  originalType: string,
  chunkId: string,
  partSize: number,
  id?: (index: number) => string,
): Promise<ChunkedMessage[]> {
  const bytes = utf8(text);
  const size = Math.max(1, Math.floor(partSize));
  const total = Math.max(1, Math.ceil(bytes.length / size));
  const dataHash = await sha256Hex(bytes);
  const frames: ChunkedMessage[] = [];
  for (let index = 0; index < total; index++) {
    const frame: ChunkedMessage = {
      type: "chunked_message",
      timestamp: Date.now(),
      chunk_id: chunkId,
      chunk_index: index,
      total_chunks: total,
      data: toBase64(bytes.subarray(index * size, (index + 1) * size)),
      data_hash: dataHash,
      original_type: originalType,
      total_size: bytes.length,
    };
    if (id) frame.id = id(index);
    frames.push(frame);
  }
  return frames;
}

/** Why a chunk stream was refused (the hub's CHUNK_ERROR reasons). */
export class ChunkError extends Error {
  override name = "ChunkError";
  constructor(
    readonly chunkId: string,
    readonly reason: string,
    message: string,
  ) {
    super(message);
  }
}

interface Stream {
  total: number;
  originalType: string;
  dataHash: string | undefined;
  parts: Map<number, Uint8Array>;
  size: number;
  started: number;
}

export interface Assembled {
  chunkId: string;
  originalType: string;
  text: string;
  totalSize: number;
}

/** Reassembles the chunk streams of one connection; bounded in streams, bytes and age. */
export class Reassembler {
  private streams = new Map<string, Stream>();

  constructor(
    private readonly maxStreams = 8,
    private readonly maxBytes = 64 * 1024 * 1024,
    private readonly maxAgeMs = 60_000,
  ) {}

  /** Add one chunk: the assembled message when it was the last one, else undefined. Throws
   * `ChunkError` (and forgets the stream) when the stream is broken. */
  async add(frame: ChunkedMessage): Promise<Assembled | undefined> {
    const now = Date.now();
    for (const [id, stream] of this.streams) {
      if (now - stream.started > this.maxAgeMs) this.streams.delete(id);
    }
    const refuse = (reason: string, text: string): never => {
      this.streams.delete(frame.chunk_id);
      throw new ChunkError(frame.chunk_id, reason, text);
    };
    let stream = this.streams.get(frame.chunk_id);
    if (!stream) {
      if (this.streams.size >= this.maxStreams) refuse("too_many_streams", `at most ${this.maxStreams} chunk streams`);
      stream = {
        total: frame.total_chunks,
        originalType: frame.original_type,
        dataHash: frame.data_hash,
        parts: new Map(),
        size: 0,
        started: now,
      };
      this.streams.set(frame.chunk_id, stream);
    }
    if (frame.total_chunks !== stream.total || frame.original_type !== stream.originalType) {
      refuse("inconsistent", "total_chunks or original_type changed within the stream");
    }
    if (frame.chunk_index >= frame.total_chunks) {
      refuse("index_out_of_range", `chunk_index ${frame.chunk_index} >= total_chunks ${frame.total_chunks}`);
    }
    if (stream.parts.has(frame.chunk_index)) refuse("duplicate_chunk", `chunk ${frame.chunk_index} received twice`);
    let part: Uint8Array = new Uint8Array();
    try {
      part = fromBase64(frame.data);
    } catch {
      refuse("bad_base64", "data is not valid base64");
    }
    stream.size += part.length;
    let held = 0;
    for (const s of this.streams.values()) held += s.size;
    if (held > this.maxBytes) refuse("too_large", `chunked data over ${this.maxBytes} bytes`);
    stream.parts.set(frame.chunk_index, part);
    stream.dataHash ??= frame.data_hash;
    if (stream.parts.size < stream.total) return undefined;
    this.streams.delete(frame.chunk_id);
    const whole = new Uint8Array(stream.size);
    let offset = 0;
    for (let i = 0; i < stream.total; i++) {
      const piece = stream.parts.get(i)!;
      whole.set(piece, offset);
      offset += piece.length;
    }
    if (stream.dataHash && (await sha256Hex(whole)) !== stream.dataHash.toLowerCase()) {
      refuse("bad_hash", "sha256 of the reassembled data does not match data_hash");
    }
    let text = "";
    try {
      text = fromUtf8(whole);
    } catch {
      refuse("bad_utf8", "the reassembled data is not UTF-8");
    }
    return { chunkId: frame.chunk_id, originalType: stream.originalType, text, totalSize: whole.length };
  }
}
