// @ts-check
// The overview: what runs now, what failed lately, the last hour's throughput, alerts in force.
// Seeded from the HTTP API at load (so a running job shows at once), then kept live by events.

import { $, ApiError, RUNNING, ago, api, badge, duration, h, shortId, text } from "./dash-util.js";

/** @typedef {import("./dash-util.js").JobSummary} JobSummary */
/** @typedef {import("./dash-util.js").Stats} Stats */
/** @typedef {import("./dash-util.js").Alert} Alert */
/** @typedef {import("../../clients/typescript/src/generated/protocol").SystemStatus} SystemStatus */
/** @typedef {import("../../clients/typescript/src/generated/protocol").SystemAlert} SystemAlert */
/** @typedef {import("../../clients/typescript/src/generated/protocol").JobUpdate} JobUpdate */
/** @typedef {import("../../clients/typescript/src/generated/protocol").JobCompleted} JobCompleted */
/** @typedef {import("../../clients/typescript/src/generated/protocol").JobCancelled} JobCancelled */
/** @typedef {{start: number, completed: number[], failed: number[]}} PerMinute */

const SHOWN_RUNNING = 30;
const SHOWN_EVENTS = 12;

export class Overview {
  /** @param {{permissions: Set<string>}} ctx */
  constructor(ctx) {
    this.ctx = ctx;
    /** @type {Map<string, Partial<JobSummary> & {job_id: string}>} */
    this.running = new Map();
    /** @type {PerMinute | null} */
    this.perMinute = null;
    /** @type {Alert[]} */
    this.alerts = [];
    this.seeded = false;
    /** @type {Set<string>} */
    this.asked = new Set();
    setInterval(() => this.loadHour(), 15000);
    setInterval(() => this.pollQueue(), 5000);
    setInterval(() => this.renderRunning(), 1000); // ages move
  }

  /** @param {string} _arg */
  show(_arg) {
    if (!this.seeded) {
      this.seeded = true;
      this.seed().catch(() => { this.seeded = false; }); // the hub may be restarting: next time
    }
    this.drawChart();
  }

  hide() {}

  /** The state at load, from the hub (Redis): running jobs, recent ends, the hour's minutes. */
  async seed() {
    const load = async (/** @type {string} */ status, /** @type {number} */ limit) => {
      try {
        return /** @type {JobSummary[]} */ ((await api("/api/jobs?status=" + status + "&limit=" + limit)).jobs);
      } catch (e) {
        if (e instanceof ApiError && (e.status === 401 || e.status === 403)) return [];
        throw e;
      }
    };
    const [running, failed, completed] = await Promise.all([
      load(RUNNING.join(","), 200),
      load("failed,timeout", SHOWN_EVENTS),
      load("completed", SHOWN_EVENTS),
    ]);
    for (const job of running) if (!this.running.has(job.job_id)) this.running.set(job.job_id, job);
    this.renderRunning();
    failed.reverse().forEach((j) => this.addEnded("failed", j));
    completed.reverse().forEach((j) => this.addEnded("completed", j));
    await Promise.all([this.loadHour(), this.pollQueue()]);
  }

  // --- live ------------------------------------------------------------------------------------

  /** @param {JobUpdate | JobCompleted | JobCancelled} m */
  jobEvent(m) {
    const id = m.job_id;
    if (m.type === "job_completed") {
      const job = this.running.get(id) || { job_id: id };
      this.running.delete(id);
      this.addEnded("completed", {
        ...job, job_type: m.job_type || job.job_type, worker_id: m.worker_id || job.worker_id,
        status: "completed", completed_at: m.timestamp,
        started_at: m.processing_time != null ? m.timestamp - m.processing_time * 1000 : job.started_at,
      });
      this.bump("completed");
    } else if (m.type === "job_cancelled") {
      this.running.delete(id);
    } else if (RUNNING.includes(m.status)) {
      const job = this.running.get(id) || { job_id: id, progress: 0, started_at: m.timestamp };
      Object.assign(job, { status: m.status });
      if (m.worker_id) job.worker_id = text(m.worker_id);
      if (m.job_type) job.job_type = m.job_type;
      if (m.progress != null) job.progress = m.progress;
      if (m.message) job.message = m.message;
      this.running.set(id, job);
    } else {
      const job = this.running.get(id) || { job_id: id };
      this.running.delete(id);
      if (m.status === "failed" || m.status === "timeout") {
        this.addEnded("failed", { ...job, status: m.status, error: m.error, completed_at: m.timestamp });
        this.bump("failed");
      }
    }
    this.renderRunning();
  }

  renderRunning() {
    const box = $("running");
    const jobs = [...this.running.values()].sort((a, b) => (a.started_at || 0) - (b.started_at || 0));
    const shown = jobs.slice(0, SHOWN_RUNNING);
    shown.forEach((job) => { if (!job.job_type) this.lookUp(job.job_id); });
    const rows = shown.map((job) => {
      const pct = Math.max(0, Math.min(100, Number(job.progress) || 0));
      const bar = h("div", { className: "bar", dataset: { progress: pct } });
      bar.style.width = pct + "%";
      return h("a", { className: "job", href: "#/job/" + encodeURIComponent(job.job_id), dataset: { jobId: job.job_id } },
        h("span", { className: "label" }, h("code", null, shortId(job.job_id)), " ", text(job.job_type),
          h("span", { className: "muted" }, " · ", text(job.worker_id || "?"))),
        h("div", { className: "track" }, bar),
        h("span", { className: "pct" }, Math.round(pct) + "%"),
        h("span", { className: "muted age" }, job.started_at ? ago(job.started_at) : ""));
    });
    box.replaceChildren(...rows);
    const more = jobs.length - rows.length;
    $("running-more").textContent = more > 0 ? "and " + more + " more" : "";
    $("no-running").style.display = jobs.length ? "none" : "";
  }

  /** A job seen first by an event (job_update names no type): its summary, once. @param {string} jobId */
  async lookUp(jobId) {
    if (this.asked.has(jobId)) return;
    this.asked.add(jobId);
    if (this.asked.size > 10000) this.asked.clear();
    try {
      const [job] = /** @type {JobSummary[]} */ ((await api("/api/jobs?q=" + encodeURIComponent(jobId))).jobs);
      const running = this.running.get(jobId);
      if (job && running) {
        running.job_type = job.job_type;
        if (!running.started_at && job.started_at) running.started_at = job.started_at;
        this.renderRunning();
      }
    } catch (e) {
      /* shown without its type */
    }
  }

  /** @param {"failed" | "completed"} list @param {Partial<JobSummary> & {job_id: string}} job */
  addEnded(list, job) {
    const ul = $(list);
    const took = job.completed_at && job.started_at ? " in " + duration(job.completed_at - job.started_at) : "";
    ul.prepend(h("li", { dataset: { jobId: job.job_id } },
      h("a", { href: "#/job/" + encodeURIComponent(job.job_id) }, h("code", null, shortId(job.job_id))),
      " ", text(job.job_type), " ", list === "failed" ? badge(job.status || "failed") : "",
      h("span", { className: "muted" }, [job.worker_id ? " by " + text(job.worker_id) : "", took, job.completed_at ? " · " + ago(job.completed_at) : ""].join("")),
      list === "failed" && job.error ? h("div", { className: "error-line" }, text(job.error)) : null));
    while (ul.children.length > SHOWN_EVENTS) ul.lastChild && ul.lastChild.remove();
    $("no-" + list).style.display = "none";
  }

  // --- stats, health, alerts -----------------------------------------------------------------

  /** @param {Stats} stats */
  stats(stats) {
    if (stats.jobs) {
      const c = stats.jobs;
      $("kpi-queued").textContent = text(c.queued || 0);
      $("kpi-running").textContent = text((c.assigned || 0) + (c.accepted || 0) + (c.in_progress || 0));
      $("job-counts").replaceChildren(...Object.entries(c).map(([k, v]) =>
        h("a", { className: "count", href: "#/jobs?status=" + k, dataset: { status: k } }, badge(k), h("b", null, text(v)))));
    }
    if (stats.throughput) {
      const t = stats.throughput;
      $("kpi-done").textContent = text(t.completed_last_hour || 0);
      $("kpi-failed").textContent = text(t.failed_last_hour || 0);
      $("throughput-text").textContent = (t.completed_last_minute || 0) + " completed in the last minute" +
        (t.avg_processing_time != null ? " · mean run " + duration(t.avg_processing_time * 1000) : "");
    }
    if (stats.system) {
      const c = stats.system.connections || {};
      $("summary").textContent = (stats.system.hubs || 1) + " hub(s) · " + (c.worker || 0) + " worker conn · " +
        (c.monitor || 0) + " monitors · " + (c.job_client || 0) + " clients";
      if (stats.system.system_health) this.health(stats.system.system_health);
      if (stats.system.alerts) this.alertsInForce(stats.system.alerts);
    }
  }

  /** @param {SystemStatus} m */
  status(m) {
    this.health(m.system_health);
    this.alertsInForce(m.alerts || []);
    $("kpi-workers").textContent = text(m.active_workers);
  }

  /** @param {string} health */
  health(health) {
    $("health").textContent = "health: " + text(health);
    $("health").className = "pill s-" + text(health).replace(/[^a-z]/g, "");
  }

  /** The alerts in force, as the hub says (they clear when their condition ends). @param {Alert[]} alerts */
  alertsInForce(alerts) {
    this.alerts = alerts.slice();
    this.renderAlerts();
  }

  /** @param {SystemAlert} m */
  alert(m) {
    if (m.details && m.details.cleared) {
      const resolved = text(m.message).replace(/^resolved: /, "");
      this.alerts = this.alerts.filter((a) => !(a.category === m.category && resolved.startsWith(a.message + " (")));
    } else if (!this.alerts.some((a) => a.category === m.category && a.message === m.message)) {
      this.alerts.push({ severity: m.severity, category: m.category, message: m.message, timestamp: m.timestamp });
    }
    this.renderAlerts();
  }

  renderAlerts() {
    $("alerts").replaceChildren(...this.alerts.slice().reverse().map((a) =>
      h("li", { className: "sev-" + text(a.severity) }, h("span", { className: "muted" }, ago(a.timestamp), " "),
        "[" + text(a.severity) + "/" + text(a.category) + "] " + text(a.message))));
    $("no-alerts").style.display = this.alerts.length ? "none" : "";
  }

  // --- the last hour, per minute (from Redis) -------------------------------------------------

  async loadHour() {
    try {
      this.perMinute = (await api("/api/stats/last-hour")).per_minute;
    } catch (e) {
      return; // no view_system_stats: the chart stays empty
    }
    this.drawChart();
  }

  /** A live completion or failure counts in the current minute until the next load. @param {"completed" | "failed"} kind */
  bump(kind) {
    const p = this.perMinute;
    if (!p) return;
    const i = Math.floor((Date.now() - p.start) / 60000);
    if (i >= 0 && i < p[kind].length) p[kind][i] += 1;
    this.drawChart();
  }

  drawChart() {
    const canvas = /** @type {HTMLCanvasElement} */ ($("throughput"));
    const ctx = canvas.getContext("2d");
    const p = this.perMinute;
    if (!ctx || !p) return;
    const width = canvas.clientWidth || 600, height = 150;
    if (canvas.width !== width) canvas.width = width;
    canvas.height = height;
    const n = p.completed.length, top = 18, base = height - 16;
    const max = Math.max(1, ...p.completed.map((c, i) => c + p.failed[i]));
    const w = (width - 40) / n;
    ctx.clearRect(0, 0, width, height);
    ctx.font = "11px system-ui, sans-serif";
    for (let i = 0; i < n; i += 1) {
      const ok = (p.completed[i] / max) * (base - top), bad = (p.failed[i] / max) * (base - top);
      ctx.fillStyle = "#3fb950";
      ctx.fillRect(36 + i * w + 1, base - ok, Math.max(1, w - 2), ok);
      ctx.fillStyle = "#f85149";
      ctx.fillRect(36 + i * w + 1, base - ok - bad, Math.max(1, w - 2), bad);
    }
    ctx.fillStyle = "#8a96a3";
    ctx.fillText(String(max), 4, top + 8);
    ctx.fillText("0", 4, base);
    ctx.fillText("−60 min", 36, height - 3);
    ctx.fillText("now", width - 28, height - 3);
    ctx.fillText("jobs per minute: completed (green), failed (red)", 36, 11);
  }

  /** Claimable jobs per priority band, from /metrics (unbound monitors only, D19). */
  async pollQueue() {
    const headers = /** @type {Record<string, string>} */ ({});
    const token = sessionStorage.getItem("empq-token");
    if (token) headers.Authorization = "Bearer " + token;
    try {
      const response = await fetch("/metrics", { headers: headers });
      if (!response.ok) {
        $("queue-card").style.display = "none";
        return;
      }
      const rows = [];
      for (const line of (await response.text()).split("\n")) {
        const m = /^empq_queue_depth\{priority_band="([^"]+)"\} ([0-9.e+]+)/.exec(line);
        if (m) rows.push([m[1], Number(m[2])]);
      }
      rows.sort((a, b) => parseInt(String(b[0]), 10) - parseInt(String(a[0]), 10));
      $("queue").replaceChildren(...rows.map(([band, n]) =>
        h("div", { className: "count", dataset: { band: band } }, h("span", null, "priority " + band), h("b", null, text(n)))));
    } catch (e) {
      /* the hub may be restarting */
    }
  }
}
