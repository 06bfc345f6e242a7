// In headless Chromium (Debian's, driven by playwright-core; never a
// downloaded browser), against a real nats-server and gateway:
// - pages of another origin: with the origin allowed, fetch POST /v1/events
//   (a preflighted request) and the WebSocket work; from an origin that is not
//   allowed, the fetch fails and the upgrade is refused before any socket;
// - a clean close from the page: code 1000, wasClean, with a plain WebSocket
//   and with the SDK;
// - the console (GET /console): connect, subscribe, publish through its
//   form, see the event; the gateway is SIGKILLed and restarted while events
//   keep being published, and the page shows every seq once, in order;
//   the connection's token expiry is shown and a pasted token refreshes it
//   in band; an operator's disconnect (4003) is shown with its reason; a
//   chat channel's online list shows the console's own user and another
//   user who subscribes through the SDK, and drops that one when it leaves;
//   an event type the gateway's catalog adds is offered by the publish form
//   and its events (stored, and ephemeral without a seq) show like others;
//   a subscription's status follows the connection (offline while the
//   gateway is down, then resuming, replaying, live); the since fields are
//   emptied once used; without --dev the page never asks for a development
//   token and hides its button, in --dev the button fills one in; the icon
//   and the home page (GET /) load with nothing refused and no 404.
//
// Without a Chromium these tests FAIL and say how to get one.

import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import http from "node:http";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { build } from "esbuild";
import { chromium } from "playwright-core";
import WebSocket from "ws";

import { connect } from "../dist/index.js";
import { catalogDir, chromiumExecutable, freePort, message, PATIENCE_MS, publish, publisherToken, ROOT, sleep, startGateway, startNats, tcpProxy, token, uuid, waitFor, withOwnGateway } from "./support.mjs";

const PACKAGE = path.join(ROOT, "clients/typescript");
const RESULTS = path.join(PACKAGE, "test-results");

/** A tiny web server for pages of another origin: a blank page, and the SDK bundled for browsers. */
async function originServer(port, sdk) {
    const server = http.createServer((request, response) => {
        if (request.url === "/sdk.js") {
            response.writeHead(200, { "content-type": "text/javascript" });
            response.end(sdk);
            return;
        }
        response.writeHead(200, { "content-type": "text/html" });
        response.end('<!doctype html><html><head><title>another origin</title><script src="/sdk.js"></script></head><body></body></html>');
    });
    await new Promise((resolve) => server.listen(port, "127.0.0.1", resolve));
    return {
        origin: `http://127.0.0.1:${port}`,
        close: () => new Promise((resolve) => server.close(resolve)),
    };
}

/** `POST /v1/events` from the page, with JSON and a bearer token (so a preflight first). */
function fetchPublish(page, gatewayHttp, bearer, channelId) {
    return page.evaluate(
        async ({ url, bearer, data }) => {
            try {
                const response = await fetch(url, {
                    method: "POST",
                    headers: { authorization: `Bearer ${bearer}`, "content-type": "application/json" },
                    body: JSON.stringify({ type: "channel_created", data }),
                });
                return { status: response.status, body: await response.json() };
            } catch (error) {
                return { error: String(error) };
            }
        },
        { url: `${gatewayHttp}/v1/events`, bearer, data: { channel_id: channelId, channel_name: "general" } },
    );
}

/** Opens a WebSocket from the page; `close` closes it with 1000 after `hello`. */
function openSocket(page, url) {
    return page.evaluate(
        (url) =>
            new Promise((resolve) => {
                const seen = { opened: false, first: null, error: false };
                const ws = new WebSocket(url);
                ws.onopen = () => {
                    seen.opened = true;
                };
                ws.onerror = () => {
                    seen.error = true;
                };
                ws.onmessage = (event) => {
                    if (seen.first) return;
                    seen.first = JSON.parse(event.data).type;
                    ws.close(1000, "done");
                };
                ws.onclose = (event) => resolve({ ...seen, code: event.code, reason: event.reason, wasClean: event.wasClean });
            }),
        url,
    );
}

/**
 * Watches a page for what should never happen on the gateway's own pages:
 * script errors, anything the Content-Security-Policy refuses, responses of
 * 400 or more, failed requests. `requests` lists every URL the page asked for.
 */
function watchPage(page) {
    const problems = [];
    const requests = [];
    page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
    page.on("console", (msg) => {
        if (msg.type() === "error") problems.push(`console: ${msg.text()}`);
    });
    page.on("request", (request) => requests.push(request.url()));
    page.on("response", (response) => {
        if (response.status() >= 400) problems.push(`${response.status()} for ${response.url()}`);
    });
    page.on("requestfailed", (request) => problems.push(`failed: ${request.url()} (${request.failure()?.errorText})`));
    return { problems, requests };
}

/** Loads the page's icon (`<link rel="icon">`) as an image, under the page's policy: its width, or an error. */
function loadIcon(page) {
    return page.evaluate(
        () =>
            new Promise((resolve) => {
                const link = document.querySelector('link[rel="icon"]');
                if (!link) return resolve({ error: "no <link rel=icon>" });
                const image = new Image();
                image.onload = () => resolve({ href: link.getAttribute("href"), width: image.naturalWidth });
                image.onerror = () => resolve({ error: `cannot load ${link.href}` });
                image.src = link.href;
            }),
    );
}

async function metric(gateway, name) {
    const text = await (await fetch(`${gateway.http}/metrics`)).text();
    const line = text.split("\n").find((l) => l.startsWith(`${name} `));
    return line ? Number(line.split(" ")[1]) : 0;
}

let browser;
/** Why there is no browser: every test fails with it (none is skipped). */
let noBrowser;

before(async () => {
    try {
        browser = await chromium.launch({ executablePath: chromiumExecutable(), args: ["--no-sandbox"] });
    } catch (error) {
        noBrowser = error;
    }
});

after(async () => {
    await browser?.close();
});

/** A new page, or the reason there is no browser. */
function newPage(options) {
    if (!browser) throw noBrowser ?? new Error("the browser did not start");
    return browser.newPage(options);
}

test("a Chromium runs the browser tests", () => {
    if (noBrowser) throw noBrowser;
    assert.ok(browser.isConnected());
});

describe("pages of other origins", () => {
    let nats, gateway, allowed, refused;

    before(async () => {
        const sdk = await build({
            entryPoints: [path.join(PACKAGE, "src/index.ts")],
            bundle: true,
            format: "iife",
            globalName: "switchboard",
            platform: "browser",
            target: "es2022",
            write: false,
        });
        const sdkText = sdk.outputFiles[0].text;
        const allowedPort = await freePort();
        allowed = await originServer(allowedPort, sdkText);
        refused = await originServer(await freePort(), sdkText);
        nats = await startNats();
        gateway = await startGateway(nats.url, ["--allowed-origins", allowed.origin, "--reconnect-base", "100ms"]);
    });

    after(async () => {
        await gateway?.stop();
        nats?.stop();
        await allowed?.close();
        await refused?.close();
    });

    test("an allowed origin publishes over fetch (preflighted) and opens a WebSocket that closes cleanly", async () => {
        const page = await newPage();
        try {
            await page.goto(allowed.origin);
            const published = await fetchPublish(page, gateway.http, publisherToken(), uuid());
            assert.equal(published.status, 200, JSON.stringify(published));
            assert.ok(published.body.seq > 0, JSON.stringify(published));

            const socket = await openSocket(page, `${gateway.ws}?token=${token()}`);
            assert.deepEqual(
                { opened: socket.opened, first: socket.first, code: socket.code, wasClean: socket.wasClean },
                { opened: true, first: "hello", code: 1000, wasClean: true },
            );
        } finally {
            await page.close();
        }
    });

    test("the SDK's close() from a page is a clean 1000", async () => {
        const page = await newPage();
        try {
            await page.goto(allowed.origin);
            const closed = await page.evaluate(
                async ({ url, token }) => {
                    const client = window.switchboard.connect({ url, token });
                    await new Promise((resolve, reject) => {
                        client.on("connected", resolve);
                        setTimeout(() => reject(new Error("not connected within 30 s")), 30_000);
                    });
                    return client.close();
                },
                { url: gateway.ws, token: token() },
            );
            assert.deepEqual({ code: closed.code, wasClean: closed.wasClean }, { code: 1000, wasClean: true }, JSON.stringify(closed));
        } finally {
            await page.close();
        }
    });

    test("the SDK in a page: exact across connection resets, and a reload resumes from localStorage", async () => {
        const page = await newPage();
        const proxy = await tcpProxy(gateway.addr);
        const channelId = uuid();
        const user = token({ sub: uuid() });
        // The page's client: cursors in localStorage, acked (and saved) every 100 ms.
        const start = () =>
            page.evaluate(
                ({ url, token, channel }) => {
                    window.seen = [];
                    window.connections = 0;
                    window.client = window.switchboard.connect({ url, token, storage: window.switchboard.webStorage(), ackIntervalMs: 100 });
                    window.client.on("connected", () => (window.connections += 1));
                    window.client.subscribe(channel).on("event", (event) => window.seen.push(event.seq));
                },
                { url: `ws://${proxy.addr}/v1/ws`, token: user, channel: `channel:${channelId}` },
            );
        const seen = () => page.evaluate(() => window.seen);
        try {
            await page.goto(allowed.origin);
            await start();
            await waitFor("subscribed", () => page.evaluate(() => Object.keys(window.client.cursors).length === 1));

            // Resets (RST) while events are published every 20 ms.
            const published = [];
            let publishing = true;
            const publisher = (async () => {
                for (let i = 0; publishing; i++) {
                    published.push((await message(gateway, channelId, `p${i}`)).seq);
                    await sleep(20);
                }
            })();
            for (let drop = 1; drop <= 5; drop++) {
                await waitFor(`connection ${drop}`, () => page.evaluate((n) => window.connections === n && window.client.state === "connected", drop));
                await sleep(150 + Math.random() * 150);
                proxy.drop();
            }
            await waitFor("the last reconnect", () => page.evaluate(() => window.connections === 6));
            publishing = false;
            await publisher;
            await waitFor(`all ${published.length} events`, async () => (await seen()).length >= published.length);
            await sleep(200);
            assert.deepEqual(await seen(), published, "every event once, in order, across 5 resets");

            // A reload: the new page's client starts from the saved seq.
            await page.reload();
            const missed = [];
            for (let i = 0; i < 5; i++) missed.push((await message(gateway, channelId, `away${i}`)).seq);
            await start();
            for (let i = 0; i < 5; i++) missed.push((await message(gateway, channelId, `back${i}`)).seq);
            await waitFor("the events after the reload", async () => (await seen()).length >= missed.length);
            await sleep(200);
            assert.deepEqual(await seen(), missed, "after the reload: exactly what the page had not seen");
            await page.evaluate(() => window.client.close());
        } finally {
            await page.close();
            await proxy.close();
        }
    });

    test("an origin that is not allowed can neither publish nor open a WebSocket", async () => {
        await waitFor("no WebSocket left open", async () => (await metric(gateway, "switchboard_connections")) === 0);
        const page = await newPage();
        try {
            await page.goto(refused.origin);
            const published = await fetchPublish(page, gateway.http, publisherToken(), uuid());
            assert.ok(published.error, `the fetch should fail (no CORS answer): ${JSON.stringify(published)}`);

            const socket = await openSocket(page, `${gateway.ws}?token=${token()}`);
            assert.deepEqual(
                { opened: socket.opened, first: socket.first, error: socket.error, code: socket.code },
                { opened: false, first: null, error: true, code: 1006 },
            );
            // Refused before any socket existed.
            assert.equal(await metric(gateway, "switchboard_connections"), 0);
        } finally {
            await page.close();
        }
    });
});

describe("the console", () => {
    let nats, gateway, catalog;

    before(async () => {
        // reaction_added (stored) and cursor_moved (ephemeral) are added types.
        catalog = catalogDir();
        nats = await startNats();
        gateway = await startGateway(nats.url, ["--catalog-dir", catalog.dir]);
    });

    after(async () => {
        await gateway?.stop();
        nats?.stop();
        catalog?.remove();
    });

    test("connects, subscribes, publishes, and resumes across a gateway kill without a gap", async () => {
        const page = await newPage({ viewport: { width: 1400, height: 1000 } });
        const foreign = [];
        const problems = [];
        page.on("request", (request) => {
            const url = new URL(request.url());
            if (url.host !== gateway.addr) foreign.push(request.url());
        });
        page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
        page.on("console", (msg) => {
            if (msg.type() === "error" && /Content Security Policy|Refused to/i.test(msg.text())) problems.push(`console: ${msg.text()}`);
        });
        try {
            await page.goto(`${gateway.http}/console`);
            await page.fill("#token", token({ name: "console-test" }));
            await page.click("#connect");
            await page.waitForSelector('#state[data-state="connected"]', { timeout: PATIENCE_MS });

            const channelId = uuid();
            const channel = `channel:${channelId}`;
            await page.fill("#channel", channel);
            await page.click("#subscribe");
            await page.waitForSelector(`#log li[data-kind="subscribed"]`, { timeout: PATIENCE_MS });

            // Publish through the page's form, with a publisher token.
            await page.fill("#publisher-token", publisherToken());
            await page.fill("#event-type", "channel_message");
            const data = { message_id: uuid(), channel_id: channelId, user_id: uuid(), username: "console", content: "from the form" };
            await page.fill("#event-data", JSON.stringify(data));
            await page.click("#publish");
            await page.waitForSelector("#publish-result[data-ok]", { timeout: PATIENCE_MS });
            const result = await page.textContent("#publish-result");
            assert.match(result, /^200: /, result);
            const first = JSON.parse(result.slice("200: ".length)).seq;
            await page.waitForSelector(`#events li[data-seq="${first}"][data-channel="${channel}"]`, { timeout: PATIENCE_MS });

            const seqs = [first];
            for (let n = 0; n < 5; n++) seqs.push((await message(gateway, channelId, `before ${n}`)).seq);
            await page.waitForSelector(`#events li[data-seq="${seqs.at(-1)}"]`, { timeout: PATIENCE_MS });

            // SIGKILL: no close frame; the page sees the drop and reconnects to the same port.
            await gateway.restart();
            for (let n = 0; n < 5; n++) seqs.push((await message(gateway, channelId, `after ${n}`)).seq);
            await page.waitForSelector(`#events li[data-seq="${seqs.at(-1)}"]`, { timeout: PATIENCE_MS });
            for (let n = 0; n < 3; n++) seqs.push((await message(gateway, channelId, `live ${n}`)).seq);
            await page.waitForSelector(`#events li[data-seq="${seqs.at(-1)}"]`, { timeout: PATIENCE_MS });

            const shown = await page.$$eval(`#events li[data-channel="${channel}"]`, (rows) => rows.map((row) => Number(row.dataset.seq)));
            assert.deepEqual(shown, seqs, "every published event once, in order");
            const kinds = await page.$$eval("#log li", (rows) => rows.map((row) => row.dataset.kind));
            assert.ok(kinds.includes("disconnected"), `the log shows the drop: ${kinds}`);
            assert.ok(kinds.lastIndexOf("connected") > kinds.indexOf("disconnected"), `the log shows the reconnect: ${kinds}`);
            assert.ok(!kinds.includes("gap"), `no gap: ${kinds}`);

            mkdirSync(RESULTS, { recursive: true });
            const screenshot = path.join(RESULTS, "console.png");
            await page.screenshot({ path: screenshot, fullPage: true });
            console.log(`console screenshot: ${screenshot}`);

            // Disconnect: the SDK's clean close.
            await page.click("#disconnect");
            await page.waitForSelector('#log li[data-kind="closed"]', { timeout: PATIENCE_MS });
            const closed = await page.textContent('#log li[data-kind="closed"] .text');
            assert.match(closed, /close 1000.*clean: true/, closed);

            assert.deepEqual(foreign, [], "the console loads nothing but from the gateway");
            assert.deepEqual(problems, [], "no script errors, nothing refused by the Content-Security-Policy");
        } finally {
            await page.close();
        }
    });

    test("shows the token's expiry, refreshes it with the pasted token, and shows an operator's disconnect (4003) with its reason", async () => {
        const page = await newPage({ viewport: { width: 1400, height: 1000 } });
        const problems = [];
        page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
        const expOf = (jwt) => JSON.parse(Buffer.from(jwt.split(".")[1], "base64url").toString()).exp;
        const logged = (kind) => page.$$eval(`#log li[data-kind="${kind}"] .text`, (rows) => rows.map((row) => row.textContent));
        try {
            const user = uuid();
            const first = token({ sub: user, ttlSeconds: 600 });
            await page.goto(`${gateway.http}/console`);
            await page.fill("#token", first);
            await page.click("#connect");
            await page.waitForSelector('#state[data-state="connected"]', { timeout: PATIENCE_MS });
            await page.waitForSelector(`#token-expiry[data-exp="${expOf(first)}"]`, { timeout: PATIENCE_MS });
            const shown = await page.textContent("#token-expiry");
            assert.match(shown, /^token expires \d\d:\d\d:\d\d UTC \(in (9|10) m \d\d s\)$/, shown);
            await waitFor("the countdown to move", async () => (await page.textContent("#token-expiry")) !== shown);

            // Another user's token: refused, and the expiry stays.
            await page.fill("#token", token({ sub: uuid() }));
            await page.click("#refresh-token");
            await page.waitForSelector('#log li[data-kind="error"]', { timeout: PATIENCE_MS });
            const [refusal] = await logged("error");
            assert.match(refusal, /refresh refused: forbidden/, refusal);
            assert.equal(await page.getAttribute("#token-expiry", "data-exp"), String(expOf(first)));

            // The same user's token, two hours long: refreshed in band.
            const second = token({ sub: user, ttlSeconds: 7200 });
            await page.fill("#token", second);
            await page.click("#refresh-token");
            await page.waitForSelector('#log li[data-kind="refreshed"]', { timeout: PATIENCE_MS });
            const [refreshed] = await logged("refreshed");
            assert.match(refreshed, new RegExp(`exp ${expOf(second)}`), refreshed);
            await page.waitForSelector(`#token-expiry[data-exp="${expOf(second)}"]`, { timeout: PATIENCE_MS });
            assert.match(await page.textContent("#token-expiry"), /\(in (1 h 59 m|2 h 00 m)\)/);
            assert.equal(await page.getAttribute("#state", "data-state"), "connected");
            assert.deepEqual(await logged("disconnected"), [], "no reconnect for a refresh");

            // The operator disconnects the user.
            const response = await fetch(`${gateway.http}/v1/users/${user}/disconnect`, {
                method: "POST",
                headers: { authorization: `Bearer ${token({ roles: ["admin"] })}`, "content-type": "application/json" },
                body: JSON.stringify({ reason: "account deleted" }),
            });
            assert.ok(response.ok, `${response.status} ${await response.text()}`);
            await page.waitForSelector('#log li[data-kind="stopped"]', { timeout: PATIENCE_MS });
            const [stopped] = await logged("stopped");
            assert.match(stopped, /close 4003: disconnected by the operator \(account deleted\); not reconnecting/, stopped);
            assert.equal(await page.getAttribute("#state", "data-state"), "stopped");
            assert.match(await page.textContent("#state"), /account deleted/);
            const attempts = (await logged("connecting")).length;
            await sleep(3_000); // the gateway's reconnect base is 2 s: a reconnect would have begun
            assert.equal((await logged("connecting")).length, attempts, "no reconnect attempt after 4003");

            mkdirSync(RESULTS, { recursive: true });
            await page.screenshot({ path: path.join(RESULTS, "console-refresh.png"), fullPage: true });
            assert.deepEqual(problems, [], "no script errors");
        } finally {
            await page.close();
        }
    });

    test("shows who is online in a chat channel: its own user, and another who comes through the SDK and leaves", async () => {
        const page = await newPage({ viewport: { width: 1400, height: 1000 } });
        const problems = [];
        page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
        const [self, other] = [uuid(), uuid()];
        const channel = `channel:${uuid()}`;
        const row = `#subscriptions li[data-channel="${channel}"]`;
        const member = (user) => `${row} .presence-members li[data-user-id="${user}"]`;
        const count = (n) => `${row} .presence-count[data-count="${n}"]`;
        let sdk;
        try {
            await page.goto(`${gateway.http}/console`);
            await page.fill("#token", token({ sub: self, name: "console-user" }));
            await page.click("#connect");
            await page.waitForSelector('#state[data-state="connected"]', { timeout: PATIENCE_MS });
            await page.fill("#channel", channel);
            await page.click("#subscribe");
            await page.waitForSelector(member(self), { timeout: PATIENCE_MS });
            await page.waitForSelector(count(1), { timeout: PATIENCE_MS });
            assert.equal(await page.textContent(member(self)), "console-user (you)");

            // Another user, through the SDK in Node.
            sdk = connect({ url: gateway.ws, WebSocket, token: token({ sub: other, name: "sdk-user" }) });
            const sub = sdk.subscribe(channel, { presence: true });
            await page.waitForSelector(member(other), { timeout: PATIENCE_MS });
            await page.waitForSelector(count(2), { timeout: PATIENCE_MS });
            assert.equal(await page.textContent(member(other)), "sdk-user");
            const shown = await page.$$eval(`${row} .presence-members li`, (items) => items.map((item) => item.dataset.userId));
            assert.deepEqual(shown, [self, other].sort(), "both, in user-id order");
            assert.match(await page.textContent(`${row} .presence-count`), /^2 online$/);
            await waitFor("the SDK to see the console's user", () => sub.presence?.members.has(self));
            mkdirSync(RESULTS, { recursive: true });
            await page.screenshot({ path: path.join(RESULTS, "console-presence.png"), fullPage: true });

            // It unsubscribes: gone from the list at once (no grace).
            await sub.unsubscribe();
            await page.waitForSelector(count(1), { timeout: PATIENCE_MS });
            assert.equal(await page.$(member(other)), null);
            const presenceLog = await page.$$eval('#log li[data-kind="presence"] .text', (rows) => rows.map((r) => r.textContent));
            assert.ok(presenceLog.some((text) => text === `${channel}: sdk-user online`), `the log shows it come: ${presenceLog}`);
            assert.ok(presenceLog.some((text) => text === `${channel}: sdk-user offline`), `the log shows it go: ${presenceLog}`);
            assert.deepEqual(problems, [], "no script errors");
        } finally {
            await sdk?.close();
            await page.close();
        }
    });

    test("an added event type: the publish form offers it, and its events show like the others", async () => {
        const page = await newPage({ viewport: { width: 1400, height: 1000 } });
        const problems = [];
        page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
        const user = uuid();
        const channelId = uuid();
        const channel = `channel:${channelId}`;
        try {
            await page.goto(`${gateway.http}/console`);
            await page.fill("#token", token({ sub: user }));
            await page.click("#connect");
            await page.waitForSelector('#state[data-state="connected"]', { timeout: PATIENCE_MS });
            await page.fill("#channel", channel);
            await page.click("#subscribe");
            await page.waitForSelector(`#log li[data-kind="replayed"]`, { timeout: PATIENCE_MS });
            // GET /v1/catalog: the added types join the built-in ones in the form's list.
            await page.waitForSelector('#event-types option[value="reaction_added"]', { state: "attached", timeout: PATIENCE_MS });
            const offered = await page.$$eval("#event-types option", (options) => options.map((o) => `${o.value}: ${o.label}`));
            assert.ok(offered.includes("channel_message: built in"), `${offered}`);
            assert.ok(offered.includes("reaction_added: added, stored"), `${offered}`);
            assert.ok(offered.includes("cursor_moved: added, ephemeral (no seq)"), `${offered}`);

            // Published through the form, with example data from its schema.
            await page.fill("#publisher-token", publisherToken());
            await page.fill("#event-type", "reaction_added");
            await page.click("#example");
            const example = JSON.parse(await page.inputValue("#event-data"));
            assert.deepEqual(Object.keys(example), ["channel_id", "message_id", "user_id", "emoji"]);
            assert.equal(example.channel_id, channelId, "the channel route's field is the subscribed channel");
            assert.equal(example.user_id, user, "the user route's field is the connection's user");
            await page.click("#publish");
            await page.waitForSelector("#publish-result[data-ok]", { timeout: PATIENCE_MS });
            const result = await page.textContent("#publish-result");
            assert.match(result, /^200: /, result);
            const receipt = JSON.parse(result.slice("200: ".length));
            const row = `#events li[data-type="reaction_added"][data-channel="${channel}"]`;
            await page.waitForSelector(row, { timeout: PATIENCE_MS });
            const shown = await page.$eval(row, (r) => ({ seq: Number(r.dataset.seq), id: r.dataset.id, added: r.dataset.added }));
            assert.ok(receipt.seqs.includes(shown.seq), `seq ${shown.seq} is one of ${receipt.seqs}`);
            assert.deepEqual({ id: shown.id, added: shown.added }, { id: receipt.id, added: "true" });
            const last = await page.textContent(`#subscriptions li[data-channel="${channel}"] .last-seq`);
            assert.equal(last, `last seq ${shown.seq}`);

            // An ephemeral added type: shown live, without a seq.
            const moved = await publish(gateway, "cursor_moved", { channel_id: channelId, x: 3 });
            const live = `#events li[data-type="cursor_moved"][data-id="${moved.id}"]`;
            await page.waitForSelector(live, { timeout: PATIENCE_MS });
            assert.equal(await page.getAttribute(live, "data-seq"), null);
            assert.match(await page.textContent(live), /—.*cursor_moved.*"x":3.*live only/);
            mkdirSync(RESULTS, { recursive: true });
            await page.screenshot({ path: path.join(RESULTS, "console-added-types.png"), fullPage: true });
            assert.deepEqual(problems, [], "no script errors");
        } finally {
            await page.close();
        }
    });

    test("a subscription's status follows the connection: offline while the gateway is down, then resuming, replaying and live", async () => {
        const page = await newPage({ viewport: { width: 1400, height: 1000 } });
        const problems = [];
        page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
        const channelId = uuid();
        const channel = `channel:${channelId}`;
        const status = `#subscriptions li[data-channel="${channel}"] [data-testid="subscription-status"]`;
        try {
            await page.goto(`${gateway.http}/console`);
            await page.fill("#token", token());
            await page.click("#connect");
            await page.waitForSelector('#state[data-state="connected"]', { timeout: PATIENCE_MS });
            await page.fill("#channel", channel);
            await page.click("#subscribe");
            await page.waitForSelector(`${status}[data-status="live"]`, { timeout: PATIENCE_MS });
            const before = (await message(gateway, channelId, "before")).seq;
            await page.waitForSelector(`#events li[data-seq="${before}"]`, { timeout: PATIENCE_MS });

            // Every value the status takes from now on, in order (each change's old value, then the last).
            await page.$eval(status, (node) => {
                window.statuses = [];
                new MutationObserver((changes) => {
                    for (const change of changes) window.statuses.push(change.oldValue);
                }).observe(node, { attributes: true, attributeFilter: ["data-status"], attributeOldValue: true });
            });

            // SIGKILL: the socket drops without a close frame; the gateway stays down for now.
            await gateway.kill9();
            await page.waitForSelector(`${status}:not([data-status="live"])`, { timeout: PATIENCE_MS });
            assert.match(await page.getAttribute(status, "data-status"), /^(offline|resuming)$/);
            assert.notEqual(await page.getAttribute("#state", "data-state"), "connected");
            // While it is down, the status stays off "live" (reconnect attempts fail).
            await page.waitForSelector('#log li[data-kind="connecting"]', { timeout: PATIENCE_MS });
            assert.notEqual(await page.getAttribute(status, "data-status"), "live");

            // Back on the same address: the client reconnects, the subscription replays what it missed, and is live.
            await gateway.launch();
            const missed = (await message(gateway, channelId, "while away")).seq;
            await page.waitForSelector(`${status}[data-status="live"]`, { timeout: PATIENCE_MS });
            await page.waitForSelector(`#events li[data-seq="${missed}"]`, { timeout: PATIENCE_MS });
            const after = (await message(gateway, channelId, "after")).seq;
            await page.waitForSelector(`#events li[data-seq="${after}"]`, { timeout: PATIENCE_MS });

            const seen = await page.evaluate((status) => [...window.statuses, document.querySelector(status).dataset.status], status);
            const steps = seen.filter((value, i) => i === 0 || value !== seen[i - 1]);
            assert.deepEqual(steps.slice(0, 2), ["live", "offline"], `${steps}`);
            assert.deepEqual(steps.slice(-3), ["resuming", "replaying", "live"], `${steps}`);
            const between = steps.slice(2, -3);
            assert.ok(between.every((value) => value === "offline" || value === "resuming"), `only offline and resuming while down: ${steps}`);
            assert.equal(await page.getAttribute("#state", "data-state"), "connected");
            assert.deepEqual(problems, [], "no script errors");
        } finally {
            await page.close();
        }
    });

    test("the since fields are emptied once a subscribe used them, and the next subscribe sends neither", async () => {
        const page = await newPage({ viewport: { width: 1400, height: 1000 } });
        const problems = [];
        page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
        // The subscribe frames the page sends.
        const subscribes = [];
        page.on("websocket", (socket) =>
            socket.on("framesent", ({ payload }) => {
                const frame = JSON.parse(String(payload));
                if (frame.type === "subscribe") subscribes.push(frame);
            }),
        );
        const [first, second, third] = [`channel:${uuid()}`, `channel:${uuid()}`, `channel:${uuid()}`];
        const since = "2020-01-01T00:00:00Z";
        const fields = async () => ({ channel: await page.inputValue("#channel"), since: await page.inputValue("#since"), sinceSeq: await page.inputValue("#since-seq") });
        const subscribe = async (channel, form) => {
            await page.fill("#channel", channel);
            if (form.since) await page.fill("#since", form.since);
            if (form.sinceSeq) await page.fill("#since-seq", form.sinceSeq);
            await page.click("#subscribe");
            await page.waitForSelector(`#subscriptions li[data-channel="${channel}"] [data-status="live"]`, { timeout: PATIENCE_MS });
            assert.deepEqual(await fields(), { channel: "", since: "", sinceSeq: "" }, `the form is empty after subscribing to ${channel}`);
            const sent = subscribes.find((f) => f.channel === channel);
            assert.ok(sent, `a subscribe for ${channel}: ${JSON.stringify(subscribes)}`);
            return sent;
        };
        try {
            await page.goto(`${gateway.http}/console`);
            await page.fill("#token", token());
            await page.click("#connect");
            await page.waitForSelector('#state[data-state="connected"]', { timeout: PATIENCE_MS });

            assert.equal((await subscribe(first, { sinceSeq: "1" })).since_seq, 1);
            const withSince = await subscribe(second, { since });
            assert.deepEqual({ since: withSince.since, since_seq: withSince.since_seq }, { since, since_seq: undefined });
            // Nothing typed: the client's own start (now), neither of the earlier ones.
            const plain = await subscribe(third, {});
            assert.equal(plain.since_seq, undefined, `no since_seq: ${JSON.stringify(plain)}`);
            assert.notEqual(plain.since, since, `not the earlier since: ${JSON.stringify(plain)}`);
            assert.deepEqual(problems, [], "no script errors");
        } finally {
            await page.close();
        }
    });

    test("without --dev: no request for a development token, its button hidden; the icon loads, nothing is refused or missing", async () => {
        const page = await newPage({ viewport: { width: 1400, height: 1000 } });
        const { problems, requests } = watchPage(page);
        try {
            await page.goto(`${gateway.http}/console`, { waitUntil: "networkidle" });
            await page.waitForSelector('#log li[data-kind="ready"]', { timeout: PATIENCE_MS });
            assert.equal(await page.getAttribute('meta[name="switchboard-dev"]', "content"), "false");
            assert.ok(await page.isHidden("#use-dev-token"), "the Use dev token button is hidden");
            const icon = await loadIcon(page);
            assert.equal(icon.href, "/favicon.svg", JSON.stringify(icon));
            assert.ok(icon.width > 0, JSON.stringify(icon));
            await page.waitForLoadState("networkidle");
            assert.deepEqual(
                requests.filter((url) => new URL(url).pathname === "/console/dev-token"),
                [],
                `no request for a development token: ${requests}`,
            );
            assert.deepEqual(problems, [], "no 404, no script error, nothing refused");
        } finally {
            await page.close();
        }
    });

    test("the home page (GET /) names the gateway, links the console and the routes, and loads nothing refused or missing", async () => {
        const page = await newPage();
        const { problems, requests } = watchPage(page);
        try {
            const response = await page.goto(`${gateway.http}/`, { waitUntil: "networkidle" });
            assert.equal(response.status(), 200);
            assert.match(await page.title(), /^switchboard \d+\.\d+\.\d+/);
            const links = await page.$$eval("a", (anchors) => anchors.map((a) => a.getAttribute("href")));
            for (const href of ["/console", "/metrics", "/healthz", "/readyz"]) assert.ok(links.includes(href), `${href} in ${links}`);
            assert.match(await page.textContent("body"), /\/v1\/ws/);
            assert.match(await page.textContent("body"), /docs\/protocol\.md/);
            const icon = await loadIcon(page);
            assert.ok(icon.width > 0, JSON.stringify(icon));
            await page.click('a[href="/console"]');
            await page.waitForSelector('#log li[data-kind="ready"]', { timeout: PATIENCE_MS });
            await page.waitForLoadState("networkidle");
            assert.ok(requests.every((url) => new URL(url).host === gateway.addr), `nothing from elsewhere: ${requests}`);
            assert.deepEqual(problems, [], "no 404, no script error, nothing refused");
        } finally {
            await page.close();
        }
    });
});

describe("the console in --dev", () => {
    test("asks for a development token once, shows the button, and the token connects", async () => {
        await withOwnGateway(["--dev"], async (gateway) => {
            const page = await newPage({ viewport: { width: 1400, height: 1000 } });
            const { problems, requests } = watchPage(page);
            try {
                await page.goto(`${gateway.http}/console`);
                assert.equal(await page.getAttribute('meta[name="switchboard-dev"]', "content"), "true");
                await page.waitForSelector("#use-dev-token", { state: "visible", timeout: PATIENCE_MS });
                await page.click("#use-dev-token");
                const minted = await page.inputValue("#token");
                assert.match(minted, /^[\w-]+\.[\w-]+\.[\w-]+$/, "a JWT in the token field");
                assert.equal(await page.inputValue("#publisher-token"), minted);
                await page.click("#connect");
                await page.waitForSelector('#state[data-state="connected"]', { timeout: PATIENCE_MS });
                assert.equal(requests.filter((url) => new URL(url).pathname === "/console/dev-token").length, 1, `${requests}`);
                assert.deepEqual(problems, [], "no 404, no script error, nothing refused");
                await page.click("#disconnect");
                await page.waitForSelector('#log li[data-kind="closed"]', { timeout: PATIENCE_MS });
            } finally {
                await page.close();
            }
        });
    });
});
