use super::*;
use crate::position::Epoch;

const C: &str = "channel:0b6f2c1e-3d4a-4f5b-8c9d-0e1f2a3b4c5d";

#[test]
fn decodes_every_frame_and_ignores_unknown_fields() {
    let f = decode(&format!(
        r#"{{"type":"subscribe","channel":"{C}","since_seq":5,"request_id":"r1","future":true}}"#
    ))
    .unwrap();
    assert_eq!(
        f,
        ClientFrame::Subscribe {
            channel: Channel::parse(C).unwrap(),
            since: Some(Since::Seq(5)),
            epoch: None,
            presence: false,
            request_id: Some("r1".into())
        }
    );
    assert!(matches!(
        decode(&format!(
            r#"{{"type":"subscribe","channel":"{C}","since_seq":5,"epoch":"2025-01-15T10:30:00.000000001Z"}}"#
        )),
        Ok(ClientFrame::Subscribe { epoch: Some(e), .. }) if e == Epoch::parse("2025-01-15T10:30:00.000000001Z")
    ));
    assert!(matches!(
        decode(&format!(
            r#"{{"type":"subscribe","channel":"{C}","epoch":null}}"#
        )),
        Ok(ClientFrame::Subscribe { epoch: None, .. })
    ));
    assert!(matches!(
        decode(&format!(
            r#"{{"type":"subscribe","channel":"{C}","since":"2025-01-15T10:30:00Z"}}"#
        )),
        Ok(ClientFrame::Subscribe {
            since: Some(Since::Time(_)),
            ..
        })
    ));
    assert!(matches!(
        decode(&format!(
            r#"{{"type":"typing","channel":"{C}","is_typing":true}}"#
        )),
        Ok(ClientFrame::Typing {
            is_typing: true,
            ..
        })
    ));
    assert!(matches!(
        decode(&format!(r#"{{"type":"ack","channel":"{C}","seq":9}}"#)),
        Ok(ClientFrame::Ack { seq: 9, .. })
    ));
    assert!(matches!(
        decode(r#"{"type":"ping"}"#),
        Ok(ClientFrame::Ping { .. })
    ));
}

#[test]
fn refusals_are_bad_requests_with_the_request_id() {
    for text in [
        "not json".to_string(),
        "[]".to_string(),
        r#"{"type":"dance","request_id":"x"}"#.to_string(),
        r#"{"request_id":"x"}"#.to_string(),
        r#"{"type":"subscribe","request_id":"x"}"#.to_string(),
        r#"{"type":"subscribe","channel":"channel:nope","request_id":"x"}"#.to_string(),
        format!(r#"{{"type":"subscribe","channel":"{C}","since":"yesterday","request_id":"x"}}"#),
        format!(r#"{{"type":"subscribe","channel":"{C}","since_seq":-1,"request_id":"x"}}"#),
        format!(r#"{{"type":"subscribe","channel":"{C}","epoch":7,"request_id":"x"}}"#),
        format!(
            r#"{{"type":"subscribe","channel":"{C}","epoch":"{}","request_id":"x"}}"#,
            "e".repeat(MAX_EPOCH_LEN + 1)
        ),
        format!(
            r#"{{"type":"subscribe","channel":"{C}","since_seq":1,"since":"2025-01-15T10:30:00Z"}}"#
        ),
        r#"{"type":"typing","channel":"global","is_typing":true}"#.to_string(),
        format!(r#"{{"type":"typing","channel":"{C}"}}"#),
        format!(r#"{{"type":"ack","channel":"{C}","seq":"9"}}"#),
        r#"{"type":"ping","request_id":7}"#.to_string(),
    ] {
        let err = decode(&text).unwrap_err();
        assert_eq!(err.code, ErrorCode::BadRequest, "{text}");
        if text.contains(r#""request_id":"x""#) {
            assert_eq!(err.request_id.as_deref(), Some("x"), "{text}");
        }
    }
}

#[test]
fn every_client_frame_type_decodes_and_others_are_named() {
    for kind in CLIENT_FRAME_TYPES {
        let text = format!(r#"{{"type":"{kind}"}}"#);
        if let Err(e) = decode(&text) {
            assert!(!e.message.contains("unknown frame type"), "{kind}: {e:?}");
        }
    }
    let err = decode(r#"{"type":"dance"}"#).unwrap_err();
    assert!(
        err.message.contains(&CLIENT_FRAME_TYPES.join(", ")),
        "{}",
        err.message
    );
}

#[test]
fn control_frames_are_typed_by_their_control_type() {
    let frames = [
        (
            ControlType::Hello,
            hello(Id::new_v4(), Id::new_v4(), 1, 1, false, &[], "e"),
        ),
        (
            ControlType::Subscribed,
            subscribed(None, Channel::Global, None, "e"),
        ),
        (ControlType::Replayed, replayed(Channel::Global, 0, 0)),
        (
            ControlType::Unsubscribed,
            unsubscribed(None, Channel::Global, EndReason::Requested),
        ),
        (ControlType::Pong, pong(None)),
        (
            ControlType::Error,
            error(&FrameError::new(ErrorCode::BadRequest, "x", None)),
        ),
        (ControlType::Refreshed, refreshed(Some("r"), 1_800_000_000)),
        (
            ControlType::Presence,
            presence(
                None,
                serde_json::json!({"channel": "channel:x", "count": 0, "members": [], "truncated": false}),
            ),
        ),
    ];
    assert_eq!(frames.len(), ControlType::ALL.len());
    for (kind, text) in frames {
        let f: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(f["type"], kind.as_str());
    }
}

#[test]
fn control_frames_have_the_envelope() {
    let f: Value =
        serde_json::from_str(&subscribed(Some("r"), Channel::Global, Some(3), "e1")).unwrap();
    assert_eq!(f["type"], "subscribed");
    assert_eq!(f["data"]["complete"], false);
    assert_eq!(f["data"]["epoch"], "e1");
    assert_eq!(f["data"]["first_seq"], 3);
    assert_eq!(f["data"]["request_id"], "r");
    assert!(f.get("seq").is_none());
    let f: Value = serde_json::from_str(&pong(None)).unwrap();
    assert!(f["data"].as_object().unwrap().is_empty());
}
