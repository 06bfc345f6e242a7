//! Presence at scale (issue 23): two gateways (the real binary) on one
//! nats-server, node A holding every connection and node B none, and one
//! `channel:` channel; sessions in the bucket (`--session-store kv`). Per
//! run, with N users present (each a WebSocket on A subscribed to the
//! channel):
//!
//! 1. **Memory.** Both gateways' resident memory (`VmRSS`, read once it
//!    stops moving) before and after the N users came online. B holds no
//!    connection, so its growth is presence alone: bytes per present user
//!    per node beyond the connection (the target: at most 100). A's growth
//!    per connection (the socket, its session, presence) is given for
//!    context. Before any run, the gateway's own presence types are filled
//!    in this process under a counting allocator (`presence/heap.rs`):
//!    what the structures ask for per user, which explains the RSS.
//! 2. **Snapshot time.** A `presence` request frame answered, on A and on
//!    B, and `GET /v1/presence/{channel}` on each: p50 and p99.
//! 3. **Storm.** Observers, half on A and half on B, subscribe with
//!    `presence: true`; then more users connect to A and subscribe, spread
//!    over a second. Each observer's presence frames (`presence` and
//!    `user_presence`) per batch interval (200 ms; the target: at most one),
//!    counted in intervals from the storm's start and in intervals aligned
//!    to the observer's arrivals (batch boundaries, not the clock's: the
//!    verdict's); the most frames in one burst (one batch); the bytes;
//!    when each observer's count reached the end. A run from an empty
//!    channel (only the observers in it) comes first.
//! 4. **Agreement.** One user subscribes on A, then unsubscribes, and so
//!    on: the time from each change until an observer on A and one on B
//!    have both seen its `user_presence` (the target: p99 at most 1 s).
//!
//! `cargo bench --bench presence`: runs with 0 (the storm alone), 1,000
//! and 10,000 users present; storms of 2,000 users over 1 s, 50
//! observers, 200 requests per figure, 100 changes. Without `--bench` (as
//! `cargo test --all-targets` runs it): 20 users, a storm of 40 over
//! 0.3 s, 4 observers, 10 requests, 4 changes; every step must complete
//! (every count reached, every change seen on both nodes), and no target
//! is judged. `PRESENCE_ONLY=empty`, `=1000` or `=10000` runs one run.
//!
//! Here: the sizes and one run; `presence/crowd.rs`: the present users and
//! the storm; `presence/observer.rs`: the observers and the storm's
//! figures; `presence/heap.rs`: the in-process count;
//! `presence/outcome.rs`: printing, verdicts and the JSON line.

#[path = "presence/crowd.rs"]
mod crowd;
#[path = "presence/heap.rs"]
mod heap;
#[path = "presence/observer.rs"]
mod observer;
#[path = "presence/outcome.rs"]
mod outcome;

use switchboard_harness::bench;

use std::time::{Duration, Instant};

use futures::SinkExt;
use serde_json::{json, Value};
use switchboard::channel::{Channel, Id};
use switchboard::presence::node::BATCH_INTERVAL;
use switchboard::token::{Grant, Role};
use switchboard_harness::bench::delivery::CLIENT_READ_BUFFER;
use switchboard_harness::bench::{Gateway, Ws};
use tokio_tungstenite::tungstenite::Message;

use crowd::Crowd;
use observer::{Observer, Storm, Watched};
use outcome::{Agreement, Latencies, Memory, Outcome, Snapshots, StormOutcome};

/// Counts what the presence types allocate (`presence/heap.rs`).
#[global_allocator]
static ALLOCATOR: heap::Counting = heap::Counting;

/// Resident memory is read every this often while it settles.
const SETTLE_EVERY: Duration = Duration::from_millis(500);

/// It has settled when this many readings in a row lie within
/// [`SETTLE_BAND`] (2 s).
const SETTLE_READINGS: usize = 5;
const SETTLE_BAND: u64 = 8 * 1024;

/// How long one change may take to reach both observers before it counts
/// as missed.
const CHANGE_PATIENCE: Duration = Duration::from_secs(10);

/// How long after its last user subscribed a storm may take to reach
/// every observer before the run goes on without it.
const STORM_PATIENCE: Duration = Duration::from_secs(30);

/// Frames still arriving after every observer's count reached the end are
/// counted for this long.
const TRAILING: Duration = Duration::from_secs(1);

/// The users asking for snapshots, one on each node.
const REQUESTERS: usize = 2;

/// The sizes of a bench.
pub struct Sizes {
    /// The runs' numbers of present users (a run with none comes first).
    pub present: Vec<usize>,
    pub storm: usize,
    pub spread: Duration,
    pub observers: usize,
    pub requests: usize,
    pub changes: usize,
    pub settle_patience: Duration,
}

impl Sizes {
    fn full() -> Sizes {
        Sizes {
            present: vec![1_000, 10_000],
            storm: 2_000,
            spread: Duration::from_secs(1),
            observers: 50,
            requests: 200,
            changes: 100,
            settle_patience: Duration::from_secs(30),
        }
    }

    fn smoke() -> Sizes {
        Sizes {
            present: vec![20],
            storm: 40,
            spread: Duration::from_millis(300),
            observers: 4,
            requests: 10,
            changes: 4,
            settle_patience: Duration::from_secs(2),
        }
    }
}

fn main() {
    let sizes = if bench::full() {
        Sizes::full()
    } else {
        Sizes::smoke()
    };
    let only = std::env::var("PRESENCE_ONLY").unwrap_or_default();
    // First, while this is the only thread: the heap in process.
    let held: Vec<heap::Held> = sizes.present.iter().map(|&n| heap::per_user(n)).collect();
    let limit = bench::raise_open_files_limit();
    let most = sizes.present.iter().copied().max().unwrap_or(0)
        + sizes.storm
        + sizes.observers
        + REQUESTERS
        + 1;
    assert!(
        limit >= most as u64 + 256,
        "the open-files limit is {limit}, too low for {most} connections: raise the hard limit first (`ulimit -Hn`)"
    );
    outcome::print_header(&sizes, &held);
    let runtime = bench::runtime();
    let wanted = |name: &str| only.is_empty() || only == name;
    let mut runs = Vec::new();
    let mut present = vec![0];
    present.extend(&sizes.present);
    for n in present {
        let name = if n == 0 {
            "empty".into()
        } else {
            n.to_string()
        };
        if wanted(&name) {
            let outcome = runtime.block_on(run(&sizes, n));
            outcome.print();
            runs.push(outcome);
        }
    }
    outcome::print_json(&sizes, &held, &runs);
    if !bench::full() {
        for run in &runs {
            run.assert_complete();
        }
    }
}

/// One run: `n` users present on A, then the storm and the changes.
async fn run(sizes: &Sizes, n: usize) -> Outcome {
    let nats = bench::nats();
    let kv = ["--session-store", "kv"];
    let a = bench::gateway_with(&nats.url(), bench::BENCH_LOG, &kv);
    let b = bench::gateway_with(&nats.url(), bench::BENCH_LOG, &kv);
    let lister = Lister::new(Id::new_v4());
    let channel = lister.channel;
    // Each gateway answers once before the first reading: the route's
    // keep-alive socket is in both readings.
    lister.count(&a).await;
    lister.count(&b).await;
    let mut crowd = Crowd::default();
    let mut next_user = 0;
    println!(
        "\nrun: {} users present on A, then a storm of {} [{} mode]",
        bench::thousands(n as f64),
        bench::thousands(sizes.storm as f64),
        bench::mode()
    );

    let mut memory = None;
    let mut snapshot = None;
    if n > 0 {
        let (before, _) = settled(&[&a, &b], sizes.settle_patience).await;
        let connecting = Instant::now();
        crowd.fill(&a, channel, next_user, n).await;
        next_user += n;
        let connect = connecting.elapsed();
        lister.wait_for(&b, n).await;
        let listed = connecting.elapsed() - connect;
        lister.wait_for(&a, n).await;
        let (after, steady) = settled(&[&a, &b], sizes.settle_patience).await;
        memory = Some(Memory {
            users: n,
            connect,
            listed,
            a: (before[0], after[0]),
            b: (before[1], after[1]),
            settled: steady,
            peaks: (a.peak_rss_bytes(), b.peak_rss_bytes()),
            b_gauge: b.metric_sum("switchboard_presence_users").await,
        });
        let requesters = Requesters {
            first_user: next_user,
            present: n,
            requests: sizes.requests,
        };
        snapshot = Some(snapshots(&a, &b, &lister, &mut crowd, requesters).await);
        next_user += REQUESTERS;
    }

    // The observers, then a quiet count before the storm.
    let mut observers = Vec::with_capacity(sizes.observers);
    for k in 0..sizes.observers {
        let (gateway, node) = if k % 2 == 0 { (&a, "A") } else { (&b, "B") };
        observers.push(Observer::connect(gateway, node, channel, next_user).await);
        next_user += 1;
    }
    let base = (n + if n > 0 { REQUESTERS } else { 0 } + sizes.observers) as i64;
    lister.wait_for(&a, base as usize).await;
    lister.wait_for(&b, base as usize).await;
    tokio::time::sleep(BATCH_INTERVAL * 3).await;
    for observer in &mut observers {
        observer.ask().await;
    }
    bench::wait_within("every observer to count the users", bench::PATIENCE, || {
        let counted = observers.iter().all(|o| o.count() == base);
        async move { counted }
    })
    .await;

    let target = base + sizes.storm as i64;
    let start = Instant::now();
    let subscribed = crowd
        .storm(&a, channel, next_user, sizes.storm, sizes.spread)
        .await;
    next_user += sizes.storm;
    let last_subscribed = subscribed.iter().copied().max().unwrap_or(start);
    let give_up = last_subscribed + STORM_PATIENCE;
    while !observers.iter().all(|o| o.count() == target) && Instant::now() < give_up {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(TRAILING).await;
    let storm = StormOutcome {
        base,
        target,
        users: sizes.storm,
        first_subscribed: subscribed.iter().copied().min().unwrap_or(start) - start,
        last_subscribed: last_subscribed - start,
        storm: Storm {
            watched: observers
                .iter()
                .map(|o| Watched::new(o.node, &o.since(start), start, target))
                .collect(),
        },
        reached_after: last_subscribed,
    };

    let agreement = if n > 0 {
        Some(agreement(&a, channel, next_user, &observers, sizes.changes).await)
    } else {
        None
    };
    let warnings = [&a, &b].map(|g| g.log_lines_with("presence"));
    drop(observers);
    drop(crowd);
    Outcome {
        present: n,
        memory,
        snapshot,
        storm,
        agreement,
        warnings,
    }
}

/// Reads the gateways' RSS every [`SETTLE_EVERY`] until the last
/// [`SETTLE_READINGS`] of each lie within [`SETTLE_BAND`], or `patience`
/// passed: the last readings, and whether they settled.
async fn settled(gateways: &[&Gateway], patience: Duration) -> (Vec<u64>, bool) {
    let until = Instant::now() + patience;
    let mut readings: Vec<Vec<u64>> = vec![Vec::new(); gateways.len()];
    loop {
        tokio::time::sleep(SETTLE_EVERY).await;
        for (gateway, seen) in gateways.iter().zip(&mut readings) {
            seen.push(gateway.rss_bytes());
        }
        let steady = readings.iter().all(|seen| {
            let last = &seen[seen.len().saturating_sub(SETTLE_READINGS)..];
            let (lo, hi) = (last.iter().min(), last.iter().max());
            last.len() == SETTLE_READINGS && hi.zip(lo).is_some_and(|(h, l)| h - l <= SETTLE_BAND)
        });
        if steady || Instant::now() >= until {
            let last = readings.iter().map(|s| *s.last().unwrap_or(&0)).collect();
            return (last, steady);
        }
    }
}

/// `GET /v1/presence/{channel}` as an auditor.
struct Lister {
    http: reqwest::Client,
    auditor: String,
    channel: Id,
}

impl Lister {
    fn new(channel: Id) -> Lister {
        Lister {
            http: reqwest::Client::new(),
            auditor: bench::token(Id::new_v4(), Grant::None, &[Role::Auditor]),
            channel,
        }
    }

    /// The snapshot's body.
    async fn get(&self, gateway: &Gateway) -> bytes::Bytes {
        let path = format!("/v1/presence/{}", Channel::Chat(self.channel));
        let response = self
            .http
            .get(gateway.http(&path))
            .bearer_auth(&self.auditor)
            .send()
            .await
            .expect("presence route");
        assert_eq!(response.status().as_u16(), 200, "presence route");
        response.bytes().await.expect("presence body")
    }

    async fn count(&self, gateway: &Gateway) -> usize {
        let body: Value = serde_json::from_slice(&self.get(gateway).await).expect("json");
        body["count"].as_u64().expect("count") as usize
    }

    async fn wait_for(&self, gateway: &Gateway, n: usize) {
        bench::wait_within(
            "the gateway to list every user",
            bench::PATIENCE,
            || async { self.count(gateway).await == n },
        )
        .await;
    }

    /// `requests` GETs one after the other.
    async fn timed(&self, gateway: &Gateway, requests: usize) -> Latencies {
        let mut out = Latencies::default();
        for _ in 0..requests {
            let asked = Instant::now();
            let body = self.get(gateway).await;
            out.samples.push(asked.elapsed().as_nanos() as u64);
            out.bytes = body.len();
        }
        out.samples.sort_unstable();
        out
    }
}

/// Who asks for snapshots: users `first_user` and the next, with
/// `present` users in the channel before them; each asks `requests` times.
struct Requesters {
    first_user: usize,
    present: usize,
    requests: usize,
}

/// The snapshot times: a user on each node (present too) asks with
/// `presence` frames, then the route is asked on each.
async fn snapshots(
    a: &Gateway,
    b: &Gateway,
    lister: &Lister,
    crowd: &mut Crowd,
    who: Requesters,
) -> Snapshots {
    let (channel, first_user, requests) = (lister.channel, who.first_user, who.requests);
    let mut on_a = crowd::connect_user(a, channel, first_user, CLIENT_READ_BUFFER).await;
    let mut on_b = crowd::connect_user(b, channel, first_user + 1, CLIENT_READ_BUFFER).await;
    let count = who.present + REQUESTERS;
    lister.wait_for(a, count).await;
    lister.wait_for(b, count).await;
    let frame_a = asked(&mut on_a, channel, requests).await;
    let frame_b = asked(&mut on_b, channel, requests).await;
    crowd.adopt(on_a);
    crowd.adopt(on_b);
    let body: Value = serde_json::from_slice(&lister.get(a).await).expect("json");
    Snapshots {
        count,
        members: body["members"].as_array().map_or(0, Vec::len),
        frame_a,
        frame_b,
        http_a: lister.timed(a, requests).await,
        http_b: lister.timed(b, requests).await,
    }
}

/// `requests` `presence` frames one after the other, each timed until its
/// answer (found by its `request_id`) has arrived whole.
async fn asked(ws: &mut Ws, channel: Id, requests: usize) -> Latencies {
    let mut out = Latencies::default();
    for k in 0..requests {
        let id = format!("q{k}");
        let frame = json!({"type": "presence", "channel": Channel::Chat(channel).to_string(), "request_id": id});
        let answer = format!("\"request_id\":\"{id}\"");
        let sent = Instant::now();
        ws.send(Message::Text(frame.to_string().into()))
            .await
            .expect("send presence");
        loop {
            let text = bench::next_text(ws).await;
            if text.contains(&answer) {
                out.samples.push(sent.elapsed().as_nanos() as u64);
                out.bytes = text.len();
                break;
            }
        }
    }
    out.samples.sort_unstable();
    out
}

/// `changes` changes of one user on A (subscribe, unsubscribe, …), each
/// timed until the first observer on A and the first on B both saw it;
/// spaced by 100–300 ms at random, so they fall anywhere in a batch.
async fn agreement(
    a: &Gateway,
    channel: Id,
    i: usize,
    observers: &[Observer],
    changes: usize,
) -> Agreement {
    let on = |node| observers.iter().find(|o| o.node == node).expect("observer");
    let (on_a, on_b) = (on("A"), on("B"));
    let user = Id::new_v4();
    let token = crowd::user_token(user, i, channel);
    let mut ws = bench::connect_gateway(&a.ws_url(&token), CLIENT_READ_BUFFER).await;
    let mut out = Agreement::default();
    for k in 0..changes {
        let online = k % 2 == 0;
        let (kind, reply) = if online {
            ("subscribe", "subscribed")
        } else {
            ("unsubscribe", "unsubscribed")
        };
        let frame = json!({"type": kind, "channel": Channel::Chat(channel).to_string()});
        let sent = Instant::now();
        ws.send(Message::Text(frame.to_string().into()))
            .await
            .expect("send");
        loop {
            let text = bench::next_text(&mut ws).await;
            match bench::control_type(&text).as_deref() {
                Some(r) if r == reply => break,
                Some("error") => panic!("the change was refused: {text}"),
                _ => {}
            }
        }
        let (mut seen_a, mut seen_b) = (None, None);
        while (seen_a.is_none() || seen_b.is_none()) && sent.elapsed() < CHANGE_PATIENCE {
            tokio::time::sleep(Duration::from_millis(1)).await;
            seen_a = seen_a.or_else(|| on_a.saw(user, online, sent));
            seen_b = seen_b.or_else(|| on_b.saw(user, online, sent));
        }
        let since = |at: Instant| at.duration_since(sent).as_nanos() as u64;
        match (seen_a, seen_b) {
            (Some(x), Some(y)) => {
                out.a.push(since(x));
                out.b.push(since(y));
                out.both.push(since(x.max(y)));
            }
            _ => out.missed += 1,
        }
        tokio::time::sleep(Duration::from_millis(fastrand::u64(100..300))).await;
    }
    for samples in [&mut out.a, &mut out.b, &mut out.both] {
        samples.sort_unstable();
    }
    out
}
