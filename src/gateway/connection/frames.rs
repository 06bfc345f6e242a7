//! Client frames: `subscribe`, `unsubscribe`, `ack`, `typing`, `ping`, and
//! the answer to a bad one, with the bad-frame limit (close 4029) and the
//! typing limit (the excess dropped).

use std::time::{Duration, Instant};

use super::{Connection, End};
use crate::access::EndReason;
use crate::channel::{Channel, Id};
use crate::event::UserTyping;
use crate::gateway::protocol::{self, ClientFrame, Close, ErrorCode, FrameError, Since};
use crate::gateway::rate::RateWindow;

/// The window the bad-frame limit counts in.
pub const ABUSE_WINDOW: Duration = Duration::from_secs(60);

/// The window the typing limit counts in.
pub const TYPING_WINDOW: Duration = Duration::from_secs(1);

impl Connection {
    pub(super) async fn on_frame(&mut self, frame: ClientFrame) -> Result<(), End> {
        match frame {
            ClientFrame::Subscribe {
                channel,
                since,
                epoch,
                request_id,
            } => self.subscribe(channel, since, epoch, request_id).await,
            ClientFrame::Unsubscribe {
                channel,
                request_id,
            } => {
                if !self.subs.contains_key(&channel) {
                    return self.reject(not_subscribed(channel, request_id));
                }
                self.forget(channel);
                self.save_session();
                self.outbox.push_text(protocol::unsubscribed(
                    request_id.as_deref(),
                    channel,
                    EndReason::Requested,
                ));
                Ok(())
            }
            ClientFrame::Ack {
                channel,
                seq,
                request_id,
            } => {
                let Some(sub) = self.subs.get_mut(&channel) else {
                    return self.reject(not_subscribed(channel, request_id));
                };
                if sub.on_ack(seq) {
                    self.session.touch();
                }
                Ok(())
            }
            ClientFrame::Typing {
                channel,
                is_typing,
                request_id,
            } => self.typing(channel, is_typing, request_id).await,
            ClientFrame::Ping { request_id } => {
                self.outbox.push_text(protocol::pong(request_id.as_deref()));
                Ok(())
            }
        }
    }

    async fn subscribe(
        &mut self,
        channel: Channel,
        since: Option<Since>,
        epoch: Option<String>,
        request_id: Option<String>,
    ) -> Result<(), End> {
        if self.subs.contains_key(&channel) {
            return self.reject(FrameError::new(
                ErrorCode::BadRequest,
                format!("already subscribed to {channel}"),
                request_id,
            ));
        }
        let most = self.node.limits.max_subscriptions;
        if self.subs.len() >= most {
            return self.reject(FrameError::new(
                ErrorCode::BadRequest,
                format!("a connection holds at most {most} subscriptions"),
                request_id,
            ));
        }
        if let Err(denied) = self.authorize(channel) {
            return self.reject(FrameError::new(
                ErrorCode::Forbidden,
                format!("{channel}: {denied}"),
                request_id,
            ));
        }
        self.open_subscription(channel, since, epoch.as_deref(), request_id)
            .await?;
        // The session holds its subscriptions from now on, not from the
        // next cursor write: a client that drops and comes straight back
        // could otherwise read (and then write back) a record without it.
        self.save_session();
        Ok(())
    }

    /// Publishes the user's typing, within the per-channel limit; the
    /// excess is dropped.
    async fn typing(
        &mut self,
        channel: Id,
        is_typing: bool,
        request_id: Option<String>,
    ) -> Result<(), End> {
        let chat = Channel::Chat(channel);
        if !self.subs.contains_key(&chat) {
            return self.reject(not_subscribed(chat, request_id));
        }
        let limit = self.node.limits.typing_per_second as usize;
        let admitted = self
            .typing
            .entry(chat)
            .or_insert_with(|| RateWindow::new(limit, TYPING_WINDOW))
            .admit(Instant::now());
        if !admitted {
            self.node.metrics.typing_rate_limited.increment(1);
            return Ok(());
        }
        let typing = UserTyping {
            channel_id: channel,
            user_id: self.claims.sub,
            username: self.claims.username(),
            is_typing,
        };
        Box::pin(self.node.log.publish_typing(typing)).await;
        Ok(())
    }

    /// Answers a bad frame; too many in the abuse window close the connection.
    pub(super) fn reject(&mut self, error: FrameError) -> Result<(), End> {
        self.outbox.push_text(protocol::error(&error));
        if !error.code.counts_as_abuse() {
            return Ok(());
        }
        self.node.metrics.bad_frames.increment(1);
        if !self.bad_frames.admit(Instant::now()) {
            self.node.metrics.abuse_closes.increment(1);
            return Err(End::Close(Close::Abuse));
        }
        Ok(())
    }
}

fn not_subscribed(channel: Channel, request_id: Option<String>) -> FrameError {
    FrameError::new(
        ErrorCode::NotFound,
        format!("not subscribed to {channel}"),
        request_id,
    )
}
