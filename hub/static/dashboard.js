// @ts-check
// empq dashboard: a job browser served by the hub, no build step (ES modules, checked by
// `tsc --checkJs` against the protocol's generated types: clients/typescript/tsconfig.dashboard.json).
//
// The state at load comes from the hub's HTTP API (jobs, workers, the last hour: all read from
// Redis, so every hub shows the same); then a monitor connection on the hub's WebSocket brings
// live changes (job events, stats, alerts). Views: overview, jobs (with a job's detail), workers,
// job types; the address bar's #/… says which, so a view or a job can be linked to.
//
// Everything a peer sends is shown as text (dash-util.js h()), never as markup; the page is
// served with a Content-Security-Policy that allows no inline script. The monitor token given as
// ?token= is moved to sessionStorage and removed from the address bar at load.

import { $, session, text } from "./dash-util.js";
import { Overview } from "./dash-overview.js";
import { JobsView } from "./dash-jobs.js";
import { WorkersView } from "./dash-workers.js";
import { TypesView } from "./dash-types.js";

/** @typedef {import("../../clients/typescript/src/generated/protocol").HubToMonitor} HubToMonitor */
/** @typedef {import("../../clients/typescript/src/generated/protocol").RegisterClient} RegisterClient */
/** @typedef {import("../../clients/typescript/src/generated/protocol").SubscribeStats} SubscribeStats */

const params = new URLSearchParams(location.search);
if (params.has("token")) {
  sessionStorage.setItem("empq-token", params.get("token") || "");
  params.delete("token");
  const rest = params.toString();
  history.replaceState(null, "", location.pathname + (rest ? "?" + rest : "") + location.hash);
}
session.token = sessionStorage.getItem("empq-token") || null;

/** What this monitor may do: the permissions the hub granted, its customer. */
export const ctx = {
  /** @type {Set<string>} */
  permissions: new Set(),
  /** @type {string | null} */
  customer: null,
};

const overview = new Overview(ctx);
const jobs = new JobsView(ctx);
const workers = new WorkersView(ctx);
const types = new TypesView(ctx);
/** @type {Record<string, {show: (arg: string) => void, hide: () => void}>} */
const views = { overview: overview, jobs: jobs, job: jobs, workers: workers, types: types };
let current = "";

function route() {
  // #/jobs?status=failed, #/job/<id>, #/workers, #/types, #/ (overview)
  const path = location.hash.replace(/^#\/?/, "");
  const [name, ...rest] = path.split("/");
  const view = views[name.split("?")[0]] ? name.split("?")[0] : "overview";
  const arg = view === "job" ? decodeURIComponent(rest.join("/")) : path.includes("?") ? path.slice(path.indexOf("?") + 1) : "";
  const section = view === "job" ? "jobs" : view;
  if (current !== section) {
    if (current) views[current].hide();
    document.querySelectorAll("main > section.view").forEach((s) => s.classList.toggle("active", s.id === "view-" + section));
    document.querySelectorAll("nav a").forEach((a) => a.classList.toggle("active", a.getAttribute("data-view") === section));
    current = section;
  }
  if (view === "job") jobs.showJob(arg);
  else views[view].show(arg);
}
window.addEventListener("hashchange", route);

// --- the live connection ---------------------------------------------------------------------------

/** @type {WebSocket | null} */
let ws = null;
let seq = 0;

/** @param {string} type @param {Record<string, unknown>} fields */
function send(type, fields) {
  seq += 1;
  if (ws) ws.send(JSON.stringify(Object.assign({ type: type, id: "dash-" + seq, timestamp: Date.now() }, fields)));
}

async function connect() {
  // always this hub's own WebSocket: the page sends the monitor token there, nowhere else
  const cfg = await (await fetch("/dashboard/config.json")).json();
  const socket = new WebSocket(cfg.ws_scheme + "://" + location.hostname + ":" + cfg.ws_port + "/");
  ws = socket;
  socket.onmessage = (ev) => handle(JSON.parse(ev.data));
  socket.onopen = () => setConn("connected", "on");
  socket.onclose = () => {
    setConn("disconnected, retrying", "off");
    setTimeout(connect, 2000);
  };
}

/** @param {string} label @param {string} kind */
function setConn(label, kind) {
  $("conn").textContent = label;
  $("conn").className = "pill " + kind;
}

/** @type {NonNullable<SubscribeStats["include_sections"]>} */
const STATS_SECTIONS = ["jobs", "throughput", "system"];
let statsSoon = 0;

/** A job changed state: the counts follow within half a second, not at the next 2 s update. */
function statsAfterEvent() {
  if (statsSoon || !ctx.permissions.has("view_system_stats")) return;
  statsSoon = setTimeout(() => {
    statsSoon = 0;
    send("request_stats", { include_sections: STATS_SECTIONS });
  }, 500);
}

/** @param {HubToMonitor} m */
function handle(m) {
  switch (m.type) {
    case "connection_established": {
      /** @type {Partial<RegisterClient>} */
      const register = {
        client_type: "monitor",
        client_id: "dashboard-" + Math.random().toString(36).slice(2, 8),
        permissions: ["view_all_jobs", "view_system_stats", "view_workers", "manage_jobs"],
      };
      if (session.token) register.auth_token = session.token;
      send("register_client", register);
      break;
    }
    case "client_registered":
      ctx.permissions = new Set(m.permissions || []);
      ctx.customer = m.customer_id || null;
      document.body.classList.toggle("can-manage", ctx.permissions.has("manage_jobs"));
      $("whoami").textContent = ctx.customer ? "customer " + ctx.customer : "";
      /** @type {Partial<SubscribeStats>} */
      const stats = { interval_seconds: 2, include_sections: STATS_SECTIONS };
      if (ctx.permissions.has("view_system_stats")) {
        send("request_stats", { include_sections: stats.include_sections }); // now, then every 2 s
        send("subscribe_stats", stats);
      }
      if (ctx.permissions.has("view_all_jobs")) send("subscribe_job_notifications", {});
      break;
    case "stats_response":
    case "stats_update":
      overview.stats(m.stats);
      break;
    case "system_status":
      overview.status(m);
      break;
    case "system_alert":
      overview.alert(m);
      break;
    case "job_update":
    case "job_completed":
    case "job_cancelled":
      overview.jobEvent(m);
      jobs.jobEvent(m);
      statsAfterEvent();
      break;
    case "error":
      if (m.error_code === "AUTH_FAILED" || m.error_code === "PERMISSION_DENIED") {
        setConn(text(m.error_code).toLowerCase().replace("_", " ") + ": " + text(m.error), "off");
      }
      break;
  }
}

route();
connect();
