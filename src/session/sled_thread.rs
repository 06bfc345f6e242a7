//! The sessions in sled, read and written on threads of their own.
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
//! first, after the changes of its own session before it. A third thread
//! sweeps every [`SWEEP_INTERVAL`]: it scans for expired sessions, and each
//! one it found is looked at again on the writing thread, in order with
//! the writes, before it is removed ([`SWEEP_BATCH`] at a time).
//!
//! **Writes yield to the connections.** The writing and sweeping threads
//! run at a lower priority ([`BACKGROUND_NICE`]) than the runtime's
//! workers, so a storm of reconnects on full cores is not slowed by the
//! sessions it creates; the reading thread keeps the process's (a
//! `?session=` reconnect waits for it).
//!
//! **The threads are owned.** [`start`] returns the handle every
//! `Sessions` clones ([`Queue`]) and the threads themselves ([`Threads`],
//! held by the node's `session::Background`, never cloned).
//! [`Threads::close`] stops the sweep (between two batches), queues a stop
//! behind every job handed over before it (the writing thread applies
//! them, flushes sled and ends), stops the reading thread, and joins all
//! three. A job handed over after that is refused (`WriterFull`), a read
//! answered with an error: the connection gets a fresh session.

use std::collections::{HashMap, VecDeque};
use std::sync::mpsc::{self, RecvTimeoutError, TryRecvError};

use flume::TrySendError;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;

use super::record::{index_stamp, Applied, Change, Stored};
use super::sled::SledSessions;
use super::{CloseError, SessionError, SWEEP_BATCH, SWEEP_INTERVAL};
use crate::channel::Id;
use crate::metrics::Metrics;
use crate::store::StoreError;

/// Jobs waiting for the thread, at most: a connection whose record finds
/// the queue full keeps it for its next flush.
pub const QUEUE: usize = 65_536;

/// Jobs the thread takes off the queue ahead of the one it does next, at
/// most: it serves the reads among them first. A read waits at most for
/// the job under way and the changes of its own session.
pub const LOOKAHEAD: usize = 4096;

/// How often [`Threads::close`] tries again to queue a stop behind a full
/// queue.
pub const STOP_RETRY: Duration = Duration::from_millis(10);

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
    /// Flush sled and end, once every job queued before it is done.
    Stop,
}

/// A job for the reading thread.
enum Read {
    Get(Id, oneshot::Sender<Result<Option<Stored>, StoreError>>),
    Stop,
}

/// Each session's changes handed over and not applied yet.
type Unapplied = Arc<Mutex<HashMap<Id, u32>>>;

fn unapplied(map: &Unapplied) -> std::sync::MutexGuard<'_, HashMap<Id, u32>> {
    map.lock().unwrap_or_else(|e| e.into_inner())
}

/// The handle to the threads, cloned by every `Sessions`: what it hands
/// over once they are stopped is refused.
#[derive(Clone)]
pub struct Queue {
    jobs: flume::Sender<Job>,
    reads: flume::Sender<Read>,
    unapplied: Unapplied,
}

/// The three threads, owned by the node's `session::Background`: joined by
/// [`Threads::close`].
pub struct Threads {
    queue: Queue,
    /// Tells the sweeping thread to stop (as does dropping it).
    stop_sweep: mpsc::Sender<()>,
    sweeping: Thread,
    writing: Thread,
    reading: Thread,
}

/// Whether a thread's work may wait for the connections'.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Priority {
    /// Reads: a `?session=` reconnect waits for them.
    Normal,
    /// Writes and the sweep: nothing waits for them but the store itself.
    Background,
}

/// The nice value of the writing and sweeping threads: below the runtime's
/// workers, so that when the cores are full (a storm of reconnects) the
/// connections go first and sled's writes, and the I/O threads they start
/// (which inherit it), take what is left. Measured with 15,000 clients
/// resuming with `since_seq` (docs/performance.md, "Resume storm"): the
/// gateway's CPU in the storm and the p99 to `replayed` fell by a third to
/// two fifths, and its disk writes by up to three quarters, since a
/// connection whose cursors find the queue full writes them later, once.
/// On a machine with cores to spare it changes nothing. Its price: the
/// backlog a burst of connections leaves while the thread waits grows the
/// job queue, and with sessions in sled an idle connection measures about
/// 300 to 600 bytes more (docs/performance.md, "Idle memory"); nice 5 cost
/// the same memory and gave half the storm's gain.
pub const BACKGROUND_NICE: i32 = 10;

/// Lowers the calling thread's priority to [`BACKGROUND_NICE`] (Linux
/// keeps a nice value per thread). A refusal only leaves it as it was.
fn yield_to_connections() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: `gettid` and `setpriority` take and return plain
        // integers; the thread is the caller.
        let refused = unsafe {
            let thread = libc::gettid() as libc::id_t;
            libc::setpriority(libc::PRIO_PROCESS, thread, BACKGROUND_NICE) != 0
        };
        if refused {
            tracing::debug!(
                error = %std::io::Error::last_os_error(),
                "sled's session thread keeps the process's priority"
            );
        }
    }
}

/// A thread and the signal that it ended.
struct Thread {
    name: &'static str,
    handle: std::thread::JoinHandle<()>,
    /// Told (its sender dropped) once the thread's work and everything it
    /// owned are gone, when it returns or unwinds.
    ended: oneshot::Receiver<()>,
}

impl Thread {
    fn spawn(
        name: &'static str,
        priority: Priority,
        work: impl FnOnce() + Send + 'static,
    ) -> std::io::Result<Thread> {
        let (tell, ended) = oneshot::channel::<()>();
        let handle = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let _ended = tell; // dropped last, after `work`'s captures
                if priority == Priority::Background {
                    yield_to_connections();
                }
                work();
            })?;
        Ok(Thread {
            name,
            handle,
            ended,
        })
    }

    /// Waits for the thread's end without blocking the runtime, then joins
    /// it (by then it only has its exit left).
    async fn join(self) -> Result<(), CloseError> {
        let _ = self.ended.await;
        self.handle.join().map_err(|_| CloseError::Panicked {
            what: format!("sled's session thread `{}`", self.name),
        })
    }
}

/// Starts the threads over `sessions`; a user keeps at most
/// `most_per_user` sessions. If one fails to start, those started end by
/// themselves (their queues are gone).
pub fn start(sessions: SledSessions, most_per_user: usize) -> std::io::Result<(Queue, Threads)> {
    // flume's bounded channel grows with what it holds; std's
    // `sync_channel` allocated (and wrote) all 65,536 slots of each queue
    // up front: 9 MiB of every gateway with sessions in sled.
    let (jobs, job_queue) = flume::bounded(QUEUE);
    let (reads, read_queue) = flume::bounded::<Read>(QUEUE);
    let queue = Queue {
        jobs,
        reads,
        unapplied: Unapplied::default(),
    };
    let (writes, counts) = (sessions.clone(), queue.unapplied.clone());
    let writing = Thread::spawn("sessions-sled", Priority::Background, move || {
        serve(&writes, &job_queue, most_per_user, &counts)
    })?;
    let reader = sessions.clone();
    let reading = Thread::spawn("sessions-sled-read", Priority::Normal, move || {
        for read in read_queue {
            match read {
                Read::Get(id, reply) => {
                    let _ = reply.send(reader.get(id));
                }
                Read::Stop => return,
            }
        }
    })?;
    let (stop_sweep, stop) = mpsc::channel();
    let sweeper = queue.clone();
    let sweeping = Thread::spawn("sessions-sled-sweep", Priority::Background, move || {
        sweep_every(&sessions, &sweeper, &stop)
    })?;
    let threads = Threads {
        queue: queue.clone(),
        stop_sweep,
        sweeping,
        writing,
        reading,
    };
    Ok((queue, threads))
}

impl Threads {
    /// Stops the sweep, lets the writing thread apply every job queued
    /// before now and flush sled, stops the reading thread, and joins the
    /// three.
    pub async fn close(self) -> Result<(), CloseError> {
        let _ = self.stop_sweep.send(());
        queue_stop(&self.queue.jobs, Job::Stop).await;
        queue_stop(&self.queue.reads, Read::Stop).await;
        let mut outcome = Ok(());
        for thread in [self.sweeping, self.writing, self.reading] {
            if let Err(e) = thread.join().await {
                outcome = Err(e);
            }
        }
        outcome
    }

    /// Tells the threads to stop, without waiting (`Background` dropped
    /// without `close`): the writing thread still applies what was queued
    /// first. A full queue takes no stop: its thread ends when the last
    /// handle goes.
    pub fn stop(&self) {
        let _ = self.stop_sweep.send(());
        let _ = self.queue.jobs.try_send(Job::Stop);
        let _ = self.queue.reads.try_send(Read::Stop);
    }
}

/// Queues `stop` behind what is queued, waiting for room (every
/// [`STOP_RETRY`]); a thread already gone needs none.
async fn queue_stop<T>(queue: &flume::Sender<T>, stop: T) {
    let mut stop = stop;
    loop {
        match queue.try_send(stop) {
            Ok(()) | Err(TrySendError::Disconnected(_)) => return,
            Err(TrySendError::Full(back)) => {
                stop = back;
                tokio::time::sleep(STOP_RETRY).await;
            }
        }
    }
}

impl Queue {
    /// Queues `change` of session `id`; `written` is told once it is in
    /// sled. `false`: the queue is full (or the threads stopped).
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
    /// order with the writes; how many. Blocks: for the sweeping thread
    /// (and tests).
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
                self.reads.try_send(Read::Get(id, reply)).is_ok()
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
}

/// Removes expired sessions (and subscription records left without one):
/// scans `sessions` on the calling thread, which blocks, and hands what it
/// found to the writing thread [`SWEEP_BATCH`] at a time (the reads and
/// writes queued meanwhile go in between); how many were removed. Stops
/// between two batches once `stopped` says so.
pub fn sweep(
    sessions: &SledSessions,
    queue: &Queue,
    mut stopped: impl FnMut() -> bool,
) -> Result<usize, SessionError> {
    let now = chrono::Utc::now().timestamp();
    let mut removed = 0;
    let candidates = sessions.sweep_candidates(now)?;
    for batch in candidates.chunks(SWEEP_BATCH) {
        if stopped() {
            break;
        }
        removed += queue.sweep_blocking(batch.to_vec(), now)?;
    }
    Ok(removed)
}

/// The sweeping thread: a sweep every [`SWEEP_INTERVAL`] until told to
/// stop (or its sender is gone).
fn sweep_every(sessions: &SledSessions, queue: &Queue, stop: &mpsc::Receiver<()>) {
    loop {
        match stop.recv_timeout(SWEEP_INTERVAL) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
        let mut stopped = false;
        let swept = sweep(sessions, queue, || {
            stopped = !matches!(stop.try_recv(), Err(TryRecvError::Empty));
            stopped
        });
        if stopped {
            return;
        }
        match swept {
            Ok(0) => {}
            Ok(n) => tracing::info!(removed = n, "expired sessions removed"),
            Err(e) => tracing::warn!(error = %e, "session sweep failed"),
        }
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
            Job::Get { .. } | Job::Stop => false,
        }
    }
}

/// How often, at most, the writing thread gives its free memory back to
/// the OS when its queue runs empty.
pub const GIVE_BACK_EVERY: Duration = Duration::from_secs(1);

/// The writing thread's queue ran empty: at most every [`GIVE_BACK_EVERY`],
/// it frees what a backlog grew (it yields to the connections: the
/// look-ahead queue `waiting`, the map of sessions with changes pending),
/// and mimalloc (the binary's allocator) returns this thread's free pages. sled
/// frees the old copies of the nodes this thread wrote from other threads
/// as well, and mimalloc takes those back only when the owning thread next
/// allocates or collects: after a crowd of sessions was written, the
/// gateway kept about 2.7 KiB per session resident where sled held 1 KiB
/// (`just bench fanout`, case (d), 2026-12-06). Under another allocator
/// (the unit tests') this walks an empty heap.
fn give_back_memory(
    last: &mut Option<std::time::Instant>,
    waiting: &mut VecDeque<Job>,
    unapplied_changes: &Unapplied,
) {
    let now = std::time::Instant::now();
    if last.is_some_and(|at| now.duration_since(at) < GIVE_BACK_EVERY) {
        return;
    }
    *last = Some(now);
    *waiting = VecDeque::new();
    crate::sparse::give_back(&mut unapplied(unapplied_changes));
    // SAFETY: `mi_collect` takes no pointers and may be called from any
    // thread at any time; it only walks this thread's own heap.
    unsafe { libmimalloc_sys::mi_collect(true) };
}

/// The writing thread: jobs in order (the reads among the next
/// [`LOOKAHEAD`] first) until [`Job::Stop`], then a flush.
fn serve(
    sessions: &SledSessions,
    queue: &flume::Receiver<Job>,
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
    let mut given_back: Option<std::time::Instant> = None;
    loop {
        if waiting.is_empty() {
            let job = match queue.try_recv() {
                Ok(job) => Ok(job),
                Err(flume::TryRecvError::Empty) => {
                    give_back_memory(&mut given_back, &mut waiting, unapplied_changes);
                    queue.recv().map_err(|_| ())
                }
                Err(flume::TryRecvError::Disconnected) => Err(()),
            };
            match job {
                Ok(job) => take(job, &mut waiting, &mut reads),
                Err(()) => return, // every handle is gone
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
        let Some(job) = next else { continue };
        let applied = match &job {
            Job::Apply { id, .. } => Some(*id),
            Job::Stop => {
                if let Err(e) = sessions.flush() {
                    tracing::warn!(error = %e, "sessions not flushed to disk");
                }
                return;
            }
            _ => None,
        };
        run(sessions, job, most_per_user);
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

fn run(sessions: &SledSessions, job: Job, most_per_user: usize) {
    match job {
        Job::Apply {
            id,
            change,
            written,
        } => match sessions.apply(id, &change, index_stamp(), most_per_user) {
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
            let _ = reply.send(sessions.get(id));
        }
        Job::Sweep { ids, now, reply } => {
            let mut removed = 0;
            let mut failed = None;
            for id in ids {
                match sessions.sweep_session(id, now) {
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
        Job::Stop => {}
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests;
