//! Tolerant reading (docs/protocol.md): a newer publisher's fields never make
//! an event vanish. Unknown top-level payload fields are ignored; unknown
//! fields inside `data` reach clients byte for byte, live, in a replay, in
//! history and in `switchboard replay`, whether the event came straight from
//! NATS, through `POST /v1/events` or through `switchboard publish`. A
//! missing or wrongly typed required field is still refused, logged with its
//! seq and counted.

use serde_json::value::RawValue;
use serde_json::{json, Value};
use switchboard::channel::{Channel, Id};
use switchboard::token::{Grant, Role};
use switchboard_harness::*;
use tokio_tungstenite::tungstenite::Message;

/// A `channel_message` data object as a newer publisher writes it: its own
/// key order and spacing, a number written `1.50` and an `attachments`
/// field this version does not know. Compared as text, so any
/// re-serialization (or a dropped field) shows.
fn newer_message_data(c: Id, content: &str) -> String {
    format!(
        r#"{{"content":"{content}", "channel_id":"{c}","message_id":"{}","user_id":"{}","username":null,"attachments": [{{"url":"https://cdn.example/a.png","size":1.50,"meta":{{"w":640,"alt":"\u00e9"}}}}],"priority":123456789012345678901234567890}}"#,
        Id::new_v4(),
        Id::new_v4(),
    )
}

/// A stored payload with unknown top-level fields around `data`.
fn newer_payload(id: Id, kind: &str, data: &str) -> String {
    format!(
        r#"{{"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","id":"{id}","type":"{kind}","data":{data},"schema_version":2,"headers":{{"x":[1,2]}}}}"#
    )
}

/// The `data` member of a frame or NDJSON line, as its text.
fn data_text(frame: &str) -> String {
    #[derive(serde::Deserialize)]
    struct Frame<'a> {
        #[serde(borrow)]
        data: &'a RawValue,
    }
    let frame: Frame = serde_json::from_str(frame).unwrap_or_else(|e| panic!("{e}: {frame}"));
    frame.data.get().to_string()
}

/// The next text frame as it came over the socket, within [`PATIENCE`]
/// (pings, which restart `next_message`'s own wait, do not extend it).
async fn next_text(client: &mut Client) -> String {
    let message = tokio::time::timeout(PATIENCE, client.next_message())
        .await
        .expect("a text frame in time");
    match message {
        Message::Text(text) => text.to_string(),
        other => panic!("expected a text frame, got {other:?}"),
    }
}

/// Subscribes with `since_seq` and returns the replayed frames' texts.
async fn replay_texts(client: &mut Client, channel: Channel, since_seq: u64) -> Vec<String> {
    client
        .send(json!({"type": "subscribe", "channel": channel.to_string(), "since_seq": since_seq}))
        .await;
    let subscribed: Value = serde_json::from_str(&next_text(client).await).expect("JSON");
    assert_eq!(subscribed["type"], "subscribed", "{subscribed}");
    let mut events = Vec::new();
    loop {
        let text = next_text(client).await;
        let frame: Value = serde_json::from_str(&text).expect("JSON");
        if frame["type"] == "replayed" {
            return events;
        }
        events.push(text);
    }
}

/// The one frame or line with `seq`.
fn with_seq(frames: &[String], seq: u64) -> &String {
    let found: Vec<&String> = frames
        .iter()
        .filter(|f| serde_json::from_str::<Value>(f).expect("JSON")["seq"] == seq)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "exactly one frame with seq {seq}: {frames:?}"
    );
    found[0]
}

fn parse(frame: &str) -> Value {
    let value: Value = serde_json::from_str(frame).expect("JSON");
    assert_schema(&value);
    value
}

#[tokio::test]
async fn extra_fields_straight_from_nats_arrive_live_in_a_replay_and_in_history() {
    let nats = nats();
    let gateway = Gateway::start(&nats);
    let log = log(&nats).await;
    let c = Id::new_v4();
    let mut live = Client::connect(&gateway, &token(Id::new_v4(), Grant::All, &[])).await;
    live.subscribe(chat(c)).await;

    let (id, data) = (Id::new_v4(), newer_message_data(c, "from a newer service"));
    let payload = newer_payload(id, "channel_message", &data);
    let seq = publish_raw(
        log.client(),
        format!("chat.channel.{c}.channel_message"),
        payload,
    )
    .await;

    let frame = next_text(&mut live).await;
    let value = parse(&frame);
    assert_eq!(
        (&value["type"], &value["seq"], &value["id"]),
        (
            &json!("channel_message"),
            &json!(seq),
            &json!(id.to_string())
        ),
        "{frame}"
    );
    assert!(
        value.get("trace_id").is_none(),
        "top-level extras are not delivered"
    );
    assert_eq!(data_text(&frame), data, "live: data as published");

    let mut later = Client::connect(&gateway, &token(Id::new_v4(), Grant::All, &[])).await;
    let replayed = replay_texts(&mut later, chat(c), 0).await;
    assert_eq!(replayed.len(), 1, "{replayed:?}");
    parse(&replayed[0]);
    assert_eq!(data_text(&replayed[0]), data, "replay: data as published");
    assert_eq!(replayed[0], frame, "a replayed frame is the live frame");

    let history = history_lines(&gateway, chat(c)).await;
    assert_eq!(history.len(), 1, "{history:?}");
    parse(&history[0]);
    assert_eq!(data_text(&history[0]), data, "history: data as published");

    let replay = cli_replay(&nats.url(), chat(c)).await;
    assert_eq!(replay.len(), 1, "{replay:?}");
    assert_eq!(
        data_text(with_seq(&replay, seq)),
        data,
        "`switchboard replay`"
    );
}

#[tokio::test]
async fn extra_data_fields_given_to_the_publish_api_and_the_cli_are_stored_as_given() {
    let nats = nats();
    let gateway = Gateway::start(&nats);
    let (c, banned) = (Id::new_v4(), Id::new_v4());
    let mut live = Client::connect(&gateway, &token(Id::new_v4(), Grant::All, &[])).await;
    live.subscribe(chat(c)).await;
    let mut user = Client::connect(&gateway, &token(banned, Grant::None, &[])).await;
    user.subscribe(Channel::User(banned)).await;
    let publisher = token(Id::new_v4(), Grant::None, &[Role::Publisher]);
    let post = |body: String| {
        http()
            .post(gateway.http("/v1/events"))
            .bearer_auth(&publisher)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };

    // POST /v1/events: the body's `data` text is what is stored.
    let via_api = newer_message_data(c, "through the API");
    let reply = post(format!(r#"{{"type":"channel_message","data":{via_api}}}"#))
        .await
        .expect("post");
    assert_eq!(reply.status(), 200);
    let receipt: Value = reply.json().await.expect("receipt");
    let api_seq = receipt["seq"].as_u64().expect("seq");
    let frame = next_text(&mut live).await;
    assert_eq!(parse(&frame)["seq"], api_seq);
    assert_eq!(data_text(&frame), via_api, "API: data as given");

    // `switchboard publish --data`: the flag's text is what is stored.
    let via_cli = newer_message_data(c, "through the CLI");
    let out = run(switchboard().args([
        "publish",
        "--nats-url",
        &nats.url(),
        "--type",
        "channel_message",
        "--data",
        &via_cli,
    ]))
    .await;
    let receipt: Value = serde_json::from_str(out.trim()).expect("receipt");
    let cli_seq = receipt["seq"].as_u64().expect("seq");
    let frame = next_text(&mut live).await;
    assert_eq!(parse(&frame)["seq"], cli_seq);
    assert_eq!(data_text(&frame), via_cli, "CLI: data as given");

    // A moderation event: the channel copy as given, the user copy as given
    // but for `user_id`.
    let ban = format!(
        r#"{{"channel_id":"{c}","user_id":"{banned}","motive":"spam","until":"2031-01-01T00:00:00Z","evidence":[{{"message":1.50}}]}}"#
    );
    let reply = post(format!(r#"{{"type":"user_banned","data":{ban}}}"#))
        .await
        .expect("post");
    assert_eq!(reply.status(), 200);
    let receipt: Value = reply.json().await.expect("receipt");
    let frame = next_text(&mut live).await;
    assert_eq!(parse(&frame)["seq"], receipt["seq"]);
    assert_eq!(data_text(&frame), ban, "the channel copy as given");
    let frame = next_text(&mut user).await;
    assert_eq!(parse(&frame)["seq"], receipt["user_seq"]);
    assert_eq!(
        data_text(&frame),
        format!(
            r#"{{"channel_id":"{c}","motive":"spam","until":"2031-01-01T00:00:00Z","evidence":[{{"message":1.50}}]}}"#
        ),
        "the user copy: as given, without user_id"
    );

    // Stored as given: history and a replay read the same text back.
    let history = history_lines(&gateway, chat(c)).await;
    assert_eq!(data_text(with_seq(&history, api_seq)), via_api);
    assert_eq!(data_text(with_seq(&history, cli_seq)), via_cli);
    let mut later = Client::connect(&gateway, &token(Id::new_v4(), Grant::All, &[])).await;
    let replayed = replay_texts(&mut later, chat(c), 0).await;
    assert_eq!(data_text(with_seq(&replayed, api_seq)), via_api);
    assert_eq!(data_text(with_seq(&replayed, cli_seq)), via_cli);

    // The publish API still refuses a missing required field.
    let reply = post(format!(
        r#"{{"type":"channel_message","data":{{"channel_id":"{c}","message_id":"{}","user_id":"{}","username":null,"attachments":[]}}}}"#,
        Id::new_v4(),
        Id::new_v4()
    ))
    .await
    .expect("post");
    assert_eq!(reply.status(), 400);
    assert!(reply.text().await.expect("text").contains("content"));
}

#[tokio::test]
async fn a_missing_or_wrongly_typed_required_field_is_still_refused_logged_and_counted() {
    let nats = nats();
    // No window of recent events: the replay below reads the stream, so
    // the stream reader's skip is what is tested (a window replay passes
    // over the hole the router left, without reading it again).
    let gateway = Gateway::start_with(&nats, &["--window-events", "0"]);
    let log = log(&nats).await;
    let c = Id::new_v4();
    let mut live = Client::connect(&gateway, &token(Id::new_v4(), Grant::All, &[])).await;
    live.subscribe(chat(c)).await;
    let subject = format!("chat.channel.{c}.channel_message");
    let before = gateway.metric("switchboard_invalid_events_total").await;

    let good = newer_message_data(c, "fine");
    let bad: Vec<String> = vec![
        // No `content`, though a newer field is there.
        good.replace(r#""content":"fine", "#, ""),
        // `content` of the wrong type.
        good.replace(r#""content":"fine""#, r#""content":{"text":"fine"}"#),
        // A bad id.
        good.replace(
            &format!(r#""channel_id":"{c}""#),
            r#""channel_id":"not-an-id""#,
        ),
    ];
    let mut bad_seqs = Vec::new();
    for data in &bad {
        assert_ne!(data, &good, "the mutation applied");
        let payload = newer_payload(Id::new_v4(), "channel_message", data);
        bad_seqs.push(publish_raw(log.client(), subject.clone(), payload).await);
    }
    let good_seq = publish_raw(
        log.client(),
        subject.clone(),
        newer_payload(Id::new_v4(), "channel_message", &good),
    )
    .await;

    // Live: only the valid event arrives.
    let frame = next_text(&mut live).await;
    assert_eq!(
        parse(&frame)["seq"],
        good_seq,
        "only the valid event: {frame}"
    );
    assert_eq!(data_text(&frame), good);

    // A replay skips them too.
    let mut later = Client::connect(&gateway, &token(Id::new_v4(), Grant::All, &[])).await;
    let replayed = replay_texts(&mut later, chat(c), 0).await;
    let seqs: Vec<Value> = replayed.iter().map(|f| parse(f)["seq"].clone()).collect();
    assert_eq!(
        seqs,
        vec![json!(good_seq)],
        "the replay has only the valid event"
    );

    // Each is logged at WARN with its seq, and counted (once per reader
    // that met it: the live one and the replay at least).
    for seq in &bad_seqs {
        wait_until(&format!("a WARN naming seq {seq}"), || async {
            gateway.log_text().lines().any(|line| {
                line.contains("WARN")
                    && line.contains("skipping an invalid stored event")
                    && line.split_whitespace().any(|w| w == format!("seq={seq}"))
            })
        })
        .await;
    }
    let counted = gateway.metric("switchboard_invalid_events_total").await - before;
    assert!(
        counted >= 2.0 * bad.len() as f64,
        "{counted} invalid events counted for {} bad ones read twice",
        bad.len()
    );
}
