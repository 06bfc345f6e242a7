//! What nodes tell each other about presence, without I/O: this node's
//! changes to send, numbered ([`Local`]; what it holds is in its view),
//! the messages ([`Delta`], [`Heartbeat`], [`Sync`], each under NATS's
//! payload limit), and what it heard of the others ([`Peers`]: each node's
//! last number, a gap that asks for a sync, a node silent for the
//! detection time, gone).

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

/// A part of a node's whole holdings at `version` (the answer to a sync
/// request comes in `parts` messages, each under NATS's payload limit).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sync {
    pub node: NodeId,
    pub version: u64,
    #[serde(default)]
    pub part: u32,
    #[serde(default = "one")]
    pub parts: u32,
    pub entries: Vec<Entry>,
}

fn one() -> u32 {
    1
}

/// The most entries one message carries: about 150 bytes each in JSON,
/// well under NATS's default 1 MiB payload limit.
pub const MAX_ENTRIES: usize = 2_000;

/// This node's side of the exchange: its changes not sent yet (the latest
/// entry of each user, in the order they first changed) and the number
/// of the last delta sent. What the node holds is in its own
/// [`super::view::View`], reported under its id: no second copy here.
#[derive(Debug)]
pub struct Local {
    node: NodeId,
    version: u64,
    pending: Vec<Entry>,
    /// Where each pending (channel, user) is in `pending`.
    pending_at: HashMap<(Id, Id), usize>,
}

impl Local {
    pub fn new(node: NodeId) -> Local {
        Local {
            node,
            version: 0,
            pending: Vec::new(),
            pending_at: HashMap::new(),
        }
    }

    pub fn node(&self) -> NodeId {
        self.node
    }

    /// A holding changed: it goes in the next delta, over any earlier
    /// change of the same user not sent yet.
    pub fn note(&mut self, entry: Entry) {
        let key = (entry.channel, entry.user);
        match self.pending_at.get(&key) {
            Some(at) => self.pending[*at] = entry,
            None => {
                self.pending_at.insert(key, self.pending.len());
                self.pending.push(entry);
            }
        }
    }

    /// The changes since the last deltas, numbered, at most
    /// [`MAX_ENTRIES`] in each (none: nothing changed).
    pub fn take_deltas(&mut self) -> Vec<Delta> {
        // A storm's index is given back, not kept for the next one.
        self.pending_at = HashMap::new();
        let pending = std::mem::take(&mut self.pending);
        let mut deltas = Vec::new();
        let mut entries = pending.into_iter().peekable();
        while entries.peek().is_some() {
            self.version += 1;
            deltas.push(Delta {
                node: self.node,
                version: self.version,
                entries: entries.by_ref().take(MAX_ENTRIES).collect(),
            });
        }
        deltas
    }

    pub fn heartbeat(&self) -> Heartbeat {
        Heartbeat {
            node: self.node,
            version: self.version,
        }
    }

    /// The holdings `held` (`(channel, user, username, connections)`, as
    /// the view has them) at the version of the last delta sent, in parts:
    /// changes not sent yet are left out (they come in the next delta).
    pub fn sync(&self, held: Vec<(Id, Id, String, u32)>) -> Vec<Sync> {
        let mut entries: Vec<Entry> = held
            .into_iter()
            .filter(|(channel, user, ..)| !self.pending_at.contains_key(&(*channel, *user)))
            .map(|(channel, user, username, connections)| Entry {
                channel,
                user,
                username,
                connections,
                ended: false,
            })
            .collect();
        entries.sort_by_key(|e| (e.channel, e.user));
        let chunks: Vec<Vec<Entry>> = if entries.is_empty() {
            vec![Vec::new()]
        } else {
            entries.chunks(MAX_ENTRIES).map(<[Entry]>::to_vec).collect()
        };
        let parts = u32::try_from(chunks.len()).unwrap_or(u32::MAX);
        chunks
            .into_iter()
            .enumerate()
            .map(|(part, entries)| Sync {
                node: self.node,
                version: self.version,
                part: u32::try_from(part).unwrap_or(u32::MAX),
                parts,
                entries,
            })
            .collect()
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

    fn entry(channel: Id, user: Id, connections: u32) -> Entry {
        Entry {
            channel,
            user,
            username: "u".into(),
            connections,
            ended: false,
        }
    }

    #[test]
    fn local_numbers_its_deltas_keeps_the_latest_entry_of_each_user_and_splits_big_ones() {
        let (node, channel, ann) = (Id::new_v4(), Id::new_v4(), Id::new_v4());
        let mut local = Local::new(node);
        assert!(local.take_deltas().is_empty());
        local.note(entry(channel, ann, 1));
        local.note(entry(channel, ann, 2));
        let deltas = local.take_deltas();
        assert_eq!(deltas.len(), 1);
        assert_eq!(deltas[0].version, 1);
        assert_eq!(
            deltas[0].entries,
            [entry(channel, ann, 2)],
            "one entry per user"
        );
        for _ in 0..MAX_ENTRIES + 1 {
            local.note(entry(channel, Id::new_v4(), 1));
        }
        let deltas = local.take_deltas();
        let sizes: Vec<(u64, usize)> = deltas
            .iter()
            .map(|d| (d.version, d.entries.len()))
            .collect();
        assert_eq!(sizes, [(2, MAX_ENTRIES), (3, 1)]);
        assert_eq!(local.heartbeat().version, 3);
    }

    #[test]
    fn a_sync_holds_what_was_sent_in_parts_and_the_next_delta_the_rest() {
        let (node, channel) = (Id::new_v4(), Id::new_v4());
        let (ann, bob) = (Id::new_v4(), Id::new_v4());
        let mut local = Local::new(node);
        local.note(entry(channel, ann, 1));
        local.take_deltas();
        local.note(entry(channel, bob, 1));
        let held = vec![
            (channel, ann, "ann".to_string(), 1),
            (channel, bob, "bob".to_string(), 1),
        ];
        let sync = local.sync(held);
        assert_eq!(sync.len(), 1);
        assert_eq!((sync[0].version, sync[0].part, sync[0].parts), (1, 0, 1));
        assert_eq!(sync[0].entries.len(), 1);
        assert_eq!(sync[0].entries[0].user, ann);
        let delta = local.take_deltas();
        assert_eq!((delta[0].version, delta[0].entries[0].user), (2, bob));
        // Nothing held: one empty part. Many: parts under the limit.
        assert_eq!(local.sync(Vec::new())[0].entries.len(), 0);
        let many: Vec<_> = (0..MAX_ENTRIES * 2 + 5)
            .map(|_| (channel, Id::new_v4(), "u".to_string(), 1))
            .collect();
        let parts = local.sync(many);
        assert_eq!(parts.len(), 3);
        assert!(parts
            .iter()
            .all(|p| p.parts == 3 && p.entries.len() <= MAX_ENTRIES));
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
