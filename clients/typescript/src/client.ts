/**
 * The connection: one WebSocket at a time, its timers (the wait for `hello`,
 * the heartbeat watchdog, the ack interval, the reconnect, the token
 * refresh), the calls to `getToken`, the cursors' storage, and the handing
 * of events to the application. The rules that
 * make every stored event arrive exactly once, in `seq` order, however
 * often the network drops (what to subscribe, what to drop, what to ack,
 * what a close means) are the resume core's (`resume.ts`): this transport
 * carries out its actions and tells it what happened, and decides nothing
 * about subscriptions itself.
 */

import { Emitter } from "./emitter.js";
import type { Presence } from "./presence.js";
import { ResumeCore, type Action, type ClientStats, type CloseResult, type PresenceResult, type RefreshResult } from "./resume.js";
import { parseSaved } from "./storage.js";
import { Subscription } from "./subscription.js";
import type { Channel, ClientEvents, ConnectionState, ConnectOptions, WebSocketConstructor, WebSocketLike } from "./types.js";

export type { ClientStats, CloseResult } from "./resume.js";

const OPEN = 1;
/** A heartbeat's worth of silence before `hello` arrives, or this, whichever is longer. */
const CONNECT_TIMEOUT_MS = 15_000;
/** How long `close()` waits for the server's Close frame before it drops the connection (as 1006). */
const CLOSE_TIMEOUT_MS = 5_000;
/** How often delivered seqs are acked (and saved) when `ackIntervalMs` is not given. */
const ACK_INTERVAL_MS = 1_000;
const CHANNEL = /^(channel:[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|user:[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|global)$/;

export interface SubscribeOptions {
    /** Replay every event stored at or after this time, then live. */
    since?: string | Date;
    /** Replay every event with a greater `seq`, then live. */
    sinceSeq?: number;
    /**
     * Who is online (`channel:` channels only): the subscription's
     * `presence` holds the set, kept up to date, and its `presence` event
     * says what changed.
     */
    presence?: boolean;
}

/** The page's `pagehide` events, in a browser; none in Node. */
function pageEvents(): { addEventListener(name: string, handler: () => void): void; removeEventListener(name: string, handler: () => void): void } | undefined {
    const target = globalThis as Partial<Pick<Window, "addEventListener" | "removeEventListener">>;
    return target.addEventListener && target.removeEventListener ? (target as Window) : undefined;
}

/**
 * Why `client.refresh()` failed: `code` is the gateway's (`forbidden`: not
 * the connection's user, `bad_request`: not a valid token), or `offline`
 * (no open connection to send it on), `disconnected` (the connection ended
 * before the answer), `token` (`getToken` failed).
 */
export class RefreshError extends Error {
    readonly code: string;

    constructor(code: string, message: string) {
        super(message);
        this.name = "RefreshError";
        this.code = code;
    }
}

/**
 * Why `subscription.requestPresence()` failed: `code` is the gateway's
 * (`not_found`: the connection does not hold the channel, `forbidden`: the
 * user may not see it), or `offline` (no open connection to send it on),
 * `disconnected` (the connection ended before the answer), `ended` (the
 * subscription is over).
 */
export class PresenceError extends Error {
    readonly code: string;

    constructor(code: string, message: string) {
        super(message);
        this.name = "PresenceError";
        this.code = code;
    }
}

/** Opens a client; it connects at once and keeps reconnecting until `close()`. */
export function connect(options: ConnectOptions): Client {
    return new Client(options);
}

export class Client extends Emitter<ClientEvents> {
    readonly #options: ConnectOptions;
    readonly #WebSocket: WebSocketConstructor;
    readonly #core: ResumeCore<Subscription>;
    #ws: WebSocketLike | null = null;
    #reconnectTimer: ReturnType<typeof setTimeout> | undefined;
    /** Gives up on a connection whose `hello` (or close handshake) never comes. */
    #deadline: ReturnType<typeof setTimeout> | undefined;
    #watchdog: ReturnType<typeof setInterval> | undefined;
    #ackTimer: ReturnType<typeof setInterval> | undefined;
    #refreshTimer: ReturnType<typeof setTimeout> | undefined;
    /** The fixed token (`token`, or the last one `refresh()` or `reconnect()` gave); used when there is no `getToken`. */
    #token: string | undefined;
    /** The token `reconnect(token)` gave for the next attempt, before `getToken`. */
    #nextToken: string | undefined;
    /** The `refresh()` calls waiting for the gateway's answer, by request id. */
    readonly #refreshing = new Map<string, { token: string; resolve: (exp: number) => void; reject: (error: RefreshError) => void }>();
    #lastFrameAt = 0;
    #pinged = false;
    /** The `unsubscribe()`s waiting for the server's answer, by request id. */
    readonly #unsubscribing = new Map<string, () => void>();
    /** The `requestPresence()` calls waiting for the gateway's answer, by request id. */
    readonly #presenceWaiting = new Map<string, { resolve: (presence: Presence) => void; reject: (error: PresenceError) => void }>();
    #closing: Promise<CloseResult> | undefined;
    #resolveClosing: ((result: CloseResult) => void) | undefined;
    readonly #ready: Promise<void>;
    #lastSaved = "";
    /** Saves the cursors when the page goes away (a reload resumes from them). */
    readonly #saveOnPagehide = () => this.#save();

    constructor(options: ConnectOptions) {
        super();
        if (!options.token && !options.getToken) throw new TypeError("connect: give `token` or `getToken`");
        const ctor = options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
        if (!ctor) {
            throw new TypeError("connect: this runtime has no global WebSocket; pass one as `WebSocket` (for example the `ws` package's)");
        }
        this.#options = options;
        this.#token = options.token;
        this.#WebSocket = ctor;
        this.#core = new ResumeCore<Subscription>(options, (action) => this.#carryOut(action));
        this.#ready = this.#load();
        pageEvents()?.addEventListener("pagehide", this.#saveOnPagehide);
        // After the caller has had the chance to add handlers.
        queueMicrotask(() => void this.#open());
    }

    get state(): ConnectionState {
        return this.#core.state;
    }

    /** The server-side session, once connected. */
    get sessionId(): string | undefined {
        return this.#core.hello?.session_id;
    }

    /** The stream epoch of the current connection. */
    get epoch(): string | undefined {
        return this.#core.hello?.epoch;
    }

    get stats(): Readonly<ClientStats> {
        return this.#core.stats;
    }

    /** The subscriptions' last delivered seqs. */
    get cursors(): Record<string, number> {
        return this.#core.cursors;
    }

    /**
     * The `exp` (seconds since the epoch) of the connection's token: the one
     * it connected with, or the last refreshed; of the last connection while
     * offline; `undefined` before the first, or when the token has no `exp`.
     */
    get tokenExp(): number | undefined {
        return this.#core.tokenExp;
    }

    /**
     * Replaces the open connection's token in band (the `refresh` frame),
     * with `token` or, without one, a token from `getToken`. Resolves with
     * the new token's `exp` (seconds since the epoch); rejects with a
     * {@link RefreshError} whose `code` is the gateway's (`forbidden`: the
     * token is another user's; `bad_request`: it does not verify) or
     * `offline`, `disconnected`, `token`. A refused token changes nothing.
     * With a fixed `token` (no `getToken`), a refreshed token is also the
     * one later reconnects use.
     */
    async refresh(token?: string): Promise<number> {
        let next = token;
        if (next === undefined) {
            const getToken = this.#options.getToken;
            if (!getToken) throw new TypeError("refresh: give a token (this client has no getToken)");
            try {
                next = await getToken();
            } catch (error) {
                throw new RefreshError("token", `getToken failed: ${String(error)}`);
            }
        }
        const requestId = this.#core.refresh(next);
        if (requestId === undefined) throw new RefreshError("offline", `refresh: not connected (${this.#core.state}); the token was not sent`);
        const sent = next;
        return new Promise((resolve, reject) => this.#refreshing.set(requestId, { token: sent, resolve, reject }));
    }

    /**
     * Connects now: after a close 4003 (`stopped`), or instead of waiting out
     * the back-off (`disconnected`). `token`, when given, is used for this
     * attempt (and, without `getToken`, for the later ones too). Subscriptions
     * resume where they were. False when the client is connecting or
     * connected already, or closed (make a new one).
     */
    reconnect(token?: string): boolean {
        if (!this.#core.reconnect()) return false;
        if (token !== undefined) {
            this.#nextToken = token;
            if (!this.#options.getToken) this.#token = token;
        }
        clearTimeout(this.#reconnectTimer);
        void this.#open();
        return true;
    }

    /**
     * Subscribes to `channel` (`channel:{uuid}`, `user:{uuid}` or `global`).
     * Without `since`/`sinceSeq`, it starts now, or where a saved cursor
     * (see `storage`) says. With `presence: true` (a `channel:` channel), it
     * also keeps who is online (`subscription.presence`).
     */
    subscribe(channel: Channel, options: SubscribeOptions = {}): Subscription {
        if (!CHANNEL.test(channel)) throw new TypeError(`subscribe: \`${channel}\` is not a channel (channel:{uuid}, user:{uuid} or global)`);
        const normal = channel.toLowerCase() as Channel;
        if (this.#core.has(normal)) throw new Error(`subscribe: already subscribed to ${normal}`);
        if (this.#core.state === "closed") throw new Error("subscribe: the client is closed");
        if (options.since !== undefined && options.sinceSeq !== undefined) throw new TypeError("subscribe: give `since` or `sinceSeq`, not both");
        if (options.sinceSeq !== undefined && !(Number.isSafeInteger(options.sinceSeq) && options.sinceSeq >= 0)) {
            throw new TypeError("subscribe: `sinceSeq` must be a whole number >= 0");
        }
        const presence = options.presence === true;
        if (presence && !normal.startsWith("channel:")) throw new TypeError(`subscribe: presence is only for channel:{uuid} channels, not ${normal}`);
        const since = options.since instanceof Date ? options.since.toISOString() : options.since;
        const handle: Subscription = new Subscription(normal, {
            unsubscribe: () => this.#unsubscribe(normal),
            requestPresence: () => this.#requestPresence(normal, handle),
        });
        this.#core.subscribe(normal, handle, { since, sinceSeq: options.sinceSeq, presence });
        return handle;
    }

    /** Tells the channel's other members this user is (or stopped) typing; false when offline. */
    typing(channel: string, isTyping: boolean): boolean {
        const target = channel.startsWith("channel:") ? channel : `channel:${channel}`;
        if (this.#core.state !== "connected") return false;
        return this.#send({ type: "typing", channel: target, is_typing: isTyping });
    }

    /**
     * Acks what was delivered, closes with a clean close handshake (1000 by
     * default) and stops reconnecting. Resolves with the close.
     */
    close(code = 1000, reason = ""): Promise<CloseResult> {
        if (this.#closing) return this.#closing;
        this.#core.close();
        clearTimeout(this.#reconnectTimer);
        clearTimeout(this.#refreshTimer);
        this.#closing = new Promise((resolve) => {
            this.#resolveClosing = resolve;
        });
        const ws = this.#ws;
        if (ws) {
            try {
                ws.close(code, reason);
            } catch {
                this.#onClose(ws, code, reason, false);
            }
            // A server that never answers the Close frame does not hold us forever.
            clearTimeout(this.#deadline);
            this.#deadline = setTimeout(() => this.#ws === ws && this.#drop(ws, 1006, "no close handshake"), CLOSE_TIMEOUT_MS);
        } else {
            this.#core.finish({ code, reason, wasClean: true });
        }
        return this.#closing;
    }

    /** Does what the resume core asks; for a `send`, says whether the frame went out. */
    #carryOut(action: Action<Subscription>): boolean {
        switch (action.kind) {
            case "send":
                return this.#send(action.frame);
            case "dispatch":
                action.handle.dispatch(action.name, action.payload);
                break;
            case "emit":
                this.emit(action.name, action.payload);
                break;
            case "established":
                clearTimeout(this.#deadline);
                this.#startTimers(action.heartbeatMs);
                break;
            case "reconnect":
                clearTimeout(this.#reconnectTimer);
                this.#reconnectTimer = setTimeout(() => void this.#open(), action.delayMs);
                break;
            case "resubscribe": {
                const { channel, handle } = action;
                setTimeout(() => this.#core.resubscribe(channel, handle), action.delayMs);
                break;
            }
            case "settle": {
                const waiting = this.#unsubscribing.get(action.requestId);
                this.#unsubscribing.delete(action.requestId);
                waiting?.();
                break;
            }
            case "save":
                this.#save();
                break;
            case "refreshTimer":
                clearTimeout(this.#refreshTimer);
                this.#refreshTimer = action.delayMs === undefined ? undefined : setTimeout(() => this.#core.refreshTimer(), action.delayMs);
                break;
            case "fetchToken":
                void this.#fetchToken();
                break;
            case "refreshAnswered":
                this.#settleRefresh(action.requestId, action.result);
                break;
            case "presenceAnswered":
                this.#settlePresence(action.requestId, action.result);
                break;
            case "finished":
                pageEvents()?.removeEventListener("pagehide", this.#saveOnPagehide);
                this.#resolveClosing?.(action.result);
                this.#resolveClosing = undefined;
                this.#closing ??= Promise.resolve(action.result);
                break;
        }
        return true;
    }

    async #load(): Promise<void> {
        const storage = this.#options.storage;
        if (!storage) return;
        try {
            this.#core.restore(parseSaved(await storage.get(this.#storageKey())));
        } catch (error) {
            this.emit("error", { code: "storage", message: `cannot read saved cursors: ${String(error)}` });
        }
    }

    #storageKey(): string {
        return this.#options.storageKey ?? "switchboard";
    }

    #save(): void {
        const storage = this.#options.storage;
        if (!storage) return;
        const text = JSON.stringify(this.#core.toSave());
        if (text === this.#lastSaved) return;
        this.#lastSaved = text;
        try {
            void Promise.resolve(storage.set(this.#storageKey(), text)).catch((error: unknown) =>
                this.emit("error", { code: "storage", message: `cannot save cursors: ${String(error)}` }),
            );
        } catch (error) {
            this.emit("error", { code: "storage", message: `cannot save cursors: ${String(error)}` });
        }
    }

    async #open(): Promise<void> {
        if (!this.#core.opening()) return;
        let token: string;
        try {
            await this.#ready;
            const given = this.#nextToken;
            this.#nextToken = undefined;
            token = given ?? (this.#options.getToken ? await this.#options.getToken() : (this.#token ?? ""));
        } catch (error) {
            this.emit("error", { code: "token", message: `getToken failed: ${String(error)}` });
            this.#core.failed(1006, "getToken failed");
            return;
        }
        if (this.#core.state === "closed") return; // closed while we awaited the token
        this.#core.usingToken(token);
        const url = new URL(this.#options.url);
        url.searchParams.set("token", token);
        const hello = this.#core.hello;
        if (hello) url.searchParams.set("session", hello.session_id);
        let ws: WebSocketLike;
        try {
            ws = new this.#WebSocket(url.toString());
        } catch (error) {
            this.emit("error", { code: "connect", message: String(error) });
            this.#core.failed(1006, String(error));
            return;
        }
        this.#ws = ws;
        this.#lastFrameAt = Date.now();
        ws.onmessage = (event) => {
            if (this.#ws === ws) this.#onMessage(event.data);
        };
        ws.onclose = (event) => this.#onClose(ws, event.code, event.reason, event.wasClean);
        ws.onerror = () => {
            // A close event follows, with the code.
        };
        const helloTimeout = Math.max(CONNECT_TIMEOUT_MS, hello?.heartbeat_ms ?? 0);
        clearTimeout(this.#deadline);
        this.#deadline = setTimeout(() => {
            if (this.#ws === ws && this.#core.state === "connecting") this.#drop(ws, 1006, `no hello within ${helloTimeout} ms`);
        }, helloTimeout);
    }

    /** A token for an automatic refresh (the core's `fetchToken`). */
    async #fetchToken(): Promise<void> {
        const getToken = this.#options.getToken;
        try {
            if (!getToken) throw new Error("no getToken");
            this.#core.tokenReady(await getToken());
        } catch (error) {
            this.#core.tokenFailed(`getToken failed: ${String(error)}`);
        }
    }

    #settleRefresh(requestId: string, result: RefreshResult): void {
        const waiting = this.#refreshing.get(requestId);
        if (!waiting) return; // an automatic refresh: the core handles its answer
        this.#refreshing.delete(requestId);
        if ("exp" in result) {
            if (!this.#options.getToken) this.#token = waiting.token;
            waiting.resolve(result.exp);
        } else {
            waiting.reject(new RefreshError(result.code, result.message));
        }
    }

    /** Sends a `presence` request for that subscription; resolves with the gateway's snapshot. */
    #requestPresence(channel: Channel, handle: Subscription): Promise<Presence> {
        if (!channel.startsWith("channel:")) return Promise.reject(new TypeError(`requestPresence: presence is only for channel:{uuid} channels, not ${channel}`));
        if (handle.ended) return Promise.reject(new PresenceError("ended", `requestPresence: the subscription to ${channel} has ended`));
        const requestId = this.#core.requestPresence(channel);
        if (requestId === undefined) return Promise.reject(new PresenceError("offline", `requestPresence: not connected (${this.#core.state}); nothing was sent`));
        return new Promise((resolve, reject) => this.#presenceWaiting.set(requestId, { resolve, reject }));
    }

    #settlePresence(requestId: string, result: PresenceResult): void {
        const waiting = this.#presenceWaiting.get(requestId);
        if (!waiting) return; // the core's own request
        this.#presenceWaiting.delete(requestId);
        if ("presence" in result) waiting.resolve(result.presence);
        else waiting.reject(new PresenceError(result.code, result.message));
    }

    #onMessage(data: unknown): void {
        if (typeof data !== "string") return;
        this.#lastFrameAt = Date.now();
        this.#pinged = false;
        this.#core.receive(data);
    }

    /** Ends that subscription (its handle's `unsubscribe()`); resolves when the server answered, or at once when nothing was sent. */
    #unsubscribe(channel: Channel): Promise<void> {
        const requestId = this.#core.unsubscribe(channel);
        if (requestId === undefined) return Promise.resolve();
        return new Promise((resolve) => this.#unsubscribing.set(requestId, resolve));
    }

    #send(frame: Record<string, unknown>): boolean {
        const ws = this.#ws;
        if (!ws || ws.readyState !== OPEN) return false;
        try {
            ws.send(JSON.stringify(frame));
            return true;
        } catch {
            return false;
        }
    }

    #startTimers(heartbeatMs: number): void {
        this.#stopTimers();
        const heartbeat = Math.max(heartbeatMs, 100);
        // The server pings every heartbeat, which browsers answer without
        // telling us; so we ping after half a heartbeat of silence, and a
        // whole heartbeat without any frame means the connection is dead.
        this.#watchdog = setInterval(() => {
            const ws = this.#ws;
            if (!ws) return;
            const silent = Date.now() - this.#lastFrameAt;
            if (silent >= heartbeat) {
                this.#drop(ws, 1006, `no frame from the server for ${silent} ms (heartbeat ${heartbeatMs} ms)`);
            } else if (silent >= heartbeat / 2 && !this.#pinged) {
                this.#pinged = this.#send({ type: "ping" });
            }
        }, Math.max(25, Math.floor(heartbeat / 4)));
        this.#ackTimer = setInterval(() => this.#core.flush(), this.#options.ackIntervalMs ?? ACK_INTERVAL_MS);
    }

    #stopTimers(): void {
        clearInterval(this.#watchdog);
        clearInterval(this.#ackTimer);
        this.#watchdog = undefined;
        this.#ackTimer = undefined;
    }

    /** Gives up on a connection that cannot close properly (silent network): no handshake to wait for. */
    #drop(ws: WebSocketLike, code: number, reason: string): void {
        const terminate = (ws as { terminate?: () => void }).terminate;
        try {
            if (typeof terminate === "function") terminate.call(ws);
            else ws.close(4000, "heartbeat timeout");
        } catch {
            // Already closed.
        }
        this.#onClose(ws, code, reason, false);
    }

    #onClose(ws: WebSocketLike, code: number, reason: string, wasClean: boolean): void {
        if (this.#ws !== ws) return;
        this.#ws = null;
        ws.onmessage = null;
        ws.onclose = null;
        clearTimeout(this.#deadline);
        this.#stopTimers();
        this.#core.closed(code, reason, wasClean);
    }
}
