//! The membership projection: who is a member of, or banned from, which
//! channel, and which channels are deleted — folded from the log's
//! `member_joined`, `member_left`, `user_kicked`, `user_banned`,
//! `user_unbanned` and `channel_deleted` events, and snapshotted in the
//! store with the last sequence it accounts for.
//!
//! Architecture invariant: the fold is a pure function of the events in
//! sequence order; the same events give the same projection on every node.
//! It does no I/O: reading the log into it is `Log::fold_into`, beside the log.

use std::collections::{BTreeSet, HashSet};

use serde::{Deserialize, Serialize};

use crate::access::Standing;
use crate::channel::{Channel, Id};
use crate::event::{EventData, EventType};

/// The event types the projection folds, on chat channel copies.
pub const FOLDED: &[EventType] = &[
    EventType::MemberJoined,
    EventType::MemberLeft,
    EventType::UserKicked,
    EventType::UserBanned,
    EventType::UserUnbanned,
    EventType::ChannelDeleted,
];

/// Memberships, bans and deleted channels.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Projection {
    members: HashSet<(Id, Id)>,
    banned: HashSet<(Id, Id)>,
    deleted: HashSet<Id>,
    /// Every event up to this sequence is accounted for.
    pub last_seq: u64,
    /// The epoch of the stream these sequences belong to (`crate::log::Epoch`),
    /// kept with the snapshot so that a snapshot of another stream is never
    /// reused; `None` in snapshots written before epochs existed.
    pub epoch: Option<String>,
}

/// The stored form of a [`Projection`]: sorted, so equal projections give
/// equal snapshots.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub last_seq: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<String>,
    pub members: BTreeSet<(Id, Id)>,
    pub banned: BTreeSet<(Id, Id)>,
    pub deleted: BTreeSet<Id>,
}

impl Projection {
    pub fn standing(&self, channel: Id, user: Id) -> Standing {
        Standing {
            member: self.members.contains(&(channel, user)),
            banned: self.banned.contains(&(channel, user)),
            channel_deleted: self.deleted.contains(&channel),
        }
    }

    /// Folds one stored event copy. Sequences at or below `last_seq` are
    /// already accounted for and ignored, so a replayed tail is harmless.
    pub fn apply(&mut self, seq: u64, channel: Channel, data: &EventData) {
        if seq <= self.last_seq {
            return;
        }
        self.last_seq = seq;
        let Channel::Chat(ch) = channel else { return };
        match data {
            EventData::MemberJoined(d) => {
                self.members.insert((ch, d.user_id));
            }
            EventData::MemberLeft(d) => {
                self.members.remove(&(ch, d.user_id));
            }
            EventData::UserKicked(d) => {
                if let Some(user) = d.user_id {
                    self.members.remove(&(ch, user));
                }
            }
            EventData::UserBanned(d) => {
                if let Some(user) = d.user_id {
                    self.members.remove(&(ch, user));
                    self.banned.insert((ch, user));
                }
            }
            EventData::UserUnbanned(d) => {
                if let Some(user) = d.user_id {
                    self.banned.remove(&(ch, user));
                }
            }
            EventData::ChannelDeleted(_) => {
                self.deleted.insert(ch);
                self.members.retain(|(c, _)| *c != ch);
                self.banned.retain(|(c, _)| *c != ch);
            }
            _ => {}
        }
    }

    /// Moves `last_seq` forward to `seq` when everything up to it is folded.
    pub fn advance_to(&mut self, seq: u64) {
        self.last_seq = self.last_seq.max(seq);
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            last_seq: self.last_seq,
            epoch: self.epoch.clone(),
            members: self.members.iter().copied().collect(),
            banned: self.banned.iter().copied().collect(),
            deleted: self.deleted.iter().copied().collect(),
        }
    }

    pub fn from_snapshot(snapshot: Snapshot) -> Projection {
        Projection {
            members: snapshot.members.into_iter().collect(),
            banned: snapshot.banned.into_iter().collect(),
            deleted: snapshot.deleted.into_iter().collect(),
            last_seq: snapshot.last_seq,
            epoch: snapshot.epoch,
        }
    }

    pub fn len(&self) -> (usize, usize, usize) {
        (self.members.len(), self.banned.len(), self.deleted.len())
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
mod tests {
    use super::*;
    use crate::event::{BanChange, ChannelDeleted, Member, UserKicked};

    #[test]
    fn folds_the_membership_rules() {
        let ch = Id::new_v4();
        let u = Id::new_v4();
        let chat = Channel::Chat(ch);
        let member = Member {
            channel_id: ch,
            user_id: u,
            username: None,
        };
        let ban = BanChange {
            channel_id: ch,
            user_id: Some(u),
            motive: "m".into(),
        };
        let mut p = Projection::default();
        p.apply(1, chat, &EventData::MemberJoined(member.clone()));
        assert!(p.standing(ch, u).member);
        p.apply(2, chat, &EventData::UserBanned(ban.clone()));
        assert_eq!(
            p.standing(ch, u),
            Standing {
                member: false,
                banned: true,
                channel_deleted: false
            }
        );
        // The user copy never changes the projection.
        p.apply(
            3,
            Channel::User(u),
            &EventData::UserUnbanned(BanChange {
                user_id: None,
                ..ban.clone()
            }),
        );
        assert!(p.standing(ch, u).banned);
        p.apply(4, chat, &EventData::UserUnbanned(ban.clone()));
        assert_eq!(
            p.standing(ch, u),
            Standing::default(),
            "unban restores no membership"
        );
        p.apply(5, chat, &EventData::MemberJoined(member.clone()));
        p.apply(
            6,
            chat,
            &EventData::UserKicked(UserKicked {
                channel_id: ch,
                user_id: Some(u),
            }),
        );
        assert!(!p.standing(ch, u).member);
        // An old sequence is ignored.
        p.apply(5, chat, &EventData::MemberJoined(member.clone()));
        assert!(!p.standing(ch, u).member);
        p.apply(
            7,
            chat,
            &EventData::ChannelDeleted(ChannelDeleted { channel_id: ch }),
        );
        assert!(p.standing(ch, u).channel_deleted);
        assert_eq!(p.last_seq, 7);
    }

    #[test]
    fn snapshots_round_trip_and_diff() {
        let ch = Id::new_v4();
        let u = Id::new_v4();
        let mut p = Projection::default();
        p.apply(
            9,
            Channel::Chat(ch),
            &EventData::MemberJoined(Member {
                channel_id: ch,
                user_id: u,
                username: None,
            }),
        );
        let snap = p.snapshot();
        let json = serde_json::to_vec(&snap).unwrap();
        let back: Snapshot = serde_json::from_slice(&json).unwrap();
        assert_eq!(Projection::from_snapshot(back.clone()), p);
        assert!(diff(&snap, &back).is_empty());
        let empty = Snapshot::default();
        assert_eq!(diff(&snap, &empty).len(), 2);
    }
}
