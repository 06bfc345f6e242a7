//! A user's standing over time (banned, kicked or gone, then back): a
//! replay, a restored session and a live subscription follow it.

use super::*;

/// How a user loses, then regains, their standing in a channel.
#[derive(Clone, Copy, Debug)]
enum Away {
    Ban,
    Kick,
    Leave,
}

const AWAYS: [Away; 3] = [Away::Ban, Away::Kick, Away::Leave];

impl Away {
    fn cut(self, c: Id, u: Id) -> Event {
        match self {
            Away::Ban => banned(c, u),
            Away::Kick => kicked(c, u),
            Away::Leave => left(c, u),
        }
    }

    /// What brings the user back: an unban and a join, or a join.
    fn comeback(self, c: Id, u: Id) -> Vec<Event> {
        match self {
            Away::Ban => vec![unbanned(c, u), joined(c, u)],
            Away::Kick | Away::Leave => vec![joined(c, u)],
        }
    }

    fn reason(self) -> &'static str {
        match self {
            Away::Ban => "banned",
            Away::Kick => "kicked",
            Away::Leave => "left",
        }
    }
}

/// Waits until the projection lets `u` subscribe to the channel again.
async fn until_allowed(gateway: &Gateway, c: Id, u: Id) {
    let mut probe = Client::connect(gateway, &token(u, Grant::None, &[])).await;
    subscribe_until(&mut probe, chat(c), "subscribed").await;
    probe.close().await;
}

/// Reads up to the event `seq`. A subscription made right after a join may
/// still get the join itself (the projection folds an event just before
/// the hub fans it out): only earlier events may come first.
async fn until_seq(client: &mut Client, seq: u64) {
    loop {
        let frame = client.next().await;
        let got = frame["seq"].as_u64().expect("an event");
        if got == seq {
            return;
        }
        assert!(got < seq, "expected {seq}, got {frame}");
    }
}

/// The chat events a client receives up to `replayed`; `unsubscribed` fails.
async fn replayed_seqs(client: &mut Client, c: Id) -> Vec<u64> {
    let mut seqs = Vec::new();
    loop {
        let frame = client.next().await;
        assert_schema(&frame);
        match frame["type"].as_str() {
            Some("subscribed") => {}
            Some("replayed") => return seqs,
            Some("unsubscribed") => panic!("the replay must go on past a lifted cut: {frame}"),
            _ => {
                assert_eq!(frame["channel"], format!("channel:{c}"), "{frame}");
                seqs.push(frame["seq"].as_u64().expect("seq"));
            }
        }
    }
}

#[tokio::test]
async fn a_replay_follows_the_users_standing_over_time() {
    let nats = nats();
    let gateway = Gateway::start(&nats);
    let log = log(&nats).await;
    for away in AWAYS {
        let (c, u) = (Id::new_v4(), Id::new_v4());
        store(&log, &message(c, "before the user joined")).await;
        let mut shown = vec![store(&log, &joined(c, u)).await];
        shown.push(store(&log, &message(c, "while a member")).await);
        shown.push(store(&log, &away.cut(c, u)).await);
        store(&log, &message(c, "while away")).await;
        for event in away.comeback(c, u) {
            shown.push(store(&log, &event).await);
        }
        shown.push(store(&log, &message(c, "back again")).await);
        until_allowed(&gateway, c, u).await;

        let mut client = Client::connect(&gateway, &token(u, Grant::None, &[])).await;
        client
            .send(json!({"type": "subscribe", "channel": chat(c).to_string(), "since_seq": 0}))
            .await;
        let seqs = replayed_seqs(&mut client, c).await;
        assert_seqs(
            &seqs,
            &shown,
            &format!("{away:?}: the user's own times only"),
        );
        let live = store(&log, &message(c, "live")).await;
        assert_eq!(client.next().await["seq"], live, "{away:?}: then live");
    }
}

#[tokio::test]
async fn a_restored_session_follows_the_users_standing_while_away() {
    let nats = nats();
    let gateway = Gateway::start(&nats);
    let log = log(&nats).await;
    for away in AWAYS {
        let (c, u) = (Id::new_v4(), Id::new_v4());
        let user = token(u, Grant::None, &[]);
        store(&log, &joined(c, u)).await;
        let mut client = Client::connect(&gateway, &user).await;
        let session = client.session_id();
        subscribe_until(&mut client, chat(c), "subscribed").await;
        let seen = store(&log, &message(c, "seen")).await;
        until_seq(&mut client, seen).await;
        client
            .send(json!({"type": "ack", "channel": chat(c).to_string(), "seq": seen}))
            .await;
        client.close().await;
        gateway.wait_for_no_connections().await;

        let mut shown = vec![store(&log, &away.cut(c, u)).await];
        store(&log, &message(c, "while away")).await;
        for event in away.comeback(c, u) {
            shown.push(store(&log, &event).await);
        }
        shown.push(store(&log, &message(c, "back again")).await);
        until_allowed(&gateway, c, u).await;
        gateway.wait_for_no_connections().await;

        let mut resumed = Client::connect_session(&gateway, &user, &session).await;
        assert_eq!(resumed.hello["data"]["resumed"], true);
        let seqs = replayed_seqs(&mut resumed, c).await;
        assert_seqs(&seqs, &shown, &format!("{away:?}: restored"));
        let live = store(&log, &message(c, "live")).await;
        assert_eq!(resumed.next().await["seq"], live, "{away:?}: then live");
    }
}

#[tokio::test]
async fn live_a_cut_ends_the_subscription_and_a_comeback_allows_a_new_one() {
    let nats = nats();
    let gateway = Gateway::start(&nats);
    let log = log(&nats).await;
    for away in AWAYS {
        let (c, u) = (Id::new_v4(), Id::new_v4());
        store(&log, &joined(c, u)).await;
        let mut client = Client::connect(&gateway, &token(u, Grant::None, &[])).await;
        subscribe_until(&mut client, chat(c), "subscribed").await;
        let seen = store(&log, &message(c, "seen")).await;
        until_seq(&mut client, seen).await;
        let cut = away.cut(c, u);
        store(&log, &cut).await;
        expect_cut(&mut client, &cut, away.reason()).await;
        store(&log, &message(c, "while away")).await;
        for event in away.comeback(c, u) {
            store(&log, &event).await;
        }
        subscribe_until(&mut client, chat(c), "subscribed").await;
        let back = store(&log, &message(c, "back again")).await;
        until_seq(&mut client, back).await;
    }
}
