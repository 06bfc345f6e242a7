//! What nodes tell each other about presence, without I/O: this node's
//! own holdings ([`Local`]: its connections per channel and user, and the
//! changes to send, numbered), the messages ([`Delta`], [`Heartbeat`],
//! [`Sync`]), and what it heard of the others ([`Peers`]: each node's last
//! number, a gap that asks for a sync, a node silent for the detection
//! time, gone).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::view::{Left, NodeId};
use crate::channel::Id;

/// One user's holding of one channel on one node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub channel: Id,
    pub user: Id,
    pub username: String,
    pub connections: u32,
    /// With no connection left: whether the subscription was ended (a ban,
    /// an unsubscribe) rather than dropped; an ended one skips the grace.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ended: bool,
}

impl Entry {
    pub fn left(&self) -> Left {
        if self.ended {
            Left::Ended
        } else {
            Left::Dropped
        }
    }
}

/// A node's changes since its previous delta: `version` is the delta's
/// number, one more than the previous one's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delta {
    pub node: NodeId,
    pub version: u64,
    pub entries: Vec<Entry>,
}

/// A node is alive, at this version of its holdings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub node: NodeId,
    pub version: u64,
}

/// A node's whole holdings at `version` (the answer to a sync request).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sync {
    pub node: NodeId,
    pub version: u64,
    pub entries: Vec<Entry>,
}

/// This node's holdings: its connections per (channel, user), and the
/// changes not sent yet.
#[derive(Debug)]
pub struct Local {
    node: NodeId,
    version: u64,
    held: HashMap<(Id, Id), (String, u32)>,
    /// The latest entry of each (channel, user) changed since the last
    /// delta, in the order they first changed.
    pending: Vec<Entry>,
}

impl Local {
    pub fn new(node: NodeId) -> Local {
        Local {
            node,
            version: 0,
            held: HashMap::new(),
            pending: Vec::new(),
        }
    }

    pub fn node(&self) -> NodeId {
        self.node
    }

    /// A connection of `user` subscribed to `channel`: the entry now.
    pub fn join(&mut self, channel: Id, user: Id, username: &str) -> Entry {
        let held = self
            .held
            .entry((channel, user))
            .or_insert_with(|| (username.to_string(), 0));
        held.0 = username.to_string();
        held.1 += 1;
        let entry = Entry {
            channel,
            user,
            username: held.0.clone(),
            connections: held.1,
            ended: false,
        };
        self.note(entry.clone());
        entry
    }

    /// A connection of `user` left `channel`, as `left` says: the entry
    /// now, or `None` if the node held no such connection.
    pub fn leave(&mut self, channel: Id, user: Id, left: Left) -> Option<Entry> {
        let held = self.held.get_mut(&(channel, user))?;
        held.1 = held.1.saturating_sub(1);
        let entry = Entry {
            channel,
            user,
            username: held.0.clone(),
            connections: held.1,
            ended: held.1 == 0 && left == Left::Ended,
        };
        if held.1 == 0 {
            self.held.remove(&(channel, user));
        }
        self.note(entry.clone());
        Some(entry)
    }

    fn note(&mut self, entry: Entry) {
        let at = self
            .pending
            .iter()
            .position(|e| e.channel == entry.channel && e.user == entry.user);
        match at {
            Some(at) => self.pending[at] = entry,
            None => self.pending.push(entry),
        }
    }

    /// The changes since the last delta, numbered, or `None`.
    pub fn take_delta(&mut self) -> Option<Delta> {
        if self.pending.is_empty() {
            return None;
        }
        self.version += 1;
        Some(Delta {
            node: self.node,
            version: self.version,
            entries: std::mem::take(&mut self.pending),
        })
    }

    pub fn heartbeat(&self) -> Heartbeat {
        Heartbeat {
            node: self.node,
            version: self.version,
        }
    }

    /// Everything held, at the version of the last delta sent (changes not
    /// sent yet come in the next delta).
    pub fn sync(&self) -> Sync {
        let pending: std::collections::HashSet<(Id, Id)> =
            self.pending.iter().map(|e| (e.channel, e.user)).collect();
        let mut entries: Vec<Entry> = self
            .held
            .iter()
            .filter(|(key, _)| !pending.contains(key))
            .map(|((channel, user), (username, connections))| Entry {
                channel: *channel,
                user: *user,
                username: username.clone(),
                connections: *connections,
                ended: false,
            })
            .collect();
        entries.sort_by_key(|e| (e.channel, e.user));
        Sync {
            node: self.node,
            version: self.version,
            entries,
        }
    }
}

/// What to do with a message from another node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Heard {
    /// Apply it: it is the next of that node's changes.
    Apply,
    /// Something was missed: ask that node for a sync (and drop this).
    Gap,
    /// Already applied (or older than the sync): drop it.
    Stale,
}

/// The other nodes as heard: each one's last applied version and when it
/// was last heard.
#[derive(Debug)]
pub struct Peers {
    detect: Duration,
    nodes: HashMap<NodeId, (u64, Instant)>,
}

impl Peers {
    /// A node silent for `detect` is gone.
    pub fn new(detect: Duration) -> Peers {
        Peers {
            detect,
            nodes: HashMap::new(),
        }
    }

    /// A delta of `node`, numbered `version`.
    pub fn on_delta(&mut self, node: NodeId, version: u64, now: Instant) -> Heard {
        match self.nodes.get_mut(&node) {
            Some((last, heard)) => {
                *heard = now;
                if version == *last + 1 {
                    *last = version;
                    Heard::Apply
                } else if version <= *last {
                    Heard::Stale
                } else {
                    Heard::Gap
                }
            }
            // A node new to us: its first delta is all it holds; any other
            // means we missed its start.
            None if version == 1 => {
                self.nodes.insert(node, (1, now));
                Heard::Apply
            }
            None => Heard::Gap,
        }
    }

    /// A heartbeat of `node` at `version`: whether a sync is needed (a
    /// change was missed, or the node is new to us).
    pub fn on_heartbeat(&mut self, node: NodeId, version: u64, now: Instant) -> bool {
        match self.nodes.get_mut(&node) {
            Some((last, heard)) => {
                *heard = now;
                version > *last
            }
            None => version > 0,
        }
    }

    /// A sync of `node` at `version` was applied: whether to apply it
    /// (`false`: a newer state was applied already).
    pub fn on_sync(&mut self, node: NodeId, version: u64, now: Instant) -> bool {
        match self.nodes.get_mut(&node) {
            Some((last, _)) if *last > version => false,
            _ => {
                self.nodes.insert(node, (version, now));
                true
            }
        }
    }

    /// The nodes silent for the detection time, forgotten: their holdings
    /// are to be dropped.
    pub fn expired(&mut self, now: Instant) -> Vec<NodeId> {
        let detect = self.detect;
        let gone: Vec<NodeId> = self
            .nodes
            .iter()
            .filter(|(_, (_, heard))| now.saturating_duration_since(*heard) >= detect)
            .map(|(node, _)| *node)
            .collect();
        for node in &gone {
            self.nodes.remove(node);
        }
        gone
    }

    /// The other nodes heard from (that ever held anything).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// When the next node would be found silent.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.nodes
            .values()
            .map(|(_, heard)| *heard + self.detect)
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_numbers_its_deltas_and_keeps_the_latest_entry_of_each_user() {
        let (node, channel, ann) = (Id::new_v4(), Id::new_v4(), Id::new_v4());
        let mut local = Local::new(node);
        assert!(local.take_delta().is_none());
        local.join(channel, ann, "ann");
        local.join(channel, ann, "ann");
        let delta = local.take_delta().expect("a delta");
        assert_eq!(delta.version, 1);
        assert_eq!(delta.entries.len(), 1, "one entry per user");
        assert_eq!(delta.entries[0].connections, 2);
        local.leave(channel, ann, Left::Dropped);
        local.leave(channel, ann, Left::Ended);
        let delta = local.take_delta().expect("a delta");
        assert_eq!(delta.version, 2);
        assert_eq!(delta.entries[0].connections, 0);
        assert!(delta.entries[0].ended, "the last one was ended");
        assert!(local.leave(channel, ann, Left::Dropped).is_none());
        assert_eq!(local.heartbeat().version, 2);
        assert!(local.sync().entries.is_empty());
    }

    #[test]
    fn a_sync_holds_what_was_sent_and_the_next_delta_the_rest() {
        let (node, channel) = (Id::new_v4(), Id::new_v4());
        let (ann, bob) = (Id::new_v4(), Id::new_v4());
        let mut local = Local::new(node);
        local.join(channel, ann, "ann");
        local.take_delta();
        local.join(channel, bob, "bob");
        let sync = local.sync();
        assert_eq!(sync.version, 1);
        assert_eq!(sync.entries.len(), 1);
        assert_eq!(sync.entries[0].user, ann);
        let delta = local.take_delta().expect("bob");
        assert_eq!((delta.version, delta.entries[0].user), (2, bob));
    }

    #[test]
    fn peers_apply_in_order_ask_for_a_sync_on_a_gap_and_forget_the_silent() {
        let (a, b) = (Id::new_v4(), Id::new_v4());
        let t0 = Instant::now();
        let mut peers = Peers::new(Duration::from_secs(6));
        assert_eq!(peers.on_delta(a, 1, t0), Heard::Apply);
        assert_eq!(peers.on_delta(a, 2, t0), Heard::Apply);
        assert_eq!(peers.on_delta(a, 2, t0), Heard::Stale);
        assert_eq!(peers.on_delta(a, 4, t0), Heard::Gap);
        assert!(peers.on_heartbeat(a, 4, t0), "behind: sync");
        assert!(peers.on_sync(a, 4, t0));
        assert_eq!(peers.on_delta(a, 5, t0), Heard::Apply);
        assert!(!peers.on_sync(a, 3, t0), "an older sync is dropped");
        // A node met in the middle of its life.
        assert_eq!(peers.on_delta(b, 7, t0), Heard::Gap);
        assert!(peers.on_heartbeat(b, 7, t0));
        assert!(peers.on_sync(b, 7, t0));
        // a keeps talking, b falls silent.
        let t1 = t0 + Duration::from_secs(4);
        assert!(!peers.on_heartbeat(a, 5, t1));
        assert_eq!(peers.next_deadline(), Some(t0 + Duration::from_secs(6)));
        assert!(peers.expired(t0 + Duration::from_secs(5)).is_empty());
        assert_eq!(peers.expired(t0 + Duration::from_secs(6)), [b]);
        assert_eq!(peers.expired(t1 + Duration::from_secs(6)), [a]);
    }

    #[test]
    fn messages_are_json_and_an_entry_without_ended_is_a_drop() {
        let entry = Entry {
            channel: Id::new_v4(),
            user: Id::new_v4(),
            username: "ann".into(),
            connections: 0,
            ended: false,
        };
        let text = serde_json::to_string(&entry).unwrap();
        assert!(!text.contains("ended"));
        let back: Entry = serde_json::from_str(&text).unwrap();
        assert_eq!(back.left(), Left::Dropped);
    }
}
