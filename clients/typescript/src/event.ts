/**
 * Which events the SDK knows: the built-in types it was generated with
 * (`EVENT_TYPES`), and the rest, the types a gateway's catalog adds (or a
 * built-in type newer than the SDK), delivered as generic `AddedEvent`s.
 * Both come through the same subscriptions with the same guarantees; this
 * module only tells them apart, for the application's types.
 */

import { EVENT_TYPES } from "./schema.generated.js";
import type { BuiltInEvent, ChatEvent } from "./types.js";

const BUILT_IN: ReadonlySet<string> = new Set(EVENT_TYPES);

/**
 * Whether `event` is of a built-in type: then `event.type` narrows it and
 * `data` is typed by it; if not, it is an `AddedEvent`. (There is no
 * converse guard: a built-in event, whose `data` allows unknown fields,
 * would pass for an `AddedEvent` by its shape.)
 *
 * ```ts
 * if (isBuiltIn(event)) {
 *     if (event.type === "channel_message") render(event.data.content);
 * } else {
 *     renderAdded(event.type, event.data); // an AddedEvent
 * }
 * ```
 */
export function isBuiltIn(event: ChatEvent): event is BuiltInEvent {
    return BUILT_IN.has(event.type);
}

