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
//! A read follows every change of its session handed over before it, so a
//! client that reconnects right after its connection handed over its last
//! change (a subscribe the gateway confirmed, its last cursors) reads the
//! session with it, not an older one. It waits for nothing else: a burst
//! of other sessions' changes (or sled stalling on the disk under them)
//! made another user's hello wait for all of them. So the handle counts
//! each session's changes not yet applied; a read of a session with none
//! goes to a second thread, which only reads, and one of a session with
//! some goes into the writing thread's queue. That thread takes up to
//! [`LOOKAHEAD`] jobs off its queue and serves the oldest read among them
//! first, after the changes of its own session before it. The sweep's
//! removals go through the writing thread too: the scan runs elsewhere, and
//! each session it found is looked at again there, in order with the
//! writes, before it is removed.

use std::collections::{HashMap, VecDeque};
use std::sync::{mpsc, Arc, Mutex};

use tokio::sync::oneshot;

use super::record::{index_stamp, Applied, Change, Stored};
use super::SessionError;
use crate::channel::Id;
use crate::metrics::Metrics;
use crate::store::{Store, StoreError};

/// Jobs waiting for the thread, at most: a connection whose record finds
/// the queue full keeps it for its next flush.
pub const QUEUE: usize = 65_536;

/// Jobs the thread takes off the queue ahead of the one it does next, at
/// most: it serves the reads among them first. A read waits at most for
/// the job under way and the changes of its own session.
pub const LOOKAHEAD: usize = 4096;

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

/// A read for the reading thread.
type Read = (Id, oneshot::Sender<Result<Option<Stored>, StoreError>>);

/// Each session's changes handed over and not applied yet.
type Unapplied = Arc<Mutex<HashMap<Id, u32>>>;

fn unapplied(map: &Unapplied) -> std::sync::MutexGuard<'_, HashMap<Id, u32>> {
    map.lock().unwrap_or_else(|e| e.into_inner())
}

/// The handle to the threads; they end when the last handle is dropped.
#[derive(Clone)]
pub struct SledSessions {
    jobs: mpsc::SyncSender<Job>,
    reads: mpsc::SyncSender<Read>,
    unapplied: Unapplied,
}

impl SledSessions {
    /// Starts the threads; a user keeps at most `most_per_user` sessions.
    pub fn start(store: Store, most_per_user: usize) -> std::io::Result<SledSessions> {
        let (jobs, queue) = mpsc::sync_channel(QUEUE);
        let (reads, read_queue) = mpsc::sync_channel::<Read>(QUEUE);
        let unapplied = Unapplied::default();
        let (writing, counts) = (store.clone(), unapplied.clone());
        std::thread::Builder::new()
            .name("sessions-sled".into())
            .spawn(move || serve(&writing, &queue, most_per_user, &counts))?;
        std::thread::Builder::new()
            .name("sessions-sled-read".into())
            .spawn(move || {
                for (id, reply) in read_queue {
                    let _ = reply.send(store.session(id));
                }
            })?;
        Ok(SledSessions {
            jobs,
            reads,
            unapplied,
        })
    }

    /// Queues `change` of session `id`; `written` is told once it is in
    /// sled. `false`: the queue is full.
    pub fn apply(&self, id: Id, change: Change, written: Option<oneshot::Sender<()>>) -> bool {
        let mut unapplied = unapplied(&self.unapplied);
        let queued = self
            .jobs
            .try_send(Job::Apply {
                id,
                change,
                written,
            })
            .is_ok();
        if queued {
            *unapplied.entry(id).or_default() += 1;
        }
        queued
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

    /// Session `id` as stored, after every change of it handed over
    /// before.
    pub async fn get(&self, id: Id) -> Result<Option<Stored>, SessionError> {
        let (reply, answer) = oneshot::channel();
        let sent = {
            let unapplied = unapplied(&self.unapplied);
            if unapplied.contains_key(&id) {
                self.jobs.try_send(Job::Get { id, reply }).is_ok()
            } else {
                self.reads.try_send((id, reply)).is_ok()
            }
        };
        if !sent {
            return Err(SessionError::WriterFull);
        }
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

impl Job {
    fn is_read(&self) -> bool {
        matches!(self, Job::Get { .. })
    }

    /// Whether the job changes session `id`.
    fn changes(&self, id: Id) -> bool {
        match self {
            Job::Apply { id: of, .. } => *of == id,
            Job::Sweep { ids, .. } => ids.contains(&id),
            Job::Get { .. } | Job::Barrier(_) => false,
        }
    }
}

fn serve(
    store: &Store,
    queue: &mpsc::Receiver<Job>,
    most_per_user: usize,
    unapplied_changes: &Unapplied,
) {
    let mut waiting: VecDeque<Job> = VecDeque::new();
    // Reads in `waiting`: while there are none, no need to look.
    let mut reads = 0;
    let take = |job: Job, waiting: &mut VecDeque<Job>, reads: &mut usize| {
        *reads += usize::from(job.is_read());
        waiting.push_back(job);
    };
    loop {
        if waiting.is_empty() {
            match queue.recv() {
                Ok(job) => take(job, &mut waiting, &mut reads),
                Err(_) => return, // every handle is gone
            }
        }
        while waiting.len() < LOOKAHEAD {
            match queue.try_recv() {
                Ok(job) => take(job, &mut waiting, &mut reads),
                Err(_) => break,
            }
        }
        let read = match reads {
            0 => None,
            _ => waiting.iter().position(Job::is_read),
        };
        let next = match read {
            Some(at) => {
                let id = match &waiting[at] {
                    Job::Get { id, .. } => *id,
                    _ => unreachable!("a read"),
                };
                // Its own session's changes first, in order; then the read.
                match waiting.iter().take(at).position(|j| j.changes(id)) {
                    Some(before) => waiting.remove(before),
                    None => {
                        reads -= 1;
                        waiting.remove(at)
                    }
                }
            }
            None => waiting.pop_front(),
        };
        if let Some(job) = next {
            let applied = match &job {
                Job::Apply { id, .. } => Some(*id),
                _ => None,
            };
            run(store, job, most_per_user);
            if let Some(id) = applied {
                let mut counts = unapplied(unapplied_changes);
                if let Some(count) = counts.get_mut(&id) {
                    *count -= 1;
                    if *count == 0 {
                        counts.remove(&id);
                    }
                }
            }
        }
    }
}

fn run(store: &Store, job: Job, most_per_user: usize) {
    match job {
        Job::Apply {
            id,
            change,
            written,
        } => match store.apply_session(id, &change, index_stamp(), most_per_user) {
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
        },
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
