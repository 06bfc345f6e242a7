//! The sessions in sled: their layout in the node's database, the users'
//! index and the sweep's reads and removals. Every method blocks on the
//! disk: the node calls them on sessions' own threads
//! ([`super::sled_thread`]), never on the runtime's.
//!
//! The database is the node's ([`crate::store::Store`] opens it: sled
//! locks its directory, so one process opens it once); the sessions own
//! two trees of it, and nothing else reads them:
//!
//! - `sessions`: a session is a header under its id's 16 bytes and one
//!   record per subscription under the id followed by the channel
//!   ([`super::record`]), so the id's prefix scan reads it whole and a
//!   subscription change writes one small record;
//! - `session_users`: each user's sessions by the time of their last header
//!   write. A session new to it beyond the bound removes the user's oldest
//!   ones.

use ::sled::{Batch, Tree};

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::record::{Applied, Change, Cursor, Header, Stored};
use crate::channel::{Channel, Id};
use crate::store::{Store, StoreError};

const SESSIONS: &str = "sessions";
/// Each user's sessions with a header: `{user}{session}` → when the
/// session's header was last written (`record::index_stamp`, big-endian
/// `i64`).
const SESSION_USERS: &str = "session_users";
/// An id's bytes: a session's header key, and the prefix of its
/// subscription records' keys (`{session}{channel}`).
const ID_BYTES: usize = 16;

fn subscription_key(id: Id, channel: Channel) -> Vec<u8> {
    let mut key = Vec::with_capacity(ID_BYTES + 44);
    key.extend_from_slice(id.0.as_bytes());
    let mut name = String::with_capacity(44);
    channel.write_to(&mut name);
    key.extend_from_slice(name.as_bytes());
    key
}

fn user_key(user: Id, session: Id) -> [u8; 2 * ID_BYTES] {
    let mut key = [0; 2 * ID_BYTES];
    key[..ID_BYTES].copy_from_slice(user.0.as_bytes());
    key[ID_BYTES..].copy_from_slice(session.0.as_bytes());
    key
}

/// The id in `key` at `at`, if the key is long enough.
fn id_at(key: &[u8], at: usize) -> Option<Id> {
    let bytes = key.get(at..at + ID_BYTES)?;
    uuid::Uuid::from_slice(bytes).ok().map(Id)
}

fn decode<T: DeserializeOwned>(
    bytes: &[u8],
    key: impl FnOnce() -> String,
) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        key: key(),
        reason: e.to_string(),
    })
}

fn encode<T: Serialize>(value: &T, key: impl FnOnce() -> String) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|e| StoreError::Corrupt {
        key: key(),
        reason: e.to_string(),
    })
}

/// The sessions' two trees in the node's sled database.
#[derive(Clone)]
pub struct SledSessions {
    sessions: Tree,
    session_users: Tree,
}

impl SledSessions {
    /// The sessions of `store`'s database (tests and tools read a stopped
    /// gateway's sessions this way too).
    pub fn open(store: &Store) -> Result<SledSessions, StoreError> {
        Ok(SledSessions {
            sessions: store.open_tree(SESSIONS)?,
            session_users: store.open_tree(SESSION_USERS)?,
        })
    }

    /// Session `id`: its header and subscription records, read with
    /// one prefix scan. `None` without a header (subscription records
    /// alone are left over from a removed session: the sweep removes them).
    pub fn get(&self, id: Id) -> Result<Option<Stored>, StoreError> {
        let mut header = None;
        let mut records = Vec::new();
        for entry in self.sessions.scan_prefix(id.0.as_bytes()) {
            let (key, value) = entry?;
            if key.len() == ID_BYTES {
                header = Some(decode::<Header>(&value, || format!("session {id}"))?);
                continue;
            }
            let channel = std::str::from_utf8(&key[ID_BYTES..])
                .ok()
                .and_then(|c| Channel::parse(c).ok())
                .ok_or_else(|| StoreError::Corrupt {
                    key: format!("session {id}: a subscription key"),
                    reason: format!("{} bytes after the id", key.len() - ID_BYTES),
                })?;
            let cursor = decode::<Cursor>(&value, || format!("session {id} {channel}"))?;
            records.push((channel, cursor));
        }
        Ok(header.map(|header| Stored::assemble(header, records)))
    }

    /// Applies a connection's change to session `id` in one atomic batch:
    /// a removal of the whole session, then its subscription records, then
    /// its header. A header written makes the session the newest of its
    /// user, stamped `stamp` (`record::index_stamp`); a session new to the
    /// user's index beyond `most_per_user` removes the user's oldest ones.
    pub fn apply(
        &self,
        id: Id,
        change: &Change,
        stamp: i64,
        most_per_user: usize,
    ) -> Result<Applied, StoreError> {
        let mut applied = Applied::default();
        let mut batch = Batch::default();
        if change.remove_all {
            for key in self.sessions.scan_prefix(id.0.as_bytes()).keys() {
                let key = key?;
                applied.removed(key.len());
                batch.remove(key);
            }
        }
        for (channel, cursor) in &change.subscriptions {
            let key = subscription_key(id, *channel);
            match cursor {
                Some(cursor) => {
                    let value = encode(cursor, || format!("session {id} {channel}"))?;
                    applied.written(key.len() + value.len());
                    batch.insert(key, value);
                }
                None => {
                    applied.removed(key.len());
                    batch.remove(key);
                }
            }
        }
        if let Some(expires_at) = change.header {
            let header = Header {
                user: Some(change.user),
                expires_at,
                ..Default::default()
            };
            let value = encode(&header, || format!("session {id}"))?;
            applied.written(ID_BYTES + value.len());
            batch.insert(id.0.as_bytes(), value);
        }
        self.sessions.apply_batch(batch)?;
        let entry = user_key(change.user, id);
        match change.header {
            Some(_) => {
                let fresh = self
                    .session_users
                    .insert(entry, &stamp.to_be_bytes())?
                    .is_none();
                applied.written(entry.len() + 8);
                if fresh {
                    self.keep_newest(change.user, id, most_per_user, &mut applied)?;
                }
            }
            None if change.remove_all && self.session_users.remove(entry)?.is_some() => {
                applied.removed(entry.len());
            }
            None => {}
        }
        Ok(applied)
    }

    /// Removes `user`'s oldest sessions beyond `most` (never `newest`).
    fn keep_newest(
        &self,
        user: Id,
        newest: Id,
        most: usize,
        applied: &mut Applied,
    ) -> Result<(), StoreError> {
        let mut sessions = Vec::new();
        for entry in self.session_users.scan_prefix(user.0.as_bytes()) {
            let (key, value) = entry?;
            let session = id_at(&key, ID_BYTES);
            let at = <[u8; 8]>::try_from(value.as_ref()).map_or(i64::MIN, i64::from_be_bytes);
            sessions.push((session == Some(newest), at, session, key));
        }
        if sessions.len() <= most {
            return Ok(());
        }
        // Oldest first; the session just written sorts last.
        sessions.sort_by_key(|(is_newest, at, _, _)| (*is_newest, *at));
        let beyond = sessions.len() - most;
        for (_, _, session, key) in sessions.into_iter().take(beyond) {
            if let Some(session) = session {
                self.remove_records(session, applied)?;
            }
            self.session_users.remove(&key)?;
            applied.removed(key.len());
            applied.evicted += 1;
        }
        Ok(())
    }

    /// Removes every record of session `id` (not its index entry).
    fn remove_records(&self, id: Id, applied: &mut Applied) -> Result<(), StoreError> {
        let mut batch = Batch::default();
        for key in self.sessions.scan_prefix(id.0.as_bytes()).keys() {
            let key = key?;
            applied.removed(key.len());
            batch.remove(key);
        }
        self.sessions.apply_batch(batch)?;
        Ok(())
    }

    /// The sessions the sweep should look at: those whose header expired
    /// at `now` or no longer decodes, and subscription records without a
    /// header. A scan of every record: the node runs it on sessions'
    /// sweeping thread, and the removal ([`SledSessions::sweep_session`])
    /// on their writing thread, in order with the writes.
    pub fn sweep_candidates(&self, now: i64) -> Result<Vec<Id>, StoreError> {
        let mut candidates = Vec::new();
        let mut last: Option<Id> = None;
        for entry in self.sessions.iter() {
            let (key, value) = entry?;
            let Some(id) = id_at(&key, 0) else {
                continue; // no record of ours is this short
            };
            if key.len() == ID_BYTES {
                last = Some(id);
                let live = serde_json::from_slice::<Header>(&value)
                    .map(|h| h.expires_at > now)
                    .unwrap_or(false);
                if !live {
                    candidates.push(id);
                }
            } else if last != Some(id) {
                // A subscription record whose header sorts before it and
                // was not there.
                last = Some(id);
                candidates.push(id);
            }
        }
        Ok(candidates)
    }

    /// Removes session `id` if its header expired at `now`, no longer
    /// decodes or is missing: every record of it and its index entry.
    /// Whether it was removed.
    pub fn sweep_session(&self, id: Id, now: i64) -> Result<Option<Applied>, StoreError> {
        let header = match self.sessions.get(id.0.as_bytes())? {
            Some(bytes) => serde_json::from_slice::<Header>(&bytes).ok(),
            None => None,
        };
        if header.as_ref().is_some_and(|h| h.expires_at > now) {
            return Ok(None);
        }
        let mut applied = Applied::default();
        self.remove_records(id, &mut applied)?;
        if let Some(user) = header.and_then(|h| h.user) {
            let entry = user_key(user, id);
            if self.session_users.remove(entry)?.is_some() {
                applied.removed(entry.len());
            }
        }
        Ok(Some(applied))
    }

    /// Removes every expired session (and leftover subscription records)
    /// at `now`; how many. For tools and tests: the node sweeps through
    /// sessions' threads ([`super::sled_thread`]).
    pub fn sweep(&self, now: i64) -> Result<usize, StoreError> {
        let mut removed = 0;
        for id in self.sweep_candidates(now)? {
            if self.sweep_session(id, now)?.is_some() {
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Every record of the sessions tree: headers and subscriptions (what
    /// a test or an operator counts).
    pub fn records(&self) -> usize {
        self.sessions.len()
    }

    /// The sessions `user`'s index holds (those with a header written).
    pub fn sessions_of(&self, user: Id) -> Result<Vec<Id>, StoreError> {
        let mut sessions = Vec::new();
        for key in self.session_users.scan_prefix(user.0.as_bytes()).keys() {
            sessions.extend(id_at(&key?, ID_BYTES));
        }
        Ok(sessions)
    }

    /// Writes what sled holds of the database to disk now (when sessions'
    /// writing thread ends).
    pub fn flush(&self) -> Result<(), StoreError> {
        self.sessions.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn cursor(seq: u64) -> Option<Cursor> {
        Some(Cursor {
            seq,
            epoch: Some("e1".into()),
            presence: false,
        })
    }

    fn temporary() -> (Store, SledSessions) {
        let store = Store::temporary().unwrap();
        let sessions = SledSessions::open(&store).unwrap();
        (store, sessions)
    }

    #[test]
    fn a_session_is_a_header_and_a_record_per_subscription() {
        let (_store, sessions) = temporary();
        let (id, user) = (Id::new_v4(), Id::new_v4());
        let (a, b) = (Channel::Chat(Id::new_v4()), Channel::Global);
        let mut first = Change::new(user);
        first.subscriptions.insert(a, cursor(1));
        first.header = Some(100);
        let applied = sessions.apply(id, &first, 1, 8).unwrap();
        assert_eq!(applied.records, 3, "a subscription, the header, the index");
        let stored = sessions.get(id).unwrap().unwrap();
        assert_eq!(stored.header.user, Some(user));
        assert_eq!(stored.subscriptions.get(&a), cursor(1).as_ref());
        assert!(!stored.legacy);

        // One more subscription writes one record, of its own size.
        let mut more = Change::new(user);
        more.subscriptions.insert(b, cursor(2));
        let applied = sessions.apply(id, &more, 2, 8).unwrap();
        assert_eq!(applied.records, 1);
        assert!(applied.bytes < 100, "{applied:?}");
        let mut less = Change::new(user);
        less.subscriptions.insert(a, None);
        sessions.apply(id, &less, 3, 8).unwrap();
        let stored = sessions.get(id).unwrap().unwrap();
        assert_eq!(stored.subscriptions.keys().collect::<Vec<_>>(), vec![&b]);

        // The last one ends: nothing of the session is left.
        sessions.apply(id, &Change::remove(user), 4, 8).unwrap();
        assert_eq!(sessions.get(id).unwrap(), None);
        assert_eq!(sessions.records(), 0);
        assert_eq!(sessions.sessions_of(user).unwrap(), Vec::<Id>::new());
    }

    #[test]
    fn a_record_of_the_previous_format_still_reads() {
        let (_store, sessions) = temporary();
        let id = Id::new_v4();
        let old = r#"{"user":null,"expires_at":5,"subscriptions":{"global":3},"epoch":"2026-01-01T00:00:00.000000000Z"}"#;
        sessions.sessions.insert(id.0.as_bytes(), old).unwrap();
        let stored = sessions.get(id).unwrap().unwrap();
        assert!(stored.legacy);
        assert_eq!(stored.subscriptions[&Channel::Global].seq, 3);
        assert_eq!(
            stored.subscriptions[&Channel::Global].epoch,
            Some("2026-01-01T00:00:00.000000000Z".into())
        );
    }

    #[test]
    fn a_user_keeps_the_newest_sessions() {
        let (_store, sessions) = temporary();
        let (user, other) = (Id::new_v4(), Id::new_v4());
        let whole = |user| {
            let mut subs = BTreeMap::new();
            subs.insert(
                Channel::Global,
                Cursor {
                    seq: 1,
                    epoch: None,
                    presence: false,
                },
            );
            Change::whole(user, 1_000, subs)
        };
        let ids: Vec<Id> = (0..6).map(|_| Id::new_v4()).collect();
        for (at, id) in ids.iter().enumerate() {
            sessions.apply(*id, &whole(user), at as i64, 3).unwrap();
        }
        let theirs = Id::new_v4();
        sessions.apply(theirs, &whole(other), 0, 3).unwrap();
        let mut kept = sessions.sessions_of(user).unwrap();
        kept.sort();
        let mut newest = ids[3..].to_vec();
        newest.sort();
        assert_eq!(kept, newest);
        for id in &ids[..3] {
            assert_eq!(sessions.get(*id).unwrap(), None, "removed whole");
        }
        assert!(sessions.get(theirs).unwrap().is_some(), "another user's");
        assert_eq!(sessions.records(), 4 * 2);

        // Written again, an old session is the newest: another goes.
        sessions.apply(ids[3], &whole(user), 10, 3).unwrap();
        let newer = Id::new_v4();
        sessions.apply(newer, &whole(user), 11, 3).unwrap();
        assert!(sessions.get(ids[3]).unwrap().is_some());
        assert_eq!(sessions.get(ids[4]).unwrap(), None);
    }

    #[test]
    fn sessions_expire_whole_and_leftovers_go() {
        let (_store, sessions) = temporary();
        let user = Id::new_v4();
        let mut subs = BTreeMap::new();
        subs.insert(
            Channel::Global,
            Cursor {
                seq: 42,
                epoch: None,
                presence: false,
            },
        );
        let (expired, live) = (Id::new_v4(), Id::new_v4());
        sessions
            .apply(expired, &Change::whole(user, 100, subs.clone()), 0, 8)
            .unwrap();
        sessions
            .apply(live, &Change::whole(user, 1_000, subs), 0, 8)
            .unwrap();
        // A subscription record whose session is gone.
        let orphan = Id::new_v4();
        let mut stray = Change::new(user);
        stray.subscriptions.insert(Channel::Global, cursor(1));
        sessions.apply(orphan, &stray, 0, 8).unwrap();
        assert_eq!(sessions.get(orphan).unwrap(), None, "no header: no session");

        assert_eq!(sessions.sweep(500).unwrap(), 2);
        assert_eq!(sessions.get(expired).unwrap(), None);
        assert!(sessions.get(live).unwrap().is_some());
        assert_eq!(sessions.records(), 2);
        assert_eq!(sessions.sessions_of(user).unwrap(), vec![live]);
    }
}
