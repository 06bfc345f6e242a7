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
//! events/s, 5 s offline, 100 control clients; prints the figures and the
//! issue's Bars with pass/fail. Without `--bench`: 20 clients x 2 of 10
//! channels, 100 events/s, 2 s offline; it asserts 0 lost and 0 duplicates
//! (and, with sessions, 0 lost and no duplicate beyond the bound).
//!
//! The clients are light: one task each, a small read buffer, a bounded
//! number connecting at once. A refused connect, an `error` frame or a
//! close (1011 or any other) sends a client back to B after a back-off,
//! resuming from what it has; each is counted.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::json;
use switchboard::channel::{Channel, Id};
use switchboard::log::Log;
use switchboard::token::Grant;
use tokio::sync::{watch, Semaphore};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

use common::{ms, now_nanos, percentile, thousands, Gateway, Ws};

/// Storm clients read little at a time: a small buffer keeps thousands of
/// them in one process.
const READ_BUFFER: usize = 4 * 1024;

/// Clients in their TCP connect and upgrade at once.
const CONNECT_CONCURRENCY: usize = 256;

/// How long one connect (TCP and upgrade) may take before it counts as
/// refused and is retried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The first reconnect back-off; doubled per failed attempt up to
/// [`BACKOFF_MAX`], plus up to half of it again at random.
const BACKOFF_FIRST: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(3);

/// With sessions, a duplicate is allowed when its event was published no
/// earlier than this before the kill: a restored cursor is at most the
/// flush interval (2 s by default) plus the ping confirmation (about 1 s)
/// old (SPEC section 5).
const SESSION_DUPLICATE_BOUND: Duration = Duration::from_secs(5);

/// How often B's resident memory is sampled during the storm.
const RSS_EVERY: Duration = Duration::from_millis(100);

/// How long a client on A waits for its socket to end after the kill.
const KILL_GRACE: Duration = Duration::from_secs(5);

/// How long after an `error` frame a client waits for the close that
/// usually follows, before it closes and reconnects itself.
const ERROR_GRACE: Duration = Duration::from_secs(2);

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
            clients: 2_000,
            channels: 200,
            per_s: 1_000.0,
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
    let full = common::full();
    let sizes = if full { Sizes::full() } else { Sizes::smoke() };
    let limit = common::raise_open_files_limit();
    let needed = (sizes.clients + sizes.control_clients) as u64 * 2 + 256;
    if limit < needed {
        panic!(
            "the open-files limit is {limit}, too low for {} connections (need {needed}): \
             raise the hard limit first (`ulimit -Hn`)",
            sizes.clients + sizes.control_clients
        );
    }
    let sessions = common::serve_accepts("--session-store");
    let runtime = common::runtime();
    let mut outcomes = Vec::new();
    let first = runtime.block_on(run(&sizes, Resume::SinceSeq));
    first.print(&sizes);
    outcomes.push(first);
    if sessions {
        let second = runtime.block_on(run(&sizes, Resume::Session));
        second.print(&sizes);
        outcomes.push(second);
    } else {
        println!(
            "\nsession run: skipped (`switchboard serve` does not accept --session-store yet)"
        );
    }
    common::print_json(
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

// ---------------------------------------------------------------- publisher

/// What the publisher stored, per channel: `(seq, publish nanos)`.
type Receipts = Vec<Vec<(u64, u64)>>;

/// The highest `seq` acknowledged so far, for the cut-off.
#[derive(Default)]
struct Acked {
    max_seq: AtomicU64,
    failed: AtomicU64,
}

/// Stores `channel_message`s round-robin over `channels` at `per_s`,
/// `data.content` being the publish time in nanoseconds, until `stop`.
async fn publish(
    log: Log,
    channels: Vec<Id>,
    per_s: f64,
    acked: Arc<Acked>,
    mut stop: watch::Receiver<bool>,
) -> Receipts {
    let mut receipts: Receipts = vec![Vec::new(); channels.len()];
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut in_flight = futures::stream::FuturesUnordered::new();
    let mut sent = 0usize;
    let mut stopping = false;
    loop {
        if !stopping {
            let due = (started.elapsed().as_secs_f64() * per_s) as usize + 1;
            while sent < due && in_flight.len() < common::IN_FLIGHT {
                let index = sent % channels.len();
                let nanos = now_nanos();
                let event = common::message(channels[index], nanos.to_string());
                let log = log.clone();
                in_flight.push(async move { (index, nanos, log.store(&event).await) });
                sent += 1;
            }
        } else if in_flight.is_empty() {
            break;
        }
        tokio::select! {
            Some((index, nanos, stored)) = in_flight.next(), if !in_flight.is_empty() => {
                match stored {
                    Ok(stored) => {
                        receipts[index].push((stored.seq, nanos));
                        acked.max_seq.fetch_max(stored.seq, Ordering::Relaxed);
                    }
                    Err(_) => {
                        acked.failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            _ = tick.tick(), if !stopping => {}
            _ = stop.changed(), if !stopping => stopping = true,
        }
    }
    for list in &mut receipts {
        list.sort_unstable();
    }
    receipts
}

// ---------------------------------------------------------------- clients

/// What every storm client shares with the run.
struct Shared {
    b_addr: std::net::SocketAddr,
    resume: Resume,
    connecting: Semaphore,
    /// Storm clients subscribed on A.
    ready: AtomicUsize,
    /// Subscriptions that got `replayed` on B (the first time each).
    live: AtomicUsize,
    /// When A was killed (nanoseconds since the epoch).
    killed: watch::Receiver<Option<u64>>,
    /// The cut-off `seq` and the moment every client gives up passing it.
    cutoff: watch::Receiver<Option<(u64, Instant)>>,
    sizes_offline: Duration,
    sizes_spread: Duration,
    clients: usize,
}

/// What one storm client saw, over both gateways.
#[derive(Default)]
struct Record {
    /// Every `seq` received per subscription, in arrival order.
    seqs: [Vec<u64>; 2],
    /// The `since_seq` of the first resume on B (the last `seq` from A).
    resumed_from: [u64; 2],
    /// From the start of the reconnect to each subscription's `replayed`.
    to_replayed: [Option<Duration>; 2],
    /// From the start of the reconnect to B's `hello`.
    to_hello: Option<Duration>,
    /// Connect attempts on B (1 when the first one held).
    attempts: u32,
    /// Connects refused, failed or timed out.
    refused: u32,
    /// `error` frames received.
    errors: u32,
    /// Closes with 1011.
    closes_1011: u32,
    /// Other closes or drops on B before the client was done.
    dropped: u32,
    /// A first frame on B that was not `hello`.
    not_hello_first: u32,
    /// `subscribed` with `complete: false`.
    incomplete: u32,
    /// Session runs: `hello.resumed` was false on B (the client then
    /// resubscribed with `since_seq`).
    not_resumed: u32,
}

/// Which of the client's channels a frame's `channel` names.
fn channel_index(frame: &str, names: &[String; 2]) -> Option<usize> {
    const KEY: &str = "\"channel\":\"";
    let start = frame.find(KEY)? + KEY.len();
    let rest = &frame[start..];
    let end = rest.find('"')?;
    names.iter().position(|n| n == &rest[..end])
}

fn parse(frame: &str) -> serde_json::Value {
    serde_json::from_str(frame).unwrap_or(serde_json::Value::Null)
}

async fn send_subscribe(ws: &mut Ws, channel: &str, since: Option<u64>) -> bool {
    let mut frame = json!({"type": "subscribe", "channel": channel});
    if let Some(seq) = since {
        frame["since_seq"] = seq.into();
    }
    ws.send(Message::Text(frame.to_string().into()))
        .await
        .is_ok()
}

fn last_seq(seqs: &[u64]) -> u64 {
    seqs.iter().copied().max().unwrap_or(0)
}

/// An instant no wait reaches.
fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86_400)
}

/// The two channels (indices) of storm client `i`, spread evenly.
fn pair(i: usize, channels: usize) -> [usize; 2] {
    let first = i % channels;
    let second = (i + 1 + i / channels) % channels;
    if second == first {
        [first, (first + 1) % channels]
    } else {
        [first, second]
    }
}

/// A storm client: on A until it dies, then back on B.
async fn storm_client(
    index: usize,
    a_url: String,
    channels: [Id; 2],
    user: Id,
    shared: Arc<Shared>,
) -> Record {
    let names = channels.map(|c| Channel::Chat(c).to_string());
    let token = common::token(user, Grant::Some(channels.to_vec()));
    let mut record = Record::default();

    // On A: subscribe live (the publisher starts once everyone is).
    let permit = shared.connecting.acquire().await.expect("semaphore");
    let mut ws = common::connect(&format!("{a_url}?token={token}"), READ_BUFFER).await;
    drop(permit);
    let hello = parse(&common::next_text(&mut ws).await);
    assert_eq!(hello["type"], "hello", "{hello}");
    let session = hello["data"]["session_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    for name in &names {
        assert!(send_subscribe(&mut ws, name, None).await, "subscribe sent");
    }
    let mut subscribed = 0;
    while subscribed < 2 {
        let frame = common::next_text(&mut ws).await;
        match common::control_type(&frame).as_deref() {
            Some("subscribed") => subscribed += 1,
            Some("error") => panic!("subscribe refused on A: {frame}"),
            None => record_event(&frame, &names, &mut record),
            _ => {}
        }
    }
    shared.ready.fetch_add(1, Ordering::Relaxed);

    // Until A dies (its sockets end with it; a grace bounds the wait).
    let mut killed = shared.killed.clone();
    let mut grace: Option<Instant> = None;
    loop {
        let until = grace.unwrap_or_else(far_future);
        tokio::select! {
            message = ws.next() => match message {
                Some(Ok(Message::Text(frame))) => record_event(&frame, &names, &mut record),
                Some(Ok(_)) => {}
                Some(Err(_)) | None => break,
            },
            _ = killed.changed(), if grace.is_none() => {
                grace = Some(Instant::now() + KILL_GRACE);
            }
            _ = tokio::time::sleep_until(until.into()), if grace.is_some() => break,
        }
    }
    drop(ws);
    let killed_at = loop {
        if let Some(at) = *killed.borrow_and_update() {
            break at;
        }
        if killed.changed().await.is_err() {
            return record;
        }
    };
    record.resumed_from = [last_seq(&record.seqs[0]), last_seq(&record.seqs[1])];

    // Offline, then back on B at this client's place in the spread.
    let offset = shared.sizes_offline
        + shared
            .sizes_spread
            .mul_f64(index as f64 / shared.clients.max(1) as f64);
    let wake = Duration::from_nanos(killed_at).saturating_add(offset);
    let now = Duration::from_nanos(now_nanos());
    tokio::time::sleep(wake.saturating_sub(now)).await;
    let started = Instant::now();
    let mut backoff = BACKOFF_FIRST;
    let mut cutoff = shared.cutoff.clone();
    loop {
        let done = on_b(
            &shared,
            &token,
            &session,
            &names,
            started,
            &mut cutoff,
            &mut record,
        )
        .await;
        if done {
            return record;
        }
        let give_up = cutoff.borrow().map(|(_, at)| at);
        if give_up.is_some_and(|at| Instant::now() >= at) {
            return record;
        }
        let jitter = backoff.mul_f64(fastrand::f64() / 2.0);
        tokio::time::sleep(backoff + jitter).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

fn record_event(frame: &str, names: &[String; 2], record: &mut Record) {
    if let (Some(i), Some(seq)) = (
        channel_index(frame, names),
        common::frame_u64(frame, "\"seq\":"),
    ) {
        record.seqs[i].push(seq);
    }
}

/// Whether every subscription has passed the cut-off.
fn passed(record: &Record, cutoff: u64) -> bool {
    record.seqs.iter().all(|seqs| last_seq(seqs) > cutoff)
}

/// One connection to B. Returns true when the client is done (past the
/// cut-off, or out of time), false to reconnect after a back-off.
async fn on_b(
    shared: &Shared,
    token: &str,
    session: &str,
    names: &[String; 2],
    started: Instant,
    cutoff: &mut watch::Receiver<Option<(u64, Instant)>>,
    record: &mut Record,
) -> bool {
    record.attempts += 1;
    let mut url = format!("ws://{}/v1/ws?token={token}", shared.b_addr);
    if shared.resume == Resume::Session {
        url.push_str("&session=");
        url.push_str(session);
    }
    let permit = shared.connecting.acquire().await.expect("semaphore");
    let connected = common::try_connect(&url, READ_BUFFER, CONNECT_TIMEOUT).await;
    drop(permit);
    let mut ws = match connected {
        Ok(ws) => ws,
        Err(_) => {
            record.refused += 1;
            return false;
        }
    };
    let mut first = true;
    let mut give_up = cutoff.borrow().map(|(_, at)| at);
    let mut errored: Option<Instant> = None;
    loop {
        let current = *cutoff.borrow_and_update();
        if let (Some((seq, _)), false) = (current, first) {
            if passed(record, seq) {
                let _ = ws.close(None).await;
                return true;
            }
        }
        let deadline = match (give_up, errored) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b).unwrap_or_else(far_future),
        };
        let message = tokio::select! {
            message = ws.next() => message,
            changed = cutoff.changed() => {
                if changed.is_ok() {
                    give_up = cutoff.borrow().map(|(_, at)| at);
                }
                continue;
            }
            _ = tokio::time::sleep_until(deadline.into()) => {
                let _ = ws.close(None).await;
                // Out of time, or an `error` without a close: reconnect.
                return give_up.is_some_and(|at| Instant::now() >= at);
            }
        };
        let frame = match message {
            Some(Ok(Message::Text(frame))) => frame,
            Some(Ok(Message::Close(close))) => {
                if close.is_some_and(|c| c.code == CloseCode::Error) {
                    record.closes_1011 += 1;
                } else {
                    record.dropped += 1;
                }
                return false;
            }
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => {
                record.dropped += 1;
                return false;
            }
        };
        let kind = common::control_type(&frame);
        if first {
            first = false;
            if kind.as_deref() != Some("hello") {
                record.not_hello_first += 1;
                if kind.as_deref() == Some("error") {
                    record.errors += 1;
                }
                let _ = ws.close(None).await;
                return false;
            }
            record.to_hello.get_or_insert(started.elapsed());
            let hello = parse(&frame);
            let restored = shared.resume == Resume::Session && hello["data"]["resumed"] == true;
            if shared.resume == Resume::Session && !restored {
                record.not_resumed += 1;
            }
            if !restored {
                for (i, name) in names.iter().enumerate() {
                    let since = last_seq(&record.seqs[i]);
                    if !send_subscribe(&mut ws, name, Some(since)).await {
                        record.dropped += 1;
                        return false;
                    }
                }
            }
            continue;
        }
        match kind.as_deref() {
            None => record_event(&frame, names, record),
            Some("replayed") => {
                if let Some(i) = channel_index(&frame, names) {
                    if record.to_replayed[i].is_none() {
                        record.to_replayed[i] = Some(started.elapsed());
                        shared.live.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            Some("subscribed") if parse(&frame)["data"]["complete"] == false => {
                record.incomplete += 1;
            }
            Some("error") => {
                // Usually followed by close 1011; if not, the subscription
                // it names is gone: reconnect after the grace.
                record.errors += 1;
                errored.get_or_insert(Instant::now() + ERROR_GRACE);
            }
            _ => {}
        }
    }
}

/// What one control client saw: `(receive nanos, latency nanos)` per event.
#[derive(Default)]
struct ControlRecord {
    samples: Vec<(u64, u64)>,
    errors: u32,
    closes: u32,
}

/// A control client on B: live on one channel until `stop`.
async fn control_client(
    url: String,
    channel: Id,
    ready: Arc<AtomicUsize>,
    mut stop: watch::Receiver<bool>,
) -> ControlRecord {
    let mut record = ControlRecord::default();
    let mut announced = false;
    while !*stop.borrow() {
        let mut ws = match common::try_connect(&url, READ_BUFFER, CONNECT_TIMEOUT).await {
            Ok(ws) => ws,
            Err(_) => {
                record.closes += 1;
                tokio::time::sleep(BACKOFF_FIRST).await;
                continue;
            }
        };
        let hello = common::next_text(&mut ws).await;
        if common::control_type(&hello).as_deref() != Some("hello") {
            record.errors += 1;
            continue;
        }
        common::subscribe_live(&mut ws, Channel::Chat(channel)).await;
        if !announced {
            ready.fetch_add(1, Ordering::Relaxed);
            announced = true;
        }
        loop {
            let message = tokio::select! {
                message = ws.next() => message,
                _ = stop.changed() => break,
            };
            match message {
                Some(Ok(Message::Text(frame))) => match common::control_type(&frame).as_deref() {
                    None => {
                        if let Some(sent) = common::frame_u64(&frame, "\"content\":") {
                            let now = now_nanos();
                            record.samples.push((now, now.saturating_sub(sent)));
                        }
                    }
                    Some("error") => record.errors += 1,
                    _ => {}
                },
                Some(Ok(_)) => {}
                Some(Err(_)) | None => {
                    record.closes += 1;
                    break;
                }
            }
        }
    }
    record
}

// ---------------------------------------------------------------- a run

/// The figures of one run.
struct Outcome {
    resume: Resume,
    subscriptions: usize,
    replayed: Vec<u64>,
    never_replayed: usize,
    hello: Vec<u64>,
    lost: u64,
    duplicates: u64,
    /// Session runs: duplicates published more than the bound before the kill.
    duplicates_beyond_bound: u64,
    subscriptions_with_loss: usize,
    unexpected: u64,
    cutoff: u64,
    expected: u64,
    attempts: u64,
    refused: u64,
    errors: u64,
    closes_1011: u64,
    dropped: u64,
    not_hello_first: u64,
    incomplete: u64,
    not_resumed: u64,
    publish_failed: u64,
    b_rss_before: u64,
    b_rss_peak: u64,
    b_hwm: u64,
    consumers: Option<f64>,
    consumer_limit_lines: usize,
    window_events: Option<f64>,
    window_bytes: Option<f64>,
    gap_events: u64,
    control_before: Vec<u64>,
    control_during: Vec<u64>,
    control_errors: u64,
    control_closes: u64,
    storm_s: f64,
    all_live: bool,
}

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
        common::mode()
    );
    let nats = common::nats();
    let log = common::log(&nats).await;
    let extra: &[&str] = match resume {
        Resume::SinceSeq => &[],
        Resume::Session => &["--session-store", "kv"],
    };
    let mut a = Gateway::start_with(&nats.url(), "warn", extra);
    let b = Gateway::start_with(&nats.url(), "warn", extra);
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
            let [first, second] = pair(i, sizes.channels);
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
            let token = common::token(Id::new_v4(), Grant::Some(vec![channel]));
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
        common::PATIENCE,
        "every client subscribed",
    )
    .await;
    println!(
        "  connected and subscribed in {:.1} s",
        connecting.elapsed().as_secs_f64()
    );

    let acked = Arc::new(Acked::default());
    let publisher = tokio::spawn(publish(
        log.clone(),
        channels.clone(),
        sizes.per_s,
        acked.clone(),
        stop_rx.clone(),
    ));
    let control_publisher = tokio::spawn(publish(
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
    let consumers_before = b.metric(CONSUMERS_METRIC).await;
    let b_rss_before = b.rss_bytes();
    let killed_at = now_nanos();
    a.kill();
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
    while shared.live.load(Ordering::Relaxed) < target && Instant::now() < give_up {
        tokio::time::sleep(RSS_EVERY).await;
        b_rss_peak = b_rss_peak.max(b.rss_bytes());
        if !gap_taken && Instant::now() >= storm_from {
            gap_taken = true;
            gap_events = acked.max_seq.load(Ordering::Relaxed);
        }
    }
    let all_live = shared.live.load(Ordering::Relaxed) >= target;
    let storm_s = storm_from.elapsed().as_secs_f64();
    let during_to = now_nanos();
    let window_events = b.metric("switchboard_window_events").await;
    let window_bytes = b.metric("switchboard_window_bytes").await;
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
    let consumers_after = b.metric(CONSUMERS_METRIC).await;
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
    };
    let mut oldest_resume = u64::MAX;
    for (i, record) in records.iter().enumerate() {
        for (k, channel) in pair(i, sizes.channels).into_iter().enumerate() {
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

/// Polls `done` every 20 ms until it holds; panics after `patience`.
async fn wait_for(done: impl Fn() -> bool, patience: Duration, what: &str) {
    let until = Instant::now() + patience;
    while !done() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---------------------------------------------------------------- report

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / 1_048_576.0)
}

fn pct_ms(sorted: &[u64], p: f64) -> f64 {
    ms(percentile(sorted, p))
}

impl Outcome {
    fn control_ratio(&self) -> f64 {
        pct_ms(&self.control_during, 99.0) / pct_ms(&self.control_before, 99.0).max(1e-9)
    }

    fn print(&self, sizes: &Sizes) {
        let row = |what: &str, value: String| println!("  {what:<44} {value}");
        let dist = |xs: &[u64]| {
            if xs.is_empty() {
                "n/a".to_string()
            } else {
                format!(
                    "p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms  (n = {})",
                    pct_ms(xs, 50.0),
                    pct_ms(xs, 99.0),
                    ms(xs.last().copied().unwrap_or(0)),
                    thousands(xs.len() as f64)
                )
            }
        };
        println!("  ------------------------------------------------------------");
        row(
            "resumed subscriptions",
            format!(
                "{} ({} never got `replayed`)",
                thousands(self.subscriptions as f64),
                self.never_replayed
            ),
        );
        row("reconnect start -> `replayed`", dist(&self.replayed));
        if self.resume == Resume::Session {
            row("reconnect start -> `hello`", dist(&self.hello));
            row(
                "sessions not restored (resumed: false)",
                self.not_resumed.to_string(),
            );
        }
        row(
            "all live again after the first reconnect",
            if self.all_live {
                format!("{:.2} s", self.storm_s)
            } else {
                format!("NOT within {:.0} s", sizes.storm_patience.as_secs_f64())
            },
        );
        row(
            "cut-off seq / events expected (all subs)",
            format!("{} / {}", self.cutoff, thousands(self.expected as f64)),
        );
        row(
            "lost events (subscriptions with a loss)",
            format!("{} ({})", self.lost, self.subscriptions_with_loss),
        );
        let dups = if self.resume == Resume::Session {
            format!(
                "{} ({} published over {} s before the kill)",
                self.duplicates,
                self.duplicates_beyond_bound,
                SESSION_DUPLICATE_BOUND.as_secs()
            )
        } else {
            self.duplicates.to_string()
        };
        row("duplicate events", dups);
        row("events with no receipt", self.unexpected.to_string());
        row(
            "connect attempts on B (refused or failed)",
            format!("{} ({})", self.attempts, self.refused),
        );
        row(
            "`error` frames / closes 1011 / other drops",
            format!("{} / {} / {}", self.errors, self.closes_1011, self.dropped),
        );
        row(
            "first frame not `hello` / `complete: false`",
            format!("{} / {}", self.not_hello_first, self.incomplete),
        );
        row(
            "B resident memory: before / peak in storm",
            format!(
                "{} / {} (VmHWM {})",
                mib(self.b_rss_before),
                mib(self.b_rss_peak),
                mib(self.b_hwm)
            ),
        );
        row(
            "JetStream consumers B created (storm)",
            self.consumers
                .map_or("n/a".to_string(), |c| format!("{c:.0}")),
        );
        row(
            "B log lines with `10026` (consumer limit)",
            self.consumer_limit_lines.to_string(),
        );
        row(
            "B window: events / bytes (gap to resume)",
            format!(
                "{} / {} ({} events)",
                self.window_events
                    .map_or("n/a".to_string(), |v| format!("{v:.0}")),
                self.window_bytes
                    .map_or("n/a".to_string(), |v| format!("{v:.0}")),
                self.gap_events
            ),
        );
        row("control live latency before", dist(&self.control_before));
        row("control live latency during", dist(&self.control_during));
        row(
            "control `error` frames / drops",
            format!("{} / {}", self.control_errors, self.control_closes),
        );
        if self.publish_failed > 0 {
            row("publishes failed", self.publish_failed.to_string());
        }
        println!("  Bars ({}):", self.resume.name());
        let p99 = pct_ms(&self.replayed, 99.0);
        self.bar(
            "p99 reconnect -> `replayed` <= 1 s",
            self.never_replayed == 0 && p99 <= 1_000.0,
            format!("{p99:.1} ms, {} never", self.never_replayed),
        );
        self.bar(
            "control p99 during <= 2x before",
            self.control_ratio() <= 2.0,
            format!(
                "{:.1} ms vs {:.1} ms = {:.2}x",
                pct_ms(&self.control_during, 99.0),
                pct_ms(&self.control_before, 99.0),
                self.control_ratio()
            ),
        );
        match self.consumers {
            Some(c) => {
                self.bar(
                    "consumers <= one per resumed subscription",
                    c <= self.subscriptions as f64,
                    format!("{c:.0} for {} subscriptions", self.subscriptions),
                );
                if let Some(held) = self.window_events {
                    if held >= self.gap_events as f64 {
                        self.bar(
                            "no consumer for a gap the window holds",
                            c == 0.0,
                            format!("{c:.0}; window {held:.0} events >= gap {}", self.gap_events),
                        );
                    }
                }
            }
            None => println!("    n/a   consumers <= one per resumed subscription ({CONSUMERS_METRIC} not reported)"),
        }
        let (clean, what) = match self.resume {
            Resume::SinceSeq => (
                self.lost == 0 && self.duplicates == 0,
                "0 lost, 0 duplicates",
            ),
            Resume::Session => (
                self.lost == 0 && self.duplicates_beyond_bound == 0 && self.not_resumed == 0,
                "0 lost, duplicates only within the bound, every session restored",
            ),
        };
        self.bar(
            what,
            clean,
            format!("{} lost, {} duplicates", self.lost, self.duplicates),
        );
    }

    fn bar(&self, what: &str, met: bool, figure: String) {
        let word = if met { "pass" } else { "FAIL" };
        let note = if common::full() {
            ""
        } else {
            " (smoke size: not the Bar's size)"
        };
        println!("    {word:<5} {what}: {figure}{note}");
    }

    /// The smoke run's checks: exactness holds at any size.
    fn assert_clean(&self) {
        let name = self.resume.name();
        assert_eq!(
            self.never_replayed, 0,
            "{name}: subscriptions never replayed"
        );
        assert_eq!(self.lost, 0, "{name}: lost events");
        assert_eq!(self.unexpected, 0, "{name}: events with no receipt");
        assert_eq!(self.publish_failed, 0, "{name}: failed publishes");
        assert!(self.expected > 0, "{name}: nothing was published");
        match self.resume {
            Resume::SinceSeq => assert_eq!(self.duplicates, 0, "{name}: duplicates"),
            Resume::Session => {
                assert_eq!(self.not_resumed, 0, "{name}: sessions not restored");
                assert_eq!(
                    self.duplicates_beyond_bound, 0,
                    "{name}: duplicates beyond the bound"
                );
            }
        }
    }

    fn json(&self) -> serde_json::Value {
        let r3 = common::round3;
        json!({
            "resume": self.resume.name(),
            "subscriptions": self.subscriptions,
            "replayed_p50_ms": r3(pct_ms(&self.replayed, 50.0)),
            "replayed_p99_ms": r3(pct_ms(&self.replayed, 99.0)),
            "replayed_max_ms": r3(ms(self.replayed.last().copied().unwrap_or(0))),
            "never_replayed": self.never_replayed,
            "hello_p50_ms": r3(pct_ms(&self.hello, 50.0)),
            "hello_p99_ms": r3(pct_ms(&self.hello, 99.0)),
            "all_live": self.all_live,
            "storm_s": r3(self.storm_s),
            "cutoff_seq": self.cutoff,
            "expected": self.expected,
            "lost": self.lost,
            "subscriptions_with_loss": self.subscriptions_with_loss,
            "duplicates": self.duplicates,
            "duplicates_beyond_bound": self.duplicates_beyond_bound,
            "unexpected": self.unexpected,
            "attempts": self.attempts,
            "refused": self.refused,
            "errors": self.errors,
            "closes_1011": self.closes_1011,
            "dropped": self.dropped,
            "not_hello_first": self.not_hello_first,
            "incomplete": self.incomplete,
            "not_resumed": self.not_resumed,
            "publish_failed": self.publish_failed,
            "b_rss_before_bytes": self.b_rss_before,
            "b_rss_peak_bytes": self.b_rss_peak,
            "b_vmhwm_bytes": self.b_hwm,
            "consumers_created": self.consumers,
            "consumer_limit_log_lines": self.consumer_limit_lines,
            "window_events": self.window_events,
            "window_bytes": self.window_bytes,
            "gap_events": self.gap_events,
            "control_before_p50_ms": r3(pct_ms(&self.control_before, 50.0)),
            "control_before_p99_ms": r3(pct_ms(&self.control_before, 99.0)),
            "control_during_p50_ms": r3(pct_ms(&self.control_during, 50.0)),
            "control_during_p99_ms": r3(pct_ms(&self.control_during, 99.0)),
            "control_p99_ratio": r3(self.control_ratio()),
            "control_errors": self.control_errors,
            "control_drops": self.control_closes,
        })
    }
}
