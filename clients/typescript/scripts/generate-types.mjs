#!/usr/bin/env node
// Generate src/generated/protocol.ts from schemas/ with json-schema-to-typescript (pinned in
// package.json / package-lock.json). `tox -e codegen` runs it beside the pydantic generation; a
// drift test regenerates into a temporary file and compares byte for byte. Never edit the output.
//
//   node scripts/generate-types.mjs [--schemas DIR] [--out FILE]
//
// One compile over a synthetic root schema, so every type is declared once:
//   - the root, MessageMap, maps each message `type` to its interface (one per schemas/messages/*.json);
//   - its $defs add the per-direction unions (schemas/envelopes/*.json) and JobSubmission, which is
//     submit_job's own fields without `type` and `timestamp` (derived here from submit_job.json).
// Every type is named after its schema's title, as the pydantic models are.
import { readFileSync, readdirSync, writeFileSync, mkdirSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { compile } from "json-schema-to-typescript";

const here = path.dirname(fileURLToPath(import.meta.url));
const pkg = path.resolve(here, "..");

function option(name, fallback) {
  const at = process.argv.indexOf(name);
  return at > 0 && process.argv[at + 1] ? path.resolve(process.argv[at + 1]) : fallback;
}

const schemasDir = option("--schemas", path.resolve(pkg, "../../schemas"));
const outFile = option("--out", path.join(pkg, "src/generated/protocol.ts"));
const generator = JSON.parse(
  readFileSync(path.join(pkg, "node_modules/json-schema-to-typescript/package.json"), "utf8"),
);

const jsonFiles = (dir) =>
  readdirSync(path.join(schemasDir, dir))
    .filter((name) => name.endsWith(".json"))
    .sort();
const read = (rel) => JSON.parse(readFileSync(path.join(schemasDir, rel), "utf8"));

// one property per message type, keyed by its `type` const
const messages = {};
for (const name of jsonFiles("messages")) {
  const schema = read(`messages/${name}`);
  const kind = schema.properties?.type?.const;
  if (typeof kind !== "string") throw new Error(`messages/${name} has no properties.type.const`);
  messages[kind] = { $ref: `./messages/${name}` };
}

const defs = {};
for (const name of jsonFiles("envelopes")) {
  defs[read(`envelopes/${name}`).title] = { $ref: `./envelopes/${name}` };
}

// a subschema of messages/NAME.json, its relative $refs rebased on schemas/ (where the root lives)
function rebased(node, fromDir) {
  if (Array.isArray(node)) return node.map((item) => rebased(item, fromDir));
  if (node === null || typeof node !== "object") return node;
  const out = {};
  for (const [key, value] of Object.entries(node)) {
    out[key] =
      key === "$ref" && typeof value === "string" && !value.startsWith("#")
        ? "./" + path.posix.join(fromDir, value)
        : rebased(value, fromDir);
  }
  return out;
}

// JobSubmission: the submit_job fields a caller gives (the SDK adds type, timestamp and id)
const submit = rebased(read("messages/submit_job.json"), "messages");
const omitted = new Set(["type", "timestamp"]);
defs.JobSubmission = {
  title: "JobSubmission",
  description:
    "A job to submit: the fields of submit_job without type and timestamp (derived from " +
    "schemas/messages/submit_job.json by the generator).",
  type: "object",
  properties: Object.fromEntries(
    Object.entries(submit.properties).filter(([key]) => !omitted.has(key)),
  ),
  required: submit.required.filter((key) => !omitted.has(key)),
  additionalProperties: submit.additionalProperties,
};

const root = {
  title: "MessageMap",
  description: "Every protocol message, by its `type`.",
  type: "object",
  properties: messages,
  required: Object.keys(messages),
  additionalProperties: false,
  $defs: defs,
};

const banner =
  "/* Generated from schemas/ by clients/typescript/scripts/generate-types.mjs " +
  `(json-schema-to-typescript ${generator.version}). Do not edit: change schemas/ and run ` +
  "`tox -e codegen`. */";

const text = await compile(root, "MessageMap", {
  cwd: schemasDir,
  bannerComment: banner,
  declareExternallyReferenced: true,
  unreachableDefinitions: true,
  unknownAny: true,
  strictIndexSignatures: false,
  additionalProperties: true,
  $refOptions: { resolve: { http: false, external: true } },
});

mkdirSync(path.dirname(outFile), { recursive: true });
writeFileSync(outFile, text);
