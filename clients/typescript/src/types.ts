import type { EventDataMap, EventType } from "./schema.generated.js";
import type { CursorStorage } from "./storage.js";

/** A subscription channel: `channel:{uuid}`, `user:{uuid}` or `global`. */
export type Channel = `channel:${string}` | `user:${string}` | "global";

/** The ephemeral event types: live only, never stored or replayed, no `seq`. */
type Ephemeral = "user_typing" | "user_presence";

/** An event as the gateway sends it: the envelope `{type, timestamp, data}` plus where it belongs. */
export type StoredEvent = {
    [K in Exclude<EventType, Ephemeral>]: {
        type: K;
        /** When the stream stored it (RFC 3339, UTC, milliseconds). */
        timestamp: string;
        data: EventDataMap[K];
        channel: Channel;
        /** Its position in the stream: strictly increasing within a subscription. */
        seq: number;
        /** The domain event's id, the same for every copy of it. */
        id: string;
    };
}[Exclude<EventType, Ephemeral>];

/** Typing is ephemeral: live only, never replayed, no `seq`. */
export interface TypingEvent {
    type: "user_typing";
    timestamp: string;
    data: EventDataMap["user_typing"];
    channel: Channel;
}

/** An event of a type this SDK was generated with (`EVENT_TYPES`): `data` typed by `type`. */
export type BuiltInEvent = StoredEvent | TypingEvent;

/**
 * An event of a type this SDK does not know: one the gateway's catalog
 * adds (`serve --catalog-dir`), or a built-in type newer than the SDK. Its
 * `data` is as published (the gateway checked it against the type's
 * schema; `GET /v1/catalog` lists them). A stored type has a `seq` and
 * comes exactly once, in order, like a built-in event; an ephemeral one
 * has none and comes live only, as it arrives.
 */
export interface AddedEvent {
    /** Not one of `EVENT_TYPES`: `isBuiltIn(event)` is false. */
    type: string;
    /** When the stream stored it, or (ephemeral) when the gateway received it (RFC 3339, UTC, milliseconds). */
    timestamp: string;
    data: Record<string, unknown>;
    channel: Channel;
    /** Its position in the stream, for a stored type; none for an ephemeral one. */
    seq?: number;
    /** The domain event's id, the same for every copy of it (one per route). */
    id: string;
}

/**
 * What a subscription's `event` handlers and `for await` get: built-in
 * events and added ones, in one stream. Narrow with `isBuiltIn(event)`
 * first, then on `event.type` (a comparison of `type` alone does not
 * narrow, since an added event's `type` is any string). Presence
 * (`user_presence`) is not among them: it updates `subscription.presence`
 * and comes as its `presence` event.
 */
export type ChatEvent = BuiltInEvent | AddedEvent;

/**
 * A handler the client sets on its socket. Written as a method's type, so
 * that its parameter is compared both ways: the browser's `WebSocket`
 * declares handlers of DOM events (`Event`, `MessageEvent`, `CloseEvent`),
 * the `ws` package its own event types, and each is accepted as it is.
 */
type SocketHandler<E> = { handle(event: E): void }["handle"];

/**
 * The WebSocket the client needs: the browser's, Node's global one (Node
 * 22 and later), or the `ws` package's default export. The client sets
 * `onmessage`, `onclose` and `onerror`, and reads from the events only
 * what is declared here.
 */
export interface WebSocketLike {
    readonly readyState: number;
    send(data: string): void;
    close(code?: number, reason?: string): void;
    onmessage: SocketHandler<{ data: unknown }> | null;
    onclose: SocketHandler<{ code: number; reason: string; wasClean: boolean }> | null;
    onerror: SocketHandler<unknown> | null;
}

/** A WebSocket class: `new WebSocket(url)` (the browser's `WebSocket`, or `ws`'s default export). */
export type WebSocketConstructor = new (url: string) => WebSocketLike;

/**
 * `disconnected`: waiting to reconnect; `stopped`: the operator disconnected
 * the user (close 4003), and the client waits for the application's
 * `reconnect()` or `close()`; `closed`: over for good.
 */
export type ConnectionState = "connecting" | "connected" | "disconnected" | "stopped" | "closed";

/**
 * The `connected` event's `hello`: the gateway's `hello` frame, in the
 * client's names (camelCase; the frame's are snake_case).
 */
export interface Hello {
    /** The server-side session; the client resumes it after a reconnect (`?session=`). */
    sessionId: string;
    /** The authenticated user (the token's `sub`). */
    userId: string;
    /** The server's ping interval in milliseconds; the client gives a connection up after this much silence. */
    heartbeatMs: number;
    /** The base of the reconnect back-off in milliseconds. */
    reconnectMs: number;
    /** Whether the gateway restored the session (its subscriptions replay from the server's cursors). */
    resumed: boolean;
    /** The restored session's subscriptions (empty for a fresh session). */
    channels: Channel[];
    /** The stream's epoch: the seqs of this connection belong to it. Opaque: compare it, never parse it. */
    epoch: string;
}

/** `connecting`: a connection attempt starts. */
export interface Connecting {
    /** Failed attempts since the last connection that reached `hello` (0 for the first attempt). */
    attempt: number;
}

/** `connected`: the gateway's `hello` arrived; subscriptions are being restored or sent again. */
export interface Connected {
    hello: Hello;
    /** `hello.resumed`: the server-side session was restored. */
    resumed: boolean;
}

/** `disconnected`: the connection ended. */
export interface Disconnected {
    /** The close code (1006 when the connection dropped or the client gave it up, as after a silent heartbeat). */
    code: number;
    /** The close reason, or why the client gave the connection up. */
    reason: string;
    /** When the client tries again, in milliseconds; `null` when it will not reconnect on its own (closed, stopped by a 4003, or an expired fixed token). */
    reconnectInMs: number | null;
}

/**
 * `stopped`: the operator disconnected the user (close 4003: a logout, a
 * password change, a deleted account; `reason` says which). The client does
 * not reconnect on its own: call `reconnect(token?)` to come back, or
 * `close()`. Its subscriptions and cursors are kept for a `reconnect()`.
 */
export interface Stopped {
    /** 4003. */
    code: number;
    /** The close reason the operator gave. */
    reason: string;
}

/** `refreshed`: the connection's token was replaced in band (automatically or by `refresh()`). */
export interface Refreshed {
    /** The new token's `exp`, in seconds since the epoch. */
    exp: number;
}

/** `resumed`: a session was restored; its subscriptions replay from the server's cursors. */
export interface Resumed {
    /** The restored subscriptions. */
    channels: Channel[];
}

/** `gap`: why a subscription may be missing events; the application must load them another way. */
export interface Gap {
    channel: Channel;
    /** The oldest `seq` the stream still holds, when the server said. */
    firstSeq: number | undefined;
    /**
     * `retention`: events the client asked for are gone from the stream, or
     * the `seq` asked for is beyond the stream's end; `epoch`: the stream was
     * recreated, so earlier seqs mean nothing.
     */
    reason: "retention" | "epoch";
}

/** A client's `error` event (a plain object, not an `Error`). */
export interface ClientError {
    /**
     * The gateway's error code (`forbidden`, `not_found`, `bad_request`,
     * `unavailable`, …), or the client's own: `token` (`getToken` failed
     * before a connection), `token_expired` (a fixed token expired: the
     * client ends), `refresh_failed` (an automatic refresh's attempt failed),
     * `connect` (the WebSocket could not be created), `storage` (the cursors
     * could not be read or saved).
     */
    code: string;
    message: string;
    /** The subscription it concerns, when it concerns one. */
    channel?: Channel;
}

/** The client's events: `client.on(name, (payload) => …)`. */
export interface ClientEvents {
    connecting: Connecting;
    connected: Connected;
    disconnected: Disconnected;
    stopped: Stopped;
    refreshed: Refreshed;
    resumed: Resumed;
    /** Every subscription's gaps (also on the subscription). */
    gap: Gap;
    error: ClientError;
}

export interface ConnectOptions {
    /** The gateway's WebSocket endpoint, for example `wss://chat.example.com/v1/ws`. */
    url: string;
    /** A JWT; or give `getToken`. */
    token?: string;
    /**
     * Called before every connection attempt, so an expired token (close
     * 4001) is replaced; and before the connection's token expires, to
     * refresh it in band (see `refreshMarginMs`).
     */
    getToken?: () => string | Promise<string>;
    /**
     * With `getToken`: the most time before the token's `exp` at which the
     * client refreshes it on the open connection, default 60,000 ms. It
     * refreshes a fifth of the token's lifetime before `exp`, at most this
     * and at least a second before.
     */
    refreshMarginMs?: number;
    /** A WebSocket constructor; default `globalThis.WebSocket`. */
    WebSocket?: WebSocketConstructor;
    /** Keeps the last delivered seqs across page reloads (see `webStorage`). */
    storage?: CursorStorage;
    /** The key under which `storage` keeps this client's cursors (default `switchboard`). */
    storageKey?: string;
    /** How often delivered seqs are acked (and saved): default 1000 ms. */
    ackIntervalMs?: number;
    /** The most a reconnect waits: default 30,000 ms. */
    maxReconnectMs?: number;
    /** How long the client waits after a close 4029 (too many bad frames): default 60,000 ms. */
    abusePauseMs?: number;
}
