//! Added types in the event code: decoded against their schema, routed by
//! their routes (one copy per route, one id), their route ids canonical,
//! stored and read back like a built-in type. The unit tests' process
//! installs one test catalog ([`installed`]).

use serde_json::json;

use super::*;
use crate::catalog::{self, Catalog};
use crate::log::subject;

const C: &str = "0b6f2c1e-3d4a-4f5b-8c9d-0e1f2a3b4c5d";
const U: &str = "11111111-2222-4333-8444-555555555555";

/// The test catalog: `test_reaction` (stored; its channel and its user)
/// and `test_pointer` (ephemeral; global).
fn installed() -> (EventType, EventType) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let reaction = json!({
            "type": "object",
            "required": ["channel_id", "user_id", "emoji"],
            "properties": {"emoji": {"type": "string", "maxLength": 8}},
            "x-switchboard": {"routes": [{"channel": "channel_id"}, {"user": "user_id"}], "stored": true}
        });
        let pointer = json!({
            "type": "object",
            "required": ["x"],
            "x-switchboard": {"routes": ["global"], "stored": false}
        });
        let types = [("test_reaction", reaction), ("test_pointer", pointer)]
            .into_iter()
            .map(|(name, schema)| {
                catalog::load::parse_type(name.into(), schema, name.into()).expect("a good type")
            })
            .collect();
        catalog::install(Catalog::new(types));
    });
    let kind = |name| EventType::parse(name).expect("installed");
    (kind("test_reaction"), kind("test_pointer"))
}

#[test]
fn an_added_type_is_checked_by_its_schema_and_routed_by_its_routes() {
    let (reaction, pointer) = installed();
    assert!(reaction.is_stored() && !pointer.is_stored());
    assert_eq!(reaction.as_str(), "test_reaction");
    assert!(matches!(reaction, EventType::Added(_)));

    let upper = C.to_uppercase();
    let text = format!(r#"{{"channel_id":"{upper}","user_id":"{U}","emoji":"+1","extra":[1]}}"#);
    let (data, raw) = EventData::decode_kept(reaction, &text).unwrap();
    assert_eq!(data.kind(), reaction);
    // Route ids canonical, the rest as given.
    assert_eq!(
        raw.as_str(),
        format!(r#"{{"channel_id":"{C}","user_id":"{U}","emoji":"+1","extra":[1]}}"#)
    );
    let event = Event {
        id: Id::new_v4(),
        data,
        raw_data: Some(raw),
    };
    let copies = event.copies();
    let channels: Vec<Channel> = copies.iter().map(|c| c.channel).collect();
    assert_eq!(
        channels,
        [
            Channel::Chat(Id::parse(C).unwrap()),
            Channel::User(Id::parse(U).unwrap())
        ]
    );
    for copy in &copies {
        copy.data.check_copy(copy.channel).unwrap();
        // Stored and read back as a built-in copy is.
        let payload = subject::encode_payload_kept(event.id, &copy.data, copy.raw_data.as_ref());
        let back =
            subject::decode_kept(&subject::subject(copy.channel, reaction), &payload).unwrap();
        assert_eq!((back.channel, back.id), (copy.channel, event.id));
        assert_eq!(
            back.raw_data.as_str(),
            copies[0].raw_data.as_ref().unwrap().as_str()
        );
    }
    assert!(
        event.data.check_copy(Channel::Global).is_err(),
        "not one of its routes"
    );

    let refused = |text: &str| EventData::decode(reaction, text).unwrap_err().to_string();
    assert!(refused(&format!(r#"{{"channel_id":"{C}","user_id":"{U}"}}"#)).contains("emoji"));
    assert!(refused(&format!(
        r#"{{"channel_id":"{C}","user_id":"{U}","emoji":"much too long"}}"#
    ))
    .contains("emoji"));
    assert!(refused(&format!(
        r#"{{"channel_id":"nope","user_id":"{U}","emoji":"x"}}"#
    ))
    .contains("channel_id"));
    assert!(refused("[1]").contains("object"));

    let global = EventData::decode(pointer, r#"{"x":3}"#).unwrap();
    assert!(matches!(&global, EventData::Added(d) if d.channels == [Channel::Global]));
    let mut out = String::new();
    global.write_json(&mut out);
    assert_eq!(out, r#"{"x":3}"#);
}

#[test]
fn a_type_no_catalog_has_is_unknown_not_invalid() {
    installed();
    let subject = format!("chat.channel.{C}.reaction_removed");
    let payload = format!(r#"{{"id":"{U}","type":"reaction_removed","data":{{}}}}"#);
    match subject::decode_kept(&subject, payload.as_bytes()) {
        Err(subject::PayloadError::Subject(subject::SubjectError::UnknownType(kind))) => {
            assert_eq!(kind, "reaction_removed")
        }
        other => panic!("{other:?}"),
    }
    // Not a type name at all: not ours.
    let odd = format!("chat.channel.{C}.Reaction");
    assert!(matches!(
        subject::parse(&odd),
        Err(subject::SubjectError::Foreign(_))
    ));
}

#[test]
fn stream_subjects_hold_stored_added_types_and_never_ephemeral_ones() {
    installed();
    let stream = subject::stream_subjects();
    assert!(stream.contains(&"chat.channel.*.test_reaction".to_string()));
    assert!(stream.contains(&"chat.user.*.test_reaction".to_string()));
    assert!(!stream.iter().any(|s| s.contains("test_pointer")));
    let live = subject::ephemeral_subjects();
    assert!(live.contains(&"chat.global.test_pointer".to_string()));
    assert!(live.contains(&subject::typing_wildcard()));
}
