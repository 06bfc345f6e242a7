// The SDK's and the browser tests' harness: a real nats-server (a free
// loopback port, a temporary store), the real gateway binary, tokens,
// publishing over the HTTP API, catalog directories of added event types,
// the Chromium the browser tests drive, and a TCP proxy whose connections can be cut abruptly (RST), as a network
// drop cuts them.
//
// Waits are for conditions, with generous timeouts; no test sleeps for a
// fixed time and then asserts.

import { spawn, spawnSync } from "node:child_process";
import { createHmac, randomUUID } from "node:crypto";
import { accessSync, constants, existsSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");
export const SECRET = "switchboard-typescript-tests-secret";
/** How long a condition may take before a test fails. */
export const PATIENCE_MS = 60_000;

const children = new Set();
process.on("exit", () => {
    for (const child of children) child.kill("SIGKILL");
});

export const uuid = () => randomUUID();

/** The gateway binary: `SWITCHBOARD_BIN`, or the debug build `cargo test` made. */
export function gatewayBinary() {
    const bin = process.env.SWITCHBOARD_BIN ?? path.join(ROOT, "target/debug/switchboard");
    if (!existsSync(bin)) {
        throw new Error(`no gateway binary at ${bin}: run \`cargo build\` first (or set SWITCHBOARD_BIN)`);
    }
    return bin;
}

/** nats-server from PATH, else the pinned one `just tools` installs. */
export function natsBinary() {
    const found = spawnSync("nats-server", ["--version"], { encoding: "utf8" });
    if (found.status === 0) return "nats-server";
    const pinned = path.join(ROOT, ".tools/bin/nats-server");
    if (existsSync(pinned)) return pinned;
    throw new Error("nats-server not found: run `just tools` (it installs the pinned one into .tools/)");
}

/** SWITCHBOARD_CHROMIUM, else `chromium` or `chromium-browser` on PATH; else a failure that says what to do. */
export function chromiumExecutable() {
    const executable = (file) => {
        try {
            accessSync(file, constants.X_OK);
            return true;
        } catch {
            return false;
        }
    };
    const wanted = process.env.SWITCHBOARD_CHROMIUM;
    if (wanted) {
        if (executable(wanted)) return wanted;
        throw new Error(`SWITCHBOARD_CHROMIUM=${wanted} is not an executable file`);
    }
    for (const name of ["chromium", "chromium-browser"]) {
        for (const dir of (process.env.PATH ?? "").split(path.delimiter)) {
            if (dir && executable(path.join(dir, name))) return path.join(dir, name);
        }
    }
    throw new Error(
        "no Chromium for the browser tests: install Debian's chromium (`apt-get install chromium`; " +
            "`just test` does it when it runs as root, see scripts/browser.sh) or set SWITCHBOARD_CHROMIUM " +
            "to a Chromium or Chrome executable. These tests never download a browser.",
    );
}

export async function freePort() {
    const server = net.createServer();
    await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
    const { port } = server.address();
    await new Promise((resolve) => server.close(resolve));
    return port;
}

/** Polls `check` every 50 ms until it returns a truthy value, which it returns. */
export async function waitFor(what, check, timeoutMs = PATIENCE_MS) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
        const value = await check();
        if (value) return value;
        if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
        await sleep(50);
    }
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function canConnect(port) {
    return new Promise((resolve) => {
        const socket = net.connect(port, "127.0.0.1");
        socket.once("connect", () => {
            socket.destroy();
            resolve(true);
        });
        socket.once("error", () => resolve(false));
    });
}

/** A nats-server with JetStream on a free loopback port and a temporary store. */
export async function startNats() {
    const port = await freePort();
    const dir = mkdtempSync(path.join(tmpdir(), "switchboard-nats-"));
    const child = spawn(natsBinary(), ["-js", "-a", "127.0.0.1", "-p", String(port), "-sd", dir], {
        stdio: ["ignore", "ignore", openSync(path.join(dir, "nats.log"), "a")],
    });
    children.add(child);
    await waitFor(`nats-server on port ${port}`, () => canConnect(port));
    return {
        url: `nats://127.0.0.1:${port}`,
        stop() {
            child.kill("SIGKILL");
            children.delete(child);
            rmSync(dir, { recursive: true, force: true });
        },
    };
}

const LISTENING = "switchboard listening on http://";

/** The caller's environment without the settings a developer may have exported. */
function gatewayEnv() {
    const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith("SWITCHBOARD_") || name === "SWITCHBOARD_BIN"));
    return { ...env, SWITCHBOARD_LOG: "info,switchboard=debug" };
}

/**
 * The real gateway on `natsUrl`. `restart()` SIGKILLs it and starts it
 * again on the same address and data directory.
 */
export async function startGateway(natsUrl, args = []) {
    const data = mkdtempSync(path.join(tmpdir(), "switchboard-gateway-"));
    const gateway = {
        data,
        addr: "127.0.0.1:0",
        child: null,
        get http() {
            return `http://${this.addr}`;
        },
        get ws() {
            return `ws://${this.addr}/v1/ws`;
        },
        async launch() {
            const child = spawn(
                gatewayBinary(),
                ["serve", "--listen", this.addr, "--nats-url", natsUrl, "--data-dir", data, "--jwt-secret", SECRET, ...args],
                {
                    stdio: ["ignore", "pipe", openSync(path.join(data, "gateway.log"), "a")],
                    env: gatewayEnv(),
                },
            );
            children.add(child);
            this.child = child;
            this.addr = await new Promise((resolve, reject) => {
                let buffered = "";
                const timer = setTimeout(() => reject(new Error(`gateway did not start; log:\n${this.log()}`)), PATIENCE_MS);
                child.once("exit", (code) => {
                    clearTimeout(timer);
                    reject(new Error(`gateway exited with ${code}; log:\n${this.log()}`));
                });
                child.stdout.on("data", (chunk) => {
                    buffered += chunk;
                    const line = buffered.split("\n").find((l) => l.startsWith(LISTENING));
                    if (line) {
                        clearTimeout(timer);
                        resolve(line.slice(LISTENING.length).trim());
                    }
                });
            });
            child.removeAllListeners("exit");
            // Kept, so that `kill9` knows a gateway that is already gone.
            child.once("exit", (code, signal) => (this.exited = { code, signal }));
            child.stdout.resume();
        },
        /** SIGKILL: no close frames, no flush. */
        async kill9() {
            if (!this.child) return;
            const child = this.child;
            this.child = null;
            children.delete(child);
            // A gateway that exited on its own emits no second "exit":
            // waiting for one would hang the test.
            if (child.exitCode !== null || child.signalCode !== null) {
                const { code, signal } = this.exited ?? { code: child.exitCode, signal: child.signalCode };
                this.exited = null;
                throw new Error(`the gateway exited on its own (code ${code}, signal ${signal}); log:\n${this.log()}`);
            }
            const exited = new Promise((resolve) => child.once("exit", resolve));
            child.kill("SIGKILL");
            await exited;
            this.exited = null;
        },
        async restart() {
            await this.kill9();
            // The same port, so that clients (and a page served from it) come back to it.
            await this.launch();
        },
        async stop() {
            try {
                await this.kill9();
            } finally {
                rmSync(data, { recursive: true, force: true });
            }
        },
        log() {
            try {
                return readFileSync(path.join(data, "gateway.log"), "utf8");
            } catch {
                return "(no log)";
            }
        },
    };
    await gateway.launch();
    return gateway;
}

/**
 * Runs `body(gateway, nats)` on a nats-server and a gateway (with `args`) of
 * its own, and stops both afterwards, also when it fails.
 */
export async function withOwnGateway(args, body) {
    const nats = await startNats();
    try {
        const gateway = await startGateway(nats.url, args);
        try {
            return await body(gateway, nats);
        } finally {
            await gateway.stop();
        }
    } finally {
        nats.stop();
    }
}

const base64url = (value) => Buffer.from(value).toString("base64url");

/** An HS256 token signed with the tests' secret. */
export function token({ sub = uuid(), channels = "*", roles = [], name, ttlSeconds = 3600 } = {}) {
    const claims = { sub, exp: Math.floor(Date.now() / 1000) + ttlSeconds, channels };
    if (roles.length) claims.roles = roles;
    if (name) claims.name = name;
    const unsigned = `${base64url(JSON.stringify({ alg: "HS256", typ: "JWT" }))}.${base64url(JSON.stringify(claims))}`;
    const signature = createHmac("sha256", SECRET).update(unsigned).digest("base64url");
    return `${unsigned}.${signature}`;
}

export const publisherToken = () => token({ roles: ["publisher"] });

/** Stores one event through `POST /v1/events`; resolves to `{id, seq, timestamp}`. */
export async function publish(gateway, type, data, bearer = publisherToken()) {
    const response = await fetch(`${gateway.http}/v1/events`, {
        method: "POST",
        headers: { authorization: `Bearer ${bearer}`, "content-type": "application/json" },
        body: JSON.stringify({ type, data }),
    });
    const body = await response.json();
    if (!response.ok) throw new Error(`publish ${type}: ${response.status} ${JSON.stringify(body)}`);
    return body;
}

/** A `channel_message` in `channelId`. */
export const message = (gateway, channelId, text) =>
    publish(gateway, "channel_message", {
        message_id: uuid(),
        channel_id: channelId,
        user_id: uuid(),
        username: "publisher",
        content: text,
    });

/**
 * `reaction_added`, an added type (a catalog file) that is stored, on two
 * routes: a copy to the channel and one to the reacting user.
 */
export const REACTION_ADDED = {
    $schema: "https://json-schema.org/draft/2020-12/schema",
    type: "object",
    required: ["channel_id", "message_id", "user_id", "emoji"],
    properties: {
        channel_id: { type: "string" },
        message_id: { type: "string" },
        user_id: { type: "string" },
        emoji: { type: "string" },
    },
    "x-switchboard": { routes: [{ channel: "channel_id" }, { user: "user_id" }], stored: true },
};

/** `cursor_moved`, an added type that is ephemeral (live only, no `seq`), to the channel. */
export const CURSOR_MOVED = {
    $schema: "https://json-schema.org/draft/2020-12/schema",
    type: "object",
    required: ["channel_id", "x"],
    properties: { channel_id: { type: "string" }, x: { type: "integer" } },
    "x-switchboard": { routes: [{ channel: "channel_id" }], stored: false },
};

/**
 * A catalog directory (`serve --catalog-dir`, `catalog asyncapi`): one
 * `<type>.json` per entry of `types` (a name and its schema). `remove()`
 * deletes it.
 */
export function catalogDir(types = { reaction_added: REACTION_ADDED, cursor_moved: CURSOR_MOVED }) {
    const dir = mkdtempSync(path.join(tmpdir(), "switchboard-catalog-"));
    for (const [name, schema] of Object.entries(types)) writeFileSync(path.join(dir, `${name}.json`), JSON.stringify(schema, null, 2));
    return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/**
 * A TCP proxy to `target` ("host:port"). `drop()` resets every connection
 * through it (RST, no close frame, as a network failure does); new
 * connections keep working.
 */
export async function tcpProxy(target) {
    const [host, port] = target.split(":");
    const open = new Set();
    const server = net.createServer((client) => {
        const upstream = net.connect(Number(port), host);
        const pair = { client, upstream };
        open.add(pair);
        const end = () => {
            open.delete(pair);
            client.destroy();
            upstream.destroy();
        };
        client.on("error", end).on("close", end);
        upstream.on("error", end).on("close", end);
        client.pipe(upstream);
        upstream.pipe(client);
    });
    await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
    return {
        addr: `127.0.0.1:${server.address().port}`,
        get connections() {
            return open.size;
        },
        /** Stops forwarding on every open connection without closing it: a silent network. */
        freeze() {
            for (const { client, upstream } of open) {
                client.unpipe(upstream);
                upstream.unpipe(client);
                client.pause();
                upstream.pause();
            }
        },
        drop() {
            for (const { client, upstream } of open) {
                client.resetAndDestroy();
                upstream.resetAndDestroy();
            }
            open.clear();
        },
        close() {
            this.drop();
            return new Promise((resolve) => server.close(resolve));
        },
    };
}

/**
 * Deletes the JetStream stream `name` with a request over the core NATS
 * protocol (no client library needed); resolves to the API's answer.
 */
export function deleteStream(natsUrl, name) {
    const { hostname, port } = new URL(natsUrl);
    return new Promise((resolve, reject) => {
        const socket = net.connect(Number(port), hostname);
        let buffered = "";
        const timer = setTimeout(() => {
            socket.destroy();
            reject(new Error(`no answer to the stream delete within ${PATIENCE_MS} ms`));
        }, PATIENCE_MS);
        socket.on("error", reject);
        socket.on("data", (chunk) => {
            buffered += chunk;
            if (buffered.startsWith("INFO") && !socket.sentRequest) {
                socket.sentRequest = true;
                socket.write(`CONNECT {"verbose":false,"pedantic":false}\r\nSUB _INBOX.delete 1\r\nPUB $JS.API.STREAM.DELETE.${name} _INBOX.delete 0\r\n\r\n`);
            }
            const reply = /MSG _INBOX\.delete 1 \d+\r\n(.*)\r\n/.exec(buffered);
            if (reply) {
                clearTimeout(timer);
                socket.destroy();
                resolve(JSON.parse(reply[1]));
            }
        });
    });
}

/** `switchboard publish` (which creates the stream when it is missing); resolves to its output line. */
export function publishWithCli(natsUrl, type, data) {
    const run = spawnSync(gatewayBinary(), ["publish", "--nats-url", natsUrl, "--type", type, "--data", JSON.stringify(data)], {
        encoding: "utf8",
        env: gatewayEnv(),
    });
    if (run.status !== 0) throw new Error(`switchboard publish failed (${run.status}): ${run.stderr}`);
    return run.stdout.trim();
}
