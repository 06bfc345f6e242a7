//! What clients send: typing, reaching peers with the token's identity and
//! rate limited, and bad input, answered with an error on a connection
//! that stays.

use super::*;

#[tokio::test]
async fn typing_reaches_peers_with_the_tokens_identity_and_is_rate_limited() {
    let nats = nats();
    let gateway = Gateway::start(&nats);
    let log = log(&nats).await;
    let c = Id::new_v4();
    let (ann, bob) = (Id::new_v4(), Id::new_v4());
    let grant = Grant::Some(vec![c]);
    let ann_token = token_named(
        ann,
        grant.clone(),
        &[],
        Some("ann"),
        Duration::from_secs(600),
    );
    let mut a = Client::connect(&gateway, &ann_token).await;
    let mut b = Client::connect(&gateway, &token(bob, grant, &[])).await;

    // Typing needs a subscription.
    a.send(json!({"type": "typing", "channel": format!("channel:{c}"), "is_typing": true, "request_id": "t"}))
        .await;
    assert_eq!(a.next().await["data"]["code"], "not_found");

    a.subscribe(chat(c)).await;
    b.subscribe(chat(c)).await;
    a.send(json!({
        "type": "typing", "channel": format!("channel:{c}"), "is_typing": true,
        "user_id": Id::new_v4().to_string(), "username": "mallory"
    }))
    .await;
    let typing = b.next().await;
    assert_schema(&typing);
    assert_eq!(typing["type"], "user_typing");
    assert_eq!(typing["data"]["user_id"], ann.to_string());
    assert_eq!(typing["data"]["username"], "ann");
    assert_eq!(typing["data"]["is_typing"], true);
    assert!(typing.get("seq").is_none());

    // Bob has no name in his token: his user id stands in.
    b.send(json!({"type": "typing", "channel": format!("channel:{c}"), "is_typing": false}))
        .await;
    let typing = a.next().await;
    assert_eq!(typing["data"]["username"], bob.to_string());

    // A burst of ten: at most two a second get through.
    for _ in 0..10 {
        a.send(json!({"type": "typing", "channel": format!("channel:{c}"), "is_typing": true}))
            .await;
    }
    a.send(json!({"type": "ping"})).await;
    assert_eq!(a.next().await["type"], "pong");
    log.store(&message(c, "marker")).await.expect("marker");
    let mut typing_seen = 0;
    loop {
        let frame = b.next().await;
        if frame["type"] == "channel_message" {
            break;
        }
        assert_eq!(frame["type"], "user_typing");
        typing_seen += 1;
    }
    assert!(
        (1..=4).contains(&typing_seen),
        "{typing_seen} typing frames passed the limit"
    );
    // Never stored.
    let history = log
        .history(&switchboard::log::HistoryQuery {
            channels: vec![chat(c)],
            ..Default::default()
        })
        .await
        .expect("history");
    let mut history = history;
    let mut kinds = Vec::new();
    while let Some(item) = history.next().await {
        kinds.push(item.expect("item").event.expect("valid").data.kind());
    }
    assert_eq!(kinds.len(), 1, "only the marker is stored: {kinds:?}");
}

#[tokio::test]
async fn bad_input_gets_an_error_and_the_connection_stays() {
    let nats = nats();
    let gateway = Gateway::start(&nats);
    let user = Id::new_v4();
    let mut bystander = Client::connect(&gateway, &token(Id::new_v4(), Grant::All, &[])).await;
    let mut client = Client::connect(&gateway, &token(user, Grant::All, &[])).await;
    let bad: Vec<Message> = vec![
        Message::Text("{not json".into()),
        Message::Text("[1,2,3]".into()),
        Message::Text(r#"{"type":"teleport"}"#.into()),
        Message::Text(r#"{"type":"subscribe"}"#.into()),
        Message::Text(r#"{"type":"subscribe","channel":"channel:1234"}"#.into()),
        Message::Text(r#"{"type":"ack","channel":"global"}"#.into()),
        Message::Text(r#"{"type":"subscribe","channel":"global","since":"x"}"#.into()),
        Message::Binary(vec![0u8, 159, 146, 150].into()),
    ];
    for message in bad {
        client.send_raw(message.clone()).await;
        let reply = client.next().await;
        assert_schema(&reply);
        assert_eq!(reply["type"], "error", "{message:?}");
        assert_eq!(reply["data"]["code"], "bad_request", "{message:?}");
    }
    client.send(json!({"type": "ping"})).await;
    assert_eq!(client.next().await["type"], "pong");
    bystander.send(json!({"type": "ping"})).await;
    assert_eq!(bystander.next().await["type"], "pong");

    // Refusals of well-formed requests are not abuse.
    let mut polite = Client::connect(&gateway, &token(Id::new_v4(), Grant::None, &[])).await;
    for _ in 0..30 {
        polite
            .send(json!({"type": "subscribe", "channel": format!("channel:{}", Id::new_v4())}))
            .await;
        assert_eq!(polite.next().await["data"]["code"], "forbidden");
    }
    polite.send(json!({"type": "ping"})).await;
    assert_eq!(polite.next().await["type"], "pong");

    // A flood of bad frames closes with 4029 (20 are allowed a minute).
    let mut flood = Client::connect(&gateway, &token(Id::new_v4(), Grant::All, &[])).await;
    for _ in 0..21 {
        flood.send_raw(Message::Text("nonsense".into())).await;
    }
    assert_eq!(flood.closed_with().await, 4029);

    // A frame over 64 KiB closes with 1009.
    let mut big = Client::connect(&gateway, &token(Id::new_v4(), Grant::All, &[])).await;
    let huge = format!(r#"{{"type":"ping","pad":"{}"}}"#, "x".repeat(70 * 1024));
    big.send_raw(Message::Text(huge.into())).await;
    assert_eq!(big.closed_with().await, 1009);

    bystander.send(json!({"type": "ping"})).await;
    assert_eq!(bystander.next().await["type"], "pong");
}
