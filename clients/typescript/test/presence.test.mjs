// Presence through the SDK against a real gateway and nats-server: two
// users subscribed with presence: true see each other come online; a
// connection reset (RST) that comes back within the grace shows no offline
// (while a user who does not come back goes offline after it); an
// unsubscribe is offline at once; and after a reconnect, by session restore
// or by subscribing again with since_seq, the set is a fresh snapshot that
// shows what changed meanwhile.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import WebSocket from "ws";

import { connect } from "../dist/index.js";
import { startGateway, startNats, tcpProxy, token, uuid, waitFor } from "./support.mjs";

/** The gateway's presence grace in these tests (its flag is given explicitly). */
const GRACE_MS = 5_000;

/** A subscription's presence changes and its client's connections, as they come. */
function watch(client, subscription) {
    const seen = { changes: [], connections: [] };
    subscription.on("presence", (change) => seen.changes.push({ ...change, at: Date.now() }));
    client.on("connected", ({ resumed }) => seen.connections.push(resumed));
    return seen;
}

const ids = (members) => members.map((m) => m.userId);
const online = (subscription) => [...(subscription.presence?.members.keys() ?? [])];

/** A raw WebSocket (no SDK) that subscribes to `channel`; resolves once subscribed. */
async function rawSubscriber(url, bearer, channel) {
    const ws = new WebSocket(`${url}?token=${bearer}`);
    ws.on("error", () => {});
    await new Promise((resolve, reject) => {
        ws.on("message", (text) => {
            const frame = JSON.parse(String(text));
            if (frame.type === "hello") ws.send(JSON.stringify({ type: "subscribe", channel, request_id: "s" }));
            if (frame.type === "subscribed") resolve();
            if (frame.type === "error") reject(new Error(JSON.stringify(frame)));
        });
    });
    return ws;
}

describe("presence through the SDK", () => {
    let nats;
    let gateway;
    before(async () => {
        nats = await startNats();
        gateway = await startGateway(nats.url, ["--reconnect-base", "50ms", "--heartbeat", "1s", "--presence-grace", `${GRACE_MS / 1000}s`]);
    });
    after(async () => {
        await gateway?.stop();
        nats?.stop();
    });

    test("two users see each other; a reset within the grace shows no offline; an unsubscribe is offline at once", async () => {
        const channel = `channel:${uuid()}`;
        const [alice, bob, cy] = [uuid(), uuid(), uuid()];
        const bobLink = await tcpProxy(gateway.addr);
        const cyLink = await tcpProxy(gateway.addr);
        const a = connect({ url: gateway.ws, WebSocket, token: token({ sub: alice, name: "alice" }) });
        const b = connect({ url: `ws://${bobLink.addr}/v1/ws`, WebSocket, token: token({ sub: bob, name: "bob" }) });
        try {
            const aSub = a.subscribe(channel, { presence: true });
            const bSub = b.subscribe(channel, { presence: true });
            const aSeen = watch(a, aSub);
            const bSeen = watch(b, bSub);

            await waitFor("alice to see bob online", () => aSub.presence?.members.has(bob));
            await waitFor("bob to see alice online", () => bSub.presence?.members.has(alice));
            for (const sub of [aSub, bSub]) {
                assert.deepEqual(online(sub), [alice, bob].sort());
                assert.equal(sub.presence.count, 2);
                assert.equal(sub.presence.truncated, false);
                assert.equal(sub.presence.members.get(alice).username, "alice");
                assert.equal(sub.presence.members.get(bob).username, "bob");
            }
            assert.ok(aSeen.changes.some((c) => ids(c.joined).includes(bob)), "alice's presence event said bob came");
            assert.ok(bSeen.changes.some((c) => ids(c.joined).includes(alice)), "bob's presence event said alice is there");
            assert.equal(aSeen.changes[0].snapshot, true, "the first change is the snapshot after subscribing");

            // Asked for: the same as the gateway's HTTP snapshot.
            const asked = await aSub.requestPresence();
            assert.deepEqual([...asked.members.keys()], [alice, bob].sort());
            const response = await fetch(`${gateway.http}/v1/presence/${channel}`, { headers: { authorization: `Bearer ${token({ roles: ["auditor"] })}` } });
            assert.equal(response.status, 200);
            const http = await response.json();
            assert.deepEqual(http.members.map((m) => m.user_id), [...asked.members.keys()]);

            // cy, on a raw WebSocket, is the control: reset with bob, it never comes back.
            const cySocket = await rawSubscriber(`ws://${cyLink.addr}/v1/ws`, token({ sub: cy, name: "cy" }), channel);
            await waitFor("alice to see cy online", () => aSub.presence.members.has(cy));
            const mark = aSeen.changes.length;
            const bobConnections = bSeen.connections.length;
            const bobChanges = bSeen.changes.length;
            bobLink.drop();
            cyLink.drop();
            const droppedAt = Date.now();

            await waitFor("bob's reconnect (session restored) and its fresh snapshot", () =>
                bSeen.connections.length > bobConnections && bSeen.changes.slice(bobChanges).some((c) => c.snapshot),
            );
            assert.equal(bSeen.connections.at(-1), true, "the session was restored");
            assert.ok(Date.now() - droppedAt < GRACE_MS, "bob came back within the grace");
            assert.ok(online(bSub).includes(alice) && online(bSub).includes(bob), `bob's refreshed set: ${online(bSub)}`);

            await waitFor("alice to see cy go offline after the grace", () => !aSub.presence.members.has(cy));
            const cyGoneAfter = Date.now() - droppedAt;
            assert.ok(cyGoneAfter >= GRACE_MS - 250, `cy went offline ${cyGoneAfter} ms after the reset, not before the grace (${GRACE_MS} ms)`);
            const meanwhile = aSeen.changes.slice(mark);
            assert.ok(meanwhile.some((c) => ids(c.left).includes(cy)), "a presence event said cy left");
            assert.ok(!meanwhile.some((c) => ids(c.left).includes(bob)), "no offline for bob, who came back within the grace");
            assert.ok(aSub.presence.members.has(bob));
            assert.equal(aSub.presence.count, 2);
            cySocket.terminate();

            // An unsubscribe is offline at once: well within the grace.
            const before = aSeen.changes.length;
            const unsubscribedAt = Date.now();
            await bSub.unsubscribe();
            await waitFor("alice to see bob leave", () => !aSub.presence.members.has(bob), GRACE_MS - 1_000);
            console.log(`  offline ${Date.now() - unsubscribedAt} ms after the unsubscribe; cy's after its reset: ${cyGoneAfter} ms`);
            const left = aSeen.changes.slice(before).find((c) => ids(c.left).includes(bob));
            assert.ok(left, "a presence event said bob left");
            assert.deepEqual(online(aSub), [alice]);
            assert.equal(aSub.presence.count, 1);
        } finally {
            await a.close();
            await b.close();
            await bobLink.close();
            await cyLink.close();
        }
    });

    test("after a reconnect the set is a fresh snapshot: by session restore, and by subscribing again with since_seq", async () => {
        const channel = `channel:${uuid()}`;
        const [alice, bob, dave] = [uuid(), uuid(), uuid()];
        const link = await tcpProxy(gateway.addr);
        let gate = null;
        const a = connect({ url: gateway.ws, WebSocket, token: token({ sub: alice, name: "alice" }) });
        const b = connect({
            url: `ws://${link.addr}/v1/ws`,
            WebSocket,
            getToken: async () => {
                await gate;
                return token({ sub: bob, name: "bob" });
            },
        });
        let d;
        try {
            const aSub = a.subscribe(channel, { presence: true });
            const bSub = b.subscribe(channel, { presence: true });
            const bSeen = watch(b, bSub);
            await waitFor("bob to see alice and himself", () => online(bSub).length === 2);

            // Bob is away (his next token waits for the gate) while dave comes.
            let open;
            gate = new Promise((resolve) => (open = resolve));
            link.drop();
            await waitFor("bob's client to notice the reset", () => b.state !== "connected");
            d = connect({ url: gateway.ws, WebSocket, token: token({ sub: dave, name: "dave" }) });
            const dSub = d.subscribe(channel, { presence: true });
            await waitFor("alice to see dave", () => aSub.presence?.members.has(dave));
            assert.ok(!bSub.presence.members.has(dave), "bob's set is the last known while he is away");
            const mark = bSeen.changes.length;
            open();
            await waitFor("bob's snapshot after the session restore", () => bSeen.changes.slice(mark).some((c) => c.snapshot));
            assert.equal(bSeen.connections.at(-1), true, "restored");
            const restored = bSeen.changes.slice(mark).find((c) => c.snapshot);
            assert.deepEqual(ids(restored.joined), [dave], "the snapshot shows who came meanwhile");
            assert.deepEqual(online(bSub), [alice, bob, dave].sort());

            // The operator's disconnect (4003) drops bob's sessions: the
            // reconnect is a fresh session, so the SDK subscribes again with
            // since_seq and presence: true. Meanwhile dave leaves.
            const response = await fetch(`${gateway.http}/v1/users/${bob}/disconnect`, {
                method: "POST",
                headers: { authorization: `Bearer ${token({ roles: ["admin"] })}`, "content-type": "application/json" },
                body: JSON.stringify({ reason: "test" }),
            });
            assert.ok(response.ok, `${response.status}`);
            await waitFor("bob stopped", () => b.state === "stopped");
            await dSub.unsubscribe();
            await waitFor("alice to see dave leave", () => !aSub.presence.members.has(dave));
            assert.ok(bSub.presence.members.has(dave), "bob's set is the last known while he is away");
            const mark2 = bSeen.changes.length;
            assert.equal(b.reconnect(), true);
            await waitFor("bob's snapshot after subscribing again", () => bSeen.changes.slice(mark2).some((c) => c.snapshot));
            assert.equal(bSeen.connections.at(-1), false, "a fresh session: subscribed again with since_seq");
            const fresh = bSeen.changes.slice(mark2).find((c) => c.snapshot);
            assert.deepEqual(ids(fresh.left), [dave], "the snapshot shows who went meanwhile");
            assert.deepEqual(online(bSub), [alice, bob].sort());
        } finally {
            await a.close();
            await b.close();
            await d?.close();
            await link.close();
        }
    });
});
