//! The node's durable state in sled: sessions with their cursors, and the
//! membership projection's snapshot.
//!
//! sled flushes to disk every [`FLUSH_EVERY_MS`]; together with the
//! connections' cursor batching ([`crate::session::CURSOR_FLUSH_INTERVAL`])
//! a cursor reaches disk within a second of the delivery or ack that moved it.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::channel::{Channel, Id};
use crate::projection::Snapshot;

/// sled's background flush period.
pub const FLUSH_EVERY_MS: u64 = 400;

const SESSIONS: &str = "sessions";
const META: &str = "meta";
const SNAPSHOT_KEY: &[u8] = b"projection";

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("sled: {0}")]
    Sled(#[from] sled::Error),
    #[error("corrupt record `{key}`: {reason}")]
    Corrupt { key: String, reason: String },
}

/// One session: its user, expiry and every subscription's cursor.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    pub user: Option<Id>,
    /// Unix seconds after which the session is gone.
    pub expires_at: i64,
    /// Subscription → cursor (the last `seq` acked, else the last delivered).
    pub subscriptions: BTreeMap<Channel, u64>,
    /// The stream epoch the cursors belong to (`crate::log::Epoch`). Absent
    /// in records written before epochs existed: those belong to the stream
    /// they were written beside, the current one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<String>,
}

/// sled, opened once per process.
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    sessions: sled::Tree,
    meta: sled::Tree,
}

impl Store {
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        let db = sled::Config::new()
            .path(dir)
            .flush_every_ms(Some(FLUSH_EVERY_MS))
            .open()?;
        Store::from_db(db)
    }

    /// An in-memory store (tests and tools).
    pub fn temporary() -> Result<Store, StoreError> {
        Store::from_db(sled::Config::new().temporary(true).open()?)
    }

    fn from_db(db: sled::Db) -> Result<Store, StoreError> {
        Ok(Store {
            sessions: db.open_tree(SESSIONS)?,
            meta: db.open_tree(META)?,
            db,
        })
    }

    pub fn session(&self, id: Id) -> Result<Option<SessionRecord>, StoreError> {
        let Some(bytes) = self.sessions.get(id.0.as_bytes())? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| StoreError::Corrupt {
                key: format!("session {id}"),
                reason: e.to_string(),
            })
    }

    pub fn put_session(&self, id: Id, record: &SessionRecord) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(record).map_err(|e| StoreError::Corrupt {
            key: format!("session {id}"),
            reason: e.to_string(),
        })?;
        self.sessions.insert(id.0.as_bytes(), bytes)?;
        Ok(())
    }

    /// Removes every session expired at `now` (unix seconds), and any
    /// record that no longer decodes. Returns how many were removed.
    pub fn sweep_sessions(&self, now: i64) -> Result<usize, StoreError> {
        let mut removed = 0;
        for entry in self.sessions.iter() {
            let (key, value) = entry?;
            let expired = serde_json::from_slice::<SessionRecord>(&value)
                .map(|r| r.expires_at <= now)
                .unwrap_or(true);
            if expired {
                // Only remove what we looked at: a concurrent refresh wins.
                if self
                    .sessions
                    .compare_and_swap(&key, Some(value), None as Option<&[u8]>)?
                    .is_ok()
                {
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }

    pub fn snapshot(&self) -> Result<Option<Snapshot>, StoreError> {
        let Some(bytes) = self.meta.get(SNAPSHOT_KEY)? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| StoreError::Corrupt {
                key: "projection snapshot".into(),
                reason: e.to_string(),
            })
    }

    pub fn put_snapshot(&self, snapshot: &Snapshot) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(snapshot).map_err(|e| StoreError::Corrupt {
            key: "projection snapshot".into(),
            reason: e.to_string(),
        })?;
        self.meta.insert(SNAPSHOT_KEY, bytes)?;
        Ok(())
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

    #[test]
    fn a_session_record_without_an_epoch_still_reads() {
        let old = r#"{"user":null,"expires_at":5,"subscriptions":{"global":3}}"#;
        let record: SessionRecord = serde_json::from_str(old).unwrap();
        assert_eq!(record.epoch, None);
        assert_eq!(record.subscriptions.get(&Channel::Global), Some(&3));
    }

    #[test]
    fn sessions_round_trip_and_expire() {
        let store = Store::temporary().unwrap();
        let id = Id::new_v4();
        let mut record = SessionRecord {
            user: Some(Id::new_v4()),
            expires_at: 100,
            ..Default::default()
        };
        record.subscriptions.insert(Channel::Global, 42);
        store.put_session(id, &record).unwrap();
        assert_eq!(store.session(id).unwrap(), Some(record.clone()));
        let live = Id::new_v4();
        store
            .put_session(
                live,
                &SessionRecord {
                    expires_at: 1_000,
                    ..record
                },
            )
            .unwrap();
        assert_eq!(store.sweep_sessions(500).unwrap(), 1);
        assert_eq!(store.session(id).unwrap(), None);
        assert!(store.session(live).unwrap().is_some());
    }
}
