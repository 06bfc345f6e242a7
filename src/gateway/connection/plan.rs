//! Where a subscription's replay starts and ends, and how the subscriber's
//! standing moves over it: at once from memory when the window holds the
//! gap (the common resume), else by requests to the log, which the driver
//! runs as futures beside the socket ([`plan`], [`probe`]), each bounded by
//! [`LOG_TIMEOUT`].
//!
//! The order that makes the handover exact: a subscription joins the hub
//! *before* its replay's target is measured, so every event after the
//! target reaches its queue (or flags it as lagging).

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;

use super::env::Env;
use crate::access::{self, Standing};
use crate::channel::{Channel, Id};
use crate::envelope::StoredEvent;
use crate::gateway::protocol::Since;
use crate::gateway::subscription::Following;
use crate::gateway::Node;
use crate::log::{Epoch, LogError, Op, RequestErrorKind, READER_CREATE_RETRY_FOR, REQUEST_TIMEOUT};
use crate::projection::FOLDED;
use crate::token::Claims;

/// How long a log request may take before the connection gives up on it:
/// longer than the log itself tries to create a reader while a cluster
/// elects a leader ([`crate::log::READER_CREATE_RETRY_FOR`], then one more
/// request, [`crate::log::REQUEST_TIMEOUT`]), so a replay started during an
/// election waits the election out instead of failing halfway through the
/// log's retries.
pub const LOG_TIMEOUT: Duration = READER_CREATE_RETRY_FOR.saturating_add(REQUEST_TIMEOUT);

/// A replay, planned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Planned {
    /// Replay every event with `seq > after`.
    pub(super) after: u64,
    /// Up to the log's last sequence when the subscription joined the hub.
    pub(super) target: u64,
    /// The oldest held sequence, when retention may have dropped events
    /// asked for (or the client's seqs are another stream's).
    pub(super) first_seq: Option<u64>,
    /// The stream's epoch when the plan was made.
    pub(super) epoch: Epoch,
    /// `None` when the subscriber's standing does not move over the replay.
    pub(super) following: Option<Following>,
}

/// What a plan needs to know of its subscription.
#[derive(Clone, Debug)]
pub(super) struct PlanRequest {
    pub(super) channel: Channel,
    pub(super) since: Since,
    /// The stream epoch a `Since::Seq` counts in, when the client said.
    pub(super) epoch: Option<Epoch>,
    /// The hub's position when the subscription joined it.
    pub(super) routed: u64,
}

/// The plan, from memory alone, when the window holds the gap and can tell
/// the standing does not move over it: a `since_seq` of the same stream at
/// or before the routed position (every later event reaches the
/// subscription's queue, and nothing the window holds can be missing).
pub(super) fn plan_now(env: &dyn Env, claims: &Claims, request: &PlanRequest) -> Option<Planned> {
    let Since::Seq(n) = request.since else {
        return None;
    };
    let current = env.epoch();
    let same_stream = request.epoch.is_none_or(|e| e == current);
    if !same_stream || n > request.routed || !env.window_holds_after(n) {
        return None;
    }
    if let Channel::Chat(id) = request.channel {
        match env.window_standing_changes(id, claims.sub, n, request.routed) {
            Some(false) => {}
            _ => return None,
        }
    }
    Some(Planned {
        after: n,
        target: request.routed,
        first_seq: None,
        epoch: current,
        following: None,
    })
}

/// Plans a replay with the log's help (see [`plan_now`] for when none is
/// needed).
pub(super) async fn plan(
    node: Arc<Node>,
    claims: Claims,
    request: PlanRequest,
) -> Result<Planned, LogError> {
    with_timeout(Op::Read, async {
        let mut planned = plan_replay(&node, &request).await?;
        if let Channel::Chat(id) = request.channel {
            planned.following =
                following(&node, &claims, id, planned.after, planned.target).await?;
        }
        Ok(planned)
    })
    .await
}

/// The channel's first `seq >= from`, asked of the log.
pub(super) async fn probe(
    node: Arc<Node>,
    channel: Channel,
    from: u64,
) -> Result<Option<u64>, LogError> {
    with_timeout(Op::Lookup, node.log.next_seq_of(channel, from)).await
}

/// Where a replay starts. A `since_seq` of another stream (its epoch is
/// not the stream's) or past the log's end means nothing here: the client
/// is told so, and goes live from now.
async fn plan_replay(node: &Node, request: &PlanRequest) -> Result<Planned, LogError> {
    let extent = node.log.extent().await?;
    let other_stream = request.epoch.is_some_and(|e| e != extent.epoch);
    let (after, incomplete) = match request.since {
        Since::Seq(_) if other_stream => (extent.last_seq, true),
        Since::Seq(n) if n > extent.last_seq => (extent.last_seq, true),
        Since::Seq(n) => (n, extent.first_seq > n.saturating_add(1)),
        Since::Time(t) => {
            let start = node.log.seq_at_time(t).await?;
            let dropped_any = extent.first_seq > 1;
            let incomplete = dropped_any
                && match node.log.time_of_next(extent.first_seq).await? {
                    Some(oldest) => oldest > t,
                    None => true,
                };
            // A time means the same in every stream, but what the client
            // holds came from another one.
            (start.saturating_sub(1), incomplete || other_stream)
        }
    };
    Ok(Planned {
        after,
        target: extent.last_seq,
        first_seq: incomplete.then_some(extent.first_seq.max(1)),
        epoch: extent.epoch,
        following: None,
    })
}

/// How the user's standing in chat channel `channel` moves over the replay
/// of `(after, target]`: `None` when it does not (the common case, found
/// with one read of the channel's membership events in that range). Else
/// the standing at the start is folded from the channel's membership events
/// up to `after`, and the cut that ends the current standing is found.
async fn following(
    node: &Node,
    claims: &Claims,
    channel: Id,
    after: u64,
    target: u64,
) -> Result<Option<Following>, LogError> {
    let user = claims.sub;
    // The common case costs no consumer: the window holds the range, or
    // the log holds no membership event at all in it.
    let from = after.saturating_add(1);
    match node.window.standing_changes(channel, user, after, target) {
        Some(false) => return Ok(None),
        Some(true) => {}
        None => {
            let first = node
                .log
                .first_of_kinds(Channel::Chat(channel), FOLDED, from)
                .await?;
            if first.is_none_or(|seq| seq > target) {
                return Ok(None);
            }
        }
    }
    let changes = standing_events(node, channel, user, from, target).await?;
    if changes.is_empty() {
        return Ok(None);
    }
    let mut standing = Standing::default();
    for event in standing_events(node, channel, user, 1, after).await? {
        standing = standing.after(user, &event.data);
    }
    let granted = claims.channels.allows(channel);
    // The last cut after which the user never saw the channel again.
    let (mut at, mut final_cut) = (standing, None);
    for event in &changes {
        at = at.after(user, &event.data);
        if at.sees(granted) {
            final_cut = None;
        } else if access::cut(Channel::Chat(channel), &event.data).is_some() {
            final_cut = Some(event.seq);
        }
    }
    let now = node.projection().standing(channel, user);
    Ok(Some(Following {
        standing,
        granted,
        final_cut: final_cut.filter(|_| !now.sees(granted)),
    }))
}

/// The channel's events about `user`'s standing with `seq` in `from..=to`.
async fn standing_events(
    node: &Node,
    channel: Id,
    user: Id,
    from: u64,
    to: u64,
) -> Result<Vec<StoredEvent>, LogError> {
    let mut found = Vec::new();
    if from > to {
        return Ok(found);
    }
    let mut read = node
        .log
        .read_kinds(Channel::Chat(channel), FOLDED, from)
        .await?;
    if read.initial_pending == 0 {
        return Ok(found);
    }
    while let Some(item) = read.next().await {
        let item = item?;
        let (seq, pending) = (item.seq, item.pending);
        if seq > to {
            break;
        }
        if let Some(event) = item.into_event() {
            if access::concerns(user, &event.data) {
                found.push(event);
            }
        }
        if pending == 0 || seq == to {
            break;
        }
    }
    Ok(found)
}

/// A log request doing `op`, bounded in time.
pub(super) async fn with_timeout<T>(
    op: Op,
    f: impl std::future::Future<Output = Result<T, LogError>>,
) -> Result<T, LogError> {
    tokio::time::timeout(LOG_TIMEOUT, f)
        .await
        .unwrap_or_else(|_| {
            Err(LogError::request(
                op,
                RequestErrorKind::TimedOut,
                format!("no answer within {LOG_TIMEOUT:?}"),
            ))
        })
}
