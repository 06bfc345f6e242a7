//! The hub: which local connection is subscribed to which channel, and the
//! fan-out of one encoded event to all of them.
//!
//! Architecture invariant: the hub never blocks and never buffers. Each
//! connection has a bounded queue; when it is full, a stored event is
//! dropped for that connection and the connection is flagged as lagging (it
//! then reads what it missed from the log at its own pace), and an
//! ephemeral `user_typing` is simply dropped. While the flag is up, no
//! stored event is queued for it: its queue never holds an event past a gap.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::task::{Context, Poll};

use futures::task::AtomicWaker;

use super::deflate::Deflated;
use crate::access::Cut;
use crate::channel::{Channel, Id};
use crate::envelope::Text;

/// How many shards the subscription map is split into, so that subscribes
/// and fan-outs of different channels rarely contend.
pub const SHARDS: usize = 64;

/// One encoded event copy on its way to the subscribers of `channel`.
#[derive(Debug)]
pub struct Delivery {
    pub channel: Channel,
    /// `None` for ephemeral `user_typing`.
    pub seq: Option<u64>,
    /// The whole envelope, encoded once for every subscriber.
    pub frame: Text,
    /// Its `permessage-deflate` form, made by the first subscriber that
    /// sends it compressed.
    pub deflated: Deflated,
    /// Whom this event cuts off the channel.
    pub cut: Option<Cut>,
    /// The log's commit time, for delivery latency (ms since the epoch).
    pub log_time_ms: i64,
    /// For typing: the typing user, who does not get their own typing.
    pub from_user: Option<Id>,
    /// For presence (a `user_presence` event or a snapshot): its batch's
    /// generation. Only subscriptions that asked for presence get it.
    pub presence: Option<u64>,
}

#[cfg(test)]
impl Delivery {
    /// `frame` on `channel` with nothing else to it: no compressed form
    /// yet, no cut, no typing user, no presence (the unit tests' events).
    pub(crate) fn bare(channel: Channel, seq: Option<u64>, frame: Text) -> Delivery {
        Delivery {
            channel,
            seq,
            frame,
            deflated: Default::default(),
            cut: None,
            log_time_ms: 0,
            from_user: None,
            presence: None,
        }
    }
}

/// What a connection shares with the hub: its bounded queue of
/// deliveries and its flags.
///
/// The queue is a `VecDeque` behind a mutex that only the router (pushing)
/// and the connection (taking) touch: it holds no storage while empty, and
/// gives back what a burst grew, so an idle connection pays a few words
/// for it (a tokio `mpsc` channel allocated about 600 bytes per connection
/// up front, and its semaphore was a tenth of fan-out's CPU).
pub struct Mailbox {
    pub user: Id,
    queue: Mutex<VecDeque<Arc<Delivery>>>,
    capacity: u32,
    /// The connection's task, woken when the queue goes from empty to not
    /// empty and when a flag is raised. It registers before it looks at
    /// the queue and the flags, so no wake-up is lost. (A `Notify` was 32
    /// bytes here and its waiter 64 in every idle connection's task.)
    waker: AtomicWaker,
    /// [`Flags`]: one byte, so that the mailbox fits mimalloc's 128-byte
    /// class (with a `bool` each it took the 160-byte one).
    flags: Flags,
    /// The operator disconnected the user, with this reason
    /// ([`crate::gateway::users`]).
    disconnect: OnceLock<Box<str>>,
}

/// A mailbox's flags, a bit each.
struct Flags(AtomicU8);

/// The connection's [`Inbox`] is gone: nothing more is queued.
const CLOSED: u8 = 1;
/// Stored events were dropped: the connection reads the gap from the log.
const LAGGED: u8 = 1 << 1;
/// The stream was recreated ([`Hub::restart`]): the connection's cursors
/// count another stream's seqs.
const RESTARTED: u8 = 1 << 2;
/// A presence delivery found the queue full: the connection's presence
/// subscriptions are sent their snapshot again.
const PRESENCE_LOST: u8 = 1 << 3;
/// The node is shutting down (a flag, not a future that each connection
/// polls: that was 72 bytes of every idle connection's task).
const SHUTDOWN: u8 = 1 << 4;

impl Flags {
    /// Raises `flag`; whether it was down.
    fn raise(&self, flag: u8) -> bool {
        self.0.fetch_or(flag, Ordering::AcqRel) & flag == 0
    }

    /// Lowers `flag`; whether it was up.
    fn take(&self, flag: u8) -> bool {
        self.0.fetch_and(!flag, Ordering::AcqRel) & flag != 0
    }

    fn is_up(&self, flag: u8) -> bool {
        self.0.load(Ordering::Acquire) & flag != 0
    }
}

/// Queues that grew past this many slots in a burst are given back once
/// they are empty again.
const KEEP_QUEUE_SLOTS: usize = 16;

/// Why a delivery was not queued.
enum Refused {
    Full,
    Closed,
}

impl Mailbox {
    pub fn new(user: Id, capacity: usize) -> (Arc<Mailbox>, Inbox) {
        let mailbox = Arc::new(Mailbox {
            user,
            queue: Mutex::new(VecDeque::new()),
            capacity: u32::try_from(capacity.max(1)).unwrap_or(u32::MAX),
            waker: AtomicWaker::new(),
            flags: Flags(AtomicU8::new(0)),
            disconnect: OnceLock::new(),
        });
        let inbox = Inbox {
            mailbox: mailbox.clone(),
        };
        (mailbox, inbox)
    }

    fn wake(&self) {
        self.waker.wake();
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, VecDeque<Arc<Delivery>>> {
        // A panic while holding the lock leaves a consistent queue.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `delivery` unless the queue is full or the connection gone.
    fn offer(&self, delivery: &Arc<Delivery>) -> Result<(), Refused> {
        if self.flags.is_up(CLOSED) {
            return Err(Refused::Closed);
        }
        let mut queue = self.queue();
        if queue.len() >= self.capacity as usize {
            return Err(Refused::Full);
        }
        let was_empty = queue.is_empty();
        queue.push_back(delivery.clone());
        drop(queue);
        if was_empty {
            self.wake();
        }
        Ok(())
    }

    /// Whether stored events were dropped since the last call; clears the flag.
    pub fn take_lagged(&self) -> bool {
        self.flags.take(LAGGED)
    }

    /// Whether the stream was recreated since the last call; clears the
    /// flag. Every stored event queued before it is the old stream's.
    pub fn take_restarted(&self) -> bool {
        self.flags.take(RESTARTED)
    }

    /// Whether a presence delivery was dropped since the last call;
    /// clears the flag.
    pub fn take_presence_lost(&self) -> bool {
        self.flags.take(PRESENCE_LOST)
    }

    /// Tells the connection that the node is shutting down.
    pub fn shut_down(&self) {
        self.flags.raise(SHUTDOWN);
        self.wake();
    }

    /// Whether the node is shutting down.
    pub fn is_shut_down(&self) -> bool {
        self.flags.is_up(SHUTDOWN)
    }

    /// Asks the connection to close with 4003 and `reason`; the first
    /// reason given stays.
    pub fn disconnect(&self, reason: &str) {
        let _ = self.disconnect.set(reason.into());
        self.wake();
    }

    /// The operator's reason, once the connection was disconnected.
    pub fn disconnected(&self) -> Option<&str> {
        self.disconnect.get().map(|r| &**r)
    }

    /// Whether the hub flagged this connection as lagging, the stream as
    /// recreated or its presence as lost (the flags stay up until taken),
    /// or the operator disconnected it, or the node is shutting down.
    fn flagged(&self) -> bool {
        self.flags
            .is_up(LAGGED | RESTARTED | PRESENCE_LOST | SHUTDOWN)
            || self.disconnect.get().is_some()
    }
}

/// What woke a connection's [`Inbox`].
pub enum Wake {
    /// The next delivery.
    Delivery(Arc<Delivery>),
    /// A flag is up ([`Mailbox::take_lagged`], [`Mailbox::take_restarted`]):
    /// the connection takes it before its next delivery.
    Flagged,
}

/// The connection's end of its [`Mailbox`]: the queued deliveries, in order.
pub struct Inbox {
    mailbox: Arc<Mailbox>,
}

impl Inbox {
    /// The next delivery, or a raised flag first, waiting for either.
    /// Cancel-safe: a delivery is taken only when this resolves. Its
    /// future holds nothing but this inbox.
    pub fn recv(&mut self) -> impl std::future::Future<Output = Wake> + '_ {
        std::future::poll_fn(|cx| self.poll_recv(cx))
    }

    /// [`Inbox::recv`], polled.
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Wake> {
        if let Some(wake) = self.ready() {
            return Poll::Ready(wake);
        }
        // Registered before the second look: a push or a flag after it
        // wakes this task.
        self.mailbox.waker.register(cx.waker());
        match self.ready() {
            Some(wake) => Poll::Ready(wake),
            None => Poll::Pending,
        }
    }

    fn ready(&mut self) -> Option<Wake> {
        if self.mailbox.flagged() {
            return Some(Wake::Flagged);
        }
        self.try_recv().map(Wake::Delivery)
    }

    /// The next delivery, if one is queued.
    pub fn try_recv(&mut self) -> Option<Arc<Delivery>> {
        let mut queue = self.mailbox.queue();
        let delivery = queue.pop_front();
        if queue.is_empty() && queue.capacity() > KEEP_QUEUE_SLOTS {
            *queue = VecDeque::new();
        }
        delivery
    }
}

impl Drop for Inbox {
    fn drop(&mut self) {
        self.mailbox.flags.raise(CLOSED);
        self.mailbox.queue().clear();
    }
}

/// What happened to one delivery for one subscriber.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Fanout {
    pub queued: usize,
    pub lagged: usize,
    pub typing_dropped: usize,
    /// Presence deliveries not queued (the connection gets a snapshot).
    pub presence_dropped: usize,
}

/// One local subscription of a channel.
struct Subscriber {
    conn: u64,
    /// Whether it asked for presence.
    presence: bool,
    mailbox: Arc<Mailbox>,
}

type Subscribers = Vec<Subscriber>;

/// The node's subscriptions.
pub struct Hub {
    shards: Box<[RwLock<HashMap<Channel, Subscribers>>]>,
    hasher: std::collections::hash_map::RandomState,
    /// The last sequence fanned out; a live subscription starts after it.
    last_routed: AtomicU64,
}

impl Default for Hub {
    fn default() -> Self {
        Hub::new()
    }
}

impl Hub {
    pub fn new() -> Hub {
        Hub {
            shards: (0..SHARDS).map(|_| RwLock::new(HashMap::new())).collect(),
            hasher: Default::default(),
            last_routed: AtomicU64::new(0),
        }
    }

    fn shard(&self, channel: &Channel) -> &RwLock<HashMap<Channel, Subscribers>> {
        let mut h = self.hasher.build_hasher();
        channel.hash(&mut h);
        let i = (std::hash::Hasher::finish(&h) as usize) % self.shards.len();
        &self.shards[i]
    }

    /// Adds a connection's subscription (with the channel's presence, if
    /// `presence`). Returns the last sequence routed before it was added:
    /// every later stored event of the channel reaches the mailbox (or
    /// flags it as lagging).
    pub fn subscribe(
        &self,
        channel: Channel,
        conn: u64,
        presence: bool,
        mailbox: Arc<Mailbox>,
    ) -> u64 {
        let mut shard = self
            .shard(&channel)
            .write()
            .unwrap_or_else(|e| e.into_inner());
        let subscribers = shard.entry(channel).or_default();
        // Most channels of a node have a few local subscribers: their
        // storage is exact; a crowded channel's grows by doubling.
        if subscribers.len() < 4 {
            subscribers.reserve_exact(1);
        }
        subscribers.push(Subscriber {
            conn,
            presence,
            mailbox,
        });
        self.last_routed.load(Ordering::Acquire)
    }

    pub fn unsubscribe(&self, channel: Channel, conn: u64) {
        let mut shard = self
            .shard(&channel)
            .write()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(subs) = shard.get_mut(&channel) {
            subs.retain(|s| s.conn != conn);
            if subs.is_empty() {
                shard.remove(&channel);
                crate::sparse::give_back(&mut shard);
            }
        }
    }

    /// Fans one delivery out to the channel's local subscribers.
    pub fn dispatch(&self, delivery: Arc<Delivery>) -> Fanout {
        let mut out = Fanout::default();
        {
            let shard = self
                .shard(&delivery.channel)
                .read()
                .unwrap_or_else(|e| e.into_inner());
            if let Some(subs) = shard.get(&delivery.channel) {
                for Subscriber {
                    presence, mailbox, ..
                } in subs
                {
                    if delivery.from_user == Some(mailbox.user) {
                        continue;
                    }
                    if delivery.presence.is_some() && !presence {
                        continue;
                    }
                    if delivery.seq.is_some() && mailbox.flags.is_up(LAGGED) {
                        // Past a dropped event, none is queued until the
                        // connection has taken the flag (and reads the gap
                        // from the log): a later event written first would
                        // move its cursor past the gap.
                        out.lagged += 1;
                        continue;
                    }
                    match mailbox.offer(&delivery) {
                        Ok(()) => out.queued += 1,
                        Err(Refused::Full) if delivery.seq.is_some() => {
                            if mailbox.flags.raise(LAGGED) {
                                mailbox.wake();
                            }
                            out.lagged += 1;
                        }
                        Err(Refused::Full) if delivery.presence.is_some() => {
                            if mailbox.flags.raise(PRESENCE_LOST) {
                                mailbox.wake();
                            }
                            out.presence_dropped += 1;
                        }
                        Err(Refused::Full) => out.typing_dropped += 1,
                        // The connection is going away and unsubscribes itself.
                        Err(Refused::Closed) => {}
                    }
                }
            }
            // Inside the lock: a subscriber added after this point is told a
            // `last_routed` that covers this event.
            if let Some(seq) = delivery.seq {
                self.last_routed.fetch_max(seq, Ordering::AcqRel);
            }
        }
        out
    }

    /// Marks sequences up to `seq` as routed (events no subscriber wanted).
    pub fn routed_through(&self, seq: u64) {
        self.last_routed.fetch_max(seq, Ordering::AcqRel);
    }

    /// The stream was recreated and the router goes on after `seq` of the
    /// new one: the routed position is set back to `seq` (the one place it
    /// moves backwards), and every subscribed connection is flagged and
    /// woken to restart its subscriptions on the new stream. Called by the
    /// router between two dispatches: every delivery queued before the
    /// flag is of the old stream.
    pub fn restart(&self, seq: u64) {
        self.last_routed.store(seq, Ordering::Release);
        for shard in self.shards.iter() {
            let shard = shard.read().unwrap_or_else(|e| e.into_inner());
            for Subscriber { mailbox, .. } in shard.values().flatten() {
                if mailbox.flags.raise(RESTARTED) {
                    mailbox.wake();
                }
            }
        }
    }

    pub fn last_routed(&self) -> u64 {
        self.last_routed.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests;
