//! The I/O side of subscriptions: joining the hub, planning a replay,
//! feeding log reads to the machines and answering their log requests.
//!
//! The order that makes the handover exact: a subscription joins the hub
//! *before* its replay target is measured, so every event after the target
//! reaches its queue (or flags it as lagging).

use std::time::Duration;

use futures::StreamExt;

use super::{Connection, End};
use crate::access::{self, EndReason, Standing};
use crate::channel::{Channel, Id};
use crate::envelope::StoredEvent;
use crate::gateway::protocol::{self, Close, ErrorCode, FrameError, Since};
use crate::gateway::subscription::{Action, Actions, Following, Subscription};

use super::reads::{Read, Step};
use crate::gateway::Node;
use crate::log::{Epoch, LogError, Op, RequestErrorKind};
use crate::projection::FOLDED;
use crate::token::Claims;

/// How long a log request may take before the connection gives up on it.
pub const LOG_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a subscription with history starts, and up to where it replays.
struct ReplayPlan {
    /// Replay every event with `seq > after`.
    after: u64,
    /// The log's last sequence when the subscription joined the hub.
    target: u64,
    /// The oldest held sequence, when retention may have dropped events
    /// asked for (or the client's seqs are another stream's).
    first_seq: Option<u64>,
    /// The stream's epoch when the plan was made.
    epoch: Epoch,
}

impl Connection {
    pub(super) fn authorize(&self, channel: Channel) -> Result<(), access::Denied> {
        let projection = self.node.projection();
        access::may_subscribe(&self.claims, channel, |id| {
            projection.standing(id, self.claims.sub)
        })
    }

    /// Joins the hub, then plans and starts the replay, if any; a replay
    /// that cannot be planned is answered `unavailable`. `epoch` is the
    /// stream epoch a `Since::Seq` counts in, when the client said.
    pub(super) async fn open_subscription(
        &mut self,
        channel: Channel,
        since: Option<Since>,
        epoch: Option<&str>,
        request_id: Option<String>,
    ) -> Result<(), End> {
        let routed = self
            .node
            .hub
            .subscribe(channel, self.id, self.mailbox.clone());
        self.node.metrics.subscriptions.increment(1.0);
        self.session.touch();
        let Some(since) = since else {
            self.subs
                .insert(channel, Subscription::live(channel, routed));
            let epoch = self.node.log.epoch().to_string();
            self.outbox.push_text(protocol::subscribed(
                request_id.as_deref(),
                channel,
                None,
                &epoch,
            ));
            return Ok(());
        };
        let planned = async {
            let plan = plan_replay(&self.node, since, epoch, routed).await?;
            let following = match channel {
                Channel::Chat(id) => {
                    following(&self.node, &self.claims, id, plan.after, plan.target).await?
                }
                _ => None,
            };
            Ok::<_, LogError>((plan, following))
        };
        let (plan, following) = match with_timeout(planned).await {
            Ok(planned) => planned,
            Err(e) => {
                tracing::warn!(conn = self.id, %channel, error = %e, "cannot plan a replay");
                self.node.hub.unsubscribe(channel, self.id);
                self.node.metrics.subscriptions.decrement(1.0);
                self.outbox.push_text(protocol::error(&FrameError::new(
                    ErrorCode::Unavailable,
                    "the event log is unavailable; try again",
                    request_id,
                )));
                return Ok(());
            }
        };
        self.outbox.push_text(protocol::subscribed(
            request_id.as_deref(),
            channel,
            plan.first_seq,
            &plan.epoch.to_string(),
        ));
        let mut out = std::mem::take(&mut self.scratch);
        let sub = Subscription::replaying_following(
            channel,
            plan.after,
            plan.target,
            following,
            &mut out,
        );
        self.subs.insert(channel, sub);
        self.apply(channel, &mut out);
        self.scratch = out;
        self.answer_requests().await
    }

    /// One step of a replay's read.
    pub(super) async fn on_read(
        &mut self,
        channel: Channel,
        step: Result<Step, LogError>,
    ) -> Result<(), End> {
        let step = step.map_err(log_lost)?;
        let Some(sub) = self.subs.get_mut(&channel) else {
            self.replays.remove(&channel);
            return Ok(());
        };
        let mut out = std::mem::take(&mut self.scratch);
        match step {
            Step::Idle => sub.on_read_idle(&self.rules, &mut out),
            Step::Window(recent, pending) => {
                sub.on_read_encoded(&self.rules, pending, &recent.event, &recent.frame, &mut out)
            }
            Step::Log(item) => {
                let (seq, pending) = (item.seq, item.pending);
                let event = (*item).into_event();
                sub.on_read(&self.rules, seq, pending, event.as_ref(), &mut out);
            }
        }
        self.apply(channel, &mut out);
        self.scratch = out;
        self.answer_requests().await
    }

    /// The hub dropped stored events for us: every subscription reads what
    /// it missed from the log (running replays measure their target again).
    /// Or the stream was recreated: see [`Connection::on_stream_recreated`].
    pub(super) fn on_lagged(&mut self) {
        if self.mailbox.take_restarted() {
            self.on_stream_recreated();
            return;
        }
        if !self.mailbox.take_lagged() {
            return;
        }
        let mut out = std::mem::take(&mut self.scratch);
        let channels: Vec<Channel> = self.subs.keys().copied().collect();
        for channel in channels {
            if let Some(sub) = self.subs.get_mut(&channel) {
                sub.on_lagged(&mut out);
                self.apply(channel, &mut out);
            }
        }
        self.scratch = out;
    }

    /// The stream was deleted and recreated (the router rebuilt the
    /// projection and restarted the hub): every cursor counts the old
    /// stream's seqs. Each subscription is told `subscribed` with
    /// `complete: false`, `first_seq` and the new epoch (no `request_id`),
    /// then replays the new stream from its start (none of it reached the
    /// client yet) with `replayed`, then goes on live. One the rebuilt
    /// projection denies ends at once with `unsubscribed`.
    ///
    /// Every stored event still queued is the old stream's or is in the new
    /// stream's log (the hub flags the connection between the router's last
    /// old and first new delivery): the queue is emptied, and the replay's
    /// target is measured after that, so nothing of the new stream is missed.
    fn on_stream_recreated(&mut self) {
        while self.queue.try_recv().is_some() {}
        self.mailbox.take_lagged();
        self.requests.clear();
        let extent = self.node.log.last_extent();
        self.session.new_epoch(extent.epoch);
        let epoch = extent.epoch.to_string();
        let first_seq = extent.first_seq.max(1);
        let mut out = std::mem::take(&mut self.scratch);
        let channels: Vec<Channel> = self.subs.keys().copied().collect();
        for channel in channels {
            self.replays.remove(&channel);
            let denied = match self.authorize(channel) {
                Ok(()) => None,
                Err(access::Denied::Banned) => Some(EndReason::Banned),
                Err(access::Denied::ChannelDeleted) => Some(EndReason::ChannelDeleted),
                Err(_) => Some(EndReason::Left),
            };
            let sub = match denied {
                // The new stream does not let the user see the channel:
                // `unsubscribed` at once, nothing of it replayed.
                Some(reason) => {
                    let mut sub = Subscription::live(channel, 0);
                    sub.cut_when_replayed(reason, &mut out);
                    sub
                }
                None => {
                    self.outbox.push_text(protocol::subscribed(
                        None,
                        channel,
                        Some(first_seq),
                        &epoch,
                    ));
                    // Replays from the start, announced; its target is
                    // forgotten at once so that it is measured after the
                    // queue was emptied.
                    let mut sub = Subscription::replaying(channel, 0, 0, &mut out);
                    sub.on_lagged(&mut out);
                    sub
                }
            };
            self.subs.insert(channel, sub);
            self.apply(channel, &mut out);
        }
        self.scratch = out;
    }

    /// Answers the machines' log requests in order, feeding each answer
    /// back before anything else reaches that subscription.
    pub(super) async fn answer_requests(&mut self) -> Result<(), End> {
        while let Some((channel, mut pending)) = self.requests.pop_front() {
            let Some(request) = pending.pop_front() else {
                continue;
            };
            let mut out = Actions::new();
            match request {
                // The read starts in the background: from the window, or
                // from the stream once the node has room for it.
                Action::Read { after } => {
                    if self.subs.contains_key(&channel) {
                        let read = Read::start(&self.node, channel, after);
                        self.replays.insert(channel, read);
                    }
                }
                // Every event up to the hub's routed position is in the
                // log (and the window); every later one reaches the queue.
                Action::MeasureTarget => {
                    let routed = self.node.hub.last_routed();
                    if let Some(sub) = self.subs.get_mut(&channel) {
                        sub.on_target(&self.rules, routed, &mut out);
                    }
                }
                Action::Probe { from } => {
                    let next = match self.node.window.next_of(channel, from) {
                        Some(next) => next,
                        None => with_timeout(self.node.log.next_seq_of(channel, from))
                            .await
                            .map_err(log_lost)?,
                    };
                    if let Some(sub) = self.subs.get_mut(&channel) {
                        sub.on_probe(&self.rules, from, next, &mut out);
                    }
                }
                other => out.push_back(other),
            }
            out.extend(pending);
            self.apply(channel, &mut out);
        }
        Ok(())
    }
}

/// Where a replay starts. `epoch`: the stream epoch the client's seqs
/// count in, if it said; another than the stream's means the stream was
/// recreated since. `routed`: the hub's position when the subscription
/// joined it.
///
/// A `since_seq` within the window (the common resume) is planned without
/// a request: the target is `routed` (every later event reaches the
/// subscription's queue), and nothing the window holds can be missing.
async fn plan_replay(
    node: &Node,
    since: Since,
    epoch: Option<&str>,
    routed: u64,
) -> Result<ReplayPlan, LogError> {
    if let Since::Seq(n) = since {
        let current = node.log.epoch();
        let same_stream = epoch.is_none_or(|e| current.is(e));
        if same_stream && n <= routed && node.window.holds_after(n) {
            return Ok(ReplayPlan {
                after: n,
                target: routed,
                first_seq: None,
                epoch: current,
            });
        }
    }
    let extent = node.log.extent().await?;
    let other_stream = epoch.is_some_and(|e| !extent.epoch.is(e));
    let (after, incomplete) = match since {
        // Another stream's seqs, or past the end (the stream was recreated,
        // or the client is confused): they mean nothing here. The client is
        // told so, and goes live from now.
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
    Ok(ReplayPlan {
        after,
        target: extent.last_seq,
        first_seq: incomplete.then_some(extent.first_seq.max(1)),
        epoch: extent.epoch,
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

/// A log request, bounded in time. The request's future lives on the heap
/// while it runs, so an idle connection's task is not sized for it.
pub(super) async fn with_timeout<T>(
    f: impl std::future::Future<Output = Result<T, LogError>>,
) -> Result<T, LogError> {
    tokio::time::timeout(LOG_TIMEOUT, Box::pin(f))
        .await
        .unwrap_or_else(|_| {
            Err(LogError::request(
                Op::Read,
                RequestErrorKind::TimedOut,
                format!("no answer within {LOG_TIMEOUT:?}"),
            ))
        })
}

/// The log failed mid-replay: close, and let the client resume later from
/// its cursor (nothing is skipped: the cursor only moves on delivery). A
/// read stopped by the node's shutdown closes as the shutdown does.
fn log_lost(e: LogError) -> End {
    if e.request_kind() == Some(RequestErrorKind::ShuttingDown) {
        return End::Close(Close::ShuttingDown);
    }
    tracing::warn!(error = %e, "log unavailable during a replay; closing");
    End::Close(Close::LogUnavailable)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_stopped_by_the_shutdown_closes_as_the_shutdown_does() {
        let stopped = LogError::request(Op::Read, RequestErrorKind::ShuttingDown, "waiting");
        assert!(matches!(log_lost(stopped), End::Close(Close::ShuttingDown)));
        for kind in [
            RequestErrorKind::TimedOut,
            RequestErrorKind::Failed,
            RequestErrorKind::StreamChanged,
        ] {
            let lost = LogError::request(Op::Read, kind, "reading");
            assert!(matches!(log_lost(lost), End::Close(Close::LogUnavailable)));
        }
    }
}
