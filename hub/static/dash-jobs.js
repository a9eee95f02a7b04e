// @ts-check
// The jobs view: every job the token may see, paged from Redis with filters (status, job type,
// customer, worker, time range, id), a virtual list (only the rows in view are in the page, so
// 10,000 loaded jobs cost what 40 do), live changes from job events, bulk cancel by filter, and
// a job's detail beside the list (dash-detail.js).

import {
  $, ApiError, CANCELLABLE, RUNNING, STATUSES, VirtualList, api, badge, clock, dateTime, duration, explain, h,
  query, shortId, text, toast,
} from "./dash-util.js";
import { Detail } from "./dash-detail.js";

/** @typedef {import("./dash-util.js").JobSummary} JobSummary */
/** @typedef {import("../../clients/typescript/src/generated/protocol").JobUpdate} JobUpdate */
/** @typedef {import("../../clients/typescript/src/generated/protocol").JobCompleted} JobCompleted */
/** @typedef {import("../../clients/typescript/src/generated/protocol").JobCancelled} JobCancelled */

const PAGE = 200; // jobs per request
const ROW = 34; // px per row
const FILTERS = ["status", "job_type", "customer_id", "worker_id", "created_from", "created_to", "q"];
const BULK = 500;

export class JobsView {
  /** @param {{permissions: Set<string>}} ctx */
  constructor(ctx) {
    this.ctx = ctx;
    /** @type {Record<string, string>} */
    this.filters = {};
    /** @type {string | null} */
    this.filterKey = null;
    /** @type {JobSummary[]} */
    this.items = [];
    /** @type {Map<string, JobSummary>} */
    this.byId = new Map();
    /** @type {string | null} */
    this.cursor = null;
    this.done = false;
    this.loading = false;
    this.stalled = false; // a sparse filter found nothing in the last stretch: go on when asked only
    this.generation = 0; // a new listing makes older answers moot
    this.newJobs = 0;
    /** @type {string | null} */
    this.bulkCursor = null;
    this.selected = "";
    this.list = new VirtualList($("jobs"), ROW, (job) => this.row(job), () => this.more());
    this.detail = new Detail(() => this.close(), (original, retry) => {
      const job = this.byId.get(original);
      if (job) job.retried_as = retry;
      this.list.refresh();
    });
    this.buildFilters();
  }

  // --- routing -----------------------------------------------------------------------------------

  /** @param {string} arg the query part of #/jobs?… */
  show(arg) {
    this.detail.hide();
    this.selected = "";
    this.apply(new URLSearchParams(arg));
  }

  hide() {}

  /** #/job/<id>: the list (as last filtered) with the job's detail beside it. @param {string} jobId */
  showJob(jobId) {
    if (this.filterKey === null) this.apply(new URLSearchParams());
    this.selected = jobId;
    this.list.refresh();
    this.detail.open(jobId);
  }

  close() {
    location.hash = "#/jobs" + query(this.filters);
  }

  /** @param {URLSearchParams} params */
  apply(params) {
    /** @type {Record<string, string>} */
    const filters = {};
    for (const name of FILTERS) {
      const v = params.get(name);
      if (v) filters[name] = v;
    }
    this.filters = filters;
    this.fillInputs();
    const key = JSON.stringify(filters);
    if (key !== this.filterKey) {
      this.filterKey = key;
      this.reload();
    }
  }

  // --- filters ---------------------------------------------------------------------------------

  buildFilters() {
    $("f-status").replaceChildren(...STATUSES.map((s) => {
      const box = h("input", { type: "checkbox", value: s, on: { change: () => this.readInputs() } });
      return h("label", { className: "chip" }, box, badge(s));
    }));
    for (const id of ["f-type", "f-customer", "f-worker", "f-q"]) {
      let timer = 0;
      $(id).addEventListener("input", () => {
        clearTimeout(timer);
        timer = setTimeout(() => this.readInputs(), 350);
      });
    }
    for (const id of ["f-from", "f-to"]) $(id).addEventListener("change", () => this.readInputs());
    $("f-clear").addEventListener("click", () => { location.hash = "#/jobs"; });
    $("jobs-new").addEventListener("click", () => this.reload());
    $("jobs-more").addEventListener("click", () => this.more(true));
    $("bulk-open").addEventListener("click", () => this.openBulk());
    $("bulk-go").addEventListener("click", () => this.bulkCancel());
    $("bulk-keep").addEventListener("click", () => { $("bulk-confirm").hidden = true; });
  }

  /** @param {string} id */
  input(id) {
    return /** @type {HTMLInputElement} */ ($(id));
  }

  fillInputs() {
    const f = this.filters;
    const statuses = (f.status || "").split(",");
    $("f-status").querySelectorAll("input").forEach((box) => { box.checked = statuses.includes(box.value); });
    this.input("f-type").value = f.job_type || "";
    this.input("f-customer").value = f.customer_id || "";
    this.input("f-worker").value = f.worker_id || "";
    this.input("f-q").value = f.q || "";
    this.input("f-from").value = f.created_from ? localInput(Number(f.created_from)) : "";
    this.input("f-to").value = f.created_to ? localInput(Number(f.created_to)) : "";
  }

  readInputs() {
    const checked = [...$("f-status").querySelectorAll("input")].filter((b) => b.checked).map((b) => b.value);
    const from = this.input("f-from").value, to = this.input("f-to").value;
    const params = {
      status: checked.join(","),
      job_type: this.input("f-type").value.trim(),
      customer_id: this.input("f-customer").value.trim(),
      worker_id: this.input("f-worker").value.trim(),
      created_from: from ? String(new Date(from).getTime()) : "",
      created_to: to ? String(new Date(to).getTime() + 59999) : "", // the whole minute
      q: this.input("f-q").value.trim(),
    };
    location.hash = "#/jobs" + query(params);
  }

  // --- loading -------------------------------------------------------------------------------------

  reload() {
    this.generation += 1;
    this.items = [];
    this.byId.clear();
    this.cursor = null;
    this.done = false;
    this.loading = false;
    this.stalled = false;
    this.newJobs = 0;
    $("jobs-new").hidden = true;
    $("jobs").scrollTop = 0;
    this.list.set(this.items);
    this.more();
  }

  /**
   * The next page (and the next, up to 10 requests, while a sparse filter finds nothing in the
   * stretches of the index each request looks at). Scrolling asks for more by itself unless the
   * last call found nothing: then the reader asks (each request costs the hub a bounded scan).
   * @param {boolean} [asked]
   */
  async more(asked) {
    if (this.loading || this.done || (this.stalled && !asked)) return;
    this.loading = true;
    const generation = this.generation;
    $("jobs-more").hidden = true;
    this.say("loading…");
    try {
      let found = 0;
      for (let round = 0; round < 10; round += 1) {
        /** @type {import("./dash-util.js").JobPage} */
        const page = await api("/api/jobs" + query({ ...this.filters, limit: PAGE, cursor: this.cursor }));
        if (generation !== this.generation) return;
        for (const job of page.jobs) {
          if (this.byId.has(job.job_id)) continue;
          this.byId.set(job.job_id, job);
          this.items.push(job);
          found += 1;
        }
        this.cursor = page.next_cursor;
        this.done = page.next_cursor === null;
        if (page.jobs.length || this.done) break;
      }
      this.stalled = !this.done && found === 0;
      this.list.set(this.items);
      this.say(this.stalled ? "No match in the last " + (10 * 5000).toLocaleString() + " jobs looked at." : "");
      $("jobs-more").hidden = !this.stalled;
    } catch (e) {
      if (generation === this.generation) this.say(explain(e), true);
      this.done = e instanceof ApiError && e.status < 500;
    } finally {
      if (generation === this.generation) this.loading = false;
    }
  }

  /** @param {string} message @param {boolean} [bad] */
  say(message, bad) {
    const n = this.items.length;
    const count = n ? n.toLocaleString() + " job" + (n === 1 ? "" : "s") + (this.done ? "" : " so far, scroll for more") : this.done ? "No job matches." : "";
    $("jobs-count").textContent = count;
    $("jobs-status").textContent = message;
    $("jobs-status").className = bad ? "error-line" : "muted";
  }

  /** @param {JobSummary} job */
  row(job) {
    const running = RUNNING.includes(job.status);
    const took = job.started_at ? (job.completed_at || (running ? Date.now() : 0)) - job.started_at : null;
    const note = job.error
      ? h("span", { className: "error-line", title: job.error }, job.error)
      : job.retried_as ? h("span", { className: "muted" }, "retried as " + shortId(job.retried_as))
        : job.retry_of ? h("span", { className: "muted" }, "retry of " + shortId(job.retry_of)) : "";
    const progress = running ? h("div", { className: "track" }, h("div", { className: "bar" })) : "";
    if (progress) /** @type {HTMLElement} */ (progress.firstChild).style.width = Math.max(0, Math.min(100, job.progress)) + "%";
    return h("div", {
      className: "row" + (job.job_id === this.selected ? " selected" : ""), role: "row",
      dataset: { jobId: job.job_id, status: job.status }, on: { click: () => { location.hash = "#/job/" + encodeURIComponent(job.job_id); } },
    },
    h("span", null, badge(job.status)),
    h("code", { title: job.job_id }, shortId(job.job_id)),
    h("span", { className: "ellipsis", title: job.job_type }, job.job_type),
    h("span", { className: "ellipsis wide-only" }, text(job.customer_id)),
    h("span", { className: "ellipsis wide-only" }, text(job.worker_id)),
    h("span", null, progress || (job.retry_count ? "retries " + job.retry_count : "")),
    h("span", { title: dateTime(job.created_at) }, clock(job.created_at)),
    h("span", { className: "wide-only" }, took != null && took >= 0 ? duration(took) : ""),
    note);
  }

  // --- live --------------------------------------------------------------------------------------

  /** @param {JobUpdate | JobCompleted | JobCancelled} m */
  jobEvent(m) {
    const job = this.byId.get(m.job_id);
    if (job) {
      job.status = m.status;
      if (m.type === "job_completed") {
        job.progress = 100;
        job.completed_at = m.timestamp;
        if (m.worker_id) job.worker_id = m.worker_id;
      } else if (m.type === "job_cancelled") {
        job.completed_at = m.cancelled_at;
      } else {
        if (m.progress != null) job.progress = m.progress;
        if (m.worker_id) job.worker_id = m.worker_id;
        if (m.error) job.error = m.error;
        if (m.retry_count != null) job.retry_count = m.retry_count;
        if (m.status === "accepted" && !job.started_at) job.started_at = m.timestamp;
        if (m.status === "failed" || m.status === "timeout") job.completed_at = m.timestamp;
      }
      this.list.refresh();
    } else if (m.type === "job_update" && m.status === "queued" && !m.previous_status) {
      this.newJobs += 1; // a new submission: offered, not pushed into the list under the reader's eyes
      $("jobs-new").textContent = this.newJobs.toLocaleString() + " new job" + (this.newJobs === 1 ? "" : "s") + " — show";
      $("jobs-new").hidden = false;
    }
    if (m.job_id === this.detail.jobId) this.detail.changed();
  }

  // --- bulk cancel -------------------------------------------------------------------------------

  openBulk() {
    const f = this.filters;
    const statuses = f.status ? f.status.split(",").filter((s) => CANCELLABLE.includes(s)) : CANCELLABLE;
    const criteria = Object.entries(f).filter(([k]) => k !== "status").map(([k, v]) => k + " = " + v);
    $("bulk-text").textContent = statuses.length
      ? "Cancel up to " + BULK + " " + statuses.join("/") + " jobs" + (criteria.length ? " where " + criteria.join(", ") : " (no other filter: every such job)") + "?"
      : "None of the statuses chosen can be cancelled.";
    /** @type {HTMLButtonElement} */ ($("bulk-go")).disabled = !statuses.length;
    this.bulkCursor = null;
    $("bulk-confirm").hidden = false;
  }

  async bulkCancel() {
    const button = /** @type {HTMLButtonElement} */ ($("bulk-go"));
    button.disabled = true;
    try {
      /** @type {Record<string, unknown>} */
      const body = { reason: "cancelled from the dashboard", limit: BULK, cursor: this.bulkCursor };
      for (const [k, v] of Object.entries(this.filters)) body[k] = k.startsWith("created_") ? Number(v) : v;
      const result = await api("/api/jobs/bulk-cancel", { method: "POST", body: body });
      const n = result.cancelled.length;
      toast("Cancelled " + n + " job" + (n === 1 ? "" : "s") + (result.skipped.length ? " (" + result.skipped.length + " had ended)" : ""));
      this.bulkCursor = result.next_cursor;
      if (result.next_cursor) {
        $("bulk-text").textContent = "Cancelled " + n + ". More jobs may match: go on?";
        button.disabled = false;
      } else {
        $("bulk-confirm").hidden = true;
      }
      $("bulk-result").textContent = "Last bulk cancel: " + n + " cancelled.";
      this.reload();
    } catch (e) {
      toast(explain(e), "bad");
      button.disabled = false;
    }
  }
}

/** A datetime-local input's value for a time. @param {number} ms */
function localInput(ms) {
  const d = new Date(ms - new Date(ms).getTimezoneOffset() * 60000);
  return d.toISOString().slice(0, 16);
}
