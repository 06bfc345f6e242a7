//! The node's router: the one ordered log consumer of this gateway process.
//! Each stored event is validated once, folded into the projection, encoded
//! once and handed to the hub. Typing arrives from the log's typing
//! subscription the same way. The router knows no NATS subject: it reads the
//! log in channels, events and sequences.
//!
//! After a NATS outage the consumer is recreated from the sequence after
//! the last one routed, so connected clients see no gap. The router also
//! probes the stream every [`EPOCH_CHECK_INTERVAL`] (one stream info
//! request, bounded by [`PROBE_TIMEOUT`]) and replaces its consumer when a
//! probe shows it lost: the stream has a new leader (on a cluster, the
//! consumer may have died with the old leader's server), or it delivered
//! nothing for [`STALL_TIMEOUT`] while the stream held more. While probes
//! go unanswered (a cluster electing the stream's leader) one goes out
//! every [`PROBE_RETRY`], so the replacement starts as soon as the new
//! leader answers, not after async-nats's own recovery (missed heartbeats,
//! then requests that wait up to 10 s each). A replacement is
//! make-before-break and drops every event below `next_seq`: each event is
//! routed once, in order. Until the new consumer exists, the router reads
//! on by direct get, one event at a time (the bridge): on a cluster that
//! lost the stream's leader, creating a consumer sometimes takes seconds
//! after the election, while any replica answers a direct get. (Reading live from a core NATS subscription to
//! the stream's subjects while the consumer recovers would not help: a
//! published message carries no stream sequence, and one that is never
//! stored, or stored later in another order, looks the same.)
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
use std::time::{Duration, Instant};

use futures::StreamExt;

use super::hub::Delivery;
use super::window::Recent;
use super::Node;
use crate::access;
use crate::envelope::{self, StoredEvent};
use crate::event::EventData;
use crate::log::{Epoch, LogError, LogRead, Op, ReadItem, RequestErrorKind, TypingSubscription};
use crate::metrics::Metrics;
use crate::projection::{Projection, FOLDED};

mod probe;

pub use probe::STALL_TIMEOUT;
use probe::{Lost, Probed};

/// Pause before recreating the consumer after an error.
pub const RETRY_DELAY: Duration = Duration::from_millis(250);

/// How often the router probes the stream (one stream info request) while
/// it answers: whether it was recreated (a recreation is noticed at most
/// this late; until then the new stream's events wait in it, and any the
/// old consumer routes meanwhile come again after the restart: a
/// duplicate, never a skip), who leads it, and whether the consumer keeps
/// up with it.
pub const EPOCH_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// How long one probe may wait for its answer. A stream without a leader
/// (a cluster electing one after the leader's server died) answers
/// nothing, and NATS's own request timeout is 10 s: the router would
/// otherwise see the new leader that late.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// How soon the router probes again after a probe went unanswered: the
/// new leader of the stream is seen within this long of its first answer.
pub const PROBE_RETRY: Duration = Duration::from_millis(100);

/// How long one attempt to create the router's consumer may take before
/// it is given up (NATS's own request timeout is 10 s; a request sent
/// while the cluster elects its leaders may never be answered). A
/// consumer an abandoned request created after all is removed by the
/// server after its inactivity threshold (30 s).
pub const CREATE_TIMEOUT: Duration = Duration::from_secs(2);

/// While no attempt to create the router's consumer has succeeded, another
/// one starts this often, without waiting for the others, up to
/// [`CREATE_AT_ONCE`] in flight: a consumer is created within about this
/// long of the cluster's JetStream leader answering again.
pub const CREATE_RETRY: Duration = Duration::from_millis(250);

/// The most attempts to create the router's consumer in flight at once.
pub const CREATE_AT_ONCE: usize = 8;

/// While the router's consumer is being created, the events after the
/// last one routed are read by direct get, one at a time (any replica
/// answers, with no consumer to create): after the stream's leader died,
/// creating a consumer can take seconds longer than the election itself.
/// When the answer says nothing is there yet, the next read waits this
/// long.
pub const BRIDGE_POLL: Duration = Duration::from_millis(50);

/// How long one direct get of the bridge may wait for its answer.
pub const BRIDGE_TIMEOUT: Duration = Duration::from_millis(500);

/// One read of the bridge: the stored message at or after `seq`, if any
/// replica answered with one in time.
async fn bridge(node: &Node, seq: u64) -> Option<ReadItem> {
    match tokio::time::timeout(BRIDGE_TIMEOUT, node.log.read_next_direct(seq)).await {
        Ok(Ok(item)) => item,
        _ => None,
    }
}

/// What a probe of the stream saw.
struct Answer {
    epoch: Epoch,
    first_seq: u64,
    last_seq: u64,
    leader: Option<String>,
}

/// One probe of the stream, bounded by [`PROBE_TIMEOUT`]; `None` when it
/// went unanswered or failed.
async fn probe(node: &Node) -> Option<Answer> {
    match tokio::time::timeout(PROBE_TIMEOUT, node.log.extent_and_leader()).await {
        Ok(Ok((extent, leader))) => Some(Answer {
            epoch: extent.epoch,
            first_seq: extent.first_seq,
            last_seq: extent.last_seq,
            leader,
        }),
        _ => None,
    }
}

/// How an attempt to (re)create the router's consumer ended.
enum Created {
    Read(Box<LogRead>),
    Failed,
    /// The stream was recreated: the router rebuilds before it reads on.
    StreamChanged(Epoch),
}

/// Creates a consumer from `from`, bounded by [`CREATE_TIMEOUT`]; after a
/// failed read (`check`), first waits [`RETRY_DELAY`] and makes sure the
/// stream is still the one of `epoch`.
async fn create(node: &Node, from: u64, epoch: Epoch, check: bool) -> Created {
    if check {
        tokio::time::sleep(RETRY_DELAY).await;
        if let Some(answer) = probe(node).await {
            if answer.epoch != epoch {
                return Created::StreamChanged(answer.epoch);
            }
        }
    }
    match tokio::time::timeout(CREATE_TIMEOUT, node.log.read_all(from)).await {
        Ok(Ok(read)) => Created::Read(Box::new(read)),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, next_seq = from, "router cannot read the log yet");
            Created::Failed
        }
        Err(_) => {
            tracing::warn!(
                next_seq = from,
                "router's consumer was not created within {CREATE_TIMEOUT:?}; trying again"
            );
            Created::Failed
        }
    }
}

/// Routes every stored event with `seq >= next_seq` of the stream of
/// `epoch` until shutdown, and starts over on a recreated stream.
///
/// A consumer found lost is replaced make-before-break: the old one is
/// read until the new one exists (it may be alive after all: a leader
/// change does not always take it along), and the new one, created from
/// the `next_seq` of that moment, repeats what the old one routed
/// meanwhile; the router drops every event below its `next_seq`, so each
/// is routed once, in order.
pub async fn run(node: Arc<Node>, mut next_seq: u64, mut epoch: Epoch) {
    let shutdown = node.shutdown.clone();
    // Made once: a fresh one per event would take the token's lock (shared
    // with every connection) at its first poll and its drop.
    let cancelled = shutdown.cancelled();
    tokio::pin!(cancelled);
    tokio::select! {
        _ = &mut cancelled => return,
        filled = fill_window(&node, next_seq.saturating_sub(1)) => match filled {
            Ok(events) => tracing::debug!(events, "window filled from the stream"),
            Err(e) => tracing::warn!(error = %e, "window not filled: replays read the stream until it fills"),
        },
    }
    let mut probed = Probed::default();
    'stream: loop {
        let mut read: Option<LogRead> = None;
        // Attempts to create the next consumer, in flight at once: one
        // more every CREATE_RETRY until one succeeds.
        let mut replacing = futures::stream::FuturesUnordered::new();
        replacing.push(Box::pin(create(&node, next_seq, epoch, false)));
        let mut attempt_at = tokio::time::Instant::now() + CREATE_RETRY;
        let mut probes = futures::stream::FuturesUnordered::new();
        let mut probe_at = tokio::time::Instant::now() + EPOCH_CHECK_INTERVAL;
        // The direct-get read in flight while a consumer is being created.
        let mut bridging = None;
        let mut bridge_at = tokio::time::Instant::now();
        let mut new = loop {
            tokio::select! {
                _ = &mut cancelled => return,
                item = async { read.as_mut()?.next().await }, if read.is_some() => match item {
                    Some(Ok(item)) => {
                        // A replacement repeats what its predecessor
                        // routed while it was being created.
                        if item.seq >= next_seq {
                            next_seq = item.seq + 1;
                            route(&node, item);
                        }
                    }
                    failed => {
                        Metrics::get().router_lost.increment(1);
                        match failed {
                            Some(Err(e)) => tracing::warn!(error = %e, next_seq, "router lost the log; recreating its consumer"),
                            _ => tracing::warn!(next_seq, "router's consumer ended; recreating it"),
                        }
                        read = None;
                        if replacing.is_empty() {
                            replacing.push(Box::pin(create(&node, next_seq, epoch, true)));
                            attempt_at = tokio::time::Instant::now() + RETRY_DELAY + CREATE_RETRY;
                        }
                    }
                },
                Some(created) = replacing.next(), if !replacing.is_empty() => match created {
                    Created::Read(new) => {
                        tracing::debug!(next_seq, attempts = replacing.len() + 1, "router's consumer created");
                        // The old consumer's drop hands it to the reaper;
                        // attempts still in flight and the bridge's read
                        // are abandoned.
                        read = Some(*new);
                        replacing.clear();
                        bridging = None;
                        probed.restart();
                    }
                    Created::StreamChanged(changed) => break changed,
                    Created::Failed => {
                        if replacing.is_empty() {
                            replacing.push(Box::pin(create(&node, next_seq, epoch, true)));
                            attempt_at = tokio::time::Instant::now() + RETRY_DELAY + CREATE_RETRY;
                        }
                    }
                },
                _ = tokio::time::sleep_until(bridge_at), if !replacing.is_empty() && bridging.is_none() => {
                    bridging = Some(Box::pin(bridge(&node, next_seq)));
                }
                bridged = async { bridging.as_mut()?.await }, if bridging.is_some() => {
                    bridging = None;
                    match bridged {
                        // In order, as the consumer would give it: the
                        // next read goes out at once.
                        Some(item) if item.seq >= next_seq => {
                            next_seq = item.seq + 1;
                            route(&node, item);
                            bridge_at = tokio::time::Instant::now();
                        }
                        _ => bridge_at = tokio::time::Instant::now() + BRIDGE_POLL,
                    }
                }
                _ = tokio::time::sleep_until(attempt_at), if !replacing.is_empty() && replacing.len() < CREATE_AT_ONCE => {
                    replacing.push(Box::pin(create(&node, next_seq, epoch, false)));
                    attempt_at = tokio::time::Instant::now() + CREATE_RETRY;
                }
                _ = tokio::time::sleep_until(probe_at) => {
                    probes.push(probe(&node));
                    // While probes go unanswered (a cluster electing the
                    // stream's leader), one goes out every PROBE_RETRY
                    // without waiting for the others: the first answer
                    // of the new leader is seen at once.
                    let doubt = probed.in_doubt();
                    probe_at = tokio::time::Instant::now() + if doubt { PROBE_RETRY } else { EPOCH_CHECK_INTERVAL };
                }
                Some(answer) = probes.next(), if !probes.is_empty() => {
                    let Some(answer) = answer else {
                        if !probed.in_doubt() {
                            probe_at = tokio::time::Instant::now();
                        }
                        probed.unanswered(next_seq, Instant::now());
                        continue;
                    };
                    if answer.epoch != epoch {
                        break answer.epoch;
                    }
                    node.window.drop_before(answer.first_seq);
                    let behind = (answer.last_seq + 1).saturating_sub(next_seq);
                    Metrics::get().router_behind.set(behind as f64);
                    probe_at = probe_at.min(tokio::time::Instant::now() + EPOCH_CHECK_INTERVAL);
                    let last_seq = answer.last_seq;
                    if let Some(why) = probed.answered(answer.leader, last_seq, next_seq, Instant::now()) {
                        if replacing.is_empty() {
                            Metrics::get().router_stalls.increment(1);
                            match why {
                                Lost::LeaderChanged => tracing::warn!(next_seq, last_seq, leader = ?probed.leader, "the stream has a new leader; replacing the router's consumer"),
                                Lost::Stalled => tracing::warn!(next_seq, last_seq, "router's consumer stalled; replacing it"),
                            }
                            replacing.push(Box::pin(create(&node, next_seq, epoch, false)));
                            attempt_at = tokio::time::Instant::now() + CREATE_RETRY;
                        }
                    }
                }
            }
        };
        drop(read);
        loop {
            match rebuild(&node, epoch, new).await {
                Ok(last_seq) => {
                    (next_seq, epoch) = (last_seq + 1, new);
                    continue 'stream;
                }
                Err(e) => tracing::warn!(error = %e, "cannot fold the recreated stream yet"),
            }
            tokio::select! {
                _ = &mut cancelled => return,
                _ = tokio::time::sleep(RETRY_DELAY) => {}
            }
            if let Some(answer) = probe(&node).await {
                new = answer.epoch;
            }
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
        deflated: Default::default(),
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
                    deflated: Default::default(),
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
