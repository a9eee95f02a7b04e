/**
 * `HubConnection`: a registered connection to the hub that survives drops, shared by the job
 * client and the worker (the Python SDK's `HubConnection`, same behaviour):
 *
 * - every request carries a fresh `id` and its replies are matched by `request_id` (spec D2), so
 *   concurrent callers never read each other's replies; every request has a timeout;
 * - when the connection drops it reconnects with exponential backoff (honouring
 *   `server_disconnect.reconnect_after`), registers again and lets the subclass renew its state;
 *   requests marked `retry` are sent again on the new connection;
 * - messages larger than `chunkThreshold` bytes go as `chunked_message` frames, and chunked
 *   frames from the hub are reassembled (spec D15);
 * - `ping` from the hub is answered with `pong`.
 */
import { ChunkError, Reassembler, splitIntoChunks, utf8 } from "./chunks.js";
import { AuthFailed, ConnectionLost, EmpqError, HubError, HubUnreachable, RequestTimeout } from "./errors.js";
import type {
  BaseMessage,
  ChunkedMessage,
  ChunkedMessageComplete,
  FromHub,
  MessageMap,
  ServerDisconnect,
  ToHub,
} from "./generated/protocol.js";
import { openSocket, type WebSocketConstructor, type WebSocketLike } from "./transport.js";
import type { ErrorMessage } from "./types.js";

export const VERSION = "0.1.0";
export const DEFAULT_HUB_URL = "ws://127.0.0.1:3002";

/** The fields of message `M` without `type` and `timestamp` (which `message()` fills in). */
export type Fields<M> = {
  [K in keyof M as string extends K ? never : number extends K ? never : K extends "type" | "timestamp" ? never : K]: M[K];
} & { [extra: string]: unknown };

/** A message of `type` with `timestamp` now. */
export function message<K extends keyof MessageMap>(type: K, fields: Fields<MessageMap[K]>): MessageMap[K] {
  return { ...fields, type, timestamp: Date.now() } as unknown as MessageMap[K];
}

/** A message the hub sends, by its type. */
export type FromHubOf<K extends FromHub["type"]> = Extract<FromHub, { type: K }>;

export interface Logger {
  debug(message: string, ...rest: unknown[]): void;
  info(message: string, ...rest: unknown[]): void;
  warn(message: string, ...rest: unknown[]): void;
  error(message: string, ...rest: unknown[]): void;
}

/** Warnings and errors to the console, nothing else (pass `logger: console` for everything). */
export const defaultLogger: Logger = {
  debug() {},
  info() {},
  warn: (m, ...rest) => console.warn(`empq: ${m}`, ...rest),
  error: (m, ...rest) => console.error(`empq: ${m}`, ...rest),
};

/** Reconnect delays: `initialMs` doubling (`factor`) up to `maxMs`, ± `jitter` (a fraction). */
export interface Backoff {
  initialMs: number;
  maxMs: number;
  factor: number;
  jitter: number;
}

export const DEFAULT_BACKOFF: Backoff = { initialMs: 100, maxMs: 5000, factor: 2, jitter: 0.2 };

export function* backoffDelays(backoff: Backoff, firstMs?: number): Generator<number> {
  let delay = firstMs === undefined ? backoff.initialMs : Math.max(0, Math.min(firstMs, backoff.maxMs));
  for (;;) {
    yield delay * (1 + (Math.random() * 2 - 1) * backoff.jitter);
    delay = Math.min(Math.max(delay, backoff.initialMs) * backoff.factor, backoff.maxMs);
  }
}

export interface ConnectionOptions {
  /** Hub URL (default ws://127.0.0.1:3002); `connect(url)` may give it instead. */
  url?: string;
  /** Token of this peer's role (spec D4): `Authorization: Bearer` on the handshake (Node) and
   * `auth_token` in the register message (everywhere). */
  token?: string;
  /** How long a request waits for its reply, including a reconnect in between (default 10 s). */
  requestTimeoutMs?: number;
  /** How long opening the WebSocket may take (default 5 s). */
  connectTimeoutMs?: number;
  /** Reconnect when the connection drops (default true). */
  reconnect?: boolean;
  backoff?: Partial<Backoff>;
  /** Messages whose JSON is larger than this many bytes are sent as chunks (default 1 MiB, the
   * hub's own threshold; the hub refuses frames over 10 MB). */
  chunkThreshold?: number;
  /** Largest frame accepted from the hub (Node / `ws` only; default 64 MiB). */
  maxMessageSize?: number;
  /** The WebSocket class (default: `ws` in Node, the native one in browsers). */
  WebSocket?: WebSocketConstructor;
  logger?: Logger;
}

type AnyCallback = (...args: never[]) => unknown;

class Link {
  closed = false;
  serverDisconnect: ServerDisconnect | undefined;
  readonly reassembler = new Reassembler();
  inbox: Promise<void> = Promise.resolve(); // frames are handled in the order they came
  outbox: Promise<void> = Promise.resolve(); // and sent in the order they were given
  queued = 0; // sends waiting in the outbox
  private onClosed: Array<() => void> = [];

  constructor(readonly ws: WebSocketLike) {}

  whenClosed(): Promise<void> {
    return this.closed ? Promise.resolve() : new Promise((resolve) => this.onClosed.push(resolve));
  }

  markClosed(): void {
    if (this.closed) return;
    this.closed = true;
    for (const resolve of this.onClosed.splice(0)) resolve();
  }
}

interface Pending {
  link: Link;
  frames: FromHub[];
  doneWhen: (frames: FromHub[]) => boolean;
  resolve: (frames: FromHub[]) => void;
  reject: (error: Error) => void;
  done: boolean;
}

export interface RequestOptions {
  /** Bounds the whole call, waiting for a reconnect included (default `requestTimeoutMs`). */
  timeoutMs?: number;
  /** When the reply is complete (default: after one frame). */
  doneWhen?: (frames: FromHub[]) => boolean;
  /** Send again on the next connection when this one drops before the reply (only for requests
   * that are safe to repeat). */
  retry?: boolean;
}

function deferred<T>(): { promise: Promise<T>; resolve: (value: T) => void } {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = setTimeout(done, Math.max(0, ms));
    function done(): void {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    }
    signal?.addEventListener("abort", done, { once: true });
  });
}

function randomHex(n: number): string {
  let out = "";
  while (out.length < n) out += Math.floor(Math.random() * 0x100000000).toString(16).padStart(8, "0");
  return out.slice(0, n);
}

/** A fresh random key (for idempotent submission, D18). */
export function randomKey(): string {
  const c = (globalThis as { crypto?: { randomUUID?: () => string } }).crypto;
  return c?.randomUUID ? c.randomUUID().replaceAll("-", "") : randomHex(32);
}

export abstract class HubConnection {
  protected readonly peerKind: string = "peer";
  url: string;
  readonly token: string | undefined;
  readonly requestTimeoutMs: number;
  readonly connectTimeoutMs: number;
  readonly reconnect: boolean;
  readonly backoff: Backoff;
  readonly chunkThreshold: number;
  readonly maxMessageSize: number;
  readonly logger: Logger;
  /** Successful reconnections so far. */
  reconnects = 0;

  private readonly WebSocketClass: WebSocketConstructor | undefined;
  private link: Link | undefined; // registered and usable (undefined while away)
  private dead = true; // not connected, and not trying to
  protected closing = false;
  private changed = deferred<void>();
  private pending = new Map<string, Pending>();
  private chunkAliases = new Map<string, string>(); // chunk frame id -> the id of the request it carries
  private seq = 0;
  private readonly idPrefix: string;
  private errorCallbacks: Array<(error: ErrorMessage) => void> = [];
  private messageCallbacks: Array<(message: FromHub) => void> = [];
  private supervisor: Promise<void> | undefined;
  private stopSupervisor = new AbortController();

  constructor(options: ConnectionOptions = {}, peerKind = "peer") {
    this.peerKind = peerKind;
    this.url = options.url ?? DEFAULT_HUB_URL;
    this.token = options.token;
    this.requestTimeoutMs = options.requestTimeoutMs ?? 10_000;
    this.connectTimeoutMs = options.connectTimeoutMs ?? 5_000;
    this.reconnect = options.reconnect ?? true;
    this.backoff = { ...DEFAULT_BACKOFF, ...options.backoff };
    this.chunkThreshold = options.chunkThreshold ?? 1024 * 1024;
    this.maxMessageSize = options.maxMessageSize ?? 64 * 1024 * 1024;
    this.WebSocketClass = options.WebSocket;
    this.logger = options.logger ?? defaultLogger;
    this.idPrefix = `${peerKind.slice(0, 1)}${randomHex(6)}`;
  }

  // subclass hooks ----------------------------------------------------------------------------
  /** The register message. */
  protected abstract registerMessage(): ToHub;
  /** The registration reply, before the connection is handed to other requests. */
  protected abstract registered(reply: FromHub, first: boolean): void;
  /** After a reconnect (the connection is usable): renew subscriptions, etc. */
  protected async resumed(): Promise<void> {}
  /** Every frame from the hub (after its request, if any, got it). */
  protected received(_message: FromHub): void {}
  /** The connection dropped (a reconnect follows unless closing). */
  protected lost(): void {}
  /** Closed for good: no reconnect will follow. */
  protected gone(): void {}

  // public ------------------------------------------------------------------------------------
  get connected(): boolean {
    return this.link !== undefined;
  }

  /** `callback(error)` for every `error` frame that answers no pending request, every error
   * of a call that returns nothing (e.g. a failed `subscribeToJob`), and the AUTH_FAILED that
   * stops reconnecting. */
  onError(callback: (error: ErrorMessage) => void): void {
    this.errorCallbacks.push(callback);
  }

  /** `callback(message)` for every message received (chunked ones once reassembled). */
  onMessage(callback: (message: FromHub) => void): void {
    this.messageCallbacks.push(callback);
  }

  nextId(): string {
    this.seq += 1;
    return `${this.idPrefix}-${this.seq}`;
  }

  /** Open the connection and register. Rejects with `HubUnreachable`, `AuthFailed`, `HubError`
   * or `RequestTimeout` when that fails (no retry on the first connection). */
  async connect(url?: string): Promise<void> {
    if (url) this.url = url;
    if (this.link) return;
    this.closing = false;
    this.stopSupervisor = new AbortController();
    const link = await this.open(true);
    this.setLink(link);
    this.supervisor = this.supervise(link).catch((error: unknown) => {
      this.logger.error("the reconnect loop failed", error);
    });
  }

  /** Send `msg` with a fresh id and resolve with its reply frames (`HubError` for `error`). */
  async request(msg: ToHub, options: RequestOptions = {}): Promise<FromHub[]> {
    const deadline = Date.now() + (options.timeoutMs ?? this.requestTimeoutMs);
    for (;;) {
      const link = await this.waitReady(deadline, msg.type);
      try {
        return await this.exchange(link, msg, deadline, options.doneWhen ?? (() => true));
      } catch (error) {
        if (!(error instanceof ConnectionLost) || !options.retry || this.closing || !this.reconnect) throw error;
      }
    }
  }

  /** `request` expecting one reply of type `reply`. */
  async ask<K extends FromHub["type"]>(msg: ToHub, reply: K, options: RequestOptions = {}): Promise<FromHubOf<K>> {
    const [frame] = await this.request(msg, options);
    if (frame?.type !== reply) throw new EmpqError(`unexpected reply ${frame?.type} to ${msg.type}`);
    return frame as FromHubOf<K>;
  }

  /** Send without waiting for a reply (`ConnectionLost` if not connected now). */
  async send(msg: ToHub): Promise<void> {
    const link = this.link;
    if (!link) throw new ConnectionLost("not connected to the hub");
    await this.transmit(link, msg);
  }

  /** Round trip to the hub in milliseconds (`ping` → `pong`). */
  async ping(timeoutMs?: number): Promise<number> {
    const start = Date.now();
    await this.ask(message("ping", {}), "pong", { timeoutMs });
    return Date.now() - start;
  }

  // internals ---------------------------------------------------------------------------------
  private setLink(link: Link | undefined, dead = false): void {
    this.link = link;
    this.dead = link ? false : dead;
    const changed = this.changed;
    this.changed = deferred<void>();
    changed.resolve();
  }

  private async waitReady(deadline: number, what: string): Promise<Link> {
    for (;;) {
      if (this.link) return this.link;
      if (this.dead) throw new ConnectionLost("not connected to the hub");
      const remaining = deadline - Date.now();
      if (remaining <= 0) throw new RequestTimeout(`${what}: not connected to the hub at ${this.url} (reconnecting)`);
      const timeout = new AbortController();
      await Promise.race([this.changed.promise, sleep(remaining, timeout.signal)]);
      timeout.abort();
    }
  }

  private async open(first: boolean): Promise<Link> {
    const headers: Record<string, string> = { "User-Agent": `empq-ts-${this.peerKind}/${VERSION}` };
    if (this.token) headers.Authorization = `Bearer ${this.token}`;
    const ws = await openSocket(this.url, {
      headers,
      maxPayload: this.maxMessageSize,
      timeoutMs: this.connectTimeoutMs,
      WebSocket: this.WebSocketClass,
    });
    const link = new Link(ws);
    ws.onmessage = (event) => {
      link.inbox = link.inbox.then(() => this.onData(link, event.data)).catch((error: unknown) => {
        this.logger.error("handling a frame from the hub failed", error);
      });
    };
    ws.onerror = (event) => this.logger.debug("websocket error", event);
    ws.onclose = () => this.onClose(link);
    try {
      const [reply] = await this.exchange(link, this.registerMessage(), Date.now() + this.requestTimeoutMs, () => true);
      this.registered(reply!, first);
    } catch (error) {
      await this.closeLink(link);
      throw error;
    }
    return link;
  }

  private async exchange(
    link: Link,
    msg: ToHub,
    deadline: number,
    doneWhen: (frames: FromHub[]) => boolean,
  ): Promise<FromHub[]> {
    const rid = this.nextId();
    msg.id = rid;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const result = new Promise<FromHub[]>((resolve, reject) => {
      const pending: Pending = { link, frames: [], doneWhen, resolve, reject, done: false };
      this.pending.set(rid, pending);
      timer = setTimeout(
        () => this.settle(rid, new RequestTimeout(`no reply to ${msg.type} from ${this.url} in time`)),
        Math.max(1, deadline - Date.now()),
      );
    });
    try {
      if (link.closed) throw new ConnectionLost(`connection to ${this.url} lost`);
      await this.transmit(link, msg);
      return await result;
    } finally {
      clearTimeout(timer);
      this.pending.delete(rid);
      for (const [alias, of] of this.chunkAliases) if (of === rid) this.chunkAliases.delete(alias);
      result.catch(() => {}); // settled by a failed send: nobody else awaits it
    }
  }

  private settle(rid: string, outcome: Error | FromHub[]): void {
    const pending = this.pending.get(rid);
    if (!pending || pending.done) return;
    pending.done = true;
    if (outcome instanceof Error) pending.reject(outcome);
    else pending.resolve(outcome);
  }

  /** Send one message on `link`: whole, or as chunks when over the threshold (D15). Messages
   * leave in the order given: a small one waits behind a large one being split (hashing is
   * asynchronous in browsers). */
  private transmit(link: Link, msg: ToHub): Promise<void> {
    const text = JSON.stringify(msg);
    const large = text.length * 3 > this.chunkThreshold && utf8(text).length > this.chunkThreshold;
    if (!large && link.queued === 0) {
      this.sendText(link, text);
      return Promise.resolve();
    }
    link.queued += 1;
    const sent = link.outbox.then(async () => {
      if (!large) return this.sendText(link, text);
      const chunkId = `chunk-${randomHex(16)}`;
      const rid = msg.id;
      const frames = await splitIntoChunks(text, msg.type, chunkId, this.chunkThreshold / 2, rid ? (i) => `${rid}.${i}` : undefined);
      for (const frame of frames) {
        if (rid && frame.id) this.chunkAliases.set(frame.id, rid);
        this.sendText(link, JSON.stringify(frame));
      }
    });
    link.outbox = sent.then(
      () => void (link.queued -= 1),
      () => void (link.queued -= 1),
    );
    return sent;
  }

  private sendText(link: Link, text: string): void {
    if (link.closed) throw new ConnectionLost(`connection to ${this.url} lost`);
    try {
      link.ws.send(text);
    } catch (error) {
      throw new ConnectionLost(`connection to ${this.url} lost: ${(error as Error).message}`);
    }
  }

  private async onData(link: Link, data: unknown): Promise<void> {
    const text = typeof data === "string" ? data : new TextDecoder().decode(data as Uint8Array);
    let frame: FromHub;
    try {
      frame = JSON.parse(text) as FromHub;
    } catch {
      this.logger.warn("ignoring a frame that is not JSON");
      return;
    }
    if (frame === null || typeof frame !== "object" || typeof frame.type !== "string") {
      this.logger.warn("ignoring a frame without a type");
      return;
    }
    if (frame.type === "chunked_message") {
      await this.onChunk(link, frame);
      return;
    }
    this.dispatch(link, frame);
  }

  private async onChunk(link: Link, frame: ChunkedMessage): Promise<void> {
    try {
      const whole = await link.reassembler.add(frame);
      if (!whole) return;
      const receipt: ChunkedMessageComplete = message("chunked_message_complete", {
        chunk_id: whole.chunkId,
        total_size: whole.totalSize,
        original_type: whole.originalType,
      });
      if (!link.closed) this.sendText(link, JSON.stringify(receipt));
      await this.onData(link, whole.text);
    } catch (error) {
      if (!(error instanceof ChunkError)) throw error;
      this.logger.warn(`dropped chunk stream ${error.chunkId} from the hub: ${error.message}`);
    }
  }

  private dispatch(link: Link, frame: FromHub): void {
    if (frame.type === "server_disconnect") link.serverDisconnect = frame;
    else if (frame.type === "ping") {
      const pong = message("pong", frame.id ? { request_id: frame.id } : {});
      if (!link.closed) this.sendText(link, JSON.stringify(pong));
    }
    let consumed = false;
    const rid = frame.request_id;
    if (typeof rid === "string") {
      const pending = this.pending.get(rid);
      if (pending) {
        consumed = true;
        if (!pending.done) {
          if (frame.type === "error") this.settle(rid, HubError.of(frame));
          else {
            pending.frames.push(frame);
            if (pending.doneWhen(pending.frames)) this.settle(rid, pending.frames);
          }
        }
      } else {
        const of = this.chunkAliases.get(rid);
        if (of !== undefined) {
          consumed = true; // a receipt of one chunk of a request: its failure is the request's
          if (frame.type === "error") this.settle(of, HubError.of(frame));
        }
      }
    }
    for (const callback of this.messageCallbacks) this.call(callback, frame);
    if (frame.type === "error" && !consumed) {
      this.logger.warn(`hub error: ${frame.error_code} ${frame.error}`);
      this.reportError(frame);
    }
    this.received(frame);
  }

  /** Give a hub `error` frame to the `onError` callbacks. */
  protected reportError(frame: ErrorMessage): void {
    for (const callback of this.errorCallbacks) this.call(callback, frame);
  }

  /** A failure of a call that returns nothing: hub errors go to `onError`, the rest to the log. */
  protected reportFailure(what: string, error: unknown): void {
    if (error instanceof HubError) {
      this.logger.warn(`${what}: ${error.message}`);
      this.reportError(error.frame);
    } else if (!(this.closing && error instanceof ConnectionLost)) {
      this.logger.warn(`${what}: ${(error as Error).message ?? error}`);
    }
  }

  /** Run a user callback: its errors (thrown or rejected) are logged, never propagated. */
  protected call<F extends AnyCallback>(callback: F, ...args: Parameters<F>): void {
    try {
      const result = callback(...args) as unknown;
      if (result && typeof (result as Promise<unknown>).then === "function") {
        (result as Promise<unknown>).then(undefined, (error: unknown) => this.logger.error("callback failed", error));
      }
    } catch (error) {
      this.logger.error("callback failed", error);
    }
  }

  private onClose(link: Link): void {
    link.markClosed();
    for (const [rid, pending] of this.pending) {
      if (pending.link === link) this.settle(rid, new ConnectionLost(`connection to ${this.url} lost`));
    }
    if (this.link === link) {
      this.setLink(undefined, this.closing || !this.reconnect);
      this.lost();
      if (this.dead) this.gone();
    }
  }

  /** Wait for the connection to drop; reconnect with backoff; repeat. */
  private async supervise(first: Link): Promise<void> {
    let link = first;
    const stop = this.stopSupervisor.signal;
    const stopped = new Promise((resolve) => stop.addEventListener("abort", resolve, { once: true }));
    for (;;) {
      await Promise.race([link.whenClosed(), stopped]);
      if (this.closing || !this.reconnect || stop.aborted) return;
      const sd = link.serverDisconnect;
      const hint = sd?.reconnect_after ? sd.reconnect_after - Date.now() : undefined;
      this.logger.info(`connection to ${this.url} lost; reconnecting`);
      let next: Link | undefined;
      for (const delay of backoffDelays(this.backoff, hint)) {
        await sleep(delay, stop);
        if (this.closing || stop.aborted) return;
        try {
          next = await this.open(false);
          break;
        } catch (error) {
          if (error instanceof AuthFailed) {
            this.logger.error(`the hub refused this peer on reconnect: ${error.message}`);
            this.reportError(error.frame);
            this.setLink(undefined, true);
            this.gone();
            return;
          }
          if (!(error instanceof HubUnreachable || error instanceof EmpqError)) throw error;
          this.logger.info(`reconnect to ${this.url} failed: ${error.message}`);
        }
      }
      if (!next) return;
      if (this.closing) {
        await this.closeLink(next);
        return;
      }
      link = next;
      this.reconnects += 1;
      this.setLink(link);
      this.logger.info(`reconnected to ${this.url}`);
      try {
        await this.resumed();
      } catch (error) {
        this.logger.warn(`renewing state after reconnect failed: ${(error as Error).message}`);
      }
    }
  }

  private async closeLink(link: Link): Promise<void> {
    try {
      link.ws.close(1000);
    } catch {
      /* already closed */
    }
    const terminate = (link.ws as { terminate?: () => void }).terminate;
    const abort = new AbortController();
    const closedInTime = await Promise.race([
      link.whenClosed().then(() => true),
      sleep(3000, abort.signal).then(() => false),
    ]);
    abort.abort();
    if (!closedInTime) {
      terminate?.call(link.ws);
      this.onClose(link);
    }
  }

  /** Stop reconnecting, optionally say goodbye, close, release waiters. */
  protected async shutdown(goodbye?: ToHub): Promise<void> {
    this.closing = true;
    this.stopSupervisor.abort();
    const link = this.link;
    if (link) {
      if (goodbye) {
        try {
          await this.transmit(link, goodbye);
        } catch {
          /* the connection is going anyway */
        }
      }
      await this.closeLink(link); // its close handler marks the peer gone
    }
    await this.supervisor?.catch(() => {});
    this.supervisor = undefined;
    if (!this.dead) {
      this.setLink(undefined, true);
      this.gone();
    }
  }
}

/** The base type of every protocol message (schemas/defs/base.json). */
export type { BaseMessage };
