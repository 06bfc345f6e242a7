/**
 * The gateway's browser console (`GET /console`): connect with a token,
 * subscribe with an optional `since` / `since_seq`, watch events with their
 * `seq` and time, and every connection change (replays, gaps, closes,
 * reconnects, an operator's disconnect) in a log; see when the connection's
 * token expires and refresh it in band with the pasted one; see who is
 * online in each chat channel (its subscription asks for presence); send
 * typing; publish with a publisher token. Event types the gateway's catalog
 * adds show like the built-in ones, and the publish form offers them (from
 * `GET /v1/catalog`) beside the built-in types; any type name may be typed.
 * Each subscription's status follows the connection: offline while it is
 * down, resuming while it comes back, replaying, then live. In `--dev` (the
 * served page says so) a button fills in a development token.
 *
 * Built from the SDK by scripts/build-console.mjs into one script the
 * gateway serves beside the page (its Content-Security-Policy allows no
 * inline script and nothing from elsewhere). No framework: a few DOM calls.
 * Element ids and `data-testid`s are stable: the browser test drives them.
 */

import { connect, EVENT_TYPES, isBuiltIn, RefreshError, webStorage, type Channel, type ChatEvent, type Client, type Presence, type Subscription } from "../src/index.js";

/** Rows kept in the events list and the log: the oldest go first. */
const MAX_EVENTS = 2000;
const MAX_LOG = 500;
/** A presence change of more users than this is one line in the log, not one per user. */
const MAX_PRESENCE_LOG = 10;
/** How often the token's countdown is redrawn. */
const EXPIRY_TICK_MS = 1_000;
/** The built-in types nobody publishes: typing goes over the WebSocket, presence is the gateway's. */
const UNPUBLISHED = new Set(["user_typing", "user_presence"]);

/**
 * Where a subscription stands, shown in its row (`data-status`): it follows
 * the connection. `subscribing` until the gateway answers, `replaying` until
 * `replayed`, then `live`; `offline` from the moment the connection drops,
 * `resuming` while the client reconnects and until the gateway has the
 * subscription again (then `replaying`, `live`).
 */
type SubscriptionStatus = "subscribing" | "replaying" | "live" | "offline" | "resuming";

/** One of this page's subscriptions: its row, and where it stands. */
interface Shown {
    sub: Subscription;
    row: HTMLLIElement;
    status: SubscriptionStatus;
}

/** One type of `GET /v1/catalog`: built in or added by the gateway's catalog directory. */
interface CatalogType {
    type: string;
    built_in: boolean;
    stored: boolean;
    /** `{"channel": field}`, `{"user": field}` or `"global"`. */
    routes: unknown[];
    /** The JSON Schema of its `data`. */
    schema: unknown;
}

function element<T extends HTMLElement>(id: string): T {
    const found = document.getElementById(id);
    if (!found) throw new Error(`console: the page has no #${id}`);
    return found as T;
}

const ui = {
    state: element<HTMLSpanElement>("state"),
    connectForm: element<HTMLFormElement>("connect-form"),
    url: element<HTMLInputElement>("url"),
    token: element<HTMLTextAreaElement>("token"),
    remember: element<HTMLInputElement>("remember"),
    connect: element<HTMLButtonElement>("connect"),
    disconnect: element<HTMLButtonElement>("disconnect"),
    refreshToken: element<HTMLButtonElement>("refresh-token"),
    tokenExpiry: element<HTMLElement>("token-expiry"),
    devToken: element<HTMLButtonElement>("use-dev-token"),
    subscribeForm: element<HTMLFormElement>("subscribe-form"),
    channel: element<HTMLInputElement>("channel"),
    since: element<HTMLInputElement>("since"),
    sinceSeq: element<HTMLInputElement>("since-seq"),
    subscriptions: element<HTMLUListElement>("subscriptions"),
    publishForm: element<HTMLFormElement>("publish-form"),
    publisherToken: element<HTMLTextAreaElement>("publisher-token"),
    eventType: element<HTMLInputElement>("event-type"),
    eventTypes: element<HTMLDataListElement>("event-types"),
    eventData: element<HTMLTextAreaElement>("event-data"),
    example: element<HTMLButtonElement>("example"),
    publishResult: element<HTMLOutputElement>("publish-result"),
    events: element<HTMLOListElement>("events"),
    eventCount: element<HTMLElement>("event-count"),
    clearEvents: element<HTMLButtonElement>("clear-events"),
    log: element<HTMLOListElement>("log"),
};

let client: Client | null = null;
/** The connection's user (from `hello`): marked in the online lists. */
let me: string | undefined;
/** This page's subscriptions, by channel, with their list rows. */
const subscriptions = new Map<Channel, Shown>();
let eventsShown = 0;
/** The types the connected gateway knows (`GET /v1/catalog`), by name; empty until it answered. */
let catalog = new Map<string, CatalogType>();

/**
 * Whether the gateway runs in `--dev`: it says so in the page it serves
 * (`<meta name="switchboard-dev" content="true">`). Only then is there a
 * development token to ask for.
 */
function devMode(): boolean {
    return document.querySelector<HTMLMetaElement>('meta[name="switchboard-dev"]')?.content === "true";
}

/** `ws://host/v1/ws` of the page's own gateway. */
function defaultUrl(): string {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    return `${scheme}//${location.host}/v1/ws`;
}

/** The HTTP API's base for the WebSocket URL in the form. */
function httpBase(): string {
    const url = new URL(ui.url.value.trim() || defaultUrl());
    url.protocol = url.protocol === "wss:" ? "https:" : "http:";
    url.pathname = "";
    url.search = "";
    return url.origin;
}

function clock(time: Date): string {
    return time.toISOString().slice(11, 23);
}

function append(list: HTMLOListElement, row: HTMLLIElement, max: number): void {
    const follow = list.scrollTop + list.clientHeight >= list.scrollHeight - 4;
    list.append(row);
    while (list.childElementCount > max) list.firstElementChild?.remove();
    if (follow) list.scrollTop = list.scrollHeight;
}

function span(className: string, text: string): HTMLSpanElement {
    const node = document.createElement("span");
    node.className = className;
    node.textContent = text;
    return node;
}

/** A line in the log: `kind` is its `data-kind` (connecting, connected, disconnected, …). */
function log(kind: string, text: string): void {
    const row = document.createElement("li");
    row.dataset.kind = kind;
    row.dataset.testid = "log-entry";
    row.className = `log-${kind}`;
    row.append(span("time", clock(new Date())), span("kind", kind), span("text", text));
    append(ui.log, row, MAX_LOG);
}

/** `1 h 02 m`, `3 m 05 s`, `42 s`. */
function duration(ms: number): string {
    const s = Math.floor(ms / 1000);
    if (s >= 3600) return `${Math.floor(s / 3600)} h ${String(Math.floor((s % 3600) / 60)).padStart(2, "0")} m`;
    if (s >= 60) return `${Math.floor(s / 60)} m ${String(s % 60).padStart(2, "0")} s`;
    return `${s} s`;
}

/** The connection's token expiry (`data-exp`: its `exp` claim), with a countdown. */
function showExpiry(): void {
    const exp = client?.tokenExp;
    if (exp === undefined) {
        delete ui.tokenExpiry.dataset.exp;
        delete ui.tokenExpiry.dataset.expired;
        ui.tokenExpiry.textContent = client ? "token expiry: unknown (no exp)" : "token expiry: not connected";
        return;
    }
    const at = new Date(exp * 1000);
    const left = at.getTime() - Date.now();
    ui.tokenExpiry.dataset.exp = String(exp);
    ui.tokenExpiry.dataset.expired = String(left <= 0);
    ui.tokenExpiry.title = at.toISOString();
    ui.tokenExpiry.textContent = `token expires ${at.toISOString().slice(11, 19)} UTC (${left > 0 ? `in ${duration(left)}` : `${duration(-left)} ago`})`;
}

/** Sends the pasted token as a `refresh` on the open connection. */
function refreshToken(): void {
    const current = client;
    const token = ui.token.value.trim();
    if (!current) {
        log("error", "connect first");
        return;
    }
    if (!token) {
        log("error", "paste the new token first");
        return;
    }
    log("refresh", "sending the pasted token as a refresh");
    // Success is logged by the client's `refreshed` event.
    current.refresh(token).catch((error: unknown) => {
        const text = error instanceof RefreshError ? `${error.code}: ${error.message}` : String(error);
        log("error", `refresh refused: ${text}`);
    });
}

function setState(state: string, text: string): void {
    ui.state.dataset.state = state;
    ui.state.textContent = text;
}

/**
 * An event in the list (`data-seq` for a stored one), built in or added by
 * the gateway's catalog alike; typing goes to the log. An ephemeral added
 * type has no seq: its row says "live only".
 */
function showEvent(event: ChatEvent, replayed: boolean): void {
    if (isBuiltIn(event) && event.type === "user_typing") {
        const data = event.data;
        log("typing", `${event.channel}: ${data.username} ${data.is_typing ? "is typing" : "stopped typing"}`);
        return;
    }
    const seq = typeof event.seq === "number" ? event.seq : undefined;
    const row = document.createElement("li");
    row.dataset.testid = "event";
    if (seq !== undefined) row.dataset.seq = String(seq);
    row.dataset.channel = event.channel;
    row.dataset.type = event.type;
    row.dataset.id = event.id;
    if (!isBuiltIn(event)) row.dataset.added = "true";
    row.className = replayed ? "event replayed" : "event";
    row.title = JSON.stringify(event.data, null, 2);
    const stored = new Date(event.timestamp);
    row.append(
        span("seq", seq === undefined ? "—" : `#${seq}`),
        span("time", Number.isNaN(stored.getTime()) ? event.timestamp : clock(stored)),
        span("channel", event.channel),
        span("type", event.type),
        span("data", JSON.stringify(event.data)),
    );
    if (seq === undefined) row.append(span("badge", "live only"));
    if (replayed) row.append(span("badge", "replayed"));
    append(ui.events, row, MAX_EVENTS);
    eventsShown += 1;
    ui.eventCount.textContent = String(eventsShown);
}

function subscriptionRow(channel: Channel): HTMLLIElement {
    const row = document.createElement("li");
    row.dataset.testid = "subscription";
    row.dataset.channel = channel;
    const last = span("last-seq", "—");
    last.dataset.testid = "last-seq";
    const status = span("status", "");
    status.dataset.testid = "subscription-status";
    row.append(span("channel", channel), status, last);
    if (channel.startsWith("channel:")) {
        const typing = document.createElement("button");
        typing.type = "button";
        typing.textContent = "Typing";
        typing.dataset.testid = "send-typing";
        typing.addEventListener("click", () => {
            const sent = client?.typing(channel, true) ?? false;
            log("typing", sent ? `sent typing to ${channel}` : `not connected: typing to ${channel} not sent`);
        });
        row.append(typing);
    }
    const leave = document.createElement("button");
    leave.type = "button";
    leave.textContent = "Unsubscribe";
    leave.dataset.testid = "unsubscribe";
    leave.addEventListener("click", () => {
        const entry = subscriptions.get(channel);
        if (entry) void entry.sub.unsubscribe();
    });
    row.append(leave);
    if (channel.startsWith("channel:")) {
        const presence = document.createElement("div");
        presence.className = "presence";
        presence.dataset.testid = "presence";
        const count = span("presence-count", "online: waiting for the snapshot");
        count.dataset.testid = "presence-count";
        const members = document.createElement("ul");
        members.className = "presence-members";
        members.dataset.testid = "presence-members";
        presence.append(count, members);
        row.append(presence);
    }
    return row;
}

/** A chat subscription's online list: the count, then each user (`data-user-id`), this connection's own marked. */
function showPresence(row: HTMLLIElement, presence: Presence): void {
    const count = row.querySelector<HTMLElement>(".presence-count");
    const list = row.querySelector<HTMLUListElement>(".presence-members");
    if (!count || !list) return;
    count.dataset.count = String(presence.count);
    const listed = presence.truncated ? ` (${presence.members.size} listed)` : "";
    count.textContent = `${presence.count} online${listed}`;
    const items = [...presence.members.values()].map((member) => {
        const item = document.createElement("li");
        item.dataset.testid = "presence-member";
        item.dataset.userId = member.userId;
        item.title = `${member.userId}, ${member.connections} connection(s)`;
        const self = member.userId === me;
        if (self) item.dataset.self = "true";
        item.textContent = `${member.username}${self ? " (you)" : ""}${member.connections > 1 ? ` ×${member.connections}` : ""}`;
        return item;
    });
    list.replaceChildren(...items);
}

/** Shows where a subscription stands (`detail`: a few more words after the status). */
function setStatus(entry: Shown, status: SubscriptionStatus, detail?: string): void {
    entry.status = status;
    const node = entry.row.querySelector<HTMLElement>(".status");
    if (!node) return;
    node.dataset.status = status;
    node.textContent = detail ? `${status} (${detail})` : status;
}

/** Every subscription of the page follows the connection (see `SubscriptionStatus`). */
function setAllStatus(status: SubscriptionStatus, detail?: string): void {
    for (const entry of subscriptions.values()) setStatus(entry, status, detail);
}

function subscribe(channel: Channel, options: { since?: string; sinceSeq?: number }): void {
    if (!client) throw new Error("connect first");
    // Chat channels show who is online.
    const sub = client.subscribe(channel, { ...options, ...(channel.startsWith("channel:") ? { presence: true } : {}) });
    const row = subscriptionRow(channel);
    const entry: Shown = { sub, row, status: "subscribing" };
    subscriptions.set(channel, entry);
    ui.subscriptions.append(row);
    const state = client.state;
    if (state === "connecting" || state === "connected") setStatus(entry, "subscribing");
    else setStatus(entry, "offline", "subscribes when the connection is back");
    sub.on("subscribed", ({ complete, firstSeq, epoch }) => {
        setStatus(entry, "replaying", complete ? undefined : "incomplete: events are missing");
        const first = firstSeq === undefined ? "" : `, first_seq ${firstSeq}`;
        log("subscribed", `${channel}: complete ${complete}${first}${epoch ? `, epoch ${epoch}` : ""}`);
    });
    sub.on("replayed", ({ count, lastSeq }) => {
        setStatus(entry, "live");
        log("replayed", `${channel}: ${count} event(s) replayed, last_seq ${lastSeq}`);
    });
    sub.on("event", (event) => {
        showEvent(event, entry.status === "replaying");
        if ("seq" in event && typeof event.seq === "number") {
            const last = row.querySelector<HTMLElement>(".last-seq");
            if (last) last.textContent = `last seq ${event.seq}`;
        }
    });
    sub.on("gap", ({ firstSeq, reason }) => {
        log("gap", `${channel}: events missing (${reason})${firstSeq === undefined ? "" : `, the stream starts at seq ${firstSeq}`}`);
    });
    sub.on("presence", ({ presence, joined, left, snapshot }) => {
        showPresence(row, presence);
        if (snapshot) log("presence", `${channel}: ${presence.count} online (snapshot)`);
        if (joined.length + left.length > MAX_PRESENCE_LOG) {
            log("presence", `${channel}: ${joined.length} came online, ${left.length} went offline`);
            return;
        }
        for (const member of joined) log("presence", `${channel}: ${member.username} online`);
        for (const member of left) log("presence", `${channel}: ${member.username} offline`);
    });
    sub.on("error", ({ code, message }) => log("error", `${channel}: ${code}: ${message}`));
    sub.on("unsubscribed", ({ reason }) => {
        log("unsubscribed", `${channel}: ${reason}`);
        subscriptions.delete(channel);
        row.remove();
    });
}

function connectClient(url: string, token: string): void {
    const previous = client;
    if (previous) void previous.close();
    catalog = new Map();
    subscriptions.clear();
    ui.subscriptions.replaceChildren();
    const next = connect({
        url,
        token,
        ...(ui.remember.checked ? { storage: webStorage(localStorage), storageKey: "switchboard-console" } : {}),
    });
    client = next;
    next.on("connecting", ({ attempt }) => {
        setState("connecting", attempt ? `reconnecting (attempt ${attempt})` : "connecting");
        // The subscriptions shown are this client's only (a new Connect replaced them).
        if (attempt && client === next) setAllStatus("resuming", `reconnecting, attempt ${attempt}`);
        log("connecting", `${url}${attempt ? `, attempt ${attempt}` : ""}`);
    });
    next.on("connected", ({ hello, resumed }) => {
        me = hello.userId;
        // Each subscription is live again once the gateway has it and its replay is over.
        for (const entry of client === next ? subscriptions.values() : []) {
            if (entry.status === "offline" || entry.status === "resuming") setStatus(entry, "resuming", resumed ? "session restored, waiting for the replay" : "subscribing again");
        }
        setState("connected", `connected as ${hello.userId}`);
        log("connected", `session ${hello.sessionId}${resumed ? " (resumed)" : ""}, heartbeat ${hello.heartbeatMs} ms`);
        showExpiry();
        if (catalog.size === 0) void loadCatalog(token);
    });
    next.on("disconnected", ({ code, reason, reconnectInMs }) => {
        if (client === next) setAllStatus("offline", reconnectInMs === null ? "not reconnecting" : "the connection dropped");
        const again = reconnectInMs === null ? "not reconnecting" : `reconnecting in ${Math.round(reconnectInMs)} ms`;
        setState(reconnectInMs === null ? "closed" : "disconnected", `closed ${code}${reason ? ` ${reason}` : ""}; ${again}`);
        log("disconnected", `close ${code}${reason ? ` (${reason})` : ""}; ${again}`);
    });
    next.on("stopped", ({ code, reason }) => {
        if (client === next) setAllStatus("offline", "disconnected by the operator");
        setState("stopped", `disconnected by the operator${reason ? `: ${reason}` : ""}`);
        log("stopped", `close ${code}: disconnected by the operator${reason ? ` (${reason})` : ""}; not reconnecting: paste a new token and connect`);
        showExpiry();
    });
    next.on("refreshed", ({ exp }) => {
        showExpiry();
        log("refreshed", `token refreshed: exp ${exp} (${new Date(exp * 1000).toISOString()})`);
    });
    next.on("resumed", ({ channels }) => log("resumed", `session restored: ${channels.join(", ") || "no subscriptions"}`));
    next.on("gap", ({ channel, firstSeq, reason }) =>
        log("gap", `${channel}: events missing (${reason})${firstSeq === undefined ? "" : `, the stream starts at seq ${firstSeq}`}`),
    );
    next.on("error", ({ code, message, channel }) => log("error", `${channel ? `${channel}: ` : ""}${code}: ${message}`));
    ui.disconnect.disabled = false;
    ui.refreshToken.disabled = false;
}

async function publish(): Promise<void> {
    const bearer = ui.publisherToken.value.trim() || ui.token.value.trim();
    let data: unknown;
    try {
        data = JSON.parse(ui.eventData.value);
    } catch (error) {
        ui.publishResult.dataset.ok = "false";
        ui.publishResult.textContent = `the data is not JSON: ${String(error)}`;
        return;
    }
    const type = ui.eventType.value.trim();
    if (!type) {
        ui.publishResult.dataset.ok = "false";
        ui.publishResult.textContent = "give a type";
        return;
    }
    try {
        const response = await fetch(`${httpBase()}/v1/events`, {
            method: "POST",
            headers: { authorization: `Bearer ${bearer}`, "content-type": "application/json" },
            body: JSON.stringify({ type, data }),
        });
        const text = await response.text();
        ui.publishResult.dataset.ok = String(response.ok);
        ui.publishResult.textContent = `${response.status}: ${text}`;
        log("publish", `${type}: ${response.status} ${text}`);
    } catch (error) {
        ui.publishResult.dataset.ok = "false";
        ui.publishResult.textContent = `failed: ${String(error)}`;
        log("publish", `${type}: failed: ${String(error)}`);
    }
}

/**
 * The publish form's type list: the built-in types, then the ones the
 * gateway's catalog adds (once `GET /v1/catalog` answered), each with what
 * it is.
 */
function showTypes(): void {
    const options: HTMLOptionElement[] = [];
    const add = (type: string, label: string) => {
        const option = document.createElement("option");
        option.value = type;
        option.label = label;
        option.textContent = label;
        options.push(option);
    };
    for (const type of EVENT_TYPES) if (!UNPUBLISHED.has(type)) add(type, "built in");
    for (const known of catalog.values()) {
        if (!known.built_in) add(known.type, `added, ${known.stored ? "stored" : "ephemeral (no seq)"}`);
    }
    ui.eventTypes.replaceChildren(...options);
}

/** `GET /v1/catalog` with the connection's token: the added types join the publish form's list. */
async function loadCatalog(token: string): Promise<void> {
    try {
        const response = await fetch(`${httpBase()}/v1/catalog`, { headers: { authorization: `Bearer ${token}` }, cache: "no-store" });
        if (!response.ok) {
            log("catalog", `GET /v1/catalog: ${response.status} ${await response.text()}`);
            return;
        }
        const body = (await response.json()) as { types?: CatalogType[] };
        catalog = new Map((body.types ?? []).map((t) => [t.type, t]));
        const added = [...catalog.values()].filter((t) => !t.built_in).map((t) => t.type);
        log("catalog", `${catalog.size} event types${added.length ? `, added: ${added.join(", ")}` : ", none added"}`);
        showTypes();
    } catch (error) {
        log("catalog", `GET /v1/catalog failed: ${String(error)}`);
    }
}

/** Data for the selected type, in the first subscribed chat channel when there is one. */
function exampleData(type: string): Record<string, unknown> {
    const chat = [...subscriptions.keys()].find((c) => c.startsWith("channel:"));
    const channelId = chat ? chat.slice("channel:".length) : crypto.randomUUID();
    const userId = crypto.randomUUID();
    switch (type) {
        case "channel_message":
            return { message_id: crypto.randomUUID(), channel_id: channelId, user_id: userId, username: "console", content: "hello from the console" };
        case "channel_created":
            return { channel_id: channelId, channel_name: "general" };
    }
    const added = catalog.get(type);
    if (added && !added.built_in) return fromSchema(added, channelId);
    return { channel_id: channelId, user_id: userId };
}

/**
 * Example data for an added type, from its schema: each required field, a
 * route's field an id (the chat channel's, this connection's user's), the
 * others their `const`, `default`, first example or enum value, else a
 * value of their type.
 */
function fromSchema(added: CatalogType, channelId: string): Record<string, unknown> {
    const schema = (typeof added.schema === "object" && added.schema !== null ? added.schema : {}) as {
        required?: unknown;
        properties?: Record<string, Record<string, unknown>>;
    };
    const routed = new Map<string, string>();
    for (const route of added.routes) {
        if (typeof route !== "object" || route === null) continue;
        const { channel, user } = route as { channel?: unknown; user?: unknown };
        if (typeof channel === "string") routed.set(channel, channelId);
        if (typeof user === "string") routed.set(user, me ?? crypto.randomUUID());
    }
    const data: Record<string, unknown> = {};
    const required = Array.isArray(schema.required) ? schema.required.filter((f): f is string => typeof f === "string") : [];
    for (const field of required) {
        const property = schema.properties?.[field] ?? {};
        const examples = property.examples;
        const choices = property.enum;
        data[field] =
            routed.get(field) ??
            property.const ??
            property.default ??
            (Array.isArray(examples) && examples.length ? examples[0] : undefined) ??
            (Array.isArray(choices) && choices.length ? choices[0] : undefined) ??
            valueOf(property.type, field);
    }
    return data;
}

function valueOf(type: unknown, field: string): unknown {
    switch (Array.isArray(type) ? type[0] : type) {
        case "integer":
        case "number":
            return 0;
        case "boolean":
            return false;
        case "array":
            return [];
        case "object":
            return {};
        case "null":
            return null;
        default:
            return field.endsWith("_id") ? crypto.randomUUID() : "example";
    }
}

function start(): void {
    ui.url.value = defaultUrl();
    showTypes();
    ui.eventType.value = "channel_message";
    ui.eventData.value = JSON.stringify(exampleData("channel_message"), null, 2);

    ui.connectForm.addEventListener("submit", (e) => {
        e.preventDefault();
        const token = ui.token.value.trim();
        if (!token) {
            log("error", "paste a token first");
            return;
        }
        try {
            connectClient(ui.url.value.trim() || defaultUrl(), token);
        } catch (error) {
            log("error", String(error));
        }
    });
    ui.disconnect.addEventListener("click", () => {
        const current = client;
        if (!current) return;
        client = null;
        ui.disconnect.disabled = true;
        ui.refreshToken.disabled = true;
        showExpiry();
        void current.close().then(({ code, reason, wasClean }) => {
            setState("closed", `closed ${code}${wasClean ? "" : " (not clean)"}`);
            log("closed", `close ${code}${reason ? ` (${reason})` : ""}, clean: ${wasClean}`);
        });
    });
    ui.refreshToken.addEventListener("click", refreshToken);
    setInterval(showExpiry, EXPIRY_TICK_MS);
    showExpiry();
    ui.subscribeForm.addEventListener("submit", (e) => {
        e.preventDefault();
        const channel = ui.channel.value.trim() as Channel;
        const since = ui.since.value.trim();
        const sinceSeq = ui.sinceSeq.value.trim();
        try {
            subscribe(channel, {
                ...(since ? { since } : {}),
                ...(sinceSeq ? { sinceSeq: Number(sinceSeq) } : {}),
            });
            // A since or since_seq is for this subscription only: the next one starts from now unless asked again.
            ui.channel.value = "";
            ui.since.value = "";
            ui.sinceSeq.value = "";
        } catch (error) {
            log("error", error instanceof Error ? error.message : String(error));
        }
    });
    ui.publishForm.addEventListener("submit", (e) => {
        e.preventDefault();
        void publish();
    });
    ui.example.addEventListener("click", () => {
        ui.eventData.value = JSON.stringify(exampleData(ui.eventType.value.trim()), null, 2);
    });
    ui.clearEvents.addEventListener("click", () => {
        ui.events.replaceChildren();
        eventsShown = 0;
        ui.eventCount.textContent = "0";
    });

    // In --dev only, the gateway mints a token for the console (and its page says so).
    if (devMode()) loadDevToken();
    log("ready", "paste a token and connect");
}

/** Asks the gateway (in `--dev`) for a development token; the "Use dev token" button shows once it came. */
function loadDevToken(): void {
    void fetch("/console/dev-token", { cache: "no-store" })
        .then(async (response) => {
            if (!response.ok) {
                log("error", `GET /console/dev-token: ${response.status} ${await response.text()}`);
                return;
            }
            const body = (await response.json()) as { token?: string };
            if (!body.token) return;
            const token = body.token;
            ui.devToken.hidden = false;
            ui.devToken.addEventListener("click", () => {
                ui.token.value = token;
                ui.publisherToken.value = token;
                log("dev", "using the gateway's development token (every channel, publisher and auditor)");
            });
        })
        .catch((error: unknown) => log("error", `GET /console/dev-token failed: ${String(error)}`));
}

start();
