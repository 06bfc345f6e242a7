/**
 * The resume core: each subscription's resume point and the rules that keep
 * the client's promise (every stored event exactly once, in `seq` order,
 * however often the network drops), with no I/O. In: the gateway's text
 * frames, the application's calls (subscribe, unsubscribe, close) and the
 * transport's news (an attempt starts or fails, the socket closed, a timer
 * fired). Out: actions (frames to send, events for the application and its
 * subscriptions, a reconnect after a delay, cursors to save). It never
 * touches a socket, a timer or storage, and never reads the clock or
 * `Math.random` except through what it was given; `client.ts` is the
 * transport that does those.
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
 *   application as a `gap`;
 * - these rules go by `seq` alone, never by `type`: an event of a type the
 *   SDK does not know (a catalog's) is kept exactly once like the others
 *   when it has a `seq`, and passes as it comes (like typing) when not.
 *
 * The connection's token is refreshed in band before it expires when the
 * application gives `getToken` (the timing rules are `refresh.ts`'s): the
 * core says when (a `refreshTimer`), asks for a token (`fetchToken`), sends
 * the `refresh` frame and reads its answer; a refresh that keeps failing is
 * left to the 4001 at `exp`, after which the reconnect asks for a fresh
 * token. A close 4003 (the operator disconnected the user) stops the client
 * until the application calls `reconnect()`.
 *
 * Presence (a subscription made with `presence: true`): the set is
 * `presence.ts`'s; the core routes the frames to it and makes sure each
 * connection ends up with a fresh snapshot. The gateway sends one after
 * `replayed` (to a subscription it restored as well as to one subscribed
 * again), queued with `replayed` itself; so after `replayed` the core sends
 * a `ping`, and if its `pong` comes back before any snapshot did, the
 * gateway sent none (a session record without the flag, a gateway that
 * predates presence) and the core asks with a `presence` frame.
 *
 * Actions go to `act` one at a time, in the order the rules make them, not
 * as a list returned at the end: the application's handlers run inside some
 * of them (`gap`, `error`, `unsubscribed`) and may call back into the
 * client, and they see the state as it is at that step (a subscription the
 * server refused is still there while its `error` handlers run).
 */

import { reconnectDelay } from "./backoff.js";
import { answerBy, REFRESH_ATTEMPTS, refreshAt, retryAt, tokenExpiry } from "./refresh.js";
import { applied, fromSnapshot, replaced, type Presence } from "./presence.js";
import type {
    ErrorData,
    HelloData,
    PongData,
    PresenceData,
    RefreshedData,
    ReplayedData,
    SubscribedData,
    UnsubscribedData,
    UserPresenceData,
} from "./schema.generated.js";
import type { SavedCursors } from "./storage.js";
import type { SubscriptionEvents } from "./subscription.js";
import type { Channel, ChatEvent, ClientEvents, ConnectionState, ConnectOptions, Gap } from "./types.js";

/**
 * Close code: the token expired. With `getToken` the client reconnects (the
 * transport asks for a fresh token before every attempt); without, the same
 * token would be refused, so the client ends and tells the application.
 */
export const TOKEN_EXPIRED = 4001;
/**
 * Close code: the operator disconnected the user (`POST
 * /v1/users/{id}/disconnect`: a logout, a password change, a deleted
 * account); the close reason says why. The client does not reconnect on its
 * own: it is `stopped` until the application calls `reconnect()` (with a
 * new token, say) or `close()`.
 */
export const OPERATOR_DISCONNECT = 4003;
/** Close code: too many bad frames. The next attempt waits `abusePauseMs` ({@link ABUSE_PAUSE_MS} by default), not the back-off. */
export const ABUSE = 4029;
/** The wait after a close {@link ABUSE} when `abusePauseMs` is not given. */
export const ABUSE_PAUSE_MS = 60_000;
/** The longest back-off when `maxReconnectMs` is not given: no attempt waits longer, however many failed. */
export const MAX_RECONNECT_MS = 30_000;
/** The back-off's base until a `hello` gave the server's (`hello.reconnect_ms`). */
export const RECONNECT_MS = 1_000;
/** The longest delay a timer takes (setTimeout's limit); a refresh due later is looked at again then. */
const MAX_TIMER_MS = 2 ** 31 - 1;
/** A refresh timer that fires at most this early is on time (timers round to whole milliseconds). */
const TIMER_SLACK_MS = 10;

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

/** A frame for the gateway; the transport sends it as JSON text. */
export type Frame = Record<string, unknown>;

/** Where a new subscription starts: at most one of the two; neither means now (or a saved cursor). */
export interface Start {
    /** Replay every event stored at or after this time (RFC 3339), then live. */
    since?: string | undefined;
    /** Replay every event with a greater `seq`, then live. */
    sinceSeq?: number | undefined;
    /** Ask for the channel's presence (`channel:` channels only). */
    presence?: boolean | undefined;
}

/** An event for one subscription's handlers (`H` is the transport's handle for it). */
export type Dispatch<H> = {
    [K in keyof SubscriptionEvents]: { kind: "dispatch"; handle: H; name: K; payload: SubscriptionEvents[K] };
}[keyof SubscriptionEvents];

/** An event for the client's handlers. */
export type Emit = {
    [K in keyof ClientEvents]: { kind: "emit"; name: K; payload: ClientEvents[K] };
}[keyof ClientEvents];

/** What the transport does for the core. */
export type Action<H> =
    /** Send this frame on the open connection. */
    | { kind: "send"; frame: Frame }
    | Dispatch<H>
    | Emit
    /** `hello` arrived: stop waiting for it, watch the connection at this heartbeat and start acking. */
    | { kind: "established"; heartbeatMs: number }
    /** Open a new connection after this delay (replacing any reconnect already scheduled). */
    | { kind: "reconnect"; delayMs: number }
    /** After this delay, call `resubscribe(channel, handle)`: the server's log was unavailable. */
    | { kind: "resubscribe"; channel: Channel; handle: H; delayMs: number }
    /** The `unsubscribe()` that sent request `requestId` is over: answered, or its connection is gone. */
    | { kind: "settle"; requestId: string }
    /** Save the cursors (`toSave()`) where the application keeps them, if it does. */
    | { kind: "save" }
    /** The client is closed for good: resolve `close()` with this. */
    | { kind: "finished"; result: CloseResult }
    /** Call `refreshTimer()` after this delay, replacing the one set; `undefined`: no refresh timer. */
    | { kind: "refreshTimer"; delayMs: number | undefined }
    /** Ask `getToken` for a token and hand it to `tokenReady(token)`, or say `tokenFailed(message)`. */
    | { kind: "fetchToken" }
    /** The `refresh` of request `requestId` is over: the gateway took the token (its `exp`, in seconds) or refused it. */
    | { kind: "refreshAnswered"; requestId: string; result: RefreshResult }
    /** The `presence` request `requestId` is over: the gateway's snapshot, or its (or the connection's) refusal. */
    | { kind: "presenceAnswered"; requestId: string; result: PresenceResult };

/** How a `refresh` ended: the new token's `exp` (seconds since the epoch), or the gateway's (or the connection's) refusal. */
export type RefreshResult = { exp: number } | { code: string; message: string };

/** How a `presence` request ended: the channel's snapshot, or the gateway's (or the connection's) refusal. */
export type PresenceResult = { presence: Presence } | { code: string; message: string };

/**
 * Carries out one action. For `send`: whether the frame went out (false when
 * no socket is open, or it refused the frame); the answer to other actions
 * is not used.
 */
export type Act<H> = (action: Action<H>) => boolean;

/** The client's options the core reads, each time it needs them. */
export type ResumeOptions = Pick<ConnectOptions, "getToken" | "maxReconnectMs" | "abusePauseMs" | "refreshMarginMs">;

/** The core's clock and dice, replaced in tests. */
export interface Environment {
    /** Milliseconds since the epoch; default `Date.now`. */
    now?: () => number;
    /** A number in [0, 1) for the back-off's jitter; default `Math.random`. */
    random?: () => number;
}

/** One subscription's resume point, and where its subscribe stands on this connection. */
interface ResumePoint<H> {
    channel: Channel;
    handle: H;
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
    /**
     * `pending`: nothing asked on this connection (offline, or waiting to ask
     * again); `subscribing`: waiting for `subscribed`, events are not yet
     * its own; `replaying`, `live`: events are delivered and acked.
     */
    phase: "pending" | "subscribing" | "replaying" | "live";
    /** The pending `subscribe`'s request id; none while a session restore brings it back. */
    requestId: string | undefined;
    /** It asked for presence (`presence: true`). */
    presence: boolean;
    /** Who is online, as last known: kept across a reconnect until the new connection's snapshot replaces it. */
    online: Presence | undefined;
    /** A snapshot arrived since this connection's subscribe (or restore) of it. */
    snapshotSeen: boolean;
    /** The request id of the `ping` sent after `replayed`: its `pong` before a snapshot means none is coming. */
    presenceCheck: string | undefined;
}

/**
 * The client's state across connections. `H` is whatever the transport
 * hands its subscription's events to (the `Subscription`); the core only
 * passes it back in actions, and tells two subscriptions of one channel
 * apart by it, so each `subscribe` gets a handle of its own.
 */
export class ResumeCore<H> {
    readonly #options: ResumeOptions;
    readonly #act: Act<H>;
    readonly #now: () => number;
    readonly #random: () => number;
    #state: ConnectionState = "connecting";
    readonly #subs = new Map<Channel, ResumePoint<H>>();
    #hello: HelloData | undefined;
    /** The server's clock minus ours, from `hello`. */
    #clockOffsetMs = 0;
    /** Failed attempts since the last `hello`: the back-off's exponent. */
    #attempt = 0;
    #nextRequest = 0;
    /** The request ids of the `unsubscribe`s sent on this connection and not yet answered. */
    readonly #unsubscribing = new Set<string>();
    #saved: SavedCursors = { seqs: {} };
    /** The `exp` (ms) of the token the next connection is opened with. */
    #openingExpMs: number | undefined;
    /** The `exp` (ms) of the connection's token: the one it opened with, or the last refreshed. */
    #tokenExpMs: number | undefined;
    /** When (server time) the refresh timer is due: the next attempt, or the deadline of the one in flight. */
    #refreshDueAt: number | undefined;
    /** Failed attempts to refresh the connection's token. */
    #refreshFailures = 0;
    /** The request id of the automatic refresh waiting for its answer. */
    #autoRefresh: string | undefined;
    /** The connection's token's `exp` (ms) when that refresh was sent: its token must expire later. */
    #autoRefreshReplaces: number | undefined;
    /** Waiting for `getToken` for an automatic refresh. */
    #fetching = false;
    /** The `refresh` request ids sent on this connection and not yet answered. */
    readonly #refreshes = new Set<string>();
    /** The `presence` requests sent on this connection and not yet answered: their channel, and whether the core asked (not the application). */
    readonly #presenceRequests = new Map<string, { channel: Channel; auto: boolean }>();
    readonly #stats: ClientStats = { connections: 0, duplicatesDropped: 0 };

    constructor(options: ResumeOptions, act: Act<H>, environment: Environment = {}) {
        this.#options = options;
        this.#act = act;
        this.#now = environment.now ?? Date.now;
        this.#random = environment.random ?? Math.random;
    }

    get state(): ConnectionState {
        return this.#state;
    }

    /** The last `hello`: its `session_id` is the session to restore on the next connection. */
    get hello(): Readonly<HelloData> | undefined {
        return this.#hello;
    }

    get stats(): Readonly<ClientStats> {
        return { ...this.#stats };
    }

    /** The `exp` (seconds since the epoch) of the token of the connection (or of the last one). */
    get tokenExp(): number | undefined {
        return this.#tokenExpMs === undefined ? undefined : this.#tokenExpMs / 1000;
    }

    /** The subscriptions' last delivered seqs. */
    get cursors(): Record<string, number> {
        const cursors: Record<string, number> = {};
        for (const [channel, sub] of this.#subs) if (sub.lastSeq !== undefined) cursors[channel] = sub.lastSeq;
        return cursors;
    }

    /** Whether `channel` (lower case) has a subscription. */
    has(channel: Channel): boolean {
        return this.#subs.has(channel);
    }

    /** What to save for a later client (a reloaded page): the cursors and the epoch they belong to. */
    toSave(): { epoch: string | undefined; seqs: Record<string, number> } {
        return { epoch: this.#hello?.epoch, seqs: this.cursors };
    }

    /** The cursors a former client saved; a subscription with no start of its own picks up from them. */
    restore(saved: SavedCursors): void {
        this.#saved = saved;
    }

    /**
     * Adds a subscription to `channel` (lower case, not yet subscribed: the
     * caller checked); it is asked for at once when connected, else after
     * the next `hello`.
     */
    subscribe(channel: Channel, handle: H, start: Start = {}): void {
        const sub: ResumePoint<H> = {
            channel,
            handle,
            lastSeq: start.sinceSeq,
            epoch: undefined,
            since: start.since,
            positioned: start.since !== undefined || start.sinceSeq !== undefined,
            acked: undefined,
            phase: "pending",
            requestId: undefined,
            presence: start.presence === true,
            online: undefined,
            snapshotSeen: false,
            presenceCheck: undefined,
        };
        this.#subs.set(channel, sub);
        if (this.#state === "connected") this.#sendSubscribe(sub);
    }

    /**
     * Ends the subscription to `channel`. Returns the request id of the
     * `unsubscribe` sent, whose answer (or the connection's end) a `settle`
     * reports; none when nothing was sent (offline, or not subscribed).
     */
    unsubscribe(channel: Channel): string | undefined {
        const sub = this.#subs.get(channel);
        if (!sub) return undefined;
        this.#subs.delete(channel);
        this.#dispatch(sub.handle, "unsubscribed", { reason: "requested" });
        if (this.#state !== "connected") return undefined;
        const requestId = `u${++this.#nextRequest}`;
        if (!this.#send({ type: "unsubscribe", channel, request_id: requestId })) return undefined;
        this.#unsubscribing.add(requestId);
        return requestId;
    }

    /**
     * Asks the gateway for `channel`'s presence snapshot (a `presence`
     * frame). Returns its request id, whose answer (or the connection's end)
     * a `presenceAnswered` reports; none when nothing was sent (offline, or
     * no subscription to that chat channel).
     */
    requestPresence(channel: Channel): string | undefined {
        const sub = this.#subs.get(channel);
        if (this.#state !== "connected" || !sub || !channel.startsWith("channel:")) return undefined;
        return this.#askPresence(sub, false);
    }

    /** A connection attempt starts; false when the client is closed and must not. */
    opening(): boolean {
        if (this.#state === "closed") return false;
        this.#state = "connecting";
        this.#emit("connecting", { attempt: this.#attempt });
        return true;
    }

    /** The connection being opened carries this token: its `exp` is the first refresh's reference. */
    usingToken(token: string): void {
        this.#openingExpMs = tokenExpiry(token);
    }

    /**
     * The application asks to connect now: from `stopped` (after a 4003) or
     * while waiting to reconnect. False when the client is closed, or is
     * connecting or connected already.
     */
    reconnect(): boolean {
        if (this.#state !== "stopped" && this.#state !== "disconnected") return false;
        this.#attempt = 0;
        return true;
    }

    /**
     * Sends `refresh` with `token` on the open connection; returns its
     * request id, whose answer a `refreshAnswered` reports (also when the
     * connection ends first); none when there is no open connection.
     */
    refresh(token: string): string | undefined {
        if (this.#state !== "connected") return undefined;
        const requestId = `r${++this.#nextRequest}`;
        if (!this.#send({ type: "refresh", token, request_id: requestId })) return undefined;
        this.#refreshes.add(requestId);
        return requestId;
    }

    /** The refresh timer fired: start an automatic refresh, or count the one in flight as failed (no answer in time). */
    refreshTimer(): void {
        const dueAt = this.#refreshDueAt;
        if (this.#state !== "connected" || dueAt === undefined || this.#fetching) return;
        if (dueAt - this.#serverNow() > TIMER_SLACK_MS) {
            // Early (a delay beyond setTimeout's limit was cut): wait the rest.
            this.#setRefreshTimer(dueAt);
            return;
        }
        this.#refreshDueAt = undefined;
        const late = this.#autoRefresh;
        if (late !== undefined) {
            // Its answer, if it still comes, is taken all the same (`#onRefreshed`).
            this.#autoRefresh = undefined;
            this.#refreshFailed("timeout", `no answer to refresh ${late} in time`);
            return;
        }
        this.#fetching = true;
        this.#act({ kind: "fetchToken" });
    }

    /** `getToken` gave the token a `fetchToken` asked for: send it. */
    tokenReady(token: string): void {
        if (!this.#fetching) return;
        this.#fetching = false;
        const requestId = this.refresh(token);
        if (requestId === undefined || this.#tokenExpMs === undefined) return;
        this.#autoRefresh = requestId;
        this.#autoRefreshReplaces = this.#tokenExpMs;
        this.#setRefreshTimer(answerBy(this.#tokenExpMs, this.#serverNow()));
    }

    /** `getToken` failed for a `fetchToken`: a failed attempt. */
    tokenFailed(message: string): void {
        if (!this.#fetching) return;
        this.#fetching = false;
        this.#refreshFailed("token", message);
    }

    /** The attempt failed before there was a socket (no token, a bad URL): back off and try again. */
    failed(code: number, reason: string): void {
        this.#retry(code, reason);
    }

    /** One text frame from the gateway. */
    receive(text: string): void {
        let frame: { type?: unknown; timestamp?: unknown; data?: unknown; channel?: unknown; seq?: unknown };
        try {
            frame = JSON.parse(text) as typeof frame;
        } catch {
            return;
        }
        if (typeof frame !== "object" || frame === null || typeof frame.type !== "string") return;
        if (typeof frame.channel === "string") {
            // An event: control frames never have a top-level `channel`
            // (docs/protocol.md), so a type the SDK does not know (a
            // catalog's) is an event too, whatever its name.
            if (frame.type === "user_presence") return this.#onUserPresence(frame.channel as Channel, frame.data as UserPresenceData);
            return this.#onEvent(frame as ChatEvent);
        }
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
            case "refreshed":
                return this.#onRefreshed(frame.data as RefreshedData);
            case "pong":
                return this.#onPong(frame.data as PongData | undefined);
            case "presence":
                return this.#onPresence(frame.data as PresenceData);
        }
    }

    /** The ack interval: one `ack` per subscription whose delivered `seq` moved since its last, then a save. */
    flush(): void {
        this.#flushAcks();
        this.#act({ kind: "save" });
    }

    /** The delay of a `resubscribe` action is over: ask again, if that subscription still waits. */
    resubscribe(channel: Channel, handle: H): void {
        const sub = this.#subs.get(channel);
        if (this.#state === "connected" && sub !== undefined && sub.handle === handle && sub.phase === "pending") this.#sendSubscribe(sub);
    }

    /**
     * The application closes the client: what was delivered is acked and
     * saved, and no connection follows. The transport then closes its
     * socket (`closed` follows), or calls `finish` when it has none.
     */
    close(): void {
        this.flush();
        this.#state = "closed";
    }

    /** The socket closed (or was given up): reconnect after a back-off, or end and say why. */
    closed(code: number, reason: string, wasClean: boolean): void {
        for (const sub of this.#subs.values()) {
            sub.phase = "pending";
            sub.presenceCheck = undefined;
        }
        for (const requestId of this.#unsubscribing) this.#act({ kind: "settle", requestId });
        this.#unsubscribing.clear();
        this.#endRefreshes();
        this.#endPresenceRequests();
        if (this.#state === "closed") {
            this.#emit("disconnected", { code, reason, reconnectInMs: null });
            this.finish({ code, reason, wasClean });
            return;
        }
        if (code === TOKEN_EXPIRED && !this.#options.getToken) {
            // The same token would be refused: only the application can give a new one.
            this.#state = "closed";
            this.#emit("error", { code: "token_expired", message: "the token expired; give `getToken` to reconnect with a fresh one" });
            this.#emit("disconnected", { code, reason, reconnectInMs: null });
            this.finish({ code, reason, wasClean });
            return;
        }
        if (code === OPERATOR_DISCONNECT) {
            // The operator ended the user's connections (and sessions): only
            // the application knows whether to come back, and with what token.
            this.#state = "stopped";
            this.#emit("disconnected", { code, reason, reconnectInMs: null });
            this.#emit("stopped", { code, reason });
            return;
        }
        this.#retry(code, reason);
    }

    /** The client is over (closed with no socket open, or after `closed`): save, end every subscription, resolve `close()`. */
    finish(result: CloseResult): void {
        this.#act({ kind: "save" });
        for (const sub of this.#subs.values()) this.#dispatch(sub.handle, "unsubscribed", { reason: "closed" });
        this.#act({ kind: "finished", result });
    }

    #onHello(hello: HelloData, timestamp: unknown): void {
        const serverNow = typeof timestamp === "string" ? Date.parse(timestamp) : NaN;
        this.#clockOffsetMs = Number.isFinite(serverNow) ? serverNow - this.#now() : 0;
        this.#hello = hello;
        this.#attempt = 0;
        this.#state = "connected";
        this.#tokenExpMs = this.#openingExpMs;
        this.#refreshFailures = 0;
        this.#stats.connections += 1;
        const restored = new Set<string>(hello.resumed ? hello.channels : []);
        for (const channel of restored) {
            // Unsubscribed while we were away: the session still had it.
            if (!this.#subs.has(channel as Channel)) this.#send({ type: "unsubscribe", channel });
        }
        for (const sub of this.#subs.values()) {
            sub.acked = undefined;
            if (restored.has(sub.channel)) {
                sub.phase = "subscribing";
                sub.requestId = undefined;
                sub.snapshotSeen = false;
            } else {
                this.#sendSubscribe(sub);
            }
        }
        this.#act({ kind: "established", heartbeatMs: hello.heartbeat_ms });
        this.#scheduleRefresh();
        this.#emit("connected", {
            hello: {
                sessionId: hello.session_id,
                userId: hello.user_id,
                heartbeatMs: hello.heartbeat_ms,
                reconnectMs: hello.reconnect_ms,
                resumed: hello.resumed,
                channels: [...hello.channels] as Channel[],
                epoch: hello.epoch,
            },
            resumed: hello.resumed,
        });
        if (hello.resumed) this.#emit("resumed", { channels: [...restored] as Channel[] });
    }

    #sendSubscribe(sub: ResumePoint<H>): void {
        if (!sub.positioned) {
            // A saved cursor of this stream picks up where the last page (or process) was.
            sub.positioned = true;
            const saved = this.#saved.seqs[sub.channel];
            if (saved !== undefined && this.#saved.epoch === this.#hello?.epoch) sub.lastSeq = saved;
        }
        const requestId = `s${++this.#nextRequest}`;
        sub.requestId = requestId;
        sub.phase = "subscribing";
        sub.snapshotSeen = false;
        sub.presenceCheck = undefined;
        const frame: Frame = { type: "subscribe", channel: sub.channel, request_id: requestId };
        if (sub.presence) frame.presence = true;
        if (sub.lastSeq !== undefined) {
            frame.since_seq = sub.lastSeq;
            if (sub.epoch) frame.epoch = sub.epoch;
        } else {
            // Even a subscription that starts now asks for a (short) replay:
            // `replayed.last_seq` is its resume point if the connection drops
            // before its first event.
            sub.since ??= new Date(this.#now() + this.#clockOffsetMs).toISOString();
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
        // The gateway's snapshot follows the replay.
        sub.snapshotSeen = false;
        sub.presenceCheck = undefined;
        const otherEpoch = data.epoch !== undefined && sub.epoch !== undefined && data.epoch !== sub.epoch;
        if (!data.complete || (otherEpoch && sub.lastSeq !== undefined)) {
            const gap: Gap = { channel: sub.channel, firstSeq: data.first_seq, reason: otherEpoch ? "epoch" : "retention" };
            if (!otherEpoch && sub.lastSeq !== undefined && data.first_seq !== undefined && sub.lastSeq < data.first_seq) {
                // Retention dropped what we asked for: the replay starts at first_seq.
                sub.lastSeq = data.first_seq - 1;
            } else {
                // Seqs beyond the stream's end, or of another stream: live from now.
                sub.lastSeq = undefined;
                if (otherEpoch || sub.since === undefined) sub.since = typeof timestamp === "string" ? timestamp : undefined;
            }
            this.#dispatch(sub.handle, "gap", gap);
            this.#emit("gap", gap);
        }
        if (data.epoch !== undefined) sub.epoch = data.epoch;
        this.#dispatch(sub.handle, "subscribed", { complete: data.complete, firstSeq: data.first_seq, epoch: data.epoch });
    }

    #onReplayed(data: ReplayedData): void {
        const sub = this.#subs.get(data.channel as Channel);
        if (!sub || sub.phase !== "replaying") return;
        sub.phase = "live";
        sub.lastSeq = Math.max(sub.lastSeq ?? 0, data.last_seq);
        sub.since = undefined;
        if (sub.presence && !sub.snapshotSeen) {
            // The gateway queued its snapshot with `replayed`: a pong that
            // comes back before it means it sent none (`#onPong`).
            const check = `c${++this.#nextRequest}`;
            if (this.#send({ type: "ping", request_id: check })) sub.presenceCheck = check;
        }
        this.#dispatch(sub.handle, "replayed", { count: data.count, lastSeq: data.last_seq });
    }

    #onPong(data: PongData | undefined): void {
        const check = data?.request_id;
        if (check === undefined) return;
        const sub = [...this.#subs.values()].find((s) => s.presenceCheck === check);
        if (!sub) return;
        sub.presenceCheck = undefined;
        if (!sub.snapshotSeen) this.#askPresence(sub, true);
    }

    /** A snapshot: the answer to a request, or the gateway's own (after `replayed`, or for many changes at once); either replaces the set. */
    #onPresence(data: PresenceData): void {
        if (typeof data?.channel !== "string" || !Array.isArray(data.members)) return;
        const requestId = data.request_id;
        const request = requestId === undefined ? undefined : this.#presenceRequests.get(requestId);
        if (requestId !== undefined && !request) return; // not ours, or of a connection gone
        if (requestId !== undefined) this.#presenceRequests.delete(requestId);
        const set = fromSnapshot(data);
        const sub = this.#subs.get(set.channel);
        if (sub?.presence && (sub.phase === "replaying" || sub.phase === "live")) {
            sub.snapshotSeen = true;
            const change = replaced(sub.online, set);
            sub.online = set;
            this.#dispatch(sub.handle, "presence", change);
        }
        if (requestId !== undefined) this.#act({ kind: "presenceAnswered", requestId, result: { presence: set } });
    }

    /** One user came online or went offline. */
    #onUserPresence(channel: Channel, data: UserPresenceData): void {
        const sub = this.#subs.get(channel);
        if (!sub?.presence || !sub.online || (sub.phase !== "replaying" && sub.phase !== "live")) return;
        if (typeof data?.user_id !== "string" || typeof data.online !== "boolean") return;
        const change = applied(sub.online, data);
        if (!change) return; // a repeat of what the last snapshot said
        sub.online = change.presence;
        this.#dispatch(sub.handle, "presence", change);
    }

    /** Sends a `presence` request for `sub`'s channel; its request id, or none when it did not go out. */
    #askPresence(sub: ResumePoint<H>, auto: boolean): string | undefined {
        const requestId = `p${++this.#nextRequest}`;
        if (!this.#send({ type: "presence", channel: sub.channel, request_id: requestId })) return undefined;
        this.#presenceRequests.set(requestId, { channel: sub.channel, auto });
        return requestId;
    }

    /** The connection is gone: every presence request in flight ends unanswered. */
    #endPresenceRequests(): void {
        for (const requestId of this.#presenceRequests.keys()) {
            const result = { code: "disconnected", message: "the connection closed before the gateway answered the presence request" };
            this.#act({ kind: "presenceAnswered", requestId, result });
        }
        this.#presenceRequests.clear();
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
        this.#dispatch(sub.handle, "event", event);
    }

    #onUnsubscribed(data: UnsubscribedData): void {
        if (this.#settleUnsubscribe(data.request_id)) return;
        const sub = this.#subs.get(data.channel as Channel);
        if (!sub) return;
        this.#subs.delete(sub.channel);
        this.#dispatch(sub.handle, "unsubscribed", { reason: data.reason });
    }

    #onRefreshed(data: RefreshedData): void {
        const requestId = data.request_id;
        if (requestId === undefined || !this.#refreshes.delete(requestId) || typeof data.exp !== "number") return;
        const expMs = data.exp * 1000;
        const previous = this.#tokenExpMs;
        this.#tokenExpMs = expMs;
        this.#act({ kind: "refreshAnswered", requestId, result: { exp: data.exp } });
        this.#emit("refreshed", { exp: data.exp });
        const auto = requestId === this.#autoRefresh;
        if (auto) this.#autoRefresh = undefined;
        const replaced = auto ? this.#autoRefreshReplaces : undefined;
        if (replaced !== undefined && expMs <= replaced) {
            // getToken handed back a token no younger than the last: refreshing
            // with it again and again would only come closer to its exp.
            this.#refreshFailed("token", `getToken gave a token that expires no later than the connection's (exp ${data.exp})`);
            return;
        }
        if (auto || previous === undefined || expMs > previous) this.#refreshFailures = 0;
        if (this.#autoRefresh === undefined && !this.#fetching) this.#scheduleRefresh();
    }

    #onError(data: ErrorData): void {
        const requestId = data.request_id;
        const asked = requestId === undefined ? undefined : this.#presenceRequests.get(requestId);
        if (requestId !== undefined && asked) {
            this.#presenceRequests.delete(requestId);
            this.#act({ kind: "presenceAnswered", requestId, result: { code: data.code, message: data.message } });
            // The core's own request: the application hears of it, unless
            // the subscription ended meanwhile (then `not_found` is expected).
            if (asked.auto && this.#subs.has(asked.channel)) {
                this.#emit("error", { code: data.code, message: `presence of ${asked.channel}: ${data.message}`, channel: asked.channel });
            }
            return;
        }
        if (requestId !== undefined && this.#refreshes.delete(requestId)) {
            this.#act({ kind: "refreshAnswered", requestId, result: { code: data.code, message: data.message } });
            if (requestId === this.#autoRefresh) {
                this.#autoRefresh = undefined;
                this.#refreshFailed(data.code, `the gateway refused the refreshed token: ${data.message}`);
            }
            return;
        }
        const sub = requestId === undefined ? undefined : [...this.#subs.values()].find((s) => s.requestId === requestId);
        if (!sub) {
            this.#settleUnsubscribe(requestId);
            this.#emit("error", { code: data.code, message: data.message });
            return;
        }
        const channel = sub.channel;
        this.#emit("error", { code: data.code, message: data.message, channel });
        this.#dispatch(sub.handle, "error", { code: data.code, message: data.message });
        if (data.code === "unavailable") {
            // The log is failing on the server: ask again later, from the same point.
            sub.phase = "pending";
            const delayMs = reconnectDelay(this.#hello?.reconnect_ms ?? RECONNECT_MS, 0, this.#maxReconnectMs(), this.#random);
            this.#act({ kind: "resubscribe", channel, handle: sub.handle, delayMs });
            return;
        }
        this.#subs.delete(channel);
        this.#dispatch(sub.handle, "unsubscribed", { reason: "refused" });
    }

    /** Settles the `unsubscribe()` waiting for this answer; false when none was. */
    #settleUnsubscribe(requestId: string | undefined): boolean {
        if (requestId === undefined || !this.#unsubscribing.delete(requestId)) return false;
        this.#act({ kind: "settle", requestId });
        return true;
    }

    /** One `ack` per subscription whose delivered `seq` moved since the last. */
    #flushAcks(): void {
        if (this.#state !== "connected") return;
        for (const sub of this.#subs.values()) {
            if (sub.phase !== "live" && sub.phase !== "replaying") continue;
            if (sub.lastSeq === undefined || (sub.acked !== undefined && sub.lastSeq <= sub.acked)) continue;
            if (this.#send({ type: "ack", channel: sub.channel, seq: sub.lastSeq })) sub.acked = sub.lastSeq;
        }
    }

    #retry(code: number, reason: string): void {
        const delayMs =
            code === ABUSE
                ? (this.#options.abusePauseMs ?? ABUSE_PAUSE_MS)
                : reconnectDelay(this.#hello?.reconnect_ms ?? RECONNECT_MS, this.#attempt, this.#maxReconnectMs(), this.#random);
        this.#attempt += 1;
        this.#state = "disconnected";
        this.#emit("disconnected", { code, reason, reconnectInMs: delayMs });
        this.#act({ kind: "reconnect", delayMs });
    }

    /** The next automatic refresh of the connection's token, when the application gave `getToken`. */
    #scheduleRefresh(): void {
        const expMs = this.#tokenExpMs;
        if (!this.#options.getToken || expMs === undefined || this.#state !== "connected") {
            if (this.#refreshDueAt !== undefined) this.#setRefreshTimer(undefined);
            return;
        }
        this.#setRefreshTimer(refreshAt(expMs, this.#serverNow(), this.#options.refreshMarginMs));
    }

    /** An automatic refresh failed: try again while there is time, else leave it to the 4001 and the reconnect. */
    #refreshFailed(code: string, message: string): void {
        this.#refreshFailures += 1;
        const expMs = this.#tokenExpMs;
        const next = expMs === undefined ? undefined : retryAt(expMs, this.#serverNow(), this.#refreshFailures);
        const then =
            next === undefined
                ? `gave up after ${this.#refreshFailures} of ${REFRESH_ATTEMPTS} attempts: the gateway closes with 4001 when the token expires, and the client reconnects with a token from getToken`
                : `trying again in ${Math.round(next - this.#serverNow())} ms`;
        this.#emit("error", { code: "refresh_failed", message: `token refresh failed (${code}: ${message}); ${then}` });
        this.#setRefreshTimer(next);
    }

    /** The connection is gone: every refresh in flight ends unanswered, and no timer is left. */
    #endRefreshes(): void {
        for (const requestId of this.#refreshes) {
            this.#act({ kind: "refreshAnswered", requestId, result: { code: "disconnected", message: "the connection closed before the gateway answered the refresh" } });
        }
        this.#refreshes.clear();
        this.#autoRefresh = undefined;
        this.#fetching = false;
        if (this.#refreshDueAt !== undefined) this.#setRefreshTimer(undefined);
    }

    #setRefreshTimer(atMs: number | undefined): void {
        if (atMs === undefined) {
            this.#refreshDueAt = undefined;
            this.#act({ kind: "refreshTimer", delayMs: undefined });
            return;
        }
        const now = this.#serverNow();
        const delayMs = Math.max(0, Math.round(atMs - now));
        this.#refreshDueAt = now + delayMs;
        this.#act({ kind: "refreshTimer", delayMs: Math.min(MAX_TIMER_MS, delayMs) });
    }

    /** The server's clock, as `hello` set it against ours (tokens expire by the server's). */
    #serverNow(): number {
        return this.#now() + this.#clockOffsetMs;
    }

    #maxReconnectMs(): number {
        return this.#options.maxReconnectMs ?? MAX_RECONNECT_MS;
    }

    #send(frame: Frame): boolean {
        return this.#act({ kind: "send", frame });
    }

    #dispatch<K extends keyof SubscriptionEvents>(handle: H, name: K, payload: SubscriptionEvents[K]): void {
        this.#act({ kind: "dispatch", handle, name, payload } as Dispatch<H>);
    }

    #emit<K extends keyof ClientEvents>(name: K, payload: ClientEvents[K]): void {
        this.#act({ kind: "emit", name, payload } as Emit);
    }
}
