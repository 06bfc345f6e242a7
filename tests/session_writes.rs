//! What sessions write (issue 20, parts 4 and 5), against the real binary
//! and nats-server, in sled and in the bucket (`--session-store kv`):
//!
//! - one connection subscribing up to `max_subscriptions` channels writes
//!   a record per subscription, of the same size for the last as for the
//!   first (it wrote the whole session each time: quadratic), and churn
//!   writes a record per change;
//! - connect/close cycles of one user leave at most
//!   `max_sessions_per_user` sessions, the newest;
//! - a connection without a subscription writes nothing, and a session
//!   whose last subscription ends is removed;
//! - after churn, a resume straight away (same node), after a restart
//!   (sled) or on another node (the bucket) restores every subscription the
//!   gateway confirmed, and none it confirmed ended;
//! - a session of the previous format (the whole session in one record)
//!   still restores, and is written anew.
//!
//! Counts are smoke-sized; the bench (`benches/session_writes.rs`) has the
//! figures.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::{json, Value};
use switchboard::channel::{Channel, Id};
use switchboard::session::kv::{Bucket, BucketSettings};
use switchboard::session::sled::SledSessions;
use switchboard::store::Store;
use switchboard::token::Grant;
use switchboard_harness::*;

/// `--max-subscriptions` in these tests.
const MOST: usize = 48;

/// `--max-sessions-per-user` in these tests.
const SESSIONS_PER_USER: usize = 4;

/// The two stores, as `serve` flags.
const SLED: &[&str] = &[];
const KV: &[&str] = &["--session-store", "kv"];

/// Records and bytes written to the session store so far, once they stop
/// moving (the store writes in the background).
async fn settled_writes(gateway: &Gateway) -> (f64, f64) {
    let mut last = (-1.0, -1.0);
    loop {
        let now = (
            gateway.metric("switchboard_session_writes_total").await,
            gateway
                .metric("switchboard_session_write_bytes_total")
                .await,
        );
        if now == last {
            return now;
        }
        last = now;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// The default bucket of a gateway on `nats`, as the tests read it.
async fn bucket(nats: &NatsServer) -> Bucket {
    let client = async_nats::connect(nats.url()).await.expect("nats");
    let js = async_nats::jetstream::new(client);
    let settings = BucketSettings {
        name: "switchboard_sessions".into(),
        max_age: Duration::from_secs(24 * 3600),
        replicas: 1,
    };
    Bucket::create_or_update(&js, &settings)
        .await
        .expect("the session bucket")
}

/// The channels a hello restored.
fn restored(hello: &Value) -> BTreeSet<String> {
    hello["data"]["channels"]
        .as_array()
        .expect("channels")
        .iter()
        .filter_map(|c| c.as_str().map(str::to_string))
        .collect()
}

fn names(channels: &[Channel]) -> BTreeSet<String> {
    channels.iter().map(Channel::to_string).collect()
}

async fn unsubscribe(client: &mut Client, channel: Channel) {
    client
        .send(json!({"type": "unsubscribe", "channel": channel.to_string()}))
        .await;
    let reply = client.next().await;
    assert_eq!(reply["type"], "unsubscribed", "{reply}");
}

// ------------------------------------------------- many subscriptions

#[tokio::test]
async fn many_subscriptions_write_a_record_each_in_sled() {
    many_subscriptions_write_a_record_each(SLED).await;
}

#[tokio::test]
async fn many_subscriptions_write_a_record_each_in_the_bucket() {
    many_subscriptions_write_a_record_each(KV).await;
}

/// The attack of issue 20 at smoke size: one connection subscribes up to
/// its limit, then churns one subscription. Every change writes about the
/// same bytes, whatever the session's size, and a client that drops and
/// comes straight back finds every subscription.
async fn many_subscriptions_write_a_record_each(store: &[&str]) {
    let nats = nats();
    let most = MOST.to_string();
    let mut args = vec!["--max-subscriptions", most.as_str()];
    args.extend_from_slice(store);
    let gateway = Gateway::start_with(&nats, &args);
    let user = token(Id::new_v4(), Grant::All, &[]);
    let mut client = Client::connect(&gateway, &user).await;
    let session = client.session_id();
    assert_eq!(settled_writes(&gateway).await, (0.0, 0.0), "nothing yet");

    let channels: Vec<Channel> = (0..MOST).map(|_| chat(Id::new_v4())).collect();
    let (first, second) = channels.split_at(MOST / 2);
    for c in first {
        client.subscribe(*c).await;
    }
    let (records_1, bytes_1) = settled_writes(&gateway).await;
    for c in second {
        client.subscribe(*c).await;
    }
    let (records_2, bytes_2) = settled_writes(&gateway).await;
    // One over the limit is refused, and writes nothing.
    client
        .send(json!({"type": "subscribe", "channel": chat(Id::new_v4()).to_string()}))
        .await;
    let refused = client.next().await;
    assert_eq!(refused["data"]["code"], "bad_request", "{refused}");

    let half = (MOST / 2) as f64;
    let (per_sub_1, per_sub_2) = (bytes_1 / half, (bytes_2 - bytes_1) / half);
    println!(
        "{store:?}: {records_1} records, {bytes_1} bytes for the first {half} subscriptions; \
         {} records, {} bytes for the next {half} ({per_sub_1:.0} then {per_sub_2:.0} bytes each)",
        records_2 - records_1,
        bytes_2 - bytes_1
    );
    // The first subscription also wrote the header and the user's index.
    assert!(records_1 <= half + 3.0, "{records_1} records");
    assert!(
        records_2 - records_1 <= half,
        "{} records",
        records_2 - records_1
    );
    // Linear: the second half costs no more than the first (the whole
    // session each time cost three times as much).
    assert!(per_sub_2 <= per_sub_1 * 1.1, "{per_sub_1} then {per_sub_2}");
    assert!(per_sub_2 < 200.0, "{per_sub_2} bytes per subscription");

    // Churn on one subscription: a record per change.
    const CHURN: usize = 20;
    let churned = channels[0];
    for _ in 0..CHURN {
        unsubscribe(&mut client, churned).await;
        client.subscribe(churned).await;
    }
    let (records_3, bytes_3) = settled_writes(&gateway).await;
    let changes = (2 * CHURN) as f64;
    println!(
        "{store:?}: churn: {} records, {} bytes for {changes} changes",
        records_3 - records_2,
        bytes_3 - bytes_2
    );
    assert!(
        records_3 - records_2 <= changes,
        "{}",
        records_3 - records_2
    );
    assert!(
        bytes_3 - bytes_2 <= changes * 200.0,
        "{}",
        bytes_3 - bytes_2
    );

    // The last change ends a subscription; straight back, the client finds
    // every other one (what the gateway confirmed is what it reads).
    unsubscribe(&mut client, channels[1]).await;
    client.abort();
    let again = Client::connect_session(&gateway, &user, &session).await;
    assert_eq!(again.hello["data"]["resumed"], true, "{}", again.hello);
    let mut want = channels.clone();
    want.remove(1);
    assert_eq!(restored(&again.hello), names(&want));
}

// ------------------------------------------------- sessions per user

#[tokio::test]
async fn connect_close_cycles_keep_the_newest_sessions_in_sled() {
    let nats = nats();
    let bound = SESSIONS_PER_USER.to_string();
    let mut gateway = Gateway::start_with(&nats, &["--max-sessions-per-user", &bound]);
    let (user, token) = user();
    let sessions = cycles(&gateway, &token).await;
    let kept = &sessions[sessions.len() - SESSIONS_PER_USER..];

    gateway.terminate();
    {
        let store = Store::open(&gateway.data_dir().join("sled")).expect("store");
        let stored = SledSessions::open(&store).expect("sessions");
        let mut of_user = stored.sessions_of(user).expect("index");
        of_user.sort();
        let mut want: Vec<Id> = kept.iter().map(|s| parse(s)).collect();
        want.sort();
        assert_eq!(of_user, want, "the newest sessions");
        // A header and one subscription each; nothing else.
        assert_eq!(stored.records(), 2 * SESSIONS_PER_USER);
    }
    gateway.restart();
    assert_resumes(&gateway, &token, &sessions).await;
}

#[tokio::test]
async fn connect_close_cycles_keep_the_newest_sessions_in_the_bucket() {
    let nats = nats();
    let bound = SESSIONS_PER_USER.to_string();
    let gateway = Gateway::start_with(
        &nats,
        &["--session-store", "kv", "--max-sessions-per-user", &bound],
    );
    let (user, token) = user();
    let sessions = cycles(&gateway, &token).await;
    let kept = &sessions[sessions.len() - SESSIONS_PER_USER..];

    // The bucket's writer is done once its counter stops moving.
    settled_writes(&gateway).await;
    let bucket = bucket(&nats).await;
    let mut of_user = bucket.sessions_of(user).await.expect("index");
    of_user.sort();
    let mut want: Vec<Id> = kept.iter().map(|s| parse(s)).collect();
    want.sort();
    assert_eq!(of_user, want, "the newest sessions");
    let keys = bucket.keys().await.expect("keys");
    // A header and one subscription each, and the user's index.
    assert_eq!(keys.len(), 2 * SESSIONS_PER_USER + 1, "{keys:?}");
    for gone in &sessions[..sessions.len() - SESSIONS_PER_USER] {
        assert!(
            !keys.iter().any(|k| k.starts_with(gone.as_str())),
            "{gone} is gone whole: {keys:?}"
        );
    }
    assert_resumes(&gateway, &token, &sessions).await;
}

fn user() -> (Id, String) {
    let user = Id::new_v4();
    (user, token(user, Grant::All, &[]))
}

fn parse(session: &str) -> Id {
    Id::parse(session).expect("a session id")
}

/// Three times the bound of connect, subscribe, close cycles of one user,
/// and as many without a subscription; the sessions of the first kind, in
/// order.
async fn cycles(gateway: &Gateway, token: &str) -> Vec<String> {
    let mut sessions = Vec::new();
    for _ in 0..3 * SESSIONS_PER_USER {
        let mut client = Client::connect(gateway, token).await;
        client.subscribe(chat(Id::new_v4())).await;
        sessions.push(client.session_id());
        client.close().await;
        // "Newest" is the session whose header was written last: the
        // closing connection's last write lands before the next session's
        // first (the bucket writer applies different sessions at once, so
        // without this a loaded machine may order them the other way).
        gateway.wait_for_no_connections().await;
        settled_writes(gateway).await;
        let mut idle = Client::connect(gateway, token).await;
        idle.send(json!({"type": "ping"})).await;
        assert_eq!(idle.next().await["type"], "pong");
        idle.close().await;
    }
    gateway.wait_for_no_connections().await;
    sessions
}

/// The newest sessions resume; the oldest one is a fresh session.
async fn assert_resumes(gateway: &Gateway, token: &str, sessions: &[String]) {
    let newest = sessions.last().expect("sessions");
    let client = Client::connect_session(gateway, token, newest).await;
    assert_eq!(client.hello["data"]["resumed"], true, "{}", client.hello);
    assert_eq!(restored(&client.hello).len(), 1);
    client.close().await;
    let client = Client::connect_session(gateway, token, &sessions[0]).await;
    assert_eq!(client.hello["data"]["resumed"], false, "{}", client.hello);
    client.close().await;
}

// ------------------------------------------------- nothing to restore

#[tokio::test]
async fn nothing_to_restore_writes_nothing_in_sled() {
    let nats = nats();
    let mut gateway = Gateway::start(&nats);
    nothing_to_restore_writes_nothing(&gateway).await;
    gateway.terminate();
    let store = Store::open(&gateway.data_dir().join("sled")).expect("store");
    let stored = SledSessions::open(&store).expect("sessions");
    assert_eq!(stored.records(), 0, "no session left");
}

#[tokio::test]
async fn nothing_to_restore_writes_nothing_in_the_bucket() {
    let nats = nats();
    let gateway = Gateway::start_with(&nats, KV);
    nothing_to_restore_writes_nothing(&gateway).await;
    let keys = bucket(&nats).await.keys().await.expect("keys");
    assert_eq!(keys, Vec::<String>::new(), "no session left");
}

/// Connections that never subscribe write nothing, whether they close or
/// drop, and a session whose last subscription ended is removed (its id
/// then opens a fresh session).
async fn nothing_to_restore_writes_nothing(gateway: &Gateway) {
    let (_, token) = user();
    for n in 0..5 {
        let mut client = Client::connect(gateway, &token).await;
        client.send(json!({"type": "ping"})).await;
        assert_eq!(client.next().await["type"], "pong");
        if n % 2 == 0 {
            client.close().await;
        } else {
            client.abort();
        }
    }
    gateway.wait_for_no_connections().await;
    assert_eq!(settled_writes(gateway).await, (0.0, 0.0), "nothing written");

    let mut client = Client::connect(gateway, &token).await;
    let session = client.session_id();
    let (a, b) = (chat(Id::new_v4()), chat(Id::new_v4()));
    client.subscribe(a).await;
    client.subscribe(b).await;
    unsubscribe(&mut client, a).await;
    unsubscribe(&mut client, b).await;
    client.close().await;
    gateway.wait_for_no_connections().await;
    let (records, _) = settled_writes(gateway).await;
    assert!(records > 0.0);
    let again = Client::connect_session(gateway, &token, &session).await;
    assert_eq!(again.hello["data"]["resumed"], false, "{}", again.hello);
    again.close().await;
    gateway.wait_for_no_connections().await;
}

// ------------------------------------------------- resume after churn

/// Subscribes to 12 channels, reads and acks events on some, churns: the
/// channels the session must restore, and the last event of each.
async fn churn(client: &mut Client, log: &switchboard::log::Log) -> Vec<Channel> {
    let channels: Vec<Channel> = (0..12).map(|_| chat(Id::new_v4())).collect();
    for c in &channels {
        client.subscribe(*c).await;
    }
    for round in 0..4 {
        for c in &channels[..4] {
            unsubscribe(client, *c).await;
        }
        for c in &channels[..4] {
            client.subscribe(*c).await;
        }
        // An event on a steady channel, read and acked.
        let Channel::Chat(id) = channels[8] else {
            unreachable!()
        };
        let receipt = log
            .publish(&message(id, format!("m{round}")))
            .await
            .expect("published");
        let event = client.events(1).await;
        assert_eq!(event[0]["seq"].as_u64(), Some(receipt.stored.seq));
        client
            .send(json!({"type": "ack", "channel": channels[8].to_string(), "seq": receipt.stored.seq}))
            .await;
    }
    for c in &channels[10..] {
        unsubscribe(client, *c).await;
    }
    channels[..10].to_vec()
}

#[tokio::test]
async fn a_resume_after_churn_restores_every_subscription_in_sled() {
    let nats = nats();
    let log = log(&nats).await;
    let mut gateway = Gateway::start(&nats);
    let (_, token) = user();
    let mut client = Client::connect(&gateway, &token).await;
    let session = client.session_id();
    let want = churn(&mut client, &log).await;

    // Straight back on the same node.
    client.abort();
    let again = Client::connect_session(&gateway, &token, &session).await;
    assert_eq!(restored(&again.hello), names(&want));
    // After a crash, once sled had time to reach the disk.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    again.abort();
    gateway.restart();
    let mut after = Client::connect_session(&gateway, &token, &session).await;
    assert_eq!(restored(&after.hello), names(&want));
    // The acked channel replays nothing again.
    let replays = read_restores(&mut after, want.len()).await;
    assert_eq!(replays.len(), want.len());
    assert_eq!(
        replays[&want[8].to_string()],
        Vec::<u64>::new(),
        "the ack is the cursor"
    );
}

#[tokio::test]
async fn a_resume_after_churn_restores_every_subscription_in_the_bucket() {
    let nats = nats();
    let log = log(&nats).await;
    let a = Gateway::start_with(&nats, KV);
    let b = Gateway::start_with(&nats, KV);
    let (_, token) = user();
    let mut client = Client::connect(&a, &token).await;
    let session = client.session_id();
    let want = churn(&mut client, &log).await;

    // Straight back on the same node: it reads what its writer still held.
    client.abort();
    let again = Client::connect_session(&a, &token, &session).await;
    assert_eq!(restored(&again.hello), names(&want));
    // On another node, once written.
    again.close().await;
    a.wait_for_no_connections().await;
    settled_writes(&a).await;
    let other = Client::connect_session(&b, &token, &session).await;
    assert_eq!(restored(&other.hello), names(&want));
}

/// Reads the restores' frames until `n` channels said `replayed`: each
/// channel's replayed seqs.
async fn read_restores(client: &mut Client, n: usize) -> BTreeMap<String, Vec<u64>> {
    let mut replays: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut done = 0;
    while done < n {
        let frame = client.next().await;
        let channel = frame["channel"]
            .as_str()
            .or(frame["data"]["channel"].as_str())
            .expect("a channel")
            .to_string();
        let seqs = replays.entry(channel).or_default();
        match (frame["type"].as_str(), frame["seq"].as_u64()) {
            (Some("replayed"), _) => done += 1,
            (_, Some(seq)) => seqs.push(seq),
            _ => {}
        }
    }
    replays
}

// ------------------------------------------------- the previous format

/// A session as the previous version wrote it: the whole session in one
/// record, with one epoch for its cursors.
fn old_record(user: Id, channel: Channel, cursor: u64, epoch: &str) -> Vec<u8> {
    let expires_at = chrono::Utc::now().timestamp() + 3600;
    json!({
        "user": user.to_string(),
        "expires_at": expires_at,
        "subscriptions": {channel.to_string(): cursor},
        "epoch": epoch,
    })
    .to_string()
    .into_bytes()
}

/// Publishes five events on a channel; the channel and their seqs.
async fn five_events(log: &switchboard::log::Log) -> (Channel, Vec<u64>) {
    let c = Id::new_v4();
    let mut seqs = Vec::new();
    for n in 0..5 {
        let receipt = log
            .publish(&message(c, format!("m{n}")))
            .await
            .expect("published");
        seqs.push(receipt.stored.seq);
    }
    (chat(c), seqs)
}

/// Resumes `session`: the seqs its one subscription replays.
async fn resume(gateway: &Gateway, token: &str, session: Id) -> Vec<u64> {
    let mut client = Client::connect_session(gateway, token, &session.to_string()).await;
    assert_eq!(client.hello["data"]["resumed"], true, "{}", client.hello);
    let replays = read_restores(&mut client, 1).await;
    client.close().await;
    gateway.wait_for_no_connections().await;
    replays.into_values().next().unwrap_or_default()
}

/// The seqs after `cursor`.
fn after(seqs: &[u64], cursor: u64) -> Vec<u64> {
    seqs.iter().copied().filter(|s| *s > cursor).collect()
}

#[tokio::test]
async fn a_session_of_the_previous_format_restores_from_sled() {
    let nats = nats();
    let log = log(&nats).await;
    let (c, seqs) = five_events(&log).await;
    let (user, token) = user();
    let session = Id::new_v4();
    let data = tempfile::tempdir().expect("temp dir");
    {
        let db = sled::open(data.path().join("sled")).expect("sled");
        let tree = db.open_tree("sessions").expect("tree");
        let record = old_record(user, c, seqs[1], &log.epoch().to_string());
        tree.insert(session.0.as_bytes(), record).expect("insert");
        db.flush().expect("flush");
    }
    let mut gateway = Gateway::spawn(&nats.url(), data.path(), &[]);
    assert_eq!(
        resume(&gateway, &token, session).await,
        after(&seqs, seqs[1])
    );
    gateway.terminate();
    let cursor = {
        let store = Store::open(&data.path().join("sled")).expect("store");
        let sessions = SledSessions::open(&store).expect("sessions");
        let stored = sessions.get(session).expect("read").expect("kept");
        assert!(!stored.legacy, "written in the new format");
        assert!(stored.header.subscriptions.is_empty());
        stored.subscriptions[&c].seq
    };
    assert!(cursor >= seqs[1], "{cursor}");
    gateway.restart();
    assert_eq!(
        resume(&gateway, &token, session).await,
        after(&seqs, cursor)
    );
}

#[tokio::test]
async fn a_session_of_the_previous_format_restores_from_the_bucket() {
    let nats = nats();
    let log = log(&nats).await;
    let (c, seqs) = five_events(&log).await;
    let (user, token) = user();
    let session = Id::new_v4();
    // The bucket as the previous version made it, with its record.
    let client = async_nats::connect(nats.url()).await.expect("nats");
    let js = async_nats::jetstream::new(client);
    let kv = js
        .create_key_value(async_nats::jetstream::kv::Config {
            bucket: "switchboard_sessions".into(),
            history: 1,
            max_age: Duration::from_secs(24 * 3600),
            ..Default::default()
        })
        .await
        .expect("bucket");
    let record = old_record(user, c, seqs[1], &log.epoch().to_string());
    kv.put(session.to_string(), record.into())
        .await
        .expect("put");

    let gateway = Gateway::start_with(&nats, KV);
    assert_eq!(
        resume(&gateway, &token, session).await,
        after(&seqs, seqs[1])
    );
    settled_writes(&gateway).await;
    let stored = bucket(&nats)
        .await
        .get(session)
        .await
        .expect("read")
        .expect("kept");
    assert!(!stored.legacy, "written in the new format");
    let cursor = stored.subscriptions[&c].seq;
    assert!(cursor >= seqs[1], "{cursor}");
    assert_eq!(
        resume(&gateway, &token, session).await,
        after(&seqs, cursor)
    );
}
