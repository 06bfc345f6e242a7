//! Resume storm: a gateway dies and all its clients come back at once on
//! another one (issue 12, test 4 and its Bars).
//!
//! One nats-server, two gateways A and B (the real binary, each its own
//! data dir). A publisher stores events (`Log::store`) paced over the storm
//! channels for the whole run, keeping every receipt's `seq` per channel.
//! Storm clients sit on A, each subscribed to 2 channels; a control group
//! on B, subscribed to channels of its own, measures live delivery latency
//! (the publish time carried in `data.content` → receive) before and during
//! the storm. A is killed with SIGKILL; every storm client stays offline
//! for a while (counted from the kill), then all reconnect to B spread over
//! a second, resuming each subscription with `since_seq` = the last `seq`
//! it received there. Once every client is live again, a cut-off `seq` is
//! taken: each subscription must then hold every receipt of its channel up
//! to it, exactly once.
//!
//! A second run does the same with sessions (`?session=` on B, both
//! gateways `--session-store kv`), when `serve` knows that flag: there a
//! duplicate published within [`SESSION_DUPLICATE_BOUND`] of the kill is
//! allowed (a restored cursor may be a few seconds old), a loss never.
//!
//! `cargo bench --bench storm`: 2,000 clients x 2 of 200 channels, 1,000
//! events/s, 5 s offline, 100 control clients (`STORM_CLIENTS` and
//! `STORM_RATE` change the first two); prints the figures and the
//! issue's Bars with pass/fail. Without `--bench`: 20 clients x 2 of 10
//! channels, 100 events/s, 2 s offline; it asserts 0 lost and 0 duplicates
//! (and, with sessions, 0 lost and no duplicate beyond the bound), and
//! prints only the Bars that hold at any size (not the latency ones).
//!
//! The clients are light: one task each, a small read buffer, a bounded
//! number connecting at once. A refused connect, an `error` frame or a
//! close (1011 or any other) sends a client back to B after a back-off,
//! resuming from what it has; each is counted.
//!
//! Here: the sizes, the publisher and one run (start, kill, storm, cut-off,
//! tally); `storm/client.rs`: the storm and control clients;
//! `storm/outcome.rs`: the table, the Bars and the assertions.

#[path = "storm/client.rs"]
mod client;
use switchboard_harness::bench;
#[path = "storm/outcome.rs"]
mod outcome;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use switchboard::channel::Id;
use switchboard::token::Grant;
use tokio::sync::{watch, Semaphore};

use bench::{now_nanos, thousands, Acked};
use client::{control_client, storm_client, Shared, CONNECT_CONCURRENCY};
use outcome::Outcome;

/// With sessions, a duplicate is allowed when its event was published no
/// earlier than this before the kill: a restored cursor is at most the
/// flush interval (2 s by default) plus the ping confirmation (about 1 s)
/// old (docs/protocol.md, "Cursors").
const SESSION_DUPLICATE_BOUND: Duration = Duration::from_secs(5);

/// How often B's resident memory is sampled during the storm.
const RSS_EVERY: Duration = Duration::from_millis(100);

/// The consumer counter the lead adds to `/metrics`.
const CONSUMERS_METRIC: &str = "switchboard_log_consumers_created_total";

/// The sizes of one run.
struct Sizes {
    clients: usize,
    channels: usize,
    per_s: f64,
    control_clients: usize,
    control_channels: usize,
    control_per_s: f64,
    /// Publishing before the "before" window starts.
    warm_up: Duration,
    /// The control group's "before" window, right before the kill.
    before: Duration,
    /// From the kill to the first reconnect.
    offline: Duration,
    /// The reconnects are spread evenly over this.
    spread: Duration,
    /// How long after the first reconnect the storm may take before the
    /// cut-off is taken anyway (the stragglers then count as lost).
    storm_patience: Duration,
    /// How long after the cut-off a client may take to pass it.
    settle_patience: Duration,
}

impl Sizes {
    fn full() -> Sizes {
        Sizes {
            clients: clients_from_env().unwrap_or(2_000),
            channels: 200,
            per_s: rate_from_env().unwrap_or(1_000.0),
            control_clients: 100,
            control_channels: 10,
            control_per_s: 100.0,
            warm_up: Duration::from_secs(2),
            before: Duration::from_secs(5),
            offline: Duration::from_secs(5),
            spread: Duration::from_secs(1),
            storm_patience: Duration::from_secs(60),
            settle_patience: Duration::from_secs(30),
        }
    }

    fn smoke() -> Sizes {
        Sizes {
            clients: 20,
            channels: 10,
            per_s: 100.0,
            control_clients: 5,
            control_channels: 2,
            control_per_s: 20.0,
            warm_up: Duration::from_millis(500),
            before: Duration::from_millis(1_500),
            offline: Duration::from_secs(2),
            spread: Duration::from_millis(500),
            storm_patience: Duration::from_secs(20),
            settle_patience: Duration::from_secs(10),
        }
    }
}

/// `STORM_CLIENTS=<n>` sets the full run's storm clients (2,000 by
/// default; 15,000 is the large storm docs/performance.md records).
fn clients_from_env() -> Option<usize> {
    number_from_env("STORM_CLIENTS", |n| *n > 0, "a number of clients")
}

/// `STORM_RATE=<events/s>` sets the full run's publish rate over the storm
/// channels (1,000 by default): the live load the clients bring back, and
/// the gap they replay, both grow with it.
fn rate_from_env() -> Option<f64> {
    number_from_env("STORM_RATE", |n| *n >= 1.0, "events per second, at least 1")
}

/// The number in variable `name` (`_` and `,` between digits allowed), if
/// set; one that is not `valid` stops the bench, saying what was `expected`.
fn number_from_env<T: std::str::FromStr>(
    name: &str,
    valid: impl Fn(&T) -> bool,
    expected: &str,
) -> Option<T> {
    let value = std::env::var(name).ok()?;
    match value.replace(['_', ','], "").parse() {
        Ok(n) if valid(&n) => Some(n),
        _ => panic!("{name}={value}: expected {expected}"),
    }
}

/// How storm clients resume on B.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Resume {
    /// `subscribe` with `since_seq` = the last `seq` received.
    SinceSeq,
    /// `?session=` with the session id A gave; B restores the subscriptions.
    Session,
}

impl Resume {
    fn name(self) -> &'static str {
        match self {
            Resume::SinceSeq => "since_seq",
            Resume::Session => "session",
        }
    }
}

fn main() {
    let full = bench::full();
    let sizes = if full { Sizes::full() } else { Sizes::smoke() };
    let limit = bench::raise_open_files_limit();
    // One socket per client at a time (a storm client drops A's before it
    // dials B), plus the bench's NATS connections and files.
    let needed = (sizes.clients + sizes.control_clients) as u64 + 256;
    if limit < needed {
        panic!(
            "the open-files limit is {limit}, too low for {} connections (need {needed}): \
             raise the hard limit first (`ulimit -Hn`)",
            sizes.clients + sizes.control_clients
        );
    }
    let sessions = bench::serve_accepts("--session-store");
    // `STORM_ONLY=since_seq` or `STORM_ONLY=session` runs one of the two.
    let only = std::env::var("STORM_ONLY").unwrap_or_default();
    let runtime = bench::runtime();
    let mut outcomes = Vec::new();
    if only != "session" {
        let first = runtime.block_on(run(&sizes, Resume::SinceSeq));
        first.print(&sizes);
        outcomes.push(first);
    }
    if only == "since_seq" {
    } else if sessions {
        let second = runtime.block_on(run(&sizes, Resume::Session));
        second.print(&sizes);
        outcomes.push(second);
    } else {
        println!(
            "\nsession run: skipped (`switchboard serve` does not accept --session-store yet)"
        );
    }
    bench::print_json(
        "storm",
        json!({
            "clients": sizes.clients,
            "channels_per_client": 2,
            "channels": sizes.channels,
            "events_per_s": sizes.per_s,
            "offline_s": sizes.offline.as_secs_f64(),
            "spread_s": sizes.spread.as_secs_f64(),
            "control_clients": sizes.control_clients,
            "runs": outcomes.iter().map(Outcome::json).collect::<Vec<_>>(),
            "session_run_skipped": !sessions,
        }),
    );
    if !full {
        for outcome in &outcomes {
            outcome.assert_clean();
        }
    }
}

// ---------------------------------------------------------------- a run

async fn run(sizes: &Sizes, resume: Resume) -> Outcome {
    println!(
        "\nstorm ({}): {} clients x 2 of {} channels on A, {} events/s, A killed (SIGKILL), {:.1} s offline, back on B within {:.1} s; {} control clients on B [{} mode]",
        resume.name(),
        thousands(sizes.clients as f64),
        sizes.channels,
        thousands(sizes.per_s),
        sizes.offline.as_secs_f64(),
        sizes.spread.as_secs_f64(),
        sizes.control_clients,
        bench::mode()
    );
    let nats = bench::nats();
    let log = bench::log(&nats).await;
    let extra: &[&str] = match resume {
        Resume::SinceSeq => &[],
        Resume::Session => &["--session-store", "kv"],
    };
    let mut a = bench::gateway_with(&nats.url(), bench::BENCH_LOG, extra);
    let b = bench::gateway_with(&nats.url(), bench::BENCH_LOG, extra);
    let channels: Vec<Id> = (0..sizes.channels).map(|_| Id::new_v4()).collect();
    let control_channels: Vec<Id> = (0..sizes.control_channels).map(|_| Id::new_v4()).collect();

    let (kill_tx, kill_rx) = watch::channel(None);
    let (cutoff_tx, cutoff_rx) = watch::channel(None);
    let shared = Arc::new(Shared {
        b_addr: b.addr,
        resume,
        connecting: Semaphore::new(CONNECT_CONCURRENCY),
        ready: AtomicUsize::new(0),
        live: AtomicUsize::new(0),
        killed: kill_rx,
        cutoff: cutoff_rx,
        sizes_offline: sizes.offline,
        sizes_spread: sizes.spread,
        clients: sizes.clients,
    });

    // Everyone connects and subscribes before the first event.
    let a_url = format!("ws://{}/v1/ws", a.addr);
    let storm: Vec<_> = (0..sizes.clients)
        .map(|i| {
            let [first, second] = bench::pair(i, sizes.channels);
            tokio::spawn(storm_client(
                i,
                a_url.clone(),
                [channels[first], channels[second]],
                Id::new_v4(),
                shared.clone(),
            ))
        })
        .collect();
    let (stop_tx, stop_rx) = watch::channel(false);
    let control_ready = Arc::new(AtomicUsize::new(0));
    let control: Vec<_> = (0..sizes.control_clients)
        .map(|i| {
            let channel = control_channels[i % control_channels.len()];
            let token = bench::token(Id::new_v4(), Grant::Some(vec![channel]), &[]);
            tokio::spawn(control_client(
                b.ws_url(&token),
                channel,
                control_ready.clone(),
                stop_rx.clone(),
            ))
        })
        .collect();
    let connecting = Instant::now();
    wait_for(
        || {
            shared.ready.load(Ordering::Relaxed) == sizes.clients
                && control_ready.load(Ordering::Relaxed) == sizes.control_clients
        },
        bench::PATIENCE,
        "every client subscribed",
    )
    .await;
    println!(
        "  connected and subscribed in {:.1} s",
        connecting.elapsed().as_secs_f64()
    );

    let acked = Arc::new(Acked::default());
    let publisher = tokio::spawn(bench::publish_receipts(
        log.clone(),
        channels.clone(),
        sizes.per_s,
        acked.clone(),
        stop_rx.clone(),
    ));
    let control_publisher = tokio::spawn(bench::publish_receipts(
        log.clone(),
        control_channels.clone(),
        sizes.control_per_s,
        Arc::new(Acked::default()),
        stop_rx.clone(),
    ));
    tokio::time::sleep(sizes.warm_up).await;
    let before_from = now_nanos();
    tokio::time::sleep(sizes.before).await;

    // The kill.
    let consumers_before = b.metric_sum(CONSUMERS_METRIC).await;
    let b_rss_before = b.rss_bytes();
    let killed_at = now_nanos();
    a.kill9();
    let _ = kill_tx.send(Some(killed_at));
    let reconnect_from = killed_at + sizes.offline.as_nanos() as u64;
    let storm_from = Instant::now() + sizes.offline;

    // The storm: until every subscription is live again (or out of time),
    // sampling B's memory.
    let mut b_rss_peak = b_rss_before;
    let target = sizes.clients * 2;
    let give_up = storm_from + sizes.storm_patience;
    let mut gap_events = 0;
    let mut gap_taken = false;
    let nats_pid = bench::nats_pid();
    let mut cpu_from = None;
    while shared.live.load(Ordering::Relaxed) < target && Instant::now() < give_up {
        tokio::time::sleep(RSS_EVERY).await;
        b_rss_peak = b_rss_peak.max(b.rss_bytes());
        if !gap_taken && Instant::now() >= storm_from {
            gap_taken = true;
            gap_events = acked.max_seq.load(Ordering::Relaxed);
            cpu_from = Some(Cpu::now(b.pid(), nats_pid));
        }
    }
    let cpu = cpu_from.map(|from| Cpu::now(b.pid(), nats_pid).since(&from));
    let all_live = shared.live.load(Ordering::Relaxed) >= target;
    let storm_s = storm_from.elapsed().as_secs_f64();
    let during_to = now_nanos();
    let window_events = b.metric_sum("switchboard_window_events").await;
    let window_bytes = b.metric_sum("switchboard_window_bytes").await;
    println!(
        "  storm: {} of {target} subscriptions live again {:.2} s after the first reconnect",
        shared.live.load(Ordering::Relaxed),
        storm_s
    );

    // The cut-off: every subscription must hold its channel's receipts up
    // to it. Acks still in flight below it arrive before the publisher
    // stops; the clients read until they pass it.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let cutoff = acked.max_seq.load(Ordering::Relaxed);
    let _ = cutoff_tx.send(Some((cutoff, Instant::now() + sizes.settle_patience)));
    let mut records = Vec::with_capacity(sizes.clients);
    for task in futures::future::join_all(storm).await {
        records.push(task.expect("storm client"));
    }
    let consumers_after = b.metric_sum(CONSUMERS_METRIC).await;
    let b_hwm = b.peak_rss_bytes();
    let _ = stop_tx.send(true);
    let receipts = publisher.await.expect("publisher");
    control_publisher.await.expect("control publisher");
    let mut controls = Vec::with_capacity(sizes.control_clients);
    for task in futures::future::join_all(control).await {
        controls.push(task.expect("control client"));
    }
    let consumer_limit_lines = b.log_lines_with("10026");
    let publish_failed = acked.failed.load(Ordering::Relaxed);
    drop(b);
    drop(a);
    drop(nats);

    // Lost and duplicate events per subscription.
    let sent_at: HashMap<u64, u64> = receipts.iter().flatten().copied().collect();
    let bound_from = killed_at.saturating_sub(SESSION_DUPLICATE_BOUND.as_nanos() as u64);
    let mut outcome = Outcome {
        resume,
        subscriptions: target,
        replayed: Vec::new(),
        never_replayed: 0,
        hello: Vec::new(),
        turn: Vec::new(),
        upgraded: Vec::new(),
        lost: 0,
        duplicates: 0,
        duplicates_beyond_bound: 0,
        subscriptions_with_loss: 0,
        unexpected: 0,
        cutoff,
        expected: 0,
        attempts: 0,
        refused: 0,
        errors: 0,
        closes_1011: 0,
        dropped: 0,
        not_hello_first: 0,
        incomplete: 0,
        not_resumed: 0,
        publish_failed,
        b_rss_before,
        b_rss_peak,
        b_hwm,
        consumers: consumers_before.zip(consumers_after).map(|(b, a)| a - b),
        consumer_limit_lines,
        window_events,
        window_bytes,
        gap_events: 0,
        control_before: Vec::new(),
        control_during: Vec::new(),
        control_errors: 0,
        control_closes: 0,
        storm_s,
        all_live,
        cpu,
    };
    let mut oldest_resume = u64::MAX;
    for (i, record) in records.iter().enumerate() {
        for (k, channel) in bench::pair(i, sizes.channels).into_iter().enumerate() {
            let expected: Vec<u64> = receipts[channel]
                .iter()
                .map(|(seq, _)| *seq)
                .take_while(|seq| *seq <= cutoff)
                .collect();
            let got = &record.seqs[k];
            let mut seen = HashSet::with_capacity(got.len());
            for &seq in got {
                if !seen.insert(seq) {
                    outcome.duplicates += 1;
                    if sent_at.get(&seq).is_some_and(|at| *at < bound_from) {
                        outcome.duplicates_beyond_bound += 1;
                    }
                }
            }
            let lost = expected.iter().filter(|seq| !seen.contains(seq)).count() as u64;
            let known: HashSet<u64> = receipts[channel].iter().map(|(seq, _)| *seq).collect();
            outcome.unexpected += seen
                .iter()
                .filter(|seq| **seq <= cutoff && !known.contains(seq))
                .count() as u64;
            outcome.expected += expected.len() as u64;
            outcome.lost += lost;
            if lost > 0 {
                outcome.subscriptions_with_loss += 1;
            }
            match record.to_replayed[k] {
                Some(d) => outcome.replayed.push(d.as_nanos() as u64),
                None => outcome.never_replayed += 1,
            }
            oldest_resume = oldest_resume.min(record.resumed_from[k]);
        }
        if let Some(d) = record.to_hello {
            outcome.hello.push(d.as_nanos() as u64);
        }
        if let Some(d) = record.to_turn {
            outcome.turn.push(d.as_nanos() as u64);
        }
        if let Some(d) = record.to_upgraded {
            outcome.upgraded.push(d.as_nanos() as u64);
        }
        outcome.attempts += u64::from(record.attempts);
        outcome.refused += u64::from(record.refused);
        outcome.errors += u64::from(record.errors);
        outcome.closes_1011 += u64::from(record.closes_1011);
        outcome.dropped += u64::from(record.dropped);
        outcome.not_hello_first += u64::from(record.not_hello_first);
        outcome.incomplete += u64::from(record.incomplete);
        outcome.not_resumed += u64::from(record.not_resumed);
    }
    outcome.gap_events = gap_events.saturating_sub(oldest_resume.min(gap_events));
    outcome.replayed.sort_unstable();
    outcome.hello.sort_unstable();
    outcome.turn.sort_unstable();
    outcome.upgraded.sort_unstable();
    for record in controls {
        outcome.control_errors += u64::from(record.errors);
        outcome.control_closes += u64::from(record.closes);
        for (at, latency) in record.samples {
            if (before_from..killed_at).contains(&at) {
                outcome.control_before.push(latency);
            } else if (reconnect_from..during_to).contains(&at) {
                outcome.control_during.push(latency);
            }
        }
    }
    outcome.control_before.sort_unstable();
    outcome.control_during.sort_unstable();
    outcome
}

/// CPU seconds used so far by B, this process (the load tool: clients and
/// publisher) and nats-server, and the wall clock.
#[derive(Clone, Copy)]
pub struct Cpu {
    pub b: f64,
    pub bench: f64,
    pub nats: f64,
    pub wall: f64,
}

impl Cpu {
    fn now(b_pid: u32, nats_pid: u32) -> Cpu {
        Cpu {
            b: bench::cpu_seconds(b_pid),
            bench: bench::cpu_seconds(std::process::id()),
            nats: bench::cpu_seconds(nats_pid),
            wall: now_nanos() as f64 / 1e9,
        }
    }

    fn since(&self, from: &Cpu) -> Cpu {
        Cpu {
            b: self.b - from.b,
            bench: self.bench - from.bench,
            nats: self.nats - from.nats,
            wall: self.wall - from.wall,
        }
    }
}

/// Polls `done` every 20 ms until it holds; panics after `patience`.
async fn wait_for(done: impl Fn() -> bool, patience: Duration, what: &str) {
    let until = Instant::now() + patience;
    while !done() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
