//! Failover: how long live delivery pauses when the node of the stream's
//! leader dies. On the harness's three-node cluster (R3 stream, one
//! gateway with `--replicas 3`), a publisher stores a steady 200 events/s
//! in one channel that a few WebSocket clients follow live. Each round
//! moves the stream's leader onto a node (the gateway's own NATS server in
//! the first, third, … round, another one in the others), SIGKILLs that
//! node, and measures, per round:
//!
//! - the pause: the longest gap between two consecutive live deliveries to
//!   a client across the kill (from the last event delivered before it to
//!   the first after), the worst client's;
//! - the election: from the kill to the first stream info that names a new
//!   leader (asked every 20 ms on the surviving nodes);
//! - resumed after the election: from that answer to the end of the pause
//!   (the target: within 1 s).
//!
//! Then it restarts the node, waits until the cluster is whole and every
//! client has caught up, and goes on. At the end every client must have
//! every stored event exactly once, in `seq` order: 0 lost, 0 duplicated.
//!
//! `cargo bench --bench failover` (`just bench failover`): 10 kills. Without
//! `--bench` (as `cargo test --all-targets` runs it): 1 kill. With
//! `FAILOVER_GATEWAY_LOG=FILE` the gateway's log (warnings, UTC times) is
//! copied there at the end, to set beside each kill's time.

use switchboard_harness::bench;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::json;
use switchboard::channel::{Channel, Id};
use switchboard::log::{Log, StreamSettings};
use switchboard::token::Grant;
use switchboard_harness::{log_named, NatsCluster};
use tokio_tungstenite::tungstenite::Message;

/// The publisher's steady rate, events per second.
const RATE: f64 = 200.0;

/// WebSocket clients following the channel live.
const CLIENTS: usize = 4;

/// The target: live delivery resumes within this long of the new leader
/// answering.
const TARGET: Duration = Duration::from_secs(1);

/// How often the bench asks for the stream's leader after a kill, and how
/// long one such request may take.
const ELECTION_POLL: Duration = Duration::from_millis(20);
const ELECTION_REQUEST: Duration = Duration::from_secs(2);

/// How long delivery runs undisturbed before each kill (and after the
/// leader was moved), so the gap before the kill is the steady one.
const STEADY: Duration = Duration::from_secs(2);

fn main() {
    let kills = if bench::full() { 10 } else { 1 };
    bench::runtime().block_on(run(kills));
}

/// One client's live deliveries: when each arrived, and its `seq`.
type Timeline = Arc<Mutex<Vec<(Instant, u64)>>>;

/// One round's figures.
struct Round {
    killed: String,
    on_gateway_server: bool,
    pause: Duration,
    election: Duration,
    /// Resumed this long after the election's answer (negative: before it,
    /// when the consumer was elsewhere and the pause came from the
    /// publishes alone).
    after_election_ms: f64,
    /// The first ack after the kill came this long after the election.
    stored_after_election_ms: f64,
    /// The node was also the JetStream meta leader: creating a consumer
    /// waits for the meta group's own election too.
    meta_too: bool,
}

/// `to - from` in milliseconds, negative when `to` is earlier.
fn signed_ms(from: Instant, to: Instant) -> f64 {
    if to >= from {
        (to - from).as_secs_f64() * 1e3
    } else {
        -(from - to).as_secs_f64() * 1e3
    }
}

async fn run(kills: usize) {
    let mut cluster = tokio::task::block_in_place(NatsCluster::start_temp)
        .expect("a nats-server cluster starts (run `just tools`)");
    let gateway = bench::gateway_with(
        &cluster.urls(),
        "warn,switchboard::gateway::router=debug",
        &["--replicas", "3"],
    );
    let settings = StreamSettings {
        replicas: 3,
        ..StreamSettings::default()
    };
    let stream_name = settings.name.clone();
    let log = log_named(&cluster.urls(), "publisher", settings).await;
    let channel = Id::new_v4();

    // The clients, each recording its deliveries.
    let stop = tokio::sync::watch::channel(false);
    let mut timelines = Vec::new();
    let mut last_seqs = Vec::new();
    let mut readers = Vec::new();
    for _ in 0..CLIENTS {
        let token = bench::token(Id::new_v4(), Grant::Some(vec![channel]), &[]);
        let mut ws = bench::connect_gateway(&gateway.ws_url(&token), 64 * 1024).await;
        bench::subscribe_live(&mut ws, Channel::Chat(channel)).await;
        let timeline: Timeline = Arc::new(Mutex::new(Vec::new()));
        let last = Arc::new(AtomicU64::new(0));
        readers.push(tokio::spawn(read_live(ws, timeline.clone(), last.clone())));
        timelines.push(timeline);
        last_seqs.push(last);
    }

    // The publisher: every event is retried (same id, stored once) until
    // it is stored; its seq is kept.
    // When each event was stored, and its seq (the publisher's timeline).
    let stored: Timeline = Arc::new(Mutex::new(Vec::new()));
    let max_seq = Arc::new(AtomicU64::new(0));
    let publisher = tokio::spawn(publish(
        log.clone(),
        channel,
        stored.clone(),
        max_seq.clone(),
        stop.1.clone(),
    ));

    let caught_up = |at_least: u64| {
        let last_seqs = &last_seqs;
        async move {
            bench::wait_within("every client to catch up", bench::PATIENCE, || {
                std::future::ready(
                    last_seqs
                        .iter()
                        .all(|l| l.load(Ordering::SeqCst) >= at_least),
                )
            })
            .await
        }
    };

    let mut rounds = Vec::with_capacity(kills);
    for round in 0..kills {
        let holder = tokio::task::block_in_place(|| cluster.holder_of("switchboard"))
            .expect("the gateway's NATS connection shows in /connz");
        let on_gateway_server = round % 2 == 0;
        let target = if on_gateway_server {
            holder
        } else {
            (holder + 1) % 3
        };
        let target_name = cluster.name(target).to_string();
        lead_stream_on(&log, &stream_name, &target_name).await;
        tokio::time::sleep(STEADY).await;
        caught_up(max_seq.load(Ordering::SeqCst)).await;

        let meta_leader = tokio::task::block_in_place(|| cluster.meta_leader(target));
        let meta_too = meta_leader.as_deref() == Some(target_name.as_str());
        let killed_at = Instant::now();
        let killed_utc = chrono::Utc::now().format("%H:%M:%S%.3f");
        tokio::task::block_in_place(|| cluster.kill(target));
        let elected_at = election(&cluster.urls_except(target), &stream_name, &target_name).await;
        // Delivery resumed: every client has what was stored a while after
        // the election.
        tokio::time::sleep(STEADY).await;
        caught_up(max_seq.load(Ordering::SeqCst)).await;
        let settled_at = Instant::now();

        let (gap_start, gap_end) = timelines
            .iter()
            .filter_map(|t| {
                longest_gap(
                    &t.lock().unwrap_or_else(|e| e.into_inner()),
                    killed_at,
                    settled_at,
                )
            })
            .max_by_key(|(start, end)| *end - *start)
            .expect("deliveries around the kill");
        let mut acks = stored.lock().unwrap_or_else(|e| e.into_inner()).clone();
        acks.sort_unstable();
        let stored_again =
            longest_gap(&acks, killed_at, settled_at).map_or(elected_at, |(_, end)| end);
        let r = Round {
            killed: target_name.clone(),
            on_gateway_server,
            pause: gap_end - gap_start,
            election: elected_at - killed_at,
            after_election_ms: signed_ms(elected_at, gap_end),
            stored_after_election_ms: signed_ms(elected_at, stored_again),
            meta_too,
        };
        println!(
            "  kill {} (at {killed_utc}): {} ({}{}): pause {:.0} ms, election {:.0} ms, delivery resumed {:+.0} ms after it (stored again {:+.0} ms after it)",
            round + 1,
            r.killed,
            if r.on_gateway_server {
                "the gateway's server"
            } else {
                "another server"
            },
            if r.meta_too {
                ", the JetStream meta leader too"
            } else {
                ""
            },
            r.pause.as_secs_f64() * 1e3,
            r.election.as_secs_f64() * 1e3,
            r.after_election_ms,
            r.stored_after_election_ms,
        );
        rounds.push(r);

        tokio::task::block_in_place(|| cluster.restart(target)).expect("the node restarts");
    }

    // The end: the publisher stops, every client gets what was stored.
    stop.0.send_replace(true);
    let published = publisher.await.expect("publisher");
    caught_up(max_seq.load(Ordering::SeqCst)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    for reader in readers {
        reader.abort();
    }
    let mut want: Vec<u64> = stored
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .map(|(_, seq)| *seq)
        .collect();
    want.sort_unstable();
    want.dedup();
    let (mut lost, mut duplicated, mut disordered) = (0, 0, 0);
    for timeline in &timelines {
        let got: Vec<u64> = timeline
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(_, seq)| *seq)
            .collect();
        disordered += got.windows(2).filter(|w| w[1] <= w[0]).count();
        let mut unique = got.clone();
        unique.sort_unstable();
        unique.dedup();
        duplicated += got.len() - unique.len();
        lost += want
            .iter()
            .filter(|s| unique.binary_search(s).is_err())
            .count();
    }
    if let Some(path) = std::env::var_os("FAILOVER_GATEWAY_LOG") {
        let _ = std::fs::copy(gateway.log_path(), path);
    }
    let restarts = gateway
        .metric_sum("switchboard_router_consumer_restarts_total")
        .await;

    let millis = |d: Duration| d.as_nanos() as u64;
    let mut pauses: Vec<u64> = rounds.iter().map(|r| millis(r.pause)).collect();
    let mut elections: Vec<u64> = rounds.iter().map(|r| millis(r.election)).collect();
    let mut afters: Vec<f64> = rounds.iter().map(|r| r.after_election_ms).collect();
    pauses.sort_unstable();
    elections.sort_unstable();
    afters.sort_by(f64::total_cmp);
    let after_p = |p: f64| -> f64 {
        let rank = ((p / 100.0) * afters.len() as f64).ceil() as usize;
        afters[rank.clamp(1, afters.len()) - 1]
    };
    let worst_after = afters.last().copied().unwrap_or(0.0);
    println!(
        "failover ({} mode): 3-node cluster, R3 stream, {RATE} events/s, {CLIENTS} clients, {kills} leader kill(s), {published} events",
        bench::mode()
    );
    println!(
        "  pause in live delivery: p50 {:.0} ms, p99 {:.0} ms",
        bench::ms(bench::percentile(&pauses, 50.0)),
        bench::ms(bench::percentile(&pauses, 99.0)),
    );
    println!(
        "  election (kill to the new leader's answer): p50 {:.0} ms, p99 {:.0} ms",
        bench::ms(bench::percentile(&elections, 50.0)),
        bench::ms(bench::percentile(&elections, 99.0)),
    );
    println!(
        "  resumed after the election: p50 {:+.0} ms, p99 {:+.0} ms{}",
        after_p(50.0),
        after_p(99.0),
        bench::target_note(&format!("<= {} ms", TARGET.as_millis()))
    );
    let with_meta: Vec<String> = rounds
        .iter()
        .filter(|r| r.meta_too)
        .map(|r| format!("{:+.0} ms", r.after_election_ms))
        .collect();
    println!(
        "  kills that took the JetStream meta leader too: {} (resumed after the election: {})",
        with_meta.len(),
        if with_meta.is_empty() {
            "-".to_string()
        } else {
            with_meta.join(", ")
        }
    );
    println!(
        "  lost {lost}, duplicated {duplicated}, out of order {disordered} (over {CLIENTS} clients); router consumer restarts {}",
        restarts.map_or("?".to_string(), |r| format!("{r:.0}"))
    );
    bench::verdict(
        "failover",
        worst_after <= TARGET.as_secs_f64() * 1e3,
        &format!(
            "live delivery within {} ms of every election",
            TARGET.as_millis()
        ),
    );
    bench::print_json(
        "failover",
        json!({
            "kills": kills,
            "rate": RATE,
            "clients": CLIENTS,
            "events": published,
            "pause_p50_ms": bench::round1(bench::ms(bench::percentile(&pauses, 50.0))),
            "pause_p99_ms": bench::round1(bench::ms(bench::percentile(&pauses, 99.0))),
            "election_p50_ms": bench::round1(bench::ms(bench::percentile(&elections, 50.0))),
            "election_p99_ms": bench::round1(bench::ms(bench::percentile(&elections, 99.0))),
            "after_election_p50_ms": bench::round1(after_p(50.0)),
            "after_election_p99_ms": bench::round1(after_p(99.0)),
            "meta_leader_kills": with_meta.len(),
            "lost": lost,
            "duplicated": duplicated,
            "out_of_order": disordered,
            "target_ms": TARGET.as_millis() as u64,
        }),
    );
    assert_eq!(
        (lost, duplicated, disordered),
        (0, 0, 0),
        "every client gets every event once, in order"
    );
}

/// Records each live event's arrival (until the socket ends or the task
/// is aborted).
async fn read_live(mut ws: bench::Ws, timeline: Timeline, last: Arc<AtomicU64>) {
    while let Some(Ok(message)) = ws.next().await {
        let Message::Text(text) = message else {
            continue;
        };
        let Some(seq) = bench::frame_u64(&text, "\"seq\":") else {
            continue;
        };
        let at = Instant::now();
        timeline
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((at, seq));
        last.fetch_max(seq, Ordering::SeqCst);
    }
}

/// Stores chat messages at [`RATE`] until `stop`, each retried until it is
/// stored; waits for the last ones. Returns how many were stored.
async fn publish(
    log: Log,
    channel: Id,
    stored: Timeline,
    max_seq: Arc<AtomicU64>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> usize {
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut in_flight = futures::stream::FuturesUnordered::new();
    let mut sent = 0usize;
    loop {
        if *stop.borrow() {
            break;
        }
        let due = (started.elapsed().as_secs_f64() * RATE) as usize + 1;
        while sent < due {
            let event = bench::message(channel, bench::now_nanos().to_string());
            let log = log.clone();
            in_flight.push(async move {
                // The product's publisher: an attempt unanswered for
                // `PUBLISH_ATTEMPT_TIMEOUT` is sent again (the same id:
                // stored once), for up to 30 s.
                match log.store(&event).await {
                    Ok(s) => (s.seq, Instant::now()),
                    Err(e) => panic!("an event is stored across the failover: {e}"),
                }
            });
            sent += 1;
        }
        tokio::select! {
            Some((seq, at)) = in_flight.next(), if !in_flight.is_empty() => {
                stored.lock().unwrap_or_else(|e| e.into_inner()).push((at, seq));
                max_seq.fetch_max(seq, Ordering::SeqCst);
            }
            _ = tick.tick() => {}
            _ = stop.changed() => {}
        }
    }
    while let Some((seq, at)) = in_flight.next().await {
        stored
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((at, seq));
        max_seq.fetch_max(seq, Ordering::SeqCst);
    }
    sent
}

/// The longest gap between two consecutive deliveries that spans a moment
/// in `[from, to]`: `(last before, first after)`.
fn longest_gap(
    timeline: &[(Instant, u64)],
    from: Instant,
    to: Instant,
) -> Option<(Instant, Instant)> {
    timeline
        .windows(2)
        .map(|w| (w[0].0, w[1].0))
        .filter(|(start, end)| *end >= from && *start <= to)
        .max_by_key(|(start, end)| *end - *start)
}

/// When the stream's info first names a leader other than `dead`, asked on
/// `urls` (the surviving nodes) every [`ELECTION_POLL`].
async fn election(urls: &str, stream: &str, dead: &str) -> Instant {
    let servers: Vec<&str> = urls.split(',').collect();
    let client = async_nats::ConnectOptions::new()
        .name("election-watch")
        .connect(servers)
        .await
        .expect("NATS connects");
    let js = async_nats::jetstream::new(client);
    let deadline = Instant::now() + bench::PATIENCE;
    // A request every ELECTION_POLL, not one after the other: one sent
    // while nobody leads waits out its timeout, and the answer of the
    // first one sent after the election is what counts.
    let mut asking = futures::stream::FuturesUnordered::new();
    let mut poll = tokio::time::interval(ELECTION_POLL);
    loop {
        tokio::select! {
            _ = poll.tick() => {
                assert!(Instant::now() < deadline, "no new leader was elected");
                let js = js.clone();
                asking.push(async move {
                    tokio::time::timeout(ELECTION_REQUEST, async {
                        let stream = js.get_stream(stream).await.ok()?;
                        stream.cached_info().cluster.as_ref()?.leader.clone()
                    })
                    .await
                    .ok()
                    .flatten()
                });
            }
            Some(leader) = asking.next(), if !asking.is_empty() => {
                if leader.is_some_and(|l| !l.is_empty() && l != dead) {
                    return Instant::now();
                }
            }
        }
    }
}

/// Moves the stream's leadership to the node named `server` (a leader
/// stepdown with that node preferred) and waits until it is there.
async fn lead_stream_on(log: &Log, stream: &str, server: &str) {
    let js = async_nats::jetstream::new(log.client().clone());
    let leader = || async {
        let stream = js.get_stream(stream).await.ok()?;
        stream.cached_info().cluster.as_ref()?.leader.clone()
    };
    let deadline = Instant::now() + bench::PATIENCE;
    while leader().await.as_deref() != Some(server) {
        assert!(
            Instant::now() < deadline,
            "the stream's leader did not move to {server}"
        );
        let body = json!({"placement": {"preferred": server}}).to_string();
        let _ = log
            .client()
            .request(
                format!("$JS.API.STREAM.LEADER.STEPDOWN.{stream}"),
                body.into(),
            )
            .await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
