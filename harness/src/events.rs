//! Events and frames in a test's hands: the sample of every stored type, a
//! chat message, an event's `data` as JSON, `seq`s, and the schema check
//! of a frame the gateway sent.

use serde_json::{json, Value};
use switchboard::channel::{Channel, Id};
use switchboard::event::{ChannelMessage, Event, EventData, EventError, EventType};

pub fn chat(id: Id) -> Channel {
    Channel::Chat(id)
}

/// A chat message in channel `c` whose `content` is `content`.
pub fn message(c: Id, content: impl Into<String>) -> Event {
    Event::new(EventData::ChannelMessage(ChannelMessage {
        channel_id: c,
        message_id: Id::new_v4(),
        user_id: Id::new_v4(),
        username: Some("bot".into()),
        content: content.into(),
    }))
}

/// An event's `data` as the gateway writes it, parsed.
pub fn data_value(data: &EventData) -> Value {
    let mut out = String::new();
    data.write_json(&mut out);
    serde_json::from_str(&out).expect("data is JSON")
}

/// `value` decoded as the gateway decodes an event's `data` (from its JSON
/// text).
pub fn decode_value(kind: EventType, value: &Value) -> Result<EventData, EventError> {
    EventData::decode(kind, &value.to_string())
}

/// One sample of every stored event type about channel `c` and user `u`.
pub fn samples(c: Id, u: Id) -> Vec<EventData> {
    use switchboard::event::*;
    let m = Id::new_v4();
    let mut changes = serde_json::Map::new();
    changes.insert("channel_name".into(), json!("renamed"));
    changes.insert("topic".into(), Value::Null);
    vec![
        EventData::ChannelCreated(ChannelCreated {
            channel_id: c,
            channel_name: "general".into(),
        }),
        EventData::MemberJoined(Member {
            channel_id: c,
            user_id: u,
            username: Some("ann".into()),
        }),
        EventData::ChannelMessage(ChannelMessage {
            channel_id: c,
            message_id: m,
            user_id: u,
            username: None,
            content: "hello \"world\" ✓".into(),
        }),
        EventData::MessageUpdated(MessageUpdated {
            channel_id: c,
            message_id: m,
            content: "edited".into(),
        }),
        EventData::MessageReply(MessageReply {
            channel_id: c,
            message_id: Id::new_v4(),
            parent_message_id: m,
            user_id: u,
            username: Some("ann".into()),
            content: "reply".into(),
        }),
        EventData::MessageDeleted(MessageDeleted {
            channel_id: c,
            message_id: m,
        }),
        EventData::MemberRoleUpdated(MemberRoleUpdated {
            channel_id: c,
            user_id: u,
            username: None,
            new_role: "admin".into(),
        }),
        EventData::ChannelUpdated(ChannelUpdated {
            channel_id: c,
            changes,
        }),
        EventData::UserUnbanned(BanChange {
            channel_id: c,
            user_id: Some(u),
            motive: "appeal".into(),
        }),
        EventData::UserBanned(BanChange {
            channel_id: c,
            user_id: Some(u),
            motive: "spam".into(),
        }),
        EventData::UserKicked(UserKicked {
            channel_id: c,
            user_id: Some(u),
        }),
        EventData::MemberLeft(Member {
            channel_id: c,
            user_id: u,
            username: None,
        }),
        EventData::ChannelDeleted(ChannelDeleted { channel_id: c }),
    ]
}

/// Frames' `seq`s.
pub fn seqs(frames: &[Value]) -> Vec<u64> {
    frames
        .iter()
        .map(|f| f["seq"].as_u64().expect("seq"))
        .collect()
}

/// Validates a frame the gateway sent against its schema.
pub fn assert_schema(frame: &Value) {
    use switchboard::schema::Schemas;
    let kind = frame["type"].as_str().expect("type");
    let schemas = Schemas::get();
    let control = switchboard::gateway::protocol::ControlType::ALL
        .iter()
        .any(|c| c.as_str() == kind);
    if control {
        schemas
            .check(&format!("server/{kind}"), frame)
            .unwrap_or_else(|e| panic!("{kind} frame fails its schema: {e}\n{frame}"));
    } else {
        schemas
            .check("envelope", frame)
            .unwrap_or_else(|e| panic!("envelope fails its schema: {e}\n{frame}"));
        schemas
            .check(&format!("events/{kind}"), &frame["data"])
            .unwrap_or_else(|e| panic!("{kind} data fails its schema: {e}\n{frame}"));
    }
}

/// Compares sequence lists and reports the first difference, not 40,000 numbers.
#[track_caller]
pub fn assert_seqs(got: &[u64], want: &[u64], what: &str) {
    if got == want {
        return;
    }
    let at = got
        .iter()
        .zip(want)
        .position(|(a, b)| a != b)
        .unwrap_or(got.len().min(want.len()));
    let window = |v: &[u64]| v[at.min(v.len())..(at + 5).min(v.len())].to_vec();
    panic!(
        "{what}: got {} seqs, want {}; first difference at index {at}: got {:?}…, want {:?}…",
        got.len(),
        want.len(),
        window(got),
        window(want)
    );
}
