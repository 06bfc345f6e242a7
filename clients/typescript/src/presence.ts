/**
 * Presence: who is online in a chat channel, as a subscription made with
 * `presence: true` knows it. A `presence` snapshot from the gateway
 * replaces the set; a `user_presence` event adds (online) or removes
 * (offline) one user. No I/O: the resume core (`resume.ts`) feeds it the
 * frames and hands each change to the subscription.
 *
 * A set is never changed in place: each change makes a new one, so an
 * application can keep the one it rendered and compare.
 *
 * What the gateway guarantees and what follows from it here:
 * - a snapshot is what the gateway announced before it, plus the
 *   subscriber (whose own `online` may come after it): an online for a
 *   listed user, or an offline for one not listed, changes nothing (and
 *   is no `presence` event);
 * - `user_presence` carries no connection count: `connections` is the last
 *   snapshot's, and 1 for a user announced online since;
 * - a `truncated` snapshot lists only the first `presence_limit` users by
 *   id: until the next snapshot `count` is the snapshot's moved by one for
 *   each change of a user it does not list (one too high if the
 *   subscriber's own `online` restates a snapshot that did not list them).
 */

import type { PresenceData, UserPresenceData } from "./schema.generated.js";
import type { Channel } from "./types.js";

/** One online user. */
export interface PresenceMember {
    userId: string;
    /** The name their token gives (the user id when it has none). */
    username: string;
    /** Their connections holding the channel, on every gateway node, as of the last snapshot (1 for a user announced online since). */
    connections: number;
}

/** Who is online in a chat channel. */
export interface Presence {
    channel: Channel;
    /** Every online user, however many `members` lists. */
    count: number;
    /** The online users by user id, in user-id order. */
    members: ReadonlyMap<string, PresenceMember>;
    /** Whether `members` lists fewer users than `count` (the gateway lists at most `presence_limit`). */
    truncated: boolean;
}

/** A subscription's presence changed: the new set and who came and went. */
export interface PresenceChange {
    presence: Presence;
    /** Users online now who were not before. */
    joined: PresenceMember[];
    /** Users online before who are not now (one that a truncated set did not list has `connections` 0). */
    left: PresenceMember[];
    /** Whether a snapshot replaced the set (after subscribing, after every reconnect, on `requestPresence()`, or when many users changed at once); false for one `user_presence` event. */
    snapshot: boolean;
}

/** The set a `presence` frame's `data` describes. */
export function fromSnapshot(data: PresenceData): Presence {
    const members = data.members
        .map((m): PresenceMember => ({ userId: m.user_id.toLowerCase(), username: m.username, connections: m.connections }))
        .sort((a, b) => compare(a.userId, b.userId));
    const byId = new Map(members.map((m) => [m.userId, m]));
    const count = Math.max(data.count, byId.size);
    return { channel: data.channel as Channel, count, members: byId, truncated: data.truncated || byId.size < count };
}

/** `next` replacing `previous` (none: the first snapshot), with who came and went. */
export function replaced(previous: Presence | undefined, next: Presence): PresenceChange {
    const before = previous?.members ?? new Map<string, PresenceMember>();
    const joined = [...next.members.values()].filter((m) => !before.has(m.userId));
    const left = [...before.values()].filter((m) => !next.members.has(m.userId));
    return { presence: next, joined, left, snapshot: true };
}

/** One `user_presence` event applied to `set`; `undefined` when it changes nothing (a repeat of what the set says). */
export function applied(set: Presence, data: UserPresenceData): PresenceChange | undefined {
    const userId = data.user_id.toLowerCase();
    const known = set.members.get(userId);
    if (data.online) {
        if (known) return undefined;
        const member: PresenceMember = { userId, username: data.username, connections: 1 };
        const entries: [string, PresenceMember][] = [...set.members, [userId, member]];
        const members = new Map(entries.sort(([a], [b]) => compare(a, b)));
        return { presence: withCount(set, members, set.count + 1), joined: [member], left: [], snapshot: false };
    }
    if (known) {
        const members = new Map(set.members);
        members.delete(userId);
        return { presence: withCount(set, members, set.count - 1), joined: [], left: [known], snapshot: false };
    }
    // Not listed: in a complete set, already offline (a repeat); in a
    // truncated one, maybe one of the users it does not list.
    if (!set.truncated) return undefined;
    const gone: PresenceMember = { userId, username: data.username, connections: 0 };
    return { presence: withCount(set, set.members, set.count - 1), joined: [], left: [gone], snapshot: false };
}

function withCount(set: Presence, members: ReadonlyMap<string, PresenceMember>, count: number): Presence {
    const total = Math.max(count, members.size);
    return { channel: set.channel, count: total, members, truncated: members.size < total };
}

function compare(a: string, b: string): number {
    return a < b ? -1 : a > b ? 1 : 0;
}
