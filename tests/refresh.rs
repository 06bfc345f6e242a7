//! In-band token refresh against the real gateway: a connection that
//! refreshes before its token expires stays open past the old `exp` and
//! loses no event; a refused refresh changes nothing (the socket still
//! closes with 4001 at the old `exp`); narrower grants end exactly the
//! subscriptions they no longer allow, with `revoked`.

use std::time::Duration;

use serde_json::{json, Value};
use switchboard::channel::{Channel, Id};
use switchboard::token::Grant;
use switchboard_harness::*;

fn chat(id: Id) -> Channel {
    Channel::Chat(id)
}

/// Sends a `refresh` and returns the answer (`refreshed` or `error`),
/// skipping the events that arrive before it.
async fn refresh(client: &mut Client, token: &str, request_id: &str) -> (Value, Vec<Value>) {
    client
        .send(json!({"type": "refresh", "token": token, "request_id": request_id}))
        .await;
    let mut before = Vec::new();
    loop {
        let frame = client.next().await;
        if frame["data"]["request_id"] == request_id {
            assert_schema(&frame);
            return (frame, before);
        }
        before.push(frame);
    }
}

#[tokio::test]
async fn a_refresh_before_expiry_keeps_the_connection_past_the_old_exp_and_loses_nothing() {
    let nats = nats();
    let gateway = Gateway::start(&nats);
    let log = log(&nats).await;
    let (user, c) = (Id::new_v4(), Id::new_v4());
    let short = token_named(
        user,
        Grant::Some(vec![c]),
        &[],
        None,
        Duration::from_secs(3),
    );
    let old_exp = chrono::Utc::now().timestamp() + 3;
    let mut client = Client::connect(&gateway, &short).await;
    client.subscribe(chat(c)).await;

    // Events flow before, during and after the refresh, and past the old
    // expiry.
    let publisher = tokio::spawn(async move {
        let mut seqs = Vec::new();
        for n in 0..30 {
            let receipt = log
                .publish(&message(c, format!("m{n}")))
                .await
                .expect("publish");
            seqs.push(receipt.stored.seq);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        seqs
    });
    tokio::time::sleep(Duration::from_millis(800)).await;
    let long = token_named(
        user,
        Grant::Some(vec![c]),
        &[],
        None,
        Duration::from_secs(600),
    );
    let (answer, mut events) = refresh(&mut client, &long, "r1").await;
    assert_eq!(answer["type"], "refreshed", "{answer}");
    assert!(answer["data"]["exp"].as_i64().expect("exp") > old_exp + 500);

    let published = publisher.await.expect("publisher");
    assert!(
        chrono::Utc::now().timestamp() > old_exp + 1,
        "the publisher ran past the old expiry"
    );
    while events.len() < published.len() {
        let frame = client.next().await;
        assert!(
            frame.get("seq").is_some(),
            "only events after the refresh: {frame}"
        );
        events.push(frame);
    }
    assert_eq!(seqs(&events), published, "every event once, in order");
    // Still open: a ping is answered.
    client
        .send(json!({"type": "ping", "request_id": "p"}))
        .await;
    assert_eq!(client.next().await["type"], "pong");
}

#[tokio::test]
async fn a_refused_refresh_changes_nothing() {
    let nats = nats();
    let gateway = Gateway::start(&nats);
    let (user, other, c) = (Id::new_v4(), Id::new_v4(), Id::new_v4());
    let short = token_named(
        user,
        Grant::Some(vec![c]),
        &[],
        None,
        Duration::from_secs(4),
    );
    let mut client = Client::connect(&gateway, &short).await;
    client.subscribe(chat(c)).await;

    let another_user = token_named(other, Grant::All, &[], None, Duration::from_secs(600));
    let (answer, _) = refresh(&mut client, &another_user, "sub").await;
    assert_eq!(answer["type"], "error");
    assert_eq!(answer["data"]["code"], "forbidden");
    assert!(
        answer["data"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("another user")),
        "{answer}"
    );
    let foreign = {
        let claims = switchboard::token::dev_claims(
            user,
            Duration::from_secs(600),
            None,
            Grant::All,
            vec![],
        );
        switchboard::token::Signer::hs256(b"not the gateway's secret")
            .mint(&claims)
            .expect("mint")
    };
    let (answer, _) = refresh(&mut client, &foreign, "sig").await;
    assert_eq!(answer["data"]["code"], "forbidden", "{answer}");
    assert!(
        answer["data"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("bad signature")),
        "{answer}"
    );
    let (answer, _) = refresh(&mut client, "not.a.jwt", "garbage").await;
    assert_eq!(answer["data"]["code"], "bad_request", "{answer}");

    // The subscription stayed, and the old expiry still closes the socket.
    client
        .send(json!({"type": "subscribe", "channel": chat(c).to_string(), "request_id": "again"}))
        .await;
    let again = client.next().await;
    assert_eq!(
        again["data"]["code"], "bad_request",
        "still subscribed: {again}"
    );
    assert_eq!(client.closed_with().await, 4001);
}

#[tokio::test]
async fn narrower_grants_end_the_subscription_they_no_longer_allow() {
    let nats = nats();
    let gateway = Gateway::start(&nats);
    let log = log(&nats).await;
    let (user, kept, dropped) = (Id::new_v4(), Id::new_v4(), Id::new_v4());
    let both = token_named(
        user,
        Grant::Some(vec![kept, dropped]),
        &[],
        Some("before"),
        Duration::from_secs(600),
    );
    let mut client = Client::connect(&gateway, &both).await;
    for channel in [
        chat(kept),
        chat(dropped),
        Channel::Global,
        Channel::User(user),
    ] {
        client.subscribe(channel).await;
    }
    let narrower = token_named(
        user,
        Grant::Some(vec![kept]),
        &[],
        Some("after"),
        Duration::from_secs(900),
    );
    let (answer, before) = refresh(&mut client, &narrower, "narrow").await;
    assert_eq!(answer["type"], "refreshed", "{answer}");
    assert_eq!(before.len(), 1, "one subscription ended: {before:?}");
    assert_schema(&before[0]);
    assert_eq!(before[0]["type"], "unsubscribed");
    assert_eq!(before[0]["data"]["channel"], chat(dropped).to_string());
    assert_eq!(before[0]["data"]["reason"], "revoked");

    // The dropped channel's events no longer come; the kept one's do.
    log.publish(&message(dropped, "gone"))
        .await
        .expect("publish");
    let kept_seq = log
        .publish(&message(kept, "here"))
        .await
        .expect("publish")
        .stored
        .seq;
    let next = client.next().await;
    assert_eq!(next["seq"], kept_seq, "{next}");
    assert_eq!(next["channel"], chat(kept).to_string());
    // And it cannot come back under the new token.
    client
        .send(json!({"type": "subscribe", "channel": chat(dropped).to_string(), "request_id": "back"}))
        .await;
    assert_eq!(client.next().await["data"]["code"], "forbidden");
}
