// @ts-check
// The workers view: every hub's workers as the shared registry has them (GET /api/workers):
// hardware as declared, status (draining included), the jobs each holds, heartbeat age,
// connectors, telemetry. A virtual list: a thousand workers put 40 rows in the page.

import { $, VirtualList, api, badge, duration, explain, h, shortId, text } from "./dash-util.js";

/** @typedef {import("./dash-util.js").WorkerSummary} WorkerSummary */
/** @typedef {import("./dash-util.js").WorkerCounts} WorkerCounts */

const ROW = 38;

export class WorkersView {
  /** @param {{permissions: Set<string>}} ctx */
  constructor(ctx) {
    this.ctx = ctx;
    /** @type {WorkerSummary[]} */
    this.all = [];
    this.visible = false;
    this.timer = 0;
    this.list = new VirtualList($("workers"), ROW, (w) => this.row(w));
    $("w-filter").addEventListener("input", () => this.render());
  }

  /** @param {string} _arg */
  show(_arg) {
    this.visible = true;
    this.load();
  }

  hide() {
    this.visible = false;
    clearTimeout(this.timer);
  }

  async load() {
    clearTimeout(this.timer);
    try {
      /** @type {WorkerCounts} */
      const counts = await api("/api/workers");
      this.all = counts.workers || [];
      $("w-summary").textContent = (counts.total || 0) + " workers: " + (counts.idle || 0) + " idle, " +
        (counts.busy || 0) + " busy, " + (counts.draining || 0) + " draining, " + (counts.offline || 0) + " offline";
      $("w-error").textContent = "";
      this.render();
    } catch (e) {
      $("w-error").textContent = explain(e);
    }
    if (this.visible) this.timer = setTimeout(() => this.load(), 5000);
  }

  render() {
    const words = /** @type {HTMLInputElement} */ ($("w-filter")).value.trim().toLowerCase().split(/\s+/).filter(Boolean);
    const shown = words.length ? this.all.filter((w) => {
      const hay = (w.worker_id + " " + w.status + " " + gpu(w) + " " + (w.capabilities?.services || []).join(" ")).toLowerCase();
      return words.every((word) => hay.includes(word));
    }) : this.all;
    $("w-shown").textContent = words.length ? shown.length + " shown" : "";
    $("no-workers").style.display = this.all.length ? "none" : "";
    this.list.set(shown);
  }

  /** @param {WorkerSummary} w */
  row(w) {
    const jobs = w.current_jobs || [];
    const heartbeat = w.last_heartbeat ? Date.now() - w.last_heartbeat : null;
    const connectors = Object.entries(w.connector_status || {}).map(([name, c]) =>
      h("span", { className: "chip c-" + text(c && c.status).replace(/[^a-z]/g, "") }, name + ": " + text(c && c.status)));
    const telemetry = Object.entries(w.system_info || {}).slice(0, 6).map(([k, v]) => k + "=" + text(v)).join(" ");
    return h("div", { className: "row", role: "row", dataset: { workerId: w.worker_id, status: w.status } },
      h("span", { className: "ellipsis", title: w.worker_id }, w.worker_id),
      h("span", null, badge(w.status)),
      h("span", { className: "ellipsis", title: gpu(w) }, gpu(w)),
      h("span", { className: "ellipsis" }, (w.capabilities?.services || []).join(", ")),
      h("span", { className: "ellipsis" }, ...jobs.slice(0, 2).map((id) =>
        h("a", { href: "#/job/" + encodeURIComponent(id), title: id }, h("code", null, shortId(id)), " ")),
        jobs.length > 2 ? "+" + (jobs.length - 2) : "", jobs.length ? "" : h("span", { className: "muted" }, "—")),
      h("span", { className: heartbeat != null && heartbeat > 30000 ? "error-line" : "" }, heartbeat != null ? duration(heartbeat) + " ago" : "—"),
      h("span", null, w.load != null ? Number(w.load).toFixed(2) : ""),
      h("span", { className: "ellipsis" }, ...connectors),
      h("span", { className: "ellipsis muted", title: telemetry }, telemetry));
  }
}

/** The GPU as the worker declared it (capabilities.hardware). @param {WorkerSummary} w */
function gpu(w) {
  const hw = /** @type {Record<string, unknown>} */ (w.capabilities?.hardware || {});
  const parts = [];
  if (hw.gpu_model) parts.push(text(hw.gpu_model));
  if (hw.gpu_memory_gb != null) parts.push(text(hw.gpu_memory_gb) + " GB");
  return parts.join(" · ");
}
