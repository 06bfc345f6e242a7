// The package as an application gets it. `npm pack` (its prepack script
// builds dist/) makes the tarball; a new app in a temporary directory
// installs it with ws, @types/ws, @types/node and typescript (the versions
// of this package's lock file, so npm takes them from its cache), and:
// - the tarball holds dist/ (modules, declarations, the single-file
//   browser build) and the README, not the console, the sources or tests;
// - the README's Node app (its `<!-- package-test: node/… -->` blocks)
//   compiles with `tsc --strict`, without the DOM's types, and runs
//   against a real nats-server and gateway: it connects, subscribes to
//   `global`, prints an event published through the HTTP API, and exits 0
//   after SIGINT (a clean close);
// - the README's page (the `web/…` blocks) compiles with `tsc --strict`
//   and the DOM's types, without Node's, and loads in headless Chromium
//   from an origin the gateway allows, with the tarball's
//   dist/switchboard.js through its import map and a token from its
//   `/api/chat-token`, and shows a message published meanwhile. The one
//   change the test makes to the README's text is the gateway's URL in
//   place of its `wss://chat.example.com/v1/ws`;
// - every other `ts` block of this README and of the main README's
//   Clients section compiles (`tsc --strict`), each a module of its own,
//   with the application's own functions and objects they use declared
//   (FRAGMENT_GLOBALS); so does an app that passes ws's class and the
//   browser's `WebSocket` to `connect` as they are (SOCKETS).

import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import { chromium } from "playwright-core";

import { chromiumExecutable, freePort, message, PATIENCE_MS, publish, ROOT, startGateway, startNats, token, uuid, waitFor } from "./support.mjs";

const PACKAGE = path.join(ROOT, "clients/typescript");
const README = readFileSync(path.join(PACKAGE, "README.md"), "utf8");
const MAIN_README = readFileSync(path.join(ROOT, "README.md"), "utf8");
/** The placeholder gateway URL of the README's page, replaced by the test gateway's. */
const EXAMPLE_URL = "wss://chat.example.com/v1/ws";
/** The chat channel the README's page subscribes to. */
const PAGE_CHANNEL = "0b6f3a52-9c1d-4e2f-8a7b-3c4d5e6f7a8b";

/** What the README's fragments use but do not define: the application's own. */
const FRAGMENT_GLOBALS = `import type { ChatEvent, Client, PresenceMember, Subscription } from "@switchboard/client";
declare global {
    const client: Client;
    const room: Subscription;
    const userId: string;
    function render(event: ChatEvent): void;
    function showMessage(content: string): void;
    function reloadHistory(firstSeq: number | undefined): void;
    function showOffline(code: number, reconnectInMs: number | null): void;
    function showSignedOut(reason: string): void;
    function renderOnline(members: PresenceMember[], count: number): void;
    function toast(text: string): void;
    function addReaction(messageId: string, emoji: string): void;
}
export {};
`;

/**
 * The fenced blocks of `markdown`: `files` by the path of the
 * `<!-- package-test: PATH -->` comment right before them, and `fragments`,
 * every other block in `language`.
 */
function blocks(markdown, language = "ts") {
    const files = new Map();
    const fragments = [];
    const fence = /(?:<!-- package-test: (\S+) -->\n)?```(\w*)\n([\s\S]*?)\n```/g;
    for (const [, file, lang, body] of markdown.matchAll(fence)) {
        if (file) {
            assert.ok(!files.has(file), `two README blocks for ${file}`);
            files.set(file, `${body}\n`);
        } else if (lang === language) {
            fragments.push(`${body}\n`);
        }
    }
    return { files, fragments };
}

/** The main README's section under `## heading`. */
function section(markdown, heading) {
    const start = markdown.indexOf(`\n## ${heading}\n`);
    assert.ok(start >= 0, `the README has a ${heading} section`);
    const end = markdown.indexOf("\n## ", start + 1);
    return markdown.slice(start, end < 0 ? undefined : end);
}

/** The version of `name` in this package's lock file. */
function locked(name) {
    const lock = JSON.parse(readFileSync(path.join(PACKAGE, "package-lock.json"), "utf8"));
    const version = lock.packages?.[`node_modules/${name}`]?.version;
    assert.ok(version, `${name} is in package-lock.json`);
    return version;
}

/** Runs a command to its end; fails the test with its output when it fails. */
function run(command, args, options) {
    const done = spawnSync(command, args, { encoding: "utf8", timeout: 5 * PATIENCE_MS, ...options });
    assert.equal(done.status, 0, `${command} ${args.join(" ")} failed (${done.status ?? done.signal ?? done.error}):\n${done.stdout}${done.stderr}`);
    return done.stdout;
}

/** `tsc -p dir` of the app (its own typescript). */
function compile(app, dir) {
    run(process.execPath, [path.join(app, "node_modules/typescript/bin/tsc"), "-p", dir]);
}

function writeFiles(app, files, prefix) {
    for (const [file, text] of files) {
        if (!file.startsWith(`${prefix}/`)) continue;
        mkdirSync(path.dirname(path.join(app, file)), { recursive: true });
        writeFileSync(path.join(app, file), text);
    }
}

let work, app, tarball;
const { files, fragments } = blocks(README);

before(() => {
    work = mkdtempSync(path.join(tmpdir(), "switchboard-package-"));
    // Gone, so that the tarball's copy shows that prepack built it.
    rmSync(path.join(PACKAGE, "dist/switchboard.js"), { force: true });
    const npm = { cwd: PACKAGE, env: { ...process.env, npm_config_audit: "false", npm_config_fund: "false", npm_config_update_notifier: "false" } };
    run("npm", ["pack", "--pack-destination", work], npm);
    const { name, version } = JSON.parse(readFileSync(path.join(PACKAGE, "package.json"), "utf8"));
    tarball = path.join(work, `${name.replace(/^@/, "").replace("/", "-")}-${version}.tgz`);
    assert.ok(existsSync(tarball), `npm pack wrote ${tarball}`);

    app = path.join(work, "app");
    mkdirSync(app);
    writeFileSync(path.join(app, "package.json"), JSON.stringify({ name: "chat-app", private: true, type: "module" }, null, 2));
    const wanted = ["ws", "typescript", "@types/ws", "@types/node"].map((name) => `${name}@${locked(name)}`);
    run("npm", ["install", "--prefer-offline", "--save-exact", tarball, ...wanted], { ...npm, cwd: app });
});

after(() => {
    if (work) rmSync(work, { recursive: true, force: true });
});

test("the tarball holds dist/ (without the console) and the README; prepack built it", () => {
    const installed = path.join(app, "node_modules/@switchboard/client");
    const list = (dir) => readdirSync(path.join(installed, dir), { recursive: true }).map((f) => path.join(dir, f));
    const shipped = [...readdirSync(installed).filter((f) => f !== "dist"), ...list("dist")].sort();
    for (const file of ["README.md", "package.json", "dist/index.js", "dist/index.d.ts", "dist/client.js", "dist/switchboard.js", "dist/switchboard.js.map"]) {
        assert.ok(shipped.includes(file), `${file} is in the tarball: ${shipped}`);
    }
    assert.deepEqual(
        shipped.filter((f) => !f.startsWith("dist/") && !["README.md", "package.json"].includes(f)),
        [],
        "nothing but dist/, the README and package.json",
    );
    assert.deepEqual(shipped.filter((f) => f.startsWith("dist/console")), [], "no console");
    assert.ok(existsSync(path.join(PACKAGE, "dist/switchboard.js")), "npm pack's prepack built dist/switchboard.js again");
    const manifest = JSON.parse(readFileSync(path.join(installed, "package.json"), "utf8"));
    assert.deepEqual(manifest.peerDependenciesMeta, { ws: { optional: true } }, "ws is an optional peer dependency");
    assert.equal(manifest.exports["./browser"].import, "./dist/switchboard.js");
});

test("the README's Node app compiles (tsc --strict, no DOM types) and runs: connects, subscribes, prints an event, exits 0 on SIGINT", async () => {
    writeFiles(app, files, "node");
    assert.ok(files.has("node/app.ts") && files.has("node/tsconfig.json"), "the README has the Node app's blocks");
    compile(app, path.join(app, "node"));

    const nats = await startNats();
    const gateway = await startGateway(nats.url);
    const sub = uuid();
    const child = spawn(process.execPath, [path.join(app, "node/dist/app.js")], {
        cwd: path.join(app, "node"),
        env: { ...process.env, SWITCHBOARD_URL: gateway.ws, SWITCHBOARD_TOKEN: token({ sub }) },
        stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk) => (stdout += chunk));
    child.stderr.on("data", (chunk) => (stderr += chunk));
    const exited = new Promise((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })));
    try {
        await waitFor("the app to subscribe", () => stdout.includes("subscribed to global"));
        assert.match(stdout, new RegExp(`^connected as ${sub}$`, "m"));
        const name = `general-${uuid()}`;
        await publish(gateway, "channel_created", { channel_id: uuid(), channel_name: name });
        await waitFor("the app to print the event", () => stdout.includes(name));
        assert.match(stdout, new RegExp(`^channel_created \\{.*"channel_name":"${name}".*\\}$`, "m"));

        child.kill("SIGINT");
        let timer;
        const result = await Promise.race([exited, new Promise((resolve) => (timer = setTimeout(() => resolve("still running"), PATIENCE_MS)))]);
        clearTimeout(timer);
        assert.deepEqual(result, { code: 0, signal: null }, `the app exits 0 after SIGINT\nstdout:\n${stdout}\nstderr:\n${stderr}`);
        assert.match(stdout, /^disconnected \(1000\), reconnecting in never ms$/m, "a clean close");
        assert.equal(stderr, "", "nothing on stderr");
    } finally {
        child.kill("SIGKILL");
        await gateway.stop();
        nats.stop();
    }
});

test("the README's page compiles (tsc --strict, DOM types) and, with dist/switchboard.js, shows a live message in Chromium", async () => {
    for (const file of ["web/index.html", "web/tsconfig.json", "web/app.ts"]) assert.ok(files.has(file), `the README has ${file}`);
    const page = files.get("web/app.ts");
    assert.equal(page.split(EXAMPLE_URL).length, 2, `web/app.ts uses ${EXAMPLE_URL} once`);
    writeFiles(app, files, "web");
    const web = path.join(app, "web");
    // Compiled as the README has it; run with the test gateway's URL.
    compile(app, web);
    copyFileSync(path.join(app, "node_modules/@switchboard/client/dist/switchboard.js"), path.join(web, "switchboard.js"));
    copyFileSync(path.join(app, "node_modules/@switchboard/client/dist/switchboard.js.map"), path.join(web, "switchboard.js.map"));

    const port = await freePort();
    const origin = `http://127.0.0.1:${port}`;
    const nats = await startNats();
    const gateway = await startGateway(nats.url, ["--allowed-origins", origin]);
    writeFileSync(path.join(web, "app.js"), readFileSync(path.join(web, "app.js"), "utf8").replace(EXAMPLE_URL, gateway.ws));
    const sub = uuid();
    const served = [];
    const types = { ".html": "text/html", ".js": "text/javascript", ".map": "application/json" };
    // The page's own server: its static files, and the backend's token route.
    const server = http.createServer((request, response) => {
        const url = new URL(request.url, origin);
        served.push(url.pathname);
        if (url.pathname === "/favicon.ico") {
            response.writeHead(204).end();
            return;
        }
        if (url.pathname === "/api/chat-token") {
            response.writeHead(200, { "content-type": "text/plain" });
            response.end(token({ sub }));
            return;
        }
        const file = path.join(web, url.pathname === "/" ? "index.html" : path.basename(url.pathname));
        if (!existsSync(file)) {
            response.writeHead(404).end();
            return;
        }
        response.writeHead(200, { "content-type": types[path.extname(file)] ?? "application/octet-stream" });
        response.end(readFileSync(file));
    });
    await new Promise((resolve) => server.listen(port, "127.0.0.1", resolve));
    let browser;
    try {
        browser = await chromium.launch({ executablePath: chromiumExecutable(), args: ["--no-sandbox"] });
        const tab = await browser.newPage();
        const problems = [];
        tab.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
        tab.on("console", (msg) => msg.type() === "error" && problems.push(`console: ${msg.text()}`));
        await tab.goto(origin);
        await tab.waitForFunction((text) => document.querySelector("#state")?.textContent === text, `connected as ${sub}`, { timeout: PATIENCE_MS });
        const text = `hello ${uuid()}`;
        await message(gateway, PAGE_CHANNEL, text);
        await tab.waitForFunction((text) => [...document.querySelectorAll("#messages li")].some((li) => li.textContent === text), `publisher: ${text}`, {
            timeout: PATIENCE_MS,
        });
        assert.deepEqual(problems, []);
        assert.ok(served.includes("/switchboard.js"), `the page loaded the single-file build: ${served}`);
        assert.ok(served.includes("/api/chat-token"), `the page asked its backend for the token: ${served}`);
    } finally {
        await browser?.close();
        await new Promise((resolve) => server.close(resolve));
        await gateway.stop();
        nats.stop();
    }
});

/** The WebSocket classes an app passes as they are (a cast was needed for ws's once: TS2322). */
const SOCKETS = `import WebSocket from "ws";
import { connect, type WebSocketConstructor } from "@switchboard/client";

const url = "ws://127.0.0.1:8080/v1/ws";
connect({ url, token: "t", WebSocket }); // ws's default export
connect({ url, token: "t", WebSocket: (await import("ws")).default });
connect({ url, token: "t", WebSocket: globalThis.WebSocket }); // the browser's (the DOM's types)
export const classes: WebSocketConstructor[] = [WebSocket, globalThis.WebSocket];
`;

test("every other ts block of the README and of the main README's Clients section compiles (tsc --strict), and ws's and the browser's WebSocket need no cast", () => {
    const main = blocks(section(MAIN_README, "Clients"));
    assert.deepEqual([...main.files.keys()], [], "the main README's blocks are fragments");
    const all = [...fragments, ...main.fragments];
    assert.ok(fragments.length >= 3 && main.fragments.length >= 1, `README fragments found: ${fragments.length} and ${main.fragments.length}`);
    const dir = path.join(app, "fragments");
    mkdirSync(dir, { recursive: true });
    writeFileSync(path.join(dir, "globals.d.ts"), FRAGMENT_GLOBALS);
    writeFileSync(path.join(dir, "sockets.ts"), SOCKETS);
    all.forEach((text, i) => writeFileSync(path.join(dir, `fragment${i + 1}.ts`), `${text}export {};\n`));
    writeFileSync(
        path.join(dir, "tsconfig.json"),
        JSON.stringify({ compilerOptions: { module: "nodenext", target: "es2022", lib: ["es2022", "dom"], strict: true, noEmit: true }, include: ["*.ts"] }, null, 2),
    );
    compile(app, dir);
});
