//! Channel ⇄ subject mapping and the stored payload `{id, type, timestamp?, data}`.
//!
//! Subjects mirror the channels: `chat.channel.{id}.{type}`,
//! `chat.user.{id}.{type}`, `chat.global.{type}`. Ids are parsed strictly
//! (hyphenated UUIDs), so no input can put `.`, `*` or `>` into a subject.
//!
//! Payloads are read tolerantly (README "Publishers can be newer than the gateway"): an unknown top-level field
//! is ignored, an unknown field inside `data` is kept ([`RawData`]).

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::channel::{Channel, Id};
use crate::event::{EventData, EventError, EventType, RawData};

/// Every subject of ours starts with this token.
pub const ROOT: &str = "chat";

/// The subject one copy of an event is published on.
///
/// Written by appending, not through `format!`: it runs for every copy
/// stored.
pub fn subject(channel: Channel, kind: EventType) -> String {
    let mut out = String::with_capacity(SUBJECT_CAPACITY);
    out.push_str(ROOT);
    match channel {
        Channel::Chat(id) => {
            out.push_str(".channel.");
            id.write_to(&mut out);
        }
        Channel::User(id) => {
            out.push_str(".user.");
            id.write_to(&mut out);
        }
        Channel::Global => out.push_str(".global"),
    }
    out.push('.');
    out.push_str(kind.as_str());
    out
}

/// Room for the longest subject: `chat.channel.{uuid}.` and a type name.
const SUBJECT_CAPACITY: usize = 64;

/// The subject filter that selects every event of one channel.
pub fn filter(channel: Channel) -> String {
    match channel {
        Channel::Chat(id) => format!("{ROOT}.channel.{id}.*"),
        Channel::User(id) => format!("{ROOT}.user.{id}.*"),
        Channel::Global => format!("{ROOT}.global.*"),
    }
}

/// The subject filter that selects every event of every channel.
pub fn everything() -> String {
    format!("{ROOT}.>")
}

/// The core NATS subject that carries every channel's typing.
pub fn typing_wildcard() -> String {
    format!("{ROOT}.channel.*.{}", EventType::UserTyping)
}

/// The core NATS subjects of every ephemeral type: typing, and each
/// ephemeral added type on each of its routes.
pub fn ephemeral_subjects() -> Vec<String> {
    let mut subjects = vec![typing_wildcard()];
    for added in crate::catalog::get().added().iter().filter(|t| !t.stored) {
        for route in &added.routes {
            subjects.push(route.subject_filter(&added.name));
        }
    }
    subjects
}

/// The stream's subjects: every stored type on the channels it belongs to
/// (a stored added type on each of its routes), and never an ephemeral
/// type's.
pub fn stream_subjects() -> Vec<String> {
    let mut subjects = Vec::new();
    for added in crate::catalog::get().added().iter().filter(|t| t.stored) {
        for route in &added.routes {
            subjects.push(route.subject_filter(&added.name));
        }
    }
    subjects.extend(builtin_stream_subjects());
    subjects
}

/// The stream's subjects of the built-in types, in [`EventType::ALL`]'s
/// order: the channel copy, then the user copy of a moderation event;
/// `channel_created` on `global` only.
pub fn builtin_stream_subjects() -> Vec<String> {
    let mut subjects = Vec::new();
    for kind in EventType::ALL.iter().copied().filter(|k| k.is_stored()) {
        if kind == EventType::ChannelCreated {
            subjects.push(format!("{ROOT}.global.{kind}"));
            continue;
        }
        subjects.push(format!("{ROOT}.channel.*.{kind}"));
        if kind.is_moderation() {
            subjects.push(format!("{ROOT}.user.*.{kind}"));
        }
    }
    subjects
}

/// Why a subject is not one of ours.
#[derive(Debug, thiserror::Error)]
pub enum SubjectError {
    #[error("`{0}` is not a switchboard subject")]
    Foreign(String),
    /// One of ours but for the case of its id: the stream takes it (NATS
    /// subjects are case-sensitive, its filters are wildcards), but no
    /// channel's filter ever selects it, so no reader may deliver it.
    #[error("`{0}` is not canonical: the id in a subject is lower-case")]
    NotCanonical(String),
    /// One of ours, of a type this node's catalog does not have (a node
    /// with an older catalog, during a rollout).
    #[error("type `{0}` is not in this node's catalog")]
    UnknownType(String),
}

/// Parses a subject back into its channel and event type.
///
/// Only the canonical form parses: a subject with an upper-case id (which
/// a publisher writing straight to NATS can store) is refused, so a stored
/// event on it is invalid for every reader alike. The live router and the
/// projection read the whole stream and would see it; a channel's replay,
/// history and the CLI filter on the canonical subject and never would.
/// Refusing it here, where every reader decodes, is what keeps them equal
/// (a ban seen by one and not the other would be a leak).
pub fn parse(subject: &str) -> Result<(Channel, EventType), SubjectError> {
    let cut = || subject.chars().take(200).collect::<String>();
    let bad = || SubjectError::Foreign(cut());
    let id = |token: &str| match Id::parse(token) {
        Ok(_) if token.bytes().any(|b| b.is_ascii_uppercase()) => {
            Err(SubjectError::NotCanonical(cut()))
        }
        Ok(id) => Ok(id),
        Err(_) => Err(bad()),
    };
    let mut tokens = subject.split('.');
    if tokens.next() != Some(ROOT) {
        return Err(bad());
    }
    let (channel, kind) = match (tokens.next(), tokens.next(), tokens.next(), tokens.next()) {
        (Some("channel"), Some(token), Some(kind), None) => (Channel::Chat(id(token)?), kind),
        (Some("user"), Some(token), Some(kind), None) => (Channel::User(id(token)?), kind),
        (Some("global"), Some(kind), None, None) => (Channel::Global, kind),
        _ => return Err(bad()),
    };
    let kind = match EventType::parse(kind) {
        Ok(kind) => kind,
        Err(_) if crate::catalog::check_name(kind).is_ok() => {
            return Err(SubjectError::UnknownType(kind.to_string()))
        }
        Err(_) => return Err(bad()),
    };
    Ok((channel, kind))
}

/// Encodes one copy as the stored payload.
pub fn encode_payload(id: Id, data: &EventData) -> Bytes {
    encode_payload_kept(id, data, None)
}

/// Encodes one copy as the stored payload, its `data` the kept text `raw`
/// (as the publisher gave it) when present, else `data`'s own form.
pub fn encode_payload_kept(id: Id, data: &EventData, raw: Option<&RawData>) -> Bytes {
    let mut out = String::with_capacity(64 + raw.map_or(192, |raw| raw.as_str().len()));
    out.push_str(r#"{"id":""#);
    id.write_to(&mut out);
    out.push_str(r#"","type":""#);
    out.push_str(data.kind().as_str());
    out.push_str(r#"","data":"#);
    data.write_json_kept(raw, &mut out);
    out.push('}');
    Bytes::from(out)
}

fn present_str<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<std::borrow::Cow<'de, str>>, D::Error> {
    <std::borrow::Cow<'de, str>>::deserialize(d).map(Some)
}

/// The payload's known fields; any other top-level field is ignored, so
/// that a newer publisher may add some.
#[derive(Deserialize)]
struct PayloadIn<'a> {
    id: Id,
    #[serde(rename = "type", borrow)]
    kind: &'a str,
    /// The publisher's clock: informational (envelopes carry the log's
    /// time), but it must be an RFC 3339 time when present.
    #[serde(default, borrow, deserialize_with = "present_str")]
    timestamp: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    data: &'a RawValue,
}

/// Why a stored message is not a valid event.
#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    #[error(transparent)]
    Subject(#[from] SubjectError),
    #[error("payload is not `{{id, type, timestamp?, data}}`: {0}")]
    Shape(serde_json::Error),
    #[error("payload `timestamp` is not an RFC 3339 time: {0}")]
    Timestamp(String),
    #[error("payload type `{payload}` does not match the subject's `{subject}`")]
    TypeMismatch { payload: String, subject: EventType },
    #[error(transparent)]
    Event(#[from] EventError),
}

/// Decodes and validates a stored message: the subject names the channel
/// and type, the payload must agree with both. Unknown `data` fields are
/// dropped; [`decode_kept`] keeps them.
pub fn decode(subject: &str, payload: &[u8]) -> Result<(Channel, Id, EventData), PayloadError> {
    let (channel, kind, raw) = decode_shape(subject, payload)?;
    let data = EventData::decode(kind, raw.data.get())?;
    data.check_copy(channel)?;
    Ok((channel, raw.id, data))
}

/// A stored message decoded, with its `data` text kept.
#[derive(Clone, Debug, PartialEq)]
pub struct Decoded {
    pub channel: Channel,
    pub id: Id,
    pub data: EventData,
    /// `data` as stored, unknown fields and all.
    pub raw_data: RawData,
}

/// Decodes and validates a stored message as [`decode`] does, and keeps
/// its `data` text to be delivered as stored.
pub fn decode_kept(subject: &str, payload: &[u8]) -> Result<Decoded, PayloadError> {
    let (channel, kind, raw) = decode_shape(subject, payload)?;
    let (data, raw_data) = EventData::decode_kept(kind, raw.data.get())?;
    data.check_copy(channel)?;
    Ok(Decoded {
        channel,
        id: raw.id,
        data,
        raw_data,
    })
}

/// The subject and the payload's shape: everything but `data`'s contents.
fn decode_shape<'a>(
    subject: &str,
    payload: &'a [u8],
) -> Result<(Channel, EventType, PayloadIn<'a>), PayloadError> {
    let (channel, kind) = parse(subject)?;
    let raw: PayloadIn = serde_json::from_slice(payload).map_err(PayloadError::Shape)?;
    if let Some(t) = &raw.timestamp {
        crate::event::parse_timestamp(t).map_err(|e| PayloadError::Timestamp(e.to_string()))?;
    }
    if raw.kind != kind.as_str() {
        return Err(PayloadError::TypeMismatch {
            payload: raw.kind.chars().take(64).collect(),
            subject: kind,
        });
    }
    Ok((channel, kind, raw))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{BanChange, Event};

    const C: &str = "0b6f2c1e-3d4a-4f5b-8c9d-0e1f2a3b4c5d";
    const U: &str = "11111111-2222-4333-8444-555555555555";

    #[test]
    fn subjects_round_trip() {
        let c = Channel::parse(&format!("channel:{C}")).unwrap();
        let s = subject(c, EventType::ChannelMessage);
        assert_eq!(s, format!("chat.channel.{C}.channel_message"));
        assert_eq!(parse(&s).unwrap(), (c, EventType::ChannelMessage));
        let g = subject(Channel::Global, EventType::ChannelCreated);
        assert_eq!(
            parse(&g).unwrap(),
            (Channel::Global, EventType::ChannelCreated)
        );
    }

    #[test]
    fn foreign_subjects_are_refused() {
        for s in [
            "chat.channel.*.channel_message",
            "chat.channel.>",
            &format!("chat.channel.{C}.nope"),
            &format!("chat.channel.{C}.channel_message.extra"),
            &format!("other.channel.{C}.channel_message"),
            "chat.global",
        ] {
            assert!(parse(s).is_err(), "{s}");
        }
    }

    #[test]
    fn only_canonical_subjects_parse() {
        let upper = C.to_ascii_uppercase();
        let mixed = format!("{}{}", &upper[..8], &C[8..]);
        for s in [
            format!("chat.channel.{upper}.channel_message"),
            format!("chat.channel.{mixed}.user_banned"),
            format!("chat.user.{upper}.user_banned"),
        ] {
            assert!(
                matches!(parse(&s), Err(SubjectError::NotCanonical(_))),
                "{s}"
            );
            let payload = format!(
                r#"{{"id":"{U}","type":"channel_message","data":{{"channel_id":"{C}","message_id":"{U}","user_id":"{U}","username":"a","content":"x"}}}}"#
            );
            assert!(decode(&s, payload.as_bytes()).is_err(), "{s}");
        }
        assert!(parse(&format!("chat.channel.{C}.channel_message")).is_ok());
    }

    #[test]
    fn typing_is_never_a_stream_subject() {
        let subjects = stream_subjects();
        // Built-in ones (the unit tests' process may have a test catalog).
        let added = crate::catalog::get().added();
        let built_in = subjects
            .iter()
            .filter(|s| !added.iter().any(|t| s.ends_with(&format!(".{}", t.name))))
            .count();
        assert_eq!(built_in, 12 + 3 + 1);
        assert!(subjects.iter().all(|s| !s.contains("user_typing")));
    }

    #[test]
    fn payload_round_trips_and_checks_the_subject() {
        let event = Event::new(EventData::UserBanned(BanChange {
            channel_id: Id::parse(C).unwrap(),
            user_id: Some(Id::parse(U).unwrap()),
            motive: "spam".into(),
        }));
        for copy in event.copies() {
            let payload = encode_payload(event.id, &copy.data);
            let subj = subject(copy.channel, copy.data.kind());
            let (channel, id, data) = decode(&subj, &payload).unwrap();
            assert_eq!((channel, id, &data), (copy.channel, event.id, &copy.data));
        }
        let channel_copy = encode_payload(event.id, &event.data);
        let user_subject = subject(Channel::User(Id::parse(U).unwrap()), EventType::UserBanned);
        assert!(decode(&user_subject, &channel_copy).is_err());
        let wrong_type = subject(Channel::Chat(Id::parse(C).unwrap()), EventType::UserKicked);
        assert!(decode(&wrong_type, &channel_copy).is_err());
        assert!(decode(&wrong_type, b"not json").is_err());
    }

    #[test]
    fn unknown_fields_are_ignored_on_top_and_kept_in_data() {
        let subj = format!("chat.channel.{C}.message_deleted");
        let data = format!(r#"{{"channel_id":"{C}","message_id":"{U}","why":{{"by":"mod"}}}}"#);
        let payload = format!(
            r#"{{"id":"{U}","type":"message_deleted","trace_id":"t-1","data":{data},"v":2}}"#
        );
        let decoded = decode_kept(&subj, payload.as_bytes()).unwrap();
        assert_eq!(decoded.raw_data.as_str(), data);
        assert_eq!(decode(&subj, payload.as_bytes()).unwrap().2, decoded.data);
        let stored = encode_payload_kept(decoded.id, &decoded.data, Some(&decoded.raw_data));
        assert_eq!(decode_kept(&subj, &stored).unwrap(), decoded);
        let missing = format!(
            r#"{{"id":"{U}","type":"message_deleted","data":{{"channel_id":"{C}","why":1}}}}"#
        );
        assert!(decode_kept(&subj, missing.as_bytes()).is_err());
    }
}
