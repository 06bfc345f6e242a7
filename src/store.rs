//! The node's durable state: sessions with their cursors in sled (the
//! embedded session store; see `crate::session`), and the
//! membership projection's snapshot in a file beside them.
//!
//! Every method blocks on the disk. The heavy ones (the session sweep's
//! scan, a snapshot's write) run on a blocking thread
//! (`gateway::housekeeping`), never on the runtime's; sessions are read and
//! written on a thread of their own (`session::sled_thread`).
//!
//! A session is a header under its id's 16 bytes and one record per
//! subscription under the id followed by the channel
//! (`crate::session::record`), so the id's prefix scan reads it whole and a
//! subscription change writes one small record. The `session_users` tree
//! indexes each user's sessions by the time of their last header write:
//! a session new to it beyond the bound removes the user's oldest ones.
//!
//! The snapshot is a JSON file ([`SNAPSHOT_FILE`], in sled's directory),
//! replaced whole by a write to a temporary file and a rename: not a sled
//! record, because sled makes every other write (a connection's cursors)
//! wait while it takes in a record of tens of megabytes, and keeps the old
//! copies until it compacts. Its `last_seq` can move forward in a small
//! sled record ([`Store::advance_snapshot`]) while no membership changes, so
//! a node whose memberships are quiet never rewrites the file. A store an
//! older version wrote keeps the snapshot in sled: it is read from there
//! until the first file is written, and then removed.
//!
//! sled flushes to disk every [`FLUSH_EVERY_MS`]; together with the
//! connections' cursor batching ([`crate::session::CURSOR_FLUSH_INTERVAL`])
//! a cursor reaches disk within a second of the delivery or ack that moved it.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::channel::{Channel, Id};
use crate::projection::Snapshot;
use crate::session::record::{Applied, Change, Cursor, Header, Stored};

/// sled's background flush period.
pub const FLUSH_EVERY_MS: u64 = 400;

/// The most memory sled's page cache keeps (its default is 1 GiB): a
/// session record is read once per reconnect, so sessions beyond this are
/// read from disk (the OS's page cache) instead of costing every idle
/// connection about a kilobyte of the gateway's memory for a day.
pub const CACHE_BYTES: u64 = 4 * 1024 * 1024;

const SESSIONS: &str = "sessions";
/// Each user's sessions with a header: `{user}{session}` → when the
/// session's header was last written (`record::index_stamp`, big-endian
/// `i64`).
const SESSION_USERS: &str = "session_users";
/// An id's bytes: a session's header key, and the prefix of its
/// subscription records' keys (`{session}{channel}`).
const ID_BYTES: usize = 16;
const META: &str = "meta";
/// The projection snapshot's file, in the store's directory.
pub const SNAPSHOT_FILE: &str = "projection-snapshot.json";
/// Where an older version kept the snapshot, in the `meta` tree.
const SNAPSHOT_KEY: &[u8] = b"projection";
/// "The snapshot whose `last_seq` is A accounts for every event up to B":
/// A and B as big-endian u64s. Ignored beside any other snapshot.
const SNAPSHOT_SEQ_KEY: &[u8] = b"projection_seq";

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("sled: {0}")]
    Sled(#[from] sled::Error),
    #[error("corrupt record `{key}`: {reason}")]
    Corrupt { key: String, reason: String },
    #[error("{path}: {source}")]
    File {
        path: String,
        source: std::io::Error,
    },
}

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

/// sled and the snapshot file, opened once per process.
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    sessions: sled::Tree,
    session_users: sled::Tree,
    meta: sled::Tree,
    snapshot_file: PathBuf,
    /// A temporary store's directory, removed with the last clone.
    _temp: Option<Arc<tempfile::TempDir>>,
}

impl Store {
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        let db = sled::Config::new()
            .path(dir)
            .flush_every_ms(Some(FLUSH_EVERY_MS))
            .cache_capacity(CACHE_BYTES)
            .open()?;
        Store::from_db(db, dir.join(SNAPSHOT_FILE), None)
    }

    /// A store that is gone when dropped, for the unit tests (a bench or
    /// tool opens a temporary directory with [`Store::open`]).
    #[cfg(test)]
    pub(crate) fn temporary() -> Result<Store, StoreError> {
        let temp = tempfile::Builder::new()
            .prefix("switchboard-store-")
            .tempdir()
            .map_err(|source| StoreError::File {
                path: std::env::temp_dir().display().to_string(),
                source,
            })?;
        let db = sled::Config::new()
            .temporary(true)
            .cache_capacity(CACHE_BYTES)
            .open()?;
        let file = temp.path().join(SNAPSHOT_FILE);
        Store::from_db(db, file, Some(Arc::new(temp)))
    }

    fn from_db(
        db: sled::Db,
        snapshot_file: PathBuf,
        temp: Option<Arc<tempfile::TempDir>>,
    ) -> Result<Store, StoreError> {
        Ok(Store {
            sessions: db.open_tree(SESSIONS)?,
            session_users: db.open_tree(SESSION_USERS)?,
            meta: db.open_tree(META)?,
            db,
            snapshot_file,
            _temp: temp,
        })
    }

    /// The session `id`: its header and subscription records, read with
    /// one prefix scan. `None` without a header (subscription records
    /// alone are left over from a removed session: the sweep removes them).
    pub fn session(&self, id: Id) -> Result<Option<Stored>, StoreError> {
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
    pub fn apply_session(
        &self,
        id: Id,
        change: &Change,
        stamp: i64,
        most_per_user: usize,
    ) -> Result<Applied, StoreError> {
        let mut applied = Applied::default();
        let mut batch = sled::Batch::default();
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
                self.remove_session_records(session, applied)?;
            }
            self.session_users.remove(&key)?;
            applied.removed(key.len());
            applied.evicted += 1;
        }
        Ok(())
    }

    /// Removes every record of session `id` (not its index entry).
    fn remove_session_records(&self, id: Id, applied: &mut Applied) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
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
    /// header. A scan of every record: it blocks, so the node runs it on a
    /// blocking thread, and the removal ([`Store::sweep_session`]) happens
    /// on sessions' own thread, in order with their writes.
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
        self.remove_session_records(id, &mut applied)?;
        if let Some(user) = header.and_then(|h| h.user) {
            let entry = user_key(user, id);
            if self.session_users.remove(entry)?.is_some() {
                applied.removed(entry.len());
            }
        }
        Ok(Some(applied))
    }

    /// Removes every expired session (and leftover subscription records)
    /// at `now`; how many. For the unit tests: the node sweeps through
    /// sessions' thread (`session::Sessions::sweep`).
    #[cfg(test)]
    fn sweep_sessions(&self, now: i64) -> Result<usize, StoreError> {
        let mut removed = 0;
        for id in self.sweep_candidates(now)? {
            if self.sweep_session(id, now)?.is_some() {
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Every record of the sessions tree: headers and subscriptions. Public
    /// to inspect a stopped node's store without knowing its layout (which
    /// is this module's alone): `tests/session_writes.rs` counts through it.
    pub fn session_records(&self) -> usize {
        self.sessions.len()
    }

    /// The sessions `user`'s index holds (those with a header written).
    /// Public for the same inspection as [`Store::session_records`].
    pub fn sessions_of(&self, user: Id) -> Result<Vec<Id>, StoreError> {
        let mut sessions = Vec::new();
        for key in self.session_users.scan_prefix(user.0.as_bytes()).keys() {
            sessions.extend(id_at(&key?, ID_BYTES));
        }
        Ok(sessions)
    }

    /// The snapshot file of the store in `dir`, read without opening sled
    /// (whose lock a running gateway holds): its `last_seq` is the one it
    /// was written with, not yet advanced.
    pub fn read_snapshot_file(dir: &Path) -> Result<Option<Snapshot>, StoreError> {
        let path = dir.join(SNAPSHOT_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|e| StoreError::Corrupt {
                        key: "projection snapshot".into(),
                        reason: format!("{}: {e}", path.display()),
                    })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(StoreError::File {
                path: path.display().to_string(),
                source,
            }),
        }
    }

    /// The projection snapshot, with the `last_seq` it was advanced to.
    pub fn snapshot(&self) -> Result<Option<Snapshot>, StoreError> {
        let corrupt = |reason: String| StoreError::Corrupt {
            key: "projection snapshot".into(),
            reason,
        };
        let mut snapshot: Snapshot = match std::fs::read(&self.snapshot_file) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| corrupt(format!("{}: {e}", self.snapshot_file.display())))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let Some(bytes) = self.meta.get(SNAPSHOT_KEY)? else {
                    return Ok(None);
                };
                serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?
            }
            Err(e) => return Err(self.file_error(e)),
        };
        if let Some(record) = self.meta.get(SNAPSHOT_SEQ_KEY)? {
            let (of, to) = <[u8; 16]>::try_from(record.as_ref())
                .map(|b| {
                    let half = |i: usize| {
                        let mut n = [0; 8];
                        n.copy_from_slice(&b[i..i + 8]);
                        u64::from_be_bytes(n)
                    };
                    (half(0), half(8))
                })
                .map_err(|_| corrupt(format!("sequence record of {} bytes", record.len())))?;
            if of == snapshot.last_seq {
                snapshot.last_seq = snapshot.last_seq.max(to);
            }
        }
        Ok(Some(snapshot))
    }

    /// Replaces the snapshot: written to a temporary file, synced, then
    /// renamed over the last one, so a crash leaves one or the other whole.
    pub fn put_snapshot(&self, snapshot: &Snapshot) -> Result<(), StoreError> {
        let temp = self.snapshot_file.with_extension("json.tmp");
        let io = |e: std::io::Error| self.file_error(e);
        let bytes = serde_json::to_vec(snapshot).map_err(|e| StoreError::Corrupt {
            key: "projection snapshot".into(),
            reason: e.to_string(),
        })?;
        let mut file = File::create(&temp).map_err(io)?;
        file.write_all(&bytes).map_err(io)?;
        file.sync_all().map_err(io)?;
        drop(file);
        std::fs::rename(&temp, &self.snapshot_file).map_err(io)?;
        if let Some(dir) = self.snapshot_file.parent() {
            File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
        }
        if self.meta.contains_key(SNAPSHOT_KEY)? {
            self.meta.remove(SNAPSHOT_KEY)?;
        }
        Ok(())
    }

    /// Says that the stored snapshot whose `last_seq` is `of` accounts for
    /// every event up to `to`: only when no membership changed in between.
    pub fn advance_snapshot(&self, of: u64, to: u64) -> Result<(), StoreError> {
        let mut record = [0; 16];
        record[..8].copy_from_slice(&of.to_be_bytes());
        record[8..].copy_from_slice(&to.to_be_bytes());
        self.meta.insert(SNAPSHOT_SEQ_KEY, &record[..])?;
        Ok(())
    }

    fn file_error(&self, source: std::io::Error) -> StoreError {
        StoreError::File {
            path: self.snapshot_file.display().to_string(),
            source,
        }
    }

    /// Writes everything to disk now (shutdown, tools).
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
