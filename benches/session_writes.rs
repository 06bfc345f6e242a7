//! Session writes per subscription change (issue 20, parts 4 and 5): what
//! the session store takes when connections subscribe to many channels,
//! and what that does to another user's `?session=` hello.
//!
//! One nats-server and one gateway (the real binary) per store: sled, and
//! the bucket (`--session-store kv`). First, a prober's session (another
//! user, one subscription) is written, and its `?session=` hello timed 20
//! times (the baseline). Then the attack: `connections` connections, each
//! of its own user, subscribe `subscriptions` channels each, in `phases`
//! steps taken by all at once; after each step the bench waits until the
//! store's counters stop moving and reads them
//! (`switchboard_session_writes_total`, `switchboard_session_write_bytes_total`):
//! records and bytes per subscription change, step by step, show whether
//! a change costs the same at the last step as at the first. Meanwhile the
//! prober opens its session again and again: its hello latency under the
//! attack. Last, churn: one of the connections (holding all its
//! subscriptions) unsubscribes and subscribes one channel again for
//! `churn_for`.
//!
//! Beside what was measured, each run prints what the same changes cost
//! in the previous format, computed: the whole session's record (its JSON
//! and its key) written per change, as the gateway did before. A gateway
//! without the bytes counter (`SWITCHBOARD_BENCH_BIN` pointing at an older
//! build) prints `n/a` for bytes and its records as it counted them.
//!
//! `cargo bench --bench session_writes`: 64 connections x 1,024
//! subscriptions in 8 steps, 8 s of churn. Without `--bench` (a smoke run
//! under `cargo test --all-targets`): 4 x 64 in 4 steps, 1 s of churn; it
//! asserts, when the gateway counts bytes, at most one record and 200 bytes
//! per change, and the last step's bytes per change within 25% of the
//! first's.

use switchboard_harness::bench;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::SinkExt;
use serde_json::json;
use switchboard::channel::{Channel, Id};
use switchboard::session::record::Header;
use switchboard::token::Grant;
use tokio_tungstenite::tungstenite::Message;

use bench::{percentile, round1, round3, thousands, Gateway};

const WRITES: &str = "switchboard_session_writes_total";
const BYTES: &str = "switchboard_session_write_bytes_total";

/// The clients' read buffer.
const READ_BUFFER: usize = 16 * 1024;

/// How long the store's counters stay put before the bench reads them.
const SETTLED_FOR: Duration = Duration::from_secs(1);

/// Hellos timed before the attack.
const BASELINE_HELLOS: usize = 20;

/// The smoke run's bounds (when the gateway counts bytes).
const MOST_RECORDS_PER_CHANGE: f64 = 1.1;
const MOST_BYTES_PER_CHANGE: f64 = 200.0;
const MOST_GROWTH: f64 = 1.25;

struct Sizes {
    connections: usize,
    subscriptions: usize,
    phases: usize,
    churn_for: Duration,
    /// The pause between two of the prober's hellos.
    probe_every: Duration,
}

impl Sizes {
    fn full() -> Sizes {
        Sizes {
            connections: 64,
            subscriptions: 1024,
            phases: 8,
            churn_for: Duration::from_secs(8),
            probe_every: Duration::from_millis(50),
        }
    }

    fn smoke() -> Sizes {
        Sizes {
            connections: 4,
            subscriptions: 64,
            phases: 4,
            churn_for: Duration::from_secs(1),
            probe_every: Duration::from_millis(50),
        }
    }
}

fn main() {
    let full = bench::full();
    let sizes = if full { Sizes::full() } else { Sizes::smoke() };
    let mut stores = vec![("sled", Vec::<&str>::new())];
    if bench::serve_accepts("--session-store") {
        stores.push(("kv", vec!["--session-store", "kv"]));
    }
    println!(
        "session writes: {} connections x {} subscriptions in {} steps, then {:.0} s of churn \
         [{} mode; {}]",
        sizes.connections,
        thousands(sizes.subscriptions as f64),
        sizes.phases,
        sizes.churn_for.as_secs_f64(),
        bench::mode(),
        bench::gateway_binary().display()
    );
    let runtime = bench::runtime();
    let mut outcomes = Vec::new();
    for (name, args) in &stores {
        let outcome = runtime.block_on(run(&sizes, name, args));
        outcome.print();
        outcomes.push(outcome);
    }
    print_table(&outcomes);
    bench::print_json(
        "session_writes",
        json!({
            "connections": sizes.connections,
            "subscriptions": sizes.subscriptions,
            "phases": sizes.phases,
            "churn_s": sizes.churn_for.as_secs_f64(),
            "runs": outcomes.iter().map(Outcome::json).collect::<Vec<_>>(),
        }),
    );
    if !full {
        for outcome in &outcomes {
            outcome.assert_bounded();
        }
    }
}

/// The store's counters once they stop moving for [`SETTLED_FOR`] (the
/// store writes in the background, and sled pauses now and then on the
/// disk), less what the prober's hellos wrote (`per_hello` records and
/// bytes each, from the baseline): the prober keeps going.
async fn settled(
    gateway: &Gateway,
    prober: Option<(&Prober, f64, Option<f64>)>,
) -> (f64, Option<f64>) {
    let mut last = (-1.0, None);
    let mut since = Instant::now();
    loop {
        let hellos = prober.map_or(0.0, |(p, _, _)| p.hellos.load(Ordering::SeqCst) as f64);
        let (per_hello, per_hello_bytes) = prober.map_or((0.0, Some(0.0)), |(_, r, b)| (r, b));
        let records = gateway.metric_sum(WRITES).await.unwrap_or(0.0);
        let bytes = gateway.metric_sum(BYTES).await;
        let now = (
            records - per_hello * hellos,
            bytes.zip(per_hello_bytes).map(|(b, h)| b - h * hellos),
        );
        if now != last {
            last = now;
            since = Instant::now();
        } else if since.elapsed() >= SETTLED_FOR {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A connection of its own user, with its session id.
async fn connect(gateway: &Gateway, session: Option<&str>) -> (bench::Ws, String) {
    let token = bench::token(Id::new_v4(), Grant::All, &[]);
    connect_as(gateway, &token, session).await
}

async fn connect_as(gateway: &Gateway, token: &str, session: Option<&str>) -> (bench::Ws, String) {
    let mut url = gateway.ws_url(token);
    if let Some(session) = session {
        url.push_str(&format!("&session={session}"));
    }
    let mut ws = bench::connect(&url, READ_BUFFER).await;
    let hello = bench::next_text(&mut ws).await;
    let hello: serde_json::Value = serde_json::from_str(&hello).expect("hello is JSON");
    assert_eq!(hello["type"], "hello", "{hello}");
    let id = hello["data"]["session_id"]
        .as_str()
        .expect("session id")
        .to_string();
    (ws, id)
}

async fn unsubscribe(ws: &mut bench::Ws, channel: Channel) {
    let frame = json!({"type": "unsubscribe", "channel": channel.to_string()});
    ws.send(Message::Text(frame.to_string().into()))
        .await
        .expect("send unsubscribe");
    loop {
        let frame = bench::next_text(ws).await;
        if bench::control_type(&frame).as_deref() == Some("unsubscribed") {
            return;
        }
    }
}

/// The previous format's record of a session with `k` subscriptions
/// (cursor 0, as in this bench), key included: what each change wrote.
fn old_record_bytes(most: usize) -> Vec<u64> {
    let mut header = Header {
        user: Some(Id::new_v4()),
        expires_at: chrono::Utc::now().timestamp() + 86_400,
        subscriptions: BTreeMap::new(),
        epoch: Some(switchboard::position::Epoch::created_at(chrono::Utc::now())),
    };
    let mut sizes = vec![0];
    let mut len = serde_json::to_vec(&header).expect("JSON").len() as u64;
    for _ in 0..most {
        header.subscriptions.insert(Channel::Chat(Id::new_v4()), 0);
        // Serializing each size would be quadratic: one entry is as long
        // as any other (`"channel:{uuid}":0`, and a comma after the first).
        let entry = 44 + 2 + 2 + u64::from(header.subscriptions.len() > 1);
        len += entry;
        sizes.push(16 + len);
    }
    debug_assert_eq!(
        serde_json::to_vec(&header).expect("JSON").len() as u64 + 16,
        *sizes.last().expect("sizes")
    );
    sizes
}

async fn run(sizes: &Sizes, store: &str, args: &[&str]) -> Outcome {
    println!("\n{store}:");
    let nats = bench::nats();
    let gateway = bench::gateway_with(&nats.url(), bench::BENCH_LOG, args);
    let old_sizes = old_record_bytes(sizes.subscriptions);

    // The prober: another user's session with one subscription.
    let token = bench::token(Id::new_v4(), Grant::All, &[]);
    let (mut ws, session) = connect_as(&gateway, &token, None).await;
    bench::subscribe_live(&mut ws, Channel::Chat(Id::new_v4())).await;
    let _ = ws.close(None).await;
    let prober = Arc::new(Prober::new(gateway.ws_url(&token), session));
    let before = settled(&gateway, None).await;
    let baseline = prober.clone().run(Duration::ZERO, BASELINE_HELLOS).await;
    let settled_0 = settled(&gateway, None).await;
    // What a hello itself writes (the previous version saved the session
    // it opened): taken off every figure below.
    let per_hello = (settled_0.0 - before.0) / BASELINE_HELLOS as f64;
    let per_hello_bytes = settled_0
        .1
        .zip(before.1)
        .map(|(a, b)| (a - b) / BASELINE_HELLOS as f64);
    let correction = Some((&*prober, per_hello, per_hello_bytes));
    let mut last = settled(&gateway, correction).await;

    // The attack.
    let mut clients = Vec::with_capacity(sizes.connections);
    for _ in 0..sizes.connections {
        clients.push(connect(&gateway, None).await.0);
    }
    let channels: Vec<Vec<Channel>> = (0..sizes.connections)
        .map(|_| {
            (0..sizes.subscriptions)
                .map(|_| Channel::Chat(Id::new_v4()))
                .collect()
        })
        .collect();
    let prober_task = tokio::spawn(prober.clone().run(sizes.probe_every, usize::MAX));
    let per_phase = sizes.subscriptions / sizes.phases;
    let mut phases = Vec::with_capacity(sizes.phases);
    let (mut subscribing_s, mut catching_up_s) = (0.0, 0.0);
    for phase in 0..sizes.phases {
        let range = phase * per_phase..(phase + 1) * per_phase;
        let started = Instant::now();
        let steps = clients.iter_mut().zip(&channels).map(|(ws, mine)| {
            let mine = &mine[range.clone()];
            async move { bench::subscribe_all(ws, mine).await }
        });
        futures::future::join_all(steps).await;
        subscribing_s += started.elapsed().as_secs_f64();
        // The store catches up (the prober goes on meanwhile).
        let started = Instant::now();
        let now = settled(&gateway, correction).await;
        catching_up_s += started.elapsed().as_secs_f64();
        let changes = (sizes.connections * per_phase) as f64;
        let old: u64 = range.clone().map(|k| old_sizes[k + 1]).sum();
        phases.push(Phase {
            records: now.0 - last.0,
            bytes: now.1.zip(last.1).map(|(a, b)| a - b),
            old_bytes: old as f64 * sizes.connections as f64,
            changes,
        });
        last = now;
    }
    prober.stop.store(true, Ordering::SeqCst);
    let during = prober_task.await.expect("prober");
    let last = settled(&gateway, correction).await;

    // Churn on one connection that holds every subscription.
    let ws = &mut clients[0];
    let churned = channels[0][0];
    let churn_started = Instant::now();
    let mut churn_changes = 0u64;
    while churn_started.elapsed() < sizes.churn_for {
        unsubscribe(ws, churned).await;
        bench::subscribe_live(ws, churned).await;
        churn_changes += 2;
    }
    let churn_s = churn_started.elapsed().as_secs_f64();
    let after_churn = settled(&gateway, correction).await;
    let peak_rss = gateway.peak_rss_bytes();
    for ws in &mut clients {
        let _ = ws.close(None).await;
    }
    let errors_logged = gateway.log_lines_with("ERROR");
    Outcome {
        store: store.to_string(),
        phases,
        subscribing_s,
        catching_up_s,
        per_hello,
        baseline,
        during,
        churn_changes,
        churn_s,
        churn_records: after_churn.0 - last.0,
        churn_bytes: after_churn.1.zip(last.1).map(|(a, b)| a - b),
        churn_old_bytes: churn_changes as f64 * old_sizes[sizes.subscriptions] as f64,
        peak_rss,
        errors_logged,
    }
}

/// Another user reopening its session (`?session=`) again and again, and
/// timing its hello.
struct Prober {
    url: String,
    session: String,
    stop: AtomicBool,
    hellos: AtomicU64,
}

impl Prober {
    fn new(url: String, session: String) -> Prober {
        Prober {
            url: format!("{url}&session={session}"),
            session,
            stop: AtomicBool::new(false),
            hellos: AtomicU64::new(0),
        }
    }

    /// Times hellos, one every `every`, until stopped or `most` of them;
    /// the latencies in nanoseconds, sorted.
    async fn run(self: Arc<Self>, every: Duration, most: usize) -> Vec<u64> {
        let mut samples = Vec::new();
        while !self.stop.load(Ordering::SeqCst) && samples.len() < most {
            let started = Instant::now();
            let mut ws = bench::connect(&self.url, READ_BUFFER).await;
            let hello = bench::next_text(&mut ws).await;
            samples.push(started.elapsed().as_nanos() as u64);
            assert!(
                hello.contains(&self.session),
                "the prober's session resumes: {hello}"
            );
            self.hellos.fetch_add(1, Ordering::SeqCst);
            let _ = ws.close(None).await;
            tokio::time::sleep(every).await;
        }
        samples.sort_unstable();
        samples
    }
}

/// One step of the attack: every connection's next subscriptions.
struct Phase {
    records: f64,
    /// `None`: the gateway has no bytes counter.
    bytes: Option<f64>,
    /// The same changes in the previous format (computed).
    old_bytes: f64,
    changes: f64,
}

struct Outcome {
    store: String,
    phases: Vec<Phase>,
    /// The attack's subscribes, confirmed.
    subscribing_s: f64,
    /// The store catching up after each step (what it had not written yet
    /// when the last subscribe was confirmed).
    catching_up_s: f64,
    /// Records a `?session=` hello itself wrote (taken off the figures).
    per_hello: f64,
    baseline: Vec<u64>,
    during: Vec<u64>,
    churn_changes: u64,
    churn_s: f64,
    churn_records: f64,
    churn_bytes: Option<f64>,
    churn_old_bytes: f64,
    peak_rss: u64,
    errors_logged: usize,
}

impl Outcome {
    fn changes(&self) -> f64 {
        self.phases.iter().map(|p| p.changes).sum()
    }

    fn records(&self) -> f64 {
        self.phases.iter().map(|p| p.records).sum()
    }

    fn bytes(&self) -> Option<f64> {
        self.phases.iter().map(|p| p.bytes).sum()
    }

    fn old_bytes(&self) -> f64 {
        self.phases.iter().map(|p| p.old_bytes).sum()
    }

    fn per_change(&self, phase: &Phase) -> Option<f64> {
        phase.bytes.map(|b| b / phase.changes)
    }

    fn growth(&self) -> Option<f64> {
        let first = self.per_change(self.phases.first()?)?;
        let last = self.per_change(self.phases.last()?)?;
        Some(last / first.max(1e-9))
    }

    fn print(&self) {
        let na = |x: Option<f64>, f: &dyn Fn(f64) -> String| x.map_or("n/a".into(), f);
        println!(
            "  attack: {} changes in {:.2} s (and {:.1} s for the store to catch up): {} records \
             ({:.3} per change), {} ({} bytes per change); the previous format: {} ({:.0} bytes \
             per change)",
            thousands(self.changes()),
            self.subscribing_s,
            self.catching_up_s,
            thousands(self.records()),
            self.records() / self.changes(),
            na(self.bytes(), &|b| mib(b)),
            na(self.bytes().map(|b| b / self.changes()), &|b| format!(
                "{b:.0}"
            )),
            mib(self.old_bytes()),
            self.old_bytes() / self.changes(),
        );
        for (i, phase) in self.phases.iter().enumerate() {
            println!(
                "    step {}: {:.3} records and {} bytes per change (previous format {:.0})",
                i + 1,
                phase.records / phase.changes,
                na(self.per_change(phase), &|b| format!("{b:.0}")),
                phase.old_bytes / phase.changes
            );
        }
        println!(
            "  churn: {} changes in {:.1} s ({:.0}/s): {:.3} records and {} bytes per change \
             (previous format {:.0})",
            self.churn_changes,
            self.churn_s,
            self.churn_changes as f64 / self.churn_s,
            self.churn_records / self.churn_changes.max(1) as f64,
            na(
                self.churn_bytes
                    .map(|b| b / self.churn_changes.max(1) as f64),
                &|b| format!("{b:.0}")
            ),
            self.churn_old_bytes / self.churn_changes.max(1) as f64
        );
        println!(
            "  another user's ?session= hello: p50 {:.1} ms, p99 {:.1} ms before; during the \
             attack p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} hellos); gateway \
             peak RSS {}; {} ERROR log lines",
            bench::ms(percentile(&self.baseline, 50.0)),
            bench::ms(percentile(&self.baseline, 99.0)),
            bench::ms(percentile(&self.during, 50.0)),
            bench::ms(percentile(&self.during, 90.0)),
            bench::ms(percentile(&self.during, 99.0)),
            bench::ms(self.during.last().copied().unwrap_or(0)),
            self.during.len(),
            mib(self.peak_rss as f64),
            self.errors_logged
        );
    }

    fn json(&self) -> serde_json::Value {
        json!({
            "store": self.store,
            "changes": self.changes(),
            "subscribing_s": round3(self.subscribing_s),
            "catching_up_s": round3(self.catching_up_s),
            "records_per_hello": round3(self.per_hello),
            "records": self.records(),
            "bytes": self.bytes(),
            "records_per_change": round3(self.records() / self.changes()),
            "bytes_per_change": self.bytes().map(|b| round1(b / self.changes())),
            "previous_format_bytes": self.old_bytes(),
            "previous_format_bytes_per_change": round1(self.old_bytes() / self.changes()),
            "bytes_per_change_by_step": self.phases.iter().map(|p| self.per_change(p).map(round1)).collect::<Vec<_>>(),
            "growth_last_over_first": self.growth().map(round3),
            "churn_changes": self.churn_changes,
            "churn_s": round3(self.churn_s),
            "churn_records": self.churn_records,
            "churn_bytes": self.churn_bytes,
            "churn_previous_format_bytes": self.churn_old_bytes,
            "hello_ms_before": {"p50": bench::ms(percentile(&self.baseline, 50.0)), "p99": bench::ms(percentile(&self.baseline, 99.0))},
            "hello_ms_during": {
                "p50": bench::ms(percentile(&self.during, 50.0)),
                "p90": bench::ms(percentile(&self.during, 90.0)),
                "p99": bench::ms(percentile(&self.during, 99.0)),
                "max": bench::ms(self.during.last().copied().unwrap_or(0)),
                "samples": self.during.len(),
            },
            "gateway_peak_rss_bytes": self.peak_rss,
            "errors_logged": self.errors_logged,
        })
    }

    /// The smoke run's checks, when the gateway counts bytes.
    fn assert_bounded(&self) {
        let store = &self.store;
        assert_eq!(self.errors_logged, 0, "{store}: ERROR lines in the log");
        assert!(!self.during.is_empty(), "{store}: the prober got hellos");
        let Some(bytes) = self.bytes() else {
            println!("  {store}: no bytes counter; nothing asserted");
            return;
        };
        let records = self.records() / self.changes();
        assert!(
            records <= MOST_RECORDS_PER_CHANGE,
            "{store}: {records:.3} records per subscription change"
        );
        let per_change = bytes / self.changes();
        assert!(
            per_change <= MOST_BYTES_PER_CHANGE,
            "{store}: {per_change:.0} bytes per subscription change"
        );
        let growth = self.growth().unwrap_or(0.0);
        assert!(
            growth <= MOST_GROWTH,
            "{store}: the last step cost {growth:.2} times the first per change"
        );
        let churn = self.churn_bytes.unwrap_or(0.0) / self.churn_changes.max(1) as f64;
        assert!(
            churn <= MOST_BYTES_PER_CHANGE,
            "{store}: churn wrote {churn:.0} bytes per change"
        );
    }
}

/// Bytes in the unit that suits them.
fn mib(bytes: f64) -> String {
    match bytes {
        b if b >= 1024.0 * 1024.0 => format!("{:.1} MiB", b / (1024.0 * 1024.0)),
        b if b >= 1024.0 => format!("{:.1} KiB", b / 1024.0),
        b => format!("{b:.0} B"),
    }
}

fn print_table(outcomes: &[Outcome]) {
    println!(
        "\n{:<6} {:>10} {:>12} {:>13} {:>14} {:>12} {:>13} {:>13}",
        "store",
        "changes",
        "records/chg",
        "bytes/chg",
        "previous fmt",
        "last/first",
        "hello p99 ms",
        "churn B/chg"
    );
    for o in outcomes {
        let na = "n/a".to_string();
        println!(
            "{:<6} {:>10} {:>12.3} {:>13} {:>14.0} {:>12} {:>13.1} {:>13}",
            o.store,
            thousands(o.changes()),
            o.records() / o.changes(),
            o.bytes()
                .map_or(na.clone(), |b| format!("{:.0}", b / o.changes())),
            o.old_bytes() / o.changes(),
            o.growth().map_or(na.clone(), |g| format!("{g:.2}")),
            bench::ms(percentile(&o.during, 99.0)),
            o.churn_bytes
                .map_or(na, |b| format!("{:.0}", b / o.churn_changes.max(1) as f64)),
        );
    }
}
