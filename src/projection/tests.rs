//! The fold's rules, checked against a flat reference fold (the one before
//! memberships were indexed by channel), and the snapshot writer's copy.

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

/// The fold as it was before memberships were indexed by channel: one
/// flat set per fact and an O(members) `retain` per deletion. The
/// reference the indexed fold must agree with.
#[derive(Default)]
struct Flat {
    members: HashSet<(Id, Id)>,
    banned: HashSet<(Id, Id)>,
    deleted: HashSet<Id>,
    last_seq: u64,
}

impl Flat {
    fn apply(&mut self, seq: u64, channel: Channel, data: &EventData) {
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

    fn standing(&self, channel: Id, user: Id) -> Standing {
        Standing {
            member: self.members.contains(&(channel, user)),
            banned: self.banned.contains(&(channel, user)),
            channel_deleted: self.deleted.contains(&channel),
        }
    }

    fn snapshot(&self) -> Snapshot {
        Snapshot {
            format: SNAPSHOT_FORMAT,
            last_seq: self.last_seq,
            epoch: None,
            members: self.members.iter().copied().collect(),
            banned: self.banned.iter().copied().collect(),
            deleted: self.deleted.iter().copied().collect(),
        }
    }
}

/// Event `kind` (0..8) on chat channel `ch` about `user`: joins (twice
/// as likely), a leave, a kick, a ban, an unban, a ban with no user
/// (which the fold ignores), a deletion.
fn event(kind: u8, ch: Id, user: Id) -> EventData {
    let member = Member {
        channel_id: ch,
        user_id: user,
        username: None,
    };
    let ban = |user_id| BanChange {
        channel_id: ch,
        user_id,
        motive: "m".into(),
    };
    match kind {
        0 | 1 => EventData::MemberJoined(member),
        2 => EventData::MemberLeft(member),
        3 => EventData::UserKicked(UserKicked {
            channel_id: ch,
            user_id: Some(user),
        }),
        4 => EventData::UserBanned(ban(Some(user))),
        5 => EventData::UserUnbanned(ban(Some(user))),
        6 => EventData::UserBanned(ban(None)),
        _ => EventData::ChannelDeleted(ChannelDeleted { channel_id: ch }),
    }
}

#[test]
fn deleting_a_channel_denies_everyone_and_keeps_its_neighbours() {
    let (gone, kept) = (Id::new_v4(), Id::new_v4());
    let users: Vec<Id> = (0..50).map(|_| Id::new_v4()).collect();
    let mut p = Projection::default();
    let mut flat = Flat::default();
    let mut seq = 0;
    let mut fold = |p: &mut Projection, flat: &mut Flat, ch: Id, data: EventData| {
        seq += 1;
        p.apply(seq, Channel::Chat(ch), &data);
        flat.apply(seq, Channel::Chat(ch), &data);
    };
    for (i, user) in users.iter().enumerate() {
        for ch in [gone, kept] {
            let kind = if i % 5 == 0 { 4 } else { 0 };
            fold(&mut p, &mut flat, ch, event(kind, ch, *user));
        }
    }
    let before = p.snapshot();
    fold(&mut p, &mut flat, gone, event(7, gone, users[0]));
    for user in &users {
        assert_eq!(
            p.standing(gone, *user),
            Standing {
                member: false,
                banned: false,
                channel_deleted: true
            }
        );
        assert_eq!(p.standing(kept, *user), flat.standing(kept, *user));
        assert!(!p.standing(kept, *user).channel_deleted);
    }
    assert_eq!(p.len(), (40, 10, 1));
    let after = p.snapshot();
    assert_eq!(after, flat.snapshot());
    assert!(after.members.iter().all(|(c, _)| *c == kept));
    assert_eq!(
        diff(&before, &after).len(),
        1 + 50 + 1,
        "last_seq, the 40 + 10 pairs of the deleted channel, and the deletion"
    );
    // A deleted channel stays deleted; a later join is recorded as before.
    fold(&mut p, &mut flat, gone, event(0, gone, users[1]));
    assert_eq!(p.standing(gone, users[1]), flat.standing(gone, users[1]));
    assert_eq!(p.snapshot(), flat.snapshot());
    assert!(diff(&p.snapshot(), &flat.snapshot()).is_empty());
}

#[test]
fn recorded_changes_bring_a_snapshot_up_to_date() {
    let ch = Id::new_v4();
    let u = Id::new_v4();
    let mut p = Projection::default();
    assert_eq!(p.take_changes(), None, "nothing records until asked");
    p.apply(1, Channel::Chat(ch), &event(0, ch, u));
    let mut copy = p.record_changes().snapshot();
    p.apply(2, Channel::Chat(ch), &event(4, ch, u));
    p.apply(3, Channel::Global, &event(0, ch, u));
    p.advance_to(5);
    let changes = p.take_changes().unwrap();
    assert_eq!(changes.len(), 1);
    assert_eq!(changes.last_seq, 5);
    copy.apply_changes(changes);
    assert_eq!(copy, p.snapshot());
    let nothing = p.take_changes().unwrap();
    assert!(nothing.is_empty());
}

proptest::proptest! {
    /// Over random folds: the indexed projection agrees with the flat
    /// one fact for fact, a snapshot round-trips, and a copy taken at any
    /// point and brought up to date with the recorded changes equals the
    /// final snapshot.
    #[test]
    fn the_indexed_fold_agrees_with_the_flat_one(
        events in proptest::collection::vec((0u8..8, 0usize..3, 0usize..4), 0..120),
        split in 0usize..120,
        batches in 1usize..5,
    ) {
        let channels: Vec<Id> = (0..3).map(|_| Id::new_v4()).collect();
        let users: Vec<Id> = (0..4).map(|_| Id::new_v4()).collect();
        let mut p = Projection::default();
        let mut flat = Flat::default();
        let mut copy = None;
        let split = split.min(events.len());
        let every = (events.len() / batches).max(1);
        for (i, (kind, c, u)) in events.iter().enumerate() {
            if i == split {
                copy = Some(p.record_changes().snapshot());
            }
            if i > split && i % every == 0 {
                if let (Some(copy), Some(changes)) = (copy.as_mut(), p.take_changes()) {
                    copy.apply_changes(changes);
                }
            }
            let seq = i as u64 + 1;
            let data = event(*kind, channels[*c], users[*u]);
            p.apply(seq, Channel::Chat(channels[*c]), &data);
            flat.apply(seq, Channel::Chat(channels[*c]), &data);
        }
        let snapshot = p.snapshot();
        proptest::prop_assert_eq!(&snapshot, &flat.snapshot());
        for c in &channels {
            for u in &users {
                proptest::prop_assert_eq!(p.standing(*c, *u), flat.standing(*c, *u));
            }
        }
        proptest::prop_assert_eq!(Projection::from_snapshot(snapshot.clone()), p.clone());
        let mut copy = copy.unwrap_or_else(|| p.record_changes().snapshot());
        if let Some(changes) = p.take_changes() {
            copy.apply_changes(changes);
        }
        proptest::prop_assert!(diff(&copy, &snapshot).is_empty());
        proptest::prop_assert_eq!(copy, snapshot);
    }
}
