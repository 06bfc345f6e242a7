//! Sessions on any node: with `--session-store kv` the sessions live in a
//! JetStream key-value bucket, so a client whose gateway died or restarted
//! resumes its session (`?session=`) on another gateway: every event
//! arrives, in order; events after its last written cursor may come again
//! (a few seconds' worth at most), never a gap.
//!
//! The gateways of a test are started by [`start_gateways`], given a NATS
//! URL (a comma-separated list for a cluster). The crash and the rolling
//! restart run on a three-node NATS cluster with an R3 stream and an R3
//! session bucket, each gateway on another server ([`on_cluster`]).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use switchboard::channel::{Channel, Id};
use switchboard::session::kv::{Bucket, BucketSettings};
use switchboard::session::record::{Change, Cursor};
use switchboard::session::writer::Writer;
use switchboard::session::Sessions;
use switchboard::token::Grant;
use switchboard_harness::*;

/// The connections' flush interval in these tests (the default).
const FLUSH: Duration = Duration::from_secs(2);

/// Gateways sharing one deployment: the same NATS (one server or a
/// cluster), the same stream and session bucket, each with its own data
/// directory. Dropped: the gateways are killed, then the directories go.
struct Deployment {
    gateways: Vec<Gateway>,
    _dirs: Vec<tempfile::TempDir>,
}

/// Starts `n` gateways on `nats_url` with sessions in the bucket.
fn start_gateways(nats_url: &str, n: usize, extra: &[&str]) -> Deployment {
    let mut args = vec!["--session-store", "kv"];
    args.extend_from_slice(extra);
    let mut gateways = Vec::new();
    let mut dirs = Vec::new();
    for _ in 0..n {
        let dir = tempfile::tempdir().expect("temp dir");
        gateways.push(Gateway::spawn(nats_url, dir.path(), &args));
        dirs.push(dir);
    }
    Deployment {
        gateways,
        _dirs: dirs,
    }
}

/// `n` gateways on a three-node cluster, gateway `i` on server `i` (it
/// learns the others from it), with the stream and the bucket at R3; and
/// a publisher's log on every server.
async fn on_cluster(cluster: &NatsCluster, n: usize) -> (Deployment, switchboard::log::Log) {
    let mut gateways = Vec::new();
    let mut dirs = Vec::new();
    for i in 0..n {
        let dir = tempfile::tempdir().expect("temp dir");
        let args = ["--session-store", "kv", "--replicas", "3"];
        gateways.push(Gateway::spawn(&cluster.url(i % 3), dir.path(), &args));
        dirs.push(dir);
    }
    let settings = switchboard::log::StreamSettings {
        replicas: 3,
        ..Default::default()
    };
    let log = log_named(&cluster.urls(), "publisher", settings).await;
    let deployment = Deployment {
        gateways,
        _dirs: dirs,
    };
    (deployment, log)
}

/// Publishes to `channels` in turn, one event every `every`, until told to
/// stop; returns each channel's published seqs.
fn publish_steadily(
    log: switchboard::log::Log,
    channels: Vec<Id>,
    every: Duration,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<BTreeMap<Id, Vec<u64>>>,
) {
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let mut published: BTreeMap<Id, Vec<u64>> = BTreeMap::new();
        let mut tick = tokio::time::interval(every);
        for n in 0..1_000_000usize {
            tokio::select! {
                _ = &mut stopped => break,
                _ = tick.tick() => {}
            }
            let c = channels[n % channels.len()];
            let receipt = log
                .publish(&message(c, format!("m{n}")))
                .await
                .expect("published");
            published.entry(c).or_default().push(receipt.stored.seq);
        }
        published
    });
    (stop, task)
}

/// A seq frame's channel id.
fn channel_of(frame: &Value) -> Option<String> {
    frame["channel"].as_str().map(str::to_string)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_resumes_on_another_gateway_after_a_crash() {
    let cluster = cluster();
    let (mut deployment, log) = on_cluster(&cluster, 2).await;
    let (acked, quiet) = (Id::new_v4(), Id::new_v4());
    let user = token(Id::new_v4(), Grant::All, &[]);

    let mut client = Client::connect(&deployment.gateways[0], &user).await;
    let session = client.session_id();
    client.subscribe(chat(acked)).await;
    client.subscribe(chat(quiet)).await;

    // 100 events/s, half on each channel.
    let (stop, publisher) =
        publish_steadily(log.clone(), vec![acked, quiet], Duration::from_millis(10));

    // Read (and ack every 10th event of one channel) past a few flushes.
    let mut before: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let until = tokio::time::Instant::now() + FLUSH * 2 + Duration::from_millis(500);
    while let Ok(frame) = tokio::time::timeout_at(until, client.next()).await {
        let (Some(seq), Some(channel)) = (frame["seq"].as_u64(), channel_of(&frame)) else {
            continue;
        };
        let seen = before.entry(channel.clone()).or_default();
        seen.push(seq);
        if channel == chat(acked).to_string() && seen.len().is_multiple_of(10) {
            client
                .send(json!({"type": "ack", "channel": channel, "seq": seq}))
                .await;
        }
    }
    // A crashes while events flow; what reached the client counts as seen.
    deployment.gateways[0].kill9();
    while let Some(frame) = client.try_next().await {
        if let (Some(seq), Some(channel)) = (frame["seq"].as_u64(), channel_of(&frame)) {
            before.entry(channel).or_default().push(seq);
        }
    }

    let mut client = Client::connect_session(&deployment.gateways[1], &user, &session).await;
    assert_eq!(client.hello["data"]["resumed"], true, "{}", client.hello);
    let channels: BTreeSet<String> = client.hello["data"]["channels"]
        .as_array()
        .expect("channels")
        .iter()
        .filter_map(|c| c.as_str().map(str::to_string))
        .collect();
    let want: BTreeSet<String> = [chat(acked), chat(quiet)]
        .iter()
        .map(Channel::to_string)
        .collect();
    assert_eq!(channels, want);

    // Restored and caught up; then the publisher stops.
    let mut after: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut replayed = BTreeSet::new();
    while replayed.len() < 2 {
        let frame = client.next().await;
        if frame["type"] == "replayed" {
            replayed.insert(frame["data"]["channel"].as_str().map(str::to_string));
        } else if let (Some(seq), Some(channel)) = (frame["seq"].as_u64(), channel_of(&frame)) {
            after.entry(channel).or_default().push(seq);
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = stop.send(());
    let published = publisher.await.expect("publisher");
    for c in [acked, quiet] {
        let last = *published[&c].last().expect("published");
        let name = chat(c).to_string();
        while after.get(&name).and_then(|s| s.last()).copied() < Some(last) {
            let frame = client.next().await;
            if let (Some(seq), Some(channel)) = (frame["seq"].as_u64(), channel_of(&frame)) {
                after.entry(channel).or_default().push(seq);
            }
        }
    }

    for c in [acked, quiet] {
        let name = chat(c).to_string();
        let before = before.get(&name).cloned().unwrap_or_default();
        let after = after.get(&name).cloned().unwrap_or_default();
        assert!(
            before.windows(2).all(|w| w[0] < w[1]),
            "{name}: in order before"
        );
        assert!(
            after.windows(2).all(|w| w[0] < w[1]),
            "{name}: in order after"
        );
        let first = *before.first().expect("events before the crash");
        let got: BTreeSet<u64> = before.iter().chain(&after).copied().collect();
        let want: BTreeSet<u64> = published[&c]
            .iter()
            .copied()
            .filter(|s| *s >= first)
            .collect();
        let missing: Vec<u64> = want.difference(&got).copied().collect();
        assert!(missing.is_empty(), "{name}: missing {missing:?}");
        let seen_before: BTreeSet<u64> = before.iter().copied().collect();
        let again = after.iter().filter(|s| seen_before.contains(s)).count();
        // The cursor is at most a flush interval (plus a receipt probe and
        // a round trip) old: at 50 events/s per channel, 4 s is 200.
        assert!(again <= 200, "{name}: {again} events came again");
        println!(
            "{name}: {} before, {} after, {again} again",
            before.len(),
            after.len()
        );
    }
}

/// One client of the rolling restart: reads its channel, and when its
/// gateway closes, reconnects with its session to the gateway `target`
/// names. Returns the seqs it received, once it has the last published.
async fn roaming_client(
    c: Id,
    target: tokio::sync::watch::Receiver<String>,
    moved: Arc<AtomicUsize>,
    last: tokio::sync::watch::Receiver<Option<BTreeMap<Id, Vec<u64>>>>,
) -> Vec<u64> {
    let url = target.borrow().clone();
    let mut client = Client::connect_url(&url).await;
    let session = client.session_id();
    client.subscribe(chat(c)).await;
    let mut seqs: Vec<u64> = Vec::new();
    loop {
        let end = last
            .borrow()
            .as_ref()
            .map(|published| published.get(&c).and_then(|s| s.last()).copied());
        if let (Some(end), Some(seen)) = (end, seqs.last()) {
            if Some(*seen) >= end {
                return seqs;
            }
        }
        let frame = tokio::time::timeout(Duration::from_millis(200), client.try_next()).await;
        match frame {
            Err(_) => continue, // look at `last` again
            Ok(Some(frame)) => {
                if let Some(seq) = frame["seq"].as_u64() {
                    seqs.push(seq);
                }
            }
            Ok(None) => {
                // Closed (1001): back on the other gateway, with the session.
                // A refused connect (a gateway between stop and start) is
                // tried again after a pause, as a real client does.
                let mut attempts = 0;
                client = loop {
                    let url = format!("{}&session={session}", target.borrow().clone());
                    match Client::try_connect_url(&url).await {
                        Ok(client) => break client,
                        Err(e) => {
                            attempts += 1;
                            assert!(attempts < 100, "reconnect refused 100 times: {e}");
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                    }
                };
                assert_eq!(client.hello["data"]["resumed"], true, "{}", client.hello);
                moved.fetch_add(1, Ordering::SeqCst);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_under_load_loses_nothing() {
    const CLIENTS: usize = 20;
    let cluster = cluster();
    let (mut deployment, log) = on_cluster(&cluster, 2).await;
    let channels: Vec<Id> = (0..4).map(|_| Id::new_v4()).collect();
    let user = token(Id::new_v4(), Grant::All, &[]);
    let started = Instant::now();

    // Half the clients on each gateway.
    let (to_a, target_a) = tokio::sync::watch::channel(deployment.gateways[0].ws_url(&user));
    let (to_b, target_b) = tokio::sync::watch::channel(deployment.gateways[1].ws_url(&user));
    let (set_last, last) = tokio::sync::watch::channel(None);
    let moved = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for i in 0..CLIENTS {
        let c = channels[i % channels.len()];
        let target = if i % 2 == 0 { &target_a } else { &target_b };
        let task = tokio::spawn(roaming_client(
            c,
            target.clone(),
            moved.clone(),
            last.clone(),
        ));
        clients.push((c, task));
    }
    // 200 events/s over the channels.
    let (stop, publisher) =
        publish_steadily(log.clone(), channels.clone(), Duration::from_millis(5));
    tokio::time::sleep(FLUSH).await;

    // A restarts: its clients go to B (and come back to the new A later).
    let b_url = deployment.gateways[1].ws_url(&user);
    to_a.send_replace(b_url);
    let mut a = deployment.gateways.remove(0);
    let mut a = tokio::task::spawn_blocking(move || {
        a.terminate();
        a.restart();
        a
    })
    .await
    .expect("A restarts");
    wait_until("A's clients on B", || async {
        moved.load(Ordering::SeqCst) >= CLIENTS / 2
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Then B: every client goes to A.
    let a_url = a.ws_url(&user);
    to_a.send_replace(a_url.clone());
    to_b.send_replace(a_url);
    let mut b = deployment.gateways.remove(0);
    let b_writes = b.metric("switchboard_session_writes_total").await;
    let b = tokio::task::spawn_blocking(move || {
        b.terminate();
        b
    })
    .await
    .expect("B stops");
    wait_until("every client on A", || async {
        moved.load(Ordering::SeqCst) >= CLIENTS + CLIENTS / 2
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let _ = stop.send(());
    let published = publisher.await.expect("publisher");
    set_last.send_replace(Some(published.clone()));
    // Each client stops at its channel's last event.
    let mut lost = 0;
    let mut again = 0;
    for (c, task) in clients {
        let seqs = tokio::time::timeout(PATIENCE, task)
            .await
            .expect("client in time")
            .expect("client");
        let first = *seqs.first().expect("events");
        let got: BTreeSet<u64> = seqs.iter().copied().collect();
        again += seqs.len() - got.len();
        lost += published[&c]
            .iter()
            .filter(|s| **s >= first && !got.contains(s))
            .count();
    }
    a.kill9();
    drop(b);
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "{CLIENTS} clients, two restarts: {lost} lost, {again} again; B wrote {b_writes} session records in {elapsed:.1} s"
    );
    assert_eq!(lost, 0, "events lost");
}

/// Writes `change` of session `id` through `sessions` and waits until it
/// is in the bucket.
async fn written(sessions: &Sessions, id: Id, change: Change) {
    let (written, done) = tokio::sync::oneshot::channel();
    sessions
        .save(id, change, Some(written))
        .expect("handed over");
    done.await.expect("written");
}

fn at(seq: u64) -> Cursor {
    Cursor {
        seq,
        epoch: Some("e1".into()),
    }
}

/// The bucket itself: fresh, resumed, another user's and expired sessions,
/// through the writer.
#[tokio::test]
async fn the_bucket_resumes_only_live_sessions_of_their_owner() {
    let nats = nats();
    let client = async_nats::connect(nats.url()).await.expect("nats");
    let js = async_nats::jetstream::new(client);
    let settings = BucketSettings {
        name: "test_sessions".into(),
        max_age: Duration::from_secs(60),
        replicas: 1,
    };
    let bucket = Bucket::create_or_update(&js, &settings)
        .await
        .expect("bucket");
    let (writer, task) = Writer::new(bucket.clone(), 64);
    let writing = tokio::spawn(task);
    let sessions = Sessions::kv(bucket.clone(), writer.clone(), settings.max_age, FLUSH);
    let (ann, bob) = (Id::new_v4(), Id::new_v4());

    let fresh = sessions.open(None, ann).await;
    assert!(!fresh.resumed);
    let mut subs = BTreeMap::new();
    subs.insert(chat(Id::new_v4()), at(7));
    let change = Change::whole(ann, sessions.expires_at(), subs.clone());
    written(&sessions, fresh.id, change).await;

    let again = sessions.open(Some(fresh.id), ann).await;
    assert!(again.resumed);
    assert_eq!(again.id, fresh.id);
    assert_eq!(again.subscriptions, subs);
    assert!(!again.legacy);

    let stolen = sessions.open(Some(fresh.id), bob).await;
    assert!(!stolen.resumed);
    assert_ne!(stolen.id, fresh.id);
    assert!(stolen.subscriptions.is_empty());

    let unknown = sessions.open(Some(Id::new_v4()), ann).await;
    assert!(!unknown.resumed);

    // A record past its expiry (a TTL of zero) is a fresh session.
    let expired = Sessions::kv(bucket.clone(), writer.clone(), Duration::ZERO, FLUSH);
    let change = Change::whole(ann, expired.expires_at(), subs.clone());
    written(&expired, fresh.id, change).await;
    assert!(!sessions.open(Some(fresh.id), ann).await.resumed);

    // Changes of one session coalesce; closing drains what is pending.
    let id = Id::new_v4();
    let mut first = Change::new(ann);
    first.header = Some(sessions.expires_at());
    sessions.save(id, first, None).expect("handed over");
    for cursor in 0..100u64 {
        let mut change = Change::new(ann);
        change
            .subscriptions
            .insert(Channel::Global, Some(at(cursor)));
        sessions.save(id, change, None).expect("handed over");
    }
    writer.close();
    tokio::time::timeout(PATIENCE, writing)
        .await
        .expect("writer drains in time")
        .expect("writer");
    let last = bucket.get(id).await.expect("read").expect("written");
    assert_eq!(last.subscriptions.get(&Channel::Global), Some(&at(99)));
}

/// The bucket's write rate: each connection whose cursors move writes at
/// most once per flush interval, however many events it receives (here 50
/// connections, 100 events/s, 1 s flushes: about 50 writes/s for 5,000
/// deliveries/s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bucket_is_written_once_per_connection_per_flush() {
    const CLIENTS: usize = 50;
    const FLUSH_RATE: Duration = Duration::from_secs(1);
    const WINDOW: Duration = Duration::from_secs(5);
    let nats = nats();
    let deployment = start_gateways(&nats.url(), 1, &["--session-flush-interval", "1s"]);
    let gateway = &deployment.gateways[0];
    let log = log(&nats).await;
    let channels: Vec<Id> = (0..5).map(|_| Id::new_v4()).collect();
    let user = token(Id::new_v4(), Grant::All, &[]);
    let mut readers = Vec::new();
    for i in 0..CLIENTS {
        let mut client = Client::connect(gateway, &user).await;
        client.subscribe(chat(channels[i % channels.len()])).await;
        // Reading answers the receipt probes: the cursors move.
        readers.push(tokio::spawn(async move {
            let mut events = 0u64;
            while let Some(frame) = client.try_next().await {
                if frame.get("seq").is_some() {
                    events += 1;
                }
            }
            events
        }));
    }
    let (stop, publisher) = publish_steadily(log.clone(), channels, Duration::from_millis(10));
    // Past the first flushes, then one window counted.
    tokio::time::sleep(FLUSH_RATE * 2).await;
    let from = gateway.metric("switchboard_session_writes_total").await;
    let delivered_from = gateway.metric("switchboard_events_out_total").await;
    tokio::time::sleep(WINDOW).await;
    let writes = gateway.metric("switchboard_session_writes_total").await - from;
    let delivered = gateway.metric("switchboard_events_out_total").await - delivered_from;
    let _ = stop.send(());
    let _ = publisher.await;
    let seconds = WINDOW.as_secs_f64();
    println!(
        "{CLIENTS} connections, {:.0} deliveries/s: {:.1} session writes/s ({writes} in {seconds} s)",
        delivered / seconds,
        writes / seconds
    );
    let most = CLIENTS as f64 * (seconds / FLUSH_RATE.as_secs_f64() + 1.0);
    assert!(writes <= most, "{writes} writes, at most {most} expected");
    assert!(
        writes >= CLIENTS as f64,
        "the cursors were written ({writes})"
    );
    drop(deployment);
    for reader in readers {
        let _ = reader.await;
    }
}

/// A normal stop writes every session before the process ends: an ack made
/// just before a SIGTERM (well within the flush interval) is the cursor the
/// other gateway restores, so nothing comes again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_normal_stop_writes_the_latest_cursor() {
    let nats = nats();
    let mut deployment = start_gateways(&nats.url(), 2, &["--session-flush-interval", "1m"]);
    let log = log(&nats).await;
    let c = Id::new_v4();
    let user = token(Id::new_v4(), Grant::All, &[]);
    let mut client = Client::connect(&deployment.gateways[0], &user).await;
    let session = client.session_id();
    client.subscribe(chat(c)).await;
    for n in 0..10 {
        log.publish(&message(c, format!("m{n}")))
            .await
            .expect("published");
    }
    let events = client.events(10).await;
    let last = events[9]["seq"].as_u64().expect("seq");
    client
        .send(json!({"type": "ack", "channel": chat(c).to_string(), "seq": last}))
        .await;
    // The gateway reads the ack well within this.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut a = deployment.gateways.remove(0);
    let a = tokio::task::spawn_blocking(move || {
        a.terminate();
        a
    })
    .await
    .expect("A stops");
    assert_eq!(client.closed_with().await, 1001);

    let mut client = Client::connect_session(&deployment.gateways[0], &user, &session).await;
    assert_eq!(client.hello["data"]["resumed"], true, "{}", client.hello);
    let (_, replayed, _) = client.read_replay(chat(c)).await;
    assert_eq!(seqs(&replayed), Vec::<u64>::new(), "nothing comes again");
    let receipt = log.publish(&message(c, "after")).await.expect("published");
    let next = client.events(1).await;
    assert_eq!(next[0]["seq"].as_u64(), Some(receipt.stored.seq));
    drop(a);
}

/// The consumers this test process created (the fallback read counts one).
fn consumers_created() -> f64 {
    switchboard::metrics::Metrics::render()
        .lines()
        .find(|l| l.starts_with("switchboard_log_consumers_created_total"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0.0)
}

/// A session is read with one batched get, no consumer; one of more keys
/// than a batched get may return is read whole with a consumer instead. An
/// ended subscription and a removed session leave no key behind (no
/// marker for later reads to wade through).
#[tokio::test]
async fn a_session_reads_in_one_request_and_removals_leave_no_key() {
    let nats = nats();
    let client = async_nats::connect(nats.url()).await.expect("nats");
    let js = async_nats::jetstream::new(client);
    let settings = BucketSettings {
        name: "test_sessions".into(),
        max_age: Duration::from_secs(60),
        replicas: 1,
    };
    let bucket = Bucket::create_or_update(&js, &settings)
        .await
        .expect("bucket");
    let (writer, task) = Writer::new(bucket.clone(), 64);
    let writing = tokio::spawn(task);
    let sessions = Sessions::kv(bucket.clone(), writer.clone(), settings.max_age, FLUSH);
    let ann = Id::new_v4();

    let small = Id::new_v4();
    let channels: Vec<Channel> = (0..3).map(|_| chat(Id::new_v4())).collect();
    let subs: BTreeMap<Channel, Cursor> = channels.iter().map(|c| (*c, at(5))).collect();
    written(
        &sessions,
        small,
        Change::whole(ann, sessions.expires_at(), subs.clone()),
    )
    .await;
    let before = consumers_created();
    let read = sessions.open(Some(small), ann).await;
    assert_eq!(read.subscriptions, subs);
    assert_eq!(consumers_created(), before, "no consumer for a hello");

    let big = Id::new_v4();
    let many: BTreeMap<Channel, Cursor> = (0..switchboard::session::kv::MULTI_GET_MOST + 50)
        .map(|i| (chat(Id::new_v4()), at(i as u64)))
        .collect();
    written(
        &sessions,
        big,
        Change::whole(ann, sessions.expires_at(), many.clone()),
    )
    .await;
    let read = sessions.open(Some(big), ann).await;
    assert!(read.resumed);
    assert_eq!(read.subscriptions.len(), many.len());
    assert_eq!(read.subscriptions, many);
    assert_eq!(consumers_created(), before + 1.0, "read with a consumer");

    // One subscription ends, then the session's last ones.
    let mut less = Change::new(ann);
    less.subscriptions.insert(channels[0], None);
    written(&sessions, small, less).await;
    let read = sessions.open(Some(small), ann).await;
    assert_eq!(read.subscriptions.len(), 2);
    written(&sessions, big, Change::remove(ann)).await;
    written(&sessions, small, Change::remove(ann)).await;
    assert!(!sessions.open(Some(small), ann).await.resumed);
    let keys = bucket.keys().await.expect("keys");
    assert_eq!(
        keys,
        Vec::<String>::new(),
        "nothing is left, the index neither"
    );
    assert_eq!(
        bucket.sessions_of(ann).await.expect("index"),
        Vec::<Id>::new()
    );
    writer.close();
    let _ = writing.await;
}
