// Built-in and added event types in the SDK's types: test/types/events.ts
// (application code that narrows a `ChatEvent` with `isBuiltIn`, then by
// `type`, and reads an `AddedEvent`'s data) type-checks with the package's
// strict settings; `isBuiltIn` says built in for the generated types only.

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createRequire } from "node:module";
import path from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

import { EVENT_TYPES, isBuiltIn } from "../dist/index.js";

const HERE = path.dirname(fileURLToPath(import.meta.url));

test("application code narrows built-in events and reads added ones (test/types/events.ts type-checks)", () => {
    const tsc = createRequire(import.meta.url).resolve("typescript/bin/tsc");
    const run = spawnSync(process.execPath, [tsc, "-p", path.join(HERE, "types/tsconfig.json")], { encoding: "utf8" });
    assert.equal(run.status, 0, `tsc:\n${run.stdout}${run.stderr}`);
});

test("isBuiltIn: the generated types are built in, any other type is added", () => {
    const envelope = (type) => ({ type, timestamp: "2025-01-15T10:30:00.000Z", data: {}, channel: "global", seq: 1, id: "x" });
    for (const type of EVENT_TYPES) assert.equal(isBuiltIn(envelope(type)), true, type);
    for (const type of ["reaction_added", "cursor_moved", "error", "channel_messages", ""]) assert.equal(isBuiltIn(envelope(type)), false, type);
});
