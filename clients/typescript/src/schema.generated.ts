// Generated from schemas/ by scripts/generate-types.mjs (`npm run generate`). Do not edit.

/**
 * The `data` object of a `channel_created` event. A channel was created (delivered on the global subscription). Fields not listed here are allowed (a newer publisher may add optional ones) and are passed to clients unchanged.
 */
export interface ChannelCreatedData {
  /**
   * The new channel.
   */
  channel_id: string;
  /**
   * The new channel's name.
   */
  channel_name: string;
  [k: string]: unknown | undefined;
}

/**
 * The `data` object of a `channel_deleted` event. A channel was deleted. Fields not listed here are allowed (a newer publisher may add optional ones) and are passed to clients unchanged.
 */
export interface ChannelDeletedData {
  /**
   * The deleted channel.
   */
  channel_id: string;
  [k: string]: unknown | undefined;
}

/**
 * The `data` object of a `channel_message` event. A new message was posted in a channel. Fields not listed here are allowed (a newer publisher may add optional ones) and are passed to clients unchanged.
 */
export interface ChannelMessageData {
  /**
   * The channel the message was posted in.
   */
  channel_id: string;
  /**
   * The new message.
   */
  message_id: string;
  /**
   * The author.
   */
  user_id: string;
  /**
   * A username, or null when unknown.
   */
  username: string | null;
  /**
   * The message text.
   */
  content: string;
  [k: string]: unknown | undefined;
}

/**
 * The `data` object of a `channel_updated` event: `channel_id` plus the changed fields (any other keys; at least one).
 */
export interface ChannelUpdatedData {
  /**
   * The updated channel.
   */
  channel_id: string;
  [k: string]: unknown | undefined;
}

/**
 * The `data` object of a `member_joined` event. A user joined a channel. Fields not listed here are allowed (a newer publisher may add optional ones) and are passed to clients unchanged.
 */
export interface MemberJoinedData {
  /**
   * The channel joined.
   */
  channel_id: string;
  /**
   * The user who joined.
   */
  user_id: string;
  /**
   * A username, or null when unknown.
   */
  username: string | null;
  [k: string]: unknown | undefined;
}

/**
 * The `data` object of a `member_left` event. A user left a channel. Fields not listed here are allowed (a newer publisher may add optional ones) and are passed to clients unchanged.
 */
export interface MemberLeftData {
  /**
   * The channel left.
   */
  channel_id: string;
  /**
   * The user who left.
   */
  user_id: string;
  /**
   * A username, or null when unknown.
   */
  username: string | null;
  [k: string]: unknown | undefined;
}

/**
 * The `data` object of a `member_role_updated` event. A member's role in a channel changed. Fields not listed here are allowed (a newer publisher may add optional ones) and are passed to clients unchanged.
 */
export interface MemberRoleUpdatedData {
  /**
   * The channel.
   */
  channel_id: string;
  /**
   * The member whose role changed.
   */
  user_id: string;
  /**
   * A username, or null when unknown.
   */
  username: string | null;
  /**
   * The member's new role.
   */
  new_role: string;
  [k: string]: unknown | undefined;
}

/**
 * The `data` object of a `message_deleted` event. A message was deleted. Fields not listed here are allowed (a newer publisher may add optional ones) and are passed to clients unchanged.
 */
export interface MessageDeletedData {
  /**
   * The channel holding the message.
   */
  channel_id: string;
  /**
   * The deleted message.
   */
  message_id: string;
  [k: string]: unknown | undefined;
}

/**
 * The `data` object of a `message_reply` event. A reply to an existing message was posted. Fields not listed here are allowed (a newer publisher may add optional ones) and are passed to clients unchanged.
 */
export interface MessageReplyData {
  /**
   * The channel the reply was posted in.
   */
  channel_id: string;
  /**
   * The new reply message.
   */
  message_id: string;
  /**
   * The message being replied to.
   */
  parent_message_id: string;
  /**
   * The author.
   */
  user_id: string;
  /**
   * A username, or null when unknown.
   */
  username: string | null;
  /**
   * The reply text.
   */
  content: string;
  [k: string]: unknown | undefined;
}

/**
 * The `data` object of a `message_updated` event. A message's content was edited. Fields not listed here are allowed (a newer publisher may add optional ones) and are passed to clients unchanged.
 */
export interface MessageUpdatedData {
  /**
   * The channel holding the message.
   */
  channel_id: string;
  /**
   * The edited message.
   */
  message_id: string;
  /**
   * The new message text.
   */
  content: string;
  [k: string]: unknown | undefined;
}

/**
 * The `data` object of a `user_banned` event. A user was banned from a channel. Published twice with the same id: the channel copy (on channel:{channel_id}) carries user_id, the user copy (on user:{user_id}) omits it; the code enforces which copy has it. Fields not listed here are allowed (a newer publisher may add optional ones) and are passed to clients unchanged.
 */
export interface UserBannedData {
  /**
   * The channel the user is banned from.
   */
  channel_id: string;
  /**
   * The banned user (channel copy only).
   */
  user_id?: string;
  /**
   * The reason given for the ban.
   */
  motive: string;
  [k: string]: unknown | undefined;
}

/**
 * The `data` object of a `user_kicked` event. A user was kicked from a channel. Channel copy carries user_id, user copy omits it. Fields not listed here are allowed (a newer publisher may add optional ones) and are passed to clients unchanged.
 */
export interface UserKickedData {
  /**
   * The channel the user was kicked from.
   */
  channel_id: string;
  /**
   * The kicked user (channel copy only).
   */
  user_id?: string;
  [k: string]: unknown | undefined;
}

/**
 * The `data` object of a `user_presence` event. A user started or stopped being present in a channel: at least one of their connections, on any gateway node, holds a subscription to it. Made by the gateway, only for subscriptions that asked for presence (`presence: true`); ephemeral: never stored, never replayed, no seq. Going online is announced at once; going offline after the grace when the last connection dropped, at once when the subscription ended (unsubscribe, ban, kick, leave, deleted channel). Not accepted from publishers.
 */
export interface UserPresenceData {
  /**
   * The channel.
   */
  channel_id: string;
  /**
   * The user (their token's subject).
   */
  user_id: string;
  /**
   * The name their token gives, or the user id when it has none.
   */
  username: string;
  /**
   * true when the user started being present, false when they stopped.
   */
  online: boolean;
  [k: string]: unknown | undefined;
}

/**
 * The `data` object of a `user_typing` event. A user started or stopped typing in a channel. Ephemeral: never stored, never replayed, no seq. user_id and username are set by the gateway from the token, never from the client. Fields not listed here are allowed from a publisher on NATS and ignored: the gateway writes typing itself.
 */
export interface UserTypingData {
  /**
   * The channel.
   */
  channel_id: string;
  /**
   * The typing user (the token's sub).
   */
  user_id: string;
  /**
   * The token's name claim, or the user id when the token has none.
   */
  username: string;
  /**
   * true when the user started typing, false when they stopped.
   */
  is_typing: boolean;
  [k: string]: unknown | undefined;
}

/**
 * The `data` object of a `user_unbanned` event. A user's ban from a channel was lifted. Channel copy carries user_id, user copy omits it. Fields not listed here are allowed (a newer publisher may add optional ones) and are passed to clients unchanged.
 */
export interface UserUnbannedData {
  /**
   * The channel.
   */
  channel_id: string;
  /**
   * The unbanned user (channel copy only).
   */
  user_id?: string;
  /**
   * The reason given for lifting the ban.
   */
  motive: string;
  [k: string]: unknown | undefined;
}

/**
 * The `error` frame's payload.
 */
export interface ErrorData {
  /**
   * The offending frame's request_id, when it had one.
   */
  request_id?: string;
  /**
   * Error category.
   */
  code: "bad_request" | "forbidden" | "not_found" | "rate_limited" | "too_large" | "unavailable" | "internal";
  /**
   * Human-readable explanation.
   */
  message: string;
}

/**
 * The `hello` frame's payload.
 */
export interface HelloData {
  /**
   * The server-side session; reconnect with ?session= to resume it.
   */
  session_id: string;
  /**
   * The authenticated user (the token's sub).
   */
  user_id: string;
  /**
   * Heartbeat interval in milliseconds.
   */
  heartbeat_ms: number;
  /**
   * Base delay in milliseconds a client should wait, plus jitter, before reconnecting.
   */
  reconnect_ms: number;
  /**
   * true when an existing session was restored.
   */
  resumed: boolean;
  /**
   * The session's restored subscriptions (empty for a fresh session).
   *
   * Items: A restored subscription channel.
   */
  channels: string[];
  /**
   * The stream's epoch: the seqs of this connection belong to it. Opaque: it changes when the stream is deleted and recreated (its seqs then start over); compare it, never parse it. Send it back in `subscribe.epoch` with a `since_seq`.
   */
  epoch: string;
}

/**
 * The `pong` frame's payload.
 */
export interface PongData {
  /**
   * The ping frame's request_id.
   */
  request_id?: string;
}

/**
 * The `presence` frame's payload.
 */
export interface PresenceData {
  /**
   * The chat channel.
   */
  channel: string;
  /**
   * Every present user, however many `members` lists.
   */
  count: number;
  /**
   * Present users, by user id, at most `presence_limit`.
   */
  members: {
    /**
     * The user.
     */
    user_id: string;
    /**
     * The name their typing shows.
     */
    username: string;
    /**
     * Their connections holding the channel, on every node.
     */
    connections: number;
  }[];
  /**
   * Whether `members` lists fewer than `count`.
   */
  truncated: boolean;
  /**
   * The presence frame's request_id, when it had one.
   */
  request_id?: string;
}

/**
 * The `refreshed` frame's payload.
 */
export interface RefreshedData {
  /**
   * The new token's expiry, in seconds since the epoch (its `exp` claim).
   */
  exp: number;
  /**
   * The refresh frame's request_id, when it had one.
   */
  request_id?: string;
}

/**
 * The `replayed` frame's payload.
 */
export interface ReplayedData {
  /**
   * The subscription channel.
   */
  channel: string;
  /**
   * How many events were replayed.
   */
  count: number;
  /**
   * The seq of the last replayed event (or the resume point when none were).
   */
  last_seq: number;
}

/**
 * The `subscribed` frame's payload.
 */
export interface SubscribedData {
  /**
   * The subscribe frame's request_id (absent for subscriptions restored from a session).
   */
  request_id?: string;
  /**
   * The subscribed channel.
   */
  channel: string;
  /**
   * false if retention may have dropped events the client asked for.
   */
  complete: boolean;
  /**
   * The oldest seq the stream still holds; present if and only if complete is false.
   */
  first_seq?: number;
  /**
   * The stream's epoch, which this subscription's seqs belong to. Opaque: it changes when the stream is deleted and recreated (its seqs then start over); compare it, never parse it.
   */
  epoch: string;
}

/**
 * The `unsubscribed` frame's payload.
 */
export interface UnsubscribedData {
  /**
   * The unsubscribe frame's request_id, when it was requested.
   */
  request_id?: string;
  /**
   * The channel no longer subscribed.
   */
  channel: string;
  /**
   * Why the subscription ended.
   */
  reason: "requested" | "banned" | "kicked" | "left" | "channel_deleted" | "revoked";
}

/** The 15 event types. */
export type EventType =
    | "channel_created"
    | "channel_deleted"
    | "channel_message"
    | "channel_updated"
    | "member_joined"
    | "member_left"
    | "member_role_updated"
    | "message_deleted"
    | "message_reply"
    | "message_updated"
    | "user_banned"
    | "user_kicked"
    | "user_presence"
    | "user_typing"
    | "user_unbanned";

/** Every event type's `data`. */
export interface EventDataMap {
    channel_created: ChannelCreatedData;
    channel_deleted: ChannelDeletedData;
    channel_message: ChannelMessageData;
    channel_updated: ChannelUpdatedData;
    member_joined: MemberJoinedData;
    member_left: MemberLeftData;
    member_role_updated: MemberRoleUpdatedData;
    message_deleted: MessageDeletedData;
    message_reply: MessageReplyData;
    message_updated: MessageUpdatedData;
    user_banned: UserBannedData;
    user_kicked: UserKickedData;
    user_presence: UserPresenceData;
    user_typing: UserTypingData;
    user_unbanned: UserUnbannedData;
}

/** The server's control frames and their `data`. */
export interface ControlDataMap {
    error: ErrorData;
    hello: HelloData;
    pong: PongData;
    presence: PresenceData;
    refreshed: RefreshedData;
    replayed: ReplayedData;
    subscribed: SubscribedData;
    unsubscribed: UnsubscribedData;
}

/** The 15 event types, in name order. */
export const EVENT_TYPES: readonly EventType[] = [
    "channel_created",
    "channel_deleted",
    "channel_message",
    "channel_updated",
    "member_joined",
    "member_left",
    "member_role_updated",
    "message_deleted",
    "message_reply",
    "message_updated",
    "user_banned",
    "user_kicked",
    "user_presence",
    "user_typing",
    "user_unbanned",
];
