// What application code writes against `ChatEvent`: type-checked (never
// run) by test/event-types.test.mjs with the package's strict settings.
// A built-in event narrows by `isBuiltIn`, then by `type`, to its typed
// `data`; what is not built in is an `AddedEvent`, whose `data` is a record.

import { isBuiltIn, type AddedEvent, type BuiltInEvent, type ChatEvent, type ChannelMessageData, type Subscription } from "../../src/index.js";

export function render(event: ChatEvent): string {
    if (isBuiltIn(event)) {
        switch (event.type) {
            case "channel_message": {
                const data: ChannelMessageData = event.data;
                return `${event.seq} ${data.content}`;
            }
            case "user_typing":
                return `${event.data.username} ${event.data.is_typing}`;
            default:
                return `${event.seq} ${event.type}`;
        }
    }
    const added: AddedEvent = event;
    const seq: number | undefined = added.seq;
    const emoji: unknown = added.data["emoji"];
    // @ts-expect-error an added event's data is not a built-in type's
    const content: string = added.data.content;
    return `${seq ?? "live"} ${added.type} ${String(emoji)} ${content}`;
}

export async function read(subscription: Subscription): Promise<string[]> {
    const seen: string[] = [];
    subscription.on("event", (event) => seen.push(render(event)));
    for await (const event of subscription) seen.push(render(event));
    return seen;
}

// Both kinds are in the union.
export const kinds: [BuiltInEvent, AddedEvent] extends [ChatEvent, ChatEvent] ? true : never = true;
