//! What decoding a client frame costs in memory: at most about the frame's
//! own size, whatever the frame holds (a `[0,0,0,…]` under an unknown key
//! used to become a tree of values some sixteen times the frame's size).
//!
//! This test binary counts its own heap with a wrapping allocator, so it
//! runs alone in its process.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use switchboard::gateway::protocol::{decode, ErrorCode};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged; the
// counters only observe sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        PEAK.fetch_max(live, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The most the heap grew while `f` ran.
fn peak_growth(f: impl FnOnce()) -> usize {
    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    f();
    PEAK.load(Ordering::Relaxed).saturating_sub(before)
}

#[test]
fn a_frame_costs_at_most_its_own_size_to_decode() {
    let limit = 64 * 1024;
    let mut frames = Vec::new();
    // Unknown keys holding deep or wide values, and known keys of the wrong type.
    let zeros = format!("[{}0]", "0,".repeat((limit - 64) / 2));
    frames.push(format!(r#"{{"type":"ping","junk":{zeros}}}"#));
    let nested = format!("{}{}", "[".repeat(100), "]".repeat(100));
    frames.push(format!(r#"{{"type":"ping","junk":{nested}}}"#));
    let objects = format!("[{}{{}}]", "{},".repeat((limit - 64) / 3));
    frames.push(format!(r#"{{"type":"ping","junk":{objects}}}"#));
    frames.push(format!(r#"{{"type":"subscribe","channel":{zeros}}}"#));
    frames.push(zeros.clone());
    let escaped = "\\u0041".repeat((limit - 64) / 6);
    frames.push(format!(r#"{{"type":"ping","request_id":"{escaped}"}}"#));
    for frame in &frames {
        assert!(frame.len() <= limit, "test frames fit the limit");
        let mut result = None;
        let grown = peak_growth(|| result = Some(decode(frame)));
        assert!(
            grown <= frame.len() + 1024,
            "decoding a {}-byte frame took {grown} bytes",
            frame.len()
        );
        if let Some(Err(error)) = result {
            assert_eq!(error.code, ErrorCode::BadRequest);
        }
    }
}
