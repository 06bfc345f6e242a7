// asyncapi.yaml (at the repository root) is valid AsyncAPI: @asyncapi/parser
// parses it, resolves every `$ref` into schemas/, and reports no diagnostic of
// severity error. Its messages carry the resolved schemas. That it names every
// frame type and subject the gateway knows is tests/asyncapi.rs's job.

import assert from "node:assert/strict";
import path from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

import { DiagnosticSeverity, Parser, fromFile } from "@asyncapi/parser";

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
