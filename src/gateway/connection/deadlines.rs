//! A connection's timed work: the token's expiry, the heartbeat ping, the
//! cursor save and the receipt probe, served by one timer. A tokio `Sleep`
//! is over a hundred bytes, and every idle connection has all four.

use std::time::Duration;

use crate::token::Claims;

/// The connection's timed work, served by one timer (a tokio `Sleep` is
/// over a hundred bytes, and an idle connection has four deadlines).
pub(super) struct Deadlines {
    /// The token expires: the connection is closed with 4001.
    pub(super) expiry: tokio::time::Instant,
    /// The next heartbeat ping.
    pub(super) heartbeat: tokio::time::Instant,
    /// The next write of the session's cursors, if they moved.
    pub(super) cursors: tokio::time::Instant,
    /// The receipt probe, while one is due (see `session::Receipts`).
    pub(super) probe: Option<tokio::time::Instant>,
}

impl Deadlines {
    pub(super) fn new(
        claims: &Claims,
        heartbeat_every: Duration,
        cursors_every: Duration,
    ) -> Deadlines {
        let now = tokio::time::Instant::now();
        Deadlines {
            expiry: later(now, claims.time_left().min(FAR_FUTURE)),
            heartbeat: later(now, heartbeat_every),
            cursors: later(now, cursors_every),
            probe: None,
        }
    }

    /// The token was replaced: it expires at the new one's `exp`.
    pub(super) fn expire_with(&mut self, claims: &Claims) {
        let now = tokio::time::Instant::now();
        self.expiry = later(now, claims.time_left().min(FAR_FUTURE));
    }

    /// The earliest deadline.
    pub(super) fn next(&self) -> tokio::time::Instant {
        let next = self.expiry.min(self.heartbeat).min(self.cursors);
        self.probe.map_or(next, |probe| next.min(probe))
    }
}

/// `after` from `now`, or [`FAR_FUTURE`] from it where the clock cannot
/// reach that far.
fn later(now: tokio::time::Instant, after: Duration) -> tokio::time::Instant {
    now.checked_add(after).unwrap_or(now + FAR_FUTURE)
}

/// Later than any deadline a connection waits for (a token's expiry is at
/// most this far off as far as the timer is concerned).
const FAR_FUTURE: Duration = Duration::from_secs(365 * 24 * 3600);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::Id;
    use crate::token::Grant;

    fn claims(exp: i64) -> Claims {
        Claims {
            sub: Id::new_v4(),
            exp,
            name: None,
            channels: Grant::All,
            roles: Vec::new(),
        }
    }

    #[tokio::test]
    async fn the_timer_waits_for_the_earliest_deadline() {
        let in_an_hour = chrono::Utc::now().timestamp() + 3600;
        let mut d = Deadlines::new(
            &claims(in_an_hour),
            Duration::from_secs(25),
            Duration::from_millis(500),
        );
        assert_eq!(d.next(), d.cursors);
        let soon = tokio::time::Instant::now() + Duration::from_millis(10);
        d.probe = Some(soon);
        assert_eq!(d.next(), soon);
        d.probe = None;
        d.cursors += Duration::from_secs(60);
        assert_eq!(d.next(), d.heartbeat);
    }

    #[tokio::test]
    async fn a_token_that_never_expires_does_not_overflow_the_timer() {
        let d = Deadlines::new(
            &claims(i64::MAX),
            Duration::from_secs(25),
            Duration::from_secs(1),
        );
        assert!(d.expiry > d.heartbeat);
        assert_eq!(d.next(), d.cursors);
    }
}
