//! Event-sourced membership and moderation: the projection decides who may
//! subscribe, and bans, kicks, leaves and deletions cut subscriptions live,
//! in replays and in resumed sessions, on every node.

use std::time::Duration;

use serde_json::{json, Value};
use switchboard::channel::{Channel, Id};
use switchboard::event::{BanChange, ChannelDeleted, Event, EventData, Member, UserKicked};
use switchboard::log::Log;
use switchboard::token::Grant;
use switchboard_harness::*;

fn joined(c: Id, u: Id) -> Event {
    Event::new(EventData::MemberJoined(Member {
        channel_id: c,
        user_id: u,
        username: None,
    }))
}

fn left(c: Id, u: Id) -> Event {
    Event::new(EventData::MemberLeft(Member {
        channel_id: c,
        user_id: u,
        username: None,
    }))
}

fn banned(c: Id, u: Id) -> Event {
    Event::new(EventData::UserBanned(BanChange {
        channel_id: c,
        user_id: Some(u),
        motive: "spam".into(),
    }))
}

fn unbanned(c: Id, u: Id) -> Event {
    Event::new(EventData::UserUnbanned(BanChange {
        channel_id: c,
        user_id: Some(u),
        motive: "appeal".into(),
    }))
}

fn kicked(c: Id, u: Id) -> Event {
    Event::new(EventData::UserKicked(UserKicked {
        channel_id: c,
        user_id: Some(u),
    }))
}

fn deleted(c: Id) -> Event {
    Event::new(EventData::ChannelDeleted(ChannelDeleted { channel_id: c }))
}

/// Subscribes until the reply is `expected` (the projection follows the
/// log asynchronously); returns the final reply.
async fn subscribe_until(client: &mut Client, channel: Channel, expected: &str) -> Value {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        client
            .send(json!({"type": "subscribe", "channel": channel.to_string(), "request_id": "s"}))
            .await;
        let reply = client.next().await;
        let outcome = match reply["type"].as_str() {
            Some("subscribed") => "subscribed",
            _ => reply["data"]["code"].as_str().unwrap_or("?"),
        };
        if outcome == expected {
            return reply;
        }
        if reply["type"] == "subscribed" {
            client
                .send(json!({"type": "unsubscribe", "channel": channel.to_string()}))
                .await;
            assert_eq!(client.next().await["type"], "unsubscribed");
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never got {expected} for {channel}: last {reply}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Expects `event` (by id) and then `unsubscribed` with `reason`. A
/// subscription made right after a join may still get the join itself (the
/// projection folds an event just before the hub fans it out): a
/// `member_joined` may come first.
async fn expect_cut(client: &mut Client, event: &Event, reason: &str) {
    let mut frame = client.next().await;
    while frame["type"] == "member_joined" && frame["id"] != event.id.to_string() {
        frame = client.next().await;
    }
    assert_eq!(
        frame["id"],
        event.id.to_string(),
        "the cutting event first: {frame}"
    );
    let end = client.next().await;
    assert_schema(&end);
    assert_eq!(end["type"], "unsubscribed", "{end}");
    assert_eq!(end["data"]["reason"], reason);
    assert!(end["data"].get("request_id").is_none());
}

/// The value of `name=value` in a log line (tracing's plain format).
fn field(line: &str, name: &str) -> Option<String> {
    let prefix = format!("{name}=");
    line.split_whitespace()
        .find_map(|token| token.strip_prefix(prefix.as_str()))
        .map(str::to_string)
}

async fn store(log: &Log, event: &Event) -> u64 {
    log.store(event).await.expect("stored").seq
}

#[tokio::test]
async fn membership_grants_and_bans_deny_whatever_the_token_says() {
    let nats = nats();
    let gateway = Gateway::start(&nats);
    let log = log(&nats).await;
    let (c, u) = (Id::new_v4(), Id::new_v4());
    let mut plain = Client::connect(&gateway, &token(u, Grant::None, &[])).await;
    let mut starred = Client::connect(&gateway, &token(u, Grant::All, &[])).await;
    let mut other = Client::connect(&gateway, &token(Id::new_v4(), Grant::All, &[])).await;
    other.subscribe(chat(c)).await;

    subscribe_until(&mut plain, chat(c), "forbidden").await;
    // The grant needs no membership: subscribed before the join, it gets
    // the join (had it subscribed after, it might or might not, as the
    // projection folds an event just before the hub fans it out).
    starred.subscribe(chat(c)).await;
    let join = joined(c, u);
    store(&log, &join).await;
    subscribe_until(&mut plain, chat(c), "subscribed").await;
    assert_eq!(starred.events(1).await[0]["id"], join.id.to_string());
    other.events(1).await;

    let ban = banned(c, u);
    store(&log, &ban).await;
    expect_cut(&mut plain, &ban, "banned").await;
    expect_cut(&mut starred, &ban, "banned").await;
    let after = store(&log, &message(c, "after the ban")).await;
    assert_eq!(other.events(2).await[1]["seq"], after, "others go on");
    plain.assert_silent(Duration::from_millis(300)).await;
    starred.assert_silent(Duration::from_millis(100)).await;

    // Banned: refused even with a `*` grant.
    subscribe_until(&mut starred, chat(c), "forbidden").await;
    subscribe_until(&mut plain, chat(c), "forbidden").await;

    // An unban lifts the ban but restores no membership.
    store(&log, &unbanned(c, u)).await;
    subscribe_until(&mut starred, chat(c), "subscribed").await;
    let reply = subscribe_until(&mut plain, chat(c), "forbidden").await;
    assert!(reply["data"]["message"]
        .as_str()
        .unwrap_or("")
        .contains("not a member"));
    store(&log, &joined(c, u)).await;
    subscribe_until(&mut plain, chat(c), "subscribed").await;
}

#[tokio::test]
async fn kicks_leaves_and_deletions_cut_live_subscriptions() {
    let nats = nats();
    let gateway = Gateway::start(&nats);
    let log = log(&nats).await;
    let (c, u, v) = (Id::new_v4(), Id::new_v4(), Id::new_v4());
    let grant = Grant::Some(vec![c]);
    let mut a = Client::connect(&gateway, &token(u, grant.clone(), &[])).await;
    let mut b = Client::connect(&gateway, &token(v, grant, &[])).await;
    a.subscribe(chat(c)).await;
    b.subscribe(chat(c)).await;

    let kick = kicked(c, u);
    store(&log, &kick).await;
    expect_cut(&mut a, &kick, "kicked").await;
    assert_eq!(b.events(1).await[0]["id"], kick.id.to_string());

    // The grant still allows a new subscription after a kick.
    subscribe_until(&mut a, chat(c), "subscribed").await;
    let leave = left(c, u);
    store(&log, &leave).await;
    expect_cut(&mut a, &leave, "left").await;
    assert_eq!(b.events(1).await[0]["id"], leave.id.to_string());

    subscribe_until(&mut a, chat(c), "subscribed").await;
    let gone = deleted(c);
    store(&log, &gone).await;
    expect_cut(&mut a, &gone, "channel_deleted").await;
    expect_cut(&mut b, &gone, "channel_deleted").await;
    subscribe_until(&mut a, chat(c), "forbidden").await;
}

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

#[tokio::test]
async fn two_gateways_on_one_nats_both_enforce_a_ban() {
    let nats = nats();
    let first = Gateway::start(&nats);
    let second = Gateway::start(&nats);
    let log = log(&nats).await;
    let (c, u) = (Id::new_v4(), Id::new_v4());
    let user = token(u, Grant::None, &[]);
    store(&log, &joined(c, u)).await;
    let mut on_first = Client::connect(&first, &user).await;
    let mut on_second = Client::connect(&second, &user).await;
    subscribe_until(&mut on_first, chat(c), "subscribed").await;
    subscribe_until(&mut on_second, chat(c), "subscribed").await;
    let ban = banned(c, u);
    store(&log, &ban).await;
    expect_cut(&mut on_first, &ban, "banned").await;
    expect_cut(&mut on_second, &ban, "banned").await;
    subscribe_until(&mut on_first, chat(c), "forbidden").await;
    subscribe_until(&mut on_second, chat(c), "forbidden").await;
}

#[tokio::test]
async fn the_projection_survives_a_restart_and_the_tools_agree() {
    let nats = nats();
    let mut gateway = Gateway::start(&nats);
    let log = log(&nats).await;
    let (c, u) = (Id::new_v4(), Id::new_v4());
    let snapshot_seq = store(&log, &joined(c, u)).await;
    let member = token(u, Grant::None, &[]);
    let mut client = Client::connect(&gateway, &member).await;
    subscribe_until(&mut client, chat(c), "subscribed").await;
    // A clean stop writes the snapshot (up to the join); restart from it.
    let stopped = tokio::task::spawn_blocking(move || {
        gateway.terminate();
        gateway
    });
    assert_eq!(client.closed_with().await, 1001);
    let mut gateway = stopped.await.expect("joined");
    let other = Id::new_v4();
    let ban = log.store(&banned(c, other)).await.expect("stored");
    let log_end = ban.user_seq.expect("user copy").max(ban.seq);
    gateway.restart();
    let log_text = gateway.log_text();
    let ready = log_text
        .lines()
        .rfind(|l| l.contains("projection ready"))
        .expect("projection ready line");
    assert_eq!(
        (field(ready, "from"), field(ready, "to")),
        (Some(snapshot_seq.to_string()), Some(log_end.to_string())),
        "started from the snapshot and caught up to the log's end: {ready}"
    );
    let mut client = Client::connect(&gateway, &member).await;
    subscribe_until(&mut client, chat(c), "subscribed").await;
    let mut banned_user = Client::connect(&gateway, &token(other, Grant::All, &[])).await;
    subscribe_until(&mut banned_user, chat(c), "forbidden").await;

    gateway.kill9();
    let tool = |args: &[&str]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .arg("projection")
            .args(args)
            .args(["--nats-url", &nats.url()])
            .arg("--data-dir")
            .arg(gateway.data_dir())
            .output()
            .expect("runs");
        let stdout = String::from_utf8_lossy(&output.stdout).to_string();
        let stderr = String::from_utf8_lossy(&output.stderr).to_string();
        (output.status, format!("{stdout}{stderr}"))
    };
    let (status, out) = tool(&["check"]);
    assert!(status.success(), "check: {out}");
    assert!(out.contains("matches"), "{out}");
    let (status, out) = tool(&["rebuild"]);
    assert!(status.success(), "rebuild: {out}");
    let summary: Value =
        serde_json::from_str(out.lines().next().unwrap_or("")).expect("JSON summary");
    assert_eq!(summary["members"], 1);
    assert_eq!(summary["banned"], 1);
}

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
