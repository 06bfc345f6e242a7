//! Code and schemas cannot drift: every schema file is listed and compiles,
//! everything the code emits (event data, envelopes, stored payloads, control
//! frames) passes its schema, and the schemas and the typed decoders agree on
//! what is valid and what is not.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestRunner};
use serde_json::{json, Map, Value};
use support::samples;
use switchboard::access::EndReason;
use switchboard::channel::{Channel, Id};
use switchboard::envelope::{self, StoredEvent};
use switchboard::event::{Event, EventData, EventType, UserTyping};
use switchboard::gateway::protocol::{self, ErrorCode, FrameError};
use switchboard::log::subject;
use switchboard::schema::{Schemas, FILES};

const C: &str = "0b6f2c1e-3d4a-4f5b-8c9d-0e1f2a3b4c5d";
const U: &str = "11111111-2222-4333-8444-555555555555";
const M: &str = "99999999-8888-4777-a666-555555555555";

fn schemas() -> &'static Schemas {
    Schemas::get()
}

fn schema_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas")
}

/// Every `*.json` under `dir`, as its path relative to `root` without `.json`.
fn walk(root: &Path, dir: &Path, out: &mut BTreeSet<String>) {
    let entries = std::fs::read_dir(dir).expect("schemas/ is readable");
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            walk(root, &path, out);
        } else if path.extension().is_some_and(|e| e == "json") {
            let rel = path
                .strip_prefix(root)
                .expect("under schemas/")
                .with_extension("");
            let name = rel
                .components()
                .map(|c| c.as_os_str().to_str().expect("utf-8 file name"))
                .collect::<Vec<_>>()
                .join("/");
            out.insert(name);
        }
    }
}

fn stored_types() -> impl Iterator<Item = EventType> {
    EventType::ALL.iter().copied().filter(|k| k.is_stored())
}

fn enum_strings(schema: &Value, pointer: &str) -> BTreeSet<String> {
    schema
        .pointer(pointer)
        .and_then(Value::as_array)
        .unwrap_or_else(|| panic!("{pointer} is an enum"))
        .iter()
        .map(|v| v.as_str().expect("enum of strings").to_string())
        .collect()
}

fn file_schema(name: &str) -> Value {
    let (_, text) = FILES
        .iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("{name} is in FILES"));
    serde_json::from_str(text).expect("schema is JSON")
}

// ---------------------------------------------------------------------------
// (a) every file is listed, every listed file exists and compiles
// ---------------------------------------------------------------------------

#[test]
fn every_schema_file_is_listed_and_every_listed_name_is_a_file() {
    let dir = schema_dir();
    let mut on_disk = BTreeSet::new();
    walk(&dir, &dir, &mut on_disk);
    let listed: BTreeSet<String> = FILES.iter().map(|(n, _)| n.to_string()).collect();
    assert_eq!(FILES.len(), listed.len(), "FILES lists a name twice");
    let unlisted: Vec<_> = on_disk.difference(&listed).collect();
    let missing: Vec<_> = listed.difference(&on_disk).collect();
    assert!(
        unlisted.is_empty(),
        "schema files not in schema::FILES: {unlisted:?}"
    );
    assert!(
        missing.is_empty(),
        "schema::FILES names without a file: {missing:?}"
    );
    for (name, _) in FILES {
        let schema = file_schema(name);
        assert_eq!(
            schema["$schema"], "https://json-schema.org/draft/2020-12/schema",
            "{name} declares draft 2020-12"
        );
        assert_eq!(
            schema["$id"],
            format!("https://switchboard.dev/schemas/{name}.json"),
            "{name}'s $id names its path"
        );
    }
}

#[test]
fn every_schema_compiles_and_is_a_valid_2020_12_schema() {
    for (name, text) in FILES {
        let schema: Value =
            serde_json::from_str(text).unwrap_or_else(|e| panic!("{name} is not JSON: {e}"));
        if let Err(e) = jsonschema::draft202012::meta::validate(&schema) {
            panic!("{name} is not a valid draft 2020-12 schema: {e}");
        }
        if let Err(e) = jsonschema::draft202012::new(&schema) {
            panic!("{name} does not compile: {e}");
        }
        // The crate's own compiled set has it too (a missing one answers "no schema").
        if let Err(e) = schemas().check(name, &Value::Null) {
            assert!(!e.starts_with("no schema"), "Schemas::get() lacks {name}");
        }
    }
    assert!(schemas()
        .check("events/no_such_type", &json!({}))
        .is_err_and(|e| e.starts_with("no schema")));
}

#[test]
fn every_event_type_has_exactly_one_data_schema() {
    let listed: BTreeSet<String> = FILES
        .iter()
        .filter_map(|(n, _)| n.strip_prefix("events/"))
        .map(str::to_string)
        .collect();
    let types: BTreeSet<String> = EventType::ALL
        .iter()
        .map(|k| k.as_str().to_string())
        .collect();
    assert_eq!(EventType::ALL.len(), 14);
    assert_eq!(listed, types, "events/*.json and EventType::ALL differ");
    for kind in EventType::ALL {
        assert!(
            schema_dir()
                .join("events")
                .join(format!("{kind}.json"))
                .is_file(),
            "schemas/events/{kind}.json exists"
        );
    }
}

#[test]
fn type_enums_name_exactly_the_event_types() {
    let all: BTreeSet<String> = EventType::ALL
        .iter()
        .map(|k| k.as_str().to_string())
        .collect();
    let stored: BTreeSet<String> = stored_types().map(|k| k.as_str().to_string()).collect();
    assert_eq!(
        enum_strings(&file_schema("envelope"), "/properties/type/enum"),
        all
    );
    assert_eq!(
        enum_strings(&file_schema("publish"), "/properties/type/enum"),
        stored
    );
    assert_eq!(
        enum_strings(&file_schema("http_publish"), "/properties/type/enum"),
        stored
    );
}

// ---------------------------------------------------------------------------
// (b) what the code emits passes the schemas
// ---------------------------------------------------------------------------

fn typing(c: Id, u: Id) -> EventData {
    EventData::UserTyping(UserTyping {
        channel_id: c,
        user_id: u,
        username: "ann \"the typist\" ✓".into(),
        is_typing: true,
    })
}

/// Ids given upper-case: what the code emits must still be lower-case.
fn upper_id() -> Id {
    Id::parse(&Id::new_v4().to_string().to_uppercase()).expect("upper-case id parses")
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
            let value = copy.data.to_value();
            if let Err(e) = schemas().check_data(kind, &value) {
                panic!(
                    "{kind} copy on {} fails its schema: {e}\n{value}",
                    copy.channel
                );
            }
            let back = EventData::from_value(kind, value.clone())
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
            support::assert_schema(&frame);
            assert_eq!(frame["timestamp"], "2025-01-15T10:30:00.123Z");
            assert_eq!(frame["channel"], copy.channel.to_string());
            assert_eq!(frame["data"], copy.data.to_value());
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
            assert_eq!(kept, copy.data.to_value());
        }
    }
}

// ---------------------------------------------------------------------------
// (c) the schema and the typed decoder agree
// ---------------------------------------------------------------------------

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
        EventData::from_value(kind, data.clone()).map_err(|e| e.to_string()),
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
            decoded.to_value(),
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
                decoder.map(|d| d.to_value())
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

// ---------------------------------------------------------------------------
// (d) control frames
// ---------------------------------------------------------------------------

/// Every end reason; the match makes a new variant a compile error here.
fn end_reasons() -> Vec<EndReason> {
    let all = vec![
        EndReason::Requested,
        EndReason::Banned,
        EndReason::Kicked,
        EndReason::Left,
        EndReason::ChannelDeleted,
    ];
    for r in &all {
        match r {
            EndReason::Requested
            | EndReason::Banned
            | EndReason::Kicked
            | EndReason::Left
            | EndReason::ChannelDeleted => {}
        }
    }
    all
}

/// Every error code; the match makes a new variant a compile error here.
fn error_codes() -> Vec<ErrorCode> {
    let all = vec![
        ErrorCode::BadRequest,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::Unavailable,
    ];
    for c in &all {
        match c {
            ErrorCode::BadRequest
            | ErrorCode::Forbidden
            | ErrorCode::NotFound
            | ErrorCode::Unavailable => {}
        }
    }
    all
}

fn channels() -> Vec<Channel> {
    vec![
        Channel::Chat(upper_id()),
        Channel::User(upper_id()),
        Channel::Global,
    ]
}

fn check_server(name: &str, text: &str) -> Value {
    let frame: Value = serde_json::from_str(text).expect("control frame is JSON");
    assert_eq!(frame["type"], name);
    if let Err(e) = schemas().check(&format!("server/{name}"), &frame) {
        panic!("{name} fails server/{name}.json: {e}\n{frame}");
    }
    support::assert_schema(&frame);
    frame
}

/// A stream epoch as the gateway writes it.
const EPOCH: &str = "2025-01-15T10:30:00.123456789Z";

#[test]
fn every_server_control_frame_passes_its_schema() {
    let (session, user) = (upper_id(), upper_id());
    for (resumed, chans) in [(false, vec![]), (true, channels())] {
        let f = check_server(
            "hello",
            &protocol::hello(session, user, 25_000, 2_000, resumed, &chans, EPOCH),
        );
        assert_eq!(f["data"]["session_id"], session.to_string());
        assert_eq!(
            f["data"]["channels"].as_array().map(Vec::len),
            Some(chans.len())
        );
    }
    for channel in channels() {
        for request_id in [None, Some("req-1")] {
            for first_seq in [None, Some(1), Some(4242)] {
                let f = check_server(
                    "subscribed",
                    &protocol::subscribed(request_id, channel, first_seq, EPOCH),
                );
                assert_eq!(f["data"]["complete"], first_seq.is_none());
                assert_eq!(
                    f["data"].get("request_id").and_then(Value::as_str),
                    request_id
                );
            }
            for reason in end_reasons() {
                let f = check_server(
                    "unsubscribed",
                    &protocol::unsubscribed(request_id, channel, reason),
                );
                assert_eq!(f["data"]["reason"], reason.as_str());
            }
        }
        for (count, last_seq) in [(0, 0), (5, 99), (u64::from(u32::MAX), u64::MAX)] {
            check_server("replayed", &protocol::replayed(channel, count, last_seq));
        }
    }
    for request_id in [None, Some("p")] {
        check_server("pong", &protocol::pong(request_id));
    }
    for code in error_codes() {
        for request_id in [None, Some("r".to_string())] {
            let error = FrameError::new(code, "explained", request_id);
            let f = check_server("error", &protocol::error(&error));
            assert_eq!(f["data"]["code"], code.as_str());
        }
    }
    // Every reason and code the code has is in the schema's enum, and back.
    let reasons: BTreeSet<String> = end_reasons()
        .iter()
        .map(|r| r.as_str().to_string())
        .collect();
    assert_eq!(
        enum_strings(
            &file_schema("server/unsubscribed"),
            "/properties/data/properties/reason/enum"
        ),
        reasons
    );
    let codes: BTreeSet<String> = error_codes()
        .iter()
        .map(|c| c.as_str().to_string())
        .collect();
    // The schema lists the protocol's seven codes; the gateway sends some of
    // them, and nothing else.
    let schema_codes = enum_strings(
        &file_schema("server/error"),
        "/properties/data/properties/code/enum",
    );
    let protocol_codes: BTreeSet<String> = [
        "bad_request",
        "forbidden",
        "not_found",
        "rate_limited",
        "too_large",
        "unavailable",
        "internal",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(schema_codes, protocol_codes);
    assert!(
        codes.is_subset(&schema_codes),
        "{codes:?} not all in {schema_codes:?}"
    );
}

#[test]
fn decoder_errors_make_error_frames_that_pass_their_schema() {
    for text in [
        "not json",
        "[]",
        r#"{"type":"dance","request_id":"x"}"#,
        r#"{"type":"subscribe","channel":"channel:nope","request_id":"x"}"#,
        r#"{"type":"ping","request_id":7}"#,
        &format!(r#"{{"type":"ping","request_id":"{}"}}"#, "r".repeat(300)),
    ] {
        let error = protocol::decode(text).expect_err("refused");
        check_server("error", &protocol::error(&error));
    }
}

#[test]
fn control_frame_schemas_have_teeth() {
    let good: Value =
        serde_json::from_str(&protocol::subscribed(None, Channel::Global, Some(3), EPOCH))
            .expect("JSON");
    let mut no_first = good.clone();
    no_first["data"]
        .as_object_mut()
        .expect("object")
        .remove("first_seq");
    let mut complete_with_first = good.clone();
    complete_with_first["data"]["complete"] = json!(true);
    let mut with_seq = good.clone();
    with_seq["seq"] = json!(1);
    let mut upper_channel = good.clone();
    upper_channel["data"]["channel"] = json!(format!("channel:{}", C.to_uppercase()));
    for bad in [no_first, complete_with_first, with_seq, upper_channel] {
        assert!(
            schemas().check("server/subscribed", &bad).is_err(),
            "refused: {bad}"
        );
    }
    let mut reason: Value = serde_json::from_str(&protocol::unsubscribed(
        None,
        Channel::Global,
        EndReason::Left,
    ))
    .expect("JSON");
    reason["data"]["reason"] = json!("bored");
    assert!(schemas().check("server/unsubscribed", &reason).is_err());
}

// ---------------------------------------------------------------------------
// (d) client frames
// ---------------------------------------------------------------------------

fn client_schema_of(frame: &Value) -> String {
    format!(
        "client/{}",
        frame["type"].as_str().expect("frame has a string type")
    )
}

/// Frames the decoder accepts, which must pass their schema.
fn accepted_client_frames() -> Vec<Value> {
    let chat = format!("channel:{C}");
    let upper = format!("channel:{}", C.to_uppercase());
    vec![
        // `request_id: null` means no request id, for every type.
        json!({"type": "subscribe", "channel": chat, "request_id": null}),
        json!({"type": "unsubscribe", "channel": chat, "request_id": null}),
        json!({"type": "typing", "channel": chat, "is_typing": true, "request_id": null}),
        json!({"type": "ack", "channel": chat, "seq": 1, "request_id": null}),
        json!({"type": "ping", "request_id": null}),
        json!({"type": "subscribe", "channel": chat}),
        json!({"type": "subscribe", "channel": upper, "request_id": "r"}),
        json!({"type": "subscribe", "channel": format!("user:{U}")}),
        json!({"type": "subscribe", "channel": "global", "since_seq": 0}),
        json!({"type": "subscribe", "channel": chat, "since_seq": u64::MAX}),
        json!({"type": "subscribe", "channel": chat, "since": "2025-01-15T10:30:00Z"}),
        json!({"type": "subscribe", "channel": chat, "since": "2025-01-15T10:30:00.123456+05:30"}),
        json!({"type": "subscribe", "channel": chat, "since": "2025-01-15t10:30:00z"}),
        json!({"type": "subscribe", "channel": chat, "since": "2025-01-15 10:30:00-00:00"}),
        json!({"type": "subscribe", "channel": chat, "future_field": {"x": [1]}, "v": 2}),
        json!({"type": "unsubscribe", "channel": chat, "request_id": ""}),
        json!({"type": "unsubscribe", "channel": "global"}),
        json!({"type": "typing", "channel": chat, "is_typing": true}),
        json!({"type": "typing", "channel": upper, "is_typing": false, "extra": null}),
        json!({"type": "ack", "channel": chat, "seq": 0}),
        json!({"type": "ack", "channel": format!("user:{U}"), "seq": 12, "request_id": "a"}),
        json!({"type": "ping"}),
        json!({"type": "ping", "request_id": "p", "client": "web/1.2"}),
    ]
}

/// Frames the decoder refuses for their shape, which the schema refuses too.
fn refused_client_frames() -> Vec<Value> {
    let chat = format!("channel:{C}");
    vec![
        json!({"type": "subscribe"}),
        json!({"type": "subscribe", "channel": 7}),
        json!({"type": "subscribe", "channel": "channel:nope"}),
        json!({"type": "subscribe", "channel": format!("channel:{}", C.replace('-', ""))}),
        json!({"type": "subscribe", "channel": format!("room:{C}")}),
        json!({"type": "subscribe", "channel": format!("Channel:{C}")}),
        json!({"type": "subscribe", "channel": "Global"}),
        json!({"type": "subscribe", "channel": chat, "since_seq": -1}),
        json!({"type": "subscribe", "channel": chat, "since_seq": "5"}),
        json!({"type": "subscribe", "channel": chat, "since_seq": null}),
        json!({"type": "subscribe", "channel": chat, "since": 1_700_000_000}),
        json!({"type": "subscribe", "channel": chat, "since": null}),
        json!({"type": "subscribe", "channel": chat, "since": "yesterday"}),
        json!({"type": "subscribe", "channel": chat, "since": "2025-01-15"}),
        json!({"type": "subscribe", "channel": chat, "since": "2025-01-15T10:30:00"}),
        json!({"type": "subscribe", "channel": chat, "since": "2025-01-15T10:30:00Z",
               "since_seq": 3}),
        json!({"type": "subscribe", "channel": chat, "request_id": 7}),
        json!({"type": "unsubscribe"}),
        json!({"type": "unsubscribe", "channel": ["global"]}),
        json!({"type": "typing", "channel": chat}),
        json!({"type": "typing", "channel": chat, "is_typing": "yes"}),
        json!({"type": "typing", "channel": chat, "is_typing": 1}),
        json!({"type": "typing", "channel": "global", "is_typing": true}),
        json!({"type": "typing", "channel": format!("user:{U}"), "is_typing": true}),
        json!({"type": "ack", "channel": chat}),
        json!({"type": "ack", "channel": chat, "seq": -3}),
        json!({"type": "ack", "channel": chat, "seq": "9"}),
        json!({"type": "ack", "seq": 9}),
        json!({"type": "ping", "request_id": {"id": 1}}),
        json!({"type": "ping", "request_id": false}),
    ]
}

#[test]
fn client_frames_the_decoder_accepts_pass_their_schema() {
    for frame in accepted_client_frames() {
        if let Err(e) = protocol::decode(&frame.to_string()) {
            panic!("decoder refuses {frame}: {}", e.message);
        }
        if let Err(e) = schemas().check(&client_schema_of(&frame), &frame) {
            panic!("schema refuses {frame}: {e}");
        }
    }
}

#[test]
fn client_frames_refused_for_their_shape_fail_their_schema_too() {
    for frame in refused_client_frames() {
        let error =
            protocol::decode(&frame.to_string()).expect_err(&format!("decoder refuses {frame}"));
        assert_eq!(error.code, ErrorCode::BadRequest, "{frame}");
        assert!(
            schemas().check(&client_schema_of(&frame), &frame).is_err(),
            "schema refuses {frame}"
        );
    }
}

// Regression: src/gateway/protocol.rs `decode` treats `"request_id": null`
// as absent and accepts the frame, and every schemas/client/*.json allows it
// too (`"type": ["string", "null"]`), so a client validating against the
// published schemas and the gateway agree. A null id is never echoed.
#[test]
fn request_id_null_gets_the_same_verdict_from_decoder_and_schema() {
    let chat = format!("channel:{C}");
    let mut disagreements = Vec::new();
    for frame in [
        json!({"type": "ping", "request_id": null}),
        json!({"type": "subscribe", "channel": chat, "request_id": null}),
        json!({"type": "unsubscribe", "channel": chat, "request_id": null}),
        json!({"type": "typing", "channel": chat, "is_typing": true, "request_id": null}),
        json!({"type": "ack", "channel": chat, "seq": 1, "request_id": null}),
    ] {
        let decoded = protocol::decode(&frame.to_string());
        let decoder = decoded.is_ok();
        let schema = schemas().check(&client_schema_of(&frame), &frame).is_ok();
        if !(decoder && schema) {
            disagreements.push(format!("{frame}: decoder {decoder}, schema {schema}"));
        }
        if let Ok(decoded) = decoded {
            assert_eq!(request_id_of(&decoded), None, "{frame}: null is no id");
        }
        // A null id on an otherwise invalid frame is refused by both, and
        // the error carries no request id.
        let mut broken = frame.clone();
        broken["type"] = json!("dance");
        let error = protocol::decode(&broken.to_string()).expect_err("refused");
        assert_eq!(error.request_id, None, "{broken}: null is not echoed");
    }
    assert!(
        disagreements.is_empty(),
        "decoder and schema must both accept:\n{}",
        disagreements.join("\n")
    );
}

fn request_id_of(frame: &protocol::ClientFrame) -> Option<&str> {
    use protocol::ClientFrame::*;
    match frame {
        Subscribe { request_id, .. }
        | Unsubscribe { request_id, .. }
        | Typing { request_id, .. }
        | Ack { request_id, .. }
        | Ping { request_id } => request_id.as_deref(),
    }
}
