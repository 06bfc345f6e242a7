// Generates src/schema.generated.ts from the repository's JSON Schemas:
// every event's `data` type (schemas/events) and the server control
// frames' `data` types (schemas/server). `npm run generate` rewrites the
// file; test/generated.test.mjs fails when it is stale.
//
//   node scripts/generate-types.mjs          write the file
//   import { generate } from "./generate-types.mjs"   the text, for the test

import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { compile } from "json-schema-to-typescript";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const SCHEMAS = path.resolve(HERE, "../../../schemas");
export const OUTPUT = path.resolve(HERE, "../src/schema.generated.ts");

const pascal = (name) => name.replace(/(^|_)([a-z])/g, (_, __, c) => c.toUpperCase());

function schemasIn(dir) {
    return readdirSync(path.join(SCHEMAS, dir))
        .filter((f) => f.endsWith(".json"))
        .sort()
        .map((f) => ({ name: f.slice(0, -".json".length), schema: JSON.parse(readFileSync(path.join(SCHEMAS, dir, f), "utf8")) }));
}

async function typeOf(schema, name) {
    // The title would name the type; ours is given.
    const { title: _title, $id: _id, ...rest } = schema;
    return compile(rest, name, { bannerComment: "", additionalProperties: false, strictIndexSignatures: true, format: true });
}

export async function generate() {
    const events = schemasIn("events");
    const frames = schemasIn("server");
    const parts = [
        "// Generated from schemas/ by scripts/generate-types.mjs (`npm run generate`). Do not edit.\n",
    ];
    for (const { name, schema } of events) parts.push(await typeOf(schema, `${pascal(name)}Data`));
    for (const { name, schema } of frames) {
        const data = schema.properties?.data;
        if (!data) throw new Error(`schemas/server/${name}.json has no data property`);
        parts.push(await typeOf({ ...data, $defs: schema.$defs }, `${pascal(name)}Data`));
    }
    parts.push(`/** The ${events.length} event types. */\nexport type EventType =\n${events.map(({ name }) => `    | "${name}"`).join("\n")};\n`);
    parts.push(`/** Every event type's \`data\`. */\nexport interface EventDataMap {\n${events.map(({ name }) => `    ${name}: ${pascal(name)}Data;`).join("\n")}\n}\n`);
    parts.push(`/** The server's control frames and their \`data\`. */\nexport interface ControlDataMap {\n${frames.map(({ name }) => `    ${name}: ${pascal(name)}Data;`).join("\n")}\n}\n`);
    parts.push(`/** The ${events.length} event types, in name order. */\nexport const EVENT_TYPES: readonly EventType[] = [\n${events.map(({ name }) => `    "${name}",`).join("\n")}\n];\n`);
    return parts.join("\n");
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
    writeFileSync(OUTPUT, await generate());
    console.log(`wrote ${path.relative(process.cwd(), OUTPUT)}`);
}
