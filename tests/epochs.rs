//! Stream epochs: the stream deleted and created again under a running
//! gateway (a disaster recovery, a restore into a new cluster). Its seqs
//! start over; `hello` and `subscribed` name the stream's epoch; seqs of
//! another epoch are never honoured silently; the router, the live
//! subscriptions and the projection go on with the new stream.

use std::time::Duration;

use serde_json::{json, Value};
use switchboard::channel::{Channel, Id};
use switchboard::event::{Event, EventData, Member};
use switchboard::log::{Log, StreamSettings};
use switchboard::token::Grant;
use switchboard_harness::*;

fn joined(c: Id, u: Id) -> Event {
    Event::new(EventData::MemberJoined(Member {
        channel_id: c,
        user_id: u,
        username: None,
    }))
}

/// Deletes the stream and creates it again with the gateway's settings;
/// returns a log on the new stream.
async fn recreate_stream(nats: &NatsServer, log: &Log) -> Log {
    let js = async_nats::jetstream::new(log.client().clone());
    let name = StreamSettings::default().name;
    js.delete_stream(&name).await.expect("stream deleted");
    Log::connect(&nats.url(), StreamSettings::default())
        .await
        .expect("stream created again")
}

/// Stores `n` messages in `c`; returns their seqs.
async fn store_messages(log: &Log, c: Id, n: usize, tag: &str) -> Vec<u64> {
    let mut seqs = Vec::new();
    for i in 0..n {
        let text = format!("{tag} {i}");
        seqs.push(log.store(&message(c, &text)).await.expect("stored").seq);
    }
    seqs
}

/// The frame's epoch ("" if it has none: the schemas, checked at the end
/// of each test, require it).
fn epoch_of(frame: &Value) -> String {
    frame["data"]["epoch"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// A fresh connection's `hello` epoch.
async fn current_epoch(gateway: &Gateway) -> String {
    let client = Client::connect(gateway, &token(Id::new_v4(), Grant::All, &[])).await;
    let epoch = epoch_of(&client.hello);
    client.close().await;
    epoch
}

/// Waits until the gateway's log says it rebuilt its projection from a
/// recreated stream; returns that line.
async fn wait_for_rebuild(gateway: &Gateway) -> String {
    let found = |text: String| {
        text.lines()
            .find(|l| l.contains("stream recreated") && l.contains("projection rebuilt"))
            .map(str::to_string)
    };
    wait_until("the gateway to rebuild its projection", || async {
        found(gateway.log_text()).is_some()
    })
    .await;
    found(gateway.log_text()).expect("the line")
}

#[tokio::test]
async fn a_live_subscription_goes_on_with_the_recreated_stream() {
    let nats = nats();
    let gateway = Gateway::start(&nats);
    let log = log(&nats).await;
    let c = Id::new_v4();
    let mut client = Client::connect(&gateway, &token(Id::new_v4(), Grant::All, &[])).await;
    let old_epoch = epoch_of(&client.hello);
    let subscribed = client.subscribe(chat(c)).await;
    assert_eq!(epoch_of(&subscribed), old_epoch);
    let mut frames = vec![client.hello.clone(), subscribed];
    let old = store_messages(&log, c, 5, "old").await;
    assert_eq!(seqs(&client.events(5).await), old);

    let log = recreate_stream(&nats, &log).await;
    let new = store_messages(&log, c, 3, "new").await;
    assert_eq!(new, vec![1, 2, 3], "the new stream starts over");

    // The client is told its seqs now count another stream, then gets the
    // new stream from its start: nothing skipped although seqs 1..=3 are
    // below its cursor.
    let notice = client.next().await;
    assert_eq!(notice["type"], "subscribed", "{notice}");
    assert_eq!(notice["data"]["channel"], chat(c).to_string());
    assert_eq!(notice["data"]["complete"], false);
    assert_eq!(notice["data"]["first_seq"], 1);
    assert!(notice["data"].get("request_id").is_none());
    let new_epoch = epoch_of(&notice);
    assert_ne!(new_epoch, old_epoch);

    let mut events = Vec::new();
    let mut replayed = 0;
    while events.len() < 3 {
        let frame = client.next().await;
        frames.push(frame.clone());
        if frame["type"] == "replayed" {
            replayed += 1;
            continue;
        }
        events.push(frame);
    }
    let later = store_messages(&log, c, 2, "later").await;
    while events.len() < 5 {
        let frame = client.next().await;
        if frame["type"] == "replayed" {
            replayed += 1;
            continue;
        }
        events.push(frame);
    }
    assert_eq!(replayed, 1, "one `replayed` closes the restart's replay");
    assert_seqs(&seqs(&events), &[1, 2, 3, 4, 5], "the new stream, in order");
    assert_eq!(later, vec![4, 5]);
    let texts: Vec<&str> = events
        .iter()
        .map(|e| e["data"]["content"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(texts, ["new 0", "new 1", "new 2", "later 0", "later 1"]);
    client.assert_silent(Duration::from_millis(300)).await;

    let line = wait_for_rebuild(&gateway).await;
    assert!(
        line.contains(&format!("epoch {old_epoch} -> {new_epoch}")),
        "{line}"
    );
    assert_eq!(current_epoch(&gateway).await, new_epoch);
    frames.push(notice);
    frames.iter().for_each(assert_schema);
}

#[tokio::test]
async fn old_seqs_after_a_recreation_are_incomplete_then_live() {
    let nats = nats();
    let gateway = Gateway::start(&nats);
    let log = log(&nats).await;
    let c = Id::new_v4();
    store_messages(&log, c, 10, "old").await;
    let old_epoch = current_epoch(&gateway).await;

    let log = recreate_stream(&nats, &log).await;
    store_messages(&log, c, 3, "new").await;
    // (A subscription the node made before it noticed would be restarted
    // on the new stream when it does: tested above.)
    wait_for_rebuild(&gateway).await;
    let mut client = Client::connect(&gateway, &token(Id::new_v4(), Grant::All, &[])).await;

    // Below the new end, but counted in the old epoch: seq 2 of the old
    // stream says nothing about the new one. Incomplete, nothing replayed
    // (not a silent replay of the new stream's 3.. as if it followed).
    let other = Id::new_v4();
    store_messages(&log, other, 3, "other").await;
    client
        .send(json!({"type": "subscribe", "channel": chat(other).to_string(), "since_seq": 2, "epoch": old_epoch}))
        .await;
    let (subscribed, events, replayed) = client.read_replay(chat(other)).await;
    assert_eq!(subscribed["data"]["complete"], false, "{subscribed}");
    assert_eq!(subscribed["data"]["first_seq"], 1);
    assert!(events.is_empty(), "{events:?}");
    let new_epoch = epoch_of(&subscribed);
    assert_ne!(new_epoch, old_epoch);
    assert_schema(&subscribed);
    assert_eq!(replayed["data"]["count"], 0);
    let live = store_messages(&log, other, 1, "live").await;
    assert_eq!(seqs(&client.events(1).await), live);

    // Beyond the new stream's end: incomplete, nothing replayed, live.
    let (subscribed, events, replayed) = client.subscribe_since(chat(c), json!(10)).await;
    assert_eq!(subscribed["data"]["complete"], false, "{subscribed}");
    assert_eq!(subscribed["data"]["first_seq"], 1);
    assert_eq!(epoch_of(&subscribed), new_epoch);
    assert_schema(&subscribed);
    assert!(events.is_empty(), "{events:?}");
    assert_eq!(replayed["data"]["count"], 0);
    let live = store_messages(&log, c, 1, "live").await;
    assert_eq!(seqs(&client.events(1).await), live);

    // The same since_seq in the current epoch is honoured exactly.
    let third = Id::new_v4();
    let stored = store_messages(&log, third, 3, "third").await;
    client
        .send(json!({"type": "subscribe", "channel": chat(third).to_string(), "since_seq": stored[0], "epoch": new_epoch}))
        .await;
    let (subscribed, events, _) = client.read_replay(chat(third)).await;
    assert_eq!(subscribed["data"]["complete"], true, "{subscribed}");
    // The replay ends where the node had routed when it began: an event
    // the router had not yet read follows live, right after `replayed`.
    let mut got = seqs(&events);
    let rest = stored.len() - 1 - got.len().min(stored.len() - 1);
    got.extend(seqs(&client.events(rest).await));
    assert_eq!(got, stored[1..].to_vec());
}

#[tokio::test]
async fn a_session_from_before_the_recreation_restores_incomplete() {
    let nats = nats();
    let gateway = Gateway::start(&nats);
    let log = log(&nats).await;
    let c = Id::new_v4();
    let user = Id::new_v4();
    let token = token(user, Grant::All, &[]);
    let mut client = Client::connect(&gateway, &token).await;
    let old_epoch = epoch_of(&client.hello);
    let session = client.session_id();
    client.subscribe(chat(c)).await;
    let old = store_messages(&log, c, 5, "old").await;
    assert_eq!(seqs(&client.events(5).await), old);
    client
        .send(json!({"type": "ack", "channel": chat(c).to_string(), "seq": old[4]}))
        .await;
    client.close().await;
    gateway.wait_for_no_connections().await;

    // The new stream holds more than the old cursor: a restore that trusted
    // the cursor would replay 6..=8 and silently skip 1..=5.
    let log = recreate_stream(&nats, &log).await;
    store_messages(&log, c, 8, "new").await;
    wait_for_rebuild(&gateway).await;

    let mut client = Client::connect_session(&gateway, &token, &session).await;
    assert_eq!(client.hello["data"]["resumed"], true);
    assert_eq!(
        client.hello["data"]["channels"],
        json!([chat(c).to_string()])
    );
    let (subscribed, events, replayed) = client.read_replay(chat(c)).await;
    assert_schema(&subscribed);
    assert_eq!(subscribed["data"]["complete"], false, "{subscribed}");
    assert_eq!(subscribed["data"]["first_seq"], 1);
    assert!(subscribed["data"].get("request_id").is_none());
    assert_ne!(epoch_of(&subscribed), old_epoch);
    assert!(
        events.is_empty(),
        "nothing replayed from another stream's cursor: {events:?}"
    );
    assert_eq!(replayed["data"]["count"], 0);
    let live = store_messages(&log, c, 1, "live").await;
    assert_eq!(seqs(&client.events(1).await), live);
    // The ack makes the cursor exact (unacked, it moves on a pong later).
    client
        .send(json!({"type": "ack", "channel": chat(c).to_string(), "seq": live[0]}))
        .await;
    client.close().await;
    gateway.wait_for_no_connections().await;

    // Saved again, the session's cursor now counts the new stream: a
    // restore is complete and exact.
    let more = store_messages(&log, c, 2, "more").await;
    let mut client = Client::connect_session(&gateway, &token, &session).await;
    let (subscribed, events, _) = client.read_replay(chat(c)).await;
    assert_eq!(subscribed["data"]["complete"], true, "{subscribed}");
    // What the node had not routed yet when the replay began follows live.
    let mut got = seqs(&events);
    let rest = more.len() - got.len().min(more.len());
    got.extend(seqs(&client.events(rest).await));
    assert_eq!(got, more);
}

/// Subscribes to `channel` until the reply is `subscribed` (`true`) or a
/// `forbidden` error (`false`) as wanted; the projection follows the log
/// asynchronously.
async fn subscribe_until(client: &mut Client, channel: Channel, allowed: bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        client
            .send(json!({"type": "subscribe", "channel": channel.to_string()}))
            .await;
        let reply = client.next().await;
        let got = reply["type"] == "subscribed";
        if got {
            client
                .send(json!({"type": "unsubscribe", "channel": channel.to_string()}))
                .await;
            assert_eq!(client.next().await["type"], "unsubscribed");
        } else {
            assert_eq!(reply["data"]["code"], "forbidden", "{reply}");
        }
        if got == allowed {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{channel}: never {}",
            if allowed { "allowed" } else { "forbidden" }
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_projection_is_rebuilt_from_the_recreated_stream() {
    let nats = nats();
    let gateway = Gateway::start(&nats);
    let log = log(&nats).await;
    let (c, user) = (Id::new_v4(), Id::new_v4());
    log.store(&joined(c, user)).await.expect("stored");
    let mut client = Client::connect(&gateway, &token(user, Grant::None, &[])).await;
    subscribe_until(&mut client, chat(c), true).await;

    // The membership was in the old stream only.
    let log = recreate_stream(&nats, &log).await;
    store_messages(&log, Id::new_v4(), 2, "elsewhere").await;
    let line = wait_for_rebuild(&gateway).await;
    assert!(line.contains("WARN"), "{line}");
    subscribe_until(&mut client, chat(c), false).await;

    // The router reads the new stream: a membership there counts.
    log.store(&joined(c, user)).await.expect("stored");
    subscribe_until(&mut client, chat(c), true).await;
}

#[tokio::test]
async fn a_snapshot_of_another_epoch_is_not_reused_at_start_up() {
    let nats = nats();
    let mut first = Gateway::start(&nats);
    let log = log(&nats).await;
    let (c, user) = (Id::new_v4(), Id::new_v4());
    log.store(&joined(c, user)).await.expect("stored");
    let mut client = Client::connect(&first, &token(user, Grant::None, &[])).await;
    subscribe_until(&mut client, chat(c), true).await;
    client.close().await;
    // A clean stop writes the last snapshot (the membership, at seq 1).
    assert!(first.terminate().success());

    // The new stream is longer than the snapshot: only its epoch tells
    // that the snapshot is of another stream.
    let log = recreate_stream(&nats, &log).await;
    store_messages(&log, Id::new_v4(), 3, "elsewhere").await;
    let second = Gateway::spawn(&first.nats_url, first.data_dir(), &[]);
    let mut client = Client::connect(&second, &token(user, Grant::None, &[])).await;
    client
        .send(json!({"type": "subscribe", "channel": chat(c).to_string()}))
        .await;
    let reply = client.next().await;
    assert_eq!(reply["type"], "error", "{reply}");
    assert_eq!(reply["data"]["code"], "forbidden");
    assert!(
        second.log_text().contains("another epoch"),
        "the start-up says why it folded afresh"
    );
}

#[tokio::test]
async fn a_rebuilt_projection_is_snapshotted_for_the_next_start() {
    let nats = nats();
    let mut first = Gateway::start(&nats);
    let log = log(&nats).await;
    let (c, user) = (Id::new_v4(), Id::new_v4());
    // The old stream is longer than the new one will be, and a clean stop
    // leaves its snapshot (at seq 10) for the next start.
    store_messages(&log, Id::new_v4(), 10, "old").await;
    wait_until("the router to route the old stream", || async {
        first.metric("switchboard_events_in_total").await >= 10.0
    })
    .await;
    assert!(first.terminate().success());
    let mut second = Gateway::spawn(&first.nats_url, first.data_dir(), &[]);

    let log = recreate_stream(&nats, &log).await;
    wait_for_rebuild(&second).await;
    let seq = log.store(&joined(c, user)).await.expect("stored").seq;
    let mut client = Client::connect(&second, &token(user, Grant::None, &[])).await;
    subscribe_until(&mut client, chat(c), true).await;
    client.close().await;
    assert!(second.terminate().success());

    let third = Gateway::spawn(&first.nats_url, first.data_dir(), &[]);
    let ready = third
        .log_text()
        .lines()
        .rfind(|l| l.contains("projection ready"))
        .map(str::to_string)
        .expect("a start-up line");
    assert!(
        ready.contains(&format!("from={seq} ")),
        "the next start folds on from the rebuilt projection's snapshot: {ready}"
    );
    let mut client = Client::connect(&third, &token(user, Grant::None, &[])).await;
    let reply = client.subscribe(chat(c)).await;
    assert_eq!(reply["data"]["complete"], true);
}
