//! The delivered envelope `{type, timestamp, data, channel, seq, id}`:
//! one event copy as clients, the history API and `replay` see it.
//!
//! An envelope is encoded once into [`Text`] and the same bytes go to every
//! subscriber of its channel.

use bytes::Bytes;
use chrono::{DateTime, Utc};

use crate::channel::{Channel, Id};
use crate::event::{write_timestamp, EventData, RawData};

/// An encoded frame: UTF-8 text in shared bytes, so that one encoding can go
/// to every subscriber (a clone is a reference count, not a copy).
///
/// Invariant: the bytes are valid UTF-8. The only constructors take a
/// `String` or a `&'static str`, so the transport may hand them on as text
/// without checking them again.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Text(Bytes);

impl Text {
    pub const fn from_static(text: &'static str) -> Text {
        Text(Bytes::from_static(text.as_bytes()))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The bytes, for a writer that takes bytes (the UTF-8 invariant holds).
    pub fn into_bytes(self) -> Bytes {
        self.0
    }
}

impl std::ops::Deref for Text {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl From<String> for Text {
    fn from(text: String) -> Text {
        Text(Bytes::from(text.into_bytes()))
    }
}

impl std::fmt::Display for Text {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.0))
    }
}

/// A stored event copy as read from the log: what an envelope is made of.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredEvent {
    /// The log's sequence.
    pub seq: u64,
    /// The log's commit time.
    pub time: DateTime<Utc>,
    pub id: Id,
    pub channel: Channel,
    /// The typed data: what the gateway validates, routes and authorizes by.
    pub data: EventData,
    /// The stored `data` text, unknown fields and all: what the envelope
    /// carries when present (always, for an event read from the log).
    pub raw_data: Option<RawData>,
}

impl StoredEvent {
    pub fn encode(&self) -> Text {
        encode_kept(
            &self.data,
            self.raw_data.as_ref(),
            &self.time,
            self.channel,
            Some(self.seq),
            self.id,
        )
    }
}

/// Encodes one envelope. `seq` is `None` only for ephemeral `user_typing`.
pub fn encode(
    data: &EventData,
    time: &DateTime<Utc>,
    channel: Channel,
    seq: Option<u64>,
    id: Id,
) -> Text {
    encode_kept(data, None, time, channel, seq, id)
}

/// Encodes one envelope whose `data` is the kept text `raw` when present
/// (written as stored, not encoded again), else `data`'s own form.
pub fn encode_kept(
    data: &EventData,
    raw: Option<&RawData>,
    time: &DateTime<Utc>,
    channel: Channel,
    seq: Option<u64>,
    id: Id,
) -> Text {
    let mut out = String::with_capacity(192 + raw.map_or(128, |raw| raw.as_str().len()));
    // Every piece but `data` is a fixed ASCII form (type names, RFC 3339,
    // channel strings, integers, UUIDs): nothing to escape. This runs once
    // per event copy, so it appends text rather than going through `fmt`.
    out.push_str(r#"{"type":""#);
    out.push_str(data.kind().as_str());
    out.push_str(r#"","timestamp":""#);
    write_timestamp(&mut out, time);
    out.push_str(r#"","data":"#);
    data.write_json_kept(raw, &mut out);
    out.push_str(r#","channel":""#);
    channel.write_to(&mut out);
    out.push('"');
    if let Some(seq) = seq {
        out.push_str(r#","seq":"#);
        out.push_str(itoa::Buffer::new().format(seq));
    }
    out.push_str(r#","id":""#);
    id.write_to(&mut out);
    out.push_str(r#""}"#);
    Text::from(out)
}

/// A `channel_message` stored in chat channel `channel` at `seq`: the
/// event the connection's and the subscription's unit tests deliver.
#[cfg(test)]
pub(crate) fn test_message(channel: Channel, seq: u64) -> StoredEvent {
    let Channel::Chat(channel_id) = channel else {
        unreachable!("tests deliver messages of chat channels")
    };
    StoredEvent {
        seq,
        time: Utc::now(),
        id: Id::new_v4(),
        channel,
        data: EventData::ChannelMessage(crate::event::ChannelMessage {
            channel_id,
            message_id: Id::new_v4(),
            user_id: Id::new_v4(),
            username: None,
            content: format!("m{seq}"),
        }),
        raw_data: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{EventType, UserTyping};

    #[test]
    fn envelope_is_the_documented_shape() {
        let c = Id::parse("0b6f2c1e-3d4a-4f5b-8c9d-0e1f2a3b4c5d").unwrap();
        let u = Id::parse("11111111-2222-4333-8444-555555555555").unwrap();
        let data = EventData::UserTyping(UserTyping {
            channel_id: c,
            user_id: u,
            username: "a \"quoted\" name".into(),
            is_typing: true,
        });
        let t = DateTime::parse_from_rfc3339("2025-01-15T10:30:00.5Z")
            .unwrap()
            .with_timezone(&Utc);
        let bytes = encode(&data, &t, Channel::Chat(c), None, u);
        let v: serde_json::Value = serde_json::from_slice(bytes.as_bytes()).unwrap();
        assert_eq!(v["type"], "user_typing");
        assert_eq!(v["timestamp"], "2025-01-15T10:30:00.500Z");
        assert_eq!(v["data"]["username"], "a \"quoted\" name");
        assert_eq!(v["channel"], format!("channel:{c}"));
        assert!(v.get("seq").is_none());
        let stored = StoredEvent {
            seq: 7,
            time: t,
            id: u,
            channel: Channel::Chat(c),
            data,
            raw_data: None,
        };
        let v: serde_json::Value = serde_json::from_slice(stored.encode().as_bytes()).unwrap();
        assert_eq!(v["seq"], 7);
        assert_eq!(
            EventType::parse(v["type"].as_str().unwrap()).unwrap(),
            EventType::UserTyping
        );
    }

    #[test]
    fn a_kept_data_text_is_written_as_stored() {
        let text = r#"{"channel_id":"0b6f2c1e-3d4a-4f5b-8c9d-0e1f2a3b4c5d", "message_id":"11111111-2222-4333-8444-555555555555","att":[{"n":1.50}]}"#;
        let (data, raw) = EventData::decode_kept(EventType::MessageDeleted, text).unwrap();
        let stored = StoredEvent {
            seq: 3,
            time: Utc::now(),
            id: data.channel_id(),
            channel: Channel::Chat(data.channel_id()),
            data,
            raw_data: Some(raw),
        };
        let frame = stored.encode().to_string();
        assert!(
            frame.contains(&format!(r#","data":{text},"channel":"#)),
            "{frame}"
        );
    }
}
