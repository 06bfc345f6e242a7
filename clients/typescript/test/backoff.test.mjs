// The reconnect delay: the server's base plus full jitter over a doubling window.

import assert from "node:assert/strict";
import { test } from "node:test";

import { reconnectDelay } from "../dist/index.js";

test("the delay is the base plus a share of a window that doubles per attempt, capped", () => {
    assert.equal(reconnectDelay(2_000, 0, 30_000, () => 0), 2_000, "never sooner than the base");
    assert.equal(reconnectDelay(2_000, 0, 30_000, () => 1), 4_000);
    assert.equal(reconnectDelay(2_000, 2, 30_000, () => 1), 10_000, "window 8 s at the third attempt");
    assert.equal(reconnectDelay(2_000, 40, 30_000, () => 1), 30_000, "capped");
    assert.equal(reconnectDelay(0, 3, 30_000, () => 1), 800, "a zero base still spreads clients out");
});

test("a crowd of clients is spread over the window, not brought back together", () => {
    const delays = Array.from({ length: 1_000 }, () => reconnectDelay(1_000, 3, 30_000));
    const buckets = new Set(delays.map((d) => Math.floor(d / 500)));
    assert.ok(Math.min(...delays) >= 1_000 && Math.max(...delays) <= 9_000);
    assert.ok(buckets.size >= 15, `spread over ${buckets.size} half-second buckets`);
});
