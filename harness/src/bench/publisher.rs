//! Load on the log: events stored as fast as acks allow ([`IN_FLIGHT`] in
//! flight), paced to a rate, or round-robin with every receipt kept; each
//! chat message carries its publish time (`data.content`, nanoseconds).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use switchboard::channel::Id;
use switchboard::event::Event;
use switchboard::log::Log;

use crate::message;

/// Acks kept in flight by the benches' publishers.
pub const IN_FLIGHT: usize = 256;

/// Wall-clock nanoseconds: publishers stamp events with it and clients
/// subtract it from their receive time (same machine, same clock).
pub fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos() as u64
}

/// Stores `n` messages in `channel` with [`IN_FLIGHT`] acks in flight; the
/// content of each is the nanosecond time its publish started. Returns the
/// last sequence stored.
pub async fn store_messages(log: &Log, channel: Id, n: usize) -> u64 {
    store_spread(log, &[channel], n).await
}

/// [`store_messages`] round-robin over `channels` (message `i` to
/// `channels[i % len]`).
pub async fn store_spread(log: &Log, channels: &[Id], n: usize) -> u64 {
    let seqs = futures::stream::iter(0..n)
        .map(|i| {
            let event = message(channels[i % channels.len()], now_nanos().to_string());
            async move { log.store(&event).await.expect("store").seq }
        })
        .buffer_unordered(IN_FLIGHT)
        .collect::<Vec<u64>>()
        .await;
    seqs.into_iter().max().unwrap_or(0)
}

/// Stores `n` events made by `make`, paced to `pace` events/s (in 1 ms
/// steps); each is made just before it is stored (so a time it carries is
/// its publish time).
pub async fn store_paced(log: &Log, n: usize, pace: f64, make: impl Fn() -> Event) {
    let started = std::time::Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut in_flight = futures::stream::FuturesUnordered::new();
    let mut sent = 0;
    while sent < n || !in_flight.is_empty() {
        let due = ((started.elapsed().as_secs_f64() * pace) as usize + 1).min(n);
        while sent < due {
            let event = make();
            in_flight.push(async move { log.store(&event).await.expect("store") });
            sent += 1;
        }
        tokio::select! {
            Some(_) = in_flight.next(), if !in_flight.is_empty() => {}
            _ = tick.tick(), if sent < n => {}
        }
    }
}

/// What a publisher stored, per channel (by index): `(seq, publish nanos)`,
/// sorted by `seq`.
pub type Receipts = Vec<Vec<(u64, u64)>>;

/// A publisher's running figures.
#[derive(Default)]
pub struct Acked {
    /// The highest `seq` acknowledged so far.
    pub max_seq: std::sync::atomic::AtomicU64,
    /// Events stored so far.
    pub stored: std::sync::atomic::AtomicU64,
    /// Stores that failed (the event may or may not be in the stream).
    pub failed: std::sync::atomic::AtomicU64,
}

/// Stores `channel_message`s round-robin over `channels` at `per_s` (in 1 ms
/// steps, at most [`IN_FLIGHT`] unacknowledged), `data.content` being the
/// publish time in nanoseconds, until `stop` changes; then waits for the
/// acks in flight and returns every receipt.
pub async fn publish_receipts(
    log: Log,
    channels: Vec<Id>,
    per_s: f64,
    acked: std::sync::Arc<Acked>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Receipts {
    use std::sync::atomic::Ordering;
    let mut receipts: Receipts = vec![Vec::new(); channels.len()];
    let started = std::time::Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut in_flight = futures::stream::FuturesUnordered::new();
    let mut sent = 0usize;
    let mut stopping = false;
    loop {
        if !stopping {
            let due = (started.elapsed().as_secs_f64() * per_s) as usize + 1;
            while sent < due && in_flight.len() < IN_FLIGHT {
                let index = sent % channels.len();
                let nanos = now_nanos();
                let event = message(channels[index], nanos.to_string());
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
                        acked.stored.fetch_add(1, Ordering::Relaxed);
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
