//! Sessions: a connection's subscriptions and their cursors, kept in a
//! session store so a client (or a restarted gateway, or another node) can
//! resume them.
//!
//! Two stores, chosen by the setting `session_store`:
//! - sled ([`crate::store::Store`]), the embedded default for one node. A
//!   connection writes its moved cursors at most every
//!   [`CURSOR_FLUSH_INTERVAL`] and sled reaches disk every
//!   [`crate::store::FLUSH_EVERY_MS`], so after a crash a resumed session
//!   replays at most the last second's events again — never skips one.
//! - a JetStream key-value bucket ([`kv`]), for several nodes: a session
//!   resumes on any of them. A connection hands its moved cursors at most
//!   every `session_flush_interval` to the node's [`writer`], which writes
//!   them in the background (the latest record of a session wins), so a
//!   cursor costs no bucket write per event and no connection waits for
//!   one. A session restored on another node may replay those few seconds
//!   again.
//!
//! Every record written, to either store, counts in
//! `switchboard_session_writes_total`.

pub mod kv;
pub mod sled_thread;
pub mod writer;

use std::collections::BTreeMap;
use std::time::Duration;

use crate::channel::{Channel, Id};
use crate::store::{SessionRecord, Store, StoreError};

/// How often a connection writes its moved cursors to sled.
pub const CURSOR_FLUSH_INTERVAL: Duration = Duration::from_millis(500);

/// How often expired sessions are removed from sled (the bucket forgets
/// them by itself, at its max age).
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(60);

/// Which store keeps the sessions: the setting `session_store`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub enum StoreKind {
    /// sled, in the data directory: one node.
    #[default]
    Sled,
    /// A JetStream key-value bucket: any node of the deployment.
    Kv,
}

impl StoreKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StoreKind::Sled => "sled",
            StoreKind::Kv => "kv",
        }
    }
}

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

/// Why a session could not be opened or saved.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Bucket(#[from] kv::BucketError),
    /// The writer's queue (the bucket's, or sled's thread) is full: the
    /// record is kept for later.
    #[error("the session writer is full")]
    WriterFull,
}

/// Where the sessions are.
#[derive(Clone)]
enum Backend {
    Sled {
        store: Store,
        thread: sled_thread::SledSessions,
    },
    Kv {
        bucket: kv::Bucket,
        writer: writer::Writer,
        flush_interval: Duration,
    },
}

/// Sessions in their store, with their time to live.
#[derive(Clone)]
pub struct Sessions {
    backend: Backend,
    ttl: Duration,
}

impl Sessions {
    /// Sessions in sled (one node), read and written on a thread of their
    /// own ([`sled_thread`]).
    pub fn sled(store: Store, ttl: Duration) -> std::io::Result<Sessions> {
        let thread = sled_thread::SledSessions::start(store.clone())?;
        Ok(Sessions {
            backend: Backend::Sled { store, thread },
            ttl,
        })
    }

    /// Waits until every record handed over so far is in the store (sled;
    /// the bucket's writer drains on its own, see `writer::Writer::close`).
    pub async fn written(&self) {
        if let Backend::Sled { thread, .. } = &self.backend {
            thread.written().await;
        }
    }

    /// Sessions in the bucket, written through `writer` (whose task the
    /// caller runs); a connection hands its cursors over at most every
    /// `flush_interval`.
    pub fn kv(
        bucket: kv::Bucket,
        writer: writer::Writer,
        ttl: Duration,
        flush_interval: Duration,
    ) -> Sessions {
        Sessions {
            backend: Backend::Kv {
                bucket,
                writer,
                flush_interval,
            },
            ttl,
        }
    }

    pub fn kind(&self) -> StoreKind {
        match self.backend {
            Backend::Sled { .. } => StoreKind::Sled,
            Backend::Kv { .. } => StoreKind::Kv,
        }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// How often a connection writes its moved cursors.
    pub fn flush_interval(&self) -> Duration {
        match &self.backend {
            Backend::Sled { .. } => CURSOR_FLUSH_INTERVAL,
            Backend::Kv { flush_interval, .. } => *flush_interval,
        }
    }

    /// The bucket writer, when the sessions are in the bucket.
    pub fn writer(&self) -> Option<&writer::Writer> {
        match &self.backend {
            Backend::Sled { .. } => None,
            Backend::Kv { writer, .. } => Some(writer),
        }
    }

    fn expiry(&self) -> i64 {
        chrono::Utc::now().timestamp() + self.ttl.as_secs().min(i64::MAX as u64 / 4) as i64
    }

    /// Resumes `requested` when it exists, has not expired and belongs to
    /// `user`; otherwise a fresh session. Never an error to the client: an
    /// unreadable record is a fresh session too. Nothing is written: the
    /// connection saves the session once `hello` is out.
    pub async fn open(&self, requested: Option<Id>, user: Id) -> Opened {
        let now = chrono::Utc::now().timestamp();
        if let Some(id) = requested {
            let found = match &self.backend {
                Backend::Sled { thread, .. } => thread.get(id).await,
                Backend::Kv { bucket, .. } => bucket.get(id).await.map_err(SessionError::from),
            };
            match found {
                Ok(Some(record)) if record.user == Some(user) && record.expires_at > now => {
                    return Opened {
                        id,
                        resumed: true,
                        subscriptions: record.subscriptions,
                        epoch: record.epoch,
                    };
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(session = %id, error = %e, "unreadable session; starting a fresh one")
                }
            }
        }
        Opened {
            id: Id::new_v4(),
            resumed: false,
            subscriptions: BTreeMap::new(),
            epoch: None,
        }
    }

    /// Writes a session's subscriptions and cursors, with the stream epoch
    /// the cursors belong to, and extends its life: handed to sled's thread
    /// or to the bucket writer, which write it in the background.
    pub fn save(
        &self,
        id: Id,
        user: Id,
        subscriptions: BTreeMap<Channel, u64>,
        epoch: Option<String>,
    ) -> Result<(), SessionError> {
        self.save_then(id, user, subscriptions, epoch, None)
    }

    /// Like [`Sessions::save`]; `written` is told once the record is in
    /// the store.
    pub fn save_then(
        &self,
        id: Id,
        user: Id,
        subscriptions: BTreeMap<Channel, u64>,
        epoch: Option<String>,
        written: Option<tokio::sync::oneshot::Sender<()>>,
    ) -> Result<(), SessionError> {
        let record = SessionRecord {
            user: Some(user),
            expires_at: self.expiry(),
            subscriptions,
            epoch,
        };
        let queued = match &self.backend {
            Backend::Sled { thread, .. } => thread.put(id, record, written),
            Backend::Kv { writer, .. } => writer.submit(id, record, written),
        };
        match queued {
            true => Ok(()),
            false => Err(SessionError::WriterFull),
        }
    }

    /// Removes expired sessions from sled; how many. Scans every session,
    /// so it blocks: the node runs it on a blocking thread. The bucket
    /// needs no sweep (0).
    pub fn sweep(&self) -> Result<usize, StoreError> {
        match &self.backend {
            Backend::Sled { store, .. } => store.sweep_sessions(chrono::Utc::now().timestamp()),
            Backend::Kv { .. } => Ok(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sled(ttl: Duration) -> Sessions {
        Sessions::sled(Store::temporary().unwrap(), ttl).unwrap()
    }

    #[tokio::test]
    async fn only_the_owner_resumes() {
        let sessions = sled(Duration::from_secs(60));
        let ann = Id::new_v4();
        let bob = Id::new_v4();
        let first = sessions.open(None, ann).await;
        assert!(!first.resumed);
        let mut subs = BTreeMap::new();
        subs.insert(Channel::Global, 7);
        sessions
            .save(first.id, ann, subs.clone(), Some("e1".into()))
            .unwrap();

        let again = sessions.open(Some(first.id), ann).await;
        assert!(again.resumed);
        assert_eq!(again.id, first.id);
        assert_eq!(again.subscriptions, subs);
        assert_eq!(again.epoch.as_deref(), Some("e1"));

        let stolen = sessions.open(Some(first.id), bob).await;
        assert!(!stolen.resumed);
        assert_ne!(stolen.id, first.id);
        assert!(stolen.subscriptions.is_empty());

        let unknown = sessions.open(Some(Id::new_v4()), ann).await;
        assert!(!unknown.resumed);
    }

    #[tokio::test]
    async fn expired_sessions_are_fresh() {
        let sessions = sled(Duration::ZERO);
        let ann = Id::new_v4();
        let first = sessions.open(None, ann).await;
        sessions.save(first.id, ann, BTreeMap::new(), None).unwrap();
        let again = sessions.open(Some(first.id), ann).await;
        assert!(!again.resumed);
        assert!(sessions.sweep().unwrap() >= 1);
    }
}
