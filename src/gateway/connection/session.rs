//! The connection's session: `hello` and the restore of its subscriptions
//! when it opens, and the writing of its cursors while it lives.
//!
//! Cursors are written at most every `CURSOR_FLUSH_INTERVAL` when they
//! moved, at least every [`SESSION_REFRESH`] so that a quiet connection's
//! session does not expire, and once more when the connection ends.

use std::time::{Duration, Instant};

use super::{Connection, End};
use crate::access::{self, EndReason};
use crate::channel::{Channel, Id};
use crate::gateway::protocol::{self, Close, ErrorCode, FrameError, Since};

/// A connected session is written at least this often, so it outlives its
/// connection by the session TTL however quiet the connection is.
pub const SESSION_REFRESH: Duration = Duration::from_secs(600);

/// Which session the connection keeps, and whether it must be written.
pub(super) struct Keeper {
    id: Id,
    /// Cursors or subscriptions changed since the last write.
    dirty: bool,
    saved_at: Instant,
    /// The stream epoch the cursors belong to: the stream's when `hello`
    /// was sent, the new one once the subscriptions restarted on a
    /// recreated stream.
    pub(super) epoch: Option<String>,
}

impl Keeper {
    pub(super) fn new() -> Keeper {
        Keeper {
            id: Id::new_v4(),
            dirty: false,
            saved_at: Instant::now(),
            epoch: None,
        }
    }

    /// A cursor moved, or a subscription came or went.
    pub(super) fn touch(&mut self) {
        self.dirty = true;
    }
}

impl Connection {
    /// Sends `hello`, then restores the session's subscriptions.
    pub(super) async fn open_session(&mut self, requested: Option<Id>) -> Result<(), End> {
        let opened = self
            .node
            .sessions()
            .open(requested, self.claims.sub)
            .map_err(|e| {
                tracing::error!(error = %e, "session store failed");
                End::Close(Close::SessionStoreUnavailable)
            })?;
        self.session.id = opened.id;
        let epoch = self.node.log.epoch().to_string();
        self.session.epoch = Some(epoch.clone());
        let channels: Vec<Channel> = opened.subscriptions.keys().copied().collect();
        let limits = &self.node.limits;
        self.outbox.push_text(protocol::hello(
            opened.id,
            self.claims.sub,
            limits.heartbeat.as_millis() as u64,
            limits.reconnect_base.as_millis() as u64,
            opened.resumed,
            &channels,
            &epoch,
        ));
        // Cursors of a session written before epochs existed belong to the
        // current stream; others say which stream they count.
        let cursors_epoch = opened.epoch.unwrap_or(epoch);
        for (channel, cursor) in opened.subscriptions {
            // A ban or deletion since the cursor is in the log: the replay
            // reaches it and cuts there, as live delivery would. Should
            // retention have dropped it, the cut happens when the replay ends.
            let pending_cut = match self.authorize(channel) {
                Ok(()) => None,
                Err(access::Denied::Banned) => Some(EndReason::Banned),
                Err(access::Denied::ChannelDeleted) => Some(EndReason::ChannelDeleted),
                Err(denied) => {
                    self.session.touch();
                    self.outbox.push_text(protocol::error(&FrameError::new(
                        ErrorCode::Forbidden,
                        format!("{channel} is not restored: {denied}"),
                        None,
                    )));
                    continue;
                }
            };
            self.open_subscription(
                channel,
                Some(Since::Seq(cursor)),
                Some(cursors_epoch.as_str()),
                None,
            )
            .await?;
            if let (Some(reason), Some(sub)) = (pending_cut, self.subs.get_mut(&channel)) {
                let mut out = std::mem::take(&mut self.scratch);
                sub.cut_when_replayed(reason, &mut out);
                self.apply(channel, &mut out);
                self.scratch = out;
            }
        }
        self.save_session();
        Ok(())
    }

    /// Writes the session's cursors if they moved, and at least every
    /// [`SESSION_REFRESH`] so a quiet connection's session does not expire.
    pub(super) fn save_session(&mut self) {
        let refresh = SESSION_REFRESH.min(self.node.session_ttl / 2);
        if !self.session.dirty && self.session.saved_at.elapsed() < refresh {
            return;
        }
        let cursors = self
            .subs
            .iter()
            .map(|(channel, sub)| (*channel, sub.session_cursor()))
            .collect();
        match self.node.sessions().save(
            self.session.id,
            self.claims.sub,
            &cursors,
            self.session.epoch.as_deref(),
        ) {
            Ok(()) => {
                self.session.dirty = false;
                self.session.saved_at = Instant::now();
            }
            Err(e) => tracing::warn!(session = %self.session.id, error = %e, "session not saved"),
        }
    }
}
