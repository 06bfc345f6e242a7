//! The node's session writer for the bucket: connections hand it records
//! and go on; it writes them to the bucket in the background.
//!
//! Records wait in a map keyed by session id, so a session written again
//! before its last record went out replaces it (the latest record wins):
//! the bucket sees at most one write per session per round, however often
//! its connection hands records over. The map is bounded
//! ([`WRITER_PENDING`]): when full, a new session's record is refused and
//! its connection keeps it dirty for its next flush. A write that fails
//! goes back into the map (unless a newer record came) and is retried
//! after [`RETRY_DELAY`]. A caller that must know its record is in the
//! bucket (a connection the node closes, whose client reconnects elsewhere
//! at once) hands a waiter along, told once that record or a newer one of
//! the session is written. Rounds run one after another, so an older
//! record never lands after a newer one. On shutdown, [`Writer::close`]
//! lets the task write everything pending and end.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::{oneshot, Notify};

use super::kv::Bucket;
use crate::channel::Id;
use crate::metrics::Metrics;
use crate::store::SessionRecord;

/// Records waiting to be written, at most (one per session).
pub const WRITER_PENDING: usize = 65_536;

/// Bucket writes in flight at once.
pub const WRITER_CONCURRENCY: usize = 64;

/// How long the writer waits after a failed write before the next round.
pub const RETRY_DELAY: Duration = Duration::from_secs(1);

/// The handle connections hand records to.
#[derive(Clone)]
pub struct Writer {
    shared: Arc<Shared>,
}

/// A session's record waiting, and who waits for it to be written.
struct Pending {
    record: SessionRecord,
    waiters: Vec<oneshot::Sender<()>>,
}

struct Shared {
    pending: Mutex<HashMap<Id, Pending>>,
    wake: Notify,
    closed: AtomicBool,
}

impl Writer {
    /// A writer and the task that writes to `bucket`; the caller spawns the
    /// task (outside the node's tasks: it must outlive the connections).
    pub fn new(bucket: Bucket) -> (Writer, impl std::future::Future<Output = ()> + Send) {
        let writer = Writer {
            shared: Arc::new(Shared {
                pending: Mutex::new(HashMap::new()),
                wake: Notify::new(),
                closed: AtomicBool::new(false),
            }),
        };
        let task = run(writer.shared.clone(), bucket);
        (writer, task)
    }

    /// Queues `record` for session `id`, replacing any record of it still
    /// waiting; `waiter` is told once it (or a newer one) is written.
    /// `false`: the queue is full (the caller retries later).
    pub fn submit(
        &self,
        id: Id,
        record: SessionRecord,
        waiter: Option<oneshot::Sender<()>>,
    ) -> bool {
        {
            let mut pending = self.shared.pending();
            if pending.len() >= WRITER_PENDING && !pending.contains_key(&id) {
                return false;
            }
            let entry = pending.entry(id).or_insert_with(|| Pending {
                record: SessionRecord::default(),
                waiters: Vec::new(),
            });
            entry.record = record;
            entry.waiters.extend(waiter);
        }
        self.shared.wake.notify_one();
        true
    }

    /// Records waiting to be written.
    pub fn pending(&self) -> usize {
        self.shared.pending().len()
    }

    /// Tells the task to write what is pending and end.
    pub fn close(&self) {
        self.shared.closed.store(true, Ordering::SeqCst);
        self.shared.wake.notify_one();
    }
}

impl Shared {
    fn pending(&self) -> MutexGuard<'_, HashMap<Id, Pending>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Writes rounds of pending records until closed and drained.
async fn run(shared: Arc<Shared>, bucket: Bucket) {
    let writes = &Metrics::get().session_writes;
    loop {
        let round: Vec<(Id, Pending)> = shared.pending().drain().collect();
        if round.is_empty() {
            if shared.closed.load(Ordering::SeqCst) {
                return;
            }
            shared.wake.notified().await;
            continue;
        }
        let failed: Vec<(Id, Pending)> = futures::stream::iter(round)
            .map(|(id, pending)| {
                let bucket = &bucket;
                async move {
                    match bucket.put(id, &pending.record).await {
                        Ok(()) => {
                            writes.increment(1);
                            for waiter in pending.waiters {
                                let _ = waiter.send(());
                            }
                            None
                        }
                        Err(e) => {
                            tracing::warn!(session = %id, error = %e, "session not written; retrying");
                            Some((id, pending))
                        }
                    }
                }
            })
            .buffer_unordered(WRITER_CONCURRENCY)
            .filter_map(|failed| async move { failed })
            .collect()
            .await;
        if failed.is_empty() {
            continue;
        }
        if shared.closed.load(Ordering::SeqCst) {
            // Stopping, and the bucket failed: what is left is lost (its
            // cursors come again after a restore, never skipped).
            let lost = failed.len() + shared.pending().len();
            tracing::warn!(lost, "session writer stopping with records not written");
            return;
        }
        {
            let mut pending = shared.pending();
            for (id, mut old) in failed {
                // A newer record of the session came meanwhile: it wins,
                // and the old one's waiters wait for it.
                match pending.entry(id) {
                    Entry::Occupied(mut newer) => newer.get_mut().waiters.append(&mut old.waiters),
                    Entry::Vacant(slot) => {
                        slot.insert(old);
                    }
                }
            }
        }
        tokio::time::sleep(RETRY_DELAY).await;
    }
}
