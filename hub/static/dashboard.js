// empq dashboard: a monitor on the hub's WebSocket (token from ?token=), plus /metrics for the
// queue by priority band. No build step: plain ES2017.
"use strict";
(function () {
  const params = new URLSearchParams(location.search);
  const token = params.get("token");
  const state = { workers: [], running: new Map(), completions: [], seq: 0 };
  const $ = (id) => document.getElementById(id);
  const esc = (s) => String(s == null ? "" : s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
  const time = (ms) => (ms ? new Date(ms).toLocaleTimeString() : "");
  let ws = null;

  function send(type, fields) {
    state.seq += 1;
    ws.send(JSON.stringify(Object.assign({ type: type, id: "dash-" + state.seq, timestamp: Date.now() }, fields || {})));
  }

  async function connect() {
    let url = params.get("ws");
    if (!url) {
      const cfg = await (await fetch("/dashboard/config.json")).json();
      url = cfg.ws_scheme + "://" + location.hostname + ":" + cfg.ws_port + "/";
    }
    if (token) url += (url.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(token);
    ws = new WebSocket(url);
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
        send("register_client", {
          client_type: "monitor",
          client_id: "dashboard-" + Math.random().toString(36).slice(2, 8),
          permissions: ["view_all_jobs", "view_system_stats", "view_workers"],
        });
        break;
      case "client_registered":
        send("subscribe_stats", { interval_seconds: 1 });
        send("subscribe_job_notifications", {});
        send("request_stats", {});
        break;
      case "stats_response": case "stats_update":
        renderStats(m.stats); break;
      case "system_status":
        $("health").textContent = "health: " + m.system_health;
        $("health").className = "pill s-" + m.system_health;
        (m.alerts || []).forEach(addAlert);
        break;
      case "system_alert":
        addAlert({ severity: m.severity, category: m.category, message: m.message, timestamp: m.timestamp });
        break;
      case "job_update": jobUpdate(m); break;
      case "job_completed":
        state.running.delete(m.job_id);
        state.completions.push(Date.now());
        addEvent("completed", m.job_id, esc(m.job_type || "") + " by " + esc(m.worker_id || "?") +
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
      addEvent("failed", m.job_id, esc(s) + ": " + esc(m.error || ""));
    } else if (s === "queued" || s === "cancelled") {
      state.running.delete(m.job_id);
      if (m.error) addEvent("failed", m.job_id, "retry: " + esc(m.error));
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
        row = document.createElement("div");
        row.className = "job"; row.dataset.jobId = id;
        row.innerHTML = '<span class="label"></span><div class="track"><div class="bar"></div></div><span class="pct"></span>';
        box.appendChild(row);
      }
      row.querySelector(".label").innerHTML = "<code>" + esc(id.slice(0, 16)) + "</code> " + esc(job.job_type || "") + " · " + esc(job.worker_id || "");
      row.querySelector(".bar").style.width = Math.max(0, Math.min(100, job.progress)) + "%";
      row.querySelector(".bar").dataset.progress = job.progress;
      row.querySelector(".pct").textContent = Math.round(job.progress) + "%";
    });
    box.querySelectorAll(".job").forEach((row) => { if (!seen.has(row.dataset.jobId)) row.remove(); });
    $("no-running").style.display = state.running.size ? "none" : "";
  }

  function addEvent(list, jobId, html) {
    const ul = $(list);
    const li = document.createElement("li");
    li.dataset.jobId = jobId;
    li.innerHTML = time(Date.now()) + " <code>" + esc(jobId.slice(0, 16)) + "</code> " + html;
    ul.prepend(li);
    while (ul.children.length > 50) ul.lastChild.remove();
  }

  const alertKeys = new Set();
  function addAlert(a) {
    const key = a.timestamp + a.category + a.message;
    if (alertKeys.has(key)) return;
    alertKeys.add(key);
    const li = document.createElement("li");
    li.className = "sev-" + a.severity;
    li.textContent = time(a.timestamp) + " [" + a.severity + "/" + a.category + "] " + a.message;
    $("alerts").prepend(li);
    while ($("alerts").children.length > 50) $("alerts").lastChild.remove();
  }

  function renderStats(stats) {
    if (stats.workers && stats.workers.workers) {
      const rows = stats.workers.workers.map((w) => {
        const sys = w.system_info || {};
        const gpu = sys.gpu_memory_total_gb != null || sys.gpu_model
          ? esc(sys.gpu_model || "GPU") + (sys.gpu_memory_used_gb != null ? " " + sys.gpu_memory_used_gb + "/" + sys.gpu_memory_total_gb + " GB" : "")
          : esc(Object.keys(sys).slice(0, 3).map((k) => k + "=" + JSON.stringify(sys[k])).join(" "));
        const conns = Object.entries(w.connector_status || {}).map(([k, v]) => esc(k) + ":" + esc(v.status)).join(" ");
        return '<tr data-worker-id="' + esc(w.worker_id) + '"><td>' + esc(w.worker_id) + '</td><td class="s-' + esc(w.status) + '">' + esc(w.status) +
          "</td><td>" + (w.current_jobs || []).map((j) => "<code>" + esc(j.slice(0, 16)) + "</code>").join(" ") +
          "</td><td>" + (w.load != null ? Number(w.load).toFixed(2) : "") + "</td><td>" + gpu + "</td><td>" + conns +
          "</td><td>" + time(w.last_heartbeat) + "</td></tr>";
      });
      $("workers").querySelector("tbody").innerHTML = rows.join("");
      $("no-workers").style.display = rows.length ? "none" : "";
    }
    if (stats.jobs) {
      $("job-counts").querySelector("tbody").innerHTML = Object.entries(stats.jobs)
        .map(([k, v]) => '<tr data-status="' + esc(k) + '"><td>' + esc(k) + "</td><td>" + v + "</td></tr>").join("");
    }
    if (stats.throughput) {
      const t = stats.throughput;
      $("throughput-text").textContent = (t.completed_last_hour || 0) + " completed, " + (t.failed_last_hour || 0) +
        " failed in the last hour" + (t.avg_processing_time != null ? "; mean " + Number(t.avg_processing_time).toFixed(1) + "s" : "");
    }
    if (stats.system) {
      const c = stats.system.connections || {};
      $("summary").textContent = (stats.system.hubs || 1) + " hub(s) · " + (c.worker || 0) + " worker conn · " + (c.monitor || 0) + " monitors · " + (c.job_client || 0) + " clients";
      if (stats.system.system_health) { $("health").textContent = "health: " + stats.system.system_health; $("health").className = "pill s-" + stats.system.system_health; }
    }
    drawThroughput();
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
      const text = await (await fetch("/metrics")).text();
      const rows = [];
      text.split("\n").forEach((line) => {
        const m = /^empq_queue_depth\{priority_band="([^"]+)"\} ([0-9.e+]+)/.exec(line);
        if (m) rows.push([m[1], Number(m[2])]);
      });
      rows.sort((a, b) => parseInt(b[0], 10) - parseInt(a[0], 10));
      $("queue").querySelector("tbody").innerHTML = rows
        .map(([band, n]) => '<tr data-band="' + esc(band) + '"><td>priority ' + esc(band) + "</td><td>" + n + "</td></tr>").join("");
    } catch (e) { /* the hub may be restarting */ }
    setTimeout(pollQueue, 2000);
  }

  connect();
  pollQueue();
  setInterval(drawThroughput, 5000);
})();
