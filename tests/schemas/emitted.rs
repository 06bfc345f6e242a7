//! (b) What the code emits passes the schemas: event data, envelopes and
//! stored payloads, each decoding back to what was emitted.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde_json::Value;
use switchboard::channel::{Channel, Id};
use switchboard::envelope::{self, StoredEvent};
use switchboard::event::{Event, EventData, UserTyping};
use switchboard::log::subject;

use crate::{schemas, upper_id};
use switchboard_harness::{data_value, decode_value, samples};

fn typing(c: Id, u: Id) -> EventData {
    EventData::UserTyping(UserTyping {
        channel_id: c,
        user_id: u,
        username: "ann \"the typist\" ✓".into(),
        is_typing: true,
    })
}

fn log_time() -> DateTime<Utc> {
    // Sub-millisecond digits, which the envelope must drop.
    DateTime::parse_from_rfc3339("2025-01-15T10:30:00.123456789Z")
        .expect("time")
        .with_timezone(&Utc)
}

#[test]
fn every_emitted_data_object_passes_its_schema_and_decodes_back() {
    let (c, u) = (upper_id(), upper_id());
    let mut all = samples(c, u);
    all.push(typing(c, u));
    let mut kinds = BTreeSet::new();
    let mut user_copies = 0;
    for data in all {
        let event = Event::new(data);
        for copy in event.copies() {
            let kind = copy.data.kind();
            kinds.insert(kind);
            let value = data_value(&copy.data);
            if let Err(e) = schemas().check_data(kind, &value) {
                panic!(
                    "{kind} copy on {} fails its schema: {e}\n{value}",
                    copy.channel
                );
            }
            let back = decode_value(kind, &value)
                .unwrap_or_else(|e| panic!("{kind} does not decode back: {e}"));
            assert_eq!(back, copy.data, "{kind} round-trips");
            let mut written = String::new();
            copy.data.write_json(&mut written);
            let written: Value = serde_json::from_str(&written).expect("write_json is JSON");
            assert_eq!(written, value, "write_json and to_value agree for {kind}");
            if let Channel::User(_) = copy.channel {
                user_copies += 1;
                assert!(
                    value.get("user_id").is_none(),
                    "user copy of {kind} has no user_id"
                );
            }
        }
    }
    assert_eq!(kinds.len(), 14, "every type was emitted: {kinds:?}");
    assert_eq!(user_copies, 3, "ban, unban and kick each have a user copy");
}

#[test]
fn every_envelope_passes_the_envelope_schema() {
    let (c, u) = (upper_id(), upper_id());
    let time = log_time();
    let mut all = samples(c, u);
    all.push(typing(c, u));
    let mut seq = 0;
    for data in all {
        let event = Event::new(data);
        for copy in event.copies() {
            seq += 1;
            let stored = copy.data.kind().is_stored();
            let frame = envelope::encode(
                &copy.data,
                &time,
                copy.channel,
                stored.then_some(seq),
                event.id,
            );
            let frame: Value = serde_json::from_slice(&frame).expect("envelope is JSON");
            switchboard_harness::assert_schema(&frame);
            assert_eq!(frame["timestamp"], "2025-01-15T10:30:00.123Z");
            assert_eq!(frame["channel"], copy.channel.to_string());
            assert_eq!(frame["data"], data_value(&copy.data));
            assert_eq!(frame["id"], event.id.to_string());
            if stored {
                let via_stored = StoredEvent {
                    seq,
                    time,
                    id: event.id,
                    channel: copy.channel,
                    data: copy.data.clone(),
                    raw_data: None,
                }
                .encode();
                let via_stored: Value = serde_json::from_slice(&via_stored).expect("JSON");
                assert_eq!(via_stored, frame, "StoredEvent::encode is encode");
            }
            // The schema has teeth: the wrong `seq` presence is refused.
            let wrong = envelope::encode(
                &copy.data,
                &time,
                copy.channel,
                (!stored).then_some(seq),
                event.id,
            );
            let wrong: Value = serde_json::from_slice(&wrong).expect("JSON");
            assert!(
                schemas().check("envelope", &wrong).is_err(),
                "envelope schema must refuse {wrong}"
            );
        }
    }
}

#[test]
fn a_user_presence_envelope_passes_its_schemas() {
    let change = switchboard::presence::view::Change {
        channel: upper_id(),
        user: upper_id(),
        username: "ann \"here\" ✓".into(),
        online: false,
    };
    let frame = switchboard::gateway::presence::user_presence(&change, &log_time());
    let frame: Value = serde_json::from_slice(&frame).expect("envelope is JSON");
    switchboard_harness::assert_schema(&frame);
    assert_eq!(frame["type"], "user_presence");
    assert_eq!(frame["channel"], Channel::Chat(change.channel).to_string());
    assert_eq!(frame["data"]["username"], change.username);
    assert_eq!(frame["data"]["online"], false);
    assert!(frame.get("seq").is_none());
    // The schema has teeth: a `seq` is refused.
    let mut wrong = frame.clone();
    wrong["seq"] = 1.into();
    assert!(schemas().check("envelope", &wrong).is_err());
}

#[test]
fn every_stored_payload_passes_the_publish_schema_and_decodes_back() {
    let (c, u) = (upper_id(), upper_id());
    for data in samples(c, u) {
        let event = Event::new(data);
        for copy in event.copies() {
            let payload = subject::encode_payload(event.id, &copy.data);
            let value: Value = serde_json::from_slice(&payload).expect("payload is JSON");
            if let Err(e) = schemas().check("publish", &value) {
                panic!("payload fails publish.json: {e}\n{value}");
            }
            schemas()
                .check_data(copy.data.kind(), &value["data"])
                .expect("payload data passes its schema");
            let subj = subject::subject(copy.channel, copy.data.kind());
            let (channel, id, back) = subject::decode(&subj, &payload).expect("decodes back");
            assert_eq!((channel, id, &back), (copy.channel, event.id, &copy.data));
            // The kept text of what the gateway stored is its own form.
            let kept = subject::decode_kept(&subj, &payload).expect("decodes back");
            let kept: Value = serde_json::from_str(kept.raw_data.as_str()).expect("JSON");
            assert_eq!(kept, data_value(&copy.data));
        }
    }
}
