//! The WebSocket part: the `ws` server, the `gateway` channel with every
//! client frame ([`CLIENT_FRAME_TYPES`]), server control frame
//! ([`ControlType::ALL`]) and event ([`EventType::ALL`], `user_presence`,
//! the catalog's added types), with its close codes and the `error`
//! frame's codes ([`super::codes`]), and the operations on it. Each list's
//! prose is here, in a `match` where the list is an enum (a new variant
//! does not compile without its words).

use super::codes::{close_codes, error_codes};
use super::nats::{self, CopyOn};
use super::tree::{list, map, reference, Node};
use super::{added, channel_message, payload, Catalog, Sections};
use crate::event::EventType;
use crate::gateway::protocol::{ControlType, CLIENT_FRAME_TYPES};
use crate::presence::USER_PRESENCE;

/// The WebSocket channel's key.
pub(super) const CHANNEL: &str = "gateway";

/// A client frame's words.
#[derive(Clone, Copy)]
struct ClientFrame {
    kind: &'static str,
    summary: &'static str,
    /// The receive operation's description, when it says more than the
    /// summary and [`REFUSED`].
    operation: Option<&'static str>,
    reply: Option<ControlType>,
}

/// Ends a receive operation's description, unless it says otherwise.
const REFUSED: &str = "A frame the gateway refuses is answered with `error`.";

const CLIENT_FRAMES: &[ClientFrame] = &[
    ClientFrame {
        kind: "subscribe",
        summary: "Subscribe to a channel, optionally replaying from a time (`since`) or a sequence (`since_seq`), not both. Reply: `subscribed`, replayed events, `replayed` (only if a replay was asked), then live events.",
        operation: None,
        reply: Some(ControlType::Subscribed),
    },
    ClientFrame {
        kind: "unsubscribe",
        summary: "Unsubscribe from a channel. Reply: `unsubscribed` with reason `requested`.",
        operation: None,
        reply: Some(ControlType::Unsubscribed),
    },
    ClientFrame {
        kind: "typing",
        summary: "Tell peers in a channel that this user started or stopped typing. No reply; peers get `user_typing`.",
        operation: None,
        reply: None,
    },
    ClientFrame {
        kind: "ack",
        summary: "Acknowledge delivery up to `seq` on a subscription, moving its session cursor. No reply.",
        operation: None,
        reply: None,
    },
    ClientFrame {
        kind: "ping",
        summary: "Application-level ping. Reply: `pong`.",
        operation: None,
        reply: Some(ControlType::Pong),
    },
    ClientFrame {
        kind: "refresh",
        summary: "A new token for the connection, without reconnecting. Reply: `refreshed` or `error`.",
        operation: Some("A new token for the connection, same `sub`. Reply: `refreshed` with the new `exp`; subscriptions the new grants no longer allow end with `unsubscribed` reason `revoked`. A refused token is an `error` and changes nothing."),
        reply: Some(ControlType::Refreshed),
    },
    ClientFrame {
        kind: "presence",
        summary: "Who is online in a subscribed chat channel. Reply: a `presence` snapshot.",
        operation: Some("Who is online in a subscribed chat channel. Reply: a `presence` snapshot; `forbidden` when the user may not see the channel, `not_found` when it is not subscribed."),
        reply: Some(ControlType::Presence),
    },
];

fn control_summary(kind: ControlType) -> &'static str {
    match kind {
        ControlType::Hello => "Sent once when the connection opens; names the session and its restored subscriptions.",
        ControlType::Subscribed => "Confirms a subscription. `complete` is false when retention may have dropped requested events; then `first_seq` names the oldest event the stream still holds, otherwise `first_seq` is absent. `complete` is also false when the client's `since_seq` or `epoch` belongs to another stream (a recreated one), or when the stream was recreated under a live subscription; `epoch` names the stream the seqs now belong to.",
        ControlType::Replayed => "Marks the end of a replay; live events follow.",
        ControlType::Unsubscribed => "A subscription ended, at the client's request or because of a ban, kick, leave or channel deletion.",
        ControlType::Pong => "Reply to a ping.",
        ControlType::Refreshed => "Reply to a refresh: the connection now expires at the new token's `exp`.",
        ControlType::Presence => "Who is online in a chat channel, on every node: at most presence_limit members, with the full count.",
        ControlType::Error => "A client frame was rejected; the connection stays open.",
    }
}

/// What an event type is, on the WebSocket and as published.
pub(super) fn event_summary(kind: EventType) -> &'static str {
    match kind {
        EventType::ChannelMessage => "A new message was posted in a channel.",
        EventType::MessageUpdated => "A message's content was edited.",
        EventType::MessageDeleted => "A message was deleted.",
        EventType::MessageReply => "A reply to an existing message was posted.",
        EventType::MemberJoined => "A user joined a channel.",
        EventType::MemberLeft => "A user left a channel.",
        EventType::MemberRoleUpdated => "A member's role in a channel changed.",
        EventType::UserBanned => "A user was banned from a channel. Published twice with the same id: the channel copy (on channel:{channel_id}) carries user_id, the user copy (on user:{user_id}) omits it; the code enforces which copy has it.",
        EventType::UserUnbanned => "A user's ban from a channel was lifted. Channel copy carries user_id, user copy omits it.",
        EventType::UserKicked => "A user was kicked from a channel. Channel copy carries user_id, user copy omits it.",
        EventType::ChannelCreated => "A channel was created (delivered on the global subscription).",
        EventType::ChannelUpdated => "A channel changed: `data` is `channel_id` plus the changed fields (any other keys; at least one).",
        EventType::ChannelDeleted => "A channel was deleted.",
        EventType::UserTyping => "A user started or stopped typing in a channel. Ephemeral: never stored, never replayed, no seq. user_id and username are set by the gateway from the token, never from the client.",
        EventType::Added(_) => "An event type the catalog adds.",
    }
}

const USER_PRESENCE_SUMMARY: &str = "A user started or stopped being present in a channel (a connection of theirs, on any node, holds a subscription to it). Made by the gateway; ephemeral: never stored, never replayed, no seq.";

const USER_PRESENCE_DESCRIPTION: &str = "Delivered on `channel:{channel_id}`, only to subscriptions made with `presence: true`. Online at once; offline after `presence_grace` when the last connection dropped, at once when the subscription ended.";

/// The AsyncAPI key of a client frame's message: its type, or
/// `{type}_request` when a control frame has that type too (`presence`).
pub(super) fn client_key(kind: &str) -> String {
    if ControlType::ALL.iter().any(|t| t.as_str() == kind) {
        format!("{kind}_request")
    } else {
        kind.to_string()
    }
}

/// The words of a client frame of [`CLIENT_FRAME_TYPES`] (a type without
/// them is named as such; a unit test keeps the table complete).
fn client_frame(kind: &'static str) -> ClientFrame {
    CLIENT_FRAMES
        .iter()
        .find(|f| f.kind == kind)
        .copied()
        .unwrap_or(ClientFrame {
            kind,
            summary: "(not described)",
            operation: None,
            reply: None,
        })
}

pub(super) fn describe(sections: &mut Sections, catalog: &Catalog) {
    sections.servers.push("ws", server());
    let mut on_channel: Vec<String> = Vec::new();

    let mut client_keys = Vec::new();
    for &kind in CLIENT_FRAME_TYPES {
        let frame = client_frame(kind);
        let key = client_key(kind);
        sections.messages.push(
            key.clone(),
            map([
                ("name", Node::from(kind)),
                ("title", format!("Client frame: {kind}").into()),
                ("summary", frame.summary.into()),
                (
                    "payload",
                    payload(reference(format!("./schemas/client/{kind}.json"))),
                ),
            ]),
        );
        on_channel.push(key.clone());
        client_keys.push((frame, key));
    }

    let mut control = Vec::new();
    for &kind in ControlType::ALL {
        let name = kind.as_str();
        let mut message = map([
            ("name", Node::from(name)),
            ("title", format!("Server control frame: {name}").into()),
            ("summary", control_summary(kind).into()),
            (
                "payload",
                payload(reference(format!("./schemas/server/{name}.json"))),
            ),
        ]);
        if kind == ControlType::Error {
            message.push("x-error-codes", error_codes());
            message = message.comment(
                "x-error-codes",
                "The codes an `error` frame's `code` may take (schemas/server/error.json has the \
                 same enum): the ones the gateway sends (gateway::protocol::ErrorCode), then the \
                 reserved ones.",
            );
        }
        sections.messages.push(name, message);
        on_channel.push(name.to_string());
        control.push(name.to_string());
    }

    let mut events = Vec::new();
    for &kind in EventType::ALL {
        let name = kind.as_str();
        let copies = nats::builtin_copies(kind);
        let stored = if kind.is_stored() {
            "Stored: carries `seq`."
        } else {
            "Ephemeral: live only, no `seq`."
        };
        let description = format!(
            "Delivered on {}. {stored}",
            delivery(&copies, kind.is_moderation())
        );
        sections
            .messages
            .push(name, event_message(name, event_summary(kind), &description));
        events.push(name.to_string());
    }
    sections.messages.push(
        USER_PRESENCE,
        event_message(
            USER_PRESENCE,
            USER_PRESENCE_SUMMARY,
            USER_PRESENCE_DESCRIPTION,
        ),
    );
    events.push(USER_PRESENCE.to_string());
    for added in catalog.added() {
        let key = added::event_key(&added.name);
        sections
            .messages
            .push(key.clone(), added::event_message(added));
        events.push(key);
    }
    on_channel.extend(events.iter().cloned());

    sections.channels.push(CHANNEL, channel(&on_channel));

    for (frame, key) in client_keys {
        let description = match frame.operation {
            Some(words) => words.to_string(),
            None => format!("{} {REFUSED}", frame.summary),
        };
        let mut operation = map([
            ("action", Node::from("receive")),
            ("title", format!("Client sends {}", frame.kind).into()),
            ("description", description.into()),
            ("channel", reference(format!("#/channels/{CHANNEL}"))),
            ("messages", list([channel_message(CHANNEL, &key)])),
        ]);
        if let Some(reply) = frame.reply {
            operation.push(
                "reply",
                map([
                    ("channel", reference(format!("#/channels/{CHANNEL}"))),
                    ("messages", list([channel_message(CHANNEL, reply.as_str())])),
                ]),
            );
        }
        sections
            .operations
            .push(format!("receive_{}", frame.kind), operation);
    }
    sections.operations.push(
        "send_control",
        send(
            "Server control frames",
            "`hello` first on every connection; `subscribed` (then replayed events, then \
             `replayed` when a replay was asked) after a subscribe or a session restore; \
             `unsubscribed` when a subscription ends; `pong`; `refreshed`; `presence` \
             (answering a `presence` frame; once to a subscription that asked for presence, \
             after `subscribed` or `replayed`; and in place of `user_presence` events when one \
             batch changes many users); `error`.",
            &control,
        ),
    );
    sections.operations.push(
        "send_events",
        send(
            "Events",
            "Every stored event of a subscription exactly once, in `seq` order, across \
             disconnects (docs/protocol.md, \"Resume\"); `user_typing` live only, without \
             `seq`; `user_presence` live only, without `seq`, to subscriptions that asked for \
             presence.",
            &events,
        ),
    );

    sections.security_schemes.push(
        "bearer",
        map([
            ("type", Node::from("http")),
            ("scheme", "bearer".into()),
            ("bearerFormat", "JWT".into()),
            (
                "description",
                "A JWT (HS256 with the gateway's secret) in `Authorization: Bearer …`. Claims: \
                 `sub` (user UUID), `exp`, optional `name`, `channels`, `roles` \
                 (docs/protocol.md, \"Endpoint and authentication\")."
                    .into(),
            ),
        ]),
    );
    sections.security_schemes.push(
        "tokenQuery",
        map([
            ("type", Node::from("httpApiKey")),
            ("name", "token".into()),
            ("in", "query".into()),
            (
                "description",
                "The same JWT in the `token` query parameter, for browsers.".into(),
            ),
        ]),
    );
}

/// Where an event's copies are delivered, in words.
pub(super) fn delivery(copies: &[(CopyOn, String)], moderation: bool) -> String {
    let one = |(copy, field): &(CopyOn, String)| match copy {
        CopyOn::Channel => format!("`channel:{{{field}}}`"),
        CopyOn::User => format!("`user:{{{field}}}`"),
        CopyOn::Global => "`global`".to_string(),
    };
    if moderation {
        if let [channel, user] = copies {
            return format!(
                "{} (with `user_id`) and {} (without it)",
                one(channel),
                one(user)
            );
        }
    }
    let words: Vec<String> = copies.iter().map(one).collect();
    match words.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
        None => "no channel".to_string(),
    }
}

/// An event on the WebSocket: the envelope with its `type` and `data`.
fn event_message(name: &str, summary: &str, description: &str) -> Node {
    map([
        ("name", Node::from(name)),
        ("title", format!("{name} event").into()),
        ("summary", summary.into()),
        ("description", description.into()),
        (
            "payload",
            payload(map([(
                "allOf",
                list([
                    reference("./schemas/envelope.json"),
                    map([
                        ("type", Node::from("object")),
                        (
                            "properties",
                            map([
                                ("type", map([("const", Node::from(name))])),
                                ("data", reference(format!("./schemas/events/{name}.json"))),
                            ]),
                        ),
                    ]),
                ]),
            )])),
        ),
    ])
}

/// A send operation of `keys` on the WebSocket.
fn send(title: &str, description: &str, keys: &[String]) -> Node {
    map([
        ("action", Node::from("send")),
        ("title", title.into()),
        ("description", description.into()),
        ("channel", reference(format!("#/channels/{CHANNEL}"))),
        (
            "messages",
            list(keys.iter().map(|k| channel_message(CHANNEL, k))),
        ),
    ])
}

fn server() -> Node {
    map([
        ("host", Node::from("127.0.0.1:8080")),
        ("pathname", "/v1/ws".into()),
        ("protocol", "ws".into()),
        ("title", "The gateway's WebSocket endpoint".into()),
        (
            "description",
            "`GET /v1/ws` on the gateway's `listen` address (default 127.0.0.1:8080; `wss` \
             behind a TLS-terminating proxy). Authentication is a JWT, either in \
             `Authorization: Bearer …` or in the `token` query parameter (browsers cannot set \
             headers). A bad, missing or expired token refuses the upgrade with HTTP 401 before \
             any socket exists; an upgrade from a browser origin that is not allowed \
             (`allowed_origins`) is refused with 403. `?session={session_id}` resumes a session \
             (docs/protocol.md, \"Sessions\")."
                .into(),
        ),
        (
            "security",
            list([
                reference("#/components/securitySchemes/bearer"),
                reference("#/components/securitySchemes/tokenQuery"),
            ]),
        ),
    ])
}

fn channel(keys: &[String]) -> Node {
    let string = |description: &str| {
        map([
            ("type", Node::from("string")),
            ("description", description.into()),
        ])
    };
    map([
        ("address", Node::from("/")),
        ("title", "One client's WebSocket".into()),
        (
            "description",
            "The one WebSocket at the server's pathname: every frame is JSON text in either \
             direction. Client frames carry an optional `request_id` that the reply echoes; \
             unknown fields are ignored. Server frames share the envelope `{type, timestamp, \
             data}`; events add `channel`, `id` and (stored events) `seq`. Bad input gets an \
             `error` frame and the connection stays open; `x-close-codes` lists how a \
             connection ends."
                .into(),
        ),
        ("servers", list([reference("#/servers/ws")])),
        (
            "messages",
            map(keys
                .iter()
                .map(|k| (k.clone(), reference(format!("#/components/messages/{k}"))))),
        ),
        (
            "bindings",
            map([(
                "ws",
                map([
                    ("method", Node::from("GET")),
                    (
                        "query",
                        map([
                            ("type", Node::from("object")),
                            (
                                "properties",
                                map([
                                    (
                                        "token",
                                        string("The JWT, when not given in `Authorization`."),
                                    ),
                                    (
                                        "session",
                                        string(
                                            "A `hello.session_id` to resume (same user, within \
                                             the session TTL); an unknown, expired or another \
                                             user's id gets a fresh session, never an error.",
                                        ),
                                    ),
                                ]),
                            ),
                        ]),
                    ),
                    (
                        "headers",
                        map([
                            ("type", Node::from("object")),
                            (
                                "properties",
                                map([(
                                    "Authorization",
                                    map([
                                        ("type", Node::from("string")),
                                        ("pattern", "^Bearer ".into()),
                                        (
                                            "description",
                                            "`Bearer <JWT>`, the alternative to `?token=`.".into(),
                                        ),
                                    ]),
                                )]),
                            ),
                        ]),
                    ),
                    ("bindingVersion", "0.1.0".into()),
                ]),
            )]),
        ),
        ("x-close-codes", close_codes()),
    ])
    .comment(
        "x-close-codes",
        "Every close is a real close handshake. `reason` is the Close frame's reason text as \
         the gateway sends it (gateway::protocol::Close::reason).",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_client_frame_has_its_words() {
        for kind in CLIENT_FRAME_TYPES {
            assert!(
                CLIENT_FRAMES.iter().any(|f| f.kind == *kind),
                "CLIENT_FRAMES has no words for `{kind}`"
            );
        }
        assert_eq!(CLIENT_FRAMES.len(), CLIENT_FRAME_TYPES.len());
    }
}
