// The token's life on one connection, against the real gateway and
// nats-server: the SDK refreshes short-lived tokens in band (no 4001, no
// reconnect, nothing lost), falls back to the reconnect when getToken fails,
// reports a refused refresh without losing the connection, ends a
// subscription the new token no longer grants (`revoked`), and stops after
// an operator's disconnect (4003) until the application reconnects.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import WebSocket from "ws";

import { connect, RefreshError } from "../dist/index.js";
import { message, sleep, startGateway, startNats, token, uuid, waitFor } from "./support.mjs";

/** The gateway's reconnect base: the client's back-off starts from it. */
const RECONNECT_BASE_MS = 50;

/** Collects a subscription's events and the client's state changes. */
function record(client, subscription) {
    const seen = { events: [], closes: [], connected: 0, refreshed: [], errors: [], stopped: [], ends: [] };
    subscription?.on("event", (event) => seen.events.push(event));
    subscription?.on("unsubscribed", ({ reason }) => seen.ends.push(reason));
    client.on("disconnected", (d) => seen.closes.push(d));
    client.on("connected", () => (seen.connected += 1));
    client.on("refreshed", ({ exp }) => seen.refreshed.push(exp));
    client.on("error", (e) => seen.errors.push(e));
    client.on("stopped", (s) => seen.stopped.push(s));
    return seen;
}

const seqsOf = (events) => events.map((e) => e.seq);

async function metric(gateway, name) {
    const text = await (await fetch(`${gateway.http}/metrics`)).text();
    const line = text.split("\n").find((l) => l.startsWith(`${name} `));
    return line ? Number(line.split(" ")[1]) : 0;
}

/** `POST /v1/users/{user}/disconnect` with `bearer`; resolves to the response's status and body text. */
async function operatorDisconnect(gateway, user, bearer, reason) {
    const response = await fetch(`${gateway.http}/v1/users/${user}/disconnect`, {
        method: "POST",
        headers: { authorization: `Bearer ${bearer}`, "content-type": "application/json" },
        body: JSON.stringify({ reason }),
    });
    return { status: response.status, body: await response.text() };
}

/** Publishes to `channelId` every 50 ms until `stop()`; `seqs` are the stored events' seqs, in order. */
function publisher(gateway, channelId, label) {
    const seqs = [];
    let running = true;
    const done = (async () => {
        for (let i = 0; running; i++) {
            seqs.push((await message(gateway, channelId, `${label}${i}`)).seq);
            await sleep(50);
        }
    })();
    return {
        seqs,
        async stop() {
            running = false;
            await done;
        },
    };
}

describe("the token's refresh and the operator's disconnect against a real gateway", () => {
    let nats;
    let gateway;
    before(async () => {
        nats = await startNats();
        gateway = await startGateway(nats.url, ["--reconnect-base", `${RECONNECT_BASE_MS}ms`, "--heartbeat", "1s"]);
    });
    after(async () => {
        await gateway?.stop();
        nats?.stop();
    });

    test("4 s tokens from getToken are refreshed in band: one connection past several expiries, no 4001, every event once, in order", async () => {
        const channel = uuid();
        const user = uuid();
        let minted = 0;
        const client = connect({
            url: gateway.ws,
            WebSocket,
            getToken: () => {
                minted += 1;
                return token({ sub: user, ttlSeconds: 4 });
            },
        });
        const sub = client.subscribe(`channel:${channel}`);
        const seen = record(client, sub);
        await waitFor("subscribed", () => client.cursors[`channel:${channel}`] !== undefined);
        const firstExp = client.tokenExp;
        assert.ok(firstExp > Date.now() / 1000, `the connection's token expires later (${firstExp})`);

        const events = publisher(gateway, channel, "r");
        // Past the first token's exp and two more lifetimes, with four refreshes at least.
        await waitFor("four refreshes, past three expiries", () => seen.refreshed.length >= 4 && Date.now() / 1000 > firstExp + 8);
        await events.stop();
        await waitFor(`all ${events.seqs.length} events`, () => seen.events.length >= events.seqs.length);
        await sleep(300); // anything extra would show up now

        assert.deepEqual(seen.closes, [], "no close at all: no 4001");
        assert.equal(seen.connected, 1, "one connection");
        assert.equal(client.state, "connected");
        assert.deepEqual(seqsOf(seen.events), events.seqs, "every event once, in order");
        assert.deepEqual(seen.errors, []);
        for (let i = 1; i < seen.refreshed.length; i++) assert.ok(seen.refreshed[i] > seen.refreshed[i - 1], `exps increase: ${seen.refreshed}`);
        assert.ok(seen.refreshed[0] > firstExp);
        assert.equal(client.tokenExp, seen.refreshed.at(-1), "tokenExp follows the refreshes");
        assert.equal(minted, 1 + seen.refreshed.length, "one token per refresh, none for a reconnect");
        console.log(`  ${seen.refreshed.length} refreshes, ${events.seqs.length} events on one connection`);
        await client.close();
    });

    test("getToken failing at refresh time: the 4001 at exp, a reconnect with a fresh token, and nothing lost", async () => {
        const channel = uuid();
        const user = uuid();
        let calls = 0;
        let failures = 0;
        let failing = false;
        const client = connect({
            url: gateway.ws,
            WebSocket,
            getToken: () => {
                calls += 1;
                if (failing) {
                    failures += 1;
                    throw new Error("the identity provider is down");
                }
                return token({ sub: user, ttlSeconds: calls === 1 ? 3 : 3600 });
            },
        });
        const sub = client.subscribe(`channel:${channel}`);
        const seen = record(client, sub);
        await waitFor("subscribed", () => client.cursors[`channel:${channel}`] !== undefined);
        // From now on getToken fails, until the gateway closes the connection with 4001.
        failing = true;
        client.on("disconnected", ({ code }) => {
            if (code === 4001) failing = false;
        });
        const events = publisher(gateway, channel, "f");
        await waitFor("the 4001 close", () => seen.closes.length > 0);
        await waitFor("the reconnect", () => seen.connected === 2);
        const atReconnect = events.seqs.length;
        await waitFor("a few events published after the reconnect", () => events.seqs.length >= atReconnect + 3);
        await events.stop();
        await waitFor(`all ${events.seqs.length} events`, () => seen.events.length >= events.seqs.length);
        await sleep(300);

        assert.deepEqual(seen.closes.map((c) => c.code), [4001], "the token expired once, and only then");
        assert.ok(failures >= 2, `the refresh was tried again after getToken failed (${failures} failures)`);
        const refreshErrors = seen.errors.filter((e) => e.code === "refresh_failed");
        assert.equal(refreshErrors.length, failures, "each failed attempt was reported");
        assert.match(refreshErrors.at(-1).message, /the identity provider is down.*gave up/);
        assert.deepEqual(seen.refreshed, [], "no refresh went through");
        assert.deepEqual(seqsOf(seen.events), events.seqs, "every event once, in order, across the reconnect");
        assert.ok(client.tokenExp > Date.now() / 1000 + 3000, "the reconnect's token is the fresh one");
        await client.close();
    });

    test("refresh() with another user's token is refused (forbidden), a token that does not verify too, and the connection stays as it was", async () => {
        const channel = uuid();
        const user = uuid();
        const client = connect({ url: gateway.ws, WebSocket, token: token({ sub: user }) });
        const sub = client.subscribe(`channel:${channel}`);
        const seen = record(client, sub);
        await waitFor("subscribed", () => client.cursors[`channel:${channel}`] !== undefined);
        const exp = client.tokenExp;

        await assert.rejects(client.refresh(token({ sub: uuid() })), (error) => {
            assert.ok(error instanceof RefreshError, String(error));
            assert.equal(error.code, "forbidden", error.message);
            return true;
        });
        await assert.rejects(client.refresh("not-a-token"), (error) => {
            assert.ok(error instanceof RefreshError, String(error));
            assert.equal(error.code, "bad_request", error.message);
            return true;
        });
        const after = (await message(gateway, channel, "after the refusals")).seq;
        await waitFor("the event after the refusals", () => seen.events.length === 1);
        assert.deepEqual(seqsOf(seen.events), [after]);
        assert.equal(client.tokenExp, exp, "the token is the old one");
        assert.deepEqual(seen.closes, []);
        assert.equal(seen.connected, 1);
        assert.deepEqual(seen.refreshed, []);
        assert.deepEqual(seen.errors, [], "a refusal of refresh() is its promise's, not an error event");
        await client.close();
    });

    test("refresh() with narrower channels: the subscription no longer granted ends with revoked, the other goes on", async () => {
        const kept = uuid();
        const dropped = uuid();
        const user = uuid();
        const client = connect({ url: gateway.ws, WebSocket, token: token({ sub: user, channels: [kept, dropped] }) });
        const keptSub = client.subscribe(`channel:${kept}`);
        const droppedSub = client.subscribe(`channel:${dropped}`);
        const seen = record(client, keptSub);
        const droppedSeen = record(client, droppedSub);
        await waitFor("both subscribed", () => Object.keys(client.cursors).length === 2);
        const before = [(await message(gateway, dropped, "before")).seq];
        await waitFor("the event before the refresh", () => droppedSeen.events.length === 1);

        const narrower = token({ sub: user, channels: [kept], ttlSeconds: 7200 });
        const exp = await client.refresh(narrower);
        assert.ok(exp >= Date.now() / 1000 + 7000, `the new exp (${exp})`);
        assert.equal(client.tokenExp, exp);
        await waitFor("the revoked subscription's end", () => droppedSub.ended);
        assert.deepEqual(droppedSeen.ends, ["revoked"]);

        await message(gateway, dropped, "after the revocation");
        const keptSeq = (await message(gateway, kept, "still granted")).seq;
        await waitFor("the kept channel's event", () => seen.events.length === 1);
        await sleep(300);
        assert.deepEqual(seqsOf(seen.events), [keptSeq]);
        assert.deepEqual(seqsOf(droppedSeen.events), before, "nothing of the revoked channel after its end");
        assert.deepEqual(seen.ends, [], "the kept subscription did not end");
        assert.deepEqual(seen.closes, []);
        assert.deepEqual(seen.refreshed, [exp]);
        await client.close();
    });

    test("an operator's disconnect (4003): the reason reaches the application, no reconnect on its own, and reconnect() resumes exactly", async () => {
        const channel = uuid();
        const user = uuid();
        let minted = 0;
        const client = connect({
            url: gateway.ws,
            WebSocket,
            getToken: () => {
                minted += 1;
                return token({ sub: user });
            },
        });
        const sub = client.subscribe(`channel:${channel}`);
        const seen = record(client, sub);
        await waitFor("subscribed", () => client.cursors[`channel:${channel}`] !== undefined);
        const published = [(await message(gateway, channel, "before")).seq];
        await waitFor("the first event", () => seen.events.length === 1);

        const refused = await operatorDisconnect(gateway, user, token({ roles: ["publisher", "auditor"] }), "not an admin");
        assert.equal(refused.status, 403, `only the admin role may disconnect users: ${JSON.stringify(refused)}`);
        assert.equal(seen.closes.length, 0);

        const done = await operatorDisconnect(gateway, user, token({ roles: ["admin"] }), "password changed");
        assert.ok(done.status >= 200 && done.status < 300, JSON.stringify(done));
        await waitFor("the stopped event", () => seen.stopped.length === 1);
        assert.deepEqual(seen.stopped, [{ code: 4003, reason: "password changed" }]);
        assert.deepEqual(seen.closes, [{ code: 4003, reason: "password changed", reconnectInMs: null }]);
        assert.equal(client.state, "stopped");

        // Twenty reconnect bases and more: a client that meant to come back would have.
        for (let i = 0; i < 3; i++) published.push((await message(gateway, channel, `while stopped ${i}`)).seq);
        await sleep(20 * RECONNECT_BASE_MS);
        assert.equal(seen.connected, 1, "no new connection");
        assert.equal(minted, 1, "no token asked for");
        assert.equal(await metric(gateway, "switchboard_connections"), 0, "the gateway holds no connection");
        assert.equal(client.state, "stopped");
        assert.equal(sub.ended, false, "the subscription waits for a reconnect");

        // The application decides to come back (a new login, say).
        assert.equal(client.reconnect(), true);
        await waitFor("the reconnect", () => seen.connected === 2);
        published.push((await message(gateway, channel, "after")).seq);
        await waitFor("the events missed while stopped, and the next", () => seen.events.length >= published.length);
        await sleep(300);
        assert.deepEqual(seqsOf(seen.events), published, "every event once, in order");
        assert.equal(minted, 2);
        await client.close();
    });
});
