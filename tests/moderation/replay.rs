//! Replays and resumed sessions: what came while banned is withheld, a ban
//! published during the replay cuts it, a resumed session stops at a ban
//! made while away.

use super::*;

#[tokio::test]
async fn a_replay_withholds_what_came_while_banned_and_goes_on_after_the_unban() {
    let nats = nats();
    let gateway = Gateway::start(&nats);
    let log = log(&nats).await;
    let (c, u) = (Id::new_v4(), Id::new_v4());
    let mut before = Vec::new();
    for i in 0..5 {
        before.push(store(&log, &message(c, format!("before {i}"))).await);
    }
    let ban = banned(c, u);
    let ban_seq = store(&log, &ban).await;
    for i in 0..5 {
        store(&log, &message(c, format!("after {i}"))).await;
    }
    let unban_seq = store(&log, &unbanned(c, u)).await;

    // The node must have routed through the unban before the subscribe: a
    // subscribe before it had even seen the ban would be allowed, and its
    // replay would end where the node was, the rest coming live (a loaded
    // machine did that).
    wait_until("the node to route through the unban", || async {
        gateway.metric("switchboard_events_in_total").await >= unban_seq as f64
    })
    .await;
    let mut client = Client::connect(&gateway, &token(u, Grant::All, &[])).await;
    let start = before[0] - 1;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    // Wait until this node's projection has the unban.
    loop {
        client
            .send(
                json!({"type": "subscribe", "channel": format!("channel:{c}"), "since_seq": start}),
            )
            .await;
        let reply = client.next().await;
        if reply["type"] == "subscribed" {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{reply}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut got = Vec::new();
    loop {
        let frame = client.next().await;
        assert_ne!(frame["type"], "unsubscribed", "the ban was lifted: {frame}");
        if frame["type"] == "replayed" {
            break;
        }
        got.push(frame["seq"].as_u64().expect("seq"));
    }
    let mut expected = before.clone();
    expected.extend([ban_seq, unban_seq]);
    assert_seqs(
        &got,
        &expected,
        "what came before, the ban and the unban; nothing from while banned",
    );
    let live = store(&log, &message(c, "live")).await;
    assert_eq!(client.next().await["seq"], live, "then live");
}

#[tokio::test]
async fn a_ban_published_during_the_replay_cuts_it() {
    let nats = nats();
    let gateway = Gateway::start(&nats);
    let log = log(&nats).await;
    let (c, u) = (Id::new_v4(), Id::new_v4());
    for round in 0..5 {
        let backlog: Vec<u64> = {
            use futures::StreamExt;
            futures::stream::iter(0..3000)
                .map(|i| {
                    let log = log.clone();
                    async move {
                        log.store(&message(c, format!("{round}/{i}")))
                            .await
                            .expect("stored")
                            .seq
                    }
                })
                .buffer_unordered(128)
                .collect()
                .await
        };
        let start = backlog.iter().min().copied().expect("some") - 1;
        let mut client = Client::connect(&gateway, &token(u, Grant::All, &[])).await;
        client
            .send(
                json!({"type": "subscribe", "channel": format!("channel:{c}"), "since_seq": start}),
            )
            .await;
        let subscribed = client.next().await;
        assert_eq!(subscribed["type"], "subscribed", "{subscribed}");
        // The ban lands while the backlog is being replayed.
        let ban = banned(c, u);
        let ban_seq = store(&log, &ban).await;
        store(&log, &message(c, "after the ban")).await;
        let mut last = start;
        loop {
            let frame = client.next().await;
            match frame["type"].as_str() {
                Some("unsubscribed") => {
                    assert_eq!(frame["data"]["reason"], "banned");
                    break;
                }
                Some("replayed") => continue,
                _ => {
                    let seq = frame["seq"].as_u64().expect("seq");
                    assert!(seq > last, "in order");
                    assert!(seq <= ban_seq, "nothing after the ban: {frame}");
                    last = seq;
                }
            }
        }
        assert_eq!(last, ban_seq, "the ban itself is the last event");
        client.assert_silent(Duration::from_millis(200)).await;
        store(&log, &unbanned(c, u)).await;
        // Let the projection see the unban before the next round.
        let mut probe = Client::connect(&gateway, &token(u, Grant::All, &[])).await;
        subscribe_until(&mut probe, chat(c), "subscribed").await;
    }
}

#[tokio::test]
async fn a_resumed_session_stops_at_a_ban_made_while_away() {
    let nats = nats();
    let gateway = Gateway::start(&nats);
    let log = log(&nats).await;
    let (c, u) = (Id::new_v4(), Id::new_v4());
    let user = token(u, Grant::All, &[]);
    let mut client = Client::connect(&gateway, &user).await;
    let session = client.session_id();
    client.subscribe(chat(c)).await;
    client.subscribe(Channel::User(u)).await;
    let seen = store(&log, &message(c, "seen")).await;
    assert_eq!(client.events(1).await[0]["seq"], seen);
    // The ack makes the cursor exact (a frame only read is confirmed by a
    // pong a little later, and could come again). Once the connection has
    // ended, its session (cursor included) is saved.
    client
        .send(json!({"type": "ack", "channel": chat(c).to_string(), "seq": seen}))
        .await;
    client.close().await;
    gateway.wait_for_no_connections().await;

    let missed = store(&log, &message(c, "missed")).await;
    let ban = banned(c, u);
    let receipt = log.store(&ban).await.expect("stored");
    store(&log, &message(c, "after the ban")).await;

    let mut resumed = Client::connect_session(&gateway, &user, &session).await;
    assert_eq!(resumed.hello["data"]["resumed"], true);
    let mut chat_seqs = Vec::new();
    let mut user_seqs = Vec::new();
    let mut cut = None;
    let mut replayed = 0;
    while cut.is_none() || replayed < 1 {
        let frame = resumed.next().await;
        assert_schema(&frame);
        match frame["type"].as_str() {
            Some("subscribed") => {}
            Some("replayed") => replayed += 1,
            Some("unsubscribed") => cut = Some(frame["data"]["reason"].clone()),
            _ if frame["channel"] == format!("channel:{c}") => {
                assert!(cut.is_none(), "nothing after the cut: {frame}");
                chat_seqs.push(frame["seq"].as_u64().expect("seq"));
            }
            _ => user_seqs.push(frame["seq"].as_u64().expect("seq")),
        }
    }
    assert_eq!(cut, Some(json!("banned")));
    assert_seqs(&chat_seqs, &[missed, receipt.seq], "up to the ban");
    assert_eq!(user_seqs, vec![receipt.user_seq.expect("user copy")]);
}
