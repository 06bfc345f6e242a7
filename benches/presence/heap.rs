//! The heap the gateway's presence types hold per present user, counted in
//! this process: [`Counting`] is the bench's global allocator (two relaxed
//! atomic adds per call), and [`per_user`] fills the types as a node's
//! presence task would, before the bench starts any runtime, so nothing
//! else allocates meanwhile. It explains the RSS figures: what the
//! structures ask for, before the allocator's size classes and pages.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use switchboard::channel::Id;
use switchboard::presence::view::{Left, View};
use switchboard::presence::wire::{Entry, Local};

/// The system allocator, counting the bytes live and the calls.
pub struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);
static CALLS: AtomicUsize = AtomicUsize::new(0);

/// Allocations up to this size are counted by their exact size; larger
/// ones together, by bytes.
pub const SMALL: usize = 256;

/// Live allocations of each size up to [`SMALL`].
static LIVE_BY_SIZE: [AtomicIsize; SMALL + 1] = [const { AtomicIsize::new(0) }; SMALL + 1];

/// Live bytes in allocations larger than [`SMALL`].
static LIVE_LARGE: AtomicIsize = AtomicIsize::new(0);

fn count(size: usize, sign: isize) {
    LIVE.fetch_add(sign * size as isize, Ordering::Relaxed);
    match LIVE_BY_SIZE.get(size) {
        Some(live) => live.fetch_add(sign, Ordering::Relaxed),
        None => LIVE_LARGE.fetch_add(sign * size as isize, Ordering::Relaxed),
    };
}

// SAFETY: every call is passed to `System` unchanged; only counters move.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size(), 1);
        CALLS.fetch_add(1, Ordering::Relaxed);
        System.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size(), 1);
        CALLS.fetch_add(1, Ordering::Relaxed);
        System.alloc_zeroed(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count(layout.size(), -1);
        System.dealloc(ptr, layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(layout.size(), -1);
        count(new_size, 1);
        CALLS.fetch_add(1, Ordering::Relaxed);
        System.realloc(ptr, layout, new_size)
    }
}

/// Bytes live and allocation calls so far.
fn counters() -> (isize, usize) {
    (LIVE.load(Ordering::Relaxed), CALLS.load(Ordering::Relaxed))
}

/// Live bytes by allocation size: index `n` <= [`SMALL`] for allocations
/// of `n` bytes, the last for all larger ones.
fn by_size() -> Vec<isize> {
    let mut out: Vec<isize> = LIVE_BY_SIZE
        .iter()
        .enumerate()
        .map(|(size, live)| live.load(Ordering::Relaxed) * size as isize)
        .collect();
    out.push(LIVE_LARGE.load(Ordering::Relaxed));
    out
}

/// Where a view's bytes are, by allocation size.
#[derive(Clone, Copy, Debug)]
pub struct Share {
    /// The allocations' size in bytes; `None`: every allocation larger
    /// than [`SMALL`] (hash tables, vectors that grew).
    pub size: Option<usize>,
    pub bytes_per_user: f64,
}

/// What presence holds for `users` users of one channel.
pub struct Held {
    pub users: usize,
    /// A node's merged view holding them, all reported by another node
    /// (node B's whole presence state), after the poll that announced
    /// them: bytes per user.
    pub view_bytes: f64,
    /// Heap allocations per user in that view.
    pub view_allocations: f64,
    /// The view's bytes by allocation size, largest share first.
    pub view_shares: Vec<Share>,
    /// The node holding their connections: its own holdings (`Local`,
    /// after the delta was taken) and its view (node A's presence state),
    /// bytes per user.
    pub holder_bytes: f64,
}

/// The display name of user `i`, as the bench's tokens carry it: ten
/// bytes, a short chat name.
pub fn username(i: usize) -> String {
    format!("user-{i:05}")
}

/// Fills a view (and a holder's `Local` and view) with `users` users of one
/// channel and counts what they keep. Call it before any other thread
/// allocates.
pub fn per_user(users: usize) -> Held {
    let grace = Duration::from_secs(5);
    let (channel, a) = (Id::new_v4(), Id::new_v4());
    let people: Vec<(Id, String)> = (0..users).map(|i| (Id::new_v4(), username(i))).collect();
    let now = Instant::now();

    let (live, calls) = counters();
    let sizes = by_size();
    let mut view = View::new(grace);
    for (user, name) in &people {
        view.report(a, (channel, *user), name, 1, Left::Dropped, now);
    }
    drop(view.poll(now));
    let (live_after, calls_after) = counters();
    let mut view_shares: Vec<Share> = by_size()
        .into_iter()
        .zip(sizes)
        .enumerate()
        .filter(|(_, (after, before))| after != before)
        .map(|(i, (after, before))| Share {
            size: (i <= SMALL).then_some(i),
            bytes_per_user: (after - before) as f64 / users as f64,
        })
        .collect();
    view_shares.sort_by(|x, y| y.bytes_per_user.total_cmp(&x.bytes_per_user));
    assert_eq!(view.present(), users);
    let view_bytes = (live_after - live) as f64 / users as f64;
    let view_allocations = calls_after.saturating_sub(calls) as f64;
    drop(view);

    let (live, _) = counters();
    let mut local = Local::new(a);
    let mut view = View::new(grace);
    for (user, name) in &people {
        // As `Presence::join` does: the view holds the node's own
        // holdings, the delta carries the change until it is sent.
        let connections = view.connections_on(a, (channel, *user)) + 1;
        view.report(a, (channel, *user), name, connections, Left::Dropped, now);
        local.note(Entry {
            channel,
            user: *user,
            username: name.clone(),
            connections,
            ended: false,
        });
    }
    drop(local.take_deltas());
    drop(view.poll(now));
    let (live_after, _) = counters();
    let holder_bytes = (live_after - live) as f64 / users as f64;
    drop((local, view));

    Held {
        users,
        view_bytes,
        // Calls that were freed again (table growth) count too: an upper
        // bound on what is live.
        view_allocations: view_allocations / users as f64,
        view_shares,
        holder_bytes,
    }
}
