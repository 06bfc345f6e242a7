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

use compact_str::CompactString;

use crate::channel::Id;
use users::Users;

mod users;

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
    /// The polls done when it was taken: it is what they announced (and
    /// the asker), so the changes of later polls are changes to it.
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

/// A node, as an index into [`View::nodes`]: two bytes per user instead of
/// sixteen.
type NodeIndex = u16;

/// [`UserState::node`] when no node holds the user's connections.
const NOBODY: NodeIndex = NodeIndex::MAX;
/// [`UserState::node`] when several nodes do (each one's count is in
/// [`View::spread`]).
const SPREAD: NodeIndex = NodeIndex::MAX - 1;

/// One user in one channel: 32 bytes, the name inline up to 24 bytes
/// (what most of a node's presence memory is).
#[derive(Debug)]
struct UserState {
    username: Name,
    /// Connections holding the channel, on every node.
    count: u32,
    /// The node holding them, or [`NOBODY`], or [`SPREAD`].
    node: NodeIndex,
    /// Whether the user was last announced online.
    announced: bool,
}

/// A present user's name. A token without `name` shows the user id: that
/// name is not kept (its 36 characters would be a heap allocation for
/// every such user in every channel), but made again when shown.
#[derive(Debug)]
struct Name(Option<CompactString>);

impl Name {
    fn new(user: Id, name: &str) -> Name {
        if is_id(user, name) {
            Name(None)
        } else {
            Name(Some(CompactString::new(name)))
        }
    }

    /// Whether this is `name` (of `user`), without making either.
    fn is(&self, user: Id, name: &str) -> bool {
        match &self.0 {
            Some(kept) => kept == name,
            None => is_id(user, name),
        }
    }

    fn show(&self, user: Id) -> String {
        match &self.0 {
            Some(name) => name.to_string(),
            None => user.to_string(),
        }
    }
}

/// Whether `name` is `user`'s id as text (lower-case, hyphenated).
fn is_id(user: Id, name: &str) -> bool {
    let mut id = uuid::Uuid::encode_buffer();
    &*user.0.hyphenated().encode_lower(&mut id) == name
}

/// The presence of every channel, as this node sees the deployment.
#[derive(Debug)]
pub struct View {
    grace: Duration,
    /// Each channel's users, by user id (a snapshot lists them in order).
    channels: HashMap<Id, Users>,
    /// The nodes reporting, by index; a gone node's slot is reused.
    nodes: Vec<Option<NodeId>>,
    /// Users held on several nodes: each node's count.
    spread: HashMap<(Id, Id), Vec<(NodeIndex, u32)>>,
    /// Users with no connection left, online until then.
    graces: HashMap<(Id, Id), Instant>,
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
            nodes: Vec::new(),
            spread: HashMap::new(),
            graces: HashMap::new(),
            dirty: BTreeSet::new(),
            generation: 0,
        }
    }

    /// Polls done so far: the generation of the last changes announced.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    fn find_node(&self, node: NodeId) -> Option<NodeIndex> {
        let at = self.nodes.iter().position(|n| *n == Some(node))?;
        NodeIndex::try_from(at).ok()
    }

    /// The node's index, given one if it has none (`None`: the table is
    /// full, which a deployment never reaches).
    fn node_index(&mut self, node: NodeId) -> Option<NodeIndex> {
        if let Some(at) = self.find_node(node) {
            return Some(at);
        }
        let at = match self.nodes.iter().position(Option::is_none) {
            Some(free) => free,
            None => {
                self.nodes.push(None);
                self.nodes.len() - 1
            }
        };
        let index = NodeIndex::try_from(at).ok().filter(|i| *i < SPREAD)?;
        self.nodes[at] = Some(node);
        Some(index)
    }

    /// Each node's count of the user's connections.
    fn holders(&self, key: (Id, Id), state: &UserState) -> Vec<(NodeIndex, u32)> {
        match state.node {
            NOBODY => Vec::new(),
            SPREAD => self.spread.get(&key).cloned().unwrap_or_default(),
            node => vec![(node, state.count)],
        }
    }

    /// Connections of `user` in `channel` that `node` holds.
    pub fn connections_on(&self, node: NodeId, (channel, user): (Id, Id)) -> u32 {
        let (Some(index), Some(state)) = (
            self.find_node(node),
            self.channels
                .get(&channel)
                .and_then(|users| users.get(&user)),
        ) else {
            return 0;
        };
        self.holders((channel, user), state)
            .iter()
            .find(|(n, _)| *n == index)
            .map_or(0, |(_, count)| *count)
    }

    /// The name the view has for `user` in `channel`.
    pub fn username_of(&self, channel: Id, user: Id) -> Option<String> {
        let state = self.channels.get(&channel)?.get(&user)?;
        Some(state.username.show(user))
    }

    /// Sets `node`'s count of the user's connections; returns the count
    /// on every node, before and after.
    fn set_count(&mut self, key: (Id, Id), index: NodeIndex, connections: u32) -> (u32, u32) {
        let Some(state) = self.channels.get(&key.0).and_then(|u| u.get(&key.1)) else {
            return (0, 0);
        };
        let before = state.count;
        let mut holders = self.holders(key, state);
        match holders.iter_mut().find(|(n, _)| *n == index) {
            Some(held) => held.1 = connections,
            None => holders.push((index, connections)),
        }
        holders.retain(|(_, count)| *count > 0);
        let after: u32 = holders.iter().map(|(_, count)| *count).sum();
        let node = match holders[..] {
            [] => NOBODY,
            [(node, _)] => node,
            _ => SPREAD,
        };
        if node == SPREAD {
            self.spread.insert(key, holders);
        } else if self.spread.remove(&key).is_some() {
            crate::sparse::give_back(&mut self.spread);
        }
        if let Some(state) = self
            .channels
            .get_mut(&key.0)
            .and_then(|u| u.get_mut(&key.1))
        {
            state.count = after;
            state.node = node;
        }
        (before, after)
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
        let Some(index) = self.node_index(node) else {
            tracing::warn!(%node, "presence: too many nodes; report ignored");
            return;
        };
        let state = self
            .channels
            .entry(channel)
            .or_default()
            .get_or_insert_with(user, || UserState {
                username: Name::new(user, username),
                count: 0,
                node: NOBODY,
                announced: false,
            });
        if connections > 0 && !state.username.is(user, username) {
            state.username = Name::new(user, username);
        }
        let key = (channel, user);
        let (before, after) = self.set_count(key, index, connections);
        if after > 0 {
            self.graces.remove(&key);
        } else if before > 0 {
            match left {
                Left::Dropped => {
                    self.graces.insert(key, now + self.grace);
                }
                Left::Ended => {
                    self.graces.remove(&key);
                }
            }
        } else if left == Left::Ended {
            // Already gone from every node, maybe within a grace: a ban
            // ends the grace too.
            self.graces.remove(&key);
        }
        self.dirty.insert(key);
    }

    /// Every report of `node` is gone (it stopped, or nothing was heard of
    /// it for the detection time): its users are dropped connections.
    pub fn node_gone(&mut self, node: NodeId, now: Instant) {
        let Some(index) = self.find_node(node) else {
            return;
        };
        let held: Vec<(Id, Id)> = self
            .channels
            .iter()
            .flat_map(|(channel, users)| {
                users
                    .iter()
                    .filter(|(_, s)| s.node == index || s.node == SPREAD)
                    .map(move |(user, _)| (*channel, *user))
            })
            .collect();
        for key in held {
            let (before, after) = self.set_count(key, index, 0);
            if before > 0 && after == 0 {
                self.graces.insert(key, now + self.grace);
                self.dirty.insert(key);
            }
        }
        self.nodes[usize::from(index)] = None;
    }

    /// What `node` holds, every channel's: `(channel, user, username,
    /// connections)`.
    pub fn held_by(&self, node: NodeId) -> Vec<(Id, Id, String, u32)> {
        let Some(index) = self.find_node(node) else {
            return Vec::new();
        };
        let mut held = Vec::new();
        for (channel, users) in &self.channels {
            for (user, state) in users.iter() {
                if state.node != index && state.node != SPREAD {
                    continue;
                }
                let count = self
                    .holders((*channel, *user), state)
                    .iter()
                    .find(|(n, _)| *n == index)
                    .map_or(0, |(_, count)| *count);
                if count > 0 {
                    held.push((*channel, *user, state.username.show(*user), count));
                }
            }
        }
        held
    }

    /// `node`'s whole holdings are `entries` (a sync): what it held before
    /// and no longer does counts as dropped.
    pub fn replace_node(
        &mut self,
        node: NodeId,
        entries: impl IntoIterator<Item = (Id, Id, String, u32)>,
        now: Instant,
    ) {
        let mut before: HashMap<(Id, Id), String> = self
            .held_by(node)
            .into_iter()
            .map(|(channel, user, username, _)| ((channel, user), username))
            .collect();
        for (channel, user, username, connections) in entries {
            before.remove(&(channel, user));
            self.report(
                node,
                (channel, user),
                &username,
                connections,
                Left::Dropped,
                now,
            );
        }
        for ((channel, user), username) in before {
            self.report(node, (channel, user), &username, 0, Left::Dropped, now);
        }
    }

    /// Online now: connected somewhere, or within the grace.
    fn online(&self, key: (Id, Id), state: &UserState, now: Instant) -> bool {
        state.count > 0 || self.graces.get(&key).is_some_and(|until| now < *until)
    }

    /// The changes to announce since the last poll, by channel: each user
    /// whose state now differs from what was announced. A user within
    /// their grace is still online, and is looked at again at the next
    /// poll after it ends ([`View::next_deadline`]).
    pub fn poll(&mut self, now: Instant) -> Vec<Change> {
        self.generation += 1;
        let mut changes = Vec::new();
        let mut keep = BTreeSet::new();
        for key in std::mem::take(&mut self.dirty) {
            let (channel, user) = key;
            let Some(state) = self.channels.get(&channel).and_then(|u| u.get(&user)) else {
                continue;
            };
            let online = self.online(key, state, now);
            let connected = state.count > 0;
            if online != state.announced {
                changes.push(Change {
                    channel,
                    user,
                    username: state.username.show(user),
                    online,
                });
            }
            if online && !connected {
                keep.insert(key); // its grace still runs
            } else if !online {
                self.graces.remove(&key);
                crate::sparse::give_back(&mut self.graces);
                if let Some(users) = self.channels.get_mut(&channel) {
                    users.remove(&user);
                    if users.is_empty() {
                        self.channels.remove(&channel);
                        crate::sparse::give_back(&mut self.channels);
                    }
                }
                continue;
            }
            if let Some(state) = self
                .channels
                .get_mut(&channel)
                .and_then(|u| u.get_mut(&user))
            {
                state.announced = online;
            }
        }
        self.dirty = keep;
        changes
    }

    /// The channel's users last announced online: what a snapshot without
    /// an asker counts.
    pub fn announced(&self, channel: Id) -> usize {
        self.channels
            .get(&channel)
            .map_or(0, |users| users.values().filter(|s| s.announced).count())
    }

    /// Users present (one per user and channel), within a grace or not.
    pub fn present(&self) -> usize {
        self.channels.values().map(|users| users.len()).sum()
    }

    /// When the earliest running grace ends, for the next poll.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.graces.values().copied().min()
    }

    /// The channel's present users as last announced (so that the
    /// changes of later polls are changes to it), and `asker` if present
    /// now (a user is in their own snapshot): at most `limit` of them, by
    /// user id, with the full count.
    pub fn snapshot(&self, channel: Id, limit: usize, asker: Option<Id>) -> Snapshot {
        let mut count = 0;
        let mut members = Vec::new();
        if let Some(users) = self.channels.get(&channel) {
            for (user, state) in users.iter() {
                let shown = state.announced || (Some(*user) == asker && state.count > 0);
                if !shown {
                    continue;
                }
                count += 1;
                if members.len() < limit {
                    members.push(Member {
                        user: *user,
                        username: state.username.show(*user),
                        connections: state.count,
                    });
                }
            }
        }
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
