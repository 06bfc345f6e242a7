import type { EventDataMap, EventType, HelloData } from "./schema.generated.js";
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

/** The WebSocket the client needs: the browser's, Node's global one, or the `ws` package's. */
export interface WebSocketLike {
    readonly readyState: number;
    send(data: string): void;
    close(code?: number, reason?: string): void;
    onopen: ((event: unknown) => void) | null;
    onmessage: ((event: { data: unknown }) => void) | null;
    onclose: ((event: { code: number; reason: string; wasClean: boolean }) => void) | null;
    onerror: ((event: unknown) => void) | null;
}

export type WebSocketConstructor = new (url: string) => WebSocketLike;

/**
 * `disconnected`: waiting to reconnect; `stopped`: the operator disconnected
 * the user (close 4003), and the client waits for the application's
 * `reconnect()` or `close()`; `closed`: over for good.
 */
export type ConnectionState = "connecting" | "connected" | "disconnected" | "stopped" | "closed";

/** Why a subscription may be missing events: the application must load them another way. */
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

export interface ClientEvents {
    connecting: { attempt: number };
    connected: { hello: HelloData; resumed: boolean };
    /** `reconnectInMs` is `null` when the client will not reconnect on its own (closed, or stopped by a 4003). */
    disconnected: { code: number; reason: string; reconnectInMs: number | null };
    /**
     * The operator disconnected the user (close 4003: a logout, a password
     * change, a deleted account; `reason` says which). The client does not
     * reconnect on its own: call `reconnect(token?)` to come back, or
     * `close()`. Its subscriptions and cursors are kept for a `reconnect()`.
     */
    stopped: { code: number; reason: string };
    /** The connection's token was replaced in band (automatically or by `refresh()`): `exp` is the new token's, in seconds since the epoch. */
    refreshed: { exp: number };
    /** A session was restored: its subscriptions replay from the server's cursors. */
    resumed: { channels: Channel[] };
    gap: Gap;
    error: { code: string; message: string; channel?: Channel };
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
