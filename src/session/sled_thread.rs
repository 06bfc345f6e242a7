//! The sessions in sled, read and written on a thread of their own.
//!
//! sled blocks on the disk now and then (a full write buffer, a segment to
//! write), which a runtime worker must not do. And what sled keeps of each
//! session it was handed (its cache, the tree's nodes) is allocated by the
//! thread that handed it over: written from the workers, those long-lived
//! records sat among the connections' short-lived allocations, and after a
//! crowd of connections left, mimalloc could give back only a quarter of
//! their memory (pages pinned by a few records each). On this thread they
//! share pages with each other only.
//!
//! Reads go through the same queue as writes, in order, so a client that
//! reconnects right after its connection handed over its last change (a
//! subscribe the gateway confirmed, its last cursors) reads the session
//! with it, not an older one. The sweep's removals go through it too: the
//! scan runs elsewhere, and each session it found is looked at again here,
//! in order with the writes, before it is removed.

use std::sync::mpsc;

use tokio::sync::oneshot;

use super::record::{Applied, Change, Stored};
use super::SessionError;
use crate::channel::Id;
use crate::metrics::Metrics;
use crate::store::{Store, StoreError};

/// Jobs waiting for the thread, at most: a connection whose record finds
/// the queue full keeps it for its next flush.
pub const QUEUE: usize = 65_536;

enum Job {
    Apply {
        id: Id,
        change: Change,
        written: Option<oneshot::Sender<()>>,
    },
    Get {
        id: Id,
        reply: oneshot::Sender<Result<Option<Stored>, StoreError>>,
    },
    /// Removes those of the sessions that are still expired or left over
    /// at `now`; answered with how many were.
    Sweep {
        ids: Vec<Id>,
        now: i64,
        reply: oneshot::Sender<Result<usize, StoreError>>,
    },
    /// Answered once every job queued before it is done.
    Barrier(oneshot::Sender<()>),
}

/// The handle to the thread; it ends when the last handle is dropped.
#[derive(Clone)]
pub struct SledSessions {
    jobs: mpsc::SyncSender<Job>,
}

impl SledSessions {
    /// Starts the thread; a user keeps at most `most_per_user` sessions.
    pub fn start(store: Store, most_per_user: usize) -> std::io::Result<SledSessions> {
        let (jobs, queue) = mpsc::sync_channel(QUEUE);
        std::thread::Builder::new()
            .name("sessions-sled".into())
            .spawn(move || serve(&store, &queue, most_per_user))?;
        Ok(SledSessions { jobs })
    }

    /// Queues `change` of session `id`; `written` is told once it is in
    /// sled. `false`: the queue is full.
    pub fn apply(&self, id: Id, change: Change, written: Option<oneshot::Sender<()>>) -> bool {
        self.jobs
            .try_send(Job::Apply {
                id,
                change,
                written,
            })
            .is_ok()
    }

    /// Removes those of `ids` still expired (or left over) at `now`, in
    /// order with the writes; how many. Blocks: for the sweep's blocking
    /// thread.
    pub fn sweep_blocking(&self, ids: Vec<Id>, now: i64) -> Result<usize, SessionError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job::Sweep { ids, now, reply })
            .map_err(|_| SessionError::WriterFull)?;
        match answer.blocking_recv() {
            Ok(removed) => Ok(removed?),
            Err(_) => Err(SessionError::WriterFull),
        }
    }

    /// Session `id` as stored, after every change queued before.
    pub async fn get(&self, id: Id) -> Result<Option<Stored>, SessionError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .try_send(Job::Get { id, reply })
            .map_err(|_| SessionError::WriterFull)?;
        match answer.await {
            Ok(found) => Ok(found?),
            Err(_) => Err(SessionError::WriterFull),
        }
    }

    /// Waits until every record queued so far is in sled.
    pub async fn written(&self) {
        let (done, wait) = oneshot::channel();
        let mut job = Job::Barrier(done);
        loop {
            match self.jobs.try_send(job) {
                Ok(()) => break,
                Err(mpsc::TrySendError::Full(back)) => {
                    job = back;
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
                Err(mpsc::TrySendError::Disconnected(_)) => return,
            }
        }
        let _ = wait.await;
    }
}

fn count(applied: &Applied) {
    let metrics = Metrics::get();
    metrics.session_writes.increment(applied.records);
    metrics.session_write_bytes.increment(applied.bytes);
}

fn serve(store: &Store, queue: &mpsc::Receiver<Job>, most_per_user: usize) {
    for job in queue {
        match job {
            Job::Apply {
                id,
                change,
                written,
            } => {
                let now = chrono::Utc::now().timestamp();
                match store.apply_session(id, &change, now, most_per_user) {
                    Ok(applied) => {
                        count(&applied);
                        if applied.evicted > 0 {
                            tracing::debug!(user = %change.user, removed = applied.evicted, "a user's oldest sessions removed");
                        }
                        if let Some(written) = written {
                            let _ = written.send(());
                        }
                    }
                    Err(e) => {
                        tracing::warn!(session = %id, error = %e, "session not written to sled")
                    }
                }
            }
            Job::Get { id, reply } => {
                let _ = reply.send(store.session(id));
            }
            Job::Sweep { ids, now, reply } => {
                let mut removed = 0;
                let mut failed = None;
                for id in ids {
                    match store.sweep_session(id, now) {
                        Ok(Some(applied)) => {
                            count(&applied);
                            removed += 1;
                        }
                        Ok(None) => {}
                        Err(e) => {
                            failed = Some(e);
                            break;
                        }
                    }
                }
                let _ = reply.send(match failed {
                    Some(e) => Err(e),
                    None => Ok(removed),
                });
            }
            Job::Barrier(done) => {
                let _ = done.send(());
            }
        }
    }
}
