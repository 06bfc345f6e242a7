//! The connection's session: `hello` and the restore of its subscriptions
//! when it opens, the confirmation of what the client received, and the
//! writing of its cursors while it lives.
//!
//! A frame counts as received once the pong to a ping sent after it came
//! back ([`Receipts`]): a frame merely written can die in a TCP buffer. A
//! probe goes out with the first unconfirmed write, and then at most every
//! [`PROBE_DELAY`] while frames keep flowing, so a restore replays at most
//! about that much again (plus a round trip).
//!
//! The session is written as changes ([`Change`]): a subscription's record
//! when it is added (at once: a client that drops and comes straight back
//! reads it), removed when it ends (at once too), and rewritten when its
//! cursor moved, at most every `Sessions::flush_interval` (sled: 0.5 s; the
//! bucket: `session_flush_interval`, handed to the node's writer, never
//! awaited), and once more when the connection ends. Nothing is written
//! while the connection has no subscription; its header goes with its
//! first one, and the whole session is removed when its last one ends.
//! The header and every subscription record are written again at least
//! every [`SESSION_REFRESH`], so that a quiet connection's session does not
//! expire.

use std::time::{Duration, Instant};

use super::{Connection, End};
use crate::access::{self, EndReason};
use crate::channel::{Channel, Id};
use crate::gateway::protocol::{self, ErrorCode, FrameError, Since};
use crate::session::record::{Change, Cursor};
use crate::session::SessionError;

/// A connected session's header and every subscription record are written
/// at least this often (or every half TTL, if shorter), so it outlives its
/// connection by the session TTL however quiet the connection is. A
/// session with 1,024 subscriptions writes about 100 KiB each time.
pub const SESSION_REFRESH: Duration = Duration::from_secs(600);

/// Ended subscriptions a connection remembers for its next save, at most;
/// past it (a session writer refusing saves while subscriptions churn),
/// the next save removes the whole session and writes what is left again.
pub const ENDED_MOST: usize = 1024;

/// How long a connection the node closes waits for its last session record
/// to reach the store before it sends its close frame.
pub const CLOSE_SAVE_TIMEOUT: Duration = Duration::from_secs(1);

/// The least time between two receipt probes: about the most a restore
/// replays again, plus a round trip. Shorter costs a ping per active
/// connection more often.
pub const PROBE_DELAY: Duration = Duration::from_millis(500);

/// The subscriptions with frames written but not yet confirmed, and the
/// probe in flight. One probe at a time; its pong confirms the channels it
/// was sent for.
#[derive(Default)]
pub(super) struct Receipts {
    /// Channels with frames written since the probe in flight was sent.
    unconfirmed: Vec<Channel>,
    /// When the oldest of those was written.
    since: Option<tokio::time::Instant>,
    /// When the last probe was sent.
    last_probe: Option<tokio::time::Instant>,
    /// The probe in flight: its id and the channels it confirms.
    in_flight: Option<(u64, Vec<Channel>)>,
    next_id: u64,
}

impl Receipts {
    /// A flush wrote event frames of `channel`.
    pub(super) fn written(&mut self, channel: Channel) {
        if !self.unconfirmed.contains(&channel) {
            self.unconfirmed.push(channel);
        }
        self.since.get_or_insert_with(tokio::time::Instant::now);
    }

    /// When the next probe is due: none while one is in flight, else as
    /// soon as something is unconfirmed, but not within [`PROBE_DELAY`] of
    /// the last one.
    pub(super) fn due(&self) -> Option<tokio::time::Instant> {
        if self.in_flight.is_some() {
            return None;
        }
        let since = self.since?;
        Some(match self.last_probe {
            Some(last) => since.max(last + PROBE_DELAY),
            None => since,
        })
    }

    /// Starts a probe: its id, and the channels it will confirm.
    pub(super) fn probe(&mut self) -> (u64, &[Channel]) {
        self.next_id = self.next_id.wrapping_add(1);
        self.since = None;
        self.last_probe = Some(tokio::time::Instant::now());
        let channels = std::mem::take(&mut self.unconfirmed);
        let (id, channels) = self.in_flight.insert((self.next_id, channels));
        (*id, channels)
    }

    /// A pong came: the channels of the probe it answers, if it does.
    pub(super) fn answered(&mut self, payload: &[u8]) -> Option<Vec<Channel>> {
        let (id, _) = self.in_flight.as_ref()?;
        if payload != id.to_be_bytes() {
            return None; // a heartbeat's pong, or a stray one
        }
        self.in_flight.take().map(|(_, channels)| channels)
    }
}

/// Which session the connection keeps, and what of it must be written.
pub(super) struct Keeper {
    id: Id,
    /// The store holds the session's header: resumed, or written since.
    stored: bool,
    /// A cursor moved, or a subscription came or went, since the last save.
    dirty: bool,
    /// Every subscription record is written at the next save: a session of
    /// the previous format was restored, or the cursors count in a new
    /// stream epoch.
    whole: bool,
    /// When the header and every subscription record are next written.
    refresh_at: Instant,
    /// Subscriptions ended since the last save: their records go.
    ended: Vec<Channel>,
    /// More than [`ENDED_MOST`] ended: the next save removes the session
    /// and writes it again whole.
    rewrite: bool,
    /// The connection is ending: its subscriptions leave it, not the
    /// session.
    closed: bool,
    /// The stream epoch the cursors belong to: the stream's when `hello`
    /// was sent, the new one once the subscriptions restarted on a
    /// recreated stream.
    pub(super) epoch: Option<crate::log::Epoch>,
}

impl Keeper {
    pub(super) fn new() -> Keeper {
        Keeper {
            id: Id::new_v4(),
            stored: false,
            dirty: false,
            whole: false,
            refresh_at: Instant::now(),
            ended: Vec::new(),
            rewrite: false,
            closed: false,
            epoch: None,
        }
    }

    /// A cursor moved, or a subscription came.
    pub(super) fn touch(&mut self) {
        self.dirty = true;
    }

    /// A subscription ended: its record goes at the next save.
    pub(super) fn ended(&mut self, channel: Channel) {
        if self.closed {
            return;
        }
        self.dirty = true;
        if self.rewrite || self.ended.contains(&channel) {
            return;
        }
        if self.ended.len() >= ENDED_MOST {
            self.ended = Vec::new();
            self.rewrite = true;
            return;
        }
        self.ended.push(channel);
    }

    /// The connection is ending; nothing more is saved.
    pub(super) fn close(&mut self) {
        self.closed = true;
    }

    /// The cursors now count in `epoch` (a recreated stream): every record
    /// is written again.
    pub(super) fn new_epoch(&mut self, epoch: crate::log::Epoch) {
        self.epoch = Some(epoch);
        self.whole = true;
        self.dirty = true;
    }
}

impl Connection {
    /// Sends a receipt probe after what was written so far.
    pub(super) fn send_probe(&mut self) {
        let (id, channels) = self.receipts.probe();
        for channel in channels {
            if let Some(sub) = self.subs.get_mut(channel) {
                sub.on_probe_sent();
            }
        }
        self.outbox.probe(id);
    }

    /// A pong: if it answers the probe, what was written before it arrived.
    pub(super) fn on_pong(&mut self, payload: &[u8]) {
        let Some(channels) = self.receipts.answered(payload) else {
            return;
        };
        for channel in channels {
            if let Some(sub) = self.subs.get_mut(&channel) {
                sub.on_probe_answered();
                self.session.touch();
            }
        }
    }

    /// Sends `hello` and flushes it, then restores the session's
    /// subscriptions: `hello` is always the first frame, and no restore
    /// (each plans a replay) delays it. Opening the session reads the store
    /// (the bucket: one round trip) and writes nothing. A fresh session is
    /// written with its first subscription; a resumed one writes what its
    /// restore changed (a subscription not restored, a record of the
    /// previous format or of another stream), and its header one refresh
    /// after its last write.
    pub(super) async fn open_session(&mut self, requested: Option<Id>) -> Result<(), End> {
        let opened = self.node.sessions().open(requested, self.claims.sub).await;
        self.session.id = opened.id;
        self.session.stored = opened.resumed;
        self.session.whole = opened.legacy;
        let refresh = self.refresh_every();
        let age = opened.written_at.map_or(Duration::ZERO, |at| {
            let seconds = chrono::Utc::now().timestamp().saturating_sub(at);
            Duration::from_secs(seconds.max(0) as u64)
        });
        self.session.refresh_at = Instant::now() + refresh.saturating_sub(age);
        let epoch = self.node.log.epoch();
        self.session.epoch = Some(epoch);
        let epoch = epoch.to_string();
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
        self.flush().await?;
        for (channel, cursor) in opened.subscriptions {
            // Cursors of a session written before epochs existed belong to
            // the current stream; others say which stream they count.
            let cursors_epoch = cursor.epoch.clone().unwrap_or_else(|| epoch.clone());
            // A ban or deletion since the cursor is in the log: the replay
            // reaches it and cuts there, as live delivery would. Should
            // retention have dropped it, the cut happens when the replay ends.
            let pending_cut = match self.authorize(channel) {
                Ok(()) => None,
                Err(access::Denied::Banned) => Some(EndReason::Banned),
                Err(access::Denied::ChannelDeleted) => Some(EndReason::ChannelDeleted),
                Err(denied) => {
                    self.session.ended(channel);
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
                Some(Since::Seq(cursor.seq)),
                Some(cursors_epoch.as_str()),
                None,
            )
            .await?;
            // The record holds this cursor, in this stream: nothing to write
            // until it moves.
            if cursor.epoch.as_deref() == Some(epoch.as_str()) {
                self.subs.set_saved(&channel, Some(cursor.seq));
            }
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
        self.save_session_then(None);
    }

    /// The last save, as the connection ends. When the node closes it (its
    /// client reconnects at once, maybe to another node), the close waits,
    /// at most [`CLOSE_SAVE_TIMEOUT`], until the session is in the store.
    pub(super) async fn close_session(&mut self, closed_by_node: bool) {
        if !closed_by_node || self.node.sessions().writer().is_none() {
            self.save_session();
            return;
        }
        // Handed over even if unchanged: an earlier change may still wait in
        // the bucket writer, and this (empty) one is told when it lands.
        self.session.touch();
        let (written, done) = tokio::sync::oneshot::channel();
        if self.save_session_then(Some(written)) {
            let _ = tokio::time::timeout(CLOSE_SAVE_TIMEOUT, done).await;
        }
    }

    /// How often the header and every subscription record are written.
    fn refresh_every(&self) -> Duration {
        SESSION_REFRESH.min(self.node.sessions().ttl() / 2)
    }

    /// Hands the store what changed since the last save, if anything:
    /// whether a change was handed over.
    fn save_session_then(&mut self, written: Option<tokio::sync::oneshot::Sender<()>>) -> bool {
        let now = Instant::now();
        let due = now >= self.session.refresh_at;
        if self.session.closed || (!self.session.dirty && !due && !self.session.whole) {
            return false;
        }
        let user = self.claims.sub;
        let change = if self.subs.is_empty() {
            if !self.session.stored {
                // Nothing to restore, and nothing stored: nothing to write.
                self.session.ended.clear();
                self.session.rewrite = false;
                self.session.dirty = false;
                self.session.whole = false;
                self.session.refresh_at = now + self.refresh_every();
                return false;
            }
            Change::remove(user)
        } else {
            let rewrite = self.session.rewrite;
            let whole = rewrite || due || self.session.whole || !self.session.stored;
            let epoch = self.session.epoch.map(|e| e.to_string());
            let mut change = Change::new(user);
            change.remove_all = rewrite;
            for channel in &self.session.ended {
                change.subscriptions.insert(*channel, None);
            }
            for (channel, cursor, saved) in self.subs.cursors() {
                if whole || saved != Some(cursor) {
                    let cursor = Cursor {
                        seq: cursor,
                        epoch: epoch.clone(),
                    };
                    change.subscriptions.insert(channel, Some(cursor));
                }
            }
            if whole {
                change.header = Some(self.node.sessions().expires_at());
            }
            change
        };
        let header = change.header.is_some();
        let removed = change.remove_all;
        if change.records() == 0 && written.is_none() {
            self.session.dirty = false;
            return false;
        }
        match self.node.sessions().save(self.session.id, change, written) {
            Ok(()) => {
                self.subs.mark_saved();
                self.session.ended.clear();
                self.session.rewrite = false;
                self.session.dirty = false;
                self.session.whole = false;
                if header || removed {
                    self.session.stored = header;
                    self.session.refresh_at = now + self.refresh_every();
                }
                true
            }
            // Kept dirty: the next flush tries again.
            Err(SessionError::WriterFull) => {
                tracing::debug!(session = %self.session.id, "session writer full; saving later");
                false
            }
            Err(e) => {
                tracing::warn!(session = %self.session.id, error = %e, "session not saved");
                false
            }
        }
    }
}
