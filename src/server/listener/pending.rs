//! The pending sockets (still speaking HTTP) and which of them gives way
//! to a new one: only a socket waiting for a request head (new, or idle
//! between requests), the one whose wait began first. A socket leaves the
//! line when a request head arrives ([`PendingEntry::request_began`]) and
//! comes back once every response it began is written whole
//! ([`PendingEntry::responses_written`]); one in the middle of a request is
//! never chosen.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// The pending sockets: how many, and those waiting for a request head,
/// in the order their wait began (each under a stamp taken from `next`).
#[derive(Default)]
pub(super) struct Pending {
    line: Mutex<Line>,
    next: AtomicU64,
}

#[derive(Default)]
struct Line {
    /// The sockets waiting for a request head, by stamp.
    waiting: BTreeMap<u64, CancellationToken>,
    /// Pending sockets not told to close, waiting or not.
    open: usize,
}

/// [`PendingEntry::stamp`] of a socket that is not waiting for a head.
const NOT_WAITING: u64 = u64::MAX;

impl Pending {
    fn lock(&self) -> std::sync::MutexGuard<'_, Line> {
        self.line.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Lists a new socket as pending, waiting for its first head.
    pub(super) fn enter(self: &Arc<Self>) -> Arc<PendingEntry> {
        let stamp = self.next.fetch_add(1, Ordering::Relaxed);
        let close = CancellationToken::new();
        {
            let mut line = self.lock();
            line.waiting.insert(stamp, close.clone());
            line.open += 1;
        }
        Metrics::get().http_connections.increment(1.0);
        Arc::new(PendingEntry {
            pending: self.clone(),
            stamp: AtomicU64::new(stamp),
            in_flight: AtomicUsize::new(0),
            close,
        })
    }

    /// Pending sockets not told to close.
    pub(super) fn len(&self) -> usize {
        self.lock().open
    }

    /// Tells the socket waiting longest for a request head to close;
    /// `false` if none is waiting.
    pub(super) fn shed_oldest(&self) -> bool {
        let mut line = self.lock();
        match line.waiting.pop_first() {
            Some((_, close)) => {
                // Under the lock: its entry sees it shed when it leaves.
                close.cancel();
                line.open -= 1;
                true
            }
            None => false,
        }
    }
}

/// One pending socket's place in [`Pending`]; it leaves when the HTTP
/// connection ends (closed, or upgraded to a WebSocket).
pub(super) struct PendingEntry {
    pending: Arc<Pending>,
    /// Its stamp in the line while it waits for a head, else
    /// [`NOT_WAITING`]. Changed under the line's lock.
    stamp: AtomicU64,
    /// Requests whose head arrived and whose response is not yet written
    /// whole. Changed under the line's lock.
    in_flight: AtomicUsize,
    /// Cancelled (under the line's lock) when the socket is shed.
    pub(super) close: CancellationToken,
}

impl PendingEntry {
    /// A request head arrived: the socket leaves the line until its
    /// response is written.
    pub(super) fn request_began(&self) {
        let mut line = self.pending.lock();
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        let stamp = self.stamp.swap(NOT_WAITING, Ordering::Relaxed);
        if stamp != NOT_WAITING {
            line.waiting.remove(&stamp);
        }
    }

    /// `written` responses left hyper's buffer: with none other in flight,
    /// the socket waits for its next head, at the back of the line.
    pub(super) fn responses_written(&self, written: usize) {
        let mut line = self.pending.lock();
        let before = self.in_flight.load(Ordering::Relaxed);
        let now = before.saturating_sub(written);
        self.in_flight.store(now, Ordering::Relaxed);
        let shed = self.close.is_cancelled();
        if now > 0 || shed || self.stamp.load(Ordering::Relaxed) != NOT_WAITING {
            return;
        }
        let stamp = self.pending.next.fetch_add(1, Ordering::Relaxed);
        self.stamp.store(stamp, Ordering::Relaxed);
        line.waiting.insert(stamp, self.close.clone());
    }
}

impl Drop for PendingEntry {
    fn drop(&mut self) {
        {
            let mut line = self.pending.lock();
            let stamp = self.stamp.load(Ordering::Relaxed);
            if stamp != NOT_WAITING {
                line.waiting.remove(&stamp);
            }
            if !self.close.is_cancelled() {
                line.open -= 1;
            }
        }
        Metrics::get().http_connections.decrement(1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_wait_for_a_head_is_shed_first() {
        let pending = Arc::new(Pending::default());
        let a = pending.enter();
        let b = pending.enter();
        // A request and its response: `a` waits again, behind `b`.
        a.request_began();
        a.responses_written(1);
        assert!(pending.shed_oldest());
        assert!(b.close.is_cancelled());
        assert!(!a.close.is_cancelled());
        assert_eq!(pending.len(), 1, "a shed socket no longer counts");
        b.request_began();
        b.responses_written(1);
        assert_eq!(pending.lock().waiting.len(), 1, "a shed socket stays out");
        drop(b);
        assert_eq!(pending.len(), 1);
        drop(a);
        assert_eq!(pending.len(), 0);
        assert!(!pending.shed_oldest());
    }

    #[test]
    fn a_socket_in_the_middle_of_a_request_is_never_shed() {
        let pending = Arc::new(Pending::default());
        let busy = pending.enter();
        busy.request_began();
        assert_eq!(pending.len(), 1, "it counts as pending");
        assert!(!pending.shed_oldest(), "but is not waiting for a head");
        // A pipelined request began before the first response was written.
        busy.request_began();
        busy.responses_written(1);
        assert!(!pending.shed_oldest(), "one response is still in flight");
        let idle = pending.enter();
        busy.responses_written(1);
        assert!(pending.shed_oldest());
        assert!(idle.close.is_cancelled(), "the older wait goes first");
        assert!(pending.shed_oldest());
        assert!(
            busy.close.is_cancelled(),
            "then the one whose response is written"
        );
        // Responses written after a shed do not bring it back.
        busy.responses_written(1);
        assert!(!pending.shed_oldest());
        assert_eq!(pending.len(), 0);
    }
}
