//! The membership projection: who is a member of, or banned from, which
//! channel, and which channels are deleted — folded from the log's
//! `member_joined`, `member_left`, `user_kicked`, `user_banned`,
//! `user_unbanned` and `channel_deleted` events, and snapshotted in the
//! store with the last sequence it accounts for.
//!
//! Memberships and bans are indexed by channel, so `channel_deleted` drops
//! one entry whatever the channel's size. A snapshot writer copies the
//! projection under its lock only once: it keeps its own sorted copy (a
//! [`Snapshot`]) and brings it up to date with the [`Changes`] the fold
//! recorded since its last write ([`Projection::record_changes`] once,
//! then [`Projection::take_changes`]). The cost, stated: that copy is a
//! second projection in memory, and the fold pushes one [`Change`] per
//! membership fact that changed.
//!
//! Architecture invariant: the fold is a pure function of the events in
//! sequence order; the same events give the same projection on every node.
//! It does no I/O: reading the log into it is `Log::fold_into`, beside the log.

use std::collections::{BTreeSet, HashMap, HashSet};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::access::Standing;
use crate::channel::{Channel, Id};
use crate::event::{EventData, EventType};
use crate::position::Epoch;

/// The event types the projection folds, on chat channel copies.
pub const FOLDED: &[EventType] = &[
    EventType::MemberJoined,
    EventType::MemberLeft,
    EventType::UserKicked,
    EventType::UserBanned,
    EventType::UserUnbanned,
    EventType::ChannelDeleted,
];

/// Users by channel. A channel with no user has no entry, so equal facts
/// give equal indexes.
type ByChannel = HashMap<Id, HashSet<Id>>;

/// Memberships, bans and deleted channels.
#[derive(Clone, Debug, Default)]
pub struct Projection {
    members: ByChannel,
    banned: ByChannel,
    deleted: HashSet<Id>,
    /// Every event up to this sequence is accounted for.
    pub last_seq: u64,
    /// The epoch of the stream these sequences belong to, kept with the
    /// snapshot so that a snapshot of another stream is never reused;
    /// `None` in snapshots written before epochs existed.
    pub epoch: Option<Epoch>,
    /// The changes since the last [`Projection::take_changes`], while a
    /// snapshot writer records them; not part of the projection's value.
    journal: Option<Vec<Change>>,
}

/// Equal facts and `last_seq`; a recording in progress does not count.
impl PartialEq for Projection {
    fn eq(&self, other: &Projection) -> bool {
        self.last_seq == other.last_seq
            && self.epoch == other.epoch
            && self.members == other.members
            && self.banned == other.banned
            && self.deleted == other.deleted
    }
}

impl Eq for Projection {}

/// One membership fact that changed, as the fold applied it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// `member_joined`.
    Joined { channel: Id, user: Id },
    /// `member_left` or `user_kicked`.
    Left { channel: Id, user: Id },
    /// `user_banned`: banned, and no longer a member.
    Banned { channel: Id, user: Id },
    /// `user_unbanned`: the ban only.
    Unbanned { channel: Id, user: Id },
    /// `channel_deleted`: deleted, with every membership and ban in it gone.
    Deleted { channel: Id },
}

impl Change {
    /// The change an event on chat channel `channel` asks for, if any.
    fn of(channel: Id, data: &EventData) -> Option<Change> {
        let user = |user: Option<Id>| user.map(|user| (channel, user));
        Some(match data {
            EventData::MemberJoined(d) => Change::Joined {
                channel,
                user: d.user_id,
            },
            EventData::MemberLeft(d) => Change::Left {
                channel,
                user: d.user_id,
            },
            EventData::UserKicked(d) => {
                let (channel, user) = user(d.user_id)?;
                Change::Left { channel, user }
            }
            EventData::UserBanned(d) => {
                let (channel, user) = user(d.user_id)?;
                Change::Banned { channel, user }
            }
            EventData::UserUnbanned(d) => {
                let (channel, user) = user(d.user_id)?;
                Change::Unbanned { channel, user }
            }
            EventData::ChannelDeleted(_) => Change::Deleted { channel },
            _ => return None,
        })
    }
}

/// The changes folded since the last batch was taken, up to `last_seq`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub last_seq: u64,
    changes: Vec<Change>,
}

impl Changes {
    /// Whether no membership fact changed (only `last_seq` moved).
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    pub fn len(&self) -> usize {
        self.changes.len()
    }
}

/// The fold's rules as of this version: 1 since events on non-canonical
/// subjects are invalid (before, a ban on `chat.channel.{UPPER-CASE-ID}…`
/// was folded). A snapshot of another format is not used.
pub const SNAPSHOT_FORMAT: u32 = 1;

/// The stored form of a [`Projection`]: sorted, so equal projections give
/// equal snapshots.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The fold's rules the snapshot was made by ([`SNAPSHOT_FORMAT`]);
    /// absent (0) in snapshots of versions that folded events on
    /// non-canonical subjects, which are folded afresh.
    #[serde(default)]
    pub format: u32,
    pub last_seq: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<Epoch>,
    pub members: BTreeSet<(Id, Id)>,
    pub banned: BTreeSet<(Id, Id)>,
    pub deleted: BTreeSet<Id>,
}

impl Projection {
    pub fn standing(&self, channel: Id, user: Id) -> Standing {
        Standing {
            member: holds(&self.members, channel, user),
            banned: holds(&self.banned, channel, user),
            channel_deleted: self.deleted.contains(&channel),
        }
    }

    /// Folds one stored event copy. Sequences at or below `last_seq` are
    /// already accounted for and ignored, so a replayed tail is harmless.
    /// Costs O(1) whatever the event, `channel_deleted` included.
    pub fn apply(&mut self, seq: u64, channel: Channel, data: &EventData) {
        if seq <= self.last_seq {
            return;
        }
        self.last_seq = seq;
        let Channel::Chat(ch) = channel else { return };
        let Some(change) = Change::of(ch, data) else {
            return;
        };
        if self.change(change) {
            if let Some(journal) = &mut self.journal {
                journal.push(change);
            }
        }
    }

    /// Applies one change; whether any fact changed.
    fn change(&mut self, change: Change) -> bool {
        match change {
            Change::Joined { channel, user } => {
                self.members.entry(channel).or_default().insert(user)
            }
            Change::Left { channel, user } => unhold(&mut self.members, channel, user),
            Change::Banned { channel, user } => {
                let left = unhold(&mut self.members, channel, user);
                self.banned.entry(channel).or_default().insert(user) || left
            }
            Change::Unbanned { channel, user } => unhold(&mut self.banned, channel, user),
            Change::Deleted { channel } => {
                // Dropping a channel's set frees it at once: its ids need no drop.
                let members = self.members.remove(&channel).is_some();
                let banned = self.banned.remove(&channel).is_some();
                self.deleted.insert(channel) || members || banned
            }
        }
    }

    /// Moves `last_seq` forward to `seq` when everything up to it is folded.
    pub fn advance_to(&mut self, seq: u64) {
        self.last_seq = self.last_seq.max(seq);
    }

    /// Starts (or restarts) recording the changes the fold makes, for a
    /// snapshot writer, and returns the projection they start from (without
    /// the recording): the writer sorts it into its own [`Snapshot`] away
    /// from the lock. Costs one copy of the projection; a writer calls it
    /// once.
    pub fn record_changes(&mut self) -> Projection {
        self.journal = None;
        let start = self.clone();
        self.journal = Some(Vec::new());
        start
    }

    /// The changes recorded since the last call (or since
    /// [`Projection::record_changes`]), with the current `last_seq`; `None`
    /// when nothing records them. Costs O(1).
    pub fn take_changes(&mut self) -> Option<Changes> {
        let journal = self.journal.as_mut()?;
        Some(Changes {
            last_seq: self.last_seq,
            changes: std::mem::take(journal),
        })
    }

    /// The sorted copy: O(n log n), so not for a lock the router waits on.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            format: SNAPSHOT_FORMAT,
            last_seq: self.last_seq,
            epoch: self.epoch,
            members: pairs(&self.members),
            banned: pairs(&self.banned),
            deleted: self.deleted.iter().copied().collect(),
        }
    }

    pub fn from_snapshot(snapshot: Snapshot) -> Projection {
        let index = |pairs: BTreeSet<(Id, Id)>| {
            let mut index = ByChannel::new();
            for (channel, user) in pairs {
                index.entry(channel).or_default().insert(user);
            }
            index
        };
        Projection {
            members: index(snapshot.members),
            banned: index(snapshot.banned),
            deleted: snapshot.deleted.into_iter().collect(),
            last_seq: snapshot.last_seq,
            journal: None,
            epoch: snapshot.epoch,
        }
    }

    /// Memberships, bans and deleted channels.
    pub fn len(&self) -> (usize, usize, usize) {
        let count = |index: &ByChannel| index.values().map(HashSet::len).sum();
        (
            count(&self.members),
            count(&self.banned),
            self.deleted.len(),
        )
    }
}

fn holds(index: &ByChannel, channel: Id, user: Id) -> bool {
    index
        .get(&channel)
        .is_some_and(|users| users.contains(&user))
}

/// Removes `user` from `channel`, and the channel's entry once it is empty.
fn unhold(index: &mut ByChannel, channel: Id, user: Id) -> bool {
    let Some(users) = index.get_mut(&channel) else {
        return false;
    };
    let removed = users.remove(&user);
    if users.is_empty() {
        index.remove(&channel);
    }
    removed
}

fn pairs(index: &ByChannel) -> BTreeSet<(Id, Id)> {
    index
        .iter()
        .flat_map(|(channel, users)| users.iter().map(move |user| (*channel, *user)))
        .collect()
}

impl Snapshot {
    /// Brings the snapshot up to date with changes the fold recorded after
    /// it: the result equals the projection's own snapshot at
    /// `changes.last_seq`. O(k log n) for k changes (a deletion removes its
    /// channel's k pairs), meant for a blocking thread.
    pub fn apply_changes(&mut self, changes: Changes) {
        for change in changes.changes {
            match change {
                Change::Joined { channel, user } => {
                    self.members.insert((channel, user));
                }
                Change::Left { channel, user } => {
                    self.members.remove(&(channel, user));
                }
                Change::Banned { channel, user } => {
                    self.members.remove(&(channel, user));
                    self.banned.insert((channel, user));
                }
                Change::Unbanned { channel, user } => {
                    self.banned.remove(&(channel, user));
                }
                Change::Deleted { channel } => {
                    self.deleted.insert(channel);
                    remove_channel(&mut self.members, channel);
                    remove_channel(&mut self.banned, channel);
                }
            }
        }
        self.last_seq = self.last_seq.max(changes.last_seq);
    }
}

/// Removes every pair of `channel`: they are adjacent in the sorted set.
fn remove_channel(pairs: &mut BTreeSet<(Id, Id)>, channel: Id) {
    let first = (channel, Id(Uuid::nil()));
    let gone: Vec<(Id, Id)> = pairs
        .range(first..)
        .take_while(|(c, _)| *c == channel)
        .copied()
        .collect();
    for pair in gone {
        pairs.remove(&pair);
    }
}

/// What differs between two snapshots, one line per fact.
pub fn diff(a: &Snapshot, b: &Snapshot) -> Vec<String> {
    let mut out = Vec::new();
    if a.last_seq != b.last_seq {
        out.push(format!("last_seq: {} vs {}", a.last_seq, b.last_seq));
    }
    let mut sets = |name: &str, x: &BTreeSet<(Id, Id)>, y: &BTreeSet<(Id, Id)>| {
        for (c, u) in x.difference(y) {
            out.push(format!("{name}: channel:{c} user:{u} only in the snapshot"));
        }
        for (c, u) in y.difference(x) {
            out.push(format!(
                "{name}: channel:{c} user:{u} only in the fresh fold"
            ));
        }
    };
    sets("member", &a.members, &b.members);
    sets("banned", &a.banned, &b.banned);
    for c in a.deleted.difference(&b.deleted) {
        out.push(format!("deleted: channel:{c} only in the snapshot"));
    }
    for c in b.deleted.difference(&a.deleted) {
        out.push(format!("deleted: channel:{c} only in the fresh fold"));
    }
    out
}

#[cfg(test)]
mod tests;
