//! The window: the node's most recent stored events, in memory, so that a
//! short gap (a client back after seconds, a slow reader catching up) is
//! replayed without asking NATS for anything. They are kept in `seq` order
//! (which the bounds evict by) and by channel (which reads, probes and
//! membership checks look at: a resume costs its channel's events, not the
//! window's).
//!
//! The router appends every event it routes *before* the hub hears of it,
//! so the window always holds everything up to the hub's routed position:
//! a replay whose target is that position (see `connection::replay`) can be
//! served from here alone. It holds every valid event with a `seq` in
//! `(after, last]`; an invalid stored message leaves a hole that readers
//! skip, as the log's readers do. The oldest events give way when the
//! window passes its event or byte bound; a read that falls behind the
//! window's start goes on from the stream.
//!
//! At start-up the router fills the window from the stream's tail, so a
//! restarted node serves short gaps from memory too.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use chrono::Utc;

use tokio::sync::watch;

use crate::access;
use crate::channel::{Channel, Id};
use crate::envelope::{StoredEvent, Text};
use crate::metrics::Metrics;
use crate::projection::FOLDED;

/// The window's memory accounting for one event: what its encoded frame,
/// the decoded event, its kept raw data and the entry cost, from its
/// encoded size.
fn cost(frame_len: usize) -> usize {
    3 * frame_len + 256
}

/// One event in the window, with the envelope the router encoded for it:
/// a replay writes those same bytes.
#[derive(Debug)]
pub struct Recent {
    pub event: StoredEvent,
    pub frame: Text,
}

impl Recent {
    /// An event read back from the stream (the start-up fill).
    pub fn encode(event: StoredEvent) -> Recent {
        let frame = event.encode();
        Recent { event, frame }
    }
}

/// An event in the window's `seq` order (which the bounds evict by).
struct Entry {
    seq: u64,
    channel: Channel,
    recent: Arc<Recent>,
    cost: usize,
}

struct Inner {
    /// Every valid event with `after < seq <= last` is in `entries`.
    after: u64,
    last: u64,
    entries: VecDeque<Entry>,
    /// The same events by channel, in `seq` order: a read, a probe or a
    /// membership check looks at its channel's events only.
    by_channel: HashMap<Channel, VecDeque<Arc<Recent>>>,
    bytes: usize,
    /// Moves when the stream was recreated: reads of an older
    /// generation count another stream's seqs.
    generation: u64,
}

impl Inner {
    fn push_back(&mut self, entry: Entry) {
        self.bytes += entry.cost;
        let list = self.by_channel.entry(entry.channel).or_default();
        list.push_back(entry.recent.clone());
        self.entries.push_back(entry);
    }

    fn push_front(&mut self, entry: Entry) {
        self.bytes += entry.cost;
        let list = self.by_channel.entry(entry.channel).or_default();
        list.push_front(entry.recent.clone());
        self.entries.push_front(entry);
    }

    /// Removes the oldest event; the window then starts after it.
    fn pop_front(&mut self) -> Option<Entry> {
        let entry = self.entries.pop_front()?;
        self.bytes -= entry.cost;
        self.after = self.after.max(entry.seq);
        if let Some(list) = self.by_channel.get_mut(&entry.channel) {
            list.pop_front();
            if list.is_empty() {
                self.by_channel.remove(&entry.channel);
            }
        }
        Some(entry)
    }

    fn clear(&mut self) {
        self.entries.clear();
        self.by_channel.clear();
        self.bytes = 0;
    }

    /// The channel's events, in `seq` order.
    fn of(&self, channel: Channel) -> Option<&VecDeque<Arc<Recent>>> {
        self.by_channel.get(&channel)
    }
}

/// The recent events; shared by the router (the only writer) and the
/// connections' replays.
pub struct Window {
    inner: RwLock<Inner>,
    max_events: usize,
    max_bytes: usize,
    /// The stream's max age: the window never holds an event the stream
    /// may have dropped, so it never answers differently from the stream.
    retention: chrono::Duration,
    /// The last `seq` appended, for reads waiting at the window's end.
    grew: watch::Sender<u64>,
}

/// A batch read from the window.
pub struct Batch {
    /// The channel's events after the read position, in order.
    pub events: Vec<Arc<Recent>>,
    /// How far the read looked: the next read starts after it.
    pub through: u64,
    /// Whether it reached the window's end.
    pub at_end: bool,
}

impl Window {
    /// An empty window that starts after `last`, bounded by `max_events`
    /// events and `max_bytes` of accounted memory, and by the stream's
    /// `retention`.
    pub fn new(last: u64, max_events: usize, max_bytes: usize, retention: Duration) -> Window {
        Window {
            inner: RwLock::new(Inner {
                after: last,
                last,
                entries: VecDeque::new(),
                by_channel: HashMap::new(),
                bytes: 0,
                generation: 0,
            }),
            max_events,
            max_bytes,
            retention: chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::MAX),
            grew: watch::Sender::new(last),
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends the event the router is about to route. Events come in
    /// `seq` order.
    pub fn push(&self, recent: Arc<Recent>) {
        let (seq, channel) = (recent.event.seq, recent.event.channel);
        {
            let mut inner = self.write();
            if seq <= inner.last {
                return;
            }
            let cost = cost(recent.frame.len());
            inner.push_back(Entry {
                seq,
                channel,
                recent,
                cost,
            });
            inner.last = seq;
            self.evict(&mut inner);
        }
        self.grew.send_replace(seq);
    }

    /// The router passed `seq` without an event (an invalid stored message).
    pub fn skip(&self, seq: u64) {
        {
            let mut inner = self.write();
            if seq <= inner.last {
                return;
            }
            inner.last = seq;
        }
        self.grew.send_replace(seq);
    }

    /// Puts older events in front of the window (read from the stream at
    /// start-up: every event with `after < seq <=` the window's start, in
    /// order), newest first, as far as its bounds allow.
    pub fn prepend(&self, after: u64, events: Vec<Arc<Recent>>) {
        let mut inner = self.write();
        let fits = events.first().is_none_or(|r| r.event.seq > after)
            && events.last().is_none_or(|r| r.event.seq <= inner.after);
        if !fits || after >= inner.after {
            return;
        }
        let mut start = after;
        for recent in events.into_iter().rev() {
            let (seq, channel) = (recent.event.seq, recent.event.channel);
            let cost = cost(recent.frame.len());
            if inner.entries.len() >= self.max_events || inner.bytes + cost > self.max_bytes {
                start = seq;
                break;
            }
            inner.push_front(Entry {
                seq,
                channel,
                recent,
                cost,
            });
        }
        inner.after = start;
        Self::report(&inner);
    }

    /// The stream was recreated and routing goes on after `last` of the new
    /// one: everything held is another stream's.
    pub fn restart(&self, last: u64) {
        {
            let mut inner = self.write();
            inner.clear();
            inner.after = last;
            inner.last = last;
            inner.generation += 1;
            Self::report(&inner);
        }
        self.grew.send_replace(last);
    }

    /// The stream holds nothing before `first_seq` any more (retention, or
    /// an operator's limits): neither does the window.
    pub fn drop_before(&self, first_seq: u64) {
        let mut inner = self.write();
        while inner.entries.front().is_some_and(|e| e.seq < first_seq) {
            inner.pop_front();
        }
        let start = first_seq.saturating_sub(1).min(inner.last);
        inner.after = inner.after.max(start);
        self.evict(&mut inner);
    }

    /// Where the window starts, counting out events past the retention
    /// (not yet evicted: that happens on the next push).
    fn start(&self, inner: &Inner) -> u64 {
        let cutoff = Utc::now() - self.retention;
        let expired = inner
            .entries
            .iter()
            .take_while(|e| e.recent.event.time < cutoff)
            .last();
        expired.map_or(inner.after, |e| e.seq)
    }

    fn evict(&self, inner: &mut Inner) {
        let cutoff = Utc::now() - self.retention;
        while inner.entries.len() > self.max_events
            || inner.bytes > self.max_bytes
            || inner
                .entries
                .front()
                .is_some_and(|e| e.recent.event.time < cutoff)
        {
            if inner.pop_front().is_none() {
                break;
            }
        }
        Self::report(inner);
    }

    fn report(inner: &Inner) {
        let metrics = Metrics::get();
        metrics.window_events.set(inner.entries.len() as f64);
        metrics.window_bytes.set(inner.bytes as f64);
    }

    /// The generation a read starts in (see [`Window::read_after`]).
    pub fn generation(&self) -> u64 {
        self.read().generation
    }

    /// Whether every event after `seq` up to the window's end is here.
    pub fn holds_after(&self, seq: u64) -> bool {
        let inner = self.read();
        self.start(&inner) <= seq && seq <= inner.last
    }

    /// Up to `max` of `channel`'s events with `seq > after`. `None` when
    /// the window no longer holds everything after `after` (or the stream
    /// was recreated since `generation`): the read must go on from the
    /// stream.
    pub fn read_after(
        &self,
        channel: Channel,
        after: u64,
        max: usize,
        generation: u64,
    ) -> Option<Batch> {
        let inner = self.read();
        if inner.generation != generation || after < self.start(&inner) || after > inner.last {
            return None;
        }
        let Some(list) = inner.of(channel) else {
            return Some(Batch {
                events: Vec::new(),
                through: inner.last,
                at_end: true,
            });
        };
        let start = list.partition_point(|r| r.event.seq <= after);
        let events: Vec<Arc<Recent>> = list.range(start..).take(max).cloned().collect();
        let at_end = start + events.len() == list.len();
        let through = match events.last() {
            Some(last) if !at_end => last.event.seq,
            // Past the channel's last event there is nothing of it up to `last`.
            _ => inner.last,
        };
        Some(Batch {
            events,
            through,
            at_end,
        })
    }

    /// The `seq` of `channel`'s first event at or after `from`, as far as
    /// the window knows: `Some(None)` when it holds none up to its end,
    /// `None` when it does not hold everything from `from` on.
    pub fn next_of(&self, channel: Channel, from: u64) -> Option<Option<u64>> {
        let inner = self.read();
        let after = from.saturating_sub(1);
        if after < self.start(&inner) {
            return None;
        }
        if after >= inner.last {
            return Some(None);
        }
        let Some(list) = inner.of(channel) else {
            return Some(None);
        };
        let start = list.partition_point(|r| r.event.seq < from);
        Some(list.get(start).map(|r| r.event.seq))
    }

    /// Whether chat channel `channel` has events about `user`'s standing
    /// with `after < seq <= to`; `None` when the window does not hold them all.
    pub fn standing_changes(&self, channel: Id, user: Id, after: u64, to: u64) -> Option<bool> {
        let inner = self.read();
        if after < self.start(&inner) || to > inner.last {
            return None;
        }
        let Some(list) = inner.of(Channel::Chat(channel)) else {
            return Some(false);
        };
        let start = list.partition_point(|r| r.event.seq <= after);
        Some(
            list.range(start..)
                .take_while(|r| r.event.seq <= to)
                .any(|r| {
                    let data = &r.event.data;
                    FOLDED.contains(&data.kind()) && access::concerns(user, data)
                }),
        )
    }

    /// Changes of the window's end, for a read waiting there.
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.grew.subscribe()
    }
}

#[cfg(test)]
mod tests;
