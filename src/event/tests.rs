use super::*;
use serde_json::json;

const C: &str = "0b6f2c1e-3d4a-4f5b-8c9d-0e1f2a3b4c5d";
const U: &str = "11111111-2222-4333-8444-555555555555";

fn id(s: &str) -> Id {
    Id::parse(s).unwrap()
}

/// `value` decoded as the gateway decodes `data` (from its JSON text).
fn from_value(kind: EventType, value: serde_json::Value) -> Result<EventData, EventError> {
    EventData::decode(kind, &value.to_string())
}

/// `data` as the gateway writes it, parsed.
fn to_value(data: &EventData) -> serde_json::Value {
    let mut out = String::new();
    data.write_json(&mut out);
    serde_json::from_str(&out).unwrap()
}

#[test]
fn every_type_name_round_trips() {
    assert_eq!(EventType::ALL.len(), 14);
    for kind in EventType::ALL {
        assert_eq!(EventType::parse(kind.as_str()).unwrap(), *kind);
    }
    assert!(EventType::parse("channel_exploded").is_err());
}

#[test]
fn username_is_required_but_nullable() {
    let with_null = json!({"channel_id": C, "user_id": U, "username": null});
    assert!(from_value(EventType::MemberJoined, with_null).is_ok());
    let missing = json!({"channel_id": C, "user_id": U});
    assert!(from_value(EventType::MemberJoined, missing).is_err());
}

#[test]
fn unknown_fields_are_allowed_and_bad_ids_and_non_objects_refused() {
    let extra = json!({"channel_id": C, "message_id": U, "surprise": 1});
    assert!(from_value(EventType::MessageDeleted, extra).is_ok());
    let text = format!(r#"{{"channel_id":"{C}","message_id":"{U}","surprise":[1]}}"#);
    let (data, raw) = EventData::decode_kept(EventType::MessageDeleted, &text).unwrap();
    assert_eq!(raw.as_str(), text);
    let mut written = String::new();
    data.write_json_kept(Some(&raw), &mut written);
    assert_eq!(written, text);
    let as_array = format!(r#"["{C}","{U}"]"#);
    assert!(EventData::decode(EventType::MessageDeleted, &as_array).is_err());
    assert!(from_value(EventType::MessageDeleted, json!([C, U])).is_err());
    let bad = json!({"channel_id": "not-a-uuid", "message_id": U});
    assert!(from_value(EventType::MessageDeleted, bad).is_err());
    let simple = json!({"channel_id": C.replace('-', ""), "message_id": U});
    assert!(from_value(EventType::MessageDeleted, simple).is_err());
}

#[test]
fn channel_updated_is_open_but_not_empty() {
    let data = json!({"channel_id": C, "name": "general", "topic": null});
    let parsed = from_value(EventType::ChannelUpdated, data.clone()).unwrap();
    assert_eq!(to_value(&parsed), data);
    let empty = json!({"channel_id": C});
    assert!(from_value(EventType::ChannelUpdated, empty).is_err());
}

#[test]
fn moderation_makes_two_copies_and_the_user_copy_has_no_user_id() {
    let data = EventData::UserBanned(BanChange {
        channel_id: id(C),
        user_id: Some(id(U)),
        motive: "spam".into(),
    });
    let event = Event::new(data);
    event.validate().unwrap();
    let copies = event.copies();
    assert_eq!(copies.len(), 2);
    assert!(copies.iter().all(|copy| copy.raw_data.is_none()));
    assert_eq!(copies[0].channel, Channel::Chat(id(C)));
    assert_eq!(copies[0].data.moderated_user(), Some(id(U)));
    assert_eq!(copies[1].channel, Channel::User(id(U)));
    assert_eq!(copies[1].data.moderated_user(), None);
    for copy in &copies {
        copy.data.check_copy(copy.channel).unwrap();
    }
    assert!(copies[1].data.check_copy(copies[0].channel).is_err());
    assert!(copies[0].data.check_copy(copies[1].channel).is_err());
}

#[test]
fn the_user_copy_keeps_the_publishers_fields_but_user_id() {
    let text = format!(r#"{{"channel_id":"{C}","user_id":"{U}","motive":"spam","until":7}}"#);
    let (data, raw) = EventData::decode_kept(EventType::UserBanned, &text).unwrap();
    let event = Event {
        id: id(U),
        data,
        raw_data: Some(raw),
    };
    let copies = event.copies();
    assert_eq!(copies[0].raw_data.as_ref().unwrap().as_str(), text);
    assert_eq!(
        copies[1].raw_data.as_ref().unwrap().as_str(),
        format!(r#"{{"channel_id":"{C}","motive":"spam","until":7}}"#)
    );
}

#[test]
fn a_copy_cannot_claim_another_channel() {
    let data = EventData::MessageDeleted(MessageDeleted {
        channel_id: id(C),
        message_id: id(U),
    });
    assert!(data.check_copy(Channel::Chat(id(U))).is_err());
    assert!(data.check_copy(Channel::Global).is_err());
    assert!(data.check_copy(Channel::Chat(id(C))).is_ok());
}

#[test]
fn timestamps_have_millis_and_z() {
    let t = parse_timestamp("2025-01-15T11:30:00.123456+01:00").unwrap();
    assert_eq!(format_timestamp(&t), "2025-01-15T10:30:00.123Z");
    for s in [
        "0001-02-03T04:05:06.007Z",
        "9999-12-31T23:59:59.999Z",
        "2025-01-15T10:30:00.000Z",
    ] {
        assert_eq!(format_timestamp(&parse_timestamp(s).unwrap()), s);
    }
    let chrono_form = |t: &DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Millis, true);
    let mut t = parse_timestamp("2024-02-28T23:59:58.998Z").unwrap();
    for _ in 0..5000 {
        assert_eq!(format_timestamp(&t), chrono_form(&t));
        t += chrono::Duration::microseconds(777);
    }
}
