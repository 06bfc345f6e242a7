//! The node's own state: the sled database of its data directory (opened
//! once per process, shared with the sessions) and the membership
//! projection's snapshot in a file beside it.
//!
//! **One sled database, two owners.** sled locks its directory, so a
//! process opens it once: [`Store::open`] does, and `Store::open_tree`
//! hands its trees out. The store keeps only its own: the `meta` tree,
//! where the snapshot's reach is advanced. The sessions kept in sled open
//! theirs (`sessions`, `session_users`) through it, and everything about
//! them (their layout, the users' index, the sweep, the threads that read
//! and write them) is `crate::session::sled`'s. Two databases would cost a
//! second page cache and flusher, and would move the sessions of every
//! existing data directory.
//!
//! Every method blocks on the disk. The heavy one (a snapshot's write)
//! runs on a blocking thread (`gateway::housekeeping`), never on the
//! runtime's.
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
//! connections' cursor batching (the setting `session_flush_interval`) a
//! cursor reaches disk within that interval and 400 ms of the delivery or
//! ack that moved it: within a second by default
//! ([`crate::session::SLED_FLUSH_INTERVAL`]).

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::projection::Snapshot;

/// sled's background flush period.
pub const FLUSH_EVERY_MS: u64 = 400;

/// The most memory sled's page cache keeps (its default is 1 GiB): a
/// session record is read once per reconnect, so sessions beyond this are
/// read from disk (the OS's page cache) instead of costing every idle
/// connection about a kilobyte of the gateway's memory for a day.
pub const CACHE_BYTES: u64 = 4 * 1024 * 1024;

const META: &str = "meta";
/// The projection snapshot's file, in the store's directory.
pub const SNAPSHOT_FILE: &str = "projection-snapshot.json";
/// Where an older version kept the snapshot, in the `meta` tree.
const SNAPSHOT_KEY: &[u8] = b"projection";
/// "The snapshot whose `last_seq` is A accounts for every event up to B":
/// A and B as big-endian u64s. Ignored beside any other snapshot.
const SNAPSHOT_SEQ_KEY: &[u8] = b"projection_seq";

/// Why the store (or a record kept in its database) failed.
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

/// sled and the snapshot file, opened once per process.
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
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

    /// Opens the store at `dir` again in the process that just dropped it,
    /// for the unit tests: sled lets go of its file lock only once its I/O
    /// pool has finished the last write, a moment after the drop.
    #[cfg(test)]
    pub(crate) fn reopen(dir: &Path) -> Store {
        use std::time::{Duration, Instant};
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match Store::open(dir) {
                Ok(store) => return store,
                Err(e) if Instant::now() < deadline && e.to_string().contains("lock") => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => panic!("{}: {e}", dir.display()),
            }
        }
    }

    fn from_db(
        db: sled::Db,
        snapshot_file: PathBuf,
        temp: Option<Arc<tempfile::TempDir>>,
    ) -> Result<Store, StoreError> {
        Ok(Store {
            meta: db.open_tree(META)?,
            db,
            snapshot_file,
            _temp: temp,
        })
    }

    /// The tree `name` of the database, for the sessions kept in it
    /// (`crate::session::sled`): the store never reads it.
    pub(crate) fn open_tree(&self, name: &str) -> Result<sled::Tree, StoreError> {
        Ok(self.db.open_tree(name)?)
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
mod tests {
    use super::*;
    use crate::channel::Id;

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
        let store = Store::reopen(dir.path());
        assert_eq!(store.snapshot().unwrap(), Some(old.clone()));
        let new = Snapshot { last_seq: 9, ..old };
        store.put_snapshot(&new).unwrap();
        assert!(!store.meta.contains_key(SNAPSHOT_KEY).unwrap());
        drop(store);
        let store = Store::reopen(dir.path());
        assert_eq!(store.snapshot().unwrap(), Some(new));
    }
}
