//! (c) The schema and the typed decoder agree on what is valid and what is
//! not: hand-written tables, random mutations, and stored payloads.

use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestRunner};
use serde_json::{json, Map, Value};
use switchboard::event::{EventData, EventType};
use switchboard::log::subject;

use switchboard_harness::{data_value, decode_value};

use crate::{schemas, C, M, U};

/// A valid data object of each type, written by hand (not by the code).
fn valid(kind: EventType) -> Value {
    match kind {
        EventType::ChannelMessage => json!({
            "channel_id": C, "message_id": M, "user_id": U, "username": "ann", "content": "hi"}),
        EventType::MessageUpdated => json!({"channel_id": C, "message_id": M, "content": "edit"}),
        EventType::MessageDeleted => json!({"channel_id": C, "message_id": M}),
        EventType::MessageReply => json!({
            "channel_id": C, "message_id": M, "parent_message_id": U, "user_id": U,
            "username": "ann", "content": "re"}),
        EventType::MemberJoined | EventType::MemberLeft => {
            json!({"channel_id": C, "user_id": U, "username": "ann"})
        }
        EventType::MemberRoleUpdated => {
            json!({"channel_id": C, "user_id": U, "username": "ann", "new_role": "admin"})
        }
        EventType::UserBanned | EventType::UserUnbanned => {
            json!({"channel_id": C, "user_id": U, "motive": "spam"})
        }
        EventType::UserKicked => json!({"channel_id": C, "user_id": U}),
        EventType::ChannelCreated => json!({"channel_id": C, "channel_name": "general"}),
        EventType::ChannelUpdated => json!({"channel_id": C, "channel_name": "renamed"}),
        EventType::ChannelDeleted => json!({"channel_id": C}),
        EventType::UserTyping => {
            json!({"channel_id": C, "user_id": U, "username": "ann", "is_typing": true})
        }
        EventType::Added(_) => unreachable!("these tests take the built-in types"),
    }
}

/// Fields that must be present (docs/events.md: all but moderation's `user_id`).
fn required(kind: EventType) -> Vec<String> {
    valid(kind)
        .as_object()
        .expect("object")
        .keys()
        .filter(|k| !(kind.is_moderation() && *k == "user_id"))
        .filter(|k| !(kind == EventType::ChannelUpdated && *k == "channel_name"))
        .cloned()
        .collect()
}

fn is_id_field(field: &str) -> bool {
    field.ends_with("_id")
}

/// Shapes no id may have.
fn bad_ids() -> Vec<(&'static str, Value)> {
    vec![
        ("not a uuid", json!("not-a-uuid")),
        ("simple form (no hyphens)", json!(C.replace('-', ""))),
        ("braced", json!(format!("{{{C}}}"))),
        ("urn", json!(format!("urn:uuid:{C}"))),
        ("non-hex digit", json!(C.replace('c', "g"))),
        (
            "hyphen misplaced",
            json!("0b6f2c1e3-d4a-4f5b-8c9d-0e1f2a3b4c5d"),
        ),
        ("one digit short", json!(&C[..35])),
        ("trailing space", json!(format!("{C} "))),
        ("number", json!(12345)),
        ("array", json!([C])),
        ("object", json!({"id": C})),
    ]
}

fn bad_strings() -> Vec<(&'static str, Value)> {
    vec![
        ("number", json!(42)),
        ("float", json!(4.2)),
        ("bool", json!(true)),
        ("array", json!(["hi"])),
        ("object", json!({"text": "hi"})),
    ]
}

/// Hand-written invalid data: (type, what is wrong, data).
fn invalid_table() -> Vec<(EventType, String, Value)> {
    let mut out = Vec::new();
    for &kind in EventType::ALL {
        let base = valid(kind);
        for not_object in [json!(null), json!([]), json!("x"), json!(1), json!(true)] {
            out.push((kind, format!("data is {not_object}"), not_object));
        }
        out.push((kind, "empty object".into(), json!({})));
        for field in required(kind) {
            let mut v = base.clone();
            v.as_object_mut().expect("object").remove(&field);
            out.push((kind, format!("missing `{field}`"), v));
        }
        let fields: Vec<String> = base.as_object().expect("object").keys().cloned().collect();
        for field in &fields {
            let with = |value: Value| {
                let mut v = base.clone();
                v[field.as_str()] = value;
                v
            };
            if is_id_field(field) {
                for (what, bad) in bad_ids() {
                    out.push((kind, format!("`{field}` is {what}"), with(bad)));
                }
                // Moderation's optional `user_id` too: present means an id.
                out.push((kind, format!("`{field}` is null"), with(Value::Null)));
            } else if kind == EventType::ChannelUpdated {
                // Changed fields may hold any value.
            } else if field == "is_typing" {
                for bad in [json!("true"), json!(1), json!(null), json!([true])] {
                    out.push((kind, format!("`is_typing` is {bad}"), with(bad)));
                }
            } else {
                for (what, bad) in bad_strings() {
                    out.push((kind, format!("`{field}` is a {what}"), with(bad)));
                }
                let nullable = field == "username" && kind != EventType::UserTyping;
                if !nullable {
                    out.push((kind, format!("`{field}` is null"), with(Value::Null)));
                }
            }
        }
        // Unknown fields are allowed, but not in place of a required one.
        for field in required(kind) {
            let mut v = base.clone();
            let map = v.as_object_mut().expect("object");
            if let Some(value) = map.remove(&field) {
                map.insert(field.to_uppercase(), value);
            }
            if kind != EventType::ChannelUpdated || field == "channel_id" {
                out.push((kind, format!("`{field}` only in another case"), v));
            }
        }
    }
    out.push((
        EventType::ChannelUpdated,
        "only `channel_id`".into(),
        json!({"channel_id": C}),
    ));
    out.push((
        EventType::ChannelUpdated,
        "changes without `channel_id`".into(),
        json!({"channel_name": "x", "topic": "y"}),
    ));
    out.push((
        EventType::UserTyping,
        "`username` null (typing always names the user)".into(),
        json!({"channel_id": C, "user_id": U, "username": null, "is_typing": true}),
    ));
    out
}

/// Hand-written valid data beyond the base objects.
fn valid_table() -> Vec<(EventType, String, Value)> {
    let mut out: Vec<(EventType, String, Value)> = EventType::ALL
        .iter()
        .map(|&k| (k, "the base object".into(), valid(k)))
        .collect();
    for kind in [
        EventType::ChannelMessage,
        EventType::MessageReply,
        EventType::MemberJoined,
        EventType::MemberLeft,
        EventType::MemberRoleUpdated,
    ] {
        let mut v = valid(kind);
        v["username"] = Value::Null;
        out.push((kind, "`username` null".into(), v));
    }
    for kind in [
        EventType::UserBanned,
        EventType::UserUnbanned,
        EventType::UserKicked,
    ] {
        let mut v = valid(kind);
        v.as_object_mut().expect("object").remove("user_id");
        out.push((kind, "the user copy (no `user_id`)".into(), v));
    }
    // Tolerant reading (docs/protocol.md): a newer publisher's fields.
    for &kind in EventType::ALL {
        for (what, extra) in [
            ("surprise", json!(1)),
            (
                "attachments",
                json!([{"url": "https://x/y.png", "size": 1.5}]),
            ),
            ("Channel_id", json!(C)),
            ("trace", json!(null)),
        ] {
            let mut v = valid(kind);
            v[what] = extra;
            out.push((kind, format!("an unknown field `{what}`"), v));
        }
    }
    let mut upper = valid(EventType::MessageDeleted);
    upper["channel_id"] = json!(C.to_uppercase());
    out.push((EventType::MessageDeleted, "upper-case ids".into(), upper));
    let mut empty = valid(EventType::ChannelMessage);
    empty["content"] = json!("");
    out.push((EventType::ChannelMessage, "empty content".into(), empty));
    for changes in [
        json!({"topic": null}),
        json!({"settings": {"slow_mode": 5}, "tags": ["a"]}),
        json!({"member_count": 3, "archived": true}),
        json!({"surprise": "any key is a change"}),
    ] {
        let mut v = changes.clone();
        v["channel_id"] = json!(C);
        out.push((EventType::ChannelUpdated, format!("changes {changes}"), v));
    }
    out
}

fn verdicts(kind: EventType, data: &Value) -> (Result<(), String>, Result<EventData, String>) {
    (
        schemas().check_data(kind, data),
        decode_value(kind, data).map_err(|e| e.to_string()),
    )
}

#[test]
fn invalid_data_is_refused_by_both_the_schema_and_the_decoder() {
    let table = invalid_table();
    assert!(table.len() > 300, "the table covers every type and field");
    let mut disagreements = Vec::new();
    for (kind, what, data) in &table {
        let (schema, decoder) = verdicts(*kind, data);
        if schema.is_ok() || decoder.is_ok() {
            disagreements.push(format!(
                "{kind} with {what}: schema {}, decoder {} — {data}",
                if schema.is_ok() { "ACCEPTS" } else { "refuses" },
                if decoder.is_ok() {
                    "ACCEPTS"
                } else {
                    "refuses"
                },
            ));
        }
    }
    assert!(
        disagreements.is_empty(),
        "{} invalid objects got through:\n{}",
        disagreements.len(),
        disagreements.join("\n")
    );
}

#[test]
fn valid_data_is_accepted_by_both_the_schema_and_the_decoder() {
    for (kind, what, data) in valid_table() {
        let (schema, decoder) = verdicts(kind, &data);
        if let Err(e) = schema {
            panic!("schema refuses valid {kind} ({what}): {e}\n{data}");
        }
        let decoded =
            decoder.unwrap_or_else(|e| panic!("decoder refuses valid {kind} ({what}): {e}"));
        // The typed form re-encodes to the known fields, ids lower-cased.
        let lower = lower_ids(&data);
        assert_eq!(
            data_value(&decoded),
            known_fields(kind, &lower),
            "{kind} ({what}) round-trips"
        );
        // The kept text is the whole object, unknown fields and all.
        let (typed, raw) = EventData::decode_kept(kind, &data.to_string())
            .unwrap_or_else(|e| panic!("decode_kept refuses valid {kind} ({what}): {e}"));
        assert_eq!(typed, decoded, "{kind} ({what}): one typed verdict");
        let kept: Value = serde_json::from_str(raw.as_str()).expect("kept text is JSON");
        assert_eq!(kept, lower, "{kind} ({what}) is kept whole");
        schemas()
            .check_data(kind, &kept)
            .unwrap_or_else(|e| panic!("kept {kind} ({what}) fails its schema: {e}"));
    }
}

/// The fields of `v` the typed data of `kind` reads (every field, for
/// `channel_updated`, whose changes are any fields).
fn known_fields(kind: EventType, v: &Value) -> Value {
    if kind == EventType::ChannelUpdated {
        return v.clone();
    }
    let known = valid(kind);
    let map = v.as_object().expect("object");
    Value::Object(
        map.iter()
            .filter(|(k, _)| known.get(k.as_str()).is_some())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    )
}

/// Lower-cases every id field, the form the code writes.
fn lower_ids(v: &Value) -> Value {
    match v {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| match v {
                    Value::String(s) if is_id_field(k) => (k.clone(), json!(s.to_lowercase())),
                    other => (k.clone(), other.clone()),
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

// Regression: moderation's `user_id` (`BanChange::user_id`,
// `UserKicked::user_id` in src/event.rs) is optional, but when present it
// must be an id: an explicit `"user_id": null` is refused by the decoder
// (`present_id`), as by schemas/events/user_{banned,unbanned,kicked}.json (the
// field is either a UUID or missing), so a stored copy with `user_id: null`
// is never delivered although it fails its schema (the protocol's rule for stored events). The tables and
// the random mutations above cover it too.
#[test]
fn moderation_user_id_null_is_refused_by_both() {
    let mut disagreements = Vec::new();
    for kind in [
        EventType::UserBanned,
        EventType::UserUnbanned,
        EventType::UserKicked,
    ] {
        let mut data = valid(kind);
        data["user_id"] = Value::Null;
        let (schema, decoder) = verdicts(kind, &data);
        assert!(schema.is_err(), "the schema refuses user_id null");
        if decoder.is_ok() {
            disagreements.push(format!("{kind}: decoder accepts {data}"));
        }
        // Absent is still fine for both: that is the user copy.
        data.as_object_mut().expect("object").remove("user_id");
        let (schema, decoder) = verdicts(kind, &data);
        assert!(schema.is_ok(), "the schema accepts {kind} without user_id");
        assert!(
            decoder.is_ok(),
            "the decoder accepts {kind} without user_id"
        );
    }
    assert!(
        disagreements.is_empty(),
        "schema refuses, decoder accepts:\n{}",
        disagreements.join("\n")
    );
}

/// Random mutations of valid objects get the same verdict from both.
#[test]
fn schema_and_decoder_agree_on_random_mutations() {
    #[derive(Clone, Debug)]
    enum Mutation {
        Remove(usize),
        Set(usize, Value),
        Add(String, Value),
    }
    let values = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (-1e6f64..1e6).prop_map(Value::from),
        Just(json!(C)),
        Just(json!(C.to_uppercase())),
        Just(json!(C.replace('-', ""))),
        "[0-9a-fA-F-]{30,40}".prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
        Just(json!([])),
        Just(json!({"k": 1})),
    ];
    let mutation = prop_oneof![
        (0usize..8).prop_map(Mutation::Remove),
        ((0usize..8), values.clone()).prop_map(|(i, v)| Mutation::Set(i, v)),
        ("[a-z_]{1,12}", values).prop_map(|(k, v)| Mutation::Add(k, v)),
    ];
    let strategy = (
        proptest::sample::select(EventType::ALL.to_vec()),
        proptest::collection::vec(mutation, 1..4),
    );
    let mut runner = TestRunner::new(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    runner
        .run(&strategy, |(kind, mutations)| {
            let mut data = valid(kind);
            let map: &mut Map<String, Value> = data.as_object_mut().expect("object");
            for m in mutations {
                let keys: Vec<String> = map.keys().cloned().collect();
                match m {
                    Mutation::Remove(i) if !keys.is_empty() => {
                        map.remove(&keys[i % keys.len()]);
                    }
                    Mutation::Set(i, v) if !keys.is_empty() => {
                        let key = &keys[i % keys.len()];
                        map.insert(key.clone(), v);
                    }
                    Mutation::Add(k, v) => {
                        map.insert(k, v);
                    }
                    _ => {}
                }
            }
            let (schema, decoder) = verdicts(kind, &data);
            prop_assert_eq!(
                schema.is_ok(),
                decoder.is_ok(),
                "{} {}: schema {:?}, decoder {:?}",
                kind,
                data,
                schema,
                decoder.map(|d| data_value(&d))
            );
            Ok(())
        })
        .expect("schema and decoder agree");
}

/// Stored payloads: the NATS payload schema and the payload decoder agree.
#[test]
fn payload_schema_and_payload_decoder_agree_on_the_envelope_of_the_data() {
    let subj = format!("chat.channel.{C}.message_deleted");
    let data = valid(EventType::MessageDeleted);
    let id = "01890a5d-ac96-774b-b9aa-c5a1b2c3d4e5";
    let valid_payloads = [
        json!({"id": id, "type": "message_deleted", "data": data}),
        json!({"id": id.to_uppercase(), "type": "message_deleted", "data": data}),
        json!({"id": id, "type": "message_deleted", "data": data,
               "timestamp": "2025-01-15T10:30:00.000Z"}),
        json!({"id": id, "type": "message_deleted", "data": data,
               "timestamp": "2025-01-15T11:30:00+01:00"}),
        // Unknown top-level fields are ignored (docs/protocol.md, "Tolerant reading").
        json!({"id": id, "type": "message_deleted", "data": data, "extra": 1}),
        json!({"id": id, "type": "message_deleted", "data": data, "trace_id": "abc",
               "headers": {"x": [1]}}),
    ];
    for payload in valid_payloads {
        assert!(
            schemas().check("publish", &payload).is_ok(),
            "publish.json accepts {payload}"
        );
        assert!(
            subject::decode(&subj, payload.to_string().as_bytes()).is_ok(),
            "decoder accepts {payload}"
        );
    }
    let invalid_payloads = [
        json!({"type": "message_deleted", "data": data}),
        json!({"id": "nope", "type": "message_deleted", "data": data}),
        json!({"id": id.replace('-', ""), "type": "message_deleted", "data": data}),
        json!({"id": id, "data": data}),
        json!({"id": id, "type": "message_deleted"}),
        json!({"id": id, "type": 7, "data": data}),
        json!({"id": id, "type": "message_deleted", "data": [C, M]}),
        json!({"id": id, "type": "message_deleted", "data": data, "timestamp": 5}),
        json!({"id": id, "type": "message_deleted", "data": data, "timestamp": null}),
        json!({"id": id, "type": "message_deleted", "data": data, "timestamp": "yesterday"}),
        json!({"id": id, "type": "message_deleted", "data": data, "timestamp": ""}),
        json!({"id": id, "type": "message_deleted", "data": data,
               "timestamp": "2025-01-15T10:30:00"}),
        json!([id, "message_deleted", data]),
    ];
    for payload in invalid_payloads {
        assert!(
            schemas().check("publish", &payload).is_err(),
            "publish.json refuses {payload}"
        );
        assert!(
            subject::decode(&subj, payload.to_string().as_bytes()).is_err(),
            "decoder refuses {payload}"
        );
    }
}

// Regression: the stored payload's optional `timestamp` is checked by
// src/log/subject.rs as schemas/publish.json checks it: when present it must
// be an RFC 3339 time (`event::parse_timestamp`), and null is refused, so the
// gateway never delivers a payload that fails the publish schema.
#[test]
fn payload_timestamp_must_be_rfc3339_for_both() {
    let subj = format!("chat.channel.{C}.message_deleted");
    let data = valid(EventType::MessageDeleted);
    let mut disagreements = Vec::new();
    for timestamp in [
        json!(null),
        json!("yesterday"),
        json!(""),
        json!("2025-01-15"),
        json!("2025-01-15T10:30:00"),
        json!(1_736_937_000),
    ] {
        let payload = json!({"id": M, "type": "message_deleted", "data": data,
                             "timestamp": timestamp});
        assert!(schemas().check("publish", &payload).is_err());
        if subject::decode(&subj, payload.to_string().as_bytes()).is_ok() {
            disagreements.push(format!("decoder accepts timestamp {timestamp}"));
        }
    }
    assert!(
        disagreements.is_empty(),
        "publish.json refuses, subject::decode accepts:\n{}",
        disagreements.join("\n")
    );
}
