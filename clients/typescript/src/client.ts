/**
 * The connection: one WebSocket at a time, reconnected with back-off, and
 * each subscription's resume point, so that the application gets every
 * stored event exactly once, in `seq` order, however often the network
 * drops.
 *
 * How a resume stays exact:
 * - each subscription remembers the last `seq` it delivered (and the stream
 *   `epoch` it belongs to); before it has seen one, it subscribes with a
 *   `since` time (the server's clock), and `replayed.last_seq` gives it the
 *   resume point even when nothing was replayed;
 * - a reconnect restores the server-side session (`?session=`); the
 *   subscriptions the server did not restore are subscribed again with
 *   `since_seq`;
 * - anything at or below the last delivered `seq` is dropped, so a replay
 *   from the server's (older) session cursor never shows an event twice;
 * - `subscribed.complete: false`, or another epoch, is told to the
 *   application as a `gap`.
 */

import { reconnectDelay } from "./backoff.js";
import { Emitter } from "./emitter.js";
import type { ErrorData, HelloData, ReplayedData, SubscribedData, UnsubscribedData } from "./schema.generated.js";
import { parseSaved, type SavedCursors } from "./storage.js";
import { Subscription } from "./subscription.js";
import type {
    Channel,
    ChatEvent,
    ClientEvents,
    ConnectionState,
    ConnectOptions,
    Gap,
    WebSocketConstructor,
    WebSocketLike,
} from "./types.js";

const OPEN = 1;
const TOKEN_EXPIRED = 4001;
const ABUSE = 4029;
/** A heartbeat's worth of silence before `hello` arrives, or this, whichever is longer. */
const CONNECT_TIMEOUT_MS = 15_000;
const CHANNEL = /^(channel:[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|user:[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|global)$/;

export interface SubscribeOptions {
    /** Replay every event stored at or after this time, then live. */
    since?: string | Date;
    /** Replay every event with a greater `seq`, then live. */
    sinceSeq?: number;
}

export interface CloseResult {
    code: number;
    reason: string;
    wasClean: boolean;
}

/** What a client did, for dashboards and tests. */
export interface ClientStats {
    /** Connections that reached `hello`. */
    connections: number;
    /** Events dropped because their `seq` had been delivered already. */
    duplicatesDropped: number;
}

/** One subscription's resume state. */
interface Resume {
    handle: Subscription;
    /** The last `seq` delivered to the application. */
    lastSeq: number | undefined;
    /** The stream epoch `lastSeq` belongs to. */
    epoch: string | undefined;
    /** Where to replay from while `lastSeq` is unknown. */
    since: string | undefined;
    /** The application chose the start (`since`/`sinceSeq`): saved cursors do not apply. */
    positioned: boolean;
    /** The last `seq` acked on this connection. */
    acked: number | undefined;
    phase: "pending" | "subscribing" | "replaying" | "live";
    /** The pending `subscribe`'s request id; none while a session restore brings it back. */
    requestId: string | undefined;
}

/** The page's `pagehide` events, in a browser; none in Node. */
function pageEvents(): { addEventListener(name: string, handler: () => void): void; removeEventListener(name: string, handler: () => void): void } | undefined {
    const target = globalThis as Partial<Pick<Window, "addEventListener" | "removeEventListener">>;
    return target.addEventListener && target.removeEventListener ? (target as Window) : undefined;
}

/** Opens a client; it connects at once and keeps reconnecting until `close()`. */
export function connect(options: ConnectOptions): Client {
    return new Client(options);
}

export class Client extends Emitter<ClientEvents> {
    readonly #options: ConnectOptions;
    readonly #WebSocket: WebSocketConstructor;
    #ws: WebSocketLike | null = null;
    #state: ConnectionState = "connecting";
    readonly #subs = new Map<Channel, Resume>();
    #hello: HelloData | undefined;
    /** The server's clock minus ours, from `hello`. */
    #clockOffsetMs = 0;
    #attempt = 0;
    #reconnectTimer: ReturnType<typeof setTimeout> | undefined;
    /** Gives up on a connection whose `hello` (or close handshake) never comes. */
    #deadline: ReturnType<typeof setTimeout> | undefined;
    #watchdog: ReturnType<typeof setInterval> | undefined;
    #ackTimer: ReturnType<typeof setInterval> | undefined;
    #lastFrameAt = 0;
    #pinged = false;
    #nextRequest = 0;
    readonly #unsubscribing = new Map<string, () => void>();
    #closing: Promise<CloseResult> | undefined;
    #resolveClosing: ((result: CloseResult) => void) | undefined;
    readonly #ready: Promise<void>;
    #saved: SavedCursors = { seqs: {} };
    #lastSaved = "";
    readonly #stats: ClientStats = { connections: 0, duplicatesDropped: 0 };
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
        this.#WebSocket = ctor;
        this.#ready = this.#load();
        pageEvents()?.addEventListener("pagehide", this.#saveOnPagehide);
        // After the caller has had the chance to add handlers.
        queueMicrotask(() => void this.#open());
    }

    get state(): ConnectionState {
        return this.#state;
    }

    /** The server-side session, once connected. */
    get sessionId(): string | undefined {
        return this.#hello?.session_id;
    }

    /** The stream epoch of the current connection. */
    get epoch(): string | undefined {
        return this.#hello?.epoch;
    }

    get stats(): Readonly<ClientStats> {
        return { ...this.#stats };
    }

    /** The subscriptions' last delivered seqs. */
    get cursors(): Record<string, number> {
        const cursors: Record<string, number> = {};
        for (const [channel, sub] of this.#subs) if (sub.lastSeq !== undefined) cursors[channel] = sub.lastSeq;
        return cursors;
    }

    /**
     * Subscribes to `channel` (`channel:{uuid}`, `user:{uuid}` or `global`).
     * Without `since`/`sinceSeq`, it starts now, or where a saved cursor
     * (see `storage`) says.
     */
    subscribe(channel: Channel, options: SubscribeOptions = {}): Subscription {
        if (!CHANNEL.test(channel)) throw new TypeError(`subscribe: \`${channel}\` is not a channel (channel:{uuid}, user:{uuid} or global)`);
        const normal = channel.toLowerCase() as Channel;
        if (this.#subs.has(normal)) throw new Error(`subscribe: already subscribed to ${normal}`);
        if (this.#state === "closed") throw new Error("subscribe: the client is closed");
        if (options.since !== undefined && options.sinceSeq !== undefined) throw new TypeError("subscribe: give `since` or `sinceSeq`, not both");
        if (options.sinceSeq !== undefined && !(Number.isSafeInteger(options.sinceSeq) && options.sinceSeq >= 0)) {
            throw new TypeError("subscribe: `sinceSeq` must be a whole number >= 0");
        }
        const since = options.since instanceof Date ? options.since.toISOString() : options.since;
        const sub: Resume = {
            handle: new Subscription(normal, () => this.#unsubscribe(normal)),
            lastSeq: options.sinceSeq,
            epoch: undefined,
            since,
            positioned: options.since !== undefined || options.sinceSeq !== undefined,
            acked: undefined,
            phase: "pending",
            requestId: undefined,
        };
        this.#subs.set(normal, sub);
        if (this.#state === "connected") this.#sendSubscribe(sub);
        return sub.handle;
    }

    /** Tells the channel's other members this user is (or stopped) typing; false when offline. */
    typing(channel: string, isTyping: boolean): boolean {
        const target = channel.startsWith("channel:") ? channel : `channel:${channel}`;
        if (this.#state !== "connected") return false;
        return this.#send({ type: "typing", channel: target, is_typing: isTyping });
    }

    /**
     * Acks what was delivered, closes with a clean close handshake (1000 by
     * default) and stops reconnecting. Resolves with the close.
     */
    close(code = 1000, reason = ""): Promise<CloseResult> {
        if (this.#closing) return this.#closing;
        this.#flushAcks();
        this.#save();
        this.#state = "closed";
        clearTimeout(this.#reconnectTimer);
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
            this.#deadline = setTimeout(() => this.#ws === ws && this.#drop(ws, 1006, "no close handshake"), 5_000);
        } else {
            this.#finishClose({ code, reason, wasClean: true });
        }
        return this.#closing;
    }

    async #load(): Promise<void> {
        const storage = this.#options.storage;
        if (!storage) return;
        try {
            this.#saved = parseSaved(await storage.get(this.#storageKey()));
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
        const text = JSON.stringify({ epoch: this.#hello?.epoch, seqs: this.cursors });
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
        if (this.#state === "closed") return;
        this.#state = "connecting";
        this.emit("connecting", { attempt: this.#attempt });
        let token: string;
        try {
            await this.#ready;
            token = this.#options.getToken ? await this.#options.getToken() : (this.#options.token ?? "");
        } catch (error) {
            this.emit("error", { code: "token", message: `getToken failed: ${String(error)}` });
            this.#retry(1006, "getToken failed");
            return;
        }
        if ((this.#state as ConnectionState) === "closed") return; // closed while we awaited the token
        const url = new URL(this.#options.url);
        url.searchParams.set("token", token);
        if (this.#hello) url.searchParams.set("session", this.#hello.session_id);
        let ws: WebSocketLike;
        try {
            ws = new this.#WebSocket(url.toString());
        } catch (error) {
            this.emit("error", { code: "connect", message: String(error) });
            this.#retry(1006, String(error));
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
        const helloTimeout = Math.max(CONNECT_TIMEOUT_MS, this.#hello?.heartbeat_ms ?? 0);
        clearTimeout(this.#deadline);
        this.#deadline = setTimeout(() => {
            if (this.#ws === ws && this.#state === "connecting") this.#drop(ws, 1006, `no hello within ${helloTimeout} ms`);
        }, helloTimeout);
    }

    #onMessage(data: unknown): void {
        if (typeof data !== "string") return;
        this.#lastFrameAt = Date.now();
        this.#pinged = false;
        let frame: { type?: unknown; timestamp?: unknown; data?: unknown; channel?: unknown; seq?: unknown };
        try {
            frame = JSON.parse(data) as typeof frame;
        } catch {
            return;
        }
        if (typeof frame !== "object" || frame === null) return;
        switch (frame.type) {
            case "hello":
                return this.#onHello(frame.data as HelloData, frame.timestamp);
            case "subscribed":
                return this.#onSubscribed(frame.data as SubscribedData, frame.timestamp);
            case "replayed":
                return this.#onReplayed(frame.data as ReplayedData);
            case "unsubscribed":
                return this.#onUnsubscribed(frame.data as UnsubscribedData);
            case "error":
                return this.#onError(frame.data as ErrorData);
            case "pong":
                return;
            default:
                if (typeof frame.type === "string" && typeof frame.channel === "string") this.#onEvent(frame as ChatEvent);
        }
    }

    #onHello(hello: HelloData, timestamp: unknown): void {
        const serverNow = typeof timestamp === "string" ? Date.parse(timestamp) : NaN;
        this.#clockOffsetMs = Number.isFinite(serverNow) ? serverNow - Date.now() : 0;
        clearTimeout(this.#deadline);
        this.#hello = hello;
        this.#attempt = 0;
        this.#state = "connected";
        this.#stats.connections += 1;
        const restored = new Set<string>(hello.resumed ? hello.channels : []);
        for (const channel of restored) {
            // Unsubscribed while we were away: the session still had it.
            if (!this.#subs.has(channel as Channel)) this.#send({ type: "unsubscribe", channel });
        }
        for (const sub of this.#subs.values()) {
            sub.acked = undefined;
            if (restored.has(sub.handle.channel)) {
                sub.phase = "subscribing";
                sub.requestId = undefined;
            } else {
                this.#sendSubscribe(sub);
            }
        }
        this.#startTimers(hello.heartbeat_ms);
        this.emit("connected", { hello, resumed: hello.resumed });
        if (hello.resumed) this.emit("resumed", { channels: [...restored] as Channel[] });
    }

    #sendSubscribe(sub: Resume): void {
        if (!sub.positioned) {
            // A saved cursor of this stream picks up where the last page (or process) was.
            sub.positioned = true;
            const saved = this.#saved.seqs[sub.handle.channel];
            if (saved !== undefined && this.#saved.epoch === this.#hello?.epoch) sub.lastSeq = saved;
        }
        const requestId = `s${++this.#nextRequest}`;
        sub.requestId = requestId;
        sub.phase = "subscribing";
        const frame: Record<string, unknown> = { type: "subscribe", channel: sub.handle.channel, request_id: requestId };
        if (sub.lastSeq !== undefined) {
            frame.since_seq = sub.lastSeq;
            if (sub.epoch) frame.epoch = sub.epoch;
        } else {
            // Even a subscription that starts now asks for a (short) replay:
            // `replayed.last_seq` is its resume point if the connection drops
            // before its first event.
            sub.since ??= new Date(Date.now() + this.#clockOffsetMs).toISOString();
            frame.since = sub.since;
        }
        this.#send(frame);
    }

    #onSubscribed(data: SubscribedData, timestamp: unknown): void {
        const sub = this.#subs.get(data.channel as Channel);
        if (!sub || sub.phase === "pending") return;
        if (data.request_id !== undefined) {
            // The answer to our subscribe (not to an earlier, abandoned one).
            if (sub.phase !== "subscribing" || data.request_id !== sub.requestId) return;
        }
        // Without a request id: a session restore, or the stream was
        // recreated under a live subscription (a new epoch, its replay follows).
        sub.phase = "replaying";
        const otherEpoch = data.epoch !== undefined && sub.epoch !== undefined && data.epoch !== sub.epoch;
        if (!data.complete || (otherEpoch && sub.lastSeq !== undefined)) {
            const gap: Gap = { channel: sub.handle.channel, firstSeq: data.first_seq, reason: otherEpoch ? "epoch" : "retention" };
            if (!otherEpoch && sub.lastSeq !== undefined && data.first_seq !== undefined && sub.lastSeq < data.first_seq) {
                // Retention dropped what we asked for: the replay starts at first_seq.
                sub.lastSeq = data.first_seq - 1;
            } else {
                // Seqs beyond the stream's end, or of another stream: live from now.
                sub.lastSeq = undefined;
                if (otherEpoch || sub.since === undefined) sub.since = typeof timestamp === "string" ? timestamp : undefined;
            }
            sub.handle.dispatch("gap", gap);
            this.emit("gap", gap);
        }
        if (data.epoch !== undefined) sub.epoch = data.epoch;
        sub.handle.dispatch("subscribed", { complete: data.complete, firstSeq: data.first_seq, epoch: data.epoch });
    }

    #onReplayed(data: ReplayedData): void {
        const sub = this.#subs.get(data.channel as Channel);
        if (!sub || sub.phase !== "replaying") return;
        sub.phase = "live";
        sub.lastSeq = Math.max(sub.lastSeq ?? 0, data.last_seq);
        sub.since = undefined;
        sub.handle.dispatch("replayed", { count: data.count, lastSeq: data.last_seq });
    }

    #onEvent(event: ChatEvent): void {
        const sub = this.#subs.get(event.channel);
        if (!sub || sub.phase === "subscribing" || sub.phase === "pending") return;
        if ("seq" in event && typeof event.seq === "number") {
            if (sub.lastSeq !== undefined && event.seq <= sub.lastSeq) {
                this.#stats.duplicatesDropped += 1;
                return;
            }
            sub.lastSeq = event.seq;
        }
        sub.handle.dispatch("event", event);
    }

    #onUnsubscribed(data: UnsubscribedData): void {
        if (this.#settleUnsubscribe(data.request_id)) return;
        const sub = this.#subs.get(data.channel as Channel);
        if (!sub) return;
        this.#subs.delete(sub.handle.channel);
        sub.handle.dispatch("unsubscribed", { reason: data.reason });
    }

    #onError(data: ErrorData): void {
        const requestId = data.request_id;
        const sub = requestId === undefined ? undefined : [...this.#subs.values()].find((s) => s.requestId === requestId);
        if (!sub) {
            this.#settleUnsubscribe(requestId);
            this.emit("error", { code: data.code, message: data.message });
            return;
        }
        const channel = sub.handle.channel;
        this.emit("error", { code: data.code, message: data.message, channel });
        sub.handle.dispatch("error", { code: data.code, message: data.message });
        if (data.code === "unavailable") {
            // The log is failing on the server: ask again later, from the same point.
            sub.phase = "pending";
            const delay = reconnectDelay(this.#hello?.reconnect_ms ?? 1_000, 0, this.#maxReconnectMs());
            setTimeout(() => {
                if (this.#state === "connected" && this.#subs.get(channel) === sub && sub.phase === "pending") this.#sendSubscribe(sub);
            }, delay);
            return;
        }
        this.#subs.delete(channel);
        sub.handle.dispatch("unsubscribed", { reason: "refused" });
    }

    /** Resolves the `unsubscribe()` waiting for this answer; false when none was. */
    #settleUnsubscribe(requestId: string | undefined): boolean {
        const waiting = requestId === undefined ? undefined : this.#unsubscribing.get(requestId);
        if (!waiting || requestId === undefined) return false;
        this.#unsubscribing.delete(requestId);
        waiting();
        return true;
    }

    #unsubscribe(channel: Channel): Promise<void> {
        const sub = this.#subs.get(channel);
        if (!sub) return Promise.resolve();
        this.#subs.delete(channel);
        sub.handle.dispatch("unsubscribed", { reason: "requested" });
        if (this.#state !== "connected") return Promise.resolve();
        const requestId = `u${++this.#nextRequest}`;
        if (!this.#send({ type: "unsubscribe", channel, request_id: requestId })) return Promise.resolve();
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
        this.#ackTimer = setInterval(() => {
            this.#flushAcks();
            this.#save();
        }, this.#options.ackIntervalMs ?? 1_000);
    }

    #stopTimers(): void {
        clearInterval(this.#watchdog);
        clearInterval(this.#ackTimer);
        this.#watchdog = undefined;
        this.#ackTimer = undefined;
    }

    /** One `ack` per subscription whose delivered `seq` moved since the last. */
    #flushAcks(): void {
        if (this.#state !== "connected") return;
        for (const sub of this.#subs.values()) {
            if (sub.phase !== "live" && sub.phase !== "replaying") continue;
            if (sub.lastSeq === undefined || (sub.acked !== undefined && sub.lastSeq <= sub.acked)) continue;
            if (this.#send({ type: "ack", channel: sub.handle.channel, seq: sub.lastSeq })) sub.acked = sub.lastSeq;
        }
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
        for (const sub of this.#subs.values()) sub.phase = "pending";
        for (const resolve of this.#unsubscribing.values()) resolve();
        this.#unsubscribing.clear();
        if (this.#state === "closed") {
            this.emit("disconnected", { code, reason, reconnectInMs: null });
            this.#finishClose({ code, reason, wasClean });
            return;
        }
        if (code === TOKEN_EXPIRED && !this.#options.getToken) {
            // The same token would be refused: only the application can give a new one.
            this.#state = "closed";
            this.emit("error", { code: "token_expired", message: "the token expired; give `getToken` to reconnect with a fresh one" });
            this.emit("disconnected", { code, reason, reconnectInMs: null });
            this.#finishClose({ code, reason, wasClean });
            return;
        }
        this.#retry(code, reason);
    }

    #retry(code: number, reason: string): void {
        const delay =
            code === ABUSE
                ? (this.#options.abusePauseMs ?? 60_000)
                : reconnectDelay(this.#hello?.reconnect_ms ?? 1_000, this.#attempt, this.#maxReconnectMs());
        this.#attempt += 1;
        this.#state = "disconnected";
        this.emit("disconnected", { code, reason, reconnectInMs: delay });
        clearTimeout(this.#reconnectTimer);
        this.#reconnectTimer = setTimeout(() => void this.#open(), delay);
    }

    #maxReconnectMs(): number {
        return this.#options.maxReconnectMs ?? 30_000;
    }

    #finishClose(result: CloseResult): void {
        this.#save();
        pageEvents()?.removeEventListener("pagehide", this.#saveOnPagehide);
        for (const sub of this.#subs.values()) sub.handle.dispatch("unsubscribed", { reason: "closed" });
        this.#resolveClosing?.(result);
        this.#resolveClosing = undefined;
        this.#closing ??= Promise.resolve(result);
    }
}
