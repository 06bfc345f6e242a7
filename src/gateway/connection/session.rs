//! The connection's session: which session it keeps and when it must be
//! written ([`Keeper`]), and the confirmation of what the client received
//! ([`Receipts`]). The state ([`super::state`]) restores and saves it.
//!
//! A frame counts as received once the pong to a ping sent after it came
//! back ([`Receipts`]): a frame merely written can die in a TCP buffer. A
//! probe goes out with the first unconfirmed write, and then at most every
//! [`PROBE_DELAY`] while frames keep flowing, so a restore replays at most
//! about that much again (plus a round trip).
//!
//! Cursors are written at most every `Sessions::flush_interval` (sled:
//! 0.5 s; the bucket: `session_flush_interval`, handed to the node's
//! writer, never awaited) when they moved, at least every [`SESSION_REFRESH`] so that a quiet connection's
//! session does not expire, and once more when the connection ends.

use std::time::{Duration, Instant};

use crate::channel::{Channel, Id};

/// A connected session is written at least this often, so it outlives its
/// connection by the session TTL however quiet the connection is.
pub const SESSION_REFRESH: Duration = Duration::from_secs(600);

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

/// Which session the connection keeps, and whether it must be written.
pub(super) struct Keeper {
    pub(super) id: Id,
    /// Cursors or subscriptions changed since the last write.
    pub(super) dirty: bool,
    pub(super) saved_at: Instant,
    /// The stream epoch the cursors belong to: the stream's when `hello`
    /// was sent, the new one once the subscriptions restarted on a
    /// recreated stream.
    pub(super) epoch: Option<crate::log::Epoch>,
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
