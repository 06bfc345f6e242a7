//! The node's router: the one ordered log consumer of this gateway process.
//! Each stored event is validated once, folded into the projection, encoded
//! once and handed to the hub. Typing arrives from the log's typing
//! subscription the same way. The router knows no NATS subject: it reads the
//! log in channels, events and sequences.
//!
//! After a NATS outage the consumer is recreated from the sequence after
//! the last one routed, so connected clients see no gap; so is a consumer
//! that stalls (see [`STALL_TIMEOUT`]) while the stream holds more.
//!
//! The stream can be deleted and created again under the router (a disaster
//! recovery, a restore into a new cluster): its seqs start over, and a
//! consumer recreated "from the sequence after the last one routed" would
//! wait past the new stream's events. So the router checks the stream's
//! [`Epoch`] every [`EPOCH_CHECK_INTERVAL`] and after every lost consumer;
//! when it changed, it folds a new projection from the new stream, puts it
//! in place of the old one, resets the hub's routed position (the hub tells
//! every connection, which restarts its subscriptions on the new stream) and
//! routes on from the new stream's end.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;

use super::hub::Delivery;
use super::window::Recent;
use super::Node;
use crate::access;
use crate::envelope::{self, StoredEvent};
use crate::event::EventData;
use crate::log::{Epoch, LogError, Op, ReadItem, RequestErrorKind, TypingSubscription};
use crate::metrics::Metrics;
use crate::projection::{Projection, FOLDED};

/// Pause before recreating the consumer after an error.
pub const RETRY_DELAY: Duration = Duration::from_millis(250);

/// How often the router asks whether the stream was recreated (one stream
/// info request). A recreation is noticed at most this late. Until then
/// the new stream's events wait in it; any the old consumer routes
/// meanwhile come again after the restart (a duplicate, never a skip).
pub const EPOCH_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// How long the router waits for an event the stream holds before it
/// takes its consumer for lost and recreates it from `next_seq`. On a NATS
/// cluster, a consumer whose server died while a leader is being elected
/// is otherwise recreated by async-nats with back-offs of up to 10 s per
/// attempt; clients would wait that long for live events.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(3);

/// Routes every stored event with `seq >= next_seq` of the stream of
/// `epoch` until shutdown, and starts over on a recreated stream.
pub async fn run(node: Arc<Node>, mut next_seq: u64, mut epoch: Epoch) {
    let shutdown = node.shutdown.clone();
    tokio::select! {
        _ = shutdown.cancelled() => return,
        filled = fill_window(&node, next_seq.saturating_sub(1)) => match filled {
            Ok(events) => tracing::debug!(events, "window filled from the stream"),
            Err(e) => tracing::warn!(error = %e, "window not filled: replays read the stream until it fills"),
        },
    }
    loop {
        let read = tokio::select! {
            _ = shutdown.cancelled() => return,
            read = node.log.read_all(next_seq) => read,
        };
        match read {
            Ok(mut read) => {
                let mut check = tokio::time::interval(EPOCH_CHECK_INTERVAL);
                check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let mut progress = tokio::time::Instant::now();
                loop {
                    let item = tokio::select! {
                        _ = shutdown.cancelled() => return,
                        item = read.next() => item,
                        _ = check.tick() => match node.log.extent().await {
                            Ok(extent) if extent.epoch != epoch => break,
                            Ok(extent) => {
                                node.window.drop_before(extent.first_seq);
                                let behind = (extent.last_seq + 1).saturating_sub(next_seq);
                                Metrics::get().router_behind.set(behind as f64);
                                if extent.last_seq >= next_seq && progress.elapsed() >= STALL_TIMEOUT {
                                    Metrics::get().router_stalls.increment(1);
                                    tracing::warn!(next_seq, last_seq = extent.last_seq, "router's consumer stalled; recreating it");
                                    break;
                                }
                                continue;
                            }
                            Err(_) => continue,
                        },
                    };
                    match item {
                        Some(Ok(item)) => {
                            progress = tokio::time::Instant::now();
                            next_seq = item.seq + 1;
                            route(&node, item);
                        }
                        Some(Err(e)) => {
                            Metrics::get().router_lost.increment(1);
                            tracing::warn!(error = %e, next_seq, "router lost the log; recreating its consumer");
                            break;
                        }
                        None => break,
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, next_seq, "router cannot read the log yet"),
        }
        // Before reading again from `next_seq`: is it still the same stream?
        if let Ok(extent) = node.log.extent().await {
            if extent.epoch != epoch {
                match rebuild(&node, epoch, extent.epoch).await {
                    Ok(last_seq) => {
                        (next_seq, epoch) = (last_seq + 1, extent.epoch);
                        continue;
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot fold the recreated stream yet"),
                }
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(RETRY_DELAY) => {}
        }
    }
}

/// Fills the window with the stream's events up to `through` (where the
/// router starts), as many as its bounds hold; how many were read.
async fn fill_window(node: &Node, through: u64) -> Result<usize, LogError> {
    let extent = node.log.extent().await?;
    let most = node.limits.window_events as u64;
    let from = through
        .saturating_sub(most.saturating_sub(1))
        .max(extent.first_seq)
        .max(1);
    if most == 0 || from > through {
        return Ok(0);
    }
    let mut read = node.log.read_all(from).await?;
    let mut events = Vec::new();
    if read.initial_pending > 0 {
        loop {
            let item = tokio::time::timeout(FILL_TIMEOUT, read.next()).await;
            let Ok(Some(item)) = item else {
                return Err(LogError::request(
                    Op::Read,
                    RequestErrorKind::TimedOut,
                    "filling the window: the stream stopped answering",
                ));
            };
            let item = item?;
            let (seq, pending) = (item.seq, item.pending);
            if seq > through {
                break;
            }
            // Invalid messages were reported when first routed: a hole.
            if let Ok(event) = item.event {
                events.push(Arc::new(Recent::encode(event)));
            }
            if seq == through || pending == 0 {
                break;
            }
        }
    }
    let read = events.len();
    node.window.prepend(from - 1, events);
    Ok(read)
}

/// How long the start-up fill waits for the next event of the stream.
const FILL_TIMEOUT: Duration = Duration::from_secs(10);

/// The stream was recreated: folds a new projection from the new stream,
/// puts it in place of the old one and restarts the hub at its end.
/// Returns the last sequence folded (the router goes on after it).
async fn rebuild(node: &Node, old: Epoch, new: Epoch) -> Result<u64, LogError> {
    let extent = node.log.extent().await?;
    if extent.epoch != new {
        return Err(LogError::request(
            Op::Read,
            RequestErrorKind::StreamChanged,
            "the stream changed again while the projection was rebuilt",
        ));
    }
    let mut projection = Projection::default();
    projection.epoch = Some(new);
    let folded = node.log.fold_into(&mut projection, extent.last_seq).await?;
    let last_seq = projection.last_seq;
    *node.projection_mut() = projection;
    node.window.restart(last_seq);
    node.hub.restart(last_seq);
    tracing::warn!(
        %old,
        %new,
        last_seq,
        folded,
        "stream recreated (epoch {old} -> {new}); projection rebuilt from the new stream"
    );
    Ok(last_seq)
}

fn route(node: &Node, item: ReadItem) {
    let metrics = node.metrics;
    metrics.events_in.increment(1);
    let seq = item.seq;
    let Some(event) = item.into_event() else {
        node.window.skip(seq);
        node.hub.routed_through(seq);
        return;
    };
    if FOLDED.contains(&event.data.kind()) {
        node.projection
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .apply(event.seq, event.channel, &event.data);
    }
    let delivery = deliver(&event);
    // The window first: whoever sees the hub's routed position finds every
    // event up to it there.
    let frame = delivery.frame.clone();
    node.window.push(Arc::new(Recent { event, frame }));
    let fanout = node.hub.dispatch(Arc::new(delivery));
    if fanout.lagged > 0 {
        metrics.lagged.increment(fanout.lagged as u64);
    }
}

/// The delivery of one stored event copy: its envelope, encoded once.
pub fn deliver(event: &StoredEvent) -> Delivery {
    Delivery {
        channel: event.channel,
        seq: Some(event.seq),
        frame: event.encode(),
        cut: access::cut(event.channel, &event.data),
        log_time_ms: event.time.timestamp_millis(),
        from_user: None,
        presence: None,
    }
}

/// Fans out `user_typing` from any node (or another service).
/// `typing` is subscribed before the node starts serving.
pub async fn run_typing(node: Arc<Node>, mut typing: TypingSubscription) {
    let shutdown = node.shutdown.clone();
    loop {
        let item = tokio::select! {
            _ = shutdown.cancelled() => return,
            item = typing.next() => item,
        };
        match item {
            Ok((channel, id, data @ (EventData::UserTyping(_) | EventData::Added(_)))) => {
                let from_user = match &data {
                    EventData::UserTyping(t) => Some(t.user_id),
                    _ => None,
                };
                let now = chrono::Utc::now();
                let delivery = Delivery {
                    channel,
                    seq: None,
                    frame: envelope::encode(&data, &now, channel, None, id),
                    cut: None,
                    log_time_ms: now.timestamp_millis(),
                    from_user,
                    presence: None,
                };
                let fanout = node.hub.dispatch(Arc::new(delivery));
                if fanout.typing_dropped > 0 {
                    node.metrics
                        .typing_dropped
                        .increment(fanout.typing_dropped as u64);
                }
            }
            Ok(_) => {}
            Err(_) => node.metrics.invalid_events.increment(1),
        }
    }
}
