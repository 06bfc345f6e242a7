// src/schema.generated.ts must be what scripts/generate-types.mjs makes of
// schemas/ today: a schema change without `npm run generate` fails here.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";

import { generate, OUTPUT } from "../scripts/generate-types.mjs";

test("the generated types match schemas/", async () => {
    const fresh = await generate();
    const committed = readFileSync(OUTPUT, "utf8");
    assert.ok(fresh === committed, "src/schema.generated.ts is stale: run `npm run generate` in clients/typescript and commit it");
});

test("every event type has its data type", async () => {
    const text = await generate();
    for (const name of ["channel_message", "user_typing", "user_presence", "member_role_updated"]) {
        assert.match(text, new RegExp(`${name}: \\w+Data;`));
    }
    assert.equal((text.match(/^ {4}\| "/gm) ?? []).length, 15, "15 event types in the union (13 stored, user_typing and user_presence)");
    assert.match(text, /export interface PresenceData \{/, "the presence snapshot's data");
});
