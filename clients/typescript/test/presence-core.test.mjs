// Presence in the resume core (src/resume.ts) and the set's rules
// (src/presence.ts), with no socket and no gateway: frames in, actions out.
// What a subscription made with presence: true sends, how snapshots and
// user_presence events change its set (repeats change nothing), that every
// connection ends up with a fresh snapshot (the gateway's after replayed,
// or one asked for when its pong overtakes it), and requestPresence's
// answers.

import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { applied, fromSnapshot } from "../dist/presence.js";
import { ResumeCore } from "../dist/resume.js";

const ID = "0b6f2c1e-3d4a-4f5b-8c9d-0e1f2a3b4c5d";
const A = `channel:${ID}`;
const G = "global";
const SESSION = "9f0b2c1e-3d4a-4f5b-8c9d-0e1f2a3b4c5d";
const NOW = "2025-01-15T10:30:00.000Z";
const ADA = "11111111-1111-4111-8111-111111111111";
const BOB = "22222222-2222-4222-8222-222222222222";
const CY = "33333333-3333-4333-8333-333333333333";

function harness() {
    const actions = [];
    const core = new ResumeCore({}, (action) => {
        actions.push(action);
        return true;
    }, { now: () => Date.parse(NOW), random: () => 0.5 });
    const take = () => actions.splice(0);
    const h = {
        core,
        take,
        sent: () => take().filter((a) => a.kind === "send").map((a) => a.frame),
        feed: (frame) => core.receive(JSON.stringify(frame)),
        connect: (fields = {}) => {
            core.opening();
            h.feed(hello(fields));
        },
    };
    return h;
}

const hello = ({ resumed = false, channels = [] } = {}) => ({
    type: "hello",
    timestamp: NOW,
    data: { session_id: SESSION, user_id: ADA, heartbeat_ms: 1000, reconnect_ms: 50, resumed, channels, epoch: "e1" },
});
const subscribed = (channel, requestId) => ({
    type: "subscribed",
    timestamp: NOW,
    data: { channel, complete: true, epoch: "e1", ...(requestId === undefined ? {} : { request_id: requestId }) },
});
const replayed = (channel, lastSeq = 0) => ({ type: "replayed", timestamp: NOW, data: { channel, count: 0, last_seq: lastSeq } });
const member = (userId, username, connections = 1) => ({ user_id: userId, username, connections });
const snapshot = (members, { count = members.length, truncated = false, requestId } = {}) => ({
    type: "presence",
    timestamp: NOW,
    data: { channel: A, count, members, truncated, ...(requestId === undefined ? {} : { request_id: requestId }) },
});
const userPresence = (userId, username, online) => ({
    type: "user_presence",
    timestamp: NOW,
    data: { channel_id: ID, user_id: userId, username, online },
    channel: A,
    id: "5a3c1d2e-0000-4000-8000-000000000001",
});
const pong = (requestId) => ({ type: "pong", timestamp: NOW, data: { request_id: requestId } });
const error = (code, requestId) => ({ type: "error", timestamp: NOW, data: { code, message: `${code}!`, request_id: requestId } });

/** The `presence` events handed to subscriptions, as `[joined ids, left ids, snapshot, count, member ids]`. */
const changes = (actions) =>
    actions
        .filter((a) => a.kind === "dispatch" && a.name === "presence")
        .map(({ payload: p }) => [p.joined.map((m) => m.userId), p.left.map((m) => m.userId), p.snapshot, p.presence.count, [...p.presence.members.keys()]]);
const answers = (actions) => actions.filter((a) => a.kind === "presenceAnswered").map((a) => a.result);

/** Connected, subscribed to A with presence, replayed; returns the ping check the core sent after replayed. */
function livePresence(h) {
    h.connect();
    h.take();
    h.core.subscribe(A, "a", { presence: true });
    const [frame] = h.sent();
    assert.deepEqual(frame, { type: "subscribe", channel: A, request_id: frame.request_id, since: NOW, presence: true });
    h.feed(subscribed(A, frame.request_id));
    h.feed(replayed(A));
    const [check] = h.sent();
    assert.equal(check.type, "ping", "a ping after replayed, whose pong tells whether a snapshot came");
    return check.request_id;
}

describe("a subscription with presence", () => {
    test("asks with presence: true; without it the subscribe is as before and presence frames are ignored", () => {
        const h = harness();
        h.connect();
        h.take();
        h.core.subscribe(A, "a");
        const [frame] = h.sent();
        assert.deepEqual(frame, { type: "subscribe", channel: A, request_id: frame.request_id, since: NOW });
        h.feed(subscribed(A, frame.request_id));
        h.feed(replayed(A));
        assert.deepEqual(h.sent(), [], "no ping: nothing to check");
        h.feed(snapshot([member(ADA, "ada")]));
        h.feed(userPresence(BOB, "bob", true));
        const actions = h.take();
        assert.deepEqual(changes(actions), []);
        assert.deepEqual(actions.filter((a) => a.kind === "dispatch"), [], "user_presence is not an event either");
    });

    test("the snapshot after replayed sets it; user_presence adds and removes; repeats change nothing", () => {
        const h = harness();
        const check = livePresence(h);
        h.feed(snapshot([member(BOB, "bob", 2), member(ADA, "ada")]));
        h.feed(pong(check));
        h.feed(userPresence(ADA, "ada", true)); // the snapshot already had it: a repeat
        h.feed(userPresence(CY, "cy", true));
        h.feed(userPresence(BOB, "bob", false));
        h.feed(userPresence(BOB, "bob", false)); // gone already
        const actions = h.take();
        assert.deepEqual(actions.filter((a) => a.kind === "send"), [], "the snapshot came before the pong: nothing to ask");
        assert.deepEqual(changes(actions), [
            [[ADA, BOB], [], true, 2, [ADA, BOB]],
            [[CY], [], false, 3, [ADA, BOB, CY]],
            [[], [BOB], false, 2, [ADA, CY]],
        ]);
        const first = actions.find((a) => a.name === "presence").payload.presence;
        assert.deepEqual(first.members.get(BOB), { userId: BOB, username: "bob", connections: 2 });
        assert.equal(first.channel, A);
        assert.equal(first.truncated, false);
        assert.deepEqual(actions.filter((a) => a.name === "event"), [], "presence never reaches the event handlers");
    });

    test("a later snapshot (many changes in one batch) replaces the set, with who came and went", () => {
        const h = harness();
        livePresence(h);
        h.feed(snapshot([member(ADA, "ada"), member(BOB, "bob")]));
        h.feed(snapshot([member(ADA, "ada"), member(CY, "cy")]));
        assert.deepEqual(changes(h.take()), [
            [[ADA, BOB], [], true, 2, [ADA, BOB]],
            [[CY], [BOB], true, 2, [ADA, CY]],
        ]);
    });

    test("after a drop it subscribes again with presence; the old set stays until the new snapshot replaces it", () => {
        const h = harness();
        const check = livePresence(h);
        h.feed(snapshot([member(ADA, "ada"), member(BOB, "bob")]));
        h.feed(pong(check));
        h.take();
        h.core.closed(1006, "", false);
        h.take();
        h.connect(); // a fresh session: subscribed again with since_seq
        const [frame] = h.sent();
        assert.deepEqual(frame, { type: "subscribe", channel: A, request_id: frame.request_id, since_seq: 0, epoch: "e1", presence: true });
        h.feed(subscribed(A, frame.request_id));
        h.feed(userPresence(CY, "cy", true)); // before the subscription is ours again: ignored
        h.feed(replayed(A));
        const [again] = h.sent();
        assert.equal(again.type, "ping");
        assert.deepEqual(changes(h.take()), []);
        h.feed(snapshot([member(ADA, "ada"), member(CY, "cy")]));
        h.feed(pong(again.request_id));
        assert.deepEqual(h.sent(), []);
        h.take();
        h.feed(snapshot([member(ADA, "ada"), member(CY, "cy")]));
        assert.deepEqual(changes(h.take()), [[[], [], true, 2, [ADA, CY]]], "every snapshot is a presence event, even an unchanged one");
    });

    test("a session restore: the gateway's snapshot after replayed is taken, and nothing is asked", () => {
        const h = harness();
        const check = livePresence(h);
        h.feed(snapshot([member(ADA, "ada"), member(BOB, "bob")]));
        h.feed(pong(check));
        h.core.closed(1006, "", false);
        h.take();
        h.connect({ resumed: true, channels: [A] });
        assert.deepEqual(h.sent(), [], "restored: not subscribed again");
        h.feed(subscribed(A));
        h.feed(replayed(A));
        const [ping] = h.sent();
        h.feed(snapshot([member(ADA, "ada")]));
        h.feed(pong(ping.request_id));
        const actions = h.take();
        assert.deepEqual(actions.filter((a) => a.kind === "send"), []);
        assert.deepEqual(changes(actions), [[[], [BOB], true, 1, [ADA]]]);
    });

    test("a restore that brings no snapshot (a record without the flag): the pong comes first, and the core asks", () => {
        const h = harness();
        const check = livePresence(h);
        h.feed(snapshot([member(ADA, "ada"), member(BOB, "bob")]));
        h.feed(pong(check));
        h.core.closed(1006, "", false);
        h.take();
        h.connect({ resumed: true, channels: [A] });
        h.feed(subscribed(A));
        h.feed(replayed(A));
        const [ping] = h.sent();
        h.feed(pong(ping.request_id));
        const [ask] = h.sent();
        assert.deepEqual(ask, { type: "presence", channel: A, request_id: ask.request_id });
        h.feed(snapshot([member(BOB, "bob")], { requestId: ask.request_id }));
        const actions = h.take();
        assert.deepEqual(changes(actions), [[[], [ADA], true, 1, [BOB]]]);
        assert.deepEqual(answers(actions).map((r) => r.presence?.count), [1]);
    });

    test("the core's own request refused: an error event for the client, with the channel", () => {
        const h = harness();
        const check = livePresence(h);
        h.feed(pong(check));
        const [ask] = h.sent();
        h.feed(error("forbidden", ask.request_id));
        const emitted = h.take().filter((a) => a.kind === "emit" && a.name === "error").map((a) => a.payload);
        assert.deepEqual(emitted, [{ code: "forbidden", message: `presence of ${A}: forbidden!`, channel: A }]);
    });
});

describe("requestPresence", () => {
    test("sends a presence frame; the snapshot answers it and replaces the set; a refusal is its answer, not an error event", () => {
        const h = harness();
        livePresence(h);
        const id = h.core.requestPresence(A);
        assert.deepEqual(h.sent(), [{ type: "presence", channel: A, request_id: id }]);
        h.feed(snapshot([member(ADA, "ada")], { requestId: id }));
        let actions = h.take();
        assert.deepEqual(changes(actions), [[[ADA], [], true, 1, [ADA]]]);
        assert.deepEqual(answers(actions).map((r) => [...r.presence.members.keys()]), [[ADA]]);

        const refused = h.core.requestPresence(A);
        h.take();
        h.feed(error("not_found", refused));
        actions = h.take();
        assert.deepEqual(answers(actions), [{ code: "not_found", message: "not_found!" }]);
        assert.deepEqual(actions.filter((a) => a.kind === "emit"), []);
        h.feed(snapshot([member(BOB, "bob")], { requestId: "p-unknown" }));
        assert.deepEqual(h.take(), [], "an answer to no request of ours is ignored");
    });

    test("offline, another kind of channel or no subscription: nothing sent; a close answers the ones in flight", () => {
        const h = harness();
        h.core.subscribe(A, "a", { presence: true });
        assert.equal(h.core.requestPresence(A), undefined, "offline");
        h.connect();
        h.core.subscribe(G, "g");
        h.take();
        assert.equal(h.core.requestPresence(G), undefined, "global has no presence");
        assert.equal(h.core.requestPresence("channel:1c7a3d2f-4e5b-4a6c-9d0e-1f2a3b4c5d6e"), undefined, "not subscribed");
        const id = h.core.requestPresence(A);
        assert.ok(id);
        h.take();
        h.core.closed(1006, "", false);
        const actions = h.take().filter((a) => a.kind === "presenceAnswered");
        assert.deepEqual(actions.map((a) => [a.requestId, a.result.code]), [[id, "disconnected"]]);
    });

    test("on a subscription without presence: answered, and no set is kept", () => {
        const h = harness();
        h.connect();
        h.take();
        h.core.subscribe(A, "a");
        const [frame] = h.sent();
        h.feed(subscribed(A, frame.request_id));
        h.feed(replayed(A));
        const id = h.core.requestPresence(A);
        h.take();
        h.feed(snapshot([member(ADA, "ada")], { requestId: id }));
        const actions = h.take();
        assert.deepEqual(changes(actions), []);
        assert.equal(answers(actions)[0].presence.count, 1);
    });
});

describe("the set's rules", () => {
    const data = (members, count = members.length, truncated = false) => ({ channel: A, count, members, truncated });

    test("a snapshot is ordered by user id; count is never below what it lists", () => {
        const set = fromSnapshot(data([member(CY, "cy"), member(ADA, "ada")], 1));
        assert.deepEqual([...set.members.keys()], [ADA, CY]);
        assert.equal(set.count, 2);
        assert.equal(set.truncated, false);
    });

    test("truncated: a change of a user the snapshot did not list moves the count; one it lists is exact", () => {
        const set = fromSnapshot(data([member(ADA, "ada"), member(BOB, "bob")], 5, true));
        const off = applied(set, { channel_id: ID, user_id: CY, username: "cy", online: false });
        assert.deepEqual([off.presence.count, off.presence.truncated, off.left.map((m) => m.userId)], [4, true, [CY]]);
        const on = applied(off.presence, { channel_id: ID, user_id: CY, username: "cy", online: true });
        assert.deepEqual([on.presence.count, [...on.presence.members.keys()]], [5, [ADA, BOB, CY]]);
        const gone = applied(on.presence, { channel_id: ID, user_id: ADA, username: "ada", online: false });
        assert.deepEqual([gone.presence.count, gone.presence.truncated], [4, true]);
        assert.equal(set.count, 5, "sets are never changed in place");
    });

    test("ids in either case are one user", () => {
        const set = fromSnapshot(data([member(ADA.toUpperCase(), "ada")]));
        assert.equal(applied(set, { channel_id: ID, user_id: ADA, username: "ada", online: true }), undefined);
    });
});
