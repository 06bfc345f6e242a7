//! The NATS part: the `nats` server, one channel per subject the stream
//! stores for a built-in type ([`builtin_stream_subjects`]) with the
//! message as published and the gateway's receive operation, the core NATS
//! typing subject ([`typing_wildcard`]), and the `Nats-Msg-Id` headers.

use super::tree::{list, map, reference, Node};
use super::websocket::event_summary;
use super::{channel_message, payload, Sections};
use crate::event::EventType;
use crate::log::subject::{builtin_stream_subjects, typing_wildcard};

/// Which channel a copy of an event is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum CopyOn {
    /// `channel:{id}`, subject `chat.channel.{id}.{type}`.
    Channel,
    /// `user:{id}`, subject `chat.user.{id}.{type}`.
    User,
    /// `global`, subject `chat.global.{type}`.
    Global,
}

impl CopyOn {
    /// The subject token after the root.
    pub(super) fn token(self) -> &'static str {
        match self {
            CopyOn::Channel => "channel",
            CopyOn::User => "user",
            CopyOn::Global => "global",
        }
    }
}

/// One subject filter of ours: the copy it carries and the type's name.
fn parse_filter(filter: &str) -> Option<(CopyOn, &str)> {
    let tokens: Vec<&str> = filter.split('.').collect();
    match tokens.as_slice() {
        [_, "channel", "*", kind] => Some((CopyOn::Channel, kind)),
        [_, "user", "*", kind] => Some((CopyOn::User, kind)),
        [_, "global", kind] => Some((CopyOn::Global, kind)),
        _ => None,
    }
}

/// The id parameter of a built-in copy's subject.
fn builtin_parameter(copy: CopyOn) -> Option<&'static str> {
    match copy {
        CopyOn::Channel => Some("channel_id"),
        CopyOn::User => Some("user_id"),
        CopyOn::Global => None,
    }
}

/// Where a built-in type's copies go, each with its id parameter: the
/// stream's subjects of the type, or typing's core NATS subject.
pub(super) fn builtin_copies(kind: EventType) -> Vec<(CopyOn, String)> {
    builtin_stream_subjects()
        .into_iter()
        .chain([typing_wildcard()])
        .filter_map(|filter| {
            let (copy, name) = parse_filter(&filter)?;
            (name == kind.as_str()).then(|| {
                (
                    copy,
                    builtin_parameter(copy).unwrap_or_default().to_string(),
                )
            })
        })
        .collect()
}

/// The subject's channel address: its wildcard named by `parameter`.
pub(super) fn address(copy: CopyOn, parameter: &str, kind: &str) -> String {
    let root = crate::log::subject::ROOT;
    match copy {
        CopyOn::Global => format!("{root}.global.{kind}"),
        _ => format!("{root}.{}.{{{parameter}}}.{kind}", copy.token()),
    }
}

/// The stream's default name, which `x-stream` gives.
pub(super) fn stream_name() -> String {
    crate::log::StreamSettings::default().name
}

/// The comment above the first NATS channel.
const CHANNELS_COMMENT: &str =
    "NATS: one channel per subject pattern (log::subject::stream_subjects() and \
     typing_wildcard()). `x-stream` marks a subject the stream stores (its default name; the \
     `stream` setting).";

pub(super) fn describe(sections: &mut Sections) {
    sections.servers.push("nats", server());
    let mut first = true;
    for filter in builtin_stream_subjects() {
        let Some((copy, kind)) = parse_filter(&filter) else {
            continue;
        };
        let Ok(event) = EventType::parse(kind) else {
            continue;
        };
        let key = filter.replace(".*", "").replace('.', "_");
        let parameter = builtin_parameter(copy);
        let address = address(copy, parameter.unwrap_or_default(), kind);
        let where_ = match copy {
            CopyOn::Channel if event.is_moderation() => {
                "The copy for subscribers of `channel:{channel_id}` (with `user_id`)."
            }
            CopyOn::Channel => "The copy for subscribers of `channel:{channel_id}`.",
            CopyOn::User => {
                "The user copy, for `user:{user_id}`, without `user_id`; the channel copy has the \
                 same event `id`."
            }
            CopyOn::Global => "The only copy, on the `global` subscription channel.",
        };
        let (message, headers, title) = match copy {
            CopyOn::User => (
                format!("stored_user_{kind}"),
                "storedUserCopyHeaders",
                format!("{kind} as published (user copy)"),
            ),
            _ => (
                format!("stored_{kind}"),
                "storedHeaders",
                format!("{kind} as published"),
            ),
        };

        let mut channel = map([
            ("address", Node::from(address.as_str())),
            ("title", format!("{kind} (stored)").into()),
            (
                "description",
                format!("{where_} Stored in the stream.").into(),
            ),
            ("servers", list([reference("#/servers/nats")])),
        ]);
        if let Some(parameter) = parameter {
            channel.push(
                "parameters",
                map([(
                    parameter,
                    reference(format!("#/components/parameters/{parameter}")),
                )]),
            );
        }
        channel.push(
            "messages",
            map([(kind, reference(format!("#/components/messages/{message}")))]),
        );
        channel.push("x-stream", stream_name().into());
        sections.channels.push(key.clone(), channel);
        if std::mem::take(&mut first) {
            let channels = std::mem::replace(&mut sections.channels, Node::Null);
            sections.channels = channels.comment(&key, CHANNELS_COMMENT);
        }

        sections.operations.push(
            format!("receive_{key}"),
            map([
                ("action", Node::from("receive")),
                ("title", format!("Read {address}").into()),
                (
                    "description",
                    "The gateway reads the stream in order; services publish here.".into(),
                ),
                ("channel", reference(format!("#/channels/{key}"))),
                ("messages", list([channel_message(&key, kind)])),
            ]),
        );

        sections.messages.push(
            message,
            map([
                ("name", Node::from(kind)),
                ("title", title.into()),
                ("summary", event_summary(event).into()),
                (
                    "headers",
                    reference(format!("#/components/schemas/{headers}")),
                ),
                (
                    "payload",
                    payload(map([(
                        "allOf",
                        list([
                            reference("./schemas/publish.json"),
                            map([
                                ("type", Node::from("object")),
                                (
                                    "properties",
                                    map([
                                        ("type", map([("const", Node::from(kind))])),
                                        (
                                            "data",
                                            reference(format!("./schemas/events/{kind}.json")),
                                        ),
                                    ]),
                                ),
                            ]),
                        ]),
                    )])),
                ),
            ]),
        );
    }
    typing(sections);

    for (name, description) in [
        ("channel_id", "The channel's UUID (lower-case, hyphenated)."),
        ("user_id", "The user's UUID (lower-case, hyphenated)."),
    ] {
        sections
            .parameters
            .push(name, map([("description", Node::from(description))]));
    }
    sections.schemas.push(
        "storedHeaders",
        message_id_header(
            "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$",
            "The event's `id`. The stream drops a second message with the same id within its \
             duplicate window, so a retried publish is stored once.",
        ),
    );
    sections.schemas.push(
        "storedUserCopyHeaders",
        message_id_header(
            "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}:user$",
            "`{id}:user`: the user copy of a moderation event needs a message id of its own, \
             since the channel copy already uses the event's `id`.",
        ),
    );
}

/// The core NATS typing subject: its channel, the gateway's two
/// operations on it, and the message.
fn typing(sections: &mut Sections) {
    let wildcard = typing_wildcard();
    let Some((copy, kind)) = parse_filter(&wildcard) else {
        return;
    };
    let key = wildcard.replace(".*", "").replace('.', "_");
    let parameter = builtin_parameter(copy).unwrap_or_default();
    sections.channels.push(
        key.clone(),
        map([
            ("address", Node::from(address(copy, parameter, kind))),
            ("title", format!("{kind} (core NATS)").into()),
            (
                "description",
                format!(
                    "Typing, on core NATS only: never stored (the stream takes no `{kind}` \
                     subject), never replayed. Every gateway node subscribes to `{wildcard}` and \
                     publishes its clients' typing here; any other service may publish it too."
                )
                .into(),
            ),
            ("servers", list([reference("#/servers/nats")])),
            (
                "parameters",
                map([(
                    parameter,
                    reference(format!("#/components/parameters/{parameter}")),
                )]),
            ),
            (
                "messages",
                map([(
                    kind,
                    reference(format!("#/components/messages/nats_{kind}")),
                )]),
            ),
        ]),
    );
    let operation = |action: &str, title: &str, description: String| {
        map([
            ("action", Node::from(action)),
            ("title", title.into()),
            ("description", description.into()),
            ("channel", reference(format!("#/channels/{key}"))),
            ("messages", list([channel_message(&key, kind)])),
        ])
    };
    sections.operations.push(
        format!("send_{key}"),
        operation(
            "send",
            "Publish a client's typing",
            format!("A `typing` client frame becomes `{kind}` with the identity from the token."),
        ),
    );
    sections.operations.push(
        format!("receive_{key}"),
        operation(
            "receive",
            "Read every channel's typing",
            format!("Subscribed as `{wildcard}`; fanned out to the channel's subscribers."),
        ),
    );
    sections.messages.push(
        format!("nats_{kind}"),
        map([
            ("name", Node::from(kind)),
            ("title", format!("{kind} as published on core NATS").into()),
            ("summary", event_summary(EventType::UserTyping).into()),
            (
                "description",
                format!(
                    "The stored payload's shape with type `{kind}`, no `Nats-Msg-Id` (nothing is \
                     de-duplicated, nothing stored). The gateway takes `user_id` and `username` \
                     from the token of the client that typed."
                )
                .into(),
            ),
            (
                "payload",
                payload(map([
                    ("type", Node::from("object")),
                    (
                        "properties",
                        map([
                            (
                                "id",
                                map([
                                    ("type", Node::from("string")),
                                    (
                                        "pattern",
                                        "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
                                            .into(),
                                    ),
                                ]),
                            ),
                            ("type", map([("const", Node::from(kind))])),
                            ("data", reference(format!("./schemas/events/{kind}.json"))),
                        ]),
                    ),
                    ("required", list(["id", "type", "data"].map(Node::from))),
                ])),
            ),
        ]),
    );
}

/// A headers schema with one required `Nats-Msg-Id`.
fn message_id_header(pattern: &str, description: &str) -> Node {
    payload(map([
        ("type", Node::from("object")),
        (
            "properties",
            map([(
                "Nats-Msg-Id",
                map([
                    ("type", Node::from("string")),
                    ("pattern", pattern.into()),
                    ("description", description.into()),
                ]),
            )]),
        ),
        ("required", list([Node::from("Nats-Msg-Id")])),
    ]))
}

fn server() -> Node {
    map([
        ("host", Node::from("127.0.0.1:4222")),
        ("protocol", "nats".into()),
        ("title", "The NATS deployment with the event stream".into()),
        (
            "description",
            format!(
                "The NATS server or cluster the gateway is configured with (`nats_url`). One \
                 JetStream stream (default name `{}`, the `stream` setting) stores every event \
                 type but `user_typing`, which is core NATS only. The stream has a duplicate \
                 window (`duplicate_window`, default 2 m): a publish carries `Nats-Msg-Id`, so a \
                 retried publish is stored once.",
                stream_name()
            )
            .into(),
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_subject_is_understood() {
        for filter in builtin_stream_subjects()
            .into_iter()
            .chain([typing_wildcard()])
        {
            let (_, kind) = parse_filter(&filter).unwrap_or_else(|| panic!("{filter}"));
            assert!(EventType::parse(kind).is_ok(), "{filter}");
        }
    }
}
