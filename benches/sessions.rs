//! Session writes under load (issue 12, "Sessions on any node": the
//! bucket's write rate with 5,000 connections at 2,000 events/s).
//!
//! One nats-server and one gateway (the real binary) per run. Every client
//! subscribes live to one of the channels; a publisher stores events
//! (`Log::store`) round-robin over the channels at a steady rate, keeping
//! every receipt. The clients answer the gateway's pings (which confirm
//! deliveries and so move session cursors) and half of them also `ack`
//! every second. After a warm-up, the measured period gives: session record
//! writes per second (the delta of `switchboard_session_writes_total`),
//! writes per connection per second against the flush interval, delivered
//! events per second, pings per connection per second, and the gateway's
//! CPU time (utime + stime from /proc) and resident memory. Then the
//! publisher stops and every client reads until it has its channel's last
//! `seq`; each must hold every receipt of its channel exactly once.
//!
//! Runs: the `kv` store with its default flush interval (2 s), the `kv`
//! store with `--session-flush-interval 5s` (1 s in the smoke run, whose
//! 3 s window is too short to say anything about a 5 s interval), and the
//! `sled` store with its default interval (500 ms) for comparison. The `kv` runs need
//! `serve --session-store`; until it exists they are skipped, and a store
//! without the counter prints `n/a`.
//!
//! `cargo bench --bench sessions`: 5,000 connections on 100 channels
//! (about 20 events/s each), 2,000 events/s, 5 s warm-up, 20 s measured;
//! prints the table and the bound. Without `--bench`: 50 connections on 10
//! channels, 200 events/s, 3 s measured; it asserts that every client got
//! every event of its channel, and, where the counter exists, that writes/s
//! stay within connections / flush interval x 1.5 (+ a small slack): at
//! most about one write per connection per interval.
//!
//! `SWITCHBOARD_BENCH_BIN=<path>` runs the same against another build of
//! `switchboard`. `SWITCHBOARD_SESSION_STORE` and
//! `SWITCHBOARD_SESSION_FLUSH_INTERVAL` are removed from the environment
//! the gateways inherit: each run sets what its label says.

#[path = "sessions/client.rs"]
mod client;
#[path = "sessions/outcome.rs"]
mod outcome;

use outcome::{print_table, Outcome};
use switchboard_harness::bench;

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use switchboard::channel::Id;
use switchboard::session::{KV_FLUSH_INTERVAL, SLED_FLUSH_INTERVAL};
use tokio::sync::{watch, Semaphore};

use bench::{round1, round3, thousands};
use client::{Shared, CONNECT_CONCURRENCY};

/// The counter the `kv` store adds (it counts every record written, to
/// either store).
const WRITES_METRIC: &str = "switchboard_session_writes_total";

/// The bound's allowance over one write per connection per interval.
const BOUND_FACTOR: f64 = 1.5;

/// Writes per second allowed on top of the bound (rounding, a stray
/// write from a subscribe or a retry).
const BOUND_SLACK: f64 = 2.0;

/// The sizes of one run.
struct Sizes {
    connections: usize,
    channels: usize,
    per_s: f64,
    warm_up: Duration,
    measured: Duration,
    /// The second `kv` run's flush interval.
    long_flush: Duration,
    /// How long after the publisher stops a client may take to get its
    /// channel's last event.
    settle: Duration,
}

impl Sizes {
    fn full() -> Sizes {
        Sizes {
            connections: 5_000,
            channels: 100,
            per_s: 2_000.0,
            warm_up: Duration::from_secs(5),
            measured: Duration::from_secs(20),
            long_flush: Duration::from_secs(5),
            settle: Duration::from_secs(60),
        }
    }

    fn smoke() -> Sizes {
        Sizes {
            connections: 50,
            channels: 10,
            per_s: 200.0,
            warm_up: Duration::from_secs(1),
            measured: Duration::from_secs(3),
            long_flush: Duration::from_secs(1),
            settle: Duration::from_secs(10),
        }
    }
}

/// One run's store and flush interval.
struct Variant {
    name: String,
    args: Vec<String>,
    flush: Duration,
    /// Whether the flush interval is the `kv` default, set, or fixed.
    flush_note: &'static str,
}

fn variants(sizes: &Sizes, kv: bool, flush_flag: bool) -> (Vec<Variant>, Vec<String>) {
    let mut runs = Vec::new();
    let mut skipped = Vec::new();
    if kv {
        runs.push(Variant {
            name: "kv".into(),
            args: vec!["--session-store".into(), "kv".into()],
            flush: KV_FLUSH_INTERVAL,
            flush_note: "default",
        });
        let long = humantime::format_duration(sizes.long_flush).to_string();
        if flush_flag {
            runs.push(Variant {
                name: format!("kv {long}"),
                args: vec![
                    "--session-store".into(),
                    "kv".into(),
                    "--session-flush-interval".into(),
                    long,
                ],
                flush: sizes.long_flush,
                flush_note: "set",
            });
        } else {
            skipped.push(format!(
                "kv {long}: `serve` does not accept --session-flush-interval yet"
            ));
        }
    } else {
        skipped.push("kv: `serve` does not accept --session-store yet".into());
    }
    runs.push(Variant {
        name: "sled".into(),
        args: if kv {
            vec!["--session-store".into(), "sled".into()]
        } else {
            Vec::new()
        },
        flush: SLED_FLUSH_INTERVAL,
        flush_note: "default",
    });
    (runs, skipped)
}

/// Settings the gateways would inherit from this process's environment
/// and that would make a run something other than its label.
const INHERITED: [&str; 2] = [
    "SWITCHBOARD_SESSION_STORE",
    "SWITCHBOARD_SESSION_FLUSH_INTERVAL",
];

fn main() {
    for name in INHERITED {
        if std::env::var_os(name).is_some() {
            println!("ignoring {name} (each run sets the store and interval it names)");
            // Still one thread: nothing reads the environment concurrently.
            std::env::remove_var(name);
        }
    }
    let full = bench::full();
    let sizes = if full { Sizes::full() } else { Sizes::smoke() };
    let limit = bench::raise_open_files_limit();
    let needed = sizes.connections as u64 + 512;
    if limit < needed {
        panic!(
            "the open-files limit is {limit}, too low for {} connections (need {needed}): \
             raise the hard limit first (`ulimit -Hn`)",
            sizes.connections
        );
    }
    let kv = bench::serve_accepts("--session-store");
    let flush_flag = bench::serve_accepts("--session-flush-interval");
    let (runs, skipped) = variants(&sizes, kv, flush_flag);
    println!(
        "sessions: {} connections on {} channels (~{} events/s each), {} events/s, \
         {:.0} s warm-up, {:.0} s measured; half the clients ack every {:.0} s [{} mode]",
        thousands(sizes.connections as f64),
        sizes.channels,
        round1(sizes.per_s / sizes.channels as f64),
        thousands(sizes.per_s),
        sizes.warm_up.as_secs_f64(),
        sizes.measured.as_secs_f64(),
        client::ACK_EVERY.as_secs_f64(),
        bench::mode()
    );
    let runtime = bench::runtime();
    let mut outcomes = Vec::new();
    for variant in &runs {
        let outcome = runtime.block_on(run(&sizes, variant));
        outcome.print_line();
        outcomes.push(outcome);
    }
    for line in &skipped {
        println!("  skipped: {line}");
    }
    print_table(&outcomes);
    bench::print_json(
        "sessions",
        json!({
            "connections": sizes.connections,
            "channels": sizes.channels,
            "events_per_s": sizes.per_s,
            "warm_up_s": sizes.warm_up.as_secs_f64(),
            "measured_s": sizes.measured.as_secs_f64(),
            "runs": outcomes.iter().map(Outcome::json).collect::<Vec<_>>(),
            "skipped": skipped,
        }),
    );
    if !full {
        for outcome in &outcomes {
            outcome.assert_clean();
        }
    }
}

// ---------------------------------------------------------------- a run

async fn run(sizes: &Sizes, variant: &Variant) -> Outcome {
    println!(
        "\n{}: flush interval {} ({})",
        variant.name,
        humantime::format_duration(variant.flush),
        variant.flush_note
    );
    let nats = bench::nats();
    let log = bench::log(&nats).await;
    let args: Vec<&str> = variant.args.iter().map(String::as_str).collect();
    let gateway = bench::gateway_with(&nats.url(), bench::BENCH_LOG, &args);
    let channels: Vec<Id> = (0..sizes.channels).map(|_| Id::new_v4()).collect();

    let (finish_tx, finish_rx) = watch::channel(None);
    let shared = Arc::new(Shared {
        connecting: Semaphore::new(CONNECT_CONCURRENCY),
        ready: AtomicUsize::new(0),
        delivered: AtomicU64::new(0),
        pings: AtomicU64::new(0),
        acks: AtomicU64::new(0),
        finish: finish_rx,
    });
    let url = format!("ws://{}/v1/ws", gateway.addr);
    let connecting = Instant::now();
    let clients: Vec<_> = (0..sizes.connections)
        .map(|i| {
            let index = i % sizes.channels;
            tokio::spawn(client::client(
                url.clone(),
                channels[index],
                index,
                i % 2 == 0,
                shared.clone(),
            ))
        })
        .collect();
    bench::wait_within("every client subscribed", bench::PATIENCE, || async {
        shared.ready.load(Ordering::Relaxed) == sizes.connections
    })
    .await;
    let connect_s = connecting.elapsed().as_secs_f64();
    println!("  connected and subscribed in {connect_s:.1} s");

    let acked = Arc::new(bench::Acked::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let publisher = tokio::spawn(bench::publish_receipts(
        log.clone(),
        channels.clone(),
        sizes.per_s,
        acked.clone(),
        stop_rx,
    ));
    tokio::time::sleep(sizes.warm_up).await;

    // The measured period: from the middle of one counter read to the
    // middle of the other.
    let asked = Instant::now();
    let writes_before = gateway.metric_sum(WRITES_METRIC).await;
    let from = asked + asked.elapsed() / 2;
    let delivered_before = shared.delivered.load(Ordering::Relaxed);
    let pings_before = shared.pings.load(Ordering::Relaxed);
    let acks_before = shared.acks.load(Ordering::Relaxed);
    let stored_before = acked.stored.load(Ordering::Relaxed);
    let cpu = bench::CpuMeter::start(&[
        ("gateway", gateway.pid()),
        ("nats-server", bench::nats_pid()),
    ]);
    let gateway_cpu_before = bench::cpu_seconds(gateway.pid());
    tokio::time::sleep_until((from + sizes.measured).into()).await;
    let asked = Instant::now();
    let writes_after = gateway.metric_sum(WRITES_METRIC).await;
    let measured = (asked + asked.elapsed() / 2).duration_since(from);
    let gateway_cpu = bench::cpu_seconds(gateway.pid()) - gateway_cpu_before;
    let cpu_line = cpu.line();
    let cpu_json = cpu.json();
    let delivered = shared.delivered.load(Ordering::Relaxed) - delivered_before;
    let pings = shared.pings.load(Ordering::Relaxed) - pings_before;
    let acks = shared.acks.load(Ordering::Relaxed) - acks_before;
    let stored = acked.stored.load(Ordering::Relaxed) - stored_before;
    let rss = gateway.rss_bytes();
    let hwm = gateway.peak_rss_bytes();
    println!("  {cpu_line}");

    // Every client reads until it has its channel's last event.
    let _ = stop_tx.send(true);
    let receipts = publisher.await.expect("publisher");
    let last: Vec<u64> = receipts
        .iter()
        .map(|list| list.last().map_or(0, |(seq, _)| *seq))
        .collect();
    let _ = finish_tx.send(Some((Arc::new(last), Instant::now() + sizes.settle)));
    let mut records = Vec::with_capacity(sizes.connections);
    for task in futures::future::join_all(clients).await {
        records.push(task.expect("client"));
    }
    let errors_logged = gateway.log_lines_with("ERROR");
    drop(gateway);
    drop(nats);

    let mut outcome = Outcome {
        name: variant.name.clone(),
        flush: variant.flush,
        flush_note: variant.flush_note,
        connections: sizes.connections,
        channels: sizes.channels,
        connect_s,
        measured,
        writes: writes_after.map(|after| after - writes_before.unwrap_or(0.0)),
        delivered,
        pings,
        acks,
        stored,
        gateway_cpu,
        cpu_json,
        rss,
        hwm,
        expected: 0,
        lost: 0,
        duplicates: 0,
        unexpected: 0,
        dropped: 0,
        late: 0,
        errors: 0,
        errors_logged,
        publish_failed: acked.failed.load(Ordering::Relaxed),
    };
    for (i, record) in records.iter().enumerate() {
        let expected: HashSet<u64> = receipts[i % sizes.channels]
            .iter()
            .map(|(seq, _)| *seq)
            .collect();
        let mut seen = HashSet::with_capacity(record.seqs.len());
        for &seq in &record.seqs {
            if !seen.insert(seq) {
                outcome.duplicates += 1;
            } else if !expected.contains(&seq) {
                outcome.unexpected += 1;
            }
        }
        outcome.expected += expected.len() as u64;
        outcome.lost += expected.iter().filter(|seq| !seen.contains(seq)).count() as u64;
        outcome.dropped += u64::from(record.dropped);
        outcome.late += u64::from(record.late);
        outcome.errors += u64::from(record.errors);
    }
    outcome
}
