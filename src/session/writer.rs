//! The node's session writer for the bucket: connections hand it their
//! sessions' changes and go on; it applies them to the bucket in the
//! background.
//!
//! Changes wait in a map keyed by session id, and a change of a session
//! whose last one has not gone out yet is folded into it
//! ([`Change::absorb`]: per subscription, the latest wins), so the bucket
//! sees at most one write per changed record per round, however often a
//! connection hands changes over. The map is bounded ([`WRITER_PENDING`]):
//! when full, a new session's change is refused and its connection keeps
//! it for its next flush. A change that fails goes back into the map
//! (under any newer one) and is retried after [`RETRY_DELAY`]. A caller
//! that must know its change is in the bucket (a connection the node
//! closes, whose client reconnects elsewhere at once) hands a waiter along,
//! told once that change (or one folded over it) is written. Rounds run one
//! after another, so an older change never lands after a newer one.
//!
//! A session read on this node waits first for what this writer still
//! holds of that session ([`Writer::settled`]), at most
//! [`READ_AFTER_WRITE_WAIT`]: a subscribe the gateway confirmed, or the
//! cursors a closed connection left, is what a `?session=` open that
//! follows on the same node reads. The task is started by
//! `Sessions::kv` and owned by the `session::Background` it returns, whose
//! `close` (at shutdown) calls `Writer::close` to let the task write
//! everything pending and end, and awaits it.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::{oneshot, Notify};

use super::kv::Bucket;
use super::record::Change;
use crate::channel::Id;
use crate::metrics::Metrics;

/// Sessions with a change waiting to be written, at most.
pub const WRITER_PENDING: usize = 65_536;

/// Sessions written at once. At 64, a node that took 15,000 new sessions
/// at once on busy cores still had 8,700 of them unwritten 7 s later
/// (`STORM_CLIENTS=15000 just bench storm`, the session run); at 256, none.
pub const WRITER_CONCURRENCY: usize = 256;

/// How long the writer waits after a failed write before the next round.
pub const RETRY_DELAY: Duration = Duration::from_secs(1);

/// How long a session read on this node waits for this writer's pending
/// change of that session; past it, the read goes on (and may miss it).
pub const READ_AFTER_WRITE_WAIT: Duration = Duration::from_secs(1);

/// The handle connections hand changes to.
#[derive(Clone)]
pub struct Writer {
    shared: Arc<Shared>,
}

/// A session's change waiting, and who waits for it to be written.
struct Pending {
    change: Change,
    waiters: Vec<oneshot::Sender<()>>,
}

#[derive(Default)]
struct Queues {
    pending: HashMap<Id, Pending>,
    /// Sessions of the round being written, and who waits for them.
    in_flight: HashMap<Id, Vec<oneshot::Sender<()>>>,
}

impl Queues {
    /// Gives back what a burst grew (a storm of 5,000 connections left
    /// about 40 bytes per connection in the maps' empty tables).
    fn shrink(&mut self) {
        crate::sparse::give_back(&mut self.pending);
        crate::sparse::give_back(&mut self.in_flight);
    }
}

struct Shared {
    queues: Mutex<Queues>,
    wake: Notify,
    closed: AtomicBool,
}

impl Writer {
    /// A writer and the task that writes to `bucket`, where a user keeps
    /// at most `most_per_user` sessions; `Sessions::kv` spawns the task
    /// and its `Background` owns it (outside the node's tasks: it must
    /// outlive the connections).
    pub(super) fn new(
        bucket: Bucket,
        most_per_user: usize,
    ) -> (Writer, impl std::future::Future<Output = ()> + Send) {
        let writer = Writer {
            shared: Arc::new(Shared {
                queues: Mutex::new(Queues::default()),
                wake: Notify::new(),
                closed: AtomicBool::new(false),
            }),
        };
        let task = run(writer.shared.clone(), bucket, most_per_user);
        (writer, task)
    }

    /// Queues `change` of session `id`, folded into any change of it still
    /// waiting; `waiter` is told once it is written. `false`: the queue is
    /// full (the caller retries later).
    pub fn submit(&self, id: Id, change: Change, waiter: Option<oneshot::Sender<()>>) -> bool {
        {
            let mut queues = self.shared.queues();
            let full = queues.pending.len() >= WRITER_PENDING;
            match queues.pending.entry(id) {
                Entry::Occupied(mut waiting) => {
                    let waiting = waiting.get_mut();
                    waiting.change.absorb(change);
                    waiting.waiters.extend(waiter);
                }
                Entry::Vacant(_) if full => return false,
                Entry::Vacant(slot) => {
                    slot.insert(Pending {
                        change,
                        waiters: waiter.into_iter().collect(),
                    });
                }
            }
        }
        self.shared.wake.notify_one();
        true
    }

    /// Told once what this writer holds of session `id` (waiting or being
    /// written) is in the bucket; `None` when it holds nothing of it.
    pub fn settled(&self, id: Id) -> Option<oneshot::Receiver<()>> {
        let mut queues = self.shared.queues();
        let (tell, told) = oneshot::channel();
        if let Some(waiting) = queues.pending.get_mut(&id) {
            waiting.waiters.push(tell);
        } else if let Some(writing) = queues.in_flight.get_mut(&id) {
            writing.push(tell);
        } else {
            return None;
        }
        Some(told)
    }

    /// Sessions with a change waiting to be written.
    pub fn pending(&self) -> usize {
        self.shared.queues().pending.len()
    }

    /// Tells the task to write what is pending and end (`Background`).
    pub(super) fn close(&self) {
        self.shared.closed.store(true, Ordering::SeqCst);
        self.shared.wake.notify_one();
    }
}

impl Shared {
    fn queues(&self) -> MutexGuard<'_, Queues> {
        self.queues.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Writes rounds of pending changes until closed and drained.
async fn run(shared: Arc<Shared>, bucket: Bucket, most_per_user: usize) {
    let metrics = Metrics::get();
    loop {
        let round: Vec<(Id, Pending)> = {
            let mut queues = shared.queues();
            let round: Vec<(Id, Pending)> = queues.pending.drain().collect();
            for (id, _) in &round {
                queues.in_flight.insert(*id, Vec::new());
            }
            round
        };
        if round.is_empty() {
            if shared.closed.load(Ordering::SeqCst) {
                return;
            }
            shared.queues().shrink();
            shared.wake.notified().await;
            continue;
        }
        let failed: Vec<(Id, Pending)> = futures::stream::iter(round)
            .map(|(id, mut pending)| {
                let (bucket, shared) = (&bucket, &shared);
                async move {
                    let result = bucket.apply(id, &pending.change, most_per_user).await;
                    let readers = shared.queues().in_flight.remove(&id).unwrap_or_default();
                    match result {
                        Ok(applied) => {
                            metrics.session_writes.increment(applied.records);
                            metrics.session_write_bytes.increment(applied.bytes);
                            for waiter in pending.waiters.into_iter().chain(readers) {
                                let _ = waiter.send(());
                            }
                            None
                        }
                        Err(e) => {
                            tracing::warn!(session = %id, error = %e, "session not written; retrying");
                            pending.waiters.extend(readers);
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
            let lost = failed.len() + shared.queues().pending.len();
            tracing::warn!(lost, "session writer stopping with changes not written");
            return;
        }
        {
            let mut queues = shared.queues();
            for (id, mut old) in failed {
                // A newer change of the session came meanwhile: it goes
                // over the failed one, and both wait together.
                match queues.pending.entry(id) {
                    Entry::Occupied(mut newer) => {
                        let newer = newer.get_mut();
                        let change = std::mem::replace(&mut newer.change, old.change);
                        newer.change.absorb(change);
                        newer.waiters.append(&mut old.waiters);
                    }
                    Entry::Vacant(slot) => {
                        slot.insert(old);
                    }
                }
            }
        }
        tokio::time::sleep(RETRY_DELAY).await;
    }
}
