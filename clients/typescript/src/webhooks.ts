/**
 * Webhook signatures (spec D21), per Standard Webhooks (https://www.standardwebhooks.com): check
 * that a job event POSTed by the hub to a job's `webhook_url` is genuine.
 *
 *     const event = await verifyWebhook(secret, request.headers, rawBody); // throws if not signed
 *     if (alreadyHandled(request.headers["webhook-id"])) return;        // at least once: de-duplicate
 *
 * The secret is `whsec_` + base64 of the key bytes. A delivery carries `webhook-id` (the same on
 * every attempt of one event), `webhook-timestamp` (Unix seconds of the attempt) and
 * `webhook-signature`: `v1,` + base64 HMAC-SHA256 over `<id>.<timestamp>.<body>` (several
 * space-separated signatures allowed). Web Crypto only: Node 18+ and browsers alike. Verify the raw
 * body as received (re-serialised JSON would not match).
 */
import type { JobCancelled, JobCompleted, JobUpdate } from "./generated/protocol.js";

export const WEBHOOK_TOLERANCE_SECONDS = 300;

/** The delivery is not signed with this secret, or its timestamp is too far from now. */
export class WebhookVerificationError extends Error {
  override name = "WebhookVerificationError";
}

/** Headers as Node gives them (`IncomingHttpHeaders`) or as fetch does (`Headers`). */
export type WebhookHeaders = { get(name: string): string | null } | Record<string, string | string[] | undefined>;

/** The message a webhook carries: the job event as the WebSocket sends it. */
export type WebhookMessage = JobUpdate | JobCompleted | JobCancelled;

type HmacSubtle = {
  importKey(format: "raw", key: Uint8Array, algorithm: { name: "HMAC"; hash: "SHA-256" }, extractable: false, usages: ["sign"]): Promise<unknown>;
  sign(algorithm: "HMAC", key: unknown, data: Uint8Array): Promise<ArrayBuffer>;
};

async function subtle(): Promise<HmacSubtle> {
  const global = (globalThis as { crypto?: { subtle?: HmacSubtle } }).crypto?.subtle;
  if (global) return global;
  const specifier = "node:crypto"; // Node 18 without the global (a variable specifier keeps bundlers out)
  const mod = (await import(/* @vite-ignore */ specifier)) as { webcrypto: { subtle: HmacSubtle } };
  return mod.webcrypto.subtle;
}

function fromBase64(text: string): Uint8Array {
  const binary = atob(text);
  return Uint8Array.from(binary, (c) => c.charCodeAt(0));
}

function toBase64(bytes: Uint8Array): string {
  let binary = "";
  for (const b of bytes) binary += String.fromCharCode(b);
  return btoa(binary);
}

/** The HMAC key of a secret: `whsec_<base64>` (the prefix may be left out). */
export function webhookSecretKey(secret: string): Uint8Array {
  const text = secret.startsWith("whsec_") ? secret.slice(6) : secret;
  let key: Uint8Array;
  try {
    key = fromBase64(text);
  } catch {
    throw new WebhookVerificationError("a webhook secret is whsec_ followed by base64");
  }
  if (key.length < 16) throw new WebhookVerificationError("a webhook secret holds at least 16 bytes");
  return key;
}

/** The `webhook-signature` value of a delivery: `v1,` + base64 HMAC-SHA256 of `id.timestamp.body`. */
export async function signWebhook(secret: string, webhookId: string, timestamp: number, body: string | Uint8Array): Promise<string> {
  const crypto = await subtle();
  const key = await crypto.importKey("raw", webhookSecretKey(secret), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  const bytes = typeof body === "string" ? new TextEncoder().encode(body) : body;
  const head = new TextEncoder().encode(`${webhookId}.${timestamp}.`);
  const signed = new Uint8Array(head.length + bytes.length);
  signed.set(head);
  signed.set(bytes, head.length);
  return `v1,${toBase64(new Uint8Array(await crypto.sign("HMAC", key, signed)))}`;
}

function header(headers: WebhookHeaders, name: string): string | undefined {
  if (typeof (headers as { get?: unknown }).get === "function") {
    return (headers as { get(name: string): string | null }).get(name) ?? undefined;
  }
  const record = headers as Record<string, string | string[] | undefined>;
  const key = Object.keys(record).find((k) => k.toLowerCase() === name);
  const value = key === undefined ? undefined : record[key];
  return Array.isArray(value) ? value.join(" ") : value;
}

function sameText(a: string, b: string): boolean {
  let diff = a.length ^ b.length;
  for (let i = 0; i < Math.max(a.length, b.length); i++) diff |= (a.charCodeAt(i) || 0) ^ (b.charCodeAt(i) || 0);
  return diff === 0;
}

/**
 * Check a delivery's signature and timestamp; resolves to its body parsed (the job event:
 * `job_update`, `job_completed` or `job_cancelled`). Rejects with `WebhookVerificationError`.
 */
export async function verifyWebhook(
  secret: string,
  headers: WebhookHeaders,
  body: string | Uint8Array,
  options: { toleranceSeconds?: number; nowSeconds?: number } = {},
): Promise<WebhookMessage> {
  const id = header(headers, "webhook-id");
  const stamp = header(headers, "webhook-timestamp");
  const signatures = header(headers, "webhook-signature");
  if (!id || !stamp || !signatures) {
    throw new WebhookVerificationError("missing webhook-id, webhook-timestamp or webhook-signature");
  }
  if (!/^\d+$/.test(stamp)) throw new WebhookVerificationError(`webhook-timestamp ${stamp} is not Unix seconds`);
  const timestamp = Number(stamp);
  const now = options.nowSeconds ?? Date.now() / 1000;
  const tolerance = options.toleranceSeconds ?? WEBHOOK_TOLERANCE_SECONDS;
  if (Math.abs(now - timestamp) > tolerance) {
    throw new WebhookVerificationError(`webhook-timestamp ${timestamp} is more than ${tolerance} s from now`);
  }
  const expected = (await signWebhook(secret, id, timestamp, body)).slice(3);
  for (const candidate of signatures.split(" ")) {
    const [version, value] = [candidate.slice(0, candidate.indexOf(",")), candidate.slice(candidate.indexOf(",") + 1)];
    if (version === "v1" && sameText(value, expected)) {
      const text = typeof body === "string" ? body : new TextDecoder().decode(body);
      return JSON.parse(text) as WebhookMessage;
    }
  }
  throw new WebhookVerificationError("no valid v1 signature for this secret");
}
