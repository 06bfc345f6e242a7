//! Sessions: a connection's subscriptions and their cursors, kept in the
//! store so a client (or a restarted gateway) can resume them.
//!
//! Cost of batching, stated: a connection writes its dirty cursors at most
//! every [`CURSOR_FLUSH_INTERVAL`] and sled reaches disk every
//! [`crate::store::FLUSH_EVERY_MS`], so after a crash a resumed session
//! replays at most the last second's events again — never skips one.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::channel::{Channel, Id};
use crate::store::{SessionRecord, Store, StoreError};

/// How often a connection writes its moved cursors to the store.
pub const CURSOR_FLUSH_INTERVAL: Duration = Duration::from_millis(500);

/// How often expired sessions are removed.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(60);

/// A session opened for one connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Opened {
    pub id: Id,
    /// Whether an existing session was resumed.
    pub resumed: bool,
    /// Subscriptions to restore, with their cursors.
    pub subscriptions: BTreeMap<Channel, u64>,
    /// The stream epoch the cursors belong to; `None` when the record
    /// predates epochs (it then belongs to the current stream).
    pub epoch: Option<String>,
}

/// Sessions in the store, with their time to live.
#[derive(Clone)]
pub struct Sessions {
    store: Store,
    ttl: Duration,
}

impl Sessions {
    pub fn new(store: Store, ttl: Duration) -> Sessions {
        Sessions { store, ttl }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    fn expiry(&self) -> i64 {
        chrono::Utc::now().timestamp() + self.ttl.as_secs().min(i64::MAX as u64 / 4) as i64
    }

    /// Resumes `requested` when it exists, has not expired and belongs to
    /// `user`; otherwise opens a fresh one. Never an error to the client.
    pub fn open(&self, requested: Option<Id>, user: Id) -> Result<Opened, StoreError> {
        let now = chrono::Utc::now().timestamp();
        if let Some(id) = requested {
            match self.store.session(id) {
                Ok(Some(record)) if record.user == Some(user) && record.expires_at > now => {
                    self.store.put_session(
                        id,
                        &SessionRecord {
                            expires_at: self.expiry(),
                            ..record.clone()
                        },
                    )?;
                    return Ok(Opened {
                        id,
                        resumed: true,
                        subscriptions: record.subscriptions,
                        epoch: record.epoch,
                    });
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(session = %id, error = %e, "unreadable session; starting a fresh one")
                }
            }
        }
        let id = Id::new_v4();
        self.save(id, user, &BTreeMap::new(), None)?;
        Ok(Opened {
            id,
            resumed: false,
            subscriptions: BTreeMap::new(),
            epoch: None,
        })
    }

    /// Writes a session's subscriptions and cursors, with the stream epoch
    /// the cursors belong to, and extends its life.
    pub fn save(
        &self,
        id: Id,
        user: Id,
        subscriptions: &BTreeMap<Channel, u64>,
        epoch: Option<&str>,
    ) -> Result<(), StoreError> {
        self.store.put_session(
            id,
            &SessionRecord {
                user: Some(user),
                expires_at: self.expiry(),
                subscriptions: subscriptions.clone(),
                epoch: epoch.map(str::to_string),
            },
        )
    }

    /// Removes expired sessions; how many. Scans every session in sled, so
    /// it blocks: the node runs it on a blocking thread.
    pub fn sweep(&self) -> Result<usize, StoreError> {
        self.store.sweep_sessions(chrono::Utc::now().timestamp())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_owner_resumes() {
        let sessions = Sessions::new(Store::temporary().unwrap(), Duration::from_secs(60));
        let ann = Id::new_v4();
        let bob = Id::new_v4();
        let first = sessions.open(None, ann).unwrap();
        assert!(!first.resumed);
        let mut subs = BTreeMap::new();
        subs.insert(Channel::Global, 7);
        sessions.save(first.id, ann, &subs, Some("e1")).unwrap();

        let again = sessions.open(Some(first.id), ann).unwrap();
        assert!(again.resumed);
        assert_eq!(again.id, first.id);
        assert_eq!(again.subscriptions, subs);
        assert_eq!(again.epoch.as_deref(), Some("e1"));

        let stolen = sessions.open(Some(first.id), bob).unwrap();
        assert!(!stolen.resumed);
        assert_ne!(stolen.id, first.id);
        assert!(stolen.subscriptions.is_empty());

        let unknown = sessions.open(Some(Id::new_v4()), ann).unwrap();
        assert!(!unknown.resumed);
    }

    #[test]
    fn expired_sessions_are_fresh() {
        let sessions = Sessions::new(Store::temporary().unwrap(), Duration::ZERO);
        let ann = Id::new_v4();
        let first = sessions.open(None, ann).unwrap();
        let again = sessions.open(Some(first.id), ann).unwrap();
        assert!(!again.resumed);
        assert!(sessions.sweep().unwrap() >= 1);
    }
}
