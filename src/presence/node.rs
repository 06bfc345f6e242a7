//! One node's presence: its connections' joins and leaves (taken at once,
//! under a lock, never awaited), the merged [`View`], and [`Presence::run`],
//! the task that sends this node's deltas and heartbeats, applies the
//! others', answers and asks for syncs, finds silent nodes gone, and hands
//! each batch's changes on.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures::stream::FuturesUnordered;
use futures::StreamExt;

use super::view::{Change, Left, NodeId, Snapshot, View};
use super::wire::{Entry, Heard, Local, Peers};
use crate::channel::Id;
use crate::log::presence::{decode, Message};
use crate::log::Log;

/// How often changes are sent and announced: a channel's changes within one
/// batch are one list, and a user who left and came back within it
/// produces nothing.
pub const BATCH_INTERVAL: Duration = Duration::from_millis(200);

/// How often a node says it is alive (and at which version).
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(2);

/// A node not heard from for this long is gone: its users are dropped
/// connections (offline after the grace, unless held elsewhere). With the
/// default grace, a dead node's users are offline within 11 s.
pub const DETECTION_TIME: Duration = Duration::from_secs(6);

/// A batch whose changes to a channel are at least this fraction of the
/// users its snapshot lists (1/N) goes to that channel's subscribers as the
/// snapshot, one frame, instead of one event per change: a storm of users
/// coming online costs each subscriber one frame per batch, and a snapshot
/// is sent only when it is at most a few times the bytes of the events it
/// stands for (a member is about half an event's bytes).
pub const SNAPSHOT_RATIO: usize = 8;

/// A batch with more changes to a channel than this goes as its snapshot
/// whatever the channel's size: the first batch of a storm into a large
/// channel costs each subscriber at most this many events. Not 1: a
/// channel of thousands with steady churn (two changes a batch) would
/// send every subscriber a snapshot of `presence_limit` members five times
/// a second, a hundred times the bytes of the events.
pub const MOST_EVENTS: usize = 8;

/// Channels in a storm: their last batch went as a snapshot. Until a batch
/// changes at most one of their users, every batch of theirs goes as a
/// snapshot too, so a storm's tail (a batch under the ratio) is one frame
/// as well.
pub type Storms = HashSet<Id>;

/// How one batch tells a channel's presence subscribers what changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Announcement {
    /// One user's change: a `user_presence` event.
    Change(Change),
    /// Many changes to the channel: its snapshot, which replaces the set.
    Snapshot(Id, Snapshot),
}

/// One batch's announcements, every channel's; `generation` orders them
/// against snapshots ([`Snapshot::generation`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Batch {
    pub generation: u64,
    pub announcements: Vec<Announcement>,
}

/// Polls the view and turns its changes into announcements: per channel,
/// its events, or its snapshot when they are many ([`SNAPSHOT_RATIO`]) or
/// the channel is in a storm ([`Storms`]).
pub fn poll(view: &mut View, storms: &mut Storms, limit: usize, now: Instant) -> Batch {
    let changes = view.poll(now);
    let generation = view.generation();
    let mut announcements = Vec::new();
    // `poll` gives the changes ordered by channel.
    let mut rest = &changes[..];
    while let Some(first) = rest.first() {
        let n = rest
            .iter()
            .take_while(|c| c.channel == first.channel)
            .count();
        let (group, tail) = rest.split_at(n);
        rest = tail;
        if n > 1 {
            // What the snapshot would list, counted without building it.
            let listed = view.announced(first.channel).min(limit);
            let storming = storms.contains(&first.channel);
            if storming || n > MOST_EVENTS || n * SNAPSHOT_RATIO >= listed {
                storms.insert(first.channel);
                let snapshot = view.snapshot(first.channel, limit, None);
                announcements.push(Announcement::Snapshot(first.channel, snapshot));
                continue;
            }
        }
        storms.remove(&first.channel);
        announcements.extend(group.iter().cloned().map(Announcement::Change));
    }
    // A channel with no change in this batch is calm again.
    if !storms.is_empty() {
        let changed: HashSet<Id> = changes.iter().map(|c| c.channel).collect();
        storms.retain(|channel| changed.contains(channel));
    }
    Batch {
        generation,
        announcements,
    }
}

/// This node's presence and its view of the deployment's.
pub struct Presence {
    inner: Mutex<Inner>,
    /// The most users a snapshot lists.
    limit: usize,
}

/// What the lock guards: the view (this node's own holdings in it, under
/// its id) and what is still to be sent of them.
struct Inner {
    local: Local,
    view: View,
    storms: Storms,
}

impl Presence {
    pub fn new(node: NodeId, grace: Duration, limit: usize) -> Arc<Presence> {
        Arc::new(Presence {
            inner: Mutex::new(Inner {
                local: Local::new(node),
                view: View::new(grace),
                storms: Storms::new(),
            }),
            limit,
        })
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A connection of `user` subscribed to `channel`.
    pub fn join(&self, channel: Id, user: Id, username: &str) {
        let mut inner = self.inner();
        let node = inner.local.node();
        let connections = inner.view.connections_on(node, (channel, user)) + 1;
        inner.hold(channel, user, username, connections, Left::Dropped);
    }

    /// A connection of `user` left `channel`, as `left` says.
    pub fn leave(&self, channel: Id, user: Id, left: Left) {
        let mut inner = self.inner();
        let node = inner.local.node();
        let Some(connections) = inner
            .view
            .connections_on(node, (channel, user))
            .checked_sub(1)
        else {
            return; // not held here
        };
        let username = inner.view.username_of(channel, user).unwrap_or_default();
        inner.hold(channel, user, &username, connections, left);
    }

    /// The channel's present users as announced (and `asker`, if present
    /// now), at most the limit of them.
    pub fn snapshot(&self, channel: Id, asker: Option<Id>) -> Snapshot {
        self.inner().view.snapshot(channel, self.limit, asker)
    }

    /// Runs until the future is dropped: sends, applies and announces.
    /// `announce` gets each batch with changes.
    pub async fn run(self: Arc<Self>, log: Log, mut announce: impl FnMut(Batch) + Send) {
        let node = self.inner().local.node();
        let (mut shared, mut requests) = loop {
            match (
                log.subscribe_presence().await,
                log.subscribe_sync_requests(node).await,
            ) {
                (Ok(shared), Ok(requests)) => break (shared, requests),
                (Err(e), _) | (_, Err(e)) => {
                    tracing::warn!(error = %e, "cannot subscribe to presence; trying again");
                    tokio::time::sleep(HEARTBEAT_INTERVAL).await;
                }
            }
        };
        let mut peers = Peers::new(DETECTION_TIME);
        let mut batch = tokio::time::interval(BATCH_INTERVAL);
        let mut heartbeat = tokio::time::interval(HEARTBEAT_INTERVAL);
        // Syncs asked of other nodes, answered beside the loop.
        let mut syncs = FuturesUnordered::new();
        let mut syncing: HashSet<NodeId> = HashSet::new();
        loop {
            tokio::select! {
                _ = batch.tick() => {
                    let deltas = self.inner().local.take_deltas();
                    for delta in deltas {
                        if let Err(e) = log.publish_presence(&Message::Delta(delta)).await {
                            tracing::warn!(error = %e, "presence delta not sent; the next heartbeat makes the others sync");
                        }
                    }
                    let now = Instant::now();
                    let gone = peers.expired(now);
                    let batch = {
                        let mut inner = self.inner();
                        for node in gone {
                            tracing::info!(%node, "a node fell silent: its users are dropped");
                            inner.view.node_gone(node, now);
                        }
                        let Inner { view, storms, .. } = &mut *inner;
                        poll(view, storms, self.limit, now)
                    };
                    if !batch.announcements.is_empty() {
                        announce(batch);
                    }
                }
                _ = heartbeat.tick() => {
                    let beat = {
                        let inner = self.inner();
                        let metrics = crate::metrics::Metrics::get();
                        metrics.presence_users.set(inner.view.present() as f64);
                        metrics.presence_nodes.set(peers.len() as f64);
                        inner.local.heartbeat()
                    };
                    if let Err(e) = log.publish_presence(&Message::Heartbeat(beat)).await {
                        tracing::warn!(error = %e, "presence heartbeat not sent");
                    }
                }
                Some(message) = shared.next() => {
                    let Some(message) = decode(&message.payload) else { continue };
                    let now = Instant::now();
                    let behind = match message {
                        Message::Delta(delta) if delta.node != node => {
                            match peers.on_delta(delta.node, delta.version, now) {
                                Heard::Apply => {
                                    let view = &mut self.inner().view;
                                    for e in &delta.entries {
                                        view.report(delta.node, (e.channel, e.user), &e.username, e.connections, e.left(), now);
                                    }
                                    None
                                }
                                Heard::Gap => Some(delta.node),
                                Heard::Stale => None,
                            }
                        }
                        Message::Heartbeat(beat) if beat.node != node => {
                            peers.on_heartbeat(beat.node, beat.version, now).then_some(beat.node)
                        }
                        _ => None,
                    };
                    if let Some(other) = behind.filter(|other| syncing.insert(*other)) {
                        let log = log.clone();
                        syncs.push(async move { (other, log.request_sync(other).await) });
                    }
                }
                Some((other, answer)) = syncs.next() => {
                    syncing.remove(&other);
                    match answer {
                        Ok(parts) => {
                            let now = Instant::now();
                            let version = parts.first().map_or(0, |p| p.version);
                            if peers.on_sync(other, version, now) {
                                let entries = parts
                                    .into_iter()
                                    .flat_map(|p| p.entries)
                                    .map(|e| (e.channel, e.user, e.username, e.connections));
                                self.inner().view.replace_node(other, entries, now);
                            }
                        }
                        Err(e) => tracing::debug!(node = %other, error = %e, "presence sync failed; the next heartbeat asks again"),
                    }
                }
                Some(request) = requests.next() => {
                    let parts = {
                        let inner = self.inner();
                        inner.local.sync(inner.view.held_by(node))
                    };
                    if let Some(reply) = request.reply {
                        if let Err(e) = log.answer_sync(reply, &parts).await {
                            tracing::debug!(error = %e, "presence sync not answered");
                        }
                    }
                }
            }
        }
    }
}

impl Inner {
    /// This node now holds `connections` of the user's connections in the
    /// channel: in its view at once, and in the next delta.
    fn hold(&mut self, channel: Id, user: Id, username: &str, connections: u32, left: Left) {
        let node = self.local.node();
        let now = Instant::now();
        self.view
            .report(node, (channel, user), username, connections, left, now);
        self.local.note(Entry {
            channel,
            user,
            username: username.to_string(),
            connections,
            ended: connections == 0 && left == Left::Ended,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_and_leaves_count_connections_in_the_view_and_go_out_as_deltas() {
        let (node, channel, ann) = (Id::new_v4(), Id::new_v4(), Id::new_v4());
        let presence = Presence::new(node, Duration::from_secs(5), 10);
        presence.join(channel, ann, "ann");
        presence.join(channel, ann, "ann");
        let snapshot = presence.snapshot(channel, Some(ann));
        assert_eq!((snapshot.count, snapshot.members[0].connections), (1, 2));
        let deltas = presence.inner().local.take_deltas();
        assert_eq!(deltas.len(), 1);
        assert_eq!(deltas[0].entries.len(), 1, "one entry per user");
        assert_eq!(deltas[0].entries[0].connections, 2);
        presence.leave(channel, ann, Left::Dropped);
        presence.leave(channel, ann, Left::Ended);
        let deltas = presence.inner().local.take_deltas();
        assert_eq!(deltas[0].entries[0].connections, 0);
        assert!(deltas[0].entries[0].ended, "the last one was ended");
        assert_eq!(presence.snapshot(channel, None).count, 0, "ended: no grace");
        presence.leave(channel, ann, Left::Dropped);
        assert!(presence.inner().local.take_deltas().is_empty());
        let held = presence.inner().view.held_by(node);
        assert!(held.is_empty());
    }

    #[test]
    fn a_batch_of_many_changes_to_a_channel_is_its_snapshot_and_a_few_are_events() {
        let now = Instant::now();
        let mut view = View::new(Duration::from_secs(5));
        let node = Id::new_v4();
        let (quiet, storm) = (Id::new_v4(), Id::new_v4());
        // 100 users already in `quiet`, announced.
        for _ in 0..100 {
            view.report(node, (quiet, Id::new_v4()), "u", 1, Left::Dropped, now);
        }
        let mut storms = Storms::new();
        poll(&mut view, &mut storms, 1000, now);
        // A batch without changes: `quiet` is calm again.
        poll(&mut view, &mut storms, 1000, now);
        assert!(storms.is_empty());
        // A few join `quiet` (an eighth of 100 is 12), many join `storm`.
        for _ in 0..3 {
            view.report(node, (quiet, Id::new_v4()), "u", 1, Left::Dropped, now);
        }
        for _ in 0..40 {
            view.report(node, (storm, Id::new_v4()), "u", 1, Left::Dropped, now);
        }
        let batch = poll(&mut view, &mut storms, 1000, now);
        assert_eq!(batch.generation, 3);
        let events = batch
            .announcements
            .iter()
            .filter(|a| matches!(a, Announcement::Change(c) if c.channel == quiet && c.online))
            .count();
        assert_eq!(events, 3);
        let snapshots: Vec<&Snapshot> = batch
            .announcements
            .iter()
            .filter_map(|a| match a {
                Announcement::Snapshot(channel, s) if *channel == storm => Some(s),
                _ => None,
            })
            .collect();
        assert_eq!(snapshots.len(), 1, "{batch:?}");
        assert_eq!(snapshots[0].count, 40);
        assert_eq!(snapshots[0].members.len(), 40);
        assert_eq!(snapshots[0].generation, 3);
        assert_eq!(batch.announcements.len(), 4);

        // The storm's tail: two more (under the ratio) are still one
        // snapshot; one alone is an event, and the storm is over.
        for _ in 0..2 {
            view.report(node, (storm, Id::new_v4()), "u", 1, Left::Dropped, now);
        }
        let tail = poll(&mut view, &mut storms, 1000, now);
        assert!(
            matches!(tail.announcements[..], [Announcement::Snapshot(..)]),
            "{tail:?}"
        );
        view.report(node, (storm, Id::new_v4()), "u", 1, Left::Dropped, now);
        let calm = poll(&mut view, &mut storms, 1000, now);
        assert!(
            matches!(calm.announcements[..], [Announcement::Change(_)]),
            "{calm:?}"
        );
        assert!(storms.is_empty());
    }
}
