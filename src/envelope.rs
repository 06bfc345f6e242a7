//! The delivered envelope `{type, timestamp, data, channel, seq, id}`:
//! one event copy as clients, the history API and `replay` see it.
//!
//! An envelope is encoded once into [`Bytes`] and the same bytes go to every
//! subscriber of its channel.

use bytes::Bytes;
use chrono::{DateTime, Utc};

use crate::channel::{Channel, Id};
use crate::event::{write_timestamp, EventData};

/// A stored event copy as read from the log: what an envelope is made of.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredEvent {
    /// The log's sequence.
    pub seq: u64,
    /// The log's commit time.
    pub time: DateTime<Utc>,
    pub id: Id,
    pub channel: Channel,
    pub data: EventData,
}

impl StoredEvent {
    pub fn encode(&self) -> Bytes {
        encode(
            &self.data,
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
) -> Bytes {
    let mut out = Vec::with_capacity(320);
    // Every piece but `data` is a fixed ASCII form (type names, RFC 3339,
    // channel strings, integers, UUIDs): nothing to escape. This runs once
    // per event copy, so it writes bytes rather than going through `fmt`.
    out.extend_from_slice(br#"{"type":""#);
    out.extend_from_slice(data.kind().as_str().as_bytes());
    out.extend_from_slice(br#"","timestamp":""#);
    write_timestamp(&mut out, time);
    out.extend_from_slice(br#"","data":"#);
    data.write_json(&mut out);
    out.extend_from_slice(br#","channel":""#);
    channel.write_to(&mut out);
    out.push(b'"');
    if let Some(seq) = seq {
        out.extend_from_slice(br#","seq":"#);
        out.extend_from_slice(itoa::Buffer::new().format(seq).as_bytes());
    }
    out.extend_from_slice(br#","id":""#);
    id.write_to(&mut out);
    out.extend_from_slice(br#""}"#);
    Bytes::from(out)
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
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
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
        };
        let v: serde_json::Value = serde_json::from_slice(&stored.encode()).unwrap();
        assert_eq!(v["seq"], 7);
        assert_eq!(
            EventType::parse(v["type"].as_str().unwrap()).unwrap(),
            EventType::UserTyping
        );
    }
}
