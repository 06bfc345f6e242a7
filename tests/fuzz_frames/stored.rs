//! Stored messages (`log::subject::decode`): a copy's subject and payload,
//! and stored floats passed through unchanged.

use super::*;

/// One event copy's subject and payload, correct or slightly wrong.
fn stored_message() -> impl Strategy<Value = (String, Vec<u8>)> {
    let copy =
        (any::<u128>(), any::<u128>(), any::<prop::sample::Index>()).prop_map(|(c, u, pick)| {
            let (c, u) = (Id(Uuid::from_u128(c)), Id(Uuid::from_u128(u)));
            let mut all = switchboard_harness::samples(c, u);
            all.push(EventData::UserTyping(UserTyping {
                channel_id: c,
                user_id: u,
                username: "ann".into(),
                is_typing: false,
            }));
            let event = Event::new(all.swap_remove(pick.index(all.len())));
            let copies = event.copies();
            let copy = copies[pick.index(copies.len())].clone();
            let subject = subject::subject(copy.channel, copy.data.kind());
            let payload: Value =
                serde_json::from_slice(&subject::encode_payload(event.id, &copy.data))
                    .unwrap_or_default();
            (subject, payload)
        });
    let subject_token = prop_oneof![
        Just("chat".to_string()),
        Just("channel".to_string()),
        Just("user".to_string()),
        Just("global".to_string()),
        uuid_text(),
        prop::sample::select(EventType::ALL.to_vec()).prop_map(|k| k.to_string()),
        Just("*".to_string()),
        Just(">".to_string()),
        ".{0,10}",
    ];
    (
        copy,
        0..6u8,
        any::<prop::sample::Index>(),
        subject_token,
        json_key(),
        json_value(),
    )
        .prop_map(|((subject, mut payload), how, at, token, key, value)| {
            let subject = match how {
                // Replace one token of the subject.
                1 => {
                    let mut tokens: Vec<String> = subject.split('.').map(str::to_string).collect();
                    let i = at.index(tokens.len());
                    tokens[i] = token;
                    tokens.join(".")
                }
                // Upper-case the subject's ids (to be refused).
                2 => subject.to_uppercase().replacen("CHAT", "chat", 1),
                _ => subject,
            };
            match how {
                // Replace or add a payload field.
                3 => {
                    payload[key.as_str()] = value;
                }
                // Replace or add a data field.
                4 => {
                    payload["data"][key.as_str()] = value;
                }
                // Drop a data field.
                5 => {
                    if let Some(data) = payload["data"].as_object_mut() {
                        let keys: Vec<String> = data.keys().cloned().collect();
                        if !keys.is_empty() {
                            data.remove(&keys[at.index(keys.len())]);
                        }
                    }
                }
                _ => {}
            }
            (subject, payload.to_string().into_bytes())
        })
}

pub(crate) fn subject_decode(cases: u32) {
    let strategy = prop_oneof![
        4 => stored_message(),
        1 => (any::<String>(), prop::collection::vec(any::<u8>(), 0..200)),
        1 => (
            prop_oneof![any::<String>(), stored_message().prop_map(|(s, _)| s)],
            json_value().prop_map(|v| v.to_string().into_bytes()),
        ),
    ];
    run(cases, strategy, |(subj, payload)| {
        let decoded = subject::decode(&subj, &payload);
        // Only the canonical form is one of ours: no subject of ours has an
        // upper-case letter (an upper-case id is refused, in every reader).
        if subj.bytes().any(|b| b.is_ascii_uppercase()) {
            prop_assert!(
                decoded.is_err(),
                "decoded a non-canonical subject: {}",
                subj
            );
        }
        let Ok((channel, id, data)) = decoded else {
            return Ok(());
        };
        // The subject names the copy's channel and type.
        let parsed = subject::parse(&subj)
            .map_err(|e| TestCaseError::fail(format!("decoded an unparsable subject: {e}")))?;
        prop_assert_eq!(parsed, (channel, data.kind()));
        prop_assert_eq!(subject::subject(channel, data.kind()), subj.as_str());
        prop_assert!(data.check_copy(channel).is_ok());
        // What the decoder keeps passes the data schema, and re-encodes to
        // a payload that decodes to the same thing.
        let schema = Schemas::get().check_data(data.kind(), &data_value(&data));
        prop_assert!(schema.is_ok(), "{:?}: {}", schema, data_value(&data));
        let again = subject::encode_payload(id, &data);
        let canonical = subject::subject(channel, data.kind());
        let back = subject::decode(&canonical, &again)
            .map_err(|e| TestCaseError::fail(format!("re-encoded copy is refused: {e}")))?;
        prop_assert_eq!((back.0, back.1), (channel, id));
        // Exactly the same data, floats included (serde_json's
        // `float_roundtrip`; see `stored_float_values_pass_through_unchanged`).
        prop_assert_eq!(back.2, data);
        Ok(())
    });
}

// Regression: serde_json is built with its `float_roundtrip` feature
// (Cargo.toml), so its float parser is exact: a stored `channel_updated`
// change such as `2.291712365432881e-9` (the shortest round-trip form of an
// f64) is decoded by `log::subject::decode` into that very f64 and delivered
// as the same text, not as a neighbouring f64 (`2.2917123654328812e-9`, as
// without the feature, for about a third of random f64s): the gateway never
// alters published data.
#[test]
fn stored_float_values_pass_through_unchanged() {
    let c = "00000000-0000-0000-0000-000000000000";
    let subj = format!("chat.channel.{c}.channel_updated");
    let mut changed = Vec::new();
    for number in [
        "0.1",
        "2.291712365432881e-9",
        "3.0328247929935305e-68",
        "-1.527077339613215e-236",
    ] {
        let payload = format!(
            r#"{{"id":"3948c177-8e09-47f9-8e8d-d297c6d6c1fb","type":"channel_updated","data":{{"channel_id":"{c}","x":{number}}}}}"#
        );
        let (_, _, data) = subject::decode(&subj, payload.as_bytes()).expect("decodes");
        let delivered = data_value(&data)["x"].to_string();
        // The text delivered is the shortest form of the number published.
        if delivered != shortest(number) {
            changed.push(format!("{number} is delivered as {delivered}"));
        }
    }
    assert!(changed.is_empty(), "{}", changed.join("\n"));
}

/// The shortest text of the f64 closest to `text`, by Rust's exact parser.
fn shortest(text: &str) -> String {
    let exact: f64 = text.parse().expect("a float");
    serde_json::Number::from_f64(exact)
        .map(|n| n.to_string())
        .unwrap_or_default()
}

#[test]
fn subject_decode_never_panics_and_keeps_what_it_accepts_consistent() {
    subject_decode(QUICK);
}
