//! The store's sessions (headers, records, the users' index and its bound,
//! the sweep) and its snapshot file, against a temporary sled.

use super::*;
use std::collections::BTreeMap;

fn cursor(seq: u64) -> Option<Cursor> {
    Some(Cursor {
        seq,
        epoch: Some("e1".into()),
    })
}

#[test]
fn a_session_is_a_header_and_a_record_per_subscription() {
    let store = Store::temporary().unwrap();
    let (id, user) = (Id::new_v4(), Id::new_v4());
    let (a, b) = (Channel::Chat(Id::new_v4()), Channel::Global);
    let mut first = Change::new(user);
    first.subscriptions.insert(a, cursor(1));
    first.header = Some(100);
    let applied = store.apply_session(id, &first, 1, 8).unwrap();
    assert_eq!(applied.records, 3, "a subscription, the header, the index");
    let stored = store.session(id).unwrap().unwrap();
    assert_eq!(stored.header.user, Some(user));
    assert_eq!(stored.subscriptions.get(&a), cursor(1).as_ref());
    assert!(!stored.legacy);

    // One more subscription writes one record, of its own size.
    let mut more = Change::new(user);
    more.subscriptions.insert(b, cursor(2));
    let applied = store.apply_session(id, &more, 2, 8).unwrap();
    assert_eq!(applied.records, 1);
    assert!(applied.bytes < 100, "{applied:?}");
    let mut less = Change::new(user);
    less.subscriptions.insert(a, None);
    store.apply_session(id, &less, 3, 8).unwrap();
    let stored = store.session(id).unwrap().unwrap();
    assert_eq!(stored.subscriptions.keys().collect::<Vec<_>>(), vec![&b]);

    // The last one ends: nothing of the session is left.
    store
        .apply_session(id, &Change::remove(user), 4, 8)
        .unwrap();
    assert_eq!(store.session(id).unwrap(), None);
    assert_eq!(store.session_records(), 0);
    assert_eq!(store.sessions_of(user).unwrap(), Vec::<Id>::new());
}

#[test]
fn a_record_of_the_previous_format_still_reads() {
    let store = Store::temporary().unwrap();
    let id = Id::new_v4();
    let old = r#"{"user":null,"expires_at":5,"subscriptions":{"global":3},"epoch":"e0"}"#;
    store.sessions.insert(id.0.as_bytes(), old).unwrap();
    let stored = store.session(id).unwrap().unwrap();
    assert!(stored.legacy);
    assert_eq!(stored.subscriptions[&Channel::Global].seq, 3);
    assert_eq!(
        stored.subscriptions[&Channel::Global].epoch.as_deref(),
        Some("e0")
    );
}

#[test]
fn a_user_keeps_the_newest_sessions() {
    let store = Store::temporary().unwrap();
    let (user, other) = (Id::new_v4(), Id::new_v4());
    let whole = |user| {
        let mut subs = BTreeMap::new();
        subs.insert(
            Channel::Global,
            Cursor {
                seq: 1,
                epoch: None,
            },
        );
        Change::whole(user, 1_000, subs)
    };
    let ids: Vec<Id> = (0..6).map(|_| Id::new_v4()).collect();
    for (at, id) in ids.iter().enumerate() {
        store
            .apply_session(*id, &whole(user), at as i64, 3)
            .unwrap();
    }
    let theirs = Id::new_v4();
    store.apply_session(theirs, &whole(other), 0, 3).unwrap();
    let mut kept = store.sessions_of(user).unwrap();
    kept.sort();
    let mut newest = ids[3..].to_vec();
    newest.sort();
    assert_eq!(kept, newest);
    for id in &ids[..3] {
        assert_eq!(store.session(*id).unwrap(), None, "removed whole");
    }
    assert!(store.session(theirs).unwrap().is_some(), "another user's");
    assert_eq!(store.session_records(), 4 * 2);

    // Written again, an old session is the newest: another goes.
    store.apply_session(ids[3], &whole(user), 10, 3).unwrap();
    let newer = Id::new_v4();
    store.apply_session(newer, &whole(user), 11, 3).unwrap();
    assert!(store.session(ids[3]).unwrap().is_some());
    assert_eq!(store.session(ids[4]).unwrap(), None);
}

#[test]
fn sessions_expire_whole_and_leftovers_go() {
    let store = Store::temporary().unwrap();
    let user = Id::new_v4();
    let mut subs = BTreeMap::new();
    subs.insert(
        Channel::Global,
        Cursor {
            seq: 42,
            epoch: None,
        },
    );
    let (expired, live) = (Id::new_v4(), Id::new_v4());
    store
        .apply_session(expired, &Change::whole(user, 100, subs.clone()), 0, 8)
        .unwrap();
    store
        .apply_session(live, &Change::whole(user, 1_000, subs), 0, 8)
        .unwrap();
    // A subscription record whose session is gone.
    let orphan = Id::new_v4();
    let mut stray = Change::new(user);
    stray.subscriptions.insert(Channel::Global, cursor(1));
    store.apply_session(orphan, &stray, 0, 8).unwrap();
    assert_eq!(
        store.session(orphan).unwrap(),
        None,
        "no header: no session"
    );

    assert_eq!(store.sweep_sessions(500).unwrap(), 2);
    assert_eq!(store.session(expired).unwrap(), None);
    assert!(store.session(live).unwrap().is_some());
    assert_eq!(store.session_records(), 2);
    assert_eq!(store.sessions_of(user).unwrap(), vec![live]);
}

#[test]
fn a_snapshot_advances_without_a_rewrite() {
    let store = Store::temporary().unwrap();
    assert_eq!(store.snapshot().unwrap(), None);
    let mut snapshot = Snapshot {
        last_seq: 10,
        ..Default::default()
    };
    snapshot.deleted.insert(Id::new_v4());
    store.put_snapshot(&snapshot).unwrap();
    assert_eq!(store.snapshot().unwrap(), Some(snapshot.clone()));
    store.advance_snapshot(10, 25).unwrap();
    let advanced = store.snapshot().unwrap().unwrap();
    assert_eq!(advanced.last_seq, 25);
    assert_eq!(advanced.deleted, snapshot.deleted);
    // A new snapshot is not advanced by a record about another one, even
    // with an earlier sequence (`projection rebuild` on a shorter stream).
    snapshot.last_seq = 12;
    store.put_snapshot(&snapshot).unwrap();
    assert_eq!(store.snapshot().unwrap(), Some(snapshot));
}

#[test]
fn a_snapshot_an_older_version_kept_in_sled_is_read_then_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let mut old = Snapshot {
        last_seq: 7,
        ..Default::default()
    };
    old.members.insert((Id::new_v4(), Id::new_v4()));
    {
        let store = Store::open(dir.path()).unwrap();
        let bytes = serde_json::to_vec(&old).unwrap();
        store.meta.insert(SNAPSHOT_KEY, bytes).unwrap();
        store.flush().unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.snapshot().unwrap(), Some(old.clone()));
    let new = Snapshot { last_seq: 9, ..old };
    store.put_snapshot(&new).unwrap();
    assert!(!store.meta.contains_key(SNAPSHOT_KEY).unwrap());
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.snapshot().unwrap(), Some(new));
}
