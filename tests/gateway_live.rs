//! The live path over a real WebSocket: every event type end to end,
//! authorization, typing, fan-out order, bad input, 401s and shutdown.

use std::time::Duration;

use serde_json::{json, Value};
use switchboard::channel::{Channel, Id};
use switchboard::event::{format_timestamp, Event};
use switchboard::token::{Grant, Role};
use switchboard_harness::*;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn every_event_type_arrives_with_the_exact_envelope() {
    let nats = nats();
    let gateway = Gateway::start(&nats);
    let log = log(&nats).await;
    let stream = async_nats::jetstream::new(log.client().clone())
        .get_stream(&log.settings().name)
        .await
        .expect("the stream");
    let (c, u, observer) = (Id::new_v4(), Id::new_v4(), Id::new_v4());

    // The moderated user watches their own channel and `global`; an
    // observer with a grant watches the chat channel.
    let mut user = Client::connect(&gateway, &token(u, Grant::None, &[])).await;
    assert_schema(&user.hello);
    user.subscribe(Channel::User(u)).await;
    user.subscribe(Channel::Global).await;
    let mut watcher = Client::connect(&gateway, &token(observer, Grant::All, &[])).await;
    watcher.subscribe(chat(c)).await;

    for data in samples(c, u) {
        let event = Event::new(data);
        let receipt = log.publish(&event).await.expect("published");
        for copy in event.copies() {
            let client = match copy.channel {
                Channel::Chat(_) => &mut watcher,
                _ => &mut user,
            };
            let frame = client.next().await;
            assert_schema(&frame);
            let seq = match copy.channel {
                Channel::User(_) => receipt.stored.user_seq.expect("user copy seq"),
                _ => receipt.stored.seq,
            };
            // The stream's own record of the message (`STREAM.MSG.GET`, not
            // the direct get behind `time_of` and the receipt): the envelope
            // carries the log's commit time, and so does the receipt.
            let time = stream
                .get_raw_message(seq)
                .await
                .expect("the stored message")
                .time;
            if seq == receipt.stored.seq {
                assert_eq!(receipt.time, time, "the receipt has the log time");
            }
            let expected_time = json!(format_timestamp(&time));
            assert_eq!(
                frame,
                json!({
                    "type": event.kind().as_str(),
                    "timestamp": expected_time,
                    "data": data_value(&copy.data),
                    "channel": copy.channel.to_string(),
                    "seq": seq,
                    "id": event.id.to_string(),
                }),
                "copy on {}",
                copy.channel
            );
            if copy.channel == Channel::User(u) {
                assert!(
                    frame["data"].get("user_id").is_none(),
                    "user copy has no user_id"
                );
            }
        }
    }
    // The deletion ends the observer's subscription.
    let end = watcher.next().await;
    assert_schema(&end);
    assert_eq!(end["type"], "unsubscribed");
    assert_eq!(end["data"]["reason"], "channel_deleted");
}

#[tokio::test]
async fn the_three_channel_kinds_are_authorized() {
    let nats = nats();
    let gateway = Gateway::start(&nats);
    let (u, granted, other) = (Id::new_v4(), Id::new_v4(), Id::new_v4());
    let mut client = Client::connect(&gateway, &token(u, Grant::Some(vec![granted]), &[])).await;

    for allowed in [chat(granted), Channel::User(u), Channel::Global] {
        let reply = client.subscribe(allowed).await;
        assert_schema(&reply);
        assert_eq!(reply["data"]["request_id"], "sub");
        assert_eq!(reply["data"]["complete"], true);
    }
    for (channel, code) in [
        (format!("channel:{other}"), "forbidden"),
        (format!("user:{other}"), "forbidden"),
        (format!("channel:{granted}"), "bad_request"),
        ("channel:not-a-uuid".to_string(), "bad_request"),
        ("room:1".to_string(), "bad_request"),
    ] {
        client
            .send(json!({"type": "subscribe", "channel": channel, "request_id": "r"}))
            .await;
        let reply = client.next().await;
        assert_schema(&reply);
        assert_eq!(reply["type"], "error", "{channel}");
        assert_eq!(reply["data"]["code"], code, "{channel}: {reply}");
        assert_eq!(reply["data"]["request_id"], "r");
    }
    client
        .send(json!({"type": "unsubscribe", "channel": format!("channel:{other}"), "request_id": "u"}))
        .await;
    let reply = client.next().await;
    assert_eq!(reply["data"]["code"], "not_found");
    client
        .send(json!({"type": "unsubscribe", "channel": "global", "request_id": "u2"}))
        .await;
    let reply = client.next().await;
    assert_schema(&reply);
    assert_eq!(reply["type"], "unsubscribed");
    assert_eq!(reply["data"]["reason"], "requested");
    assert_eq!(reply["data"]["request_id"], "u2");
    client
        .send(json!({"type": "ping", "request_id": "p"}))
        .await;
    let pong = client.next().await;
    assert_schema(&pong);
    assert_eq!(pong["data"]["request_id"], "p");
}

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
async fn fifty_clients_get_three_hundred_events_in_order() {
    let nats = nats();
    let gateway = Gateway::start(&nats);
    let log = log(&nats).await;
    let c = Id::new_v4();
    let mut clients = Vec::new();
    for _ in 0..50 {
        let mut client = Client::connect(&gateway, &token(Id::new_v4(), Grant::All, &[])).await;
        client.subscribe(chat(c)).await;
        clients.push(client);
    }
    let publishes = (0..300).map(|i| {
        let log = log.clone();
        async move {
            log.store(&message(c, format!("m{i}")))
                .await
                .expect("stored")
                .seq
        }
    });
    let mut published: Vec<u64> = futures::future::join_all(publishes).await;
    published.sort_unstable();
    let readers = clients.into_iter().map(|mut client| async move {
        let frames = client.events(300).await;
        seqs(&frames)
    });
    for received in futures::future::join_all(readers).await {
        assert_seqs(&received, &published, "every event, once, in seq order");
    }
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

#[tokio::test]
async fn bad_tokens_get_401_and_no_socket() {
    use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
    let nats = nats();
    let gateway = Gateway::start(&nats);
    let user = Id::new_v4();
    let expired = {
        let mut claims =
            switchboard::token::dev_claims(user, Duration::ZERO, None, Grant::All, vec![]);
        claims.exp -= 60;
        switchboard::token::TokenKeys::hs256(SECRET.as_bytes())
            .mint(&claims)
            .expect("mint")
    };
    let foreign = {
        let claims =
            switchboard::token::dev_claims(user, Duration::from_secs(60), None, Grant::All, vec![]);
        switchboard::token::TokenKeys::hs256(b"another secret")
            .mint(&claims)
            .expect("mint")
    };
    let unsigned = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(
            json!({"sub": user.to_string(), "exp": chrono::Utc::now().timestamp() + 600})
                .to_string()
        )
    );
    for (name, url) in [
        ("missing", format!("ws://{}/v1/ws", gateway.addr)),
        ("malformed", gateway.ws_url("not.a.jwt")),
        ("expired", gateway.ws_url(&expired)),
        ("wrongly signed", gateway.ws_url(&foreign)),
        ("alg none", gateway.ws_url(&unsigned)),
    ] {
        match tokio_tungstenite::connect_async(url).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                assert_eq!(response.status().as_u16(), 401, "{name}")
            }
            Err(other) => panic!("{name}: expected HTTP 401, got {other}"),
            Ok(_) => panic!("{name}: the upgrade was accepted"),
        }
    }
    // The header works as well as the query parameter.
    let request = {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut request = format!("ws://{}/v1/ws", gateway.addr)
            .into_client_request()
            .expect("request");
        let bearer = format!("Bearer {}", token(user, Grant::All, &[]));
        request
            .headers_mut()
            .insert("authorization", bearer.parse().expect("header"));
        request
    };
    let (mut ws, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("upgrade");
    use futures::StreamExt;
    let hello = ws.next().await.expect("frame").expect("ok");
    assert!(hello.to_text().expect("text").contains("\"hello\""));
}

#[tokio::test]
async fn an_expiring_token_closes_the_socket_with_4001() {
    let nats = nats();
    let gateway = Gateway::start(&nats);
    let short = token_named(Id::new_v4(), Grant::All, &[], None, Duration::from_secs(2));
    let mut client = Client::connect(&gateway, &short).await;
    assert_eq!(client.closed_with().await, 4001);
}

#[tokio::test]
async fn the_http_api() {
    let nats = nats();
    let gateway = Gateway::start(&nats);
    let http = http();
    let c = Id::new_v4();
    let u = Id::new_v4();
    let publisher = token(Id::new_v4(), Grant::None, &[Role::Publisher]);
    let auditor = token(Id::new_v4(), Grant::None, &[Role::Auditor]);
    let nobody = token(Id::new_v4(), Grant::All, &[]);

    let get = |path: &str| http.get(gateway.http(path)).send();
    assert_eq!(get("/healthz").await.expect("healthz").status(), 200);
    assert_eq!(get("/readyz").await.expect("readyz").status(), 200);

    let post = |token: &str, body: Value| {
        http.post(gateway.http("/v1/events"))
            .bearer_auth(token)
            .json(&body)
            .send()
    };
    let created = json!({"type": "channel_created", "data": {"channel_id": c.to_string(), "channel_name": "general"}});
    assert_eq!(
        http.post(gateway.http("/v1/events"))
            .json(&created)
            .send()
            .await
            .expect("post")
            .status(),
        401
    );
    assert_eq!(
        post(&nobody, created.clone()).await.expect("post").status(),
        403
    );
    let reply = post(&publisher, created).await.expect("post");
    assert_eq!(reply.status(), 200);
    let reply: Value = reply.json().await.expect("json");
    assert!(
        reply["seq"].as_u64().is_some()
            && reply["timestamp"].is_string()
            && reply["id"].is_string()
    );

    let id = Id::new_v4().to_string();
    let ban = json!({"type": "user_banned", "id": id,
        "data": {"channel_id": c.to_string(), "user_id": u.to_string(), "motive": "spam"}});
    let first: Value = post(&publisher, ban.clone())
        .await
        .expect("post")
        .json()
        .await
        .expect("json");
    let again: Value = post(&publisher, ban)
        .await
        .expect("post")
        .json()
        .await
        .expect("json");
    assert!(first["user_seq"].as_u64().is_some());
    assert_eq!(first["seq"], again["seq"], "same id, stored once");
    assert_eq!(first["user_seq"], again["user_seq"]);

    for (body, needle) in [
        (
            json!({"type": "channel_deleted", "data": {"channel_id": "nope"}}),
            "channel_id",
        ),
        (
            json!({"type": "member_joined", "data": {"channel_id": c.to_string(), "user_id": u.to_string()}}),
            "username",
        ),
        (json!({"type": "user_typing", "data": {}}), "ephemeral"),
        (json!({"type": "made_up", "data": {}}), "type"),
        (json!({"data": {}}), "type"),
    ] {
        let reply = post(&publisher, body.clone()).await.expect("post");
        assert_eq!(reply.status(), 400, "{body}");
        let text = reply.text().await.expect("body");
        assert!(text.contains(needle), "{body} → {text}");
    }

    for i in 0..5 {
        let body = json!({"type": "message_deleted", "data": {"channel_id": c.to_string(), "message_id": Id::new_v4().to_string()}});
        assert_eq!(
            post(&publisher, body).await.expect("post").status(),
            200,
            "message {i}"
        );
    }
    let history = |token: &str, query: &str| {
        http.get(gateway.http(&format!("/v1/history/channel:{c}{query}")))
            .bearer_auth(token)
            .send()
    };
    assert_eq!(history(&nobody, "").await.expect("get").status(), 403);
    let lines = |text: String| -> Vec<Value> {
        text.lines()
            .map(|l| serde_json::from_str(l).expect("NDJSON"))
            .collect()
    };
    let all = lines(
        history(&auditor, "")
            .await
            .expect("get")
            .text()
            .await
            .expect("text"),
    );
    assert_eq!(all.len(), 6, "the ban and five deletions");
    all.iter().for_each(assert_schema);
    let page1 = lines(
        history(&auditor, "?limit=4")
            .await
            .expect("get")
            .text()
            .await
            .expect("text"),
    );
    assert_eq!(page1, all[..4]);
    let after = page1[3]["seq"].as_u64().expect("seq");
    let page2 = lines(
        history(&auditor, &format!("?limit=4&after_seq={after}"))
            .await
            .expect("get")
            .text()
            .await
            .expect("text"),
    );
    assert_eq!(page2, all[4..]);
    let t = all[2]["timestamp"].as_str().expect("ts").to_string();
    let since = lines(
        history(&auditor, &format!("?since={t}"))
            .await
            .expect("get")
            .text()
            .await
            .expect("text"),
    );
    assert!(since
        .iter()
        .all(|e| e["timestamp"].as_str() >= Some(t.as_str())));
    assert!(since.contains(&all[2]));
    let until = lines(
        history(&auditor, &format!("?until={t}"))
            .await
            .expect("get")
            .text()
            .await
            .expect("text"),
    );
    assert!(until
        .iter()
        .all(|e| e["timestamp"].as_str() < Some(t.as_str())));
    for query in [
        "?limit=0",
        "?limit=10001",
        "?after_seq=-1",
        "?since=yesterday",
    ] {
        assert_eq!(
            history(&auditor, query).await.expect("get").status(),
            400,
            "{query}"
        );
    }

    let metrics = get("/metrics")
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    for series in [
        "switchboard_connections",
        "switchboard_subscriptions",
        "switchboard_events_in_total",
        "switchboard_events_out_total",
        "switchboard_events_replayed_total",
        "switchboard_events_dropped_total",
        "switchboard_invalid_events_total",
        "switchboard_slow_consumer_closes_total",
        "switchboard_publish_latency_seconds",
        "switchboard_delivery_latency_seconds",
    ] {
        assert!(
            metrics.contains(series),
            "metrics lack {series}:\n{metrics}"
        );
    }
}

#[tokio::test]
async fn an_invalid_stored_event_is_skipped_and_counted() {
    let nats = nats();
    let gateway = Gateway::start(&nats);
    let log = log(&nats).await;
    let c = Id::new_v4();
    let mut client = Client::connect(&gateway, &token(Id::new_v4(), Grant::All, &[])).await;
    client.subscribe(chat(c)).await;
    // Another service publishes straight to NATS, badly.
    let subject = format!("chat.channel.{c}.channel_message");
    let js = async_nats::jetstream::new(log.client().clone());
    for payload in [
        "not json".to_string(),
        json!({"id": Id::new_v4().to_string(), "type": "channel_message", "data": {"channel_id": c.to_string()}}).to_string(),
        json!({"id": Id::new_v4().to_string(), "type": "channel_deleted", "data": {"channel_id": c.to_string()}}).to_string(),
    ] {
        js.publish(subject.clone(), payload.into())
            .await
            .expect("publish")
            .await
            .expect("ack");
    }
    let good = log
        .store(&message(c, "after the bad ones"))
        .await
        .expect("stored");
    let frame = client.next().await;
    assert_eq!(
        frame["seq"], good.seq,
        "only the valid event arrives: {frame}"
    );
    let invalid = gateway.metric("switchboard_invalid_events_total").await;
    assert!(invalid >= 3.0, "{invalid}");
    assert!(gateway
        .log_text()
        .contains("skipping an invalid stored event"));
}

#[tokio::test]
async fn shutdown_closes_every_socket_with_1001() {
    let nats = nats();
    let mut gateway = Gateway::start(&nats);
    let mut clients = Vec::new();
    for _ in 0..3 {
        let mut client = Client::connect(&gateway, &token(Id::new_v4(), Grant::All, &[])).await;
        client.subscribe(Channel::Global).await;
        clients.push(client);
    }
    let stopping = tokio::task::spawn_blocking(move || {
        let status = gateway.terminate();
        (gateway, status)
    });
    for client in &mut clients {
        assert_eq!(client.closed_with().await, 1001);
        let reconnect = client.hello["data"]["reconnect_ms"].as_u64().expect("hint");
        assert!(reconnect > 0);
    }
    let (_gateway, status) = stopping.await.expect("joined");
    assert!(status.success(), "{status:?}");
}
