import { Emitter } from "./emitter.js";
import type { Channel, ChatEvent, Gap } from "./types.js";

export interface SubscriptionEvents {
    /** Every event, exactly once and in `seq` order (typing in between, as it comes). */
    event: ChatEvent;
    /** The server accepted the subscription (again after each reconnect). */
    subscribed: { complete: boolean; firstSeq: number | undefined; epoch: string | undefined };
    /** The replay ended; live events follow. */
    replayed: { count: number; lastSeq: number };
    gap: Gap;
    /**
     * The subscription ended: `requested`, or the server's reason (`banned`,
     * `kicked`, `left`, `channel_deleted`, or `revoked` when a refreshed
     * token no longer grants it), `refused` when the server refused it (see
     * `error`), or `closed` when the client closed.
     */
    unsubscribed: { reason: string };
    error: { code: string; message: string };
}

/**
 * One channel's subscription. Handlers (`on("event", …)`) or `for await`
 * get each stored event exactly once, in `seq` order, across reconnects.
 */
export class Subscription extends Emitter<SubscriptionEvents> implements AsyncIterable<ChatEvent> {
    readonly channel: Channel;
    #ended = false;
    /** One queue per running `for await`, so each iterator sees every event. */
    #readers = new Set<{ events: ChatEvent[]; wake: (() => void) | null }>();
    readonly #unsubscribe: () => Promise<void>;

    /** @internal */
    constructor(channel: Channel, unsubscribe: () => Promise<void>) {
        super();
        this.channel = channel;
        this.#unsubscribe = unsubscribe;
    }

    /** Whether the subscription has ended (unsubscribed, refused, or ended by the server). */
    get ended(): boolean {
        return this.#ended;
    }

    /** Ends the subscription; resolves when the server confirmed it (or at once when offline). */
    unsubscribe(): Promise<void> {
        if (this.#ended) return Promise.resolve();
        return this.#unsubscribe();
    }

    /** @internal Called by the client. */
    dispatch<K extends keyof SubscriptionEvents>(name: K, payload: SubscriptionEvents[K]): void {
        if (name === "unsubscribed") this.#ended = true;
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
