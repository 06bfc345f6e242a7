// asyncapi.yaml (at the repository root) is valid AsyncAPI: @asyncapi/parser
// parses it, resolves every `$ref` into schemas/, and reports no diagnostic of
// severity error. Its messages carry the resolved schemas. That it names every
// frame type and subject the gateway knows is tests/asyncapi.rs's job.
// So is the document `switchboard catalog asyncapi DIR` prints for the types
// a catalog directory adds (a stored type on two routes, an ephemeral one).

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import path from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

import { DiagnosticSeverity, Parser, fromFile } from "@asyncapi/parser";

import { catalogDir, CURSOR_MOVED, gatewayBinary, REACTION_ADDED } from "./support.mjs";

const DOCUMENT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../../asyncapi.yaml");

const EVENTS = [
    "channel_message", "message_updated", "message_deleted", "message_reply",
    "member_joined", "member_left", "member_role_updated", "user_banned",
    "user_unbanned", "user_kicked", "channel_created", "channel_updated",
    "channel_deleted", "user_typing", "user_presence",
];

/** Parses the document once; every diagnostic is printed, errors fail. */
const parsed = (async () => {
    const { document, diagnostics } = await fromFile(new Parser(), DOCUMENT).parse();
    for (const d of diagnostics) {
        const severity = DiagnosticSeverity[d.severity] ?? d.severity;
        console.log(`${severity} ${d.code}: ${d.message} at ${d.path.join(".")}`);
    }
    return { document, errors: diagnostics.filter((d) => d.severity === DiagnosticSeverity.Error) };
})();

test("asyncapi.yaml is valid AsyncAPI 3.0 with every ref resolved", async () => {
    const { document, errors } = await parsed;
    assert.deepEqual(
        errors.map((d) => `${d.code}: ${d.message} at ${d.path.join(".")}`),
        [],
        "the parser reported errors",
    );
    assert.ok(document, "the parser returned no document");
    assert.equal(document.version(), "3.0.0");
    assert.deepEqual(
        document.servers().all().map((s) => s.id()).sort(),
        ["nats", "ws"],
    );
    assert.equal(document.servers().get("ws").pathname(), "/v1/ws");
});

test("the 15 events carry the envelope with their data schema resolved", async () => {
    const { document } = await parsed;
    assert.ok(document);
    const messages = document.channels().get("gateway").messages();
    for (const type of EVENTS) {
        const message = messages.get(type);
        assert.ok(message, `no ${type} message on the WebSocket channel`);
        const [envelope, typed] = message.payload().allOf();
        assert.ok(envelope.properties().seq, `${type}: the envelope is not resolved`);
        assert.equal(typed.properties().type.const(), type);
        const data = typed.properties().data;
        assert.equal(data.type(), "object", `${type}: data is not resolved`);
        assert.ok(data.required().length > 0 || type === "channel_updated", `${type}: data has no required fields`);
    }
    const content = messages.get("channel_message").payload().allOf()[1].properties().data.properties().content;
    assert.ok(content, "channel_message's data has no `content` after resolution");
    assert.equal(content.type(), "string");
});

test("frames and NATS payloads are resolved too", async () => {
    const { document } = await parsed;
    assert.ok(document);
    const subscribe = document.components().messages().get("subscribe").payload();
    assert.equal(subscribe.properties().type.const(), "subscribe");
    assert.ok(subscribe.properties().since_seq);
    assert.ok(subscribe.properties().presence);
    const hello = document.components().messages().get("hello").payload();
    assert.ok(hello.properties().data.properties().session_id);
    const snapshot = document.components().messages().get("presence").payload();
    assert.ok(snapshot.properties().data.properties().members);
    const request = document.components().messages().get("presence_request").payload();
    assert.equal(request.properties().type.const(), "presence");

    const stored = document.channels().get("chat_channel_channel_message");
    assert.equal(stored.address(), "chat.channel.{channel_id}.channel_message");
    const message = stored.messages().get("channel_message");
    assert.ok(message.headers().properties()["Nats-Msg-Id"]);
    const [payload, typed] = message.payload().allOf();
    assert.deepEqual(payload.required(), ["id", "type", "data"]);
    assert.ok(typed.properties().data.properties().content);
});

/** `switchboard catalog asyncapi` on a catalog directory of `types`, parsed: the document and the error diagnostics. */
async function catalogDocument(types) {
    const catalog = catalogDir(types);
    try {
        const run = spawnSync(gatewayBinary(), ["catalog", "asyncapi", catalog.dir], { encoding: "utf8" });
        assert.equal(run.status, 0, `switchboard catalog asyncapi failed: ${run.stderr}`);
        // The built-in part refers to schemas/ relative to the repository's
        // asyncapi.yaml, which the printed document is beside.
        const { document, diagnostics } = await new Parser().parse(run.stdout, { source: DOCUMENT });
        const errors = diagnostics.filter((d) => d.severity === DiagnosticSeverity.Error).map((d) => `${d.code}: ${d.message} at ${d.path.join(".")}`);
        return { document, errors };
    } finally {
        catalog.remove();
    }
}

test("switchboard catalog asyncapi: a stored type on two routes and an ephemeral type, valid AsyncAPI 3.0", async () => {
    const { document, errors } = await catalogDocument({ reaction_added: REACTION_ADDED, cursor_moved: CURSOR_MOVED });
    assert.deepEqual(errors, [], "the parser reported errors");
    assert.ok(document, "the parser returned no document");
    assert.equal(document.version(), "3.0.0");
    // The built-in document, plus one NATS channel per route of each added type.
    const byAddress = new Map(document.channels().all().map((c) => [c.address(), c]));
    assert.ok(byAddress.get("chat.channel.{channel_id}.channel_message"), "the built-in part is there");
    for (const address of [
        "chat.channel.{channel_id}.reaction_added",
        "chat.user.{user_id}.reaction_added",
        "chat.channel.{channel_id}.cursor_moved",
    ]) {
        const channel = byAddress.get(address);
        assert.ok(channel, `no channel for ${address}`);
        const messages = channel.messages().all();
        assert.ok(messages.length > 0, `no message on ${address}`);
        const payload = JSON.stringify(messages[0].payload().json());
        const field = address.includes("cursor_moved") ? '"x"' : '"emoji"';
        assert.ok(payload.includes(field), `${address}: the type's data schema is in its payload`);
    }
});

test(
    "switchboard catalog asyncapi: a type whose schema refers to its own $defs",
    async () => {
        const option = { type: "object", required: ["label"], properties: { label: { type: "string" } } };
        const poll = {
            ...REACTION_ADDED,
            required: ["channel_id", "options"],
            $defs: { option },
            properties: { channel_id: { type: "string" }, options: { type: "array", items: { $ref: "#/$defs/option" } } },
            "x-switchboard": { routes: [{ channel: "channel_id" }], stored: true },
        };
        const { document, errors } = await catalogDocument({ poll_created: poll });
        assert.deepEqual(errors, [], "the parser reported errors");
        assert.ok(document);
    },
);
