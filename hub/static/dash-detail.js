// @ts-check
// A job in full: why it failed first, then what it is, its timeline (every transition with its
// time and worker, recorded in Redis by the scripts), its webhook deliveries and their attempts
// (D21), payload, requirements, result; copyable as JSON; retry and cancel for monitors with
// manage_jobs (the hub checks again).

import {
  $, CANCELLABLE, RETRYABLE, api, badge, dateTime, duration, explain, h, shortId, text, toast,
} from "./dash-util.js";

/** @typedef {import("./dash-util.js").JobDetail} JobDetail */
/** @typedef {import("./dash-util.js").TimelineStep} TimelineStep */
/** @typedef {import("./dash-util.js").WebhookDelivery} WebhookDelivery */

const WEBHOOK_UNSETTLED = ["pending", "retrying"];

/** What each timeline event means, said for an operator. @type {Record<string, (s: TimelineStep) => string>} */
const SAID = {
  submit: (s) => (s.note ? "Submitted again, as a retry of " + shortId(s.note) : "Submitted"),
  claim: (s) => "Claimed by " + text(s.worker_id),
  accept: (s) => "Accepted by " + text(s.worker_id),
  progress: (s) => "Running on " + text(s.worker_id),
  complete: (s) => "Completed by " + text(s.worker_id),
  retry: (s) => "Failed on " + text(s.worker_id) + "; retry scheduled",
  fail: (s) => "Failed on " + text(s.worker_id),
  cancel: (s) => "Cancelled" + (s.worker_id ? " (" + s.worker_id + " was running it)" : ""),
  claim_expired: (s) => text(s.worker_id) + " did not accept in time: back in the queue",
  time_limit: (s) => "Timed out on " + text(s.worker_id),
  release: (s) => text(s.worker_id) + " left: back in the queue",
  lost: (s) => text(s.worker_id) + " was lost and no retries were left",
  retried: (s) => "Retried as " + shortId(text(s.note)),
  end: (s) => "Ended " + s.status,
};

export class Detail {
  /**
   * @param {() => void} onClose
   * @param {(original: string, retry: string) => void} onRetried
   */
  constructor(onClose, onRetried) {
    this.box = $("detail");
    this.onClose = onClose;
    this.onRetried = onRetried;
    /** @type {string | null} */
    this.jobId = null;
    /** @type {JobDetail | null} */
    this.job = null;
    this.timer = 0;
    this.webhookTimer = 0;
  }

  /** @param {string} jobId */
  async open(jobId) {
    this.jobId = jobId;
    this.box.hidden = false;
    document.body.classList.add("detail-open");
    if (!this.job || this.job.job_id !== jobId) this.box.replaceChildren(h("p", { className: "muted" }, "loading " + jobId + "…"));
    try {
      const job = /** @type {JobDetail} */ (await api("/api/jobs/" + encodeURIComponent(jobId) + "/detail"));
      if (this.jobId === jobId) this.render(job);
    } catch (e) {
      if (this.jobId === jobId) this.box.replaceChildren(this.header(jobId, null), h("p", { className: "error-line" }, explain(e)));
    }
  }

  hide() {
    clearTimeout(this.webhookTimer);
    this.jobId = null;
    this.job = null;
    this.box.hidden = true;
    document.body.classList.remove("detail-open");
  }

  /** A live event about the job shown: read it again (at most every 300 ms). */
  changed() {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => { if (this.jobId) this.open(this.jobId); }, 300);
  }

  /** @param {string} jobId @param {JobDetail | null} job */
  header(jobId, job) {
    const actions = h("div", { className: "actions" });
    if (job) {
      actions.append(h("button", { id: "copy-json", type: "button", on: { click: () => this.copy() } }, "Copy JSON"));
      if (RETRYABLE.includes(job.status) && !job.retried_as) {
        actions.append(h("button", { id: "retry", type: "button", className: "manage primary", on: { click: () => this.retry() } }, "Retry"));
      }
      if (CANCELLABLE.includes(job.status)) {
        actions.append(h("button", { id: "cancel-job", type: "button", className: "manage danger", on: { click: () => this.cancel() } }, "Cancel"));
      }
    }
    actions.append(h("button", { type: "button", className: "close", title: "Close", on: { click: this.onClose } }, "×"));
    return h("div", { className: "detail-head" }, job ? badge(job.status) : "", h("h2", null, h("code", null, jobId)), actions);
  }

  /** @param {JobDetail} job */
  render(job) {
    this.job = job;
    /** @type {(Node | null)[]} */
    const parts = [this.header(job.job_id, job)];
    if (job.retried_as) parts.push(link("Retried as ", job.retried_as, "retried-as"));
    if (job.retry_of) parts.push(link("Retry of ", job.retry_of, "retry-of"));
    if (job.error || job.cancel_reason) {
      parts.push(h("div", { id: "failure", className: "failure" },
        h("h3", null, job.status === "cancelled" ? "Why it was cancelled" : job.status === "queued" ? "Last attempt failed" : "Why it failed"),
        h("p", { className: "reason" }, text(job.error || job.cancel_reason)),
        job.error_details != null ? h("pre", null, JSON.stringify(job.error_details, null, 2)) : null));
    }
    const started = job.started_at, ended = job.completed_at;
    /** @type {[string, unknown][]} */
    const facts = [
      ["Job type", job.job_type], ["Priority", job.priority], ["Customer", job.customer_id], ["Client", job.client_id],
      ["Worker", job.worker_id], ["Attempts", (job.retry_count || 0) + 1 + " (retries " + job.retry_count + " of " + job.max_retries + ")"],
      ["Queue position", job.position], ["Progress", job.progress ? Math.round(job.progress) + "%" : null],
      ["Message", job.message], ["Time limit", job.timeout_seconds != null ? duration(job.timeout_seconds * 1000) : null],
      ["Created", dateTime(job.created_at)], ["Started", dateTime(started)], ["Ended", dateTime(ended)],
      ["Waited", started ? duration(started - job.created_at) : null],
      ["Ran", started && ended ? duration(ended - started) : null],
      ["Next retry", job.retry_at ? dateTime(job.retry_at) : null],
    ];
    parts.push(h("dl", { className: "facts" }, ...facts.filter(([, v]) => v != null && v !== "")
      .flatMap(([k, v]) => [h("dt", null, k), h("dd", null, text(v))])));
    parts.push(h("h3", null, "Timeline"), this.timeline(job.timeline));
    if (job.webhook_target) parts.push(h("h3", null, "Webhook deliveries"), webhooks(job));
    for (const [name, value] of /** @type {[string, unknown][]} */ ([["Payload", job.payload], ["Requirements", job.requirements], ["Result", job.result], ["Metadata", job.metadata]])) {
      if (value != null) parts.push(h("details", { open: name !== "Metadata" }, h("summary", null, name), h("pre", null, JSON.stringify(value, null, 2))));
    }
    this.box.replaceChildren(...parts.filter((p) => p != null));
    this.watchWebhooks(job);
  }

  /**
   * Attempts are not job events (nothing live says one was made): while a delivery is pending or
   * retrying, read the job again soon after its next attempt is due (1 to 30 s).
   * @param {JobDetail} job
   */
  watchWebhooks(job) {
    clearTimeout(this.webhookTimer);
    const open = (job.webhook_deliveries || []).filter((d) => WEBHOOK_UNSETTLED.includes(d.state));
    if (!open.length) return;
    const due = Math.min(...open.map((d) => (d.next_attempt_at ? d.next_attempt_at - Date.now() + 1000 : 1000)));
    this.webhookTimer = setTimeout(() => { if (this.jobId === job.job_id) this.open(job.job_id); }, Math.min(30000, Math.max(1000, due)));
  }

  /** @param {TimelineStep[]} steps */
  timeline(steps) {
    let previous = 0;
    return h("ol", { id: "timeline", className: "timeline" }, ...steps.map((s) => {
      const said = (SAID[s.event] || ((/** @type {TimelineStep} */ t) => t.event + " → " + t.status))(s);
      const delta = previous ? "+" + duration(s.at - previous) : "";
      previous = s.at;
      const note = s.note && s.event !== "submit" && s.event !== "retried" ? h("div", { className: s.event === "cancel" ? "muted" : "error-line" }, s.note) : null;
      const target = s.event === "retried" || (s.event === "submit" && s.note) ? s.note : null;
      return h("li", { className: "st-" + text(s.status).replace(/[^a-z_]/g, ""), dataset: { event: s.event } },
        h("span", { className: "when", title: dateTime(s.at) }, dateTime(s.at).slice(11), h("small", null, " ", delta)),
        h("span", { className: "what" }, said, target ? h("a", { href: "#/job/" + encodeURIComponent(target) }, " open") : null),
        badge(s.status), note);
    }));
  }

  async copy() {
    const json = JSON.stringify(this.job, null, 2);
    try {
      await navigator.clipboard.writeText(json);
    } catch (e) {
      const area = h("textarea", { value: json });
      document.body.append(area);
      /** @type {HTMLTextAreaElement} */ (area).select();
      document.execCommand("copy");
      area.remove();
    }
    toast("Copied the job as JSON");
  }

  async retry() {
    const job = this.job;
    if (!job) return;
    try {
      const accepted = await api("/api/jobs/" + encodeURIComponent(job.job_id) + "/retry", { method: "POST" });
      toast("Retried as " + accepted.job_id);
      this.onRetried(job.job_id, accepted.job_id);
      location.hash = "#/job/" + encodeURIComponent(accepted.job_id);
    } catch (e) {
      toast(explain(e), "bad");
    }
  }

  async cancel() {
    const job = this.job;
    if (!job) return;
    try {
      await api("/api/jobs/" + encodeURIComponent(job.job_id) + "/cancel", { method: "POST", body: { reason: "cancelled from the dashboard" } });
      toast("Cancelled " + job.job_id);
      this.open(job.job_id);
    } catch (e) {
      toast(explain(e), "bad");
    }
  }
}

/**
 * Where the job's webhooks go (scheme://host:port), the events it wants, then each delivery: its
 * event, state and webhook-id, when the next attempt is due, and every attempt (time, status code,
 * how long, error). The error may quote the receiver's reason phrase: text, like everything else.
 * @param {JobDetail} job
 */
function webhooks(job) {
  const deliveries = job.webhook_deliveries || [];
  const head = h("p", { id: "webhook-target", className: "muted" }, "To ", h("code", null, text(job.webhook_target)),
    " · events: " + (job.webhook_events || []).join(", "));
  if (!deliveries.length) return h("div", { className: "webhooks" }, head, h("p", { id: "webhooks", className: "muted" }, "No event sent yet"));
  return h("div", { className: "webhooks" }, head, h("ol", { id: "webhooks" }, ...deliveries.map(delivery)));
}

/** @param {WebhookDelivery} d */
function delivery(d) {
  const next = d.next_attempt_at ? h("span", { className: "muted", title: dateTime(d.next_attempt_at) }, "next attempt " + dateTime(d.next_attempt_at).slice(11)) : null;
  const attempts = d.attempts.length
    ? h("table", { className: "attempts" },
      h("thead", null, h("tr", null, ...["#", "At", "Status", "Took", "Error"].map((c) => h("th", null, c)))),
      h("tbody", null, ...d.attempts.map((a) => h("tr", { dataset: { attempt: a.attempt, status: a.status_code == null ? "" : a.status_code } },
        h("td", { className: "num" }, a.attempt),
        h("td", { title: dateTime(a.at) }, dateTime(a.at).slice(11)),
        h("td", { className: a.status_code != null && a.status_code < 300 ? "ok-line" : "error-line" }, a.status_code == null ? "no answer" : a.status_code),
        h("td", { className: "num" }, duration(a.duration_ms)),
        h("td", { className: "error-line" }, text(a.error))))))
    : h("p", { className: "muted" }, "Not attempted yet" + (d.queued_at ? " (queued " + dateTime(d.queued_at).slice(11) + ")" : ""));
  return h("li", { dataset: { webhookId: d.webhook_id, event: d.event, state: d.state } },
    h("div", { className: "webhook-head" }, h("strong", null, text(d.event)), badge(d.state), h("code", { className: "muted" }, text(d.webhook_id)), next),
    attempts);
}

/** @param {string} label @param {string} jobId @param {string} id */
function link(label, jobId, id) {
  return h("p", { id: id, className: "link-line" }, label, h("a", { href: "#/job/" + encodeURIComponent(jobId) }, h("code", null, jobId)));
}
