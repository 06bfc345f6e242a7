//! `refresh`: a connection takes a new token without reconnecting. The
//! token is verified off the state (the driver runs [`Effect::Verify`]: a
//! JWKS refetch may be awaited); its answer is applied here. The user stays
//! the same; the expiry, the grants and the name become the new token's,
//! and a subscription the new grants no longer allow ends with `revoked`.
//! A refused token changes nothing. Answers are applied in the order the
//! frames came: one overtaken by a later frame's answer is refused.

use std::time::{Duration, Instant};

use super::{Effect, End, Env, ErrorCode, FrameError, State};
use crate::access::EndReason;
use crate::channel::Channel;
use crate::gateway::protocol;
use crate::gateway::rate::RateWindow;
use crate::token::{Claims, TokenError};

/// `refresh` frames one connection may send in any minute; one more is
/// answered `rate_limited` (and counts toward the bad-frame limit) without
/// its token being verified. A client refreshes once per token lifetime.
pub const REFRESHES_PER_MINUTE: usize = 10;

/// The refreshes of one connection.
#[derive(Debug, Default)]
pub(super) struct Refreshes {
    /// The last `refresh` frame's ticket.
    issued: u64,
    /// The ticket of the token in use (0: the upgrade's).
    applied: u64,
    /// The rate limit, made with the first `refresh` (most connections
    /// never send one).
    rate: Option<Box<RateWindow>>,
}

impl Refreshes {
    /// Lets the rate limit go once no refresh is left in its window.
    pub(super) fn release_idle(&mut self, now: Instant) {
        RateWindow::let_go_if_idle(&mut self.rate, now);
    }

    #[cfg(test)]
    pub(super) fn has_rate(&self) -> bool {
        self.rate.is_some()
    }
}

impl State {
    /// A `refresh` frame: its token goes to be verified, within the rate
    /// limit.
    pub(super) fn refresh(&mut self, token: String, request_id: Option<String>) -> Result<(), End> {
        let rate = self.refreshes.rate.get_or_insert_with(|| {
            Box::new(RateWindow::new(
                REFRESHES_PER_MINUTE,
                Duration::from_secs(60),
            ))
        });
        if !rate.admit(Instant::now()) {
            let message = format!(
                "more than {REFRESHES_PER_MINUTE} refreshes in a minute: this one is not verified"
            );
            return self.reject(FrameError::new(ErrorCode::RateLimited, message, request_id));
        }
        self.refreshes.issued += 1;
        self.effects.push_back(Effect::Verify {
            token,
            ticket: self.refreshes.issued,
            request_id,
        });
        Ok(())
    }

    /// A `refresh` frame's token, verified or refused.
    pub(super) fn on_verified(
        &mut self,
        env: &mut dyn Env,
        ticket: u64,
        request_id: Option<String>,
        result: Result<Claims, TokenError>,
    ) -> Result<(), End> {
        let claims = match result {
            Ok(claims) => claims,
            Err(e) => {
                let code = match e {
                    TokenError::Malformed(_) => ErrorCode::BadRequest,
                    _ => ErrorCode::Forbidden,
                };
                let message = format!("token refused, the connection keeps its token: {e}");
                return self.reject(FrameError::new(code, message, request_id));
            }
        };
        if claims.sub != self.claims.sub {
            let message = format!(
                "the token is for another user (`sub` {}): a connection keeps its user; \
                 open another connection with it",
                claims.sub
            );
            return self.reject(FrameError::new(ErrorCode::Forbidden, message, request_id));
        }
        if ticket < self.refreshes.applied {
            let message = "a later `refresh` was applied first; this one changes nothing";
            return self.reject(FrameError::new(ErrorCode::Forbidden, message, request_id));
        }
        self.refreshes.applied = ticket;
        self.claims = claims;
        self.deadlines.expire_with(&self.claims);
        // The new grants, against every subscription held or being planned.
        let held: Vec<Channel> = self
            .subs
            .keys()
            .chain(self.planning.iter().map(|p| p.channel))
            .collect();
        let mut revoked = false;
        for channel in held {
            if self.authorize(env, channel).is_err() {
                self.forget(env, channel);
                self.outbox
                    .push_text(protocol::unsubscribed(None, channel, EndReason::Revoked));
                revoked = true;
            }
        }
        if revoked {
            self.save_session(env);
        }
        self.outbox
            .push_text(protocol::refreshed(request_id.as_deref(), self.claims.exp));
        Ok(())
    }
}
