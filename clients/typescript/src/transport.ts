/**
 * The WebSocket underneath: the browser's native `WebSocket`, or in Node the `ws` package (which
 * can send the `Authorization` header and bound the frame size). Both are driven through the
 * standard `onopen`/`onmessage`/`onclose`/`onerror` properties, so any class with that shape works
 * (the `WebSocket` option: e.g. a subclass of `ws` that records frames).
 */
import { HubUnreachable } from "./errors.js";

/* The event types differ between the DOM WebSocket and ws: `any` lets both (and subclasses) be
   passed as the WebSocket option. */
export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((event: any) => void) | null;
  /** `event.data`: the frame's text (or bytes) */
  onmessage: ((event: any) => void) | null;
  /** `event.code`, `event.reason` */
  onclose: ((event: any) => void) | null;
  onerror: ((event: any) => void) | null;
}

/** Options passed as the third constructor argument (understood by `ws`, ignored by browsers). */
export interface SocketOptions {
  headers?: Record<string, string>;
  maxPayload?: number;
  handshakeTimeout?: number;
  perMessageDeflate?: boolean;
}

export type WebSocketConstructor = new (url: string, protocols?: string[], options?: any) => WebSocketLike;

const OPEN = 1;

function isNode(): boolean {
  const proc = (globalThis as { process?: { versions?: { node?: string } } }).process;
  return typeof proc?.versions?.node === "string";
}

let nodeWebSocket: Promise<WebSocketConstructor> | undefined;

/** `ws` in Node, the native WebSocket elsewhere. */
export function defaultWebSocket(): Promise<WebSocketConstructor> {
  if (isNode()) {
    const specifier = "ws"; // a variable specifier: browser bundlers never pull ws in
    nodeWebSocket ??= import(/* @vite-ignore */ specifier).then(
      (mod: { WebSocket?: WebSocketConstructor; default?: WebSocketConstructor }) => (mod.WebSocket ?? mod.default)!,
    );
    return nodeWebSocket;
  }
  const native = (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
  if (!native) return Promise.reject(new Error("no WebSocket implementation: pass the WebSocket option"));
  return Promise.resolve(native);
}

function describe(event: unknown): string {
  const e = event as { message?: string; error?: { code?: string; message?: string } } | undefined;
  const code = e?.error?.code;
  if (code === "ECONNREFUSED") return "connection refused";
  const text = e?.message || e?.error?.message;
  const status = /Unexpected server response: (\d+)/.exec(text ?? "");
  if (status) return `handshake refused with HTTP ${status[1]}`;
  return text || "connection failed";
}

/** Open a WebSocket; resolves once open, rejects with `HubUnreachable`. */
export async function openSocket(
  url: string,
  options: SocketOptions & { timeoutMs: number; WebSocket?: WebSocketConstructor },
): Promise<WebSocketLike> {
  const Ctor = options.WebSocket ?? (await defaultWebSocket().catch((e: Error) => {
    throw new HubUnreachable(url, e.message);
  }));
  let ws: WebSocketLike;
  try {
    ws = new Ctor(url, [], {
      headers: options.headers,
      maxPayload: options.maxPayload,
      handshakeTimeout: options.timeoutMs,
      perMessageDeflate: false,
    });
  } catch (e) {
    throw new HubUnreachable(url, `invalid URL (${(e as Error).message})`);
  }
  return new Promise<WebSocketLike>((resolve, reject) => {
    let reason: string | undefined;
    const timer = setTimeout(() => {
      fail("timed out");
      try {
        ws.close();
      } catch {
        /* not open yet */
      }
    }, options.timeoutMs);
    const fail = (why: string): void => {
      clearTimeout(timer);
      ws.onopen = ws.onerror = ws.onclose = null;
      reject(new HubUnreachable(url, why));
    };
    ws.onopen = () => {
      clearTimeout(timer);
      ws.onopen = ws.onerror = ws.onclose = null;
      if (ws.readyState === OPEN) resolve(ws);
      else reject(new HubUnreachable(url, "closed during the handshake"));
    };
    ws.onerror = (event) => {
      reason ??= describe(event);
    };
    ws.onclose = (event) => fail(reason ?? `closed during the handshake (${event.code})`);
  });
}
