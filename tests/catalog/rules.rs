//! The rules hold for added types: a banned user's events are withheld,
//! live and in replay; a node without the type skips it and keeps
//! delivering the rest.

use switchboard::event::{BanChange, Event, EventData};

use super::*;

#[tokio::test]
async fn a_banned_users_added_events_are_withheld_live_and_in_replay() {
    let nats = nats();
    let dir = catalog_dir();
    let gateway = Gateway::start_with(
        &nats,
        &["--catalog-dir", dir.path().to_str().expect("utf-8")],
    );
    let (c, bob, other) = (Id::new_v4(), Id::new_v4(), Id::new_v4());
    let bob_token = token(bob, Grant::All, &[]);
    let mut live = Client::connect(&gateway, &bob_token).await;
    subscribe(&mut live, Channel::Chat(c)).await;

    let (status, _) = post(
        &gateway,
        json!({"type": "reaction_added", "data": reaction(c, other, "before")}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        next_of(&mut live, "reaction_added").await["data"]["emoji"],
        "before"
    );

    // Bob is banned: his subscription ends; what comes meanwhile is not his.
    let log = log(&nats).await;
    let ban = |kind: fn(BanChange) -> EventData| {
        Event::new(kind(BanChange {
            channel_id: c,
            user_id: Some(bob),
            motive: "spam".into(),
        }))
    };
    log.publish(&ban(EventData::UserBanned)).await.expect("ban");
    let ended = next_of(&mut live, "unsubscribed").await;
    assert_eq!(ended["data"]["reason"], "banned");
    let (status, _) = post(
        &gateway,
        json!({"type": "reaction_added", "data": reaction(c, other, "during")}),
    )
    .await;
    assert_eq!(status, 200);
    let mut refused = Client::connect(&gateway, &bob_token).await;
    refused
        .send(json!({"type": "subscribe", "channel": Channel::Chat(c).to_string()}))
        .await;
    assert_eq!(
        next_of(&mut refused, "error").await["data"]["code"],
        "forbidden"
    );

    // Unbanned: a replay from the start shows what he could see, not
    // what came while he was banned.
    log.publish(&ban(EventData::UserUnbanned))
        .await
        .expect("unban");
    let (status, _) = post(
        &gateway,
        json!({"type": "reaction_added", "data": reaction(c, other, "after")}),
    )
    .await;
    assert_eq!(status, 200);
    wait_until("the unban to reach the projection", || async {
        let mut probe = Client::connect(&gateway, &bob_token).await;
        probe
            .send(json!({"type": "subscribe", "channel": Channel::Chat(c).to_string()}))
            .await;
        probe.next().await["type"] == "subscribed"
    })
    .await;
    let mut replay = Client::connect(&gateway, &bob_token).await;
    let (_, events, _) = replay.subscribe_since(Channel::Chat(c), json!(0)).await;
    let emojis: Vec<&str> = events
        .iter()
        .filter(|e| e["type"] == "reaction_added")
        .map(|e| e["data"]["emoji"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(emojis, ["before", "after"], "{events:?}");
}

#[tokio::test]
async fn a_node_without_the_type_skips_it_and_keeps_delivering() {
    let nats = nats();
    let dir = catalog_dir();
    let with = Gateway::start_with(
        &nats,
        &["--catalog-dir", dir.path().to_str().expect("utf-8")],
    );
    let without = Gateway::start_with(&nats, &[]);
    let c = Id::new_v4();
    let mut client = Client::connect(&without, &token(Id::new_v4(), Grant::All, &[])).await;
    subscribe(&mut client, Channel::Chat(c)).await;

    // The older node's start left the newer type's subjects in the stream.
    let (status, reply) = post(
        &with,
        json!({"type": "reaction_added", "data": reaction(c, Id::new_v4(), "x")}),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    let log = log(&nats).await;
    let after = log
        .publish(&message(c, "still here"))
        .await
        .expect("message");
    let frame = next_of(&mut client, "channel_message").await;
    assert_eq!(
        frame["seq"], after.stored.seq,
        "the added event was skipped, the next delivered"
    );

    let metrics = http()
        .get(without.http("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    // Both copies (the channel's and the user's) were skipped.
    assert!(
        metrics.contains("switchboard_unknown_events_total{type=\"reaction_added\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("switchboard_invalid_events_total 0"),
        "not invalid"
    );
}
