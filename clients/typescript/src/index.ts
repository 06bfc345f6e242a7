/**
 * `@switchboard/client`: switchboard's client for browsers and Node ≥ 20.
 *
 * ```ts
 * import { connect } from "@switchboard/client";
 * const client = connect({ url: "wss://chat.example.com/v1/ws", getToken: () => fetchToken() });
 * const room = client.subscribe("channel:0b6f…");
 * room.on("event", (event) => render(event));      // every stored event once, in seq order (added types too)
 * room.on("gap", ({ firstSeq }) => reloadHistory()); // retention dropped some: fill from elsewhere
 * const people = client.subscribe("channel:1c7a…", { presence: true });
 * people.on("presence", ({ presence }) => renderOnline(presence.members)); // who is online
 * ```
 */
export { connect, Client, PresenceError, RefreshError, type CloseResult, type ClientStats, type SubscribeOptions } from "./client.js";
export { isBuiltIn } from "./event.js";
export type { Presence, PresenceChange, PresenceMember } from "./presence.js";
export { tokenExpiry, REFRESH_MARGIN_MS } from "./refresh.js";
export { Subscription, type Replayed, type Subscribed, type SubscriptionError, type SubscriptionEvents, type Unsubscribed } from "./subscription.js";
export { memoryStorage, webStorage, type CursorStorage, type SavedCursors, type WebStorageLike } from "./storage.js";
export { reconnectDelay } from "./backoff.js";
export type * from "./types.js";
export * from "./schema.generated.js";
