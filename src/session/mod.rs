//! Sessions: a connection's subscriptions and their cursors, kept in a
//! session store so a client (or a restarted gateway, or another node) can
//! resume them.
//!
//! Two stores, chosen by the setting `session_store`. With either, a
//! connection hands over its moved cursors at most every
//! `session_flush_interval` (and once more as it ends; unset, the store's
//! own interval: [`StoreKind::flush_interval`]), so a cursor costs no write
//! per event, and a session resumed after a crash replays that last moment
//! again — never skips one.
//! - sled ([`sled`]: two trees of the node's database, which
//!   [`crate::store::Store`] opens), the embedded default for one node,
//!   read and written on threads of their own ([`sled_thread`]); sled
//!   reaches disk every [`crate::store::FLUSH_EVERY_MS`] after that.
//! - a JetStream key-value bucket ([`kv`]), for several nodes: a session
//!   resumes on any of them. The node's [`writer`] writes the changes in
//!   the background (the latest change of each record wins), so no
//!   connection waits for one.
//!
//! **What is written: only what changed.** A session is a header and one
//! record per subscription ([`record`]), and a connection hands its store a
//! [`record::Change`]: the subscriptions it added, ended or whose cursor
//! moved, and the header when it is due. A subscribe or unsubscribe
//! therefore writes one record of about a hundred bytes however many
//! subscriptions the session has (issue 20: the whole session per change
//! made 1,024 subscriptions cost quadratic work), and a cursor flush writes
//! the moved cursors only. Per-subscription records were chosen over
//! coalescing whole records per interval: coalescing still writes the whole
//! session for one change (O(subscriptions) bytes), and it would delay the
//! write of a confirmed subscribe, which must reach the store at once (a
//! client that drops and comes straight back reads it). They also keep
//! concurrent connections of one session apart: a connection writes only
//! its own changes, so one that resumed never writes back, over
//! subscriptions another connection of the session added after it read
//! the record, a copy without them. The price: a read is a prefix scan in
//! sled and a batched get of several keys in the bucket (one request, see
//! [`kv`]), and every `SESSION_REFRESH` a connection writes its header and
//! every subscription record again (the bucket ages each key out on its
//! own; the copy also heals a session removed under a live connection).
//!
//! **Only sessions worth restoring, and a bound per user.** A session with
//! no subscription is never written: its header is written with its first
//! subscription, and the whole session is removed when its last one ends.
//! A user keeps at most `max_sessions_per_user` sessions (in sled, and in
//! the bucket through a per-user index updated with a revision check): a
//! session new to the index beyond the bound removes the user's sessions
//! whose header was written longest ago. Expired sessions leave sled with
//! the sweep, and the bucket at its max age.
//!
//! The previous format (the whole session in one record) still reads in
//! both stores and is written in the new one by the connection that
//! resumes it.
//!
//! Every record written or removed, in either store, counts in
//! `switchboard_session_writes_total`, and its bytes in
//! `switchboard_session_write_bytes_total`.
//!
//! **The module owns its background work.** Opening the sessions
//! ([`Sessions::sled`], [`Sessions::kv`]) starts it and returns it as a
//! [`Background`] beside the [`Sessions`] handle (as mini-redis's
//! `DbDropGuard` beside its `Db`): sled's three threads (writing, reading,
//! sweeping), or the bucket writer's task. Whoever stops the node holds it
//! (`server::Running`) and calls [`Background::close`] once the
//! connections have ended: what they saved on their way out is written
//! (and sled flushed), within the budget it is given, and every thread is
//! joined or the task awaited. Dropped without `close`, it tells the
//! threads to stop and aborts the writer's task. Nothing else of the
//! sessions runs in the background.
//!
//! Layout: [`record`] (what a session is in either store, and a change),
//! [`sled`] (the sessions' trees in the node's sled database), [`sled_thread`]
//! (the threads that read, write and sweep them), [`kv`] (the bucket),
//! [`writer`] (the bucket's writer), `background` ([`Background`]: either
//! store's background work, owned).

mod background;
pub mod kv;
pub mod record;
pub mod sled;
pub mod sled_thread;
pub mod writer;

use std::collections::BTreeMap;
use std::time::Duration;

use crate::channel::{Channel, Id};
use crate::store::{Store, StoreError};
use record::{Change, Cursor, Stored};

pub use background::{Background, CloseError};

/// How often sled's sweeping thread removes expired sessions, the first
/// time one interval after the start (the bucket forgets them by itself,
/// at its max age).
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(60);

/// Sessions the sweep hands to sled's thread at a time: between two
/// batches, the reads and writes queued meanwhile go first.
pub const SWEEP_BATCH: usize = 256;

/// [`StoreKind::flush_interval`] with sled.
pub const SLED_FLUSH_INTERVAL: Duration = Duration::from_millis(500);

/// [`StoreKind::flush_interval`] with the bucket.
pub const KV_FLUSH_INTERVAL: Duration = Duration::from_secs(2);

const _: () = assert!(
    SLED_FLUSH_INTERVAL.as_millis() + crate::store::FLUSH_EVERY_MS as u128 <= 1_000,
    "a cursor reaches disk within a second with sled"
);

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
    /// How often a connection writes its moved cursors when the setting
    /// `session_flush_interval` is unset: with sled, often enough that a
    /// cursor reaches disk within a second of the delivery or ack that
    /// moved it (this, then sled's flush every
    /// [`crate::store::FLUSH_EVERY_MS`]); with the bucket, whose writes go
    /// over NATS to every replica, every 2 s (a session restored on
    /// another node may replay a few seconds again, never skip).
    pub fn flush_interval(self) -> Duration {
        match self {
            StoreKind::Sled => SLED_FLUSH_INTERVAL,
            StoreKind::Kv => KV_FLUSH_INTERVAL,
        }
    }

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
    /// Subscriptions to restore, with their cursors and the epochs those
    /// count in (`None`: written before epochs, so the current stream's).
    pub subscriptions: BTreeMap<Channel, Cursor>,
    /// The session is in the previous format (its subscriptions inline in
    /// the header): the connection writes it whole at its first save.
    pub legacy: bool,
    /// When the session's header was last written (unix seconds; `None`
    /// for a fresh session): its next write is due one refresh later.
    pub written_at: Option<i64>,
}

/// Why a session could not be opened or saved.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Bucket(#[from] kv::BucketError),
    /// The writer's queue (the bucket's, or sled's thread) is full, or
    /// it stopped: the change is kept for later.
    #[error("the session writer is full")]
    WriterFull,
    #[error("cannot start a session thread: {0}")]
    Thread(#[from] std::io::Error),
}

/// Where the sessions are.
#[derive(Clone)]
enum Backend {
    Sled {
        sessions: sled::SledSessions,
        queue: sled_thread::Queue,
    },
    Kv {
        bucket: kv::Bucket,
        writer: writer::Writer,
    },
}

/// Sessions in their store, with their time to live and cursor cadence: a
/// handle, cloned freely; the work behind it is its [`Background`]'s.
#[derive(Clone)]
pub struct Sessions {
    backend: Backend,
    ttl: Duration,
    flush_interval: Duration,
}

impl Sessions {
    /// Sessions in sled (one node): two trees of `store`'s database, read
    /// and written on threads of their own ([`sled_thread`]), which the
    /// returned [`Background`] owns; a connection writes its moved cursors
    /// at most every `flush_interval`, and a user keeps at most
    /// `most_per_user`.
    pub fn sled(
        store: &Store,
        ttl: Duration,
        flush_interval: Duration,
        most_per_user: usize,
    ) -> Result<(Sessions, Background), SessionError> {
        let sessions = sled::SledSessions::open(store)?;
        let (queue, threads) = sled_thread::start(sessions.clone(), most_per_user)?;
        let handle = Sessions {
            backend: Backend::Sled { sessions, queue },
            ttl,
            flush_interval,
        };
        let background = Background::sled(threads);
        Ok((handle, background))
    }

    /// Sessions in the bucket, written by the node's [`writer::Writer`]
    /// (where a user keeps at most `most_per_user`), whose task this starts
    /// on the runtime and the returned [`Background`] owns; a connection
    /// hands its cursors over at most every `flush_interval`.
    pub fn kv(
        bucket: kv::Bucket,
        ttl: Duration,
        flush_interval: Duration,
        most_per_user: usize,
    ) -> (Sessions, Background) {
        let (writer, task) = writer::Writer::new(bucket.clone(), most_per_user);
        let task = tokio::spawn(task);
        let handle = Sessions {
            backend: Backend::Kv {
                bucket,
                writer: writer.clone(),
            },
            ttl,
            flush_interval,
        };
        let background = Background::kv(writer, task);
        (handle, background)
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

    fn ttl_secs(&self) -> i64 {
        self.ttl.as_secs().min(i64::MAX as u64 / 4) as i64
    }

    /// How often a connection writes its moved cursors.
    pub fn flush_interval(&self) -> Duration {
        self.flush_interval
    }

    /// The bucket writer, when the sessions are in the bucket.
    pub fn writer(&self) -> Option<&writer::Writer> {
        match &self.backend {
            Backend::Sled { .. } => None,
            Backend::Kv { writer, .. } => Some(writer),
        }
    }

    /// The expiry of a header written now (unix seconds).
    pub fn expires_at(&self) -> i64 {
        chrono::Utc::now().timestamp() + self.ttl_secs()
    }

    /// Resumes `requested` when it exists, has not expired and belongs to
    /// `user`; otherwise a fresh session. Never an error to the client: an
    /// unreadable record is a fresh session too. Nothing is written: the
    /// connection writes the session once it has something to restore.
    ///
    /// The read follows every change of the session handed over on this
    /// node: sled's thread reads in order with its writes, and the bucket
    /// is read once the writer has written what it holds of the session
    /// (waiting at most `writer::READ_AFTER_WRITE_WAIT`).
    pub async fn open(&self, requested: Option<Id>, user: Id) -> Opened {
        let now = chrono::Utc::now().timestamp();
        if let Some(id) = requested {
            let found = match &self.backend {
                Backend::Sled { queue, .. } => queue.get(id).await,
                Backend::Kv { bucket, writer, .. } => {
                    if let Some(settled) = writer.settled(id) {
                        let _ = tokio::time::timeout(writer::READ_AFTER_WRITE_WAIT, settled).await;
                    }
                    bucket.get(id).await.map_err(SessionError::from)
                }
            };
            match found {
                Ok(Some(Stored {
                    header,
                    subscriptions,
                    legacy,
                })) if header.user == Some(user) && header.expires_at > now => {
                    return Opened {
                        id,
                        resumed: true,
                        subscriptions,
                        legacy,
                        written_at: Some(header.expires_at.saturating_sub(self.ttl_secs())),
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
            legacy: false,
            written_at: None,
        }
    }

    /// Hands a change of session `id` to its store (sled's thread, or the
    /// bucket writer), which applies it in the background; `written` is
    /// told once it is in the store.
    pub fn save(
        &self,
        id: Id,
        change: Change,
        written: Option<tokio::sync::oneshot::Sender<()>>,
    ) -> Result<(), SessionError> {
        let queued = match &self.backend {
            Backend::Sled { queue, .. } => queue.apply(id, change, written),
            Backend::Kv { writer, .. } => writer.submit(id, change, written),
        };
        match queued {
            true => Ok(()),
            false => Err(SessionError::WriterFull),
        }
    }

    /// Removes every session of `user` (the operator disconnected them):
    /// each removal goes through the store's writer, after every change
    /// handed over before it. How many sessions.
    pub async fn remove_user(&self, user: Id) -> Result<usize, SessionError> {
        let sessions = match &self.backend {
            Backend::Sled { sessions, .. } => sessions.sessions_of(user)?,
            Backend::Kv { bucket, .. } => bucket.sessions_of(user).await?,
        };
        for &id in &sessions {
            self.save(id, Change::remove(user), None)?;
        }
        Ok(sessions.len())
    }

    /// Removes expired sessions (and subscription records left without
    /// one) from sled now; how many. Scans every record, so it blocks; the
    /// removals go through sled's writing thread, [`SWEEP_BATCH`] at a
    /// time. The node needs no call: sled's sweeping thread does this every
    /// [`SWEEP_INTERVAL`]. The bucket needs no sweep (0).
    pub fn sweep(&self) -> Result<usize, SessionError> {
        let Backend::Sled { sessions, queue } = &self.backend else {
            return Ok(0);
        };
        sled_thread::sweep(sessions, queue, || false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FLUSH: Duration = Duration::from_secs(2);

    fn sled(ttl: Duration) -> (Sessions, Background) {
        Sessions::sled(&Store::temporary().unwrap(), ttl, FLUSH, 64).unwrap()
    }

    fn at(seq: u64) -> Cursor {
        Cursor {
            seq,
            epoch: Some("e1".into()),
            presence: false,
        }
    }

    #[tokio::test]
    async fn only_the_owner_resumes() {
        let (sessions, _background) = sled(Duration::from_secs(60));
        let ann = Id::new_v4();
        let bob = Id::new_v4();
        let first = sessions.open(None, ann).await;
        assert!(!first.resumed);
        let mut subs = BTreeMap::new();
        subs.insert(Channel::Global, at(7));
        let change = Change::whole(ann, sessions.expires_at(), subs.clone());
        sessions.save(first.id, change, None).unwrap();

        let again = sessions.open(Some(first.id), ann).await;
        assert!(again.resumed);
        assert_eq!(again.id, first.id);
        assert_eq!(again.subscriptions, subs);
        assert!(!again.legacy);
        assert!(again.written_at.is_some());

        let stolen = sessions.open(Some(first.id), bob).await;
        assert!(!stolen.resumed);
        assert_ne!(stolen.id, first.id);
        assert!(stolen.subscriptions.is_empty());

        let unknown = sessions.open(Some(Id::new_v4()), ann).await;
        assert!(!unknown.resumed);
    }

    #[tokio::test]
    async fn expired_sessions_are_fresh() {
        let (sessions, _background) = sled(Duration::ZERO);
        let ann = Id::new_v4();
        let first = sessions.open(None, ann).await;
        let mut subs = BTreeMap::new();
        subs.insert(Channel::Global, at(1));
        let change = Change::whole(ann, sessions.expires_at(), subs);
        sessions.save(first.id, change, None).unwrap();
        let again = sessions.open(Some(first.id), ann).await;
        assert!(!again.resumed);
        let swept = tokio::task::spawn_blocking(move || sessions.sweep())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(swept, 1);
    }

    #[tokio::test]
    async fn a_read_follows_the_changes_handed_over_before_it() {
        let (sessions, _background) = sled(Duration::from_secs(60));
        let ann = Id::new_v4();
        let id = sessions.open(None, ann).await.id;
        let mut first = Change::new(ann);
        first.subscriptions.insert(Channel::Global, Some(at(1)));
        first.header = Some(sessions.expires_at());
        sessions.save(id, first, None).unwrap();
        let c = Channel::Chat(Id::new_v4());
        for seq in 0..100 {
            let mut change = Change::new(ann);
            change.subscriptions.insert(c, Some(at(seq)));
            sessions.save(id, change, None).unwrap();
        }
        let again = sessions.open(Some(id), ann).await;
        assert_eq!(again.subscriptions.get(&c), Some(&at(99)));
        assert_eq!(again.subscriptions.len(), 2);
    }

    /// Closing applies every change handed over before it, flushes sled
    /// and joins the threads: nothing of the database is held any more
    /// (it opens again), and what is handed over afterwards is refused.
    #[tokio::test]
    async fn close_writes_what_was_handed_over_and_joins_the_threads() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let (sessions, background) =
            Sessions::sled(&store, Duration::from_secs(60), FLUSH, 64).unwrap();
        let ann = Id::new_v4();
        let id = Id::new_v4();
        let mut first = Change::new(ann);
        first.header = Some(sessions.expires_at());
        sessions.save(id, first, None).unwrap();
        for seq in 0..1_000 {
            let mut change = Change::new(ann);
            change.subscriptions.insert(Channel::Global, Some(at(seq)));
            sessions.save(id, change, None).unwrap();
        }
        background.close(Duration::from_secs(60)).await.unwrap();

        let late = Change::remove(ann);
        assert!(matches!(
            sessions.save(id, late, None),
            Err(SessionError::WriterFull)
        ));
        assert!(
            !sessions.open(Some(id), ann).await.resumed,
            "no read once closed: a fresh session"
        );
        drop((sessions, store));
        let store = Store::reopen(dir.path());
        let stored = sled::SledSessions::open(&store).unwrap().get(id).unwrap();
        assert_eq!(
            stored.unwrap().subscriptions.get(&Channel::Global),
            Some(&at(999))
        );
    }

    /// A `Background` dropped without `close` still stops the threads:
    /// the database is released once the handles are gone.
    #[tokio::test]
    async fn a_dropped_background_stops_the_threads() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let (sessions, background) =
            Sessions::sled(&store, Duration::from_secs(60), FLUSH, 64).unwrap();
        drop(background);
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while sessions
            .save(Id::new_v4(), Change::new(Id::new_v4()), None)
            .is_ok()
        {
            assert!(
                std::time::Instant::now() < deadline,
                "the writing thread ends"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
