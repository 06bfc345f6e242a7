//! A sliding-window rate limit: at most `limit` hits in any `window`.
//! One type serves the bad-frame limit (20 a minute, then close 4029) and
//! the typing limit (2 a second per channel, the excess dropped).
//!
//! It keeps the instants of the hits still inside the window, so it holds
//! at most `limit` of them, and nothing until the first hit.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct RateWindow {
    limit: usize,
    window: Duration,
    hits: VecDeque<Instant>,
}

impl RateWindow {
    pub fn new(limit: usize, window: Duration) -> RateWindow {
        RateWindow {
            limit,
            window,
            hits: VecDeque::new(),
        }
    }

    /// Counts a hit at `now` if the window has room for it; `false` means
    /// over the limit (the hit is not counted).
    pub fn admit(&mut self, now: Instant) -> bool {
        while self
            .hits
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= self.window)
        {
            self.hits.pop_front();
        }
        if self.hits.len() >= self.limit {
            return false;
        }
        self.hits.push_back(now);
        true
    }

    /// Whether every hit has left the window by `now`: the limit then holds
    /// nothing, and a window made afresh would admit alike.
    pub fn is_idle(&self, now: Instant) -> bool {
        self.hits
            .back()
            .is_none_or(|t| now.saturating_duration_since(*t) >= self.window)
    }

    /// Lets a window made on first use go once it is idle at `now`; the
    /// next hit makes it again.
    pub fn let_go_if_idle(window: &mut Option<Box<RateWindow>>, now: Instant) {
        if window.as_ref().is_some_and(|w| w.is_idle(now)) {
            *window = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn admits_the_limit_then_refuses_until_the_window_slides() {
        let t0 = Instant::now();
        let mut rate = RateWindow::new(2, Duration::from_secs(1));
        assert!(rate.admit(t0));
        assert!(rate.admit(t0 + Duration::from_millis(10)));
        assert!(!rate.admit(t0 + Duration::from_millis(20)));
        assert!(!rate.admit(t0 + Duration::from_millis(999)));
        // The first hit leaves the window; one more fits.
        assert!(rate.admit(t0 + Duration::from_millis(1000)));
        assert!(!rate.admit(t0 + Duration::from_millis(1005)));
        assert!(rate.admit(t0 + Duration::from_millis(1010)));
    }

    #[test]
    fn idle_once_the_last_hit_has_left_the_window() {
        let t0 = Instant::now();
        let mut rate = RateWindow::new(2, Duration::from_secs(1));
        assert!(rate.is_idle(t0));
        assert!(rate.admit(t0));
        assert!(rate.admit(t0 + Duration::from_millis(500)));
        assert!(!rate.is_idle(t0 + Duration::from_millis(1000)));
        assert!(!rate.is_idle(t0 + Duration::from_millis(1499)));
        assert!(rate.is_idle(t0 + Duration::from_millis(1500)));
    }

    #[test]
    fn a_zero_limit_admits_nothing() {
        let mut rate = RateWindow::new(0, Duration::from_secs(1));
        assert!(!rate.admit(Instant::now()));
    }

    proptest! {
        /// Whatever the arrival pattern, no window ever holds more than
        /// `limit` admitted hits, and a hit is refused only when the window
        /// before it is full.
        #[test]
        fn never_more_than_the_limit_in_any_window(
            limit in 1usize..6,
            gaps in proptest::collection::vec(0u64..400, 1..200),
        ) {
            let window = Duration::from_millis(1000);
            let t0 = Instant::now();
            let mut rate = RateWindow::new(limit, window);
            let mut now = t0;
            let mut admitted: Vec<Instant> = Vec::new();
            for gap in gaps {
                now += Duration::from_millis(gap);
                let in_window = admitted.iter().filter(|t| now.duration_since(**t) < window).count();
                let ok = rate.admit(now);
                prop_assert_eq!(ok, in_window < limit);
                if ok {
                    admitted.push(now);
                }
            }
        }
    }
}
