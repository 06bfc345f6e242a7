//! Live delivery to many subscribers through the gateway, shared by
//! `fanout` and `sweep`: how subscribers are laid over channels and
//! connections, connecting and subscribing them, reading events with their
//! publish-to-receive latency, and the figures of one run (delivered/s,
//! percentiles); also idle subscribed connections and the open-files check.

use std::cell::Cell;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::json;
use switchboard::channel::{Channel, Id};
use switchboard::log::Log;
use switchboard::token::Grant;
use tokio_tungstenite::tungstenite::Message;

use super::{ms, now_nanos, percentile, rate, thousands, Gateway, Ws};
use crate::token;

/// tungstenite's default client read buffer (what a typical client has).
pub const CLIENT_READ_BUFFER: usize = 128 * 1024;

/// Idle clients read nothing: a small buffer keeps the bench process small.
pub const IDLE_READ_BUFFER: usize = 4 * 1024;

/// Clients connecting at once.
pub const CONNECT_CONCURRENCY: usize = 64;

/// What one client saw.
pub struct Received {
    /// Publish-to-receive latency of every event, in nanoseconds.
    pub latencies: Vec<u64>,
    /// When the last event arrived (nanoseconds since the epoch).
    pub last_at: u64,
    /// `error` frames received.
    pub errors: u64,
}

/// One side's figures for one run.
pub struct Figures {
    /// Deliveries expected (events × their subscribers).
    pub expected: u64,
    pub delivered: u64,
    pub delivered_per_s: f64,
    pub published_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// `error` frames the clients received.
    pub errors: u64,
}

impl Figures {
    /// `events` were published from `started` (nanoseconds since the epoch)
    /// for `published`; delivered/s is all receipts / (last receipt -
    /// `started`).
    pub fn new(
        expected: u64,
        events: usize,
        started: u64,
        published: Duration,
        got: Vec<Received>,
    ) -> Figures {
        let last = got.iter().map(|r| r.last_at).max().unwrap_or(started);
        let errors = got.iter().map(|r| r.errors).sum();
        let mut latencies: Vec<u64> = got.into_iter().flat_map(|r| r.latencies).collect();
        latencies.sort_unstable();
        let delivered = latencies.len() as u64;
        Figures {
            expected,
            delivered,
            delivered_per_s: rate(
                delivered,
                Duration::from_nanos(last.saturating_sub(started)),
            ),
            published_per_s: rate(events as u64, published),
            p50_ms: ms(percentile(&latencies, 50.0)),
            p99_ms: ms(percentile(&latencies, 99.0)),
            max_ms: ms(latencies.last().copied().unwrap_or(0)),
            errors,
        }
    }

    /// Every expected event arrived and no client was sent an `error`.
    pub fn complete(&self) -> bool {
        self.delivered == self.expected && self.errors == 0
    }

    /// What is missing, for a report: `None` when [`Self::complete`].
    pub fn shortfall(&self) -> Option<String> {
        (!self.complete()).then(|| {
            format!(
                "INCOMPLETE: {} of {}, {} errors",
                self.delivered, self.expected, self.errors
            )
        })
    }

    pub fn print(&self, side: &str) {
        let missing = self
            .shortfall()
            .map_or(String::new(), |s| format!("  ({s})"));
        println!(
            "  {side:<12} delivered {:>10} events/s   latency p50 {:>8.2} ms  p99 {:>8.2} ms  max {:>8.2} ms   published {:>9} events/s{missing}",
            thousands(self.delivered_per_s),
            self.p50_ms,
            self.p99_ms,
            self.max_ms,
            thousands(self.published_per_s),
        );
    }

    pub fn json(&self) -> serde_json::Value {
        json!({
            "delivered": self.delivered,
            "delivered_per_s": self.delivered_per_s.round(),
            "published_per_s": self.published_per_s.round(),
            "p50_ms": super::round3(self.p50_ms),
            "p99_ms": super::round3(self.p99_ms),
            "max_ms": super::round3(self.max_ms),
            "errors": self.errors,
        })
    }
}

/// The decimal nanoseconds in a chat event's `data.content`.
pub fn content_nanos(frame: &str) -> Option<u64> {
    const KEY: &str = "\"content\":\"";
    let start = frame.find(KEY)? + KEY.len();
    let digits = &frame[start..];
    let end = digits.find('"')?;
    digits[..end].parse().ok()
}

/// Reads `expected` events stamped by their publisher (`data.content`) and
/// gives the socket back; stops early when the socket ends or
/// [`super::PATIENCE`] passes.
pub async fn read_switchboard(mut ws: Ws, expected: usize) -> (Received, Ws) {
    let mut got = Received {
        latencies: Vec::with_capacity(expected),
        last_at: 0,
        errors: 0,
    };
    let mut deadline = super::deadline();
    while got.latencies.len() < expected {
        match super::next_before(&mut ws, &mut deadline).await {
            Some(Message::Text(text)) => {
                if let Some(sent) = content_nanos(&text) {
                    let now = now_nanos();
                    got.latencies.push(now.saturating_sub(sent));
                    got.last_at = now;
                } else if super::control_type(&text).as_deref() == Some("error") {
                    got.errors += 1;
                }
            }
            Some(_) => {}
            None => break,
        }
    }
    (got, ws)
}

/// How subscribers sit on channels and connections: `channels` channels
/// with `per_channel` subscribers each, every connection subscribed to
/// `per_connection` of them.
#[derive(Clone, Copy, Debug)]
pub struct Layout {
    pub channels: usize,
    pub per_channel: usize,
    pub per_connection: usize,
}

impl Layout {
    /// `clients` connections on one channel.
    pub fn one_channel(clients: usize) -> Layout {
        Layout {
            channels: 1,
            per_channel: clients,
            per_connection: 1,
        }
    }

    /// Subscriptions in all.
    pub fn subscriptions(&self) -> usize {
        self.channels * self.per_channel
    }

    pub fn connections(&self) -> usize {
        self.subscriptions() / self.per_connection.max(1)
    }

    /// The channels (by index) of connection `i`: `per_connection`
    /// consecutive ones, wrapping, so that every channel gets exactly
    /// `per_channel` subscribers.
    pub fn channels_of(&self, i: usize) -> impl Iterator<Item = usize> + '_ {
        (0..self.per_connection).map(move |j| (i * self.per_connection + j) % self.channels)
    }

    /// The events of channel `c` when `events` are published round-robin
    /// over the channels (event `e` to channel `e % channels`).
    pub fn events_of(&self, c: usize, events: usize) -> usize {
        events / self.channels + usize::from(c < events % self.channels)
    }
}

/// Subscribed connections laid out by a [`Layout`], with their channels.
pub struct Subscribers {
    pub layout: Layout,
    pub channels: Vec<Id>,
    /// Connection `i` of the layout at index `i`.
    sockets: Vec<Ws>,
}

impl Subscribers {
    /// Connects `layout.connections()` clients ([`CONNECT_CONCURRENCY`] at
    /// once), each with a token for its channels, and subscribes each to its
    /// channels live (all `subscribe` frames sent, then every `subscribed`
    /// awaited).
    pub async fn connect(gateway: &Gateway, layout: Layout) -> Subscribers {
        assert!(
            layout.per_connection >= 1
                && layout.per_connection <= layout.channels
                && layout.subscriptions().is_multiple_of(layout.per_connection),
            "a layout whose connections hold distinct channels: {layout:?}"
        );
        let channels: Vec<Id> = (0..layout.channels).map(|_| Id::new_v4()).collect();
        let channels_ref = &channels;
        let sockets = futures::stream::iter(0..layout.connections())
            .map(|i| async move {
                let mine: Vec<Id> = layout.channels_of(i).map(|c| channels_ref[c]).collect();
                let token = token(Id::new_v4(), Grant::Some(mine.clone()), &[]);
                let mut ws =
                    super::connect_gateway(&gateway.ws_url(&token), CLIENT_READ_BUFFER).await;
                let mine: Vec<Channel> = mine.into_iter().map(Channel::Chat).collect();
                super::subscribe_all(&mut ws, &mine).await;
                ws
            })
            // In order: socket `i` is connection `i`, whose expected
            // events `deliver` counts from its channels.
            .buffered(CONNECT_CONCURRENCY)
            .collect()
            .await;
        Subscribers {
            layout,
            channels,
            sockets,
        }
    }

    /// Publishes `events` round-robin over the channels, as fast as
    /// `Log::store` goes (`pace` `None`) or paced to `pace` events/s, and
    /// reads them on every connection.
    pub async fn deliver(&mut self, log: &Log, events: usize, pace: Option<f64>) -> Figures {
        let layout = self.layout;
        let expected_of = |i: usize| -> usize {
            layout
                .channels_of(i)
                .map(|c| layout.events_of(c, events))
                .sum()
        };
        let readers: Vec<_> = std::mem::take(&mut self.sockets)
            .into_iter()
            .enumerate()
            .map(|(i, ws)| tokio::spawn(read_switchboard(ws, expected_of(i))))
            .collect();
        let expected = (0..layout.connections()).map(expected_of).sum::<usize>() as u64;
        let started = now_nanos();
        let publish_started = Instant::now();
        match pace {
            None => {
                super::store_spread(log, &self.channels, events).await;
            }
            Some(pace) => {
                let next = Cell::new(0usize);
                super::store_paced(log, events, pace, || {
                    let e = next.replace(next.get() + 1);
                    super::message(
                        self.channels[e % self.channels.len()],
                        now_nanos().to_string(),
                    )
                })
                .await
            }
        }
        let published = publish_started.elapsed();
        let mut got = Vec::with_capacity(readers.len());
        for reader in futures::future::join_all(readers).await {
            let (received, ws) = reader.expect("reader");
            got.push(received);
            self.sockets.push(ws);
        }
        Figures::new(expected, events, started, published, got)
    }

    /// Closes every connection ([`CONNECT_CONCURRENCY`] at once).
    pub async fn close(self) {
        futures::stream::iter(self.sockets)
            .for_each_concurrent(CONNECT_CONCURRENCY, |mut ws| async move {
                let _ = ws.close(None).await;
            })
            .await;
    }
}

/// A subscribed connection with its own channel; with `refresh`, it then
/// replaces its token once (`refresh`, answered by `refreshed`), as a
/// browser does before its token expires.
pub async fn idle_client(gateway: &Gateway, refresh: bool) -> Ws {
    let channel = Id::new_v4();
    let user = Id::new_v4();
    let mut ws = super::connect_gateway(
        &gateway.ws_url(&token(user, Grant::All, &[])),
        IDLE_READ_BUFFER,
    )
    .await;
    super::subscribe_live(&mut ws, Channel::Chat(channel)).await;
    if refresh {
        let frame = serde_json::json!({"type": "refresh", "token": token(user, Grant::All, &[])});
        ws.send(Message::Text(frame.to_string().into()))
            .await
            .expect("send refresh");
        let answer = super::next_text(&mut ws).await;
        assert_eq!(
            super::control_type(&answer).as_deref(),
            Some("refreshed"),
            "{answer}"
        );
    }
    ws
}

/// `n` idle subscribed connections ([`CONNECT_CONCURRENCY`] connecting at
/// once), each refreshing its token once with `refresh`.
pub async fn connect_idle(gateway: &Gateway, n: usize, refresh: bool) -> Vec<Ws> {
    futures::stream::iter(0..n)
        .map(|_| idle_client(gateway, refresh))
        .buffer_unordered(CONNECT_CONCURRENCY)
        .collect()
        .await
}

/// The soft limit on open files (`ulimit -n`), from /proc.
pub fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// Panics, saying how to fix it, when this process cannot open
/// `connections` sockets (it and the gateway each hold a descriptor per
/// connection, under the same per-process limit).
pub fn require_open_files(connections: usize, bench: &str) {
    let needed = connections as u64 + 256;
    if let Some(limit) = open_files_limit().filter(|&limit| limit < needed) {
        panic!(
            "the open-files limit is {limit}, too low for {connections} connections (need {needed}): \
             raise it first, e.g. `ulimit -n 65536 && cargo bench --bench {bench}`"
        );
    }
}
