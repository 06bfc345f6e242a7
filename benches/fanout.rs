//! Live fan-out: delivered events/s and publish-to-socket latency for many
//! WebSocket clients on one channel, switchboard against nats-server's own
//! WebSocket listener (core NATS pub/sub, the same clients and payload
//! size); then the resident memory of an idle subscribed connection.
//!
//! `cargo bench --bench fanout`: 100 clients x 20_000 events and 1_000
//! clients x 2_000 events, each side publishing as fast as it can (the
//! peer also once more paced to switchboard's publish rate, for the same
//! offered load); 100 clients x 4_000 events with both sides paced to
//! 2_000 events/s (latency under a steady load); then (d) 5_000 idle
//! subscribed connections, once with sessions in sled and once in the
//! bucket, and the memory once they have left. `FANOUT_ONLY=idle` runs
//! (d) alone; `FANOUT_PAUSE=30` prints the gateway's pid once the idle
//! connections are in and waits that many seconds, for a heap profiler to
//! look (heaptrack sees the live heap if the gateway is killed then);
//! `FANOUT_PAUSE_AFTER=30` waits the same once they have left.
//! `FANOUT_ONLY=paced` runs (c) alone. `FANOUT_IDLE_REFRESH=1` has each
//! idle connection also replace its token once (`refresh`, a frame of
//! about 400 bytes), as a browser does before its token expires.
//! Without `--bench` (as `cargo test --all-targets` runs it): a few clients
//! and a few hundred events, and 50 idle connections. That run asserts that
//! every event reached every switchboard client and prints what arrived; it
//! prints no rate, ratio, memory figure or verdict, since its sizes say
//! nothing about the targets.
//!
//! Targets (issue 14): delivered/s at full speed >= 1.5x the peer's at 100
//! and at 1_000 clients; p99 latency at 2_000 events/s <= 0.5x the peer's;
//! <= 4 KiB of resident memory per idle connection, given back when they
//! leave.
//!
//! Each client's latency is its receive time minus the send time carried in
//! the event (`data.content` for switchboard, the payload for the peer);
//! delivered/s is all events received / (last receipt - first publish).
//! In case (c) two readers of the stream in the bench, a pull and a push
//! consumer, time the same events (the "log hop": stored by JetStream, then
//! delivered by a consumer): the part of switchboard's latency a gateway
//! reading the stream cannot avoid.

use switchboard_harness::bench;

use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::json;
use switchboard::channel::{Channel, Id};
use switchboard::envelope::StoredEvent;
use switchboard::log::Log;
use tokio_tungstenite::tungstenite::Message;

use bench::delivery::{
    self, Figures, Layout, Received, Subscribers, CLIENT_READ_BUFFER, CONNECT_CONCURRENCY,
};
use bench::{now_nanos, thousands, Gateway, Ws, PATIENCE};

/// The peer's subject.
const PEER_SUBJECT: &str = "bench.fanout";

/// How long connections settle before the memory is read.
const SETTLE: Duration = Duration::from_secs(2);

/// How long the gateway gets to give memory back after the idle
/// connections left (an idle worker does so at most every second, when
/// a timer wakes it).
const GIVE_BACK: Duration = Duration::from_secs(10);

/// Idle connections in case (d), as issue 26's peer comparison counts
/// them (the sweep bench goes on to 15,000).
const IDLE_CONNECTIONS: usize = 5_000;

/// `FANOUT_ONLY=idle`: the idle-memory case alone.
fn idle_only() -> bool {
    std::env::var("FANOUT_ONLY").is_ok_and(|only| only == "idle")
}

/// `FANOUT_IDLE_REFRESH=1`: each idle connection refreshes its token once.
fn idle_refresh() -> bool {
    std::env::var("FANOUT_IDLE_REFRESH").is_ok_and(|v| v == "1")
}

/// `FANOUT_ONLY=paced`: case (c) alone, no idle memory.
fn paced_only() -> bool {
    std::env::var("FANOUT_ONLY").is_ok_and(|only| only == "paced")
}

/// The targets of issue 14.
const DELIVERED_VS_PEER: f64 = 1.5;
const P99_VS_PEER: f64 = 0.5;
const IDLE_BYTES: f64 = 4.0 * 1024.0;
/// Of what the idle connections added, at most this much is still
/// resident once they have left.
const KEPT_AFTER_LEAVING: f64 = 0.10;

fn main() {
    let full = bench::full();
    // (clients, events, publish rate): `None` is as fast as each side can.
    let scenarios: &[Scenario] = if full {
        &[
            (100, 20_000, None),
            (1_000, 2_000, None),
            (100, 4_000, Some(2_000.0)),
        ]
    } else {
        &[(5, 200, None), (20, 50, None), (5, 50, Some(1_000.0))]
    };
    let scenarios: Vec<Scenario> = scenarios
        .iter()
        .filter(|s| !idle_only() && (!paced_only() || s.2.is_some()))
        .copied()
        .collect();
    let scenarios = &scenarios[..];
    let idle = match (paced_only(), full) {
        (true, _) => 0,
        (false, true) => IDLE_CONNECTIONS,
        (false, false) => 50,
    };
    let most = scenarios.iter().map(|s| s.0).max().unwrap_or(0).max(idle);
    switchboard::server::listener::raise_open_file_limit();
    delivery::require_open_files(most, "fanout");
    bench::runtime().block_on(run(scenarios, idle));
}

/// Clients, events, and the publish rate (`None`: full speed).
type Scenario = (usize, usize, Option<f64>);

// ---------------------------------------------------------------- switchboard

/// The log hop as a pull and as a push consumer takes it (see
/// [`pull_the_log`] and [`push_the_log`]).
struct Hops {
    pull: Figures,
    push: Figures,
}

/// Switchboard's figures and, paced, the log hop's.
async fn switchboard(
    gateway: &Gateway,
    log: &Log,
    nats_url: &str,
    (clients, events): (usize, usize),
    pace: Option<f64>,
) -> (Figures, Option<Hops>) {
    let mut subscribers = Subscribers::connect(gateway, Layout::one_channel(clients)).await;
    let channel = subscribers.channels[0];
    let readers = match pace {
        Some(_) => Some((
            pull_the_log(log, channel, events).await,
            push_the_log(nats_url, channel, events).await,
        )),
        None => None,
    };
    let started = now_nanos();
    let figures = subscribers.deliver(log, events, pace).await;
    let published =
        Duration::try_from_secs_f64(events as f64 / figures.published_per_s).unwrap_or_default();
    let hop = |got: Received| Figures::new(events as u64, events, started, published, vec![got]);
    let hops = match readers {
        Some((pull, push)) => Some(Hops {
            pull: hop(pull.await.expect("the log's pull reader")),
            push: hop(push.await.expect("the log's push reader")),
        }),
        None => None,
    };
    subscribers.close().await;
    (figures, hops)
}

/// Times `events` events by the send time they carry (`data.content`), as
/// the clients do, from a reader's stream of their JSON (`None`: a message
/// that is not an event).
fn time_events(
    events: usize,
    mut jsons: impl futures::Stream<Item = Option<String>> + Send + Unpin + 'static,
) -> tokio::task::JoinHandle<Received> {
    tokio::spawn(async move {
        let mut got = Received {
            latencies: Vec::with_capacity(events),
            last_at: 0,
            errors: 0,
        };
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while got.latencies.len() < events {
            let json = match tokio::time::timeout_at(deadline, jsons.next()).await {
                Ok(Some(json)) => json,
                _ => break,
            };
            let now = now_nanos();
            match json.and_then(|json| delivery::content_nanos(&json)) {
                Some(sent) => {
                    got.latencies.push(now.saturating_sub(sent));
                    got.last_at = now;
                }
                None => got.errors += 1,
            }
        }
        got
    })
}

/// The hop every event takes before a gateway can route it: stored by
/// JetStream, then delivered by a consumer. A reader of the stream in the
/// bench, on the clients' channel and started before the events are
/// published: here a pull consumer, as the gateway's own reads are.
async fn pull_the_log(log: &Log, channel: Id, events: usize) -> tokio::task::JoinHandle<Received> {
    let from = log.extent().await.expect("the stream's extent").last_seq + 1;
    let read = log
        .read_channel(Channel::Chat(channel), from)
        .await
        .expect("a reader of the stream");
    let jsons = read.map(|item| {
        let event = item.ok()?.event.ok()?;
        Some(event.encode().to_string())
    });
    time_events(events, jsons)
}

/// [`pull_the_log`]'s hop through an ordered push consumer instead (the
/// server sends each message as it is stored, with no pull request in
/// between), on a NATS connection of its own.
async fn push_the_log(
    nats_url: &str,
    channel: Id,
    events: usize,
) -> tokio::task::JoinHandle<Received> {
    use async_nats::jetstream::consumer::{push, DeliverPolicy};
    let client = async_nats::connect(nats_url)
        .await
        .expect("a NATS connection");
    let stream = async_nats::jetstream::new(client.clone())
        .get_stream(switchboard::log::StreamSettings::default().name)
        .await
        .expect("the stream");
    let consumer = stream
        .create_consumer(push::OrderedConfig {
            deliver_subject: client.new_inbox(),
            filter_subject: switchboard::log::subject::filter(Channel::Chat(channel)),
            deliver_policy: DeliverPolicy::New,
            ..Default::default()
        })
        .await
        .expect("a push consumer");
    let messages = consumer.messages().await.expect("its messages");
    let jsons = messages.map(|message| String::from_utf8(message.ok()?.payload.to_vec()).ok());
    time_events(events, jsons)
}

/// One side's figures. A full run prints its rates, latency and CPU; a
/// smoke run only what arrived, which is all its sizes can judge.
fn report(figures: &Figures, side: &str, cpu: &bench::CpuMeter) {
    if bench::full() {
        figures.print(side);
        println!("               {}", cpu.line());
    } else {
        println!(
            "  {side:<12} {} of {} deliveries, {} error frames",
            thousands(figures.delivered as f64),
            thousands(figures.expected as f64),
            figures.errors
        );
    }
}

// ----------------------------------------------------------------- the peer

/// A core NATS payload as large as a switchboard envelope, carrying the
/// send time: `{"t":NANOS,"p":"xxx…"}`.
fn peer_payload(sent: u64, size: usize) -> bytes::Bytes {
    let head = format!("{{\"t\":{sent},\"p\":\"");
    let pad = size.saturating_sub(head.len() + 2);
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(head.as_bytes());
    out.resize(head.len() + pad, b'x');
    out.extend_from_slice(b"\"}");
    bytes::Bytes::from(out)
}

fn peer_nanos(payload: &[u8]) -> Option<u64> {
    let rest = payload.strip_prefix(b"{\"t\":")?;
    let end = rest.iter().position(|b| !b.is_ascii_digit())?;
    std::str::from_utf8(&rest[..end]).ok()?.parse().ok()
}

fn find_crlf(buf: &[u8], from: usize) -> Option<usize> {
    buf[from..]
        .windows(2)
        .position(|w| w == b"\r\n")
        .map(|i| from + i)
}

/// Parses whole NATS protocol messages at the front of `buf` (a WebSocket
/// frame may hold several, or part of one). Calls `on_msg` per payload;
/// returns the bytes consumed and whether the server sent `PING`.
fn parse_nats(buf: &[u8], mut on_msg: impl FnMut(&[u8])) -> (usize, bool) {
    let (mut pos, mut ping) = (0, false);
    while let Some(eol) = find_crlf(buf, pos) {
        let line = &buf[pos..eol];
        if line.starts_with(b"MSG ") {
            let len: usize = std::str::from_utf8(line)
                .ok()
                .and_then(|l| l.rsplit(' ').next())
                .and_then(|n| n.parse().ok())
                .expect("MSG line ends with the payload size");
            let end = eol + 2 + len + 2;
            if end > buf.len() {
                break;
            }
            on_msg(&buf[eol + 2..eol + 2 + len]);
            pos = end;
        } else {
            ping |= line == b"PING";
            pos = eol + 2;
        }
    }
    (pos, ping)
}

/// A NATS client over nats-server's WebSocket listener, subscribed.
async fn peer_client(url: &str) -> Ws {
    let mut ws = bench::connect(url, CLIENT_READ_BUFFER).await;
    let connect = format!(
        "CONNECT {{\"verbose\":false,\"pedantic\":false,\"protocol\":1,\"headers\":false}}\r\nSUB {PEER_SUBJECT} 1\r\nPING\r\n"
    );
    ws.send(Message::Binary(connect.into_bytes().into()))
        .await
        .expect("send CONNECT");
    let mut buf = Vec::new();
    loop {
        let message = tokio::time::timeout(PATIENCE, ws.next())
            .await
            .expect("PONG in time")
            .expect("socket open")
            .expect("socket ok");
        match message {
            Message::Binary(b) => buf.extend_from_slice(&b),
            Message::Text(t) => buf.extend_from_slice(t.as_bytes()),
            _ => continue,
        }
        if buf.windows(6).any(|w| w == b"PONG\r\n") {
            return ws;
        }
        if buf.windows(5).any(|w| w == b"-ERR ") {
            panic!("nats-server refused: {}", String::from_utf8_lossy(&buf));
        }
    }
}

async fn read_peer(mut ws: Ws, expected: usize) -> Received {
    let mut got = Received {
        latencies: Vec::with_capacity(expected),
        last_at: 0,
        errors: 0,
    };
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut deadline = bench::deadline();
    while got.latencies.len() < expected {
        match bench::next_before(&mut ws, &mut deadline).await {
            Some(Message::Binary(b)) => buf.extend_from_slice(&b),
            Some(Message::Text(t)) => buf.extend_from_slice(t.as_bytes()),
            Some(_) => continue,
            None => break,
        }
        let now = now_nanos();
        let (used, ping) = parse_nats(&buf, |payload| {
            if let Some(sent) = peer_nanos(payload) {
                got.latencies.push(now.saturating_sub(sent));
                got.last_at = now;
            }
        });
        buf.drain(..used);
        if ping {
            let _ = ws.send(Message::Binary(b"PONG\r\n".to_vec().into())).await;
        }
    }
    let _ = ws.close(None).await;
    got
}

/// Publishes `events` core NATS messages: at full speed, or paced to
/// `pace` events/s (in 1 ms steps).
async fn publish_peer(
    publisher: &async_nats::Client,
    events: usize,
    size: usize,
    pace: Option<f64>,
) {
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut sent = 0;
    while sent < events {
        let due = match pace {
            None => events,
            Some(rate) => ((started.elapsed().as_secs_f64() * rate) as usize + 1).min(events),
        };
        while sent < due {
            publisher
                .publish(PEER_SUBJECT, peer_payload(now_nanos(), size))
                .await
                .expect("peer publish");
            sent += 1;
        }
        if sent < events {
            tick.tick().await;
        }
    }
    publisher.flush().await.expect("peer flush");
}

async fn peer(
    ws_url: &str,
    nats_url: &str,
    (clients, events): (usize, usize),
    size: usize,
    pace: Option<f64>,
) -> Figures {
    let publisher = async_nats::connect(nats_url).await.expect("peer publisher");
    let sockets: Vec<Ws> = futures::stream::iter(0..clients)
        .map(|_| peer_client(ws_url))
        .buffer_unordered(CONNECT_CONCURRENCY)
        .collect()
        .await;
    let readers: Vec<_> = sockets
        .into_iter()
        .map(|ws| tokio::spawn(read_peer(ws, events)))
        .collect();
    let started = now_nanos();
    let publish_started = Instant::now();
    publish_peer(&publisher, events, size, pace).await;
    let published = publish_started.elapsed();
    let got = futures::future::join_all(readers).await;
    let got = got.into_iter().map(|r| r.expect("reader")).collect();
    Figures::new((clients * events) as u64, events, started, published, got)
}

/// A free loopback port (bound, read and released).
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("local addr").port()
}

/// The size of the envelope a fan-out client receives.
fn envelope_size(channel: Id) -> usize {
    let event = bench::message(channel, now_nanos().to_string());
    StoredEvent {
        seq: 1_000_000,
        time: chrono::Utc::now(),
        id: event.id,
        channel: Channel::Chat(channel),
        data: event.data,
        raw_data: None,
    }
    .encode()
    .len()
}

// ----------------------------------------------------------------- memory

struct Memory {
    connections: usize,
    baseline: u64,
    checkpoint: (usize, u64),
    loaded: u64,
    /// Once every connection left (dropped without a close handshake).
    left: u64,
}

impl Memory {
    fn per_connection(&self) -> f64 {
        self.loaded.saturating_sub(self.baseline) as f64 / self.connections as f64
    }

    fn print(&self, idle: usize) {
        if !bench::full() {
            println!(
                "  {idle} connections subscribed, then left (memory per connection is judged at full size only)"
            );
            return;
        }
        println!(
            "  VmRSS {:.1} MiB idle -> {:.1} MiB at {} -> {:.1} MiB at {idle} connections",
            self.baseline as f64 / 1048576.0,
            self.checkpoint.1 as f64 / 1048576.0,
            self.checkpoint.0,
            self.loaded as f64 / 1048576.0
        );
        println!(
            "  {} bytes ({:.1} KiB) per idle connection (target <= 4 KiB); marginal {:.1} KiB from {} to {idle}",
            thousands(self.per_connection()),
            self.per_connection() / 1024.0,
            self.marginal() / 1024.0,
            self.checkpoint.0
        );
        println!(
            "  after they left: VmRSS {:.1} MiB, {:.0}% of what they added still resident (target <= {:.0}%)",
            self.left as f64 / 1048576.0,
            self.kept() * 100.0,
            KEPT_AFTER_LEAVING * 100.0
        );
    }

    fn json(&self) -> serde_json::Value {
        json!({
            "rss_baseline_bytes": self.baseline,
            "rss_loaded_bytes": self.loaded,
            "bytes_per_idle_connection": self.per_connection().round(),
            "marginal_bytes_per_idle_connection": self.marginal().round(),
            "rss_after_leaving_bytes": self.left,
            "kept_after_leaving": bench::round3(self.kept()),
        })
    }

    /// The share of the connections' memory still resident after they left.
    fn kept(&self) -> f64 {
        self.left.saturating_sub(self.baseline) as f64
            / self.loaded.saturating_sub(self.baseline).max(1) as f64
    }

    fn marginal(&self) -> f64 {
        let (n, rss) = self.checkpoint;
        self.loaded.saturating_sub(rss) as f64 / (self.connections - n).max(1) as f64
    }
}

/// Waits the seconds the variable `var` gives, if set, after printing the
/// gateway's pid and what happens next: time for a heap profiler to look.
async fn pause_for_profiler(var: &str, gateway: &Gateway, next: &str) {
    if let Some(pause) = std::env::var(var).ok().and_then(|s| s.parse().ok()) {
        println!("  (gateway pid {}: {next} in {pause} s)", gateway.pid());
        tokio::time::sleep(Duration::from_secs(pause)).await;
    }
}

/// `extra`: serve arguments (the session store).
async fn idle_memory(connections: usize, extra: &[&str]) -> Memory {
    let nats = bench::nats();
    let gateway = bench::gateway_with(&nats.url(), bench::BENCH_LOG, extra);
    tokio::time::sleep(SETTLE).await;
    let baseline = gateway.rss_bytes();
    let first = connections / 5;
    let mut sockets = delivery::connect_idle(&gateway, first, idle_refresh()).await;
    tokio::time::sleep(SETTLE).await;
    let checkpoint = (first, gateway.rss_bytes());
    sockets.extend(delivery::connect_idle(&gateway, connections - first, idle_refresh()).await);
    tokio::time::sleep(SETTLE).await;
    let loaded = gateway.rss_bytes();
    assert_eq!(sockets.len(), connections);
    pause_for_profiler("FANOUT_PAUSE", &gateway, "the connections leave").await;
    drop(sockets);
    tokio::time::sleep(GIVE_BACK).await;
    let left = gateway.rss_bytes();
    pause_for_profiler(
        "FANOUT_PAUSE_AFTER",
        &gateway,
        "the connections left; the gateway stops",
    )
    .await;
    Memory {
        connections,
        baseline,
        checkpoint,
        loaded,
        left,
    }
}

// ------------------------------------------------------------------- main

async fn run(scenarios: &[Scenario], idle: usize) {
    let results = if scenarios.is_empty() {
        Vec::new()
    } else {
        delivery_cases(scenarios).await
    };
    if idle == 0 {
        bench::print_json("fanout", json!({ "scenarios": results }));
    } else {
        idle_cases(idle, results).await;
    }
}

/// Cases (a) to (c), against the peer; their figures as JSON.
async fn delivery_cases(scenarios: &[Scenario]) -> Vec<serde_json::Value> {
    let nats = bench::nats();
    let log = bench::log(&nats).await;
    let gateway = bench::gateway(&nats.url());
    let ws_port = free_port();
    let peer_server = bench::NatsServer::start_with_config(&format!(
        "websocket {{\n  host: 127.0.0.1\n  port: {ws_port}\n  no_tls: true\n}}\n"
    ))
    .expect("peer nats-server with a WebSocket listener");
    let peer_ws = format!("ws://127.0.0.1:{ws_port}");
    let jetstream_pid = bench::nats_pid();
    let peer_pid = bench::nats_children()
        .into_iter()
        .find(|(_, with_config)| *with_config)
        .map_or(0, |(pid, _)| pid);
    let ours_procs = [("gateway", gateway.pid()), ("nats-server", jetstream_pid)];
    let peer_procs = [("nats-server", peer_pid)];
    let size = envelope_size(Id::new_v4());
    println!(
        "fanout: one channel, N clients, switchboard (gateway binary, Log::store with up to {} acks in flight) vs nats-server {} WebSocket (core NATS publish at full speed, and paced to switchboard's publish rate), payload {size} B [{} mode]",
        bench::IN_FLIGHT,
        peer_server.port(),
        bench::mode()
    );
    let mut results = Vec::new();
    for &(clients, events, pace) in scenarios {
        let how = pace.map_or("as fast as each side publishes".to_string(), |r| {
            format!("both sides paced to {} events/s", thousands(r))
        });
        println!(
            "{clients} clients x {} events ({} deliveries), {how}:",
            thousands(events as f64),
            thousands((clients * events) as f64)
        );
        let shape = (clients, events);
        let cpu = bench::CpuMeter::start(&ours_procs);
        let (ours, hops) = switchboard(&gateway, &log, &nats.url(), shape, pace).await;
        report(&ours, "switchboard", &cpu);
        if let Some(hops) = &hops {
            report(&hops.pull, "log hop pull", &cpu);
            report(&hops.push, "log hop push", &cpu);
        }
        if !bench::full() {
            assert!(
                ours.complete(),
                "switchboard, {clients} clients: {}",
                ours.shortfall().unwrap_or_default()
            );
            if let Some(hops) = &hops {
                for (how, hop) in [("pull", &hops.pull), ("push", &hops.push)] {
                    assert!(
                        hop.complete(),
                        "the log's {how} reader: {}",
                        hop.shortfall().unwrap_or_default()
                    );
                }
            }
        }
        let mut figures = json!({
            "clients": clients,
            "events": events,
            "pace_per_s": pace,
            "switchboard": ours.json(),
            "cpu_switchboard": cpu.json(),
        });
        if let Some(hops) = &hops {
            figures["log_hop_pull"] = hops.pull.json();
            figures["log_hop_push"] = hops.push.json();
        }
        let mut peers = Vec::new();
        if pace.is_none() {
            let cpu = bench::CpuMeter::start(&peer_procs);
            let flood = peer(&peer_ws, &peer_server.url(), shape, size, None).await;
            report(&flood, "nats-server", &cpu);
            figures["nats_ws"] = flood.json();
            figures["cpu_nats_ws"] = cpu.json();
            peers.push(("full speed", flood));
        }
        // The peer at the same publish rate as switchboard: the same offered load.
        let matched = pace.unwrap_or(ours.published_per_s);
        let cpu = bench::CpuMeter::start(&peer_procs);
        let paced = peer(&peer_ws, &peer_server.url(), shape, size, Some(matched)).await;
        report(&paced, "nats paced", &cpu);
        figures["nats_ws_paced"] = paced.json();
        figures["nats_ws_paced_to_per_s"] = matched.round().into();
        figures["cpu_nats_ws_paced"] = cpu.json();
        peers.push(("paced", paced));
        // The ratios to the peer mean something at full size only.
        let compared: &[_] = if bench::full() { &peers } else { &[] };
        for (name, theirs) in compared {
            println!(
                "  switchboard vs nats-server {name}: delivered {:.2}x, p99 {:.2}x",
                ours.delivered_per_s / theirs.delivered_per_s.max(1e-9),
                ours.p99_ms / theirs.p99_ms.max(1e-9)
            );
            for (how, hop) in hops
                .iter()
                .flat_map(|h| [("pull", &h.pull), ("push", &h.push)])
            {
                println!(
                    "  the log hop alone ({how}) vs nats-server {name}: p50 {:.2}x, p99 {:.2}x",
                    hop.p50_ms / theirs.p50_ms.max(1e-9),
                    hop.p99_ms / theirs.p99_ms.max(1e-9),
                );
            }
        }
        // The goal: at full speed against the peer at its full speed; paced,
        // latency against the peer at the same rate.
        if let Some((_, theirs)) = peers.first() {
            if pace.is_none() {
                let ratio = ours.delivered_per_s / theirs.delivered_per_s.max(1e-9);
                bench::verdict(
                    &format!("fan-out to {clients} clients"),
                    ratio >= DELIVERED_VS_PEER && ours.complete(),
                    &format!("delivered >= {DELIVERED_VS_PEER}x the peer's"),
                );
            } else {
                let ratio = ours.p99_ms / theirs.p99_ms.max(1e-9);
                bench::verdict(
                    &format!("p99 latency at {} events/s", thousands(matched)),
                    ratio <= P99_VS_PEER && ours.complete(),
                    &format!("p99 <= {P99_VS_PEER}x the peer's"),
                );
            }
        }
        results.push(figures);
    }
    drop(gateway);
    drop(peer_server);
    drop(nats);
    results
}

/// Case (d): `idle` idle subscribed connections on a fresh gateway, with
/// sessions in sled and in the bucket; prints every figure as JSON with
/// `results`, the other cases'.
async fn idle_cases(idle: usize, results: Vec<serde_json::Value>) {
    let future_bytes = switchboard::gateway::connection::task_bytes();
    let mut memories = Vec::new();
    for (store, extra) in [("sled", &[][..]), ("kv", &["--session-store", "kv"][..])] {
        let refreshed = if idle_refresh() {
            " and refreshed its token once"
        } else {
            ""
        };
        println!(
            "(d) idle memory: {idle} connections, each subscribed to its own channel{refreshed} (gateway binary, sessions in {store}):"
        );
        let memory = idle_memory(idle, extra).await;
        memory.print(idle);
        assert!(
            memory.baseline > 0 && memory.loaded > 0,
            "the gateway's RSS was read"
        );
        memories.push((store, memory));
    }
    if bench::full() {
        println!(
            "  a connection task's future is {} bytes; the difference between the two is sled's copy of each session (kept for the session's life, not the connection's)",
            thousands(future_bytes as f64)
        );
    } else {
        println!(
            "  a connection task's future is {} bytes",
            thousands(future_bytes as f64)
        );
    }
    for (store, memory) in &memories {
        bench::verdict(
            &format!("idle connection memory, sessions in {store},"),
            memory.per_connection() <= IDLE_BYTES,
            "<= 4 KiB per connection",
        );
        bench::verdict(
            &format!("memory given back, sessions in {store},"),
            memory.kept() <= KEPT_AFTER_LEAVING,
            &format!(
                "<= {:.0}% of it resident after they left",
                KEPT_AFTER_LEAVING * 100.0
            ),
        );
    }
    let memory_json: serde_json::Map<String, serde_json::Value> = memories
        .iter()
        .map(|(store, m)| ((*store).to_string(), m.json()))
        .collect();
    bench::print_json(
        "fanout",
        json!({
            "payload_bytes": envelope_size(Id::new_v4()),
            "scenarios": results,
            "idle_connections": idle,
            "idle_refreshed": idle_refresh(),
            "idle_memory": memory_json,
            "target_bytes_per_idle_connection": IDLE_BYTES,
            "connection_future_bytes": future_bytes,
        }),
    );
}
