//! The connection's session: which session it keeps and what of it must
//! be written ([`Keeper`]), and the confirmation of what the client
//! received ([`Receipts`]). The state (`super::state`) restores it and
//! hands its changes to the store.
//!
//! A frame counts as received once the pong to a ping sent after it came
//! back ([`Receipts`]): a frame merely written can die in a TCP buffer. A
//! probe goes out with the first unconfirmed write, and then at most every
//! [`PROBE_DELAY`] while frames keep flowing, so a restore replays at most
//! about that much again (plus a round trip).
//!
//! The session is written as changes (`crate::session::record::Change`): a subscription's record
//! when it is added (at once: a client that drops and comes straight back
//! reads it), removed when it ends (at once too), and rewritten when its
//! cursor moved, at most every `Sessions::flush_interval` (the setting
//! `session_flush_interval`; the bucket's changes are handed to the node's
//! writer, never awaited), and once more when the connection ends. Nothing is written
//! while the connection has no subscription; its header goes with its
//! first one, and the whole session is removed when its last one ends.
//! The header and every subscription record are written again at least
//! every [`SESSION_REFRESH`], so that a quiet connection's session does not
//! expire.

use std::time::{Duration, Instant};

use crate::channel::{Channel, Id};

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
    pub(super) id: Id,
    /// The store holds the session's header: resumed, or written since.
    pub(super) stored: bool,
    /// A cursor moved, or a subscription came or went, since the last save.
    pub(super) dirty: bool,
    /// Every subscription record is written at the next save: a session of
    /// the previous format was restored, or the cursors count in a new
    /// stream epoch.
    pub(super) whole: bool,
    /// When the header and every subscription record are next written.
    pub(super) refresh_at: Instant,
    /// Subscriptions ended since the last save: their records go.
    pub(super) ended: Vec<Channel>,
    /// More than [`ENDED_MOST`] ended: the next save removes the session
    /// and writes it again whole.
    pub(super) rewrite: bool,
    /// The connection is ending: its subscriptions leave it, not the
    /// session.
    pub(super) closed: bool,
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
