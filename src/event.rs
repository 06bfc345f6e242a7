//! Domain events: the 14 event types, their typed `data`, their validation
//! and the routing rule (which subscription channels one event goes to).
//!
//! Validation is tolerant (README "Publishers can be newer than the gateway"): required fields, their types,
//! ids and `type` are strict; a field this version does not know is
//! allowed, and kept as the publisher wrote it in [`RawData`] beside the
//! typed data, so that it reaches clients unchanged.
//!
//! Architecture invariant: nothing here knows about NATS, sled or warp. The
//! serde form of [`EventData`] is the `data` object the gateway writes for an
//! event it made itself; a kept [`RawData`] is written instead when there is one.
//!
//! The 14 `data` structs, the one macro table that maps them to type
//! names, and their checks stay in this one file: they are one catalog,
//! read and changed together. Its unit tests are in `event/tests.rs`.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Deserializer, Serialize};

use crate::catalog::{AddedType, Route};
use crate::channel::{Channel, Id};

mod raw;

pub use raw::RawData;

/// Why an event is not acceptable.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("unknown event type `{0}`")]
    UnknownType(String),
    #[error("invalid `{kind}` data: {source}")]
    Data {
        kind: &'static str,
        source: serde_json::Error,
    },
    #[error("invalid `{kind}` data: not a JSON object")]
    NotObject { kind: &'static str },
    #[error("invalid `{kind}` event: {reason}")]
    Rule { kind: &'static str, reason: String },
    #[error(
        "`user_typing` is ephemeral: it is never stored; send it over the WebSocket or core NATS"
    )]
    Ephemeral,
}

fn nullable<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Option::<String>::deserialize(d)
}

/// An optional field that, when present, must be an id (never `null`).
fn present_id<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Id>, D::Error> {
    Id::deserialize(d).map(Some)
}

/// `channel_message`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChannelMessage {
    pub channel_id: Id,
    pub message_id: Id,
    pub user_id: Id,
    #[serde(deserialize_with = "nullable")]
    pub username: Option<String>,
    pub content: String,
}

/// `message_updated`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MessageUpdated {
    pub channel_id: Id,
    pub message_id: Id,
    pub content: String,
}

/// `message_deleted`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MessageDeleted {
    pub channel_id: Id,
    pub message_id: Id,
}

/// `message_reply`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MessageReply {
    pub channel_id: Id,
    pub message_id: Id,
    pub parent_message_id: Id,
    pub user_id: Id,
    #[serde(deserialize_with = "nullable")]
    pub username: Option<String>,
    pub content: String,
}

/// `member_joined` and `member_left`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Member {
    pub channel_id: Id,
    pub user_id: Id,
    #[serde(deserialize_with = "nullable")]
    pub username: Option<String>,
}

/// `member_role_updated`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MemberRoleUpdated {
    pub channel_id: Id,
    pub user_id: Id,
    #[serde(deserialize_with = "nullable")]
    pub username: Option<String>,
    pub new_role: String,
}

/// `user_banned` and `user_unbanned`. `user_id` is on the channel copy only.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BanChange {
    pub channel_id: Id,
    #[serde(
        default,
        deserialize_with = "present_id",
        skip_serializing_if = "Option::is_none"
    )]
    pub user_id: Option<Id>,
    pub motive: String,
}

/// `user_kicked`. `user_id` is on the channel copy only.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UserKicked {
    pub channel_id: Id,
    #[serde(
        default,
        deserialize_with = "present_id",
        skip_serializing_if = "Option::is_none"
    )]
    pub user_id: Option<Id>,
}

/// `channel_created`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChannelCreated {
    pub channel_id: Id,
    pub channel_name: String,
}

/// `channel_updated`: the channel id plus whichever fields changed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChannelUpdated {
    pub channel_id: Id,
    #[serde(flatten)]
    pub changes: serde_json::Map<String, serde_json::Value>,
}

/// `channel_deleted`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChannelDeleted {
    pub channel_id: Id,
}

/// `user_typing` (ephemeral).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UserTyping {
    pub channel_id: Id,
    pub user_id: Id,
    pub username: String,
    pub is_typing: bool,
}

/// An added type: its index in the installed catalog.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct Kind(pub u16);

impl Kind {
    /// The type's definition in the installed catalog.
    pub fn added(self) -> Option<&'static AddedType> {
        crate::catalog::get().at(self.0)
    }

    pub fn name(self) -> &'static str {
        self.added()
            .map_or("unknown_added_type", |t| t.name.as_str())
    }
}

/// The `data` of an event of an added type: its text, validated against
/// the type's schema, and the channels its routes give, in route order.
#[derive(Clone, Debug, PartialEq)]
pub struct AddedData {
    pub kind: Kind,
    /// The `data` object's JSON text (its route ids in canonical form).
    pub text: std::sync::Arc<str>,
    pub channels: Vec<Channel>,
}

impl AddedData {
    fn decode(kind: Kind, json: &str) -> Result<AddedData, EventError> {
        let name = kind.name();
        let added = kind
            .added()
            .ok_or(EventError::UnknownType(name.to_string()))?;
        let value: serde_json::Value =
            serde_json::from_str(json).map_err(|source| EventError::Data { kind: name, source })?;
        let object = value
            .as_object()
            .ok_or(EventError::NotObject { kind: name })?;
        added
            .check(&value)
            .map_err(|reason| EventError::Rule { kind: name, reason })?;
        let channels = added
            .routes
            .iter()
            .map(|route| route.channel(object))
            .collect::<Result<Vec<Channel>, String>>()
            .map_err(|reason| EventError::Rule { kind: name, reason })?;
        let mut data = AddedData {
            kind,
            text: std::sync::Arc::from(json),
            channels,
        };
        // Canonical already (the common case) when no route id differs
        // from its canonical form and nothing is escaped: no second parse.
        // The routes parsed their ids (only the hyphenated form parses), so
        // an id field is canonical unless it has an upper-case digit.
        let canonical = !json.contains('\\')
            && added.routes.iter().all(|route| match route {
                Route::Channel(field) | Route::User(field) => object
                    .get(field)
                    .and_then(serde_json::Value::as_str)
                    .is_some_and(|given| !given.bytes().any(|b| b.is_ascii_uppercase())),
                Route::Global => true,
            });
        if !canonical {
            let kept = RawData::keep(json, &EventData::Added(data.clone()))?;
            data.text = std::sync::Arc::from(kept.as_str());
        }
        Ok(data)
    }

    /// The route fields and their ids, for the canonical text.
    fn id_fields(&self) -> Vec<(&'static str, Id)> {
        let Some(added) = self.kind.added() else {
            return Vec::new();
        };
        added
            .routes
            .iter()
            .zip(&self.channels)
            .filter_map(|(route, channel)| match (route, channel) {
                (Route::Channel(field), Channel::Chat(id))
                | (Route::User(field), Channel::User(id)) => Some((field.as_str(), *id)),
                _ => None,
            })
            .collect()
    }
}

macro_rules! event_types {
    ($($variant:ident($data:ty) = $name:literal,)*) => {
        /// The type of an event, as named in `type`: a built-in one, or
        /// one the installed catalog adds ([`crate::catalog`]).
        #[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
        pub enum EventType { $($variant,)* Added(Kind) }

        impl EventType {
            /// Every built-in type, in the catalog's order.
            pub const ALL: &'static [EventType] = &[$(EventType::$variant,)*];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(EventType::$variant => $name,)*
                    EventType::Added(kind) => kind.name(),
                }
            }

            /// A built-in type, or one the installed catalog adds.
            pub fn parse(s: &str) -> Result<EventType, EventError> {
                match s {
                    $($name => Ok(EventType::$variant),)*
                    _ => crate::catalog::get()
                        .find(s)
                        .map(|index| EventType::Added(Kind(index)))
                        .ok_or_else(|| EventError::UnknownType(s.chars().take(64).collect())),
                }
            }
        }

        /// The typed `data` of an event; its serde form is the envelope's `data`.
        #[derive(Clone, Debug, PartialEq)]
        pub enum EventData { $($variant($data),)* Added(AddedData) }

        impl EventData {
            pub fn kind(&self) -> EventType {
                match self {
                    $(EventData::$variant(_) => EventType::$variant,)*
                    EventData::Added(d) => EventType::Added(d.kind),
                }
            }

            /// Decodes `data` of the given type from JSON text: required
            /// fields strict, unknown fields allowed (and dropped here; see
            /// [`EventData::decode_kept`] to keep them).
            pub fn decode(kind: EventType, json: &str) -> Result<EventData, EventError> {
                // A struct would also decode from an array of its fields in order.
                if !json.trim_start().starts_with('{') {
                    return Err(EventError::NotObject { kind: kind.as_str() });
                }
                let data = match kind {
                    $(EventType::$variant => serde_json::from_str(json).map(EventData::$variant),)*
                    EventType::Added(kind) => return AddedData::decode(kind, json).map(EventData::Added),
                };
                let data = data.map_err(|source| EventError::Data { kind: kind.as_str(), source })?;
                data.check_fields()?;
                Ok(data)
            }

            /// Appends the `data` object as JSON. These types (strings, ids,
            /// string-keyed maps) always serialize; should one ever fail, an
            /// empty object stands in, so the frame stays valid JSON and
            /// fails validation loudly instead of carrying broken bytes.
            pub fn write_json(&self, out: &mut String) {
                let written = match self {
                    $(EventData::$variant(d) => serde_json::to_string(d),)*
                    EventData::Added(d) => {
                        out.push_str(&d.text);
                        return;
                    }
                };
                match written {
                    Ok(json) => out.push_str(&json),
                    Err(_) => out.push_str("{}"),
                }
            }
        }
    };
}

event_types! {
    ChannelMessage(ChannelMessage) = "channel_message",
    MessageUpdated(MessageUpdated) = "message_updated",
    MessageDeleted(MessageDeleted) = "message_deleted",
    MessageReply(MessageReply) = "message_reply",
    MemberJoined(Member) = "member_joined",
    MemberLeft(Member) = "member_left",
    MemberRoleUpdated(MemberRoleUpdated) = "member_role_updated",
    UserBanned(BanChange) = "user_banned",
    UserUnbanned(BanChange) = "user_unbanned",
    UserKicked(UserKicked) = "user_kicked",
    ChannelCreated(ChannelCreated) = "channel_created",
    ChannelUpdated(ChannelUpdated) = "channel_updated",
    ChannelDeleted(ChannelDeleted) = "channel_deleted",
    UserTyping(UserTyping) = "user_typing",
}

impl std::fmt::Display for EventType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for EventType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl EventType {
    /// Whether the log keeps events of this type (all built-in ones but
    /// `user_typing`; an added one as its catalog file says).
    pub fn is_stored(self) -> bool {
        match self {
            EventType::UserTyping => false,
            EventType::Added(kind) => kind.added().is_some_and(|t| t.stored),
            _ => true,
        }
    }

    /// Moderation events go to the channel and, without `user_id`, to the user.
    pub fn is_moderation(self) -> bool {
        matches!(
            self,
            EventType::UserBanned | EventType::UserUnbanned | EventType::UserKicked
        )
    }
}

impl EventData {
    /// Decodes `data` as [`EventData::decode`] does and keeps its text,
    /// unknown fields and all, to be stored and delivered as given.
    pub fn decode_kept(kind: EventType, json: &str) -> Result<(EventData, RawData), EventError> {
        let data = EventData::decode(kind, json)?;
        let raw = match &data {
            // Its text is the kept text, made canonical when decoded.
            EventData::Added(added) => RawData::of_added(added),
            _ => RawData::keep(json, &data)?,
        };
        Ok((data, raw))
    }

    /// Appends the `data` object: the kept text when there is one, else
    /// the typed data's own form.
    pub fn write_json_kept(&self, raw: Option<&RawData>, out: &mut String) {
        match raw {
            Some(raw) => out.push_str(raw.as_str()),
            None => self.write_json(out),
        }
    }

    /// The id fields the typed data reads, by name: what a kept
    /// [`RawData`] writes in canonical form.
    fn id_fields(&self) -> Vec<(&'static str, Id)> {
        if let EventData::Added(d) = self {
            return d.id_fields();
        }
        let fields = self.builtin_id_fields();
        fields.into_iter().flatten().collect()
    }

    fn builtin_id_fields(&self) -> [Option<(&'static str, Id)>; 4] {
        let channel = Some(("channel_id", self.channel_id()));
        let user = |id: Id| Some(("user_id", id));
        let message = |id: Id| Some(("message_id", id));
        match self {
            EventData::ChannelMessage(d) => [channel, message(d.message_id), user(d.user_id), None],
            EventData::MessageUpdated(d) => [channel, message(d.message_id), None, None],
            EventData::MessageDeleted(d) => [channel, message(d.message_id), None, None],
            EventData::MessageReply(d) => [
                channel,
                message(d.message_id),
                user(d.user_id),
                Some(("parent_message_id", d.parent_message_id)),
            ],
            EventData::MemberJoined(d) | EventData::MemberLeft(d) => {
                [channel, user(d.user_id), None, None]
            }
            EventData::MemberRoleUpdated(d) => [channel, user(d.user_id), None, None],
            EventData::UserBanned(_) | EventData::UserUnbanned(_) | EventData::UserKicked(_) => {
                [channel, self.moderated_user().and_then(user), None, None]
            }
            EventData::UserTyping(d) => [channel, user(d.user_id), None, None],
            EventData::ChannelCreated(_)
            | EventData::ChannelUpdated(_)
            | EventData::ChannelDeleted(_)
            | EventData::Added(_) => [channel, None, None, None],
        }
    }

    /// The chat channel the event is about (for an added type, its first
    /// chat route's, else the nil id: its channels are
    /// [`AddedData::channels`]).
    pub fn channel_id(&self) -> Id {
        match self {
            EventData::ChannelMessage(d) => d.channel_id,
            EventData::MessageUpdated(d) => d.channel_id,
            EventData::MessageDeleted(d) => d.channel_id,
            EventData::MessageReply(d) => d.channel_id,
            EventData::MemberJoined(d) | EventData::MemberLeft(d) => d.channel_id,
            EventData::MemberRoleUpdated(d) => d.channel_id,
            EventData::UserBanned(d) | EventData::UserUnbanned(d) => d.channel_id,
            EventData::UserKicked(d) => d.channel_id,
            EventData::ChannelCreated(d) => d.channel_id,
            EventData::ChannelUpdated(d) => d.channel_id,
            EventData::ChannelDeleted(d) => d.channel_id,
            EventData::UserTyping(d) => d.channel_id,
            EventData::Added(d) => d
                .channels
                .iter()
                .find_map(|c| match c {
                    Channel::Chat(id) => Some(*id),
                    _ => None,
                })
                .unwrap_or(Id(uuid::Uuid::nil())),
        }
    }

    /// The user a moderation event is about, where the copy carries it.
    pub fn moderated_user(&self) -> Option<Id> {
        match self {
            EventData::UserBanned(d) | EventData::UserUnbanned(d) => d.user_id,
            EventData::UserKicked(d) => d.user_id,
            _ => None,
        }
    }

    fn set_moderated_user(&mut self, user: Option<Id>) {
        match self {
            EventData::UserBanned(d) | EventData::UserUnbanned(d) => d.user_id = user,
            EventData::UserKicked(d) => d.user_id = user,
            _ => {}
        }
    }

    /// Rules a field-by-field decode cannot express.
    fn check_fields(&self) -> Result<(), EventError> {
        if let EventData::ChannelUpdated(d) = self {
            if d.changes.is_empty() {
                return Err(EventError::Rule {
                    kind: "channel_updated",
                    reason: "carries no changed field besides `channel_id`".into(),
                });
            }
        }
        Ok(())
    }

    /// Checks that this copy belongs on `channel`: a channel copy names its
    /// own channel (and, for moderation, the user); a user copy has no
    /// `user_id`; `channel_created` is global.
    pub fn check_copy(&self, channel: Channel) -> Result<(), EventError> {
        let kind = self.kind();
        let rule = |reason: String| EventError::Rule {
            kind: kind.as_str(),
            reason,
        };
        if let EventData::Added(d) = self {
            return match d.channels.contains(&channel) {
                true => Ok(()),
                false => Err(rule(format!("its routes do not lead to `{channel}`"))),
            };
        }
        match (kind, channel) {
            (EventType::ChannelCreated, Channel::Global) => Ok(()),
            (EventType::ChannelCreated, other) => {
                Err(rule(format!("belongs on `global`, not `{other}`")))
            }
            (k, Channel::User(_)) if k.is_moderation() => match self.moderated_user() {
                None => Ok(()),
                Some(_) => Err(rule("the user copy must not carry `user_id`".into())),
            },
            (_, Channel::Chat(id)) if id == self.channel_id() => {
                if kind.is_moderation() && self.moderated_user().is_none() {
                    return Err(rule("the channel copy must carry `user_id`".into()));
                }
                Ok(())
            }
            (_, other) => Err(rule(format!(
                "data.channel_id {} does not belong on `{other}`",
                self.channel_id()
            ))),
        }
    }
}

/// One domain event: its id and typed data, and the data's text as its
/// publisher gave it, when it came as text. Moderation events carry
/// `user_id`; their user copy is derived by [`Event::copies`].
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    pub id: Id,
    pub data: EventData,
    /// What is stored as `data` when present (with any fields this version
    /// does not know); else the typed data's own form.
    pub raw_data: Option<RawData>,
}

/// One copy of an event, for one subscription channel.
#[derive(Clone, Debug, PartialEq)]
pub struct Copy {
    pub channel: Channel,
    pub data: EventData,
    pub raw_data: Option<RawData>,
}

impl Event {
    pub fn new(data: EventData) -> Event {
        Event {
            id: Id::new_v4(),
            data,
            raw_data: None,
        }
    }

    pub fn kind(&self) -> EventType {
        self.data.kind()
    }

    /// Checks what a publisher must give: a moderation event names its user.
    pub fn validate(&self) -> Result<(), EventError> {
        self.data.check_fields()?;
        if self.kind().is_moderation() && self.data.moderated_user().is_none() {
            return Err(EventError::Rule {
                kind: self.kind().as_str(),
                reason: "`user_id` is required when publishing".into(),
            });
        }
        Ok(())
    }

    /// The routing rule: the channel copy for channel events, plus a user copy
    /// without `user_id` for moderation, `global` for `channel_created`.
    pub fn copies(&self) -> Vec<Copy> {
        if let EventData::Added(d) = &self.data {
            return d
                .channels
                .iter()
                .map(|channel| Copy {
                    channel: *channel,
                    data: self.data.clone(),
                    raw_data: self.raw_data.clone(),
                })
                .collect();
        }
        let home = Copy {
            channel: self.home_channel(),
            data: self.data.clone(),
            raw_data: self.raw_data.clone(),
        };
        std::iter::once(home).chain(self.user_copy()).collect()
    }

    /// The channel the event itself (with every field) goes to: `global`
    /// for `channel_created`, else its chat channel.
    pub fn home_channel(&self) -> Channel {
        match self.kind() {
            EventType::ChannelCreated => Channel::Global,
            EventType::Added(_) => match &self.data {
                EventData::Added(d) => d.channels.first().copied().unwrap_or(Channel::Global),
                _ => Channel::Global,
            },
            _ => Channel::Chat(self.data.channel_id()),
        }
    }

    /// The user copy of a moderation event: on `user:{id}`, without
    /// `user_id` (and with the other fields the publisher gave).
    pub fn user_copy(&self) -> Option<Copy> {
        let user = self.data.moderated_user()?;
        let mut data = self.data.clone();
        data.set_moderated_user(None);
        Some(Copy {
            channel: Channel::User(user),
            data,
            raw_data: self
                .raw_data
                .as_ref()
                .and_then(|raw| raw.without("user_id")),
        })
    }
}

/// RFC 3339, UTC, millisecond precision, `Z`: the envelope's timestamp form.
pub fn format_timestamp(t: &DateTime<Utc>) -> String {
    let mut out = String::with_capacity(24);
    write_timestamp(&mut out, t);
    out
}

/// Appends [`format_timestamp`]'s form without the formatting machinery:
/// it runs once per delivered event.
pub fn write_timestamp(out: &mut String, t: &DateTime<Utc>) {
    use chrono::{Datelike, Timelike};
    let year = t.year();
    if !(0..=9999).contains(&year) {
        out.push_str(&t.to_rfc3339_opts(SecondsFormat::Millis, true));
        return;
    }
    let digits = |out: &mut String, n: u32, width: u32| {
        for i in (0..width).rev() {
            out.push(char::from(b'0' + (n / 10u32.pow(i) % 10) as u8));
        }
    };
    digits(out, year as u32, 4);
    out.push('-');
    digits(out, t.month(), 2);
    out.push('-');
    digits(out, t.day(), 2);
    out.push('T');
    digits(out, t.hour(), 2);
    out.push(':');
    digits(out, t.minute(), 2);
    out.push(':');
    digits(out, t.second(), 2);
    out.push('.');
    // A leap second shows as 59.999, never as 60.
    digits(out, t.timestamp_subsec_millis().min(999), 3);
    out.push('Z');
}

/// Parses a client's or publisher's RFC 3339 time.
pub fn parse_timestamp(s: &str) -> Result<DateTime<Utc>, chrono::ParseError> {
    DateTime::parse_from_rfc3339(s).map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod added_tests;
