// empq dashboard: a monitor on the hub's WebSocket, plus /metrics for the queue by priority
// band. No build step: plain ES2017.
//
// Everything a peer sends (worker ids, telemetry, job types, errors) is data: it reaches the page
// only as text (textContent, DOM nodes built with h()), never as markup. The page is served with
// a Content-Security-Policy that allows no inline script. The monitor token given as ?token= is
// moved to sessionStorage and removed from the address bar at load.
"use strict";
(function () {
  const params = new URLSearchParams(location.search);
  if (params.has("token")) {
    sessionStorage.setItem("empq-token", params.get("token"));
    params.delete("token");
    const rest = params.toString();
    history.replaceState(null, "", location.pathname + (rest ? "?" + rest : "") + location.hash);
  }
  const token = sessionStorage.getItem("empq-token");
  const state = { workers: [], running: new Map(), completions: [], seq: 0 };
  const $ = (id) => document.getElementById(id);
  const time = (ms) => (ms ? new Date(ms).toLocaleTimeString() : "");
  const text = (v) => (v == null ? "" : typeof v === "object" ? JSON.stringify(v) : String(v));
  // h("td", {className: "x", dataset: {jobId: id}}, child, "text", ...): a DOM node; strings become text nodes
  function h(tag, props) {
    const node = document.createElement(tag);
    Object.entries(props || {}).forEach(([k, v]) => {
      if (k === "dataset") Object.entries(v).forEach(([dk, dv]) => { node.dataset[dk] = text(dv); });
      else node[k] = v;
    });
    for (let i = 2; i < arguments.length; i += 1) {
      const child = arguments[i];
      if (child == null || child === false) continue;
      node.append(child instanceof Node ? child : text(child));
    }
    return node;
  }
  const code = (id) => h("code", null, text(id).slice(0, 16));
  let ws = null;

  function send(type, fields) {
    state.seq += 1;
    ws.send(JSON.stringify(Object.assign({ type: type, id: "dash-" + state.seq, timestamp: Date.now() }, fields || {})));
  }

  async function connect() {
    // always this hub's own WebSocket: the page sends the monitor token there, nowhere else
    const cfg = await (await fetch("/dashboard/config.json")).json();
    ws = new WebSocket(cfg.ws_scheme + "://" + location.hostname + ":" + cfg.ws_port + "/");
    ws.onmessage = (ev) => handle(JSON.parse(ev.data));
    ws.onopen = () => { $("conn").textContent = "connected"; $("conn").className = "pill on"; };
    ws.onclose = () => {
      $("conn").textContent = "disconnected, retrying"; $("conn").className = "pill off";
      setTimeout(connect, 2000);
    };
  }

  function handle(m) {
    switch (m.type) {
      case "connection_established":
        send("register_client", Object.assign({
          client_type: "monitor",
          client_id: "dashboard-" + Math.random().toString(36).slice(2, 8),
          permissions: ["view_all_jobs", "view_system_stats", "view_workers"],
        }, token ? { auth_token: token } : {}));
        break;
      case "client_registered":
        send("subscribe_stats", { interval_seconds: 1 });
        send("subscribe_job_notifications", {});
        send("request_stats", {});
        break;
      case "stats_response": case "stats_update":
        renderStats(m.stats); break;
      case "system_status":
        setHealth(m.system_health);
        (m.alerts || []).forEach(addAlert);
        break;
      case "system_alert":
        addAlert({ severity: m.severity, category: m.category, message: m.message, timestamp: m.timestamp });
        break;
      case "job_update": jobUpdate(m); break;
      case "job_completed":
        state.running.delete(m.job_id);
        state.completions.push(Date.now());
        addEvent("completed", m.job_id, text(m.job_type) + " by " + text(m.worker_id || "?") +
          (m.processing_time != null ? " in " + Number(m.processing_time).toFixed(1) + "s" : ""));
        renderRunning(); break;
      case "job_cancelled":
        state.running.delete(m.job_id); renderRunning(); break;
      case "error":
        if (m.error_code === "AUTH_FAILED" || m.error_code === "PERMISSION_DENIED") {
          addAlert({ severity: "error", category: "dashboard", message: m.error, timestamp: m.timestamp });
        }
        break;
    }
  }

  function jobUpdate(m) {
    const s = m.status;
    if (s === "assigned" || s === "accepted" || s === "in_progress") {
      const job = state.running.get(m.job_id) || { job_id: m.job_id, progress: 0 };
      if (m.worker_id) job.worker_id = m.worker_id;
      if (m.job_type) job.job_type = m.job_type;
      if (m.progress != null) job.progress = m.progress;
      if (m.message) job.message = m.message;
      job.status = s;
      state.running.set(m.job_id, job);
    } else if (s === "failed" || s === "timeout") {
      state.running.delete(m.job_id);
      addEvent("failed", m.job_id, text(s) + ": " + text(m.error));
    } else if (s === "queued" || s === "cancelled") {
      state.running.delete(m.job_id);
      if (m.error) addEvent("failed", m.job_id, "retry: " + text(m.error));
    }
    renderRunning();
  }

  function renderRunning() {
    const box = $("running");
    const seen = new Set();
    state.running.forEach((job, id) => {
      seen.add(id);
      let row = box.querySelector('[data-job-id="' + CSS.escape(id) + '"]');
      if (!row) {
        row = h("div", { className: "job", dataset: { jobId: id } },
          h("span", { className: "label" }), h("div", { className: "track" }, h("div", { className: "bar" })),
          h("span", { className: "pct" }));
        box.appendChild(row);
      }
      const pct = Math.max(0, Math.min(100, Number(job.progress) || 0));
      row.querySelector(".label").replaceChildren(code(id), " " + text(job.job_type) + " · " + text(job.worker_id));
      row.querySelector(".bar").style.width = pct + "%";
      row.querySelector(".bar").dataset.progress = pct;
      row.querySelector(".pct").textContent = Math.round(pct) + "%";
    });
    box.querySelectorAll(".job").forEach((row) => { if (!seen.has(row.dataset.jobId)) row.remove(); });
    $("no-running").style.display = state.running.size ? "none" : "";
  }

  function addEvent(list, jobId, what) {
    const ul = $(list);
    ul.prepend(h("li", { dataset: { jobId: jobId } }, time(Date.now()) + " ", code(jobId), " " + what));
    while (ul.children.length > 50) ul.lastChild.remove();
  }

  const alertKeys = new Set();
  function addAlert(a) {
    const key = a.timestamp + a.category + a.message;
    if (alertKeys.has(key)) return;
    alertKeys.add(key);
    $("alerts").prepend(h("li", { className: "sev-" + text(a.severity) },
      time(a.timestamp) + " [" + text(a.severity) + "/" + text(a.category) + "] " + text(a.message)));
    while ($("alerts").children.length > 50) $("alerts").lastChild.remove();
  }

  function renderStats(stats) {
    if (stats.workers && stats.workers.workers) {
      const rows = stats.workers.workers.map((w) => {
        const sys = w.system_info || {};
        const gpu = sys.gpu_memory_total_gb != null || sys.gpu_model
          ? text(sys.gpu_model || "GPU") + (sys.gpu_memory_used_gb != null ? " " + text(sys.gpu_memory_used_gb) + "/" + text(sys.gpu_memory_total_gb) + " GB" : "")
          : Object.keys(sys).slice(0, 3).map((k) => k + "=" + JSON.stringify(sys[k])).join(" ");
        const conns = Object.entries(w.connector_status || {}).map(([k, v]) => k + ":" + text(v && v.status)).join(" ");
        const jobs = h("td");
        (w.current_jobs || []).forEach((j) => jobs.append(code(j), " "));
        return h("tr", { dataset: { workerId: w.worker_id } },
          h("td", null, w.worker_id), h("td", { className: "s-" + text(w.status) }, w.status), jobs,
          h("td", null, w.load != null ? Number(w.load).toFixed(2) : ""), h("td", null, gpu), h("td", null, conns),
          h("td", null, time(w.last_heartbeat)));
      });
      $("workers").querySelector("tbody").replaceChildren(...rows);
      $("no-workers").style.display = rows.length ? "none" : "";
    }
    if (stats.jobs) {
      $("job-counts").querySelector("tbody").replaceChildren(...Object.entries(stats.jobs)
        .map(([k, v]) => h("tr", { dataset: { status: k } }, h("td", null, k), h("td", null, v))));
    }
    if (stats.throughput) {
      const t = stats.throughput;
      $("throughput-text").textContent = (t.completed_last_hour || 0) + " completed, " + (t.failed_last_hour || 0) +
        " failed in the last hour" + (t.avg_processing_time != null ? "; mean " + Number(t.avg_processing_time).toFixed(1) + "s" : "");
    }
    if (stats.system) {
      const c = stats.system.connections || {};
      $("summary").textContent = (stats.system.hubs || 1) + " hub(s) · " + (c.worker || 0) + " worker conn · " + (c.monitor || 0) + " monitors · " + (c.job_client || 0) + " clients";
      if (stats.system.system_health) setHealth(stats.system.system_health);
    }
    drawThroughput();
  }

  function setHealth(health) {
    $("health").textContent = "health: " + text(health);
    $("health").className = "pill s-" + text(health).replace(/[^a-z]/g, "");
  }

  function drawThroughput() {
    const canvas = $("throughput"), ctx = canvas.getContext("2d");
    const now = Date.now(), bucket = 5000, n = 24;
    const counts = new Array(n).fill(0);
    state.completions = state.completions.filter((t) => now - t < n * bucket);
    state.completions.forEach((t) => { const i = n - 1 - Math.floor((now - t) / bucket); if (i >= 0) counts[i] += 1; });
    const max = Math.max(1, ...counts), w = canvas.width / n;
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    ctx.fillStyle = "#58a6ff";
    counts.forEach((c, i) => { const h = (c / max) * (canvas.height - 16); ctx.fillRect(i * w + 1, canvas.height - h, w - 2, h); });
    ctx.fillStyle = "#8a96a3"; ctx.font = "11px sans-serif";
    ctx.fillText("completions per 5 s, last 2 min (max " + max + ")", 4, 11);
  }

  async function pollQueue() {
    try {
      const headers = token ? { Authorization: "Bearer " + token } : {};
      const body = await (await fetch("/metrics", { headers: headers })).text();
      const rows = [];
      body.split("\n").forEach((line) => {
        const m = /^empq_queue_depth\{priority_band="([^"]+)"\} ([0-9.e+]+)/.exec(line);
        if (m) rows.push([m[1], Number(m[2])]);
      });
      rows.sort((a, b) => parseInt(b[0], 10) - parseInt(a[0], 10));
      $("queue").querySelector("tbody").replaceChildren(...rows
        .map(([band, n]) => h("tr", { dataset: { band: band } }, h("td", null, "priority " + band), h("td", null, n))));
    } catch (e) { /* the hub may be restarting */ }
    setTimeout(pollQueue, 2000);
  }

  connect();
  pollQueue();
  setInterval(drawThroughput, 5000);
})();
