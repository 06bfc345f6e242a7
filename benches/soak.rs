//! Soak: an hour under churn (issue 26). On the harness's three-node
//! cluster (an R3 stream), two gateways (`--replicas 3`, sessions in the
//! replicated bucket) serve 2,000 clients, each following 2 of 100
//! channels, spread over both (a client's home is one of them; while it is
//! down the client goes to the other). A publisher stores 200 events/s
//! round-robin over the channels (an attempt unanswered for 500 ms is sent
//! again with the same id, so it is stored once). A third of the clients
//! resume with `since_seq`, a third with `?session=` acking what they got
//! every 500 ms, a third with `?session=` never acking. Meanwhile:
//!
//! - churn: 3 clients a second, at random, drop by a TCP reset (SO_LINGER
//!   0) and come back within a second, resuming;
//! - every 5 minutes a storm: 300 clients drop at once, all back within 1 s;
//! - every 10 minutes a NATS node (in turn) is SIGKILLed, and restarted
//!   5 s later (the run waits until the cluster is whole again);
//! - every 15 minutes a gateway (in turn) is SIGKILLed and restarted 3 s
//!   later on its data directory; its clients resume on the other one
//!   (or on it, once it is back), and 5 s after it is back its own clients
//!   on the other one are sent home (dropped by a reset, back within a
//!   second).
//!
//! Every client checks every event of its channels by `seq`, across all
//! its connections (`soak/client.rs`): 0 lost and 0 duplicated is asserted
//! at the end, once the publisher has stopped and every client has the
//! last event of its channels. Every second the run samples each gateway's
//! RSS (`VmRSS`), open files (`/proc/PID/fd`) and connections, the events
//! delivered and the live p99 (`soak/figures.rs`). The summary gives, after
//! a warm-up from each gateway process's start, least-squares slopes of
//! RSS (KiB/min) and of open files beside connections (fds/min), pooled
//! over the process lives (each with its own level). The chart
//! (`soak/chart.rs`) goes to `<target>/soak/soak.png`, the samples to
//! `<target>/soak/soak.csv`.
//!
//! `cargo bench --bench soak` (`just bench soak`): one hour, or `SOAK_SECS`
//! seconds. Without `--bench` (as `cargo test --all-targets` runs it): 60
//! s (or `SOAK_SECS`), 100 clients on 10 channels, 100 events/s, every
//! fault at compressed intervals (storms every 15 s, a NATS restart every
//! 25 s, a gateway kill every 35 s), a warm-up of 10 s.

#[path = "soak/chart.rs"]
mod chart;
#[path = "soak/client.rs"]
mod client;
#[path = "soak/figures.rs"]
mod figures;
#[path = "plot/font.rs"]
mod font;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::json;
use switchboard::channel::Id;
use switchboard::log::{Log, StreamSettings};
use switchboard_harness::bench::{self, Gateway};
use switchboard_harness::{log_named, NatsCluster};
use tokio::sync::{watch, Semaphore};

use client::{Control, Gateways, Kind, Record, Shared, CONNECT_CONCURRENCY};
use figures::{Fault, Mark, Probe, Sample};

/// How long a publish attempt waits for its ack before the event is sent
/// again (the same id: stored once).
const PUBLISH_ATTEMPT: Duration = Duration::from_millis(500);

/// How long an event may take to be stored, over all its attempts, before
/// the publisher gives it up (counted; an event given up may still have
/// been stored, and would show as unexpected).
const PUBLISH_PATIENCE: Duration = Duration::from_secs(120);

/// After a gateway is back, how long before its own clients are sent home.
const HOME_AFTER: Duration = Duration::from_secs(5);

/// How long the clients may take, once the publisher stopped, to have the
/// last event of each of their channels.
const END_PATIENCE: Duration = Duration::from_secs(120);

/// The gateways' `serve` arguments.
const SERVE: &[&str] = &["--replicas", "3", "--session-store", "kv"];

/// The sizes of a run.
struct Sizes {
    clients: usize,
    channels: usize,
    per_s: f64,
    duration: Duration,
    warm_up: Duration,
    churn_per_s: f64,
    storm_every: Duration,
    storm_clients: usize,
    nats_every: Duration,
    nats_down: Duration,
    gateway_every: Duration,
    gateway_down: Duration,
}

impl Sizes {
    fn full() -> Sizes {
        Sizes {
            clients: 2_000,
            channels: 100,
            per_s: 200.0,
            duration: secs_or(3_600),
            warm_up: Duration::from_secs(300),
            churn_per_s: 3.0,
            storm_every: Duration::from_secs(300),
            storm_clients: 300,
            nats_every: Duration::from_secs(600),
            nats_down: Duration::from_secs(5),
            gateway_every: Duration::from_secs(900),
            gateway_down: Duration::from_secs(3),
        }
    }

    fn smoke() -> Sizes {
        Sizes {
            clients: 100,
            channels: 10,
            per_s: 100.0,
            duration: secs_or(60),
            warm_up: Duration::from_secs(10),
            churn_per_s: 2.0,
            storm_every: Duration::from_secs(15),
            storm_clients: 30,
            nats_every: Duration::from_secs(25),
            nats_down: Duration::from_secs(2),
            gateway_every: Duration::from_secs(35),
            gateway_down: Duration::from_secs(2),
        }
    }

    /// The faults, in time order: `(seconds from the start, fault, its
    /// number of that kind)`.
    fn schedule(&self) -> Vec<(Duration, Fault, usize)> {
        let mut out = Vec::new();
        for (every, fault) in [
            (self.storm_every, Fault::Storm),
            (self.nats_every, Fault::NatsRestart),
            (self.gateway_every, Fault::GatewayKill),
        ] {
            let mut k: u32 = 1;
            while every * k < self.duration {
                out.push((every * k, fault, k as usize - 1));
                k += 1;
            }
        }
        out.sort_by_key(|(at, fault, _)| (*at, *fault as u8));
        out
    }
}

/// `SOAK_SECS` when set (a whole number of seconds), else `default`.
fn secs_or(default: u64) -> Duration {
    let secs = std::env::var("SOAK_SECS")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(default);
    Duration::from_secs(secs)
}

fn main() {
    let sizes = if bench::full() {
        Sizes::full()
    } else {
        Sizes::smoke()
    };
    let limit = bench::raise_open_files_limit();
    let needed = sizes.clients as u64 * 2 + 512;
    assert!(
        limit >= needed,
        "the open-files limit is {limit}, too low for {} clients (need {needed}): raise the hard limit first (`ulimit -Hn`)",
        sizes.clients
    );
    bench::runtime().block_on(run(&sizes));
}

/// The gateway processes: owned by the run, restarted by the faults.
struct Nodes {
    cluster: NatsCluster,
    gateways: [Gateway; 2],
}

async fn run(sizes: &Sizes) {
    let load_before = figures::load_average();
    println!(
        "soak ({} mode): 3 nats-servers (R3 stream), 2 gateways ({}), {} clients x 2 of {} channels, {} events/s, {:.0} s; churn {}/s, a storm of {} every {} s, a NATS node restarted every {} s, a gateway killed every {} s; load average {load_before:.2}",
        bench::mode(),
        SERVE.join(" "),
        bench::thousands(sizes.clients as f64),
        sizes.channels,
        sizes.per_s,
        sizes.duration.as_secs_f64(),
        sizes.churn_per_s,
        sizes.storm_clients,
        sizes.storm_every.as_secs(),
        sizes.nats_every.as_secs(),
        sizes.gateway_every.as_secs(),
    );
    let cluster = tokio::task::block_in_place(NatsCluster::start_temp)
        .expect("a nats-server cluster starts (run `just tools`)");
    let urls = cluster.urls();
    let gateways = [
        bench::gateway_with(&urls, bench::BENCH_LOG, SERVE),
        bench::gateway_with(&urls, bench::BENCH_LOG, SERVE),
    ];
    let settings = StreamSettings {
        replicas: 3,
        ..StreamSettings::default()
    };
    let log = log_named(&urls, "soak-publisher", settings).await;
    let channels: Vec<Id> = (0..sizes.channels).map(|_| Id::new_v4()).collect();

    let (end_tx, end_rx) = watch::channel(None);
    let shared = Arc::new(Shared {
        gateways: Gateways {
            addrs: Mutex::new([gateways[0].addr, gateways[1].addr]),
            up: [AtomicBool::new(true), AtomicBool::new(true)],
        },
        connecting: Semaphore::new(CONNECT_CONCURRENCY),
        ready: AtomicUsize::new(0),
        delivered: AtomicU64::new(0),
        latencies: Mutex::new(Vec::new()),
        last_stored: end_rx,
    });
    let probe = Arc::new(Probe {
        pids: [
            AtomicU32::new(gateways[0].pid()),
            AtomicU32::new(gateways[1].pid()),
        ],
        shared: shared.clone(),
    });
    let mut nodes = Nodes { cluster, gateways };

    // The clients: all subscribed before the first event.
    let controls: Vec<Arc<Control>> = (0..sizes.clients)
        .map(|_| Arc::new(Control::default()))
        .collect();
    let connecting = Instant::now();
    let tasks: Vec<_> = (0..sizes.clients)
        .map(|i| {
            let pair = bench::pair(i, sizes.channels);
            tokio::spawn(client::client(
                i,
                pair.map(|c| channels[c]),
                pair,
                shared.clone(),
                controls[i].clone(),
            ))
        })
        .collect();
    bench::wait_within("every client subscribed", bench::PATIENCE, || {
        std::future::ready(shared.ready.load(Ordering::Relaxed) == sizes.clients)
    })
    .await;
    println!(
        "  {} clients connected and subscribed in {:.1} s",
        sizes.clients,
        connecting.elapsed().as_secs_f64()
    );

    // The publisher, the sampler, the churn; then the faults on schedule.
    let started = Instant::now();
    let (stop_tx, stop_rx) = watch::channel(false);
    let stored = Arc::new(Stored::new(sizes.channels));
    let publisher = tokio::spawn(publish(
        log.clone(),
        channels.clone(),
        sizes.per_s,
        stored.clone(),
        stop_rx.clone(),
    ));
    let samples = Arc::new(Mutex::new(Vec::<Sample>::new()));
    let (sampler_stop, sampler_rx) = watch::channel(false);
    let sampler = tokio::spawn(figures::sample(
        started,
        probe.clone(),
        samples.clone(),
        sampler_rx,
    ));
    let churn = tokio::spawn(churn(controls.clone(), sizes.churn_per_s, stop_rx.clone()));
    let mut marks: Vec<Mark> = Vec::new();
    for (at, fault, k) in sizes.schedule() {
        tokio::time::sleep_until((started + at).into()).await;
        let t = started.elapsed().as_secs_f64();
        match fault {
            Fault::Storm => {
                let dropped = drop_some(&controls, sizes.storm_clients);
                println!("  {:>6.1} s: storm, {dropped} clients dropped", t);
                marks.push(Mark {
                    t,
                    kind: fault,
                    label: "storm".into(),
                });
            }
            Fault::NatsRestart => {
                let node = k % 3;
                let name = nodes.cluster.name(node).to_string();
                tokio::task::block_in_place(|| nodes.cluster.kill(node));
                marks.push(Mark {
                    t,
                    kind: fault,
                    label: format!("NATS {name}"),
                });
                tokio::time::sleep(sizes.nats_down).await;
                let restarting = Instant::now();
                tokio::task::block_in_place(|| nodes.cluster.restart(node))
                    .expect("the NATS node restarts");
                println!(
                    "  {:>6.1} s: NATS node {name} killed; restarted {:.0} s later, the cluster whole {:.1} s after that",
                    t,
                    sizes.nats_down.as_secs_f64(),
                    restarting.elapsed().as_secs_f64()
                );
            }
            Fault::GatewayKill => {
                let g = k % 2;
                shared.gateways.up[g].store(false, Ordering::Relaxed);
                let gateway = &mut nodes.gateways[g];
                tokio::task::block_in_place(|| gateway.kill9());
                marks.push(Mark {
                    t,
                    kind: fault,
                    label: format!("kill gateway {g}"),
                });
                tokio::time::sleep(sizes.gateway_down).await;
                let restarting = Instant::now();
                tokio::task::block_in_place(|| gateway.restart());
                shared
                    .gateways
                    .addrs
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())[g] = gateway.addr;
                probe.pids[g].store(gateway.pid(), Ordering::Relaxed);
                shared.gateways.up[g].store(true, Ordering::Relaxed);
                let back_in = restarting.elapsed().as_secs_f64();
                tokio::time::sleep(HOME_AFTER).await;
                let home = send_home(&controls, g);
                println!(
                    "  {:>6.1} s: gateway {g} killed; restarted {:.0} s later, listening {back_in:.1} s after that; {home} of its clients sent home {} s later",
                    t,
                    sizes.gateway_down.as_secs_f64(),
                    HOME_AFTER.as_secs()
                );
            }
        }
    }
    tokio::time::sleep_until((started + sizes.duration).into()).await;

    // The end: no more churn or events; every client must reach the last
    // event of its channels.
    stop_tx.send_replace(true);
    churn.await.expect("churn");
    let publisher = publisher.await.expect("publisher");
    let last: Vec<u64> = stored
        .seqs
        .iter()
        .map(|s| {
            s.lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .copied()
                .max()
                .unwrap_or(0)
        })
        .collect();
    let ending = Instant::now();
    end_tx.send_replace(Some((Arc::new(last), ending + END_PATIENCE)));
    let mut records: Vec<Record> = Vec::with_capacity(sizes.clients);
    for task in futures::future::join_all(tasks).await {
        records.push(task.expect("client"));
    }
    let end_s = ending.elapsed().as_secs_f64();
    sampler_stop.send_replace(true);
    sampler.await.expect("sampler");
    let restarts = [
        nodes.gateways[0]
            .metric_sum("switchboard_router_consumer_restarts_total")
            .await,
        nodes.gateways[1]
            .metric_sum("switchboard_router_consumer_restarts_total")
            .await,
    ];
    drop(nodes);
    let load_after = figures::load_average();

    // The tally.
    let counts: Vec<u64> = stored
        .seqs
        .iter()
        .map(|s| {
            let mut seqs = s.lock().unwrap_or_else(|e| e.into_inner()).clone();
            seqs.sort_unstable();
            seqs.dedup();
            seqs.len() as u64
        })
        .collect();
    let stored_events: u64 = counts.iter().sum();
    let (mut lost, mut unexpected) = (0u64, 0u64);
    let mut by_kind: HashMap<&'static str, [u64; 2]> = HashMap::new();
    for (i, r) in records.iter().enumerate() {
        for k in 0..2 {
            let want = counts[r.channels[k]];
            lost += want.saturating_sub(r.accepted[k]);
            unexpected += r.accepted[k].saturating_sub(want);
        }
        let entry = by_kind.entry(kind_name(Kind::of(i))).or_default();
        entry[0] += r.redelivered;
        entry[1] += r.connections;
    }
    let sum = |f: fn(&Record) -> u64| records.iter().map(f).sum::<u64>();
    let duplicated = sum(|r| r.duplicated);
    let unfinished = records.iter().filter(|r| !r.finished).count();
    let samples = samples.lock().unwrap_or_else(|e| e.into_inner()).clone();

    println!(
        "  end: the clients had every event {end_s:.1} s after the publisher stopped; {} of {} events stored ({} attempts sent again, {} given up)",
        bench::thousands(stored_events as f64),
        bench::thousands(publisher.sent as f64),
        bench::thousands(publisher.retries as f64),
        publisher.given_up,
    );
    println!(
        "  lost {lost}, duplicated {duplicated}, unexpected {unexpected}, clients without their last events {unfinished}"
    );
    for kind in [Kind::SinceSeq, Kind::SessionAcking, Kind::Session] {
        let [redelivered, connections] = by_kind.get(kind_name(kind)).copied().unwrap_or_default();
        println!(
            "  {}: {} connections, {} events redelivered after a resume (dropped by seq)",
            kind_name(kind),
            bench::thousands(connections as f64),
            bench::thousands(redelivered as f64)
        );
    }
    println!(
        "  connects failed {}, drops asked {}, connections ended by the gateway or network {}, error frames {}, session subscriptions not restored {}, incomplete subscriptions {}; router consumer restarts {}",
        sum(|r| r.failed_connects),
        sum(|r| r.dropped),
        sum(|r| r.ended),
        sum(|r| r.errors),
        sum(|r| r.not_restored),
        sum(|r| r.incomplete),
        restarts
            .iter()
            .map(|r| r.map_or("?".to_string(), |r| format!("{r:.0}")))
            .collect::<Vec<_>>()
            .join(" + "),
    );
    let summary = summarize(sizes, &samples);
    summary.print();
    println!("  load average {load_before:.2} before, {load_after:.2} after");

    let dir = bench::report_dir("soak");
    let png = dir.join("soak.png");
    let csv = dir.join("soak.csv");
    std::fs::create_dir_all(&dir)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    std::fs::write(&csv, csv_text(&samples, &marks))
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", csv.display()));
    let text = match font::load_font() {
        Ok(path) => {
            println!("  chart: {} (font {})", png.display(), path.display());
            true
        }
        Err(tried) => {
            println!(
                "  chart: {} WITHOUT any text: no TrueType font found (tried {tried}); install one \
                 (Debian: apt-get install fonts-dejavu-core) or set SWITCHBOARD_BENCH_FONT to a .ttf",
                png.display()
            );
            false
        }
    };
    chart::draw(&png, &samples, &marks, text)
        .unwrap_or_else(|e| panic!("cannot draw {}: {e}", png.display()));
    println!("  samples: {}", csv.display());
    bench::print_json(
        "soak",
        json!({
            "seconds": sizes.duration.as_secs(),
            "clients": sizes.clients,
            "channels": sizes.channels,
            "events_per_s": sizes.per_s,
            "events": stored_events,
            "faults": marks.iter().map(|m| json!({"t": bench::round1(m.t), "fault": m.kind.name(), "label": m.label})).collect::<Vec<_>>(),
            "lost": lost,
            "duplicated": duplicated,
            "unexpected": unexpected,
            "unfinished": unfinished,
            "summary": summary.json(),
            "load_before": load_before,
            "load_after": load_after,
            "png": png.display().to_string(),
        }),
    );
    assert_eq!(
        (lost, duplicated, unexpected, unfinished),
        (0, 0, 0, 0),
        "every client gets every event of its channels exactly once, in seq order"
    );
    assert!(
        std::fs::metadata(&png).map(|m| m.len()).unwrap_or(0) > 0,
        "{} written",
        png.display()
    );
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::SinceSeq => "since_seq",
        Kind::SessionAcking => "session, acking",
        Kind::Session => "session, not acking",
    }
}

/// Drops up to `n` connected clients (at random) by a reset; how many.
fn drop_some(controls: &[Arc<Control>], n: usize) -> usize {
    let mut order: Vec<usize> = (0..controls.len()).collect();
    fastrand::shuffle(&mut order);
    let mut dropped = 0;
    for i in order {
        if dropped == n {
            break;
        }
        if controls[i].connected.load(Ordering::Relaxed) {
            controls[i].drop.notify_one();
            dropped += 1;
        }
    }
    dropped
}

/// Drops the connected clients whose home is gateway `g` and that are on
/// the other one: they come back home. How many.
fn send_home(controls: &[Arc<Control>], g: usize) -> usize {
    let mut sent = 0;
    for (i, control) in controls.iter().enumerate() {
        if i % 2 == g
            && control.connected.load(Ordering::Relaxed)
            && control.on.load(Ordering::Relaxed) != g
        {
            control.drop.notify_one();
            sent += 1;
        }
    }
    sent
}

/// Drops a connected client at random `per_s` times a second until `stop`.
async fn churn(controls: Vec<Arc<Control>>, per_s: f64, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / per_s));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        drop_some(&controls, 1);
    }
}

/// Every `seq` stored, per channel.
struct Stored {
    seqs: Vec<Mutex<Vec<u64>>>,
}

impl Stored {
    fn new(channels: usize) -> Stored {
        Stored {
            seqs: (0..channels).map(|_| Mutex::new(Vec::new())).collect(),
        }
    }
}

/// What the publisher did.
struct Published {
    sent: u64,
    retries: u64,
    given_up: u64,
}

/// Stores chat messages at `per_s` round-robin over `channels` until
/// `stop` (the content is the publish time in nanoseconds), each attempt
/// unanswered within [`PUBLISH_ATTEMPT`] sent again; waits for the last.
async fn publish(
    log: Log,
    channels: Vec<Id>,
    per_s: f64,
    stored: Arc<Stored>,
    mut stop: watch::Receiver<bool>,
) -> Published {
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut in_flight = futures::stream::FuturesUnordered::new();
    let retries = Arc::new(AtomicU64::new(0));
    let mut out = Published {
        sent: 0,
        retries: 0,
        given_up: 0,
    };
    let mut stopping = false;
    loop {
        if !stopping {
            let due = (started.elapsed().as_secs_f64() * per_s) as u64 + 1;
            while out.sent < due {
                let index = out.sent as usize % channels.len();
                let event = bench::message(channels[index], bench::now_nanos().to_string());
                let log = log.clone();
                let retries = retries.clone();
                in_flight.push(async move {
                    let deadline = Instant::now() + PUBLISH_PATIENCE;
                    loop {
                        match tokio::time::timeout(PUBLISH_ATTEMPT, log.store(&event)).await {
                            Ok(Ok(s)) => return (index, Some(s.seq)),
                            _ if Instant::now() >= deadline => return (index, None),
                            Ok(Err(_)) => {
                                retries.fetch_add(1, Ordering::Relaxed);
                                tokio::time::sleep(Duration::from_millis(100)).await;
                            }
                            Err(_) => {
                                retries.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                });
                out.sent += 1;
            }
        } else if in_flight.is_empty() {
            break;
        }
        tokio::select! {
            Some((index, seq)) = in_flight.next(), if !in_flight.is_empty() => match seq {
                Some(seq) => stored.seqs[index].lock().unwrap_or_else(|e| e.into_inner()).push(seq),
                None => out.given_up += 1,
            },
            _ = tick.tick(), if !stopping => {}
            _ = stop.changed(), if !stopping => stopping = true,
        }
    }
    out.retries = retries.load(Ordering::Relaxed);
    out
}

/// The figures over time, after the warm-up.
struct Summary {
    warm_up_s: f64,
    /// Per gateway: RSS (MiB) smallest, median, largest after the warm-up.
    rss_mib: [Option<(f64, f64, f64)>; 2],
    /// RSS slope, KiB per minute, pooled over both gateways' process lives.
    rss_slope: Option<f64>,
    rss_slope_per_gateway: [Option<f64>; 2],
    /// Open files beside the client connections (fds − connections):
    /// range and slope (per minute), pooled likewise.
    other_fds: Option<(f64, f64, f64)>,
    other_fds_slope: Option<f64>,
    /// Open files (both gateways together): range.
    fds: Option<(f64, f64, f64)>,
    delivered: Option<(f64, f64, f64)>,
    p99_ms: Option<(f64, f64, f64)>,
    load: Option<(f64, f64, f64)>,
}

fn summarize(sizes: &Sizes, samples: &[Sample]) -> Summary {
    let warm_up = sizes.warm_up.as_secs_f64();
    let per_minute = |slope: Option<f64>| slope.map(|s| s * 60.0);
    let rss =
        |g: usize| figures::segments(samples, g, warm_up, move |s| s.rss_kib[g].map(|k| k as f64));
    let other = |g: usize| {
        figures::segments(samples, g, warm_up, move |s| {
            Some(s.fds[g]? as f64 - s.connections[g]? as f64)
        })
    };
    let mut rss_all = rss(0);
    rss_all.extend(rss(1));
    let mut other_all = other(0);
    other_all.extend(other(1));
    let after: Vec<&Sample> = samples.iter().filter(|s| s.t >= warm_up).collect();
    let rss_range =
        |g: usize| figures::range(rss(g).iter().flatten().map(|p| p.1 / 1024.0).collect());
    Summary {
        warm_up_s: warm_up,
        rss_mib: [rss_range(0), rss_range(1)],
        rss_slope: per_minute(figures::pooled_slope(&rss_all)),
        rss_slope_per_gateway: [
            per_minute(figures::pooled_slope(&rss(0))),
            per_minute(figures::pooled_slope(&rss(1))),
        ],
        other_fds: figures::range(other_all.iter().flatten().map(|p| p.1).collect()),
        other_fds_slope: per_minute(figures::pooled_slope(&other_all)),
        fds: figures::range(
            after
                .iter()
                .filter_map(|s| Some(s.fds[0]? as f64 + s.fds[1]? as f64))
                .collect(),
        ),
        delivered: figures::range(after.iter().map(|s| s.delivered_per_s).collect()),
        p99_ms: figures::range(after.iter().filter_map(|s| s.p99_ms).collect()),
        load: figures::range(after.iter().map(|s| s.load).collect()),
    }
}

impl Summary {
    fn print(&self) {
        let r = |range: Option<(f64, f64, f64)>, digits: usize| {
            range.map_or("-".to_string(), |(lo, mid, hi)| {
                format!("{lo:.digits$} / {mid:.digits$} / {hi:.digits$}")
            })
        };
        let slope = |s: Option<f64>| s.map_or("-".to_string(), |s| format!("{s:+.2}"));
        println!(
            "  after the warm-up ({:.0} s from each gateway process's start), smallest / median / largest:",
            self.warm_up_s
        );
        for g in 0..2 {
            println!(
                "    gateway {g} RSS: {} MiB, slope {} KiB/min",
                r(self.rss_mib[g], 1),
                slope(self.rss_slope_per_gateway[g])
            );
        }
        println!(
            "    RSS slope, both gateways pooled: {} KiB/min",
            slope(self.rss_slope)
        );
        println!(
            "    open files beside client connections (per gateway): {}, slope {} fds/min; open files, both gateways: {}",
            r(self.other_fds, 0),
            slope(self.other_fds_slope),
            r(self.fds, 0)
        );
        println!("    delivered/s: {}", r(self.delivered, 0));
        println!("    live p99 per second: {} ms", r(self.p99_ms, 1));
        println!("    load average: {}", r(self.load, 2));
    }

    fn json(&self) -> serde_json::Value {
        let r = |range: Option<(f64, f64, f64)>| {
            range.map(|(lo, mid, hi)| {
                json!([bench::round1(lo), bench::round1(mid), bench::round1(hi)])
            })
        };
        json!({
            "warm_up_s": self.warm_up_s,
            "rss_mib": [r(self.rss_mib[0]), r(self.rss_mib[1])],
            "rss_slope_kib_per_min": self.rss_slope.map(bench::round3),
            "rss_slope_kib_per_min_per_gateway": self.rss_slope_per_gateway.map(|s| s.map(bench::round3)),
            "other_fds": r(self.other_fds),
            "other_fds_slope_per_min": self.other_fds_slope.map(bench::round3),
            "fds_both": r(self.fds),
            "delivered_per_s": r(self.delivered),
            "p99_ms": r(self.p99_ms),
            "load": r(self.load),
        })
    }
}

/// The samples and marks as CSV (one line per sample, then one per mark).
fn csv_text(samples: &[Sample], marks: &[Mark]) -> String {
    let opt = |v: Option<u64>| v.map_or(String::new(), |v| v.to_string());
    let mut out = String::from(
        "t_s,pid0,rss0_kib,fds0,connections0,pid1,rss1_kib,fds1,connections1,delivered_per_s,p99_ms,load\n",
    );
    for s in samples {
        out.push_str(&format!(
            "{:.1},{},{},{},{},{},{},{},{},{:.0},{},{:.2}\n",
            s.t,
            s.pid[0],
            opt(s.rss_kib[0]),
            opt(s.fds[0]),
            opt(s.connections[0]),
            s.pid[1],
            opt(s.rss_kib[1]),
            opt(s.fds[1]),
            opt(s.connections[1]),
            s.delivered_per_s,
            s.p99_ms.map_or(String::new(), |p| format!("{p:.2}")),
            s.load
        ));
    }
    out.push_str("\nfault_t_s,fault,label\n");
    for m in marks {
        out.push_str(&format!("{:.1},{},{}\n", m.t, m.kind.name(), m.label));
    }
    out
}
