/**
 * Test support: a real `empq hub` (embedded redis-server, temporary data dir, 127.0.0.1, a free
 * port), a real Python `empq worker` / `empq submit`, a WebSocket class that validates every frame
 * against schemas/ with ajv (JSON Schema 2020-12), and a TCP proxy whose connections a test can cut.
 *
 * Every wait is bounded; every process is stopped by the test that started it.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Ajv2020, type ValidateFunction } from "ajv/dist/2020.js";
import addFormatsModule from "ajv-formats";
import WebSocket from "ws";
import type { WebSocketConstructor } from "@empq/client";

const HUB_START_MS = 30_000;
const STOP_MS = 10_000;

/** The repository's schemas/ folder (found upwards from this file). */
export function schemasDir(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const candidate = path.join(dir, "schemas", "envelopes");
    if (existsSync(candidate)) return path.join(dir, "schemas");
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error("schemas/ not found above the test folder");
    dir = parent;
  }
}

/** The `empq` command: $EMPQ_BIN, else `empq` on PATH. */
export function empqCommand(): string {
  const command = process.env.EMPQ_BIN || "empq";
  const probe = spawnSync(command, ["--help"], { encoding: "utf8", timeout: 30_000 });
  if (probe.error || probe.status !== 0) {
    throw new Error(
      `the empq command (${command}) does not run: install empq (\`pip install -e .\` at the repository root; ` +
        "tox -e ts does it) or set EMPQ_BIN",
    );
  }
  return command;
}

/** This process's environment without EMPQ_* settings (tox passes them through), plus `extra`. */
function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) if (!key.startsWith("EMPQ_")) env[key] = value;
  return { ...env, PYTHONUNBUFFERED: "1", ...extra };
}

function waitExit(child: ChildProcess, ms: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    child.once("exit", () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

async function terminate(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill("SIGTERM");
  if (!(await waitExit(child, STOP_MS))) {
    child.kill("SIGKILL");
    await waitExit(child, STOP_MS);
  }
}

export interface Hub {
  url: string;
  port: number;
  log(): string;
  stop(): Promise<void>;
}

export interface HubOptions {
  /** EMPQ_* settings. */
  env?: Record<string, string>;
  /** Default: any free port. */
  port?: number;
  /** The embedded Redis's data dir, kept after `stop` (default: a temporary one, removed). */
  dataDir?: string;
}

/** Start `empq hub` with its own embedded Redis (in a temporary data dir unless given). */
export async function startHub({ env = {}, port: wanted = 0, dataDir: given }: HubOptions = {}): Promise<Hub> {
  const dataDir = given ?? mkdtempSync(path.join(os.tmpdir(), "empq-ts-hub-"));
  const child = spawn(
    empqCommand(),
    ["hub", "--host", "127.0.0.1", "--ws-port", String(wanted), "--http-port", "-1", "--data-dir", dataDir],
    { env: cleanEnv({ EMPQ_SWEEP_INTERVAL_MS: "20", EMPQ_RETRY_BASE_SECONDS: "0.05", EMPQ_RETRY_MAX_SECONDS: "0.2", ...env }), stdio: ["ignore", "pipe", "pipe"] },
  );
  let output = "";
  child.stdout!.on("data", (d: Buffer) => (output += d.toString()));
  child.stderr!.on("data", (d: Buffer) => (output += d.toString()));
  const stop = async (): Promise<void> => {
    await terminate(child);
    if (!given) rmSync(dataDir, { recursive: true, force: true });
  };
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`empq hub did not start in time:\n${output}`)), HUB_START_MS);
    const look = (): void => {
      const found = /listening on ws:\/\/127\.0\.0\.1:(\d+)/.exec(output);
      if (found) {
        clearTimeout(timer);
        resolve(Number(found[1]));
      }
    };
    child.stderr!.on("data", look);
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`empq hub exited (${code}) while starting:\n${output}`));
    });
  }).catch(async (error: unknown) => {
    await stop();
    throw error;
  });
  return { url: `ws://127.0.0.1:${port}`, port, log: () => output, stop };
}

export interface PythonWorker {
  events: Array<Record<string, unknown>>;
  stop(): Promise<number | null>;
  log(): string;
}

/** A Python `empq worker` with the simulate connector (fast steps; JSON events on stdout). */
export function startPythonWorker(url: string, args: string[] = []): PythonWorker {
  const child = spawn(
    empqCommand(),
    ["worker", "--hub", url, "--connector", "simulate", "--steps", "3", "--step-seconds", "0.05", "--claim-interval", "0.2", "--drain-timeout", "5", "--json", ...args],
    { env: cleanEnv(), stdio: ["ignore", "pipe", "pipe"] },
  );
  const events: Array<Record<string, unknown>> = [];
  let stdout = "";
  let stderr = "";
  child.stdout!.on("data", (d: Buffer) => {
    stdout += d.toString();
    let newline: number;
    while ((newline = stdout.indexOf("\n")) >= 0) {
      const line = stdout.slice(0, newline);
      stdout = stdout.slice(newline + 1);
      if (line.trim()) events.push(JSON.parse(line) as Record<string, unknown>);
    }
  });
  child.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
  return {
    events,
    log: () => stderr,
    stop: async () => {
      await terminate(child);
      return child.exitCode;
    },
  };
}

/** Run the Python CLI to completion (bounded); resolves with exit code and output. */
export function runEmpq(args: string[], timeoutMs = 60_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(empqCommand(), args, { env: cleanEnv(), stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout!.on("data", (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.once("exit", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

// --- validating every frame against schemas/ ----------------------------------------------------

export type Direction = "hub_to_client" | "hub_to_worker" | "hub_to_monitor" | "client_to_hub" | "worker_to_hub";

let validators: Map<Direction, ValidateFunction> | undefined;

/** ajv (2020-12, formats checked) with every schema of schemas/ loaded; one validator per envelope. */
export function envelopeValidators(): Map<Direction, ValidateFunction> {
  if (validators) return validators;
  const addFormats = addFormatsModule as unknown as (ajv: Ajv2020) => Ajv2020;
  // strict, except that a message's `required` may name properties defined by the base schema it
  // includes with allOf (type, timestamp), which strictRequired would refuse
  const ajv = new Ajv2020({ allErrors: true, strict: true, strictRequired: false });
  addFormats(ajv);
  // annotations of schemas/ that are not JSON Schema vocabulary: the OpenAPI-style discriminator
  // (oneOf over const `type`s already selects one member) and the direction tags
  ajv.addVocabulary(["discriminator", "x-empq-directions"]);
  const root = schemasDir();
  for (const folder of ["defs", "messages", "envelopes"]) {
    for (const name of readdirSync(path.join(root, folder)).filter((n) => n.endsWith(".json"))) {
      ajv.addSchema(JSON.parse(readFileSync(path.join(root, folder, name), "utf8")) as object);
    }
  }
  validators = new Map();
  for (const direction of ["hub_to_client", "hub_to_worker", "hub_to_monitor", "client_to_hub", "worker_to_hub"] as const) {
    validators.set(direction, ajv.getSchema(`https://empq.dev/schemas/envelopes/${direction}.json`)!);
  }
  return validators;
}

/** Every frame one side received and sent, and every one that did not validate. */
export class FrameLog {
  received: Array<Record<string, unknown>> = [];
  sent: Array<Record<string, unknown>> = [];
  sentSizes: number[] = [];
  invalid: string[] = [];

  constructor(
    readonly inbound: Direction,
    readonly outbound: Direction,
  ) {}

  check(direction: Direction, text: string): Record<string, unknown> {
    let frame: Record<string, unknown>;
    try {
      frame = JSON.parse(text) as Record<string, unknown>;
    } catch {
      this.invalid.push(`${direction}: not JSON: ${text.slice(0, 200)}`);
      return {};
    }
    const validate = envelopeValidators().get(direction)!;
    const valid: boolean = validate(frame);
    if (!valid) {
      const errors = (validate.errors ?? []).slice(0, 5).map((e) => `${e.instancePath} ${e.message}`);
      this.invalid.push(`${direction} ${String(frame.type)}: ${errors.join("; ")}: ${text.slice(0, 300)}`);
    }
    return frame;
  }

  types(which: "received" | "sent"): string[] {
    return (which === "received" ? this.received : this.sent).map((frame) => String(frame["type"]));
  }
}

/** A `ws` WebSocket that checks every frame it receives and sends against schemas/ into `log`. */
export function validatingWebSocket(log: FrameLog): WebSocketConstructor {
  class Validating extends WebSocket {
    constructor(url: string, protocols?: string[], options?: WebSocket.ClientOptions) {
      super(url, protocols, options);
      this.on("message", (data: WebSocket.RawData, isBinary: boolean) => {
        if (isBinary) log.invalid.push(`${log.inbound}: a binary frame`);
        log.received.push(log.check(log.inbound, data.toString()));
      });
    }

    override send(data: unknown, ...rest: unknown[]): void {
      const text = String(data);
      log.sent.push(log.check(log.outbound, text));
      log.sentSizes.push(Buffer.byteLength(text));
      (super.send as (...args: unknown[]) => void)(data, ...rest);
    }
  }
  return Validating as unknown as WebSocketConstructor;
}

// --- a TCP proxy whose connections a test can cut -------------------------------------------------

export interface Proxy {
  url: string;
  /** Connections accepted so far. */
  connections: number;
  /** Cut every open connection now. */
  cut(): void;
  /** On the next bytes from the hub: drop them and cut (a reply lost with its connection). */
  loseNextReply(): void;
  /** Refuse connections (accept and close at once) until `resume`. */
  pause(): void;
  resume(): void;
  close(): Promise<void>;
}

export async function startProxy(hubPort: number): Promise<Proxy> {
  const pairs = new Set<[net.Socket, net.Socket]>();
  let armed = false;
  let paused = false;
  const proxy: Proxy = {
    url: "",
    connections: 0,
    cut() {
      for (const [a, b] of pairs) {
        a.destroy();
        b.destroy();
      }
      pairs.clear();
    },
    loseNextReply() {
      armed = true;
    },
    pause() {
      paused = true;
    },
    resume() {
      paused = false;
    },
    close: () =>
      new Promise((resolve) => {
        proxy.cut();
        server.close(() => resolve());
      }),
  };
  const server = net.createServer((client) => {
    if (paused) {
      client.destroy();
      return;
    }
    proxy.connections += 1;
    const upstream = net.connect(hubPort, "127.0.0.1");
    const pair: [net.Socket, net.Socket] = [client, upstream];
    pairs.add(pair);
    client.on("data", (data) => upstream.write(data));
    upstream.on("data", (data) => {
      if (armed) {
        armed = false;
        proxy.cut();
        return;
      }
      client.write(data);
    });
    const end = (): void => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on("close", end);
    upstream.on("close", end);
    client.on("error", end);
    upstream.on("error", end);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  proxy.url = `ws://127.0.0.1:${(server.address() as net.AddressInfo).port}`;
  return proxy;
}

/** A port nothing listens on now (bound once to port 0). */
export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** Poll `predicate` until true (bounded); throws with `what` after `ms`. */
export async function until(predicate: () => boolean | Promise<boolean>, what: string, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
