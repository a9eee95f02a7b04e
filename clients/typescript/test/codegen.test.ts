/**
 * src/generated/protocol.ts is exactly what scripts/generate-types.mjs makes from schemas/ now
 * (the pinned json-schema-to-typescript), and it has one type per message and direction.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import type { ClientToHub, FromHub, HubToClient, HubToWorker, JobSubmission, MessageMap, SubmitJob, ToHub, WorkerToHub } from "@empq/client";
import { schemasDir } from "./support.js";

const packageDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const committed = path.join(packageDir, "src/generated/protocol.ts");

// compile-time: the unions discriminate on `type`, and MessageMap names every message
type Is<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
type Declared<T> = keyof { [K in keyof T as string extends K ? never : K]: 0 }; // without the index signature
const narrowed = (m: HubToClient): string | undefined => (m.type === "job_completed" ? m.result.error : undefined);
const assigned: Is<Extract<HubToWorker, { type: "job_assigned" }>, MessageMap["job_assigned"]> = true;
const submission: Is<Declared<JobSubmission> & ("type" | "timestamp"), never> = true;
const submitted: Is<Exclude<Declared<SubmitJob>, Declared<JobSubmission>>, "type" | "timestamp" | "id" | "source" | "job_id" | "worker_id" | "request_id"> = true;
const keys: Is<ClientToHub["type"] | WorkerToHub["type"], ToHub["type"]> = true;
void [narrowed, assigned, submission, submitted, keys];
void (null as unknown as FromHub | SubmitJob);

describe("generated TypeScript types", () => {
  it("match a fresh generation from schemas/ byte for byte", () => {
    const tmp = mkdtempSync(path.join(os.tmpdir(), "empq-ts-codegen-"));
    try {
      const fresh = path.join(tmp, "protocol.ts");
      execFileSync(process.execPath, [path.join(packageDir, "scripts/generate-types.mjs"), "--out", fresh], { stdio: "pipe" });
      assert.ok(
        readFileSync(fresh, "utf8") === readFileSync(committed, "utf8"),
        "src/generated/protocol.ts drifted from schemas/: run `tox -e codegen` (or `npm run generate`)",
      );
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });

  it("declare one interface per message, named after its schema's title, in MessageMap", () => {
    const text = readFileSync(committed, "utf8");
    const messages = path.join(schemasDir(), "messages");
    for (const name of readdirSync(messages).filter((n) => n.endsWith(".json"))) {
      const schema = JSON.parse(readFileSync(path.join(messages, name), "utf8")) as { title: string; properties: { type: { const: string } } };
      assert.match(text, new RegExp(`^export type ${schema.title} = BaseMessage & \\{$`, "m"), name);
      assert.match(text, new RegExp(`^  ${schema.properties.type.const}: ${schema.title};$`, "m"), name);
    }
    for (const union of ["ClientToHub", "WorkerToHub", "ToHub", "HubToClient", "HubToWorker", "HubToMonitor", "FromHub"]) {
      assert.match(text, new RegExp(`^export type ${union} =$`, "m"), union);
    }
    assert.match(text, /^export interface JobSubmission \{$/m);
  });
});
