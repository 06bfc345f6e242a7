//! (d) Control frames: every server frame and every decoder error passes
//! its schema, and the control frame schemas refuse what they should.

use std::collections::BTreeSet;

use serde_json::{json, Value};
use switchboard::access::EndReason;
use switchboard::channel::Channel;
use switchboard::gateway::protocol::{self, ErrorCode, FrameError};

use crate::{enum_strings, file_schema, schemas, upper_id, C};

/// Every end reason; the match makes a new variant a compile error here.
fn end_reasons() -> Vec<EndReason> {
    let all = vec![
        EndReason::Requested,
        EndReason::Banned,
        EndReason::Kicked,
        EndReason::Left,
        EndReason::ChannelDeleted,
        EndReason::Revoked,
    ];
    for r in &all {
        match r {
            EndReason::Requested
            | EndReason::Banned
            | EndReason::Kicked
            | EndReason::Left
            | EndReason::ChannelDeleted
            | EndReason::Revoked => {}
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
    switchboard_harness::assert_schema(&frame);
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
