// Event types a catalog directory adds (`serve --catalog-dir`), through the
// SDK, against a real nats-server and the real gateway: a stored added type
// on two routes (a channel and a user) comes live, and after an abrupt drop
// (RST) with more published while the client is away, every copy comes
// exactly once, in order, among built-in events (what the session's replay
// repeats is dropped by seq), acked by its seq; an
// ephemeral added type comes live without a seq, and not again after a
// reconnect. The SDK knows neither type: it delivers them as `AddedEvent`s.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import WebSocket from "ws";

import { connect, isBuiltIn } from "../dist/index.js";
import { catalogDir, message, publish, sleep, startGateway, startNats, tcpProxy, token, uuid, waitFor } from "./support.mjs";

/**
 * A `ws` WebSocket that keeps every frame the client sends, parsed, in
 * `wire.sent`; while `wire.loseAcks` is set, its acks go no further (as
 * acks written just before a network drop die with it).
 */
function recordingWebSocket(wire) {
    return class extends WebSocket {
        send(data, ...rest) {
            const frame = JSON.parse(String(data));
            wire.sent.push(frame);
            if (wire.loseAcks && frame.type === "ack") return;
            return super.send(data, ...rest);
        }
    };
}

const reaction = (channelId, userId, emoji) => ({ channel_id: channelId, message_id: uuid(), user_id: userId, emoji });

/** The event a subscription should get for a stored publish: the envelope, with one of its copies' seqs. */
/**
 * The envelope of one stored copy of a published event. Each copy's
 * `timestamp` is its own log time: the receipt's is that of the copy with
 * the receipt's `seq`, and a later copy (a higher seq) was stored no sooner.
 */
function expectEvent(type, data, channel, receipt, seq, event) {
    let timestamp = receipt.timestamp;
    if (seq !== receipt.seq) {
        assert.ok(seq > receipt.seq, `a later copy: ${seq} after ${receipt.seq}`);
        assert.ok(Date.parse(event.timestamp) >= Date.parse(receipt.timestamp), `copy ${seq} stored at ${event.timestamp}, not before ${receipt.timestamp}`);
        timestamp = event.timestamp;
    }
    return { type, timestamp, data, channel, seq, id: receipt.id };
}

describe("added event types through the SDK", () => {
    let catalog;
    let nats;
    let gateway;
    before(async () => {
        catalog = catalogDir();
        nats = await startNats();
        // The default reconnect base (2 s): a dropped client stays away long enough to publish to it.
        gateway = await startGateway(nats.url, ["--catalog-dir", catalog.dir, "--session-flush-interval", "200ms"]);
    });
    after(async () => {
        await gateway?.stop();
        nats?.stop();
        catalog?.remove();
    });

    test("a stored added type on two routes: live, then after a reset with more published while away, each copy once, in order, acked", async () => {
        const proxy = await tcpProxy(gateway.addr);
        const channelId = uuid();
        const userId = uuid();
        const channel = `channel:${channelId}`;
        const user = `user:${userId}`;
        const wire = { sent: [], loseAcks: false };
        const acked = (subscription, seq) => wire.sent.some((f) => f.type === "ack" && f.channel === subscription && f.seq === seq);
        const client = connect({ url: `ws://${proxy.addr}/v1/ws`, WebSocket: recordingWebSocket(wire), token: token({ sub: userId }), ackIntervalMs: 100 });
        let connected = 0;
        client.on("connected", () => (connected += 1));
        const gaps = [];
        client.on("gap", (gap) => gaps.push(gap));
        const resumed = [];
        client.on("resumed", ({ channels }) => resumed.push(channels));

        // The channel's events through a handler, the user's through `for await`.
        const room = client.subscribe(channel);
        const onChannel = [];
        room.on("event", (event) => onChannel.push(event));
        const inbox = client.subscribe(user);
        const onUser = [];
        const reading = (async () => {
            for await (const event of inbox) onUser.push(event);
        })();
        await waitFor("both subscriptions live", () => client.cursors[channel] !== undefined && client.cursors[user] !== undefined);

        // Live: an added event, a built-in one, an added one.
        const expectChannel = [];
        const expectUser = [];
        const published = [];
        const publishReaction = async (emoji) => {
            const data = reaction(channelId, userId, emoji);
            const receipt = await publish(gateway, "reaction_added", data);
            assert.equal(receipt.seqs.length, 2, `a copy per route: ${JSON.stringify(receipt)}`);
            published.push({ type: "reaction_added", data, receipt });
        };
        const publishMessage = async (text) => {
            const receipt = await message(gateway, channelId, text);
            published.push({ type: "channel_message", receipt });
        };
        await publishReaction("+1");
        await waitFor("the first added event on both", () => onChannel.length >= 1 && onUser.length >= 1);
        await waitFor("it is acked on both subscriptions", () => acked(channel, onChannel[0].seq) && acked(user, onUser[0].seq));
        // The next acks die on the way: the server's session cursors stay at
        // the first event, so its replay after the drop repeats the next two.
        await sleep(1_000); // the acked cursors are saved (every session-flush-interval, and when the connection ends)
        wire.loseAcks = true;
        await publishMessage("hello");
        await publishReaction("tada");
        await waitFor("three live events on the channel, two on the user", () => onChannel.length >= 3 && onUser.length >= 2);
        await waitFor("their acks (lost)", () => acked(channel, onChannel[2].seq) && acked(user, onUser[1].seq));

        const [first] = onChannel;
        const firstPublished = published[0];
        assert.ok(firstPublished.receipt.seqs.includes(first.seq), `the channel copy's seq is one of ${firstPublished.receipt.seqs}`);
        assert.deepEqual(first, expectEvent("reaction_added", firstPublished.data, channel, firstPublished.receipt, first.seq, first), "the envelope, as a built-in event's");
        assert.equal(isBuiltIn(first), false, "reaction_added is not among the SDK's types");
        assert.equal(isBuiltIn(onChannel[1]), true, "channel_message is");
        assert.deepEqual(onUser[0], expectEvent("reaction_added", firstPublished.data, user, firstPublished.receipt, onUser[0].seq, onUser[0]));
        assert.notEqual(onUser[0].seq, first.seq, "the user copy has a seq of its own");
        assert.deepEqual([onUser[0].seq, first.seq].sort((a, b) => a - b), [...firstPublished.receipt.seqs].sort((a, b) => a - b));

        // An abrupt drop (RST, no close frame); more is published while the client is away.
        proxy.drop();
        await waitFor("the client to notice the drop", () => client.state === "disconnected");
        const away = connected;
        for (let i = 0; i < 5; i++) {
            await publishReaction(`away${i}`);
            if (i === 2) await publishMessage("while away");
        }
        const cursor = await publish(gateway, "cursor_moved", { channel_id: channelId, x: 99 });
        assert.equal(cursor.stored, false, JSON.stringify(cursor));
        assert.equal(client.state, "disconnected", "all of it was published while the client was away");
        assert.equal(connected, away);
        wire.loseAcks = false;

        // After the reconnect, live again.
        await waitFor("the reconnect", () => connected === away + 1);
        await publishReaction("back");
        for (const { type, data, receipt } of published) {
            if (type === "reaction_added") expectUser.push({ type, data, id: receipt.id });
            expectChannel.push({ type, id: receipt.id });
        }
        await waitFor(`all ${expectChannel.length} channel events`, () => onChannel.length >= expectChannel.length);
        await waitFor(`all ${expectUser.length} user events`, () => onUser.length >= expectUser.length);
        await sleep(500); // a duplicate would show up now
        assert.deepEqual(onChannel.map((e) => ({ type: e.type, id: e.id })), expectChannel, "the channel: every event once, in publish order");
        assert.deepEqual(onUser.map((e) => ({ type: e.type, data: e.data, id: e.id })), expectUser, "the user: every reaction once, in publish order");
        for (const events of [onChannel, onUser]) {
            const seqs = events.map((e) => e.seq);
            assert.deepEqual(seqs, [...seqs].sort((a, b) => a - b), "seqs increase");
            assert.equal(new Set(seqs).size, seqs.length, "no seq twice");
        }
        for (const { type, receipt } of published) {
            if (type !== "reaction_added") continue;
            const copies = [...onChannel, ...onUser].filter((e) => e.id === receipt.id).map((e) => e.seq).sort((a, b) => a - b);
            assert.deepEqual(copies, [...receipt.seqs].sort((a, b) => a - b), "one copy per route, with the seqs the publish gave");
        }
        assert.ok(!onChannel.some((e) => e.type === "cursor_moved"), "the ephemeral event sent while away is not replayed");
        assert.deepEqual(gaps, []);
        assert.deepEqual(client.cursors, { [channel]: onChannel.at(-1).seq, [user]: onUser.at(-1).seq });
        assert.deepEqual(resumed.map((channels) => [...channels].sort()), [[channel, user].sort()], "the session was restored, from cursors behind the client's");
        assert.ok(client.stats.duplicatesDropped >= 3, `the replay repeated what was delivered, and it was dropped by seq (${client.stats.duplicatesDropped})`);
        await waitFor("the last events acked on the new connection", () => acked(channel, onChannel.at(-1).seq) && acked(user, onUser.at(-1).seq));
        console.log(`  ${onChannel.length} + ${onUser.length} events; ${client.stats.duplicatesDropped} replayed again and dropped by seq`);

        await client.close();
        await reading;
        await proxy.close();
    });

    test("an ephemeral added type comes live, without a seq, and moves no cursor", async () => {
        const channelId = uuid();
        const channel = `channel:${channelId}`;
        const client = connect({ url: gateway.ws, WebSocket, token: token() });
        const sub = client.subscribe(channel);
        const events = [];
        sub.on("event", (event) => events.push(event));
        await waitFor("subscribed", () => client.cursors[channel] !== undefined);
        const before = client.cursors[channel];

        const data = { channel_id: channelId, x: 7 };
        const receipt = await publish(gateway, "cursor_moved", data);
        assert.deepEqual(Object.keys(receipt).sort(), ["id", "stored"], JSON.stringify(receipt));
        await waitFor("the cursor_moved event", () => events.length === 1);
        const [moved] = events;
        assert.deepEqual(
            { type: moved.type, data: moved.data, channel: moved.channel, id: moved.id },
            { type: "cursor_moved", data, channel, id: receipt.id },
        );
        assert.equal("seq" in moved, false, "no seq");
        assert.match(moved.timestamp, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
        assert.equal(isBuiltIn(moved), false);
        assert.equal(client.cursors[channel], before, "no cursor moved");

        // A stored event after it comes as usual.
        const stored = await publish(gateway, "reaction_added", reaction(channelId, uuid(), "eyes"));
        await waitFor("the reaction", () => events.length === 2);
        assert.equal(events[1].type, "reaction_added");
        assert.ok(stored.seqs.includes(events[1].seq));
        assert.equal(client.cursors[channel], events[1].seq);
        await client.close();
    });
});
