//! (d) Client frames: the decoder and the schemas give the same verdict,
//! `request_id: null` included.

use serde_json::{json, Value};
use switchboard::gateway::protocol::{self, ErrorCode};

use crate::{schemas, C, U};

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
        json!({"type": "refresh", "token": "a.b.c"}),
        json!({"type": "presence", "channel": chat, "request_id": "p"}),
        json!({"type": "subscribe", "channel": chat, "presence": true}),
        json!({"type": "subscribe", "channel": chat, "presence": false, "since_seq": 3}),
        json!({"type": "subscribe", "channel": chat, "presence": null}),
        json!({"type": "subscribe", "channel": "global", "presence": false}),
        json!({"type": "refresh", "token": "a.b.c", "request_id": "r", "v": 2}),
        json!({"type": "refresh", "token": "a.b.c", "request_id": null}),
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
        json!({"type": "refresh"}),
        json!({"type": "presence"}),
        json!({"type": "presence", "channel": "global"}),
        json!({"type": "subscribe", "channel": chat, "presence": "yes"}),
        json!({"type": "subscribe", "channel": chat, "presence": 1}),
        json!({"type": "refresh", "token": ""}),
        json!({"type": "refresh", "token": 7}),
        json!({"type": "refresh", "token": null}),
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
        json!({"type": "refresh", "token": "a.b.c", "request_id": null}),
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
        | Ping { request_id }
        | Refresh { request_id, .. }
        | Presence { request_id, .. } => request_id.as_deref(),
    }
}
