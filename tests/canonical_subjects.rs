//! One rule for a stored event on a subject that is not canonical (an
//! upper-case id, stored by a publisher writing straight to NATS): it is
//! invalid in every path. Live delivery, the node's window, stream
//! replays, session restores, history, the CLI and the projection all
//! leave it out, so a ban on such a subject is no ban anywhere (and never
//! one that a live client sees but a replay does not).

use std::time::Duration;

use serde_json::{json, Value};
use switchboard::channel::Id;
use switchboard::event::{Event, EventData, Member};
use switchboard::token::Grant;
use switchboard_harness::*;

/// The stored payload of a message in `c`, as another service writes it.
fn message_payload(c: Id, text: &str) -> String {
    json!({"id": Id::new_v4(), "type": "channel_message", "data": {
        "channel_id": c, "message_id": Id::new_v4(), "user_id": Id::new_v4(),
        "username": "svc", "content": text}})
    .to_string()
}

/// A ban of `u` from `c`: the channel copy's payload and the user copy's.
fn ban_payloads(c: Id, u: Id) -> (String, String) {
    let id = Id::new_v4();
    let channel_copy = json!({"id": id, "type": "user_banned",
        "data": {"channel_id": c, "user_id": u, "motive": "spam"}});
    let user_copy = json!({"id": id, "type": "user_banned",
        "data": {"channel_id": c, "motive": "spam"}});
    (channel_copy.to_string(), user_copy.to_string())
}

fn upper(id: Id) -> String {
    id.to_string().to_ascii_uppercase()
}

/// The `seq`s of the event frames (those with one) among `frames`.
fn event_seqs(frames: &[Value]) -> Vec<u64> {
    frames.iter().filter_map(|f| f["seq"].as_u64()).collect()
}

fn line_seqs(lines: &[String]) -> Vec<u64> {
    lines
        .iter()
        .map(|l| {
            serde_json::from_str::<Value>(l).expect("NDJSON")["seq"]
                .as_u64()
                .expect("seq")
        })
        .collect()
}

/// Where the restore of the gap after the non-canonical events reads from.
#[derive(Clone, Copy, Debug)]
enum Gap {
    /// The node's window holds it.
    InWindow,
    /// Pushed out of a small window by other channels' events: the stream.
    PushedOut,
    /// No window at all: the stream.
    NoWindow,
}

/// X is a member of C and disconnects (a TCP reset). A service stores,
/// straight to NATS, a ban of X on C's upper-case subject (both copies),
/// then messages on canonical and on upper-case subjects. Every path must
/// agree that the upper-case events do not exist.
async fn a_ban_on_an_upper_case_subject_is_no_ban_anywhere(gap: Gap) {
    let nats = nats();
    let args: &[&str] = match gap {
        Gap::InWindow => &[],
        Gap::PushedOut => &["--window-events", "20"],
        Gap::NoWindow => &["--window-events", "0"],
    };
    let gateway = Gateway::start_with(&nats, args);
    let log = log(&nats).await;
    let (c, x) = (Id::new_v4(), Id::new_v4());
    let join_seq = log
        .store(&Event::new(EventData::MemberJoined(Member {
            channel_id: c,
            user_id: x,
            username: None,
        })))
        .await
        .expect("join stored")
        .seq;

    // X subscribes by membership alone (the token grants nothing), once the
    // node has folded the join, and receives every event up to it, so its
    // session's cursor is there.
    let x_token = token(x, Grant::None, &[]);
    wait_until("the join to be folded", || async {
        let mut probe = Client::connect(&gateway, &x_token).await;
        probe
            .send(json!({"type": "subscribe", "channel": chat(c).to_string()}))
            .await;
        probe.next().await["type"] == "subscribed"
    })
    .await;
    let mut member = Client::connect(&gateway, &x_token).await;
    member
        .send(json!({"type": "subscribe", "channel": chat(c).to_string(), "since_seq": 0}))
        .await;
    let (subscribed, replayed, _) = member.read_replay(chat(c)).await;
    assert_eq!(subscribed["type"], "subscribed", "{subscribed}");
    assert_eq!(event_seqs(&replayed), [join_seq]);
    member
        .send(json!({"type": "ack", "channel": chat(c).to_string(), "seq": join_seq}))
        .await;
    let session = member.session_id();
    // The ack is in the session once a ping's pong comes back after it.
    member.send(json!({"type": "ping"})).await;
    assert_eq!(member.next().await["type"], "pong");
    member.abort();
    gateway.wait_for_no_connections().await;

    let mut observer = Client::connect(&gateway, &token(Id::new_v4(), Grant::All, &[])).await;
    observer.subscribe(chat(c)).await;
    let invalid_before = gateway.metric("switchboard_invalid_events_total").await;

    let (channel_copy, user_copy) = ban_payloads(c, x);
    let nats_client = log.client();
    let mut odd = vec![
        publish_raw(
            nats_client,
            format!("chat.channel.{}.user_banned", upper(c)),
            channel_copy,
        )
        .await,
        publish_raw(
            nats_client,
            format!("chat.user.{}.user_banned", upper(x)),
            user_copy,
        )
        .await,
    ];
    let canonical = format!("chat.channel.{c}.channel_message");
    let shouted = format!("chat.channel.{}.channel_message", upper(c));
    let mut fine =
        vec![publish_raw(nats_client, canonical.clone(), message_payload(c, "m1")).await];
    odd.push(publish_raw(nats_client, shouted, message_payload(c, "m2")).await);
    fine.push(publish_raw(nats_client, canonical, message_payload(c, "m3")).await);

    // Live: only the canonical events.
    let live = observer.events(fine.len()).await;
    assert_eq!(event_seqs(&live), fine, "live: {live:?}");

    if let Gap::PushedOut = gap {
        // Other channels' events push the gap out of the 20-event window.
        let other = Id::new_v4();
        for i in 0..40 {
            log.store(&message(other, format!("filler {i}")))
                .await
                .expect("stored");
        }
    }

    // Every invalid event is logged at WARN with its seq, and counted.
    for seq in &odd {
        wait_until(&format!("a WARN naming seq {seq}"), || async {
            gateway.log_text().lines().any(|line| {
                line.contains("WARN")
                    && line.contains("not canonical")
                    && line.split_whitespace().any(|w| w == format!("seq={seq}"))
            })
        })
        .await;
    }
    let counted = gateway.metric("switchboard_invalid_events_total").await - invalid_before;
    assert!(
        counted >= odd.len() as f64,
        "{counted} counted for {} invalid events",
        odd.len()
    );

    // The session restore: the canonical messages, no ban, no cut.
    let mut back = Client::connect_session(&gateway, &x_token, &session).await;
    assert_eq!(back.hello["data"]["resumed"], true, "{}", back.hello);
    let (_, restored, done) = back.read_replay(chat(c)).await;
    assert_eq!(event_seqs(&restored), fine, "restored: {restored:?}");
    assert_eq!(done["data"]["count"], fine.len());
    back.assert_silent(Duration::from_millis(500)).await;

    // A fresh subscribe is allowed: the projection never folded the ban.
    let mut fresh = Client::connect(&gateway, &x_token).await;
    fresh.subscribe(chat(c)).await;
    // Nor did X's own channel get the ban's user copy.
    let mut own = Client::connect(&gateway, &x_token).await;
    let (_, own_events, _) = own
        .subscribe_since(switchboard::channel::Channel::User(x), json!(0))
        .await;
    assert!(own_events.is_empty(), "user channel: {own_events:?}");

    // A replay from the start, history and the CLI agree.
    let mut auditor = Client::connect(&gateway, &token(Id::new_v4(), Grant::All, &[])).await;
    let (_, replay, _) = auditor.subscribe_since(chat(c), json!(0)).await;
    let mut everything = vec![join_seq];
    everything.extend(&fine);
    assert_eq!(event_seqs(&replay), everything, "since_seq 0");
    assert_eq!(
        line_seqs(&history_lines(&gateway, chat(c)).await),
        everything,
        "history"
    );
    assert_eq!(
        line_seqs(&cli_replay(&nats.url(), chat(c)).await),
        everything,
        "switchboard replay"
    );

    // A node that folds its projection from the stream anew agrees: X is
    // a member there too.
    let rebuilt = Gateway::start_with(&nats, args);
    let mut elsewhere = Client::connect(&rebuilt, &x_token).await;
    let (_, from_start, _) = elsewhere.subscribe_since(chat(c), json!(0)).await;
    assert_eq!(event_seqs(&from_start), everything, "a rebuilt node");
}

#[tokio::test]
async fn a_non_canonical_ban_is_no_ban_when_the_window_holds_the_gap() {
    a_ban_on_an_upper_case_subject_is_no_ban_anywhere(Gap::InWindow).await;
}

#[tokio::test]
async fn a_non_canonical_ban_is_no_ban_when_the_gap_left_the_window() {
    a_ban_on_an_upper_case_subject_is_no_ban_anywhere(Gap::PushedOut).await;
}

#[tokio::test]
async fn a_non_canonical_ban_is_no_ban_without_a_window() {
    a_ban_on_an_upper_case_subject_is_no_ban_anywhere(Gap::NoWindow).await;
}

/// Typing goes over core NATS and is parsed by the same rule.
#[tokio::test]
async fn typing_on_an_upper_case_subject_is_not_delivered() {
    let nats = nats();
    let gateway = Gateway::start(&nats);
    let log = log(&nats).await;
    let c = Id::new_v4();
    let mut peer = Client::connect(&gateway, &token(Id::new_v4(), Grant::All, &[])).await;
    peer.subscribe(chat(c)).await;
    let typing = |who: Id| {
        json!({"id": Id::new_v4(), "type": "user_typing", "data": {
            "channel_id": c, "user_id": who, "username": "svc", "is_typing": true}})
        .to_string()
    };
    let (shouter, speaker) = (Id::new_v4(), Id::new_v4());
    let client = log.client();
    // The canonical one is sent until it arrives (the node's typing
    // subscription may still be starting); the upper-case one before each.
    let mut seen = None;
    for _ in 0..600 {
        client
            .publish(
                format!("chat.channel.{}.user_typing", upper(c)),
                typing(shouter).into(),
            )
            .await
            .expect("publish");
        client
            .publish(
                format!("chat.channel.{c}.user_typing"),
                typing(speaker).into(),
            )
            .await
            .expect("publish");
        client.flush().await.expect("flush");
        let frame = tokio::time::timeout(Duration::from_millis(100), peer.next()).await;
        if let Ok(frame) = frame {
            seen = Some(frame);
            break;
        }
    }
    let frame = seen.expect("the canonical typing arrives");
    assert_eq!(frame["type"], "user_typing", "{frame}");
    assert_eq!(frame["data"]["user_id"], speaker.to_string(), "{frame}");
    // Whatever else arrives is the canonical one again, never the other.
    while let Ok(frame) = tokio::time::timeout(Duration::from_millis(300), peer.next()).await {
        assert_eq!(frame["data"]["user_id"], speaker.to_string(), "{frame}");
    }
}

/// A projection snapshot from a version that still folded events on
/// non-canonical subjects (it has no `format`) may hold such a ban: it is
/// not used, the log is folded afresh.
#[tokio::test]
async fn a_snapshot_folded_by_the_older_rules_is_folded_afresh() {
    let nats = nats();
    let mut gateway = Gateway::start(&nats);
    let log = log(&nats).await;
    let (c, u) = (Id::new_v4(), Id::new_v4());
    log.store(&Event::new(EventData::MemberJoined(Member {
        channel_id: c,
        user_id: u,
        username: None,
    })))
    .await
    .expect("join stored");
    let member = token(u, Grant::None, &[]);
    let mut client = Client::connect(&gateway, &member).await;
    let (_, joined, _) = client.subscribe_since(chat(c), json!(0)).await;
    assert_eq!(joined.len(), 1, "{joined:?}");
    client.close().await;
    // A clean stop writes the snapshot.
    gateway.terminate();
    let file = find_file(gateway.data_dir(), "projection-snapshot.json")
        .expect("the snapshot file is written at a clean stop");
    let mut snapshot: Value =
        serde_json::from_slice(&std::fs::read(&file).expect("read")).expect("JSON");
    assert_eq!(snapshot["format"], 1, "{snapshot}");
    // As an older node would have left it after folding an upper-case ban.
    snapshot.as_object_mut().expect("object").remove("format");
    snapshot["banned"] = json!([[c, u]]);
    std::fs::write(&file, snapshot.to_string()).expect("write");

    gateway.restart();
    assert!(
        gateway
            .log_text()
            .contains("the projection snapshot was folded by other rules"),
        "{}",
        gateway.log_text()
    );
    // The membership comes back from the fresh fold (the router's catch-up
    // may still be folding when the node starts answering).
    wait_until("the member to subscribe again", || async {
        let mut back = Client::connect(&gateway, &member).await;
        back.send(json!({"type": "subscribe", "channel": chat(c).to_string()}))
            .await;
        back.next().await["type"] == "subscribed"
    })
    .await;
}

fn find_file(dir: &std::path::Path, name: &str) -> Option<std::path::PathBuf> {
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        if path.file_name().is_some_and(|n| n == name) {
            return Some(path);
        }
        if path.is_dir() {
            if let Some(found) = find_file(&path, name) {
                return Some(found);
            }
        }
    }
    None
}
