// @ts-check
// Per job type over the last hour, from Redis (every hub shows the same): throughput, queue
// depth, wait and run time percentiles (GET /api/stats/last-hour).

import { $, api, duration, explain, h, text } from "./dash-util.js";

/** @typedef {{p50: number, p95: number, p99: number} | null} Percentiles */
/**
 * @typedef {{job_type: string, queued: number | null, completed: number, failed: number,
 *   completed_per_minute: number, wait_seconds: Percentiles, run_seconds: Percentiles}} TypeRow
 */

export class TypesView {
  /** @param {{permissions: Set<string>}} ctx */
  constructor(ctx) {
    this.ctx = ctx;
    this.visible = false;
    this.timer = 0;
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
      const hour = await api("/api/stats/last-hour");
      /** @type {TypeRow[]} */
      const rows = hour.job_types;
      $("types").replaceChildren(...rows.map((t) => h("tr", { dataset: { jobType: t.job_type } },
        h("td", null, h("a", { href: "#/jobs?job_type=" + encodeURIComponent(t.job_type) }, t.job_type)),
        h("td", { className: "num" }, t.queued == null ? "—" : text(t.queued)),
        h("td", { className: "num" }, text(t.completed)),
        h("td", { className: "num" + (t.failed ? " error-line" : "") }, t.failed ? h("a", { href: "#/jobs?status=failed,timeout&job_type=" + encodeURIComponent(t.job_type) }, text(t.failed)) : "0"),
        h("td", { className: "num" }, t.completed_per_minute.toFixed(2)),
        ...cells(t.wait_seconds), ...cells(t.run_seconds))));
      $("no-types").style.display = rows.length ? "none" : "";
      const s = hour.sampled;
      $("types-note").textContent = "From Redis, the last hour: " + s.completed + " completions and " + s.failed +
        " failures read" + (hour.window_seconds < 3600 ? "; throughput over the last " + duration(hour.window_seconds * 1000) + " (more completed than sampled)" : "") +
        ". Wait: created → started; run: started → completed.";
      $("types-error").textContent = "";
    } catch (e) {
      $("types-error").textContent = explain(e);
    }
    if (this.visible) this.timer = setTimeout(() => this.load(), 10000);
  }
}

/** @param {Percentiles} p */
function cells(p) {
  return ["p50", "p95", "p99"].map((k) => h("td", { className: "num" }, p ? duration(/** @type {any} */ (p)[k] * 1000) : "—"));
}
