//! The frame decoder (`gateway::protocol::decode`): an oracle written from
//! the protocol, the invariants of what it accepts, and the frames that
//! must not cost it a stack or the whole frame in an error.

use super::*;

/// The protocol's client frames, written independently of the decoder: whether a frame is valid.
fn spec_accepts(frame: &Value) -> bool {
    let Some(obj) = frame.as_object() else {
        return false;
    };
    let request_id_ok = match obj.get("request_id") {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.len() <= MAX_REQUEST_ID_LEN,
        Some(_) => false,
    };
    let channel = || match obj.get("channel") {
        Some(Value::String(s)) => Channel::parse(s).ok(),
        _ => None,
    };
    let unsigned = |name: &str| obj.get(name).and_then(Value::as_u64).is_some();
    let kind_ok = match obj.get("type").and_then(Value::as_str) {
        Some("subscribe") => {
            let epoch_ok = match obj.get("epoch") {
                None | Some(Value::Null) => true,
                Some(Value::String(s)) => s.len() <= MAX_EPOCH_LEN,
                Some(_) => false,
            };
            let presence_ok = match obj.get("presence") {
                None | Some(Value::Null) | Some(Value::Bool(false)) => true,
                Some(Value::Bool(true)) => matches!(channel(), Some(Channel::Chat(_))),
                Some(_) => false,
            };
            channel().is_some()
                && epoch_ok
                && presence_ok
                && match (obj.get("since"), obj.get("since_seq")) {
                    (Some(_), Some(_)) => false,
                    (Some(Value::String(t)), None) => parse_timestamp(t).is_ok(),
                    (Some(_), None) => false,
                    (None, Some(_)) => unsigned("since_seq"),
                    (None, None) => true,
                }
        }
        Some("unsubscribe") => channel().is_some(),
        Some("typing") => {
            matches!(channel(), Some(Channel::Chat(_)))
                && matches!(obj.get("is_typing"), Some(Value::Bool(_)))
        }
        Some("ack") => channel().is_some() && unsigned("seq"),
        Some("ping") => true,
        Some("presence") => matches!(channel(), Some(Channel::Chat(_))),
        Some("refresh") => matches!(obj.get("token"), Some(Value::String(t)) if !t.is_empty()),
        _ => false,
    };
    request_id_ok && kind_ok
}

/// Checks what `decode` made of `text` (whose JSON, if any, is `parsed`).
fn check_decode(text: &str, parsed: Option<&Value>) -> Result<(), TestCaseError> {
    let result = protocol::decode(text);
    let expected = parsed.is_some_and(spec_accepts);
    prop_assert_eq!(
        result.is_ok(),
        expected,
        "decode({}) = {:?}, the protocol says {}",
        text,
        result,
        if expected { "valid" } else { "invalid" }
    );
    let frame = match result {
        Ok(frame) => frame,
        Err(error) => {
            prop_assert_eq!(error.code, ErrorCode::BadRequest);
            prop_assert!(!error.message.is_empty());
            prop_assert!(
                error.message.len() <= 1024,
                "error messages are bounded: {} bytes",
                error.message.len()
            );
            // The request id is echoed whenever it was usable.
            if let Some(Value::String(rid)) = parsed.and_then(|v| v.get("request_id")) {
                if rid.len() <= MAX_REQUEST_ID_LEN {
                    prop_assert_eq!(error.request_id.as_deref(), Some(rid.as_str()));
                }
            }
            let reply: Value = serde_json::from_str(&protocol::error(&error))
                .map_err(|e| TestCaseError::fail(format!("error frame is not JSON: {e}")))?;
            prop_assert!(
                Schemas::get().check("server/error", &reply).is_ok(),
                "error frame fails its schema: {}",
                reply
            );
            return Ok(());
        }
    };
    let input = parsed.ok_or_else(|| TestCaseError::fail("accepted text that is not JSON"))?;
    let kind = input["type"].as_str().unwrap_or_default();
    let channel_text = input["channel"].as_str().unwrap_or_default();
    let request_id = match &frame {
        ClientFrame::Subscribe {
            channel,
            since,
            epoch: _,
            presence,
            request_id,
        } => {
            prop_assert_eq!(kind, "subscribe");
            check_channel(*channel, channel_text)?;
            prop_assert_eq!(*presence, input.get("presence") == Some(&Value::Bool(true)));
            match (input.get("since"), input.get("since_seq")) {
                (Some(Value::String(t)), None) => {
                    let t = parse_timestamp(t).map_err(|e| TestCaseError::fail(e.to_string()))?;
                    prop_assert_eq!(*since, Some(Since::Time(t)));
                }
                (None, Some(n)) => prop_assert_eq!(*since, n.as_u64().map(Since::Seq)),
                (None, None) => prop_assert_eq!(*since, None),
                _ => prop_assert!(false, "accepted an impossible since: {}", input),
            }
            request_id
        }
        ClientFrame::Unsubscribe {
            channel,
            request_id,
        } => {
            prop_assert_eq!(kind, "unsubscribe");
            check_channel(*channel, channel_text)?;
            request_id
        }
        ClientFrame::Typing {
            channel,
            is_typing,
            request_id,
        } => {
            prop_assert_eq!(kind, "typing");
            // Typing is only ever for a chat channel.
            check_channel(Channel::Chat(*channel), channel_text)?;
            prop_assert_eq!(Some(*is_typing), input["is_typing"].as_bool());
            request_id
        }
        ClientFrame::Ack {
            channel,
            seq,
            request_id,
        } => {
            prop_assert_eq!(kind, "ack");
            check_channel(*channel, channel_text)?;
            prop_assert_eq!(Some(*seq), input["seq"].as_u64());
            request_id
        }
        ClientFrame::Ping { request_id } => {
            prop_assert_eq!(kind, "ping");
            request_id
        }
        ClientFrame::Presence {
            channel,
            request_id,
        } => {
            prop_assert_eq!(kind, "presence");
            check_channel(Channel::Chat(*channel), channel_text)?;
            request_id
        }
        ClientFrame::Refresh { token, request_id } => {
            prop_assert_eq!(kind, "refresh");
            prop_assert_eq!(Some(token.as_str()), input["token"].as_str());
            prop_assert!(!token.is_empty());
            request_id
        }
    };
    prop_assert_eq!(request_id.as_deref(), input["request_id"].as_str());
    // An accepted frame passes the published client schema, as it is
    // (`request_id: null` included: absent for both).
    let checked = Schemas::get().check(&format!("client/{kind}"), input);
    prop_assert!(
        checked.is_ok(),
        "decoder accepts {} but client/{}.json refuses it: {:?}",
        input,
        kind,
        checked
    );
    Ok(())
}

/// A decoded channel names what the client wrote (in lower case), and its
/// display parses back to itself.
fn check_channel(channel: Channel, text: &str) -> Result<(), TestCaseError> {
    let shown = channel.to_string();
    prop_assert_eq!(Channel::parse(&shown), Ok(channel));
    prop_assert_eq!(shown, text.to_ascii_lowercase());
    Ok(())
}

pub(crate) fn decode_any_string(cases: u32) {
    let strategy = prop_oneof![
        any::<String>(),
        "\\PC{0,200}",
        // Near-JSON text: a real frame with a character changed.
        mangled(near_valid_frame().prop_map(|v| v.to_string())),
    ];
    run(cases, strategy, |text| {
        let parsed: Option<Value> = serde_json::from_str(&text).ok();
        if parsed.is_none() && serde_json::from_str::<serde::de::IgnoredAny>(&text).is_ok() {
            // JSON that `Value` cannot hold (a number beyond f64, such as
            // 3.78e309): the model has no answer, so only "never panics"
            // is checked; `numbers_beyond_f64` pins what decode does.
            let _ = protocol::decode(&text);
            return Ok(());
        }
        check_decode(&text, parsed.as_ref())
    });
}

pub(crate) fn decode_any_json(cases: u32) {
    run(cases, json_value(), |value| {
        check_decode(&value.to_string(), Some(&value))
    });
}

pub(crate) fn decode_near_valid_frames(cases: u32) {
    run(cases, near_valid_frame(), |value| {
        check_decode(&value.to_string(), Some(&value))
    });
}

#[test]
fn decode_never_panics_on_arbitrary_text() {
    decode_any_string(QUICK);
}

#[test]
fn numbers_beyond_f64() {
    // Skipped unknown fields are not converted, so their size does not matter.
    let unknown = r#"{"type":"ping","x":3.78e309}"#;
    assert!(matches!(
        protocol::decode(unknown),
        Ok(protocol::ClientFrame::Ping { .. })
    ));
    // A known field must hold what the protocol says.
    let known = r#"{"type":"subscribe","channel":"global","since_seq":3.78e309}"#;
    let error = protocol::decode(known).expect_err("since_seq beyond u64");
    assert_eq!(error.code, ErrorCode::BadRequest);
}

#[test]
fn decode_never_panics_on_arbitrary_json() {
    decode_any_json(QUICK);
}

#[test]
fn decode_accepts_exactly_the_valid_near_valid_frames() {
    decode_near_valid_frames(QUICK);
}

#[test]
fn decode_survives_deep_nesting_and_huge_frames() {
    for text in [
        "[".repeat(100_000),
        format!("{}1{}", "[".repeat(10_000), "]".repeat(10_000)),
        format!(
            r#"{{"type":"subscribe","channel":"global","since_seq":{}1{}}}"#,
            "[".repeat(5_000),
            "]".repeat(5_000)
        ),
        format!(r#"{{"type":"{}"}}"#, "x".repeat(1 << 20)),
        format!(
            r#"{{"type":"subscribe","channel":"{}"}}"#,
            "channel:".repeat(100_000)
        ),
    ] {
        let error = protocol::decode(&text).expect_err(&format!(
            "refused: {}",
            text.chars().take(60).collect::<String>()
        ));
        assert_eq!(error.code, ErrorCode::BadRequest);
        assert!(
            error.message.len() <= 1024,
            "the message does not quote the whole frame"
        );
    }
    // Unknown fields are skipped without being built (iteratively, so
    // deep nesting costs no stack): a long or deep one does not matter.
    for text in [
        format!(r#"{{"type":"ping","pad":"{}"}}"#, "x".repeat(1 << 20)),
        format!(
            r#"{{"type":"ping","x":{}1{}}}"#,
            "[".repeat(100_000),
            "]".repeat(100_000)
        ),
    ] {
        assert!(matches!(
            protocol::decode(&text),
            Ok(ClientFrame::Ping { request_id: None })
        ));
    }
    assert!(subject::decode(&"chat.".repeat(100_000), b"{}").is_err());
    assert!(subject::decode(
        "chat.global.channel_created",
        "[".repeat(100_000).as_bytes()
    )
    .is_err());
}
