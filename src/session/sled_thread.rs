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
//! reconnects right after its connection handed over its last record reads
//! that record, not an older one.

use std::sync::mpsc;

use tokio::sync::oneshot;

use super::SessionError;
use crate::channel::Id;
use crate::metrics::Metrics;
use crate::store::{SessionRecord, Store, StoreError};

/// Jobs waiting for the thread, at most: a connection whose record finds
/// the queue full keeps it for its next flush.
pub const QUEUE: usize = 65_536;

enum Job {
    Put {
        id: Id,
        record: SessionRecord,
        written: Option<oneshot::Sender<()>>,
    },
    Get {
        id: Id,
        reply: oneshot::Sender<Result<Option<SessionRecord>, StoreError>>,
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
    pub fn start(store: Store) -> std::io::Result<SledSessions> {
        let (jobs, queue) = mpsc::sync_channel(QUEUE);
        std::thread::Builder::new()
            .name("sessions-sled".into())
            .spawn(move || serve(&store, &queue))?;
        Ok(SledSessions { jobs })
    }

    /// Queues `record` for session `id`; `written` is told once it is in
    /// sled. `false`: the queue is full.
    pub fn put(&self, id: Id, record: SessionRecord, written: Option<oneshot::Sender<()>>) -> bool {
        self.jobs
            .try_send(Job::Put {
                id,
                record,
                written,
            })
            .is_ok()
    }

    /// The record of session `id`, after every record queued before.
    pub async fn get(&self, id: Id) -> Result<Option<SessionRecord>, SessionError> {
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

fn serve(store: &Store, queue: &mpsc::Receiver<Job>) {
    for job in queue {
        match job {
            Job::Put {
                id,
                record,
                written,
            } => match store.put_session(id, &record) {
                Ok(()) => {
                    Metrics::get().session_writes.increment(1);
                    if let Some(written) = written {
                        let _ = written.send(());
                    }
                }
                Err(e) => {
                    tracing::warn!(session = %id, error = %e, "session not written to sled")
                }
            },
            Job::Get { id, reply } => {
                let _ = reply.send(store.session(id));
            }
            Job::Barrier(done) => {
                let _ = done.send(());
            }
        }
    }
}
