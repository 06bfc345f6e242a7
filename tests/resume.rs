//! Resume without loss: catch-up by seq and by time, the incomplete-history
//! flag, sessions across a crash, slow readers and NATS outages.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};
use switchboard::channel::{Channel, Id};
use switchboard::event::format_timestamp;
use switchboard::log::{Log, StreamSettings};
use switchboard::token::Grant;
use switchboard_harness::*;

/// Publishes `n` messages to `c` with many in flight; returns their seqs, sorted.
async fn publish_many(log: &Log, c: Id, n: usize, size: usize) -> Vec<u64> {
    use futures::StreamExt;
    let body = "x".repeat(size);
    let mut seqs: Vec<u64> = futures::stream::iter(0..n)
        .map(|i| {
            let log = log.clone();
            let text = format!("{i} {body}");
            async move { log.store(&message(c, &text)).await.expect("stored").seq }
        })
        .buffer_unordered(256)
        .collect()
        .await;
    seqs.sort_unstable();
    seqs
}

#[tokio::test]
async fn resume_by_seq_replays_exactly_then_hands_over_to_live() {
    let nats = nats();
    let gateway = Gateway::start(&nats);
    let log = log(&nats).await;
    let c = Id::new_v4();
    let other = Id::new_v4();
    log.store(&message(c, "seen before the disconnect"))
        .await
        .expect("stored");
    let last_seen = log
        .store(&message(other, "another channel"))
        .await
        .expect("stored")
        .seq;

    let missed = publish_many(&log, c, 2000, 100).await;
    let mut client = Client::connect(&gateway, &token(Id::new_v4(), Grant::All, &[])).await;
    client
        .send(json!({"type": "subscribe", "channel": format!("channel:{c}"), "since_seq": last_seen, "request_id": "r"}))
        .await;
    // 500 more arrive while the replay runs.
    let during = {
        let log = log.clone();
        tokio::spawn(async move { publish_many(&log, c, 500, 100).await })
    };
    let (subscribed, replayed_events, replayed) = client.read_replay(chat(c)).await;
    assert_schema(&subscribed);
    assert_schema(&replayed);
    assert_eq!(subscribed["data"]["complete"], true);
    assert_eq!(subscribed["data"]["request_id"], "r");
    let during = during.await.expect("publisher");
    let mut expected = missed.clone();
    expected.extend(&during);
    expected.sort_unstable();

    let mut received = seqs(&replayed_events);
    assert_eq!(replayed["data"]["count"], received.len());
    assert_eq!(
        replayed["data"]["last_seq"],
        *received.last().expect("some")
    );
    let rest = client.events(expected.len() - received.len()).await;
    received.extend(seqs(&rest));
    assert_seqs(
        &received,
        &expected,
        "every event after since_seq exactly once, in order",
    );
    client.assert_silent(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn resume_by_time_never_skips_an_event_in_the_same_millisecond() {
    let nats = nats();
    let gateway = Gateway::start(&nats);
    let log = log(&nats).await;
    let c = Id::new_v4();
    // Bursts until one millisecond holds several events.
    let mut by_ms: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for _ in 0..50 {
        publish_many(&log, c, 200, 10).await;
        by_ms.clear();
        let mut history = log
            .history(&switchboard::log::HistoryQuery {
                channels: vec![chat(c)],
                ..Default::default()
            })
            .await
            .expect("history");
        while let Some(item) = history.next().await {
            let event = item.expect("item").event.expect("valid");
            by_ms
                .entry(format_timestamp(&event.time))
                .or_default()
                .push(event.seq);
        }
        if by_ms.values().any(|s| s.len() >= 3) {
            break;
        }
    }
    let (t, crowded) = by_ms
        .iter()
        .filter(|(_, s)| s.len() >= 3)
        .nth(1)
        .or_else(|| by_ms.iter().find(|(_, s)| s.len() >= 3))
        .expect("a millisecond with several events");
    let expected: Vec<u64> = by_ms
        .range(t.clone()..)
        .flat_map(|(_, s)| s.iter().copied())
        .collect();
    assert!(expected.starts_with(crowded));

    let mut client = Client::connect(&gateway, &token(Id::new_v4(), Grant::All, &[])).await;
    let (subscribed, events, _) = client.subscribe_since(chat(c), json!(t)).await;
    assert_eq!(subscribed["data"]["complete"], true);
    assert_seqs(
        &seqs(&events),
        &expected,
        &format!("since {t}: every event at or after it"),
    );
    assert!(events
        .iter()
        .all(|e| e["timestamp"].as_str() >= Some(t.as_str())));

    // A time after everything replays nothing; then live.
    let later = format_timestamp(&(chrono::Utc::now() + chrono::Duration::seconds(5)));
    let mut client = Client::connect(&gateway, &token(Id::new_v4(), Grant::All, &[])).await;
    let (_, events, replayed) = client.subscribe_since(chat(c), json!(later)).await;
    assert!(events.is_empty());
    assert_eq!(replayed["data"]["count"], 0);
}

#[tokio::test]
async fn retention_makes_history_incomplete_and_says_where_it_starts() {
    let nats = nats();
    let gateway = Gateway::start_with(&nats, &["--retention", "2s"]);
    let log = switchboard::log::Log::open(
        &nats.url(),
        StreamSettings {
            retention: Duration::from_secs(2),
            duplicate_window: Duration::from_secs(1),
            ..Default::default()
        },
    )
    .await
    .expect("log");
    let c = Id::new_v4();
    let start = chrono::Utc::now();
    let old = publish_many(&log, c, 3, 10).await;
    wait_until("retention to drop the first events", || async {
        log.extent().await.expect("extent").first_seq > *old.last().expect("some")
    })
    .await;
    let kept = log
        .store(&message(c, "still held"))
        .await
        .expect("stored")
        .seq;
    let first_held = log.extent().await.expect("extent").first_seq;

    let user = token(Id::new_v4(), Grant::All, &[]);
    let mut client = Client::connect(&gateway, &user).await;
    let (subscribed, events, _) = client.subscribe_since(chat(c), json!(0)).await;
    assert_schema(&subscribed);
    assert_eq!(subscribed["data"]["complete"], false);
    assert_eq!(subscribed["data"]["first_seq"], first_held);
    assert_eq!(seqs(&events), vec![kept]);

    let mut client = Client::connect(&gateway, &user).await;
    let (subscribed, events, _) = client.subscribe_since(chat(c), json!(kept - 1)).await;
    assert_eq!(
        subscribed["data"]["complete"], true,
        "nothing asked for was dropped"
    );
    assert!(subscribed["data"].get("first_seq").is_none());
    assert_eq!(seqs(&events), vec![kept]);

    let mut client = Client::connect(&gateway, &user).await;
    let (subscribed, _, _) = client
        .subscribe_since(chat(c), json!(format_timestamp(&start)))
        .await;
    assert_eq!(
        subscribed["data"]["complete"], false,
        "events after `since` were dropped"
    );

    let mut client = Client::connect(&gateway, &user).await;
    let now = format_timestamp(&chrono::Utc::now());
    let (subscribed, _, _) = client.subscribe_since(chat(c), json!(now)).await;
    assert_eq!(
        subscribed["data"]["complete"], true,
        "nothing since now was dropped"
    );
}

#[tokio::test]
async fn a_session_survives_a_gateway_crash() {
    let nats = nats();
    // The default settings: with sled, a cursor is on disk within a second.
    let mut gateway = Gateway::start(&nats);
    let log = log(&nats).await;
    let (c, user) = (Id::new_v4(), Id::new_v4());
    let user_token = token(user, Grant::All, &[]);
    let mut client = Client::connect(&gateway, &user_token).await;
    assert_eq!(client.hello["data"]["resumed"], false);
    let session = client.session_id();
    client.subscribe(chat(c)).await;
    client.subscribe(Channel::Global).await;
    let first = publish_many(&log, c, 10, 10).await;
    let got = client.events(10).await;
    assert_eq!(seqs(&got), first);
    client
        .send(json!({"type": "ack", "channel": format!("channel:{c}"), "seq": first[4]}))
        .await;
    client.send(json!({"type": "ping"})).await;
    assert_eq!(client.next().await["type"], "pong");
    // Not a wait for a condition: the guarantee under test is time-bound
    // (a cursor reaches disk within 1 s), and the crash must come after it.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    gateway.kill9();

    let missed = publish_many(&log, c, 10, 10).await;
    let created = log
        .store(&switchboard::event::Event::new(
            switchboard::event::EventData::ChannelCreated(switchboard::event::ChannelCreated {
                channel_id: Id::new_v4(),
                channel_name: "while down".into(),
            }),
        ))
        .await
        .expect("stored");
    gateway.restart();

    let mut client = Client::connect_session(&gateway, &user_token, &session).await;
    assert_schema(&client.hello);
    assert_eq!(client.hello["data"]["resumed"], true);
    assert_eq!(client.hello["data"]["session_id"], session);
    let mut channels: Vec<String> = client.hello["data"]["channels"]
        .as_array()
        .expect("channels")
        .iter()
        .map(|c| c.as_str().expect("str").to_string())
        .collect();
    channels.sort();
    let mut want = vec![format!("channel:{c}"), "global".to_string()];
    want.sort();
    assert_eq!(channels, want);

    // Both restored subscriptions replay at once: demultiplex by channel.
    let mut replays: BTreeMap<Channel, Vec<u64>> = BTreeMap::new();
    let mut done = 0;
    while done < 2 {
        let frame = client.next().await;
        assert_schema(&frame);
        let channel = frame
            .get("channel")
            .or_else(|| frame["data"].get("channel"));
        let channel =
            Channel::parse(channel.and_then(Value::as_str).expect("channel")).expect("channel");
        match frame["type"].as_str() {
            Some("subscribed") => {
                assert!(frame["data"].get("request_id").is_none());
                assert!(
                    replays.insert(channel, Vec::new()).is_none(),
                    "one subscribed per channel"
                );
            }
            Some("replayed") => done += 1,
            _ => replays
                .get_mut(&channel)
                .expect("events follow subscribed")
                .push(frame["seq"].as_u64().expect("seq")),
        }
    }
    let mut expected: Vec<u64> = first[5..].to_vec();
    expected.extend(&missed);
    assert_seqs(&replays[&chat(c)], &expected, "from the acked cursor on");
    assert_eq!(replays[&Channel::Global], vec![created.seq]);
}

#[tokio::test]
async fn another_users_session_id_gets_a_fresh_session() {
    let nats = nats();
    let gateway = Gateway::start(&nats);
    let ann = token(Id::new_v4(), Grant::All, &[]);
    let bob = token(Id::new_v4(), Grant::All, &[]);
    let mut a = Client::connect(&gateway, &ann).await;
    a.subscribe(Channel::Global).await;
    let session = a.session_id();
    // Once the connection has ended, its session is saved.
    a.close().await;
    gateway.wait_for_no_connections().await;
    for (name, attempt) in [
        ("another user's", session.clone()),
        ("an unknown", Id::new_v4().to_string()),
        ("a malformed", "not-a-session".to_string()),
    ] {
        let b = Client::connect_session(&gateway, &bob, &attempt).await;
        assert_eq!(b.hello["data"]["resumed"], false, "{name} session id");
        assert_ne!(b.hello["data"]["session_id"], session, "{name} session id");
        assert_eq!(b.hello["data"]["channels"], json!([]), "{name} session id");
    }
    let again = Client::connect_session(&gateway, &ann, &session).await;
    assert_eq!(again.hello["data"]["resumed"], true);
}

#[tokio::test]
async fn a_reader_that_stops_reading_loses_nothing_and_memory_stays_bounded() {
    let nats = nats();
    // The node's window of recent events is memory it keeps on purpose
    // (64 MiB by default); bounded small here, what is measured is the
    // memory held for the stalled reader.
    let gateway = Gateway::start_with(&nats, &["--window-bytes", "4194304"]);
    let log = log(&nats).await;
    let c = Id::new_v4();
    let mut client = Client::connect(&gateway, &token(Id::new_v4(), Grant::All, &[])).await;
    client.subscribe(chat(c)).await;
    let before = gateway.rss_kib().unwrap_or(0);

    // 40,000 events of 2 KB (80 MB) while the client reads nothing.
    let published = publish_many(&log, c, 40_000, 2000).await;
    let after_publish = gateway.rss_kib().unwrap_or(0);

    let received = client.events(published.len()).await;
    assert_seqs(&seqs(&received), &published, "all of them, in order, once");
    let growth_mib = after_publish.saturating_sub(before) / 1024;
    assert!(
        growth_mib < 48,
        "gateway grew {growth_mib} MiB while buffering for a stalled reader (80 MB published)"
    );
    let lagged = gateway
        .metric("switchboard_events_dropped_total{reason=\"queue_full\"}")
        .await;
    assert!(lagged > 0.0, "the reader fell back to the log");
}

#[tokio::test]
async fn a_stalled_reader_is_closed_with_4008_and_resumes_without_loss() {
    let nats = nats();
    let gateway = Gateway::start_with(&nats, &["--stall-timeout", "2s", "--send-queue", "64"]);
    let log = log(&nats).await;
    let c = Id::new_v4();
    let user = token(Id::new_v4(), Grant::All, &[]);
    let mut client = Client::connect(&gateway, &user).await;
    let session = client.session_id();
    client.subscribe(chat(c)).await;
    let published = publish_many(&log, c, 20_000, 2000).await;
    wait_until("the stalled reader to be closed", || async {
        gateway
            .metric("switchboard_slow_consumer_closes_total")
            .await
            > 0.0
    })
    .await;
    // Drain what reached the socket before the close.
    let mut seen = Vec::new();
    loop {
        match client.try_next().await {
            Some(frame) if frame.get("seq").is_some() => {
                seen.push(frame["seq"].as_u64().expect("seq"))
            }
            Some(_) => {}
            None => break,
        }
    }
    assert!(seen.len() < published.len(), "the stall cut delivery short");
    gateway.wait_for_no_connections().await;
    let mut resumed = Client::connect_session(&gateway, &user, &session).await;
    assert_eq!(resumed.hello["data"]["resumed"], true);
    let (_, replayed, _) = resumed.read_replay(chat(c)).await;
    let replayed = seqs(&replayed);
    assert!(
        replayed.windows(2).all(|w| w[0] < w[1]),
        "the replay is in order"
    );
    // Frames written before the close may come again; the client drops them by seq.
    let mut all: Vec<u64> = seen.clone();
    all.extend(replayed);
    all.sort_unstable();
    all.dedup();
    assert_seqs(
        &all,
        &published,
        "nothing lost across the 4008 close and resume",
    );
}

#[tokio::test]
async fn a_nats_restart_loses_nothing_for_a_connected_client() {
    let mut nats = nats();
    let gateway = Gateway::start(&nats);
    let c = Id::new_v4();
    let mut client = Client::connect(&gateway, &token(Id::new_v4(), Grant::All, &[])).await;
    client.subscribe(chat(c)).await;
    let before = {
        let log = log(&nats).await;
        publish_many(&log, c, 100, 10).await
    };
    assert_eq!(seqs(&client.events(100).await), before);

    let http = http();
    let ready = |http: reqwest::Client, url: String| async move {
        http.get(url)
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
    };
    nats.kill();
    wait_until("/readyz to report the outage", || {
        let f = ready(http.clone(), gateway.http("/readyz"));
        async move { f.await == 503 }
    })
    .await;
    nats.restart().expect("nats restarts");
    wait_until("/readyz to recover", || {
        let f = ready(http.clone(), gateway.http("/readyz"));
        async move { f.await == 200 }
    })
    .await;
    let after = {
        let log = log(&nats).await;
        publish_many(&log, c, 100, 10).await
    };
    let received = client.events(100).await;
    assert_seqs(
        &seqs(&received),
        &after,
        "the events after the restart, once, in order",
    );
    client.assert_silent(Duration::from_millis(300)).await;
}
