// @ts-check
// The dashboard's shared helpers: DOM building (text only), the HTTP API, formats, a virtual list.
//
// Everything a peer sends (worker ids, telemetry, job types, payloads, errors) is data: it reaches
// the page only as text (textContent, DOM nodes built with h()), never as markup.

/** @typedef {import("../../clients/typescript/src/generated/protocol").JobStatus} JobStatus */
/** @typedef {import("../../clients/typescript/src/generated/protocol").JobAccepted} JobAccepted */
/** @typedef {import("../../clients/typescript/src/generated/protocol").WorkerCounts} WorkerCounts */
/** @typedef {import("../../clients/typescript/src/generated/protocol").WorkerSummary} WorkerSummary */
/** @typedef {import("../../clients/typescript/src/generated/protocol").Stats} Stats */
/** @typedef {import("../../clients/typescript/src/generated/protocol").Alert} Alert */
/** @typedef {import("../../clients/typescript/src/generated/protocol").Permission} Permission */
/** @typedef {import("../../clients/typescript/src/generated/protocol").WebhookEvent} WebhookEvent */
/** @typedef {import("../../clients/typescript/src/generated/protocol").WebhookDelivery} WebhookDelivery */

/**
 * A row of GET /api/jobs (JobSummary in spec/openapi.json).
 * @typedef {{job_id: string, status: JobStatus, job_type: string, priority: number, progress: number,
 *   created_at: number, started_at?: number, completed_at?: number, retry_count: number,
 *   customer_id?: string, worker_id?: string, error?: string, retry_of?: string, retried_as?: string,
 *   message?: string}} JobSummary
 */
/**
 * @typedef {{event: string, status: string, at: number, worker_id?: string, note?: string}} TimelineStep
 * @typedef {JobSummary & {max_retries: number, client_id: string, payload?: unknown, requirements?: object,
 *   metadata?: object, result?: unknown, error_details?: unknown, assigned_at?: number, cancelled_at?: number,
 *   retry_at?: number, cancel_reason?: string, processing_time?: number, timeout_seconds?: number,
 *   position?: number, timeline: TimelineStep[], webhook_target?: string, webhook_events?: WebhookEvent[],
 *   webhook_deliveries?: WebhookDelivery[]}} JobDetail
 * @typedef {{jobs: JobSummary[], next_cursor: string | null}} JobPage
 */

export const STATUSES = /** @type {JobStatus[]} */ ([
  "queued", "assigned", "accepted", "in_progress", "completed", "failed", "cancelled", "timeout",
]);
export const RUNNING = ["assigned", "accepted", "in_progress"];
export const FINAL = ["completed", "failed", "cancelled", "timeout"];
export const RETRYABLE = ["failed", "cancelled", "timeout"];
export const CANCELLABLE = ["queued", "assigned", "accepted", "in_progress"];

/** @param {string} id @returns {HTMLElement} */
export function $(id) {
  const node = document.getElementById(id);
  if (!node) throw new Error("no #" + id);
  return node;
}

/** @param {unknown} v @returns {string} */
export function text(v) {
  if (v == null) return "";
  return typeof v === "object" ? JSON.stringify(v) : String(v);
}

/**
 * h("td", {className: "x", dataset: {jobId: id}}, child, "text", ...): a DOM node; strings become
 * text nodes, never markup.
 * @param {string} tag
 * @param {Record<string, any> | null} [props]
 * @param {...(Node | string | number | null | undefined | false)} children
 * @returns {HTMLElement}
 */
export function h(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (k === "dataset") for (const [dk, dv] of Object.entries(v)) node.dataset[dk] = text(dv);
    else if (k === "on") for (const [event, fn] of Object.entries(v)) node.addEventListener(event, fn);
    else /** @type {any} */ (node)[k] = v;
  }
  for (const child of children) {
    if (child == null || child === false) continue;
    node.append(child instanceof Node ? child : text(child));
  }
  return node;
}

// --- the hub's HTTP API -----------------------------------------------------------------------

export const session = {
  /** @type {string | null} */
  token: null,
};

export class ApiError extends Error {
  /** @param {number} status @param {any} body */
  constructor(status, body) {
    super((body && body.error) || "HTTP " + status);
    this.status = status;
    this.body = body;
  }
}

/**
 * A call to the hub's HTTP API as a monitor (the token's role when there is one).
 * @param {string} path
 * @param {{method?: string, body?: unknown}} [options]
 * @returns {Promise<any>}
 */
export async function api(path, options) {
  /** @type {Record<string, string>} */
  const headers = { "X-Empq-Role": "monitor" };
  if (session.token) headers.Authorization = "Bearer " + session.token;
  /** @type {RequestInit} */
  const init = { method: (options && options.method) || "GET", headers: headers };
  if (options && options.body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(options.body);
  }
  const response = await fetch(path, init);
  const body = await response.json().catch(() => null);
  if (!response.ok) throw new ApiError(response.status, body);
  return body;
}

/** @param {Record<string, string | number | null | undefined>} params */
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v != null && v !== "") q.set(k, String(v));
  const s = q.toString();
  return s ? "?" + s : "";
}

// --- formats ------------------------------------------------------------------------------------

/** @param {number | undefined} ms */
export function clock(ms) {
  return ms ? new Date(ms).toLocaleTimeString() : "";
}

/** @param {number | undefined} ms */
export function dateTime(ms) {
  if (!ms) return "";
  const d = new Date(ms);
  const pad = (/** @type {number} */ n, w = 2) => String(n).padStart(w, "0");
  return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " +
    pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds()) + "." + pad(d.getMilliseconds(), 3);
}

/** A duration in ms, readable: 850 ms, 4.2 s, 3 min 5 s, 2 h 4 min. @param {number | null | undefined} ms */
export function duration(ms) {
  if (ms == null || !isFinite(ms)) return "";
  if (ms < 0) ms = 0;
  if (ms < 1000) return Math.round(ms) + " ms";
  const s = ms / 1000;
  if (s < 60) return s.toFixed(s < 10 ? 1 : 0) + " s";
  if (s < 3600) return Math.floor(s / 60) + " min " + Math.round(s % 60) + " s";
  return Math.floor(s / 3600) + " h " + Math.round((s % 3600) / 60) + " min";
}

/** @param {number | undefined} ms */
export function ago(ms) {
  return ms ? duration(Date.now() - ms) + " ago" : "";
}

/** @param {string} id */
export function shortId(id) {
  const s = text(id);
  return s.startsWith("job-") ? s.slice(0, 12) + "…" : s.length > 24 ? s.slice(0, 24) + "…" : s;
}

/** @param {string} status */
export function badge(status) {
  return h("span", { className: "badge st-" + text(status).replace(/[^a-z_]/g, "") }, text(status).replace("_", " "));
}

/** @param {string} message @param {"ok" | "bad"} [kind] */
export function toast(message, kind) {
  const box = $("toasts");
  const node = h("div", { className: "toast " + (kind || "ok"), role: "status" }, message);
  box.append(node);
  setTimeout(() => node.remove(), 6000);
}

/** @param {unknown} error */
export function explain(error) {
  if (error instanceof ApiError) {
    const code = error.body && error.body.error_code;
    return (code ? code + ": " : "") + error.message;
  }
  return error instanceof Error ? error.message : text(error);
}

// --- a list that renders only the rows in view -------------------------------------------------

/**
 * @template T
 */
export class VirtualList {
  /**
   * @param {HTMLElement} viewport a scrolling element (fixed height, overflow auto)
   * @param {number} rowHeight px
   * @param {(item: T) => HTMLElement} render
   * @param {() => void} [nearEnd] called when the end of the list comes into view
   */
  constructor(viewport, rowHeight, render, nearEnd) {
    this.viewport = viewport;
    this.rowHeight = rowHeight;
    this.render = render;
    this.nearEnd = nearEnd;
    /** @type {T[]} */
    this.items = [];
    this.spacer = h("div", { className: "v-spacer" });
    this.rows = h("div", { className: "v-rows", role: "rowgroup" });
    this.spacer.append(this.rows);
    viewport.replaceChildren(this.spacer);
    this.scheduled = false;
    viewport.addEventListener("scroll", () => this.refresh(), { passive: true });
    window.addEventListener("resize", () => this.refresh());
  }

  /** @param {T[]} items */
  set(items) {
    this.items = items;
    this.refresh();
  }

  /** Render again at the next frame (after scrolling, new items, live changes). */
  refresh() {
    if (this.scheduled) return;
    this.scheduled = true;
    requestAnimationFrame(() => {
      this.scheduled = false;
      this.draw();
    });
  }

  draw() {
    const n = this.items.length;
    const height = this.viewport.clientHeight || 400;
    this.spacer.style.height = n * this.rowHeight + "px";
    const first = Math.max(0, Math.floor(this.viewport.scrollTop / this.rowHeight) - 5);
    const last = Math.min(n, first + Math.ceil(height / this.rowHeight) + 10);
    this.rows.style.transform = "translateY(" + first * this.rowHeight + "px)";
    this.rows.replaceChildren(...this.items.slice(first, last).map(this.render));
    if (this.nearEnd && last >= n - 20) this.nearEnd();
  }
}
