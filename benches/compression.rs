//! `permessage-deflate` on the wire: the same chat messages fanned out to
//! subscribers that offer the extension and to subscribers that do not,
//! and what each costs: bytes on the wire per delivered event, deliveries
//! per second, the gateway's CPU time, and the resident memory an idle
//! subscribed connection adds either way.
//!
//! The load tool's clients are raw sockets: a client that offered the
//! extension inflates every compressed frame it gets (one inflater per
//! client, reset per message, as the negotiated no context takeover
//! allows) and checks the JSON is an envelope; bytes are counted as read
//! from the socket, frame headers included.
//!
//! `cargo bench --bench compression`: 1,000 subscribers of one chat
//! channel, 2,000 chat messages each run, stored as fast as acks allow;
//! 2,000 idle subscribed connections on a fresh gateway each way for the
//! memory figure. Without
//! `--bench` (as `cargo test --all-targets` runs it): 10 subscribers, 50
//! messages, 50 idle connections.

use switchboard_harness::bench;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use flate2::Decompress;
use futures::StreamExt;
use switchboard::channel::{Channel, Id};
use switchboard::log::Log;
use switchboard::token::Grant;
use switchboard_harness::raw::{
    client_frame, inflate, RawSocket, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT,
};
use switchboard_harness::Gateway;

const OFFER: &str = "permessage-deflate; client_max_window_bits";

/// Chat lines the messages are made of, as people write them.
const LINES: [&str; 8] = [
    "ok, see you at the standup tomorrow",
    "did anyone look at the deploy logs from last night? the second node restarted twice",
    "lol",
    "I pushed a fix for the login redirect, can someone review it before lunch?",
    "thanks! 🙏",
    "the meeting moved to 3pm, same room",
    "Here's the summary: latency is fine, memory went down by a third, and the dashboards are updated.",
    "brb",
];

fn main() {
    let (clients, events, idle) = if bench::full() {
        (1_000, 2_000, 2_000)
    } else {
        (10, 50, 50)
    };
    bench::runtime().block_on(run(clients, events, idle));
}

async fn run(clients: usize, events: usize, idle: usize) {
    bench::raise_open_files_limit();
    let nats = bench::nats();
    let gateway = bench::gateway(&nats.url());
    let log = bench::log(&nats).await;
    println!(
        "compression ({}): {clients} subscribers, {events} chat messages per run",
        bench::mode()
    );
    let mut runs = Vec::new();
    for offer in [false, true] {
        let figures = fan_out(&gateway, &log, clients, events, offer).await;
        figures.print();
        runs.push(figures);
    }
    let (plain, deflated) = (&runs[0], &runs[1]);
    let ratio = plain.wire_per_event / deflated.wire_per_event;
    println!("  wire bytes: {ratio:.2} times fewer with permessage-deflate");
    // The same envelopes either way, but for the digits of their times.
    assert!(
        (plain.json_per_event - deflated.json_per_event).abs() < plain.json_per_event * 0.01,
        "the same JSON either way: {} and {} bytes",
        plain.json_per_event,
        deflated.json_per_event
    );
    assert!(ratio > 1.5, "chat envelopes shrink: {ratio:.2}");

    // Each on a fresh gateway: one that just ran the fan-outs serves new
    // connections from the memory those freed.
    drop(gateway);
    let mut idle_kib = Vec::new();
    for offer in [false, true] {
        let fresh = bench::gateway(&nats.url());
        idle_kib.push(idle_cost(&fresh, idle, offer).await);
    }
    let (plain_idle, deflate_idle) = (idle_kib[0], idle_kib[1]);
    println!(
        "  idle subscribed connection: {plain_idle:.2} KiB RSS without, {deflate_idle:.2} KiB with permessage-deflate ({idle} each)"
    );
    bench::print_json(
        "compression",
        serde_json::json!({
            "mode": bench::mode(),
            "subscribers": clients,
            "events": events,
            "plain": plain.json(),
            "deflate": deflated.json(),
            "wire_ratio": bench::round3(ratio),
            "idle_connections": idle,
            "idle_kib_plain": bench::round3(plain_idle),
            "idle_kib_deflate": bench::round3(deflate_idle),
        }),
    );
}

struct Figures {
    offer: bool,
    /// Bytes read from the socket per delivered event, headers included.
    wire_per_event: f64,
    /// The envelope's JSON bytes per delivered event.
    json_per_event: f64,
    /// Deliveries (events times subscribers) per second.
    delivered_per_s: f64,
    /// The share of frames that came compressed.
    compressed_share: f64,
    /// The gateway's CPU seconds for the run.
    gateway_cpu_s: f64,
}

impl Figures {
    fn print(&self) {
        println!(
            "  {:<28} {:>7.1} wire B/event ({:.1} B JSON, {:.0}% compressed)  {:>10} delivered/s  gateway CPU {:.2} s",
            if self.offer {
                "with permessage-deflate:"
            } else {
                "without:"
            },
            self.wire_per_event,
            self.json_per_event,
            self.compressed_share * 100.0,
            bench::thousands(self.delivered_per_s),
            self.gateway_cpu_s,
        );
    }

    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "wire_bytes_per_event": bench::round1(self.wire_per_event),
            "json_bytes_per_event": bench::round1(self.json_per_event),
            "delivered_per_s": self.delivered_per_s.round(),
            "compressed_share": bench::round3(self.compressed_share),
            "gateway_cpu_s": bench::round3(self.gateway_cpu_s),
        })
    }
}

/// What the clients of one run count together.
#[derive(Default)]
struct Counts {
    wire: AtomicU64,
    json: AtomicU64,
    events: AtomicU64,
    compressed: AtomicU64,
}

async fn fan_out(
    gateway: &Gateway,
    log: &Log,
    clients: usize,
    events: usize,
    offer: bool,
) -> Figures {
    let channel = Id::new_v4();
    let counts = Arc::new(Counts::default());
    let mut readers = Vec::with_capacity(clients);
    let connected: Vec<Raw> = futures::stream::iter(0..clients)
        .map(|_| Raw::subscribed(gateway, Channel::Chat(channel), offer))
        .buffer_unordered(64)
        .collect()
        .await;
    let cpu_before = bench::cpu_seconds(gateway.pid());
    let started = Instant::now();
    for raw in connected {
        readers.push(tokio::spawn(raw.read_events(events, counts.clone())));
    }
    let store = futures::stream::iter(0..events)
        .map(|i| {
            let line = LINES[i % LINES.len()];
            let event = bench::message(channel, format!("{} {line}", bench::now_nanos()));
            async move { log.store(&event).await.expect("store") }
        })
        .buffer_unordered(bench::IN_FLIGHT)
        .collect::<Vec<_>>();
    store.await;
    for reader in readers {
        tokio::time::timeout(bench::PATIENCE, reader)
            .await
            .expect("every subscriber gets every event in time")
            .expect("reader ran");
    }
    let elapsed = started.elapsed();
    let gateway_cpu_s = bench::cpu_seconds(gateway.pid()) - cpu_before;
    let delivered = counts.events.load(Ordering::Relaxed) as f64;
    assert_eq!(
        delivered as usize,
        clients * events,
        "every delivery counted"
    );
    Figures {
        offer,
        wire_per_event: counts.wire.load(Ordering::Relaxed) as f64 / delivered,
        json_per_event: counts.json.load(Ordering::Relaxed) as f64 / delivered,
        delivered_per_s: bench::rate(delivered as u64, elapsed),
        compressed_share: counts.compressed.load(Ordering::Relaxed) as f64 / delivered,
        gateway_cpu_s,
    }
}

/// The resident memory per idle subscribed connection of a fresh gateway,
/// in KiB, over `n` connections that do or do not offer the extension
/// (each subscription's `subscribed` came compressed or not).
async fn idle_cost(gateway: &Gateway, n: usize, offer: bool) -> f64 {
    let settle = || tokio::time::sleep(Duration::from_millis(500));
    settle().await;
    let before = gateway.rss_bytes();
    let sockets: Vec<Raw> = futures::stream::iter(0..n)
        .map(|_| Raw::subscribed(gateway, Channel::Global, offer))
        .buffer_unordered(64)
        .collect()
        .await;
    settle().await;
    let after = gateway.rss_bytes();
    drop(sockets);
    gateway.wait_for_no_connections().await;
    (after.saturating_sub(before)) as f64 / n as f64 / 1024.0
}

/// A load client on a raw socket.
struct Raw(RawSocket);

impl Raw {
    /// Connected (offering the extension or not) and subscribed to
    /// `channel`, its `subscribed` answer read.
    async fn subscribed(gateway: &Gateway, channel: Channel, offer: bool) -> Raw {
        let token = bench::token(Id::new_v4(), Grant::All, &[]);
        let socket = RawSocket::connect(
            gateway.addr,
            &format!("token={token}"),
            offer.then_some(OFFER),
        )
        .await;
        assert_eq!(
            offer,
            socket
                .extensions
                .as_deref()
                .is_some_and(|e| e.contains("permessage-deflate")),
            "the offer is accepted"
        );
        let mut raw = Raw(socket);
        let subscribe =
            serde_json::json!({"type": "subscribe", "channel": channel.to_string()}).to_string();
        raw.0
            .send(&client_frame(true, 0, OP_TEXT, subscribe.as_bytes()))
            .await;
        let mut inflater = Decompress::new(false);
        loop {
            let (text, _) = raw.next_text(&mut inflater).await;
            // Connection-level frames put `type` after `data`.
            let frame: serde_json::Value = serde_json::from_slice(&text).expect("JSON");
            if frame["type"] == "subscribed" {
                return raw;
            }
        }
    }

    /// The next text message, inflated when it came compressed, and
    /// whether it did; pings are answered on the way.
    async fn next_text(&mut self, inflater: &mut Decompress) -> (Vec<u8>, bool) {
        loop {
            let frame = self
                .0
                .next_frame()
                .await
                .expect("the gateway keeps the socket open");
            match frame.opcode {
                OP_TEXT if frame.compressed() => return (inflate(inflater, &frame.payload), true),
                OP_TEXT => return (frame.payload, false),
                OP_PING => {
                    self.0
                        .send(&client_frame(true, 0, OP_PONG, &frame.payload))
                        .await;
                }
                OP_CLOSE => panic!("the gateway closed: {:?}", frame.close_code()),
                _ => {}
            }
        }
    }

    /// Reads until `events` chat messages arrived, counting them and every
    /// byte read meanwhile.
    async fn read_events(mut self, events: usize, counts: Arc<Counts>) {
        let mut inflater = Decompress::new(false);
        let read_before = self.0.read_bytes;
        let mut got = 0;
        while got < events {
            let (text, compressed) = self.next_text(&mut inflater).await;
            if text.starts_with(br#"{"type":"channel_message""#) {
                got += 1;
                counts.events.fetch_add(1, Ordering::Relaxed);
                counts.json.fetch_add(text.len() as u64, Ordering::Relaxed);
                counts
                    .compressed
                    .fetch_add(u64::from(compressed), Ordering::Relaxed);
            }
        }
        counts
            .wire
            .fetch_add(self.0.read_bytes - read_before, Ordering::Relaxed);
    }
}
