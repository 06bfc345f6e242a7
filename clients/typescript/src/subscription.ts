import { Emitter } from "./emitter.js";
import type { Presence, PresenceChange } from "./presence.js";
import type { Channel, ChatEvent, Gap } from "./types.js";

/** `subscribed`: the server accepted the subscription (again after each reconnect). */
export interface Subscribed {
    /** False when events asked for are gone (retention) or belong to a recreated stream: a `gap` came just before. */
    complete: boolean;
    /** The oldest `seq` the stream holds, when the server said (with `complete: false`). */
    firstSeq: number | undefined;
    /** The stream's epoch, when the server said. */
    epoch: string | undefined;
}

/** `replayed`: the replay ended; live events follow. */
export interface Replayed {
    /** How many events the gateway replayed (those the client dropped as already delivered included). */
    count: number;
    /** The last replayed `seq`, or where the replay started when it had none: the subscription's resume point. */
    lastSeq: number;
}

/**
 * `unsubscribed`: the subscription ended. `requested` (`unsubscribe()`),
 * the server's reason (`banned`, `kicked`, `left`, `channel_deleted`, or
 * `revoked` when a refreshed token no longer grants it), `refused` when the
 * server refused it (see `error`), or `closed` when the client closed.
 */
export interface Unsubscribed {
    reason: string;
}

/** A subscription's `error` event (a plain object, not an `Error`): the server refused it or one of its requests. */
export interface SubscriptionError {
    /** The gateway's error code: `forbidden`, `not_found`, `bad_request`, `unavailable` (asked again later), …. */
    code: string;
    message: string;
}

/** A subscription's events: `subscription.on(name, (payload) => …)`. */
export interface SubscriptionEvents {
    /**
     * Every event, exactly once and in `seq` order (typing and the
     * catalog's other ephemeral types in between, as they come); events of
     * added types (`isBuiltIn(event)` false) among the built-in ones.
     */
    event: ChatEvent;
    subscribed: Subscribed;
    replayed: Replayed;
    gap: Gap;
    /**
     * Who is online changed (a subscription made with `presence: true`):
     * the new set (also `subscription.presence` from now on) and who came
     * and went. Every snapshot is one (`snapshot: true`, after subscribing
     * and after each reconnect, even when nobody came or went); a
     * `user_presence` event is one when it changes the set.
     */
    presence: PresenceChange;
    unsubscribed: Unsubscribed;
    error: SubscriptionError;
}

/** What a subscription asks its client for. */
interface SubscriptionCalls {
    unsubscribe: () => Promise<void>;
    requestPresence: () => Promise<Presence>;
}

/**
 * One channel's subscription. Handlers (`on("event", …)`) or `for await`
 * get each stored event exactly once, in `seq` order, across reconnects.
 */
export class Subscription extends Emitter<SubscriptionEvents> implements AsyncIterable<ChatEvent> {
    readonly channel: Channel;
    #ended = false;
    #presence: Presence | undefined;
    /** One queue per running `for await`, so each iterator sees every event. */
    #readers = new Set<{ events: ChatEvent[]; wake: (() => void) | null }>();
    readonly #calls: SubscriptionCalls;

    /** @internal */
    constructor(channel: Channel, calls: SubscriptionCalls) {
        super();
        this.channel = channel;
        this.#calls = calls;
    }

    /** Whether the subscription has ended (unsubscribed, refused, or ended by the server). */
    get ended(): boolean {
        return this.#ended;
    }

    /**
     * Who is online in the channel, for a subscription made with `presence:
     * true`: `undefined` until the first snapshot, then replaced by every
     * change (see the `presence` event). While the client is offline it is
     * the last known set; the reconnect brings a fresh snapshot.
     */
    get presence(): Presence | undefined {
        return this.#presence;
    }

    /** Ends the subscription; resolves when the server confirmed it (or at once when offline). */
    unsubscribe(): Promise<void> {
        if (this.#ended) return Promise.resolve();
        return this.#calls.unsubscribe();
    }

    /**
     * Asks the gateway for the channel's presence snapshot now (`channel:`
     * channels only; with or without `presence: true`). Resolves with it;
     * on a subscription made with `presence: true` it also replaces
     * `presence` (and emits `presence`). Rejects with a `PresenceError`:
     * the gateway's `code` (`not_found`, `forbidden`), or `offline`,
     * `disconnected` (the connection ended first), `ended`.
     */
    requestPresence(): Promise<Presence> {
        return this.#calls.requestPresence();
    }

    /** @internal Called by the client. */
    dispatch<K extends keyof SubscriptionEvents>(name: K, payload: SubscriptionEvents[K]): void {
        if (name === "unsubscribed") this.#ended = true;
        if (name === "presence") this.#presence = (payload as PresenceChange).presence;
        for (const reader of this.#readers) {
            if (name === "event") reader.events.push(payload as ChatEvent);
            reader.wake?.();
        }
        this.emit(name, payload);
    }

    async *[Symbol.asyncIterator](): AsyncIterator<ChatEvent> {
        const reader: { events: ChatEvent[]; wake: (() => void) | null } = { events: [], wake: null };
        this.#readers.add(reader);
        try {
            for (;;) {
                const next = reader.events.shift();
                if (next) {
                    yield next;
                    continue;
                }
                if (this.#ended) return;
                await new Promise<void>((resolve) => {
                    reader.wake = resolve;
                });
                reader.wake = null;
            }
        } finally {
            this.#readers.delete(reader);
        }
    }
}
