// The token refresh's timing rules (src/refresh.ts) as plain functions: the
// JWT's exp read without verifying, when a refresh is due, when a failed one
// is tried again, how long an answer may take.

import assert from "node:assert/strict";
import { test } from "node:test";

import { answerBy, REFRESH_ATTEMPTS, refreshAt, retryAt, tokenExpiry } from "../dist/refresh.js";

const T = 1_750_000_000_000;
const part = (value) => Buffer.from(typeof value === "string" ? value : JSON.stringify(value)).toString("base64url");
const jwt = (claims) => `${part({ alg: "HS256", typ: "JWT" })}.${part(claims)}.c2ln`;

test("exp is read from the payload (base64url, any padding, UTF-8), in ms; anything else is no exp", () => {
    assert.equal(tokenExpiry(jwt({ sub: "u", exp: 1_750_000_123 })), 1_750_000_123_000);
    // Characters that base64url writes as - and _, and a length that needs padding.
    const name = "ü>?~ÿ".repeat(7);
    const token = jwt({ exp: 42, name });
    assert.match(token.split(".")[1], /[-_]/, "the payload uses the url-safe alphabet");
    assert.equal(tokenExpiry(token), 42_000);
    for (const n of [1, 2, 3]) assert.equal(tokenExpiry(jwt({ exp: 7, pad: "x".repeat(n) })), 7_000);
    assert.equal(tokenExpiry(jwt({ sub: "u" })), undefined, "no exp");
    assert.equal(tokenExpiry(jwt({ exp: "soon" })), undefined, "not a number");
    assert.equal(tokenExpiry("opaque-token"), undefined);
    assert.equal(tokenExpiry("a.%%%.c"), undefined);
    assert.equal(tokenExpiry(`${part("{}")}.${part("not json")}.x`), undefined);
});

test("a refresh is due a fifth of the lifetime before exp, at most the margin (60 s) and at least a second before", () => {
    const hour = 3_600_000;
    assert.equal(refreshAt(T + hour, T), T + hour - 60_000, "the margin");
    assert.equal(refreshAt(T + hour, T, 600_000), T + hour - 600_000, "another margin");
    assert.equal(refreshAt(T + hour, T, 1_000_000), T + hour - 720_000, "a fifth, within a larger margin");
    assert.equal(refreshAt(T + 300_000, T), T + 240_000, "five margins: both rules agree");
    assert.equal(refreshAt(T + 120_000, T), T + 96_000, "short-lived: a fifth");
    assert.equal(refreshAt(T + 4_000, T), T + 3_000, "at least a second before");
    assert.equal(refreshAt(T + 600, T), T, "less than a second left: now");
    assert.equal(refreshAt(T - 1, T), T, "already expired: now");
    assert.equal(refreshAt(T + hour, T, -5), T + hour - 1_000, "a margin below a second counts as one");
});

test("a failed attempt is tried again after a third of the time left, up to the attempts, and not in the last moments", () => {
    assert.equal(REFRESH_ATTEMPTS, 3);
    assert.equal(retryAt(T + 60_000, T, 1), T + 20_000);
    assert.equal(retryAt(T + 60_000, T, 2), T + 20_000);
    assert.equal(retryAt(T + 60_000, T, 3), undefined, "three attempts made");
    assert.equal(retryAt(T + 299, T, 1), undefined, "too little time left for an answer");
    assert.equal(retryAt(T - 5, T, 1), undefined);
});

test("an answer may take half the time left, at most 10 s, at least 100 ms", () => {
    assert.equal(answerBy(T + 60_000, T), T + 10_000);
    assert.equal(answerBy(T + 1_000, T), T + 500);
    assert.equal(answerBy(T + 20, T), T + 100);
});
