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
//! 2,000 idle subscribed connections for the memory figure. Without
//! `--bench` (as `cargo test --all-targets` runs it): 10 subscribers, 50
//! messages, 50 idle connections.

use switchboard_harness::bench;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use flate2::{Decompress, FlushDecompress};
use futures::StreamExt;
use switchboard::channel::{Channel, Id};
use switchboard::log::Log;
use switchboard::token::Grant;
use switchboard_harness::Gateway;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

const OFFER: &str = "permessage-deflate; client_max_window_bits";
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

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

    let plain_idle = idle_cost(&gateway, idle, false).await;
    let deflate_idle = idle_cost(&gateway, idle, true).await;
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

/// The gateway's resident memory per idle subscribed connection, in KiB,
/// over `n` connections that do or do not offer the extension (each
/// subscription's `subscribed` came compressed or not).
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
struct Raw {
    read: OwnedReadHalf,
    write: OwnedWriteHalf,
    input: Vec<u8>,
}

impl Raw {
    /// Connected (offering the extension or not) and subscribed to
    /// `channel`, its `subscribed` answer read.
    async fn subscribed(gateway: &Gateway, channel: Channel, offer: bool) -> Raw {
        let token = bench::token(Id::new_v4(), Grant::All, &[]);
        let stream = TcpStream::connect(gateway.addr).await.expect("connect");
        let (read, write) = stream.into_split();
        let mut raw = Raw {
            read,
            write,
            input: Vec::with_capacity(64 * 1024),
        };
        let offer = if offer {
            format!("Sec-WebSocket-Extensions: {OFFER}\r\n")
        } else {
            String::new()
        };
        let request = format!(
            "GET /v1/ws?token={token} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n{offer}\r\n",
            gateway.addr
        );
        raw.write
            .write_all(request.as_bytes())
            .await
            .expect("upgrade sent");
        let head_end = loop {
            if let Some(i) = raw.input.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            raw.fill().await;
        };
        let head = String::from_utf8_lossy(&raw.input[..head_end]).to_lowercase();
        assert!(head.starts_with("http/1.1 101"), "{head}");
        assert_eq!(
            !offer.is_empty(),
            head.contains("permessage-deflate"),
            "the offer is accepted"
        );
        raw.input.drain(..head_end);
        let subscribe =
            serde_json::json!({"type": "subscribe", "channel": channel.to_string()}).to_string();
        raw.write
            .write_all(&masked(0x1, subscribe.as_bytes()))
            .await
            .expect("subscribe sent");
        let mut inflater = Decompress::new(false);
        loop {
            let (text, _) = raw.next_text(&mut inflater, None).await;
            // Connection-level frames put `type` after `data`.
            let frame: serde_json::Value = serde_json::from_slice(&text).expect("JSON");
            if frame["type"] == "subscribed" {
                return raw;
            }
        }
    }

    async fn fill(&mut self) -> usize {
        self.input.reserve(16 * 1024);
        let n = tokio::time::timeout(bench::PATIENCE, self.read.read_buf(&mut self.input))
            .await
            .expect("the gateway sends in time")
            .expect("read");
        assert!(n > 0, "the gateway closed the socket");
        n
    }

    /// The next text message, inflated when it came compressed, and
    /// whether it did; pings are answered on the way, and every byte read
    /// is counted in `counts`.
    async fn next_text(
        &mut self,
        inflater: &mut Decompress,
        counts: Option<&Counts>,
    ) -> (Vec<u8>, bool) {
        loop {
            if let Some((b0, payload, used)) = frame(&self.input) {
                self.input.drain(..used);
                match b0 & 0x0f {
                    0x1 if b0 & 0x40 != 0 => return (inflate(inflater, &payload), true),
                    0x1 => return (payload, false),
                    0x9 => {
                        let _ = self.write.write_all(&masked(0xA, &payload)).await;
                    }
                    0x8 => panic!("the gateway closed: {payload:?}"),
                    _ => {}
                }
                continue;
            }
            let n = self.fill().await;
            if let Some(counts) = counts {
                counts.wire.fetch_add(n as u64, Ordering::Relaxed);
            }
        }
    }

    /// Reads until `events` chat messages arrived, counting them.
    async fn read_events(mut self, events: usize, counts: Arc<Counts>) {
        let mut inflater = Decompress::new(false);
        let mut got = 0;
        while got < events {
            let (text, compressed) = self.next_text(&mut inflater, Some(&counts)).await;
            if text.starts_with(br#"{"type":"channel_message""#) {
                got += 1;
                counts.events.fetch_add(1, Ordering::Relaxed);
                counts.json.fetch_add(text.len() as u64, Ordering::Relaxed);
                counts
                    .compressed
                    .fetch_add(u64::from(compressed), Ordering::Relaxed);
            }
        }
    }
}

/// A masked, final client frame.
fn masked(opcode: u8, payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() < 126, "client frames here are small");
    let mask = [0x5a, 0x17, 0xc3, 0x08];
    let mut out = vec![0x80 | opcode, 0x80 | payload.len() as u8];
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// One server frame from the start of `input`: its first byte, payload and
/// length on the wire.
fn frame(input: &[u8]) -> Option<(u8, Vec<u8>, usize)> {
    let b0 = *input.first()?;
    let (len, at) = match *input.get(1)? & 0x7f {
        126 => (
            u16::from_be_bytes([*input.get(2)?, *input.get(3)?]) as usize,
            4,
        ),
        127 => {
            let bytes: [u8; 8] = input.get(2..10)?.try_into().ok()?;
            (u64::from_be_bytes(bytes) as usize, 10)
        }
        n => (n as usize, 2),
    };
    let payload = input.get(at..at + len)?.to_vec();
    Some((b0, payload, at + len))
}

/// A compressed message's payload inflated, on an inflater reset for it.
fn inflate(inflater: &mut Decompress, payload: &[u8]) -> Vec<u8> {
    inflater.reset(false);
    let mut input = payload.to_vec();
    input.extend_from_slice(&TAIL);
    let mut out = Vec::with_capacity(payload.len() * 8 + 256);
    loop {
        let before = inflater.total_in();
        inflater
            .decompress_vec(&input[(before as usize)..], &mut out, FlushDecompress::Sync)
            .expect("the gateway's frames inflate");
        if inflater.total_in() as usize == input.len() && out.len() < out.capacity() {
            return out;
        }
        out.reserve(out.capacity());
    }
}
