// The SDK against the real gateway and nats-server: exact resume across
// abrupt drops, a fresh token after 4001 (when the in-band refresh was
// refused), typing, gaps after retention, saved cursors, and a clean close.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import WebSocket from "ws";

import { connect, memoryStorage } from "../dist/index.js";
import { deleteStream, message, publish, publishWithCli, sleep, startGateway, startNats, tcpProxy, token, uuid, waitFor, withOwnGateway } from "./support.mjs";

/** Collects a subscription's events and the client's state changes. */
function record(client, subscription) {
    const seen = { events: [], gaps: [], closes: [], connected: 0 };
    subscription?.on("event", (event) => seen.events.push(event));
    client.on("gap", (gap) => seen.gaps.push(gap));
    client.on("disconnected", (d) => seen.closes.push(d.code));
    client.on("connected", () => (seen.connected += 1));
    return seen;
}

const seqsOf = (events) => events.map((e) => e.seq);

describe("the SDK against a real gateway", () => {
    let nats;
    let gateway;
    before(async () => {
        nats = await startNats();
        gateway = await startGateway(nats.url, ["--reconnect-base", "50ms", "--heartbeat", "1s", "--session-flush-interval", "200ms"]);
    });
    after(async () => {
        await gateway?.stop();
        nats?.stop();
    });

    test("every event exactly once, in order, while the connection is reset again and again", async () => {
        const proxy = await tcpProxy(gateway.addr);
        const busy = uuid();
        const quiet = uuid();
        const client = connect({ url: `ws://${proxy.addr}/v1/ws`, token: token(), WebSocket });
        const busySub = client.subscribe(`channel:${busy}`);
        const quietSub = client.subscribe(`channel:${quiet}`);
        const seen = record(client, busySub);
        const quietEvents = [];
        quietSub.on("event", (e) => quietEvents.push(e));
        await waitFor("the first connection", () => seen.connected === 1);
        await waitFor("both subscriptions replayed", () => Object.keys(client.cursors).length === 2);

        // A steady publisher (one event every 10 ms) while the test resets the
        // connection 20 times; the quiet channel gets its first event only
        // after the first reset, so its resume point comes from `replayed`.
        const published = [];
        const quietPublished = [];
        let publishing = true;
        const publisher = (async () => {
            for (let i = 0; publishing; i++) {
                published.push((await message(gateway, busy, `m${i}`)).seq);
                if (i % 10 === 5 && seen.connected > 1) quietPublished.push((await message(gateway, quiet, `q${i}`)).seq);
                await sleep(10);
            }
        })();
        for (let drop = 1; drop <= 20; drop++) {
            await waitFor(`connection ${drop}`, () => seen.connected === drop && proxy.connections > 0);
            await sleep(100 + Math.random() * 200);
            proxy.drop();
        }
        await waitFor("the last reconnect", () => seen.connected === 21);
        publishing = false;
        await publisher;

        await waitFor(`all ${published.length} events`, () => busySub.ended || seen.events.length >= published.length);
        await waitFor(`all ${quietPublished.length} quiet events`, () => quietEvents.length >= quietPublished.length);
        await sleep(300); // anything extra would show up now
        assert.deepEqual(seqsOf(seen.events), published, "the busy channel: every event once, in order");
        assert.deepEqual(seqsOf(quietEvents), quietPublished, "the quiet channel: every event once, in order");
        assert.ok(quietPublished.length > 0, "the quiet channel got events after the first reset");
        assert.equal(seen.gaps.length, 0, "no gap");
        assert.ok(seen.closes.length >= 20, `a disconnect per reset (got ${seen.closes.length})`);
        console.log(
            `  ${published.length} events over ${seen.connected} connections; ${client.stats.duplicatesDropped} replayed again and dropped by seq`,
        );
        const closed = await client.close();
        assert.equal(closed.code, 1000);
        await proxy.close();
    });

    test("a token that expires (4001) is replaced from getToken, and nothing is lost", async () => {
        const channel = uuid();
        const user = uuid();
        let minted = 0;
        let expired = false;
        const client = connect({
            url: gateway.ws,
            WebSocket,
            getToken: () => {
                minted += 1;
                // The first token lives 2 s; its in-band refreshes get another
                // user's token, which the gateway refuses, so it closes with
                // 4001 when the first expires; the reconnect gets a good one.
                if (minted === 1) return token({ sub: user, ttlSeconds: 2 });
                return token({ sub: expired ? user : uuid(), ttlSeconds: 3600 });
            },
        });
        client.on("disconnected", ({ code }) => {
            if (code === 4001) expired = true;
        });
        const refusals = [];
        client.on("error", (e) => e.code === "refresh_failed" && refusals.push(e.message));
        const sub = client.subscribe(`channel:${channel}`);
        const seen = record(client, sub);
        await waitFor("connected", () => seen.connected === 1);
        await waitFor("subscribed", () => client.cursors[`channel:${channel}`] !== undefined);
        const published = [];
        for (let i = 0; !seen.closes.includes(4001) || published.length < 5; i++) {
            published.push((await message(gateway, channel, `t${i}`)).seq);
            await sleep(50);
            assert.ok(i < 2_000, "the gateway closed with 4001 within 100 s");
        }
        for (let i = 0; i < 5; i++) published.push((await message(gateway, channel, `after${i}`)).seq);
        await waitFor("every event after the refresh", () => seen.events.length >= published.length);
        assert.deepEqual(seqsOf(seen.events), published);
        assert.ok(minted >= 2, "a fresh token was asked for");
        assert.ok(seen.connected >= 2, "it reconnected");
        assert.ok(refusals.length >= 1 && refusals.every((m) => /forbidden/.test(m)), `the refreshes were refused: ${refusals}`);
        await client.close();
    });

    test("a connection that goes silent is given up after a heartbeat, and the events sent meanwhile arrive once", async () => {
        const channel = uuid();
        const proxy = await tcpProxy(gateway.addr);
        const client = connect({ url: `ws://${proxy.addr}/v1/ws`, token: token(), WebSocket });
        const sub = client.subscribe(`channel:${channel}`);
        const seen = record(client, sub);
        const reasons = [];
        client.on("disconnected", (d) => reasons.push(d.reason));
        await waitFor("subscribed", () => client.cursors[`channel:${channel}`] !== undefined);
        const published = [(await message(gateway, channel, "before")).seq];
        await waitFor("the first event", () => seen.events.length === 1);
        // No RST, no FIN: the packets just stop, as on a dead Wi-Fi.
        proxy.freeze();
        for (let i = 0; i < 3; i++) published.push((await message(gateway, channel, `during${i}`)).seq);
        await waitFor("the watchdog to give up (heartbeat 1 s)", () => seen.closes.length === 1);
        assert.match(reasons[0], /no frame from the server/);
        await waitFor("a new connection", () => seen.connected === 2);
        await waitFor("the events sent while it was silent", () => seen.events.length === published.length);
        assert.deepEqual(seqsOf(seen.events), published);
        await client.close();
        await proxy.close();
    });

    test("after a 4029 (too many bad frames) the client waits abusePauseMs before it comes back", async () => {
        const strict = await startGateway(nats.url, ["--reconnect-base", "50ms", "--bad-frames-per-minute", "2"]);
        try {
            const client = connect({ url: strict.ws, token: token(), WebSocket, abusePauseMs: 45_000 });
            const seen = record(client);
            const waits = [];
            client.on("disconnected", (d) => waits.push(d.reconnectInMs));
            await waitFor("connected", () => seen.connected === 1);
            // Typing to something that is not a channel id is a bad frame.
            for (let i = 0; i < 3; i++) client.typing("not-a-channel", true);
            await waitFor("the 4029 close", () => seen.closes.length === 1);
            assert.deepEqual(seen.closes, [4029]);
            assert.deepEqual(waits, [45_000]);
            assert.equal(client.state, "disconnected");
            await client.close();
            assert.equal(seen.connected, 1, "it did not come back");
        } finally {
            await strict.stop();
        }
    });

    test("typing reaches the channel's other members with the sender's identity", async () => {
        const channel = uuid();
        const alice = uuid();
        const typist = connect({ url: gateway.ws, WebSocket, token: token({ sub: alice, name: "alice" }) });
        const watcher = connect({ url: gateway.ws, WebSocket, token: token() });
        typist.subscribe(`channel:${channel}`);
        const watched = watcher.subscribe(`channel:${channel}`);
        const typing = [];
        watched.on("event", (e) => e.type === "user_typing" && typing.push(e));
        await waitFor("both subscribed", () => typist.cursors[`channel:${channel}`] !== undefined && watcher.cursors[`channel:${channel}`] !== undefined);
        // Typing is ephemeral (and limited to 2 a second): send until it is seen.
        await waitFor("a user_typing", async () => {
            typist.typing(channel, true);
            await sleep(600);
            return typing.length > 0;
        });
        assert.equal(typing[0].data.user_id, alice);
        assert.equal(typing[0].data.username, "alice");
        assert.equal(typing[0].data.is_typing, true);
        assert.equal(typing[0].seq, undefined, "typing has no seq");
        await typist.close();
        await watcher.close();
    });

    test("after retention dropped what it missed, the client is told of the gap and goes on", async () => {
        await withOwnGateway(["--reconnect-base", "50ms", "--retention", "2s"], async (short) => {
            const channel = uuid();
            const proxy = await tcpProxy(short.addr);
            let gate = null;
            const client = connect({
                url: `ws://${proxy.addr}/v1/ws`,
                WebSocket,
                getToken: async () => {
                    await gate;
                    return token();
                },
            });
            const sub = client.subscribe(`channel:${channel}`);
            const seen = record(client, sub);
            await waitFor("subscribed", () => client.cursors[`channel:${channel}`] !== undefined);
            const first = (await message(short, channel, "seen")).seq;
            await waitFor("the first event", () => seen.events.length === 1);

            // Offline (the next token waits for the gate) while three events
            // are stored and then aged out by the 2 s retention.
            let open;
            gate = new Promise((resolve) => (open = resolve));
            proxy.drop();
            const missed = [];
            for (let i = 0; i < 3; i++) missed.push((await message(short, channel, `missed${i}`)).seq);
            const auditor = token({ roles: ["auditor"] });
            await waitFor("retention to drop the missed events", async () => {
                const response = await fetch(`${short.http}/v1/history/channel:${channel}`, { headers: { authorization: `Bearer ${auditor}` } });
                return (await response.text()).trim() === "";
            });
            const latest = (await message(short, channel, "after the gap")).seq;
            open();

            await waitFor("the gap", () => seen.gaps.length === 1);
            await waitFor("the event after the gap", () => seen.events.length === 2);
            assert.equal(seen.gaps[0].channel, `channel:${channel}`);
            assert.ok(seen.gaps[0].firstSeq > missed[2], `first_seq ${seen.gaps[0].firstSeq} is past the dropped events ${missed}`);
            assert.deepEqual(seqsOf(seen.events), [first, latest]);
            await client.close();
            await proxy.close();
        });
    });

    test("a stream recreated under a live subscription: a gap (epoch), then the new stream from its start", async () => {
        await withOwnGateway(["--reconnect-base", "50ms"], async (own, nats2) => {
            const channel = uuid();
            const proxy = await tcpProxy(own.addr);
            const client = connect({ url: `ws://${proxy.addr}/v1/ws`, WebSocket, token: token() });
            const sub = client.subscribe(`channel:${channel}`);
            const seen = record(client, sub);
            const epochs = [];
            sub.on("subscribed", ({ epoch }) => epochs.push(epoch));
            await waitFor("subscribed", () => client.cursors[`channel:${channel}`] !== undefined);
            const old = [];
            for (let i = 0; i < 3; i++) old.push((await message(own, channel, `old${i}`)).seq);
            await waitFor("the old stream's events", () => seen.events.length === 3);

            const deleted = await deleteStream(nats2.url, "CHAT_EVENTS");
            assert.equal(deleted.success, true, JSON.stringify(deleted));
            // The tools create a missing stream: the new one's seqs start at 1, below the client's cursor.
            const data = { message_id: uuid(), channel_id: channel, user_id: uuid(), username: "cli", content: "new0" };
            publishWithCli(nats2.url, "channel_message", data);
            await waitFor("the gap", () => seen.gaps.length === 1);
            assert.equal(seen.gaps[0].reason, "epoch");
            await waitFor("the new stream's first event", () => seen.events.length === 4);
            const fresh = [1];
            for (let i = 1; i < 3; i++) fresh.push((await message(own, channel, `new${i}`)).seq);
            await waitFor("the new stream's events", () => seen.events.length === 6);
            assert.deepEqual(seqsOf(seen.events), [...old, ...fresh]);
            assert.notEqual(epochs.at(-1), epochs[0], "the subscription counts the new epoch");

            // A reset afterwards resumes in the new stream, exactly.
            proxy.drop();
            for (let i = 3; i < 6; i++) fresh.push((await message(own, channel, `new${i}`)).seq);
            await waitFor("the events after the reset", () => seen.events.length === 9);
            await sleep(200);
            assert.deepEqual(seqsOf(seen.events), [...old, ...fresh]);
            assert.equal(seen.gaps.length, 1, "one gap only");
            await client.close();
            await proxy.close();
        });
    });

    test("saved cursors resume a new client (a reloaded page) where the last one stopped", async () => {
        const channel = uuid();
        const storage = memoryStorage();
        const user = uuid();
        const first = connect({ url: gateway.ws, WebSocket, token: token({ sub: user }), storage, ackIntervalMs: 100 });
        const sub = first.subscribe(`channel:${channel}`);
        const seen = record(first, sub);
        await waitFor("subscribed", () => first.cursors[`channel:${channel}`] !== undefined);
        const before = [];
        for (let i = 0; i < 3; i++) before.push((await message(gateway, channel, `b${i}`)).seq);
        await waitFor("three events", () => seen.events.length === 3);
        await first.close();

        const after = [];
        for (let i = 0; i < 4; i++) after.push((await message(gateway, channel, `a${i}`)).seq);
        const second = connect({ url: gateway.ws, WebSocket, token: token({ sub: user }), storage });
        const resumed = second.subscribe(`channel:${channel}`);
        const seen2 = record(second, resumed);
        await waitFor("the four events it missed", () => seen2.events.length >= 4);
        await sleep(200);
        assert.deepEqual(seqsOf(seen.events), before);
        assert.deepEqual(seqsOf(seen2.events), after, "exactly what the first client had not seen");
        await second.close();
    });

    test("close() is a clean close handshake, and a closed client stays closed", async () => {
        const client = connect({ url: gateway.ws, WebSocket, token: token() });
        const seen = record(client);
        await waitFor("connected", () => seen.connected === 1);
        const closed = await client.close();
        assert.deepEqual(closed, { code: 1000, reason: "", wasClean: true });
        assert.equal(client.state, "closed");
        await sleep(300);
        assert.equal(seen.connected, 1, "no reconnect after close()");
    });

    test("an event's data reaches the application as published, unknown fields included", async () => {
        const channel = uuid();
        const client = connect({ url: gateway.ws, WebSocket, token: token() });
        const sub = client.subscribe(`channel:${channel}`);
        await waitFor("subscribed", () => client.cursors[`channel:${channel}`] !== undefined);
        const arrived = new Promise((resolve) => sub.on("event", resolve));
        const stored = await publish(gateway, "channel_updated", { channel_id: channel, name: "renamed", topic_v2: { x: 1 } });
        const event = await arrived;
        assert.equal(event.seq, stored.seq);
        assert.equal(event.id, stored.id);
        assert.deepEqual(event.data, { channel_id: channel, name: "renamed", topic_v2: { x: 1 } });
        await client.close();
    });
});
