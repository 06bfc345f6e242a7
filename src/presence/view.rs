//! The deployment's presence as one node sees it, without I/O: every
//! node's report of who holds which channel (theirs arrive over NATS, its
//! own from its connections), merged per user; the grace that keeps a
//! dropped connection's user online for a while; and the changes to
//! announce, coalesced per channel per batch.
//!
//! A user is online in a channel while any node reports a connection of
//! theirs holding it, and for `grace` after the last one went, unless the
//! last one ended for a reason that is not a drop (a ban, a kick, a leave,
//! an unsubscribe): then at once. The changes are computed at each
//! [`View::poll`] against what was last announced, so a user who went and
//! came back between two polls produces nothing, and a storm of changes
//! to one channel is one list per poll.
//!
//! Every node runs the same rules on the same reports, so every node
//! announces the same changes (within the time the reports take to
//! travel).

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use crate::channel::Id;

/// A node of the deployment.
pub type NodeId = Id;

/// One user's presence in one channel, as a change to announce.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub channel: Id,
    pub user: Id,
    pub username: String,
    pub online: bool,
}

/// One present user in a snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub user: Id,
    pub username: String,
    /// The user's connections holding the channel, on every node.
    pub connections: u32,
}

/// A channel's present users, at most the limit of them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// Every present user, however many `members` holds.
    pub count: usize,
    /// Present users, ordered by user id, at most the limit.
    pub members: Vec<Member>,
    pub truncated: bool,
    /// The polls done when it was taken: it covers every change announced
    /// by them (and maybe some announced later).
    pub generation: u64,
}

impl Snapshot {
    /// As the protocol writes it (the `presence` frame's `data`, the HTTP
    /// route's body): `{channel, count, members: [{user_id, username,
    /// connections}], truncated}`.
    pub fn json(&self, channel: Id) -> serde_json::Value {
        let members: Vec<serde_json::Value> = self
            .members
            .iter()
            .map(|m| {
                serde_json::json!({
                    "user_id": m.user,
                    "username": m.username,
                    "connections": m.connections,
                })
            })
            .collect();
        serde_json::json!({
            "channel": crate::channel::Channel::Chat(channel),
            "count": self.count,
            "members": members,
            "truncated": self.truncated,
        })
    }
}

/// How a node's last connection of a user left a channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Left {
    /// The connection dropped (or closed): the user stays online for the
    /// grace, in case they come back.
    Dropped,
    /// The subscription was ended (unsubscribe, ban, kick, leave, deleted
    /// channel): offline at once.
    Ended,
}

/// One user in one channel: each node's connections, and what was last
/// announced.
#[derive(Debug)]
struct UserState {
    username: String,
    /// Connections holding the channel, per node reporting any.
    nodes: Vec<(NodeId, u32)>,
    /// With no connection left: when the grace ends (`None`: at once, or
    /// connected).
    grace_until: Option<Instant>,
    /// Whether the user was last announced online.
    announced: bool,
}

impl UserState {
    fn connections(&self) -> u32 {
        self.nodes.iter().map(|(_, n)| n).sum()
    }

    /// Online now: connected somewhere, or within the grace.
    fn online(&self, now: Instant) -> bool {
        self.connections() > 0 || self.grace_until.is_some_and(|until| now < until)
    }
}

/// The presence of every channel, as this node sees the deployment.
#[derive(Debug)]
pub struct View {
    grace: Duration,
    channels: HashMap<Id, HashMap<Id, UserState>>,
    /// Users whose state changed since the last poll, or whose grace runs.
    dirty: BTreeSet<(Id, Id)>,
    /// Polls done so far; the changes of poll `n` are generation `n`.
    generation: u64,
}

impl View {
    pub fn new(grace: Duration) -> View {
        View {
            grace,
            channels: HashMap::new(),
            dirty: BTreeSet::new(),
            generation: 0,
        }
    }

    /// Polls done so far: the generation of the last changes announced.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// `node` holds `connections` connections of `user` in `channel` now;
    /// when that is zero, `left` says how the last one went.
    pub fn report(
        &mut self,
        node: NodeId,
        (channel, user): (Id, Id),
        username: &str,
        connections: u32,
        left: Left,
        now: Instant,
    ) {
        let users = self.channels.entry(channel).or_default();
        let state = users.entry(user).or_insert_with(|| UserState {
            username: username.to_string(),
            nodes: Vec::new(),
            grace_until: None,
            announced: false,
        });
        if connections > 0 {
            state.username = username.to_string();
        }
        let before = state.connections();
        match state.nodes.iter_mut().find(|(n, _)| *n == node) {
            Some(entry) => entry.1 = connections,
            None if connections > 0 => state.nodes.push((node, connections)),
            None => {}
        }
        state.nodes.retain(|(_, n)| *n > 0);
        let after = state.connections();
        if after > 0 {
            state.grace_until = None;
        } else if before > 0 {
            state.grace_until = match left {
                Left::Dropped => Some(now + self.grace),
                Left::Ended => None,
            };
        } else if left == Left::Ended {
            // Already gone from every node, maybe within a grace: a ban
            // ends the grace too.
            state.grace_until = None;
        }
        self.dirty.insert((channel, user));
    }

    /// Every report of `node` is gone (it stopped, or nothing was heard of
    /// it for the detection time): its users are dropped connections.
    pub fn node_gone(&mut self, node: NodeId, now: Instant) {
        let grace = self.grace;
        for (channel, users) in &mut self.channels {
            for (user, state) in users.iter_mut() {
                let before = state.connections();
                state.nodes.retain(|(n, _)| *n != node);
                if before > 0 && state.connections() == 0 {
                    state.grace_until = Some(now + grace);
                    self.dirty.insert((*channel, *user));
                }
            }
        }
    }

    /// `node`'s whole holdings are `entries` (a sync): what it held before
    /// and no longer does counts as dropped.
    pub fn replace_node(
        &mut self,
        node: NodeId,
        entries: impl IntoIterator<Item = (Id, Id, String, u32)>,
        now: Instant,
    ) {
        let mut held: std::collections::HashSet<(Id, Id)> = self
            .channels
            .iter()
            .flat_map(|(channel, users)| {
                users
                    .iter()
                    .filter(|(_, s)| s.nodes.iter().any(|(n, _)| *n == node))
                    .map(move |(user, _)| (*channel, *user))
            })
            .collect();
        for (channel, user, username, connections) in entries {
            held.remove(&(channel, user));
            self.report(
                node,
                (channel, user),
                &username,
                connections,
                Left::Dropped,
                now,
            );
        }
        for (channel, user) in held {
            let username = self
                .channels
                .get(&channel)
                .and_then(|users| users.get(&user))
                .map(|s| s.username.clone())
                .unwrap_or_default();
            self.report(node, (channel, user), &username, 0, Left::Dropped, now);
        }
    }

    /// The changes to announce since the last poll, by channel: each user
    /// whose state now differs from what was announced. A user within
    /// their grace is still online, and is looked at again at the next
    /// poll after it ends ([`View::next_deadline`]).
    pub fn poll(&mut self, now: Instant) -> Vec<Change> {
        self.generation += 1;
        let mut changes = Vec::new();
        let mut keep = BTreeSet::new();
        for (channel, user) in std::mem::take(&mut self.dirty) {
            let Some(users) = self.channels.get_mut(&channel) else {
                continue;
            };
            let Some(state) = users.get_mut(&user) else {
                continue;
            };
            let online = state.online(now);
            if online != state.announced {
                state.announced = online;
                changes.push(Change {
                    channel,
                    user,
                    username: state.username.clone(),
                    online,
                });
            }
            if online && state.connections() == 0 {
                keep.insert((channel, user)); // its grace still runs
            } else if !online {
                users.remove(&user);
                if users.is_empty() {
                    self.channels.remove(&channel);
                }
            }
        }
        self.dirty = keep;
        changes
    }

    /// Users present (one per user and channel), within a grace or not.
    pub fn present(&self) -> usize {
        self.channels.values().map(|users| users.len()).sum()
    }

    /// When the earliest running grace ends, for the next poll.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.dirty
            .iter()
            .filter_map(|(channel, user)| self.channels.get(channel)?.get(user)?.grace_until)
            .min()
    }

    /// The channel's present users now (a change not announced yet
    /// included: the asking user is in their own snapshot): at most `limit`
    /// of them, by user id, with the full count.
    pub fn snapshot(&self, channel: Id, limit: usize, now: Instant) -> Snapshot {
        let Some(users) = self.channels.get(&channel) else {
            return Snapshot {
                count: 0,
                members: Vec::new(),
                truncated: false,
                generation: self.generation,
            };
        };
        let mut present: Vec<(&Id, &UserState)> =
            users.iter().filter(|(_, s)| s.online(now)).collect();
        present.sort_unstable_by_key(|(user, _)| **user);
        let count = present.len();
        let members = present
            .into_iter()
            .take(limit)
            .map(|(user, state)| Member {
                user: *user,
                username: state.username.clone(),
                connections: state.connections(),
            })
            .collect();
        Snapshot {
            count,
            members,
            truncated: count > limit,
            generation: self.generation,
        }
    }
}

#[cfg(test)]
mod tests;
