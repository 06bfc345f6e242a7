//! The driver's side of the in-band token refresh, for one connection:
//! the one timer [`token::Refresh`](super::token::Refresh) asks for, the
//! token being fetched from the source meanwhile, the `refresh` frame to
//! send, the warnings, and the offset of the gateway's clock (tokens
//! expire by the gateway's). The rules are in `token.rs`; this only keeps
//! time.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::token::{self, Due, Refresh, SourceError, TokenSource, REFRESH_REQUEST_ID};

pub(super) type Fetching<'a> =
    Pin<Box<dyn Future<Output = Result<String, SourceError>> + Send + 'a>>;

/// One connection's in-band refresh in the driver: the clock-free schedule
/// ([`Refresh`]), its one timer, the token being fetched, and the offset of
/// the gateway's clock (tokens expire by the gateway's).
pub(super) struct Refreshing<'a> {
    source: &'a TokenSource,
    schedule: Option<Refresh>,
    pub(super) timer: Option<tokio::time::Instant>,
    pub(super) fetching: Option<Fetching<'a>>,
    offset_ms: i64,
}

impl<'a> Refreshing<'a> {
    pub(super) fn new(source: &'a TokenSource) -> Refreshing<'a> {
        Refreshing {
            source,
            schedule: None,
            timer: None,
            fetching: None,
            offset_ms: 0,
        }
    }

    /// The gateway's time, milliseconds since the epoch.
    fn now_ms(&self) -> i64 {
        let local = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        local.saturating_add(self.offset_ms)
    }

    fn set_timer(&mut self, due: Option<Duration>) {
        self.timer = due.map(|d| tokio::time::Instant::now() + d);
    }

    /// `hello`: the clock offset, and the first refresh of `token` (a
    /// command or a file only).
    pub(super) fn connected(&mut self, token: &str, server_time_ms: Option<i64>) {
        if let Some(server) = server_time_ms {
            self.offset_ms = 0;
            self.offset_ms = server.saturating_sub(self.now_ms());
        }
        if !self.source.refreshes() {
            return;
        }
        let exp = token::expiry(token);
        if exp.is_none() {
            tracing::warn!("the token has no readable `exp`: it is not refreshed in band");
        }
        let (schedule, due) = Refresh::new(exp, self.now_ms());
        self.schedule = Some(schedule);
        self.set_timer(due);
    }

    /// The timer fired: start fetching a token, or count the unanswered
    /// refresh as failed.
    pub(super) fn due(&mut self) {
        self.timer = None;
        let now = self.now_ms();
        let Some(schedule) = self.schedule.as_mut() else {
            return;
        };
        match schedule.due(now) {
            Due::Fetch => self.fetching = Some(Box::pin(self.source.fetch())),
            Due::Unanswered(next) => {
                self.set_timer(next);
                self.warn("the gateway did not answer the refresh in time", next);
            }
        }
    }

    /// A token came (the `refresh` frame to send) or the source failed.
    pub(super) fn fetched(&mut self, token: Result<String, SourceError>) -> Option<String> {
        self.fetching = None;
        let now = self.now_ms();
        let schedule = self.schedule.as_mut()?;
        match token {
            Ok(token) => {
                let due = schedule.sent(now);
                self.set_timer(due);
                let frame = serde_json::json!({
                    "type": "refresh", "token": token, "request_id": REFRESH_REQUEST_ID,
                });
                Some(frame.to_string())
            }
            Err(e) => {
                let next = schedule.failed(now);
                self.set_timer(next);
                self.warn(&format!("no token to refresh with: {e}"), next);
                None
            }
        }
    }

    pub(super) fn refreshed(&mut self, exp: i64) {
        self.fetching = None;
        let now = self.now_ms();
        if let Some(schedule) = self.schedule.as_mut() {
            let due = schedule.refreshed(exp, now);
            self.set_timer(due);
            tracing::info!(exp, "token refreshed");
        }
    }

    pub(super) fn refused(&mut self, why: &str) {
        let now = self.now_ms();
        if let Some(schedule) = self.schedule.as_mut() {
            let next = schedule.failed(now);
            self.set_timer(next);
            self.warn(&format!("the gateway refused the new token ({why})"), next);
        }
    }

    /// A failed attempt, and what comes next.
    fn warn(&self, what: &str, next: Option<Duration>) {
        let exp = self.schedule.as_ref().and_then(Refresh::exp);
        match next {
            Some(delay) => tracing::warn!(
                "token refresh failed: {what}; trying again in {} ms",
                delay.as_millis()
            ),
            None => tracing::warn!(
                exp,
                "token refresh failed: {what}; giving up on this token: the gateway closes \
                 with 4001 when it expires, and tail reconnects with a fresh one"
            ),
        }
    }
}

/// Resolves at `at`, or never.
pub(super) async fn until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Resolves with the token being fetched, or never.
pub(super) async fn token_from(fetching: &mut Option<Fetching<'_>>) -> Result<String, SourceError> {
    match fetching.as_mut() {
        Some(fetch) => fetch.await,
        None => std::future::pending().await,
    }
}
