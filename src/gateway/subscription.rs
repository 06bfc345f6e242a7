//! One subscription's delivery rules, as a sans-IO state machine: what the
//! client gets, in which order, and when the log must be read.
//!
//! Inputs: live deliveries from the hub, items read back from the log, the
//! answers to the log requests it made, acks, receipt confirmations (a pong
//! to a ping sent after the frames) and the hub's "you lagged" flag. Outputs ([`Action`]): frames to write, log
//! requests (start or stop a read, measure the log's end, probe for the
//! channel's next event) and the end of the subscription. No tokio, no
//! sockets, no NATS: the connection task drives it and answers requests.
//!
//! The rules:
//! - **Live**: an event is written when its `seq` is above the cursor, and
//!   the cursor moves to it; anything at or below is a duplicate and is
//!   dropped. Ephemeral events (no `seq`) are written as they come.
//! - **Replaying**: events are read from the log from the cursor on, while
//!   live deliveries wait in a buffer of at most `replay_buffer` events. The
//!   replay is over once it has read its *target* (the log's last `seq`,
//!   measured after the subscription joined the hub), or once the log holds
//!   no event of the channel between the read position and the target. Then
//!   `replayed` (if the client asked for a replay) and the buffer follow,
//!   still de-duplicated by `seq`: no gap, no duplicate.
//! - **Overflow and lag**: a full buffer is cleared and the target forgotten
//!   (measured again later, so it covers the dropped events); a live
//!   subscription whose events the hub could not queue starts an unannounced
//!   replay from its cursor. The log holds every stored event, so nothing is
//!   lost and memory stays bounded.
//! - **Presence** (when asked for): the channel's snapshot once live (after
//!   `subscribed`, or after `replayed` and what the replay held back), then
//!   the presence deliveries of later batches ([`Delivery::presence`]);
//!   earlier ones are in the snapshot and dropped.
//! - **Cuts**: live, an event that bans, kicks or removes the subscriber (or
//!   deletes the channel) is written, then `unsubscribed`, then nothing. A
//!   restored subscription the projection already denies replays up to the
//!   cutting event and ends there, or at the end of its replay if retention
//!   dropped that event.
//! - **Standing over time**: when the subscriber's standing in the channel
//!   changed within the replayed range ([`Standing`]), the replay follows it
//!   event by event: events from a time the user could not see the channel
//!   are withheld (the cursor still passes them), events about the user's
//!   own standing are written, and a cut ends the replay only if it is the
//!   one that ends the user's current standing (`final_cut`).
//!
//! Contract with the driver: [`Action::MeasureTarget`] is answered (by
//! [`Subscription::on_target`]) before any other input is fed. An
//! [`Action::Probe`] may be answered late (it is a request to the log):
//! its answer counts only for the read position and target it was asked
//! under.

use std::collections::VecDeque;
use std::sync::Arc;

use super::hub::Delivery;
use super::protocol;
use crate::access::{self, EndReason, Standing};
use crate::channel::{Channel, Id};
use crate::envelope::{StoredEvent, Text};

/// Live events a replaying subscription holds while its replay runs; past
/// it they are dropped and read from the log instead.
pub const REPLAY_BUFFER: usize = 1024;

/// What the machine needs to know about its owner; the same for every
/// subscription of a connection.
#[derive(Clone, Copy, Debug)]
pub struct Rules {
    /// The subscriber: the user whose bans, kicks and leaves cut.
    pub user: Id,
    /// The bound of a replay's buffer of live events.
    pub replay_buffer: usize,
}

/// A frame for the client.
#[derive(Clone, Debug)]
pub enum Frame {
    /// A stored event from the hub (the cursor moved to its `seq`).
    Live(Arc<Delivery>),
    /// A stored event read back from the log (the cursor moved to its `seq`).
    Replayed(Text),
    /// A frame without a `seq`: `replayed`, `unsubscribed`, `user_typing`,
    /// presence.
    Plain(Text),
}

/// What the machine asks of its driver.
#[derive(Clone, Debug)]
pub enum Action {
    Write(Frame),
    /// Read the channel from the log from `after + 1` on, replacing any read
    /// in progress; feed the items to [`Subscription::on_read`], and call
    /// [`Subscription::on_read_idle`] if the log has nothing to read yet.
    Read {
        after: u64,
    },
    /// The replay is over: stop the read.
    StopRead,
    /// Measure the log's last `seq`; answer with [`Subscription::on_target`].
    MeasureTarget,
    /// Find the channel's first event with `seq >= from`; answer with
    /// [`Subscription::on_probe`], giving back `target`. The answer may
    /// come late, after other inputs: it counts only while the replay's
    /// target is still `target` (an answer holds for the target it was
    /// asked under: every event up to it was in the log when it was asked).
    Probe {
        from: u64,
        target: u64,
    },
    /// The subscription is over (its `unsubscribed` was written): forget it.
    End(EndReason),
    /// Write the channel's presence snapshot now, and tell
    /// [`Subscription::on_presence_sent`] its generation.
    Presence,
}

/// A subscription's presence: whether it asked for it, and the snapshot
/// its client has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Feed {
    Off,
    /// Asked for; the snapshot is due once the subscription is live (after
    /// `subscribed`, or after `replayed`). Presence deliveries meanwhile
    /// are dropped: the snapshot covers them.
    Waiting,
    /// The snapshot of this generation was written: deliveries of a later
    /// generation follow it, earlier ones are covered by it.
    Sent(u64),
}

pub type Actions = VecDeque<Action>;

#[derive(Debug)]
enum Phase {
    Live,
    Replaying(Box<Replay>),
    Ended,
}

/// The subscriber's standing over a replay, when it changes within it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Following {
    /// The standing just before the replay's first event.
    pub standing: Standing,
    /// Whether the token grants the channel.
    pub granted: bool,
    /// The `seq` of the cut that ends the user's current standing, if the
    /// replayed range holds it; other cuts in the range were undone later.
    pub final_cut: Option<u64>,
}

#[derive(Debug)]
struct Replay {
    /// Complete once this `seq` is read (or the log has no event of the
    /// channel up to it). `None`: measure it again.
    target: Option<u64>,
    /// The last `seq` the read returned.
    read_pos: u64,
    /// Live events that arrived meanwhile, in `seq` order.
    buffer: VecDeque<Arc<Delivery>>,
    /// Events written by this replay, for `replayed`.
    count: u64,
    /// Whether the client asked for it (then it ends with `replayed`).
    announce: bool,
    /// `None`: the standing is the same over the whole replay.
    following: Option<Following>,
}

/// One subscription's state; see the module documentation for the rules.
#[derive(Debug)]
pub struct Subscription {
    channel: Channel,
    phase: Phase,
    /// The last `seq` handed out for writing.
    cursor: u64,
    /// `cursor` when the last receipt probe (a ping after the frames) was sent.
    probed: u64,
    /// The last `seq` the client's WebSocket stack is known to have: the
    /// pong to a probe sent after it came back. A frame merely written to
    /// the socket does not count: it can die in a TCP buffer.
    confirmed: u64,
    /// The last `seq` the client acknowledged.
    acked: Option<u64>,
    /// For a restored subscription the projection denies: its end once
    /// the replay is over, unless an event in the replay cuts it first.
    pending_cut: Option<EndReason>,
    presence: Feed,
}

impl Subscription {
    /// A live subscription: the hub delivers every event after `cursor`.
    pub fn live(channel: Channel, cursor: u64) -> Subscription {
        Subscription {
            channel,
            phase: Phase::Live,
            cursor,
            probed: cursor,
            confirmed: cursor,
            acked: None,
            pending_cut: None,
            presence: Feed::Off,
        }
    }

    /// A subscription that first replays every event after `after` up to
    /// `target`, announced with `replayed`, then goes live.
    pub fn replaying(channel: Channel, after: u64, target: u64, out: &mut Actions) -> Subscription {
        Subscription::replaying_following(channel, after, target, None, out)
    }

    /// [`Subscription::replaying`], following the subscriber's standing
    /// where it changes within the replayed range.
    pub fn replaying_following(
        channel: Channel,
        after: u64,
        target: u64,
        following: Option<Following>,
        out: &mut Actions,
    ) -> Subscription {
        let mut sub = Subscription::live(channel, after);
        sub.start_replay(Some(target), true, out);
        if let Phase::Replaying(replay) = &mut sub.phase {
            replay.following = following;
        }
        sub
    }

    pub fn channel(&self) -> Channel {
        self.channel
    }

    /// Whether the subscription asked for presence.
    pub fn wants_presence(&self) -> bool {
        self.presence != Feed::Off
    }

    /// Sends the channel's presence snapshot once live (now, if it is),
    /// then the presence deliveries after it. Called again (after
    /// presence deliveries were lost), it sends a new snapshot.
    pub fn want_presence(&mut self, out: &mut Actions) {
        self.presence = Feed::Waiting;
        if matches!(self.phase, Phase::Live) {
            out.push_back(Action::Presence);
        }
    }

    /// The snapshot asked for by [`Action::Presence`] was written, taken
    /// at `generation`.
    pub fn on_presence_sent(&mut self, generation: u64) {
        if self.presence == Feed::Waiting {
            self.presence = Feed::Sent(generation);
        }
    }

    pub fn is_replaying(&self) -> bool {
        matches!(self.phase, Phase::Replaying(_))
    }

    pub fn is_ended(&self) -> bool {
        matches!(self.phase, Phase::Ended)
    }

    /// What a session keeps: the last ack, else the last `seq` the client's
    /// stack confirmed. Never a frame that may not have arrived.
    pub fn session_cursor(&self) -> u64 {
        self.acked.unwrap_or(self.confirmed)
    }

    /// The last `seq` handed out for writing.
    pub fn cursor(&self) -> u64 {
        self.cursor
    }

    /// Ends the subscription with `reason` once its replay is over (now, if
    /// none runs): a restored subscription that the projection denies.
    pub fn cut_when_replayed(&mut self, reason: EndReason, out: &mut Actions) {
        match self.phase {
            Phase::Live => self.end(reason, out),
            Phase::Replaying(_) => self.pending_cut = Some(reason),
            Phase::Ended => {}
        }
    }

    /// The client's ack of `seq`: an ack past the cursor counts as the
    /// cursor, one going backwards is ignored. Returns whether it moved.
    pub fn on_ack(&mut self, seq: u64) -> bool {
        let seq = seq.min(self.cursor);
        if self.acked.is_some_and(|acked| acked >= seq) {
            return false;
        }
        self.acked = Some(seq);
        true
    }

    /// A receipt probe (a ping) was queued after every frame handed out so far.
    pub fn on_probe_sent(&mut self) {
        self.probed = self.cursor;
    }

    /// The pong to the last probe came back: the client has every frame
    /// handed out before it.
    pub fn on_probe_answered(&mut self) {
        self.confirmed = self.confirmed.max(self.probed);
    }

    /// A live delivery from the hub.
    pub fn on_live(&mut self, rules: &Rules, delivery: Arc<Delivery>, out: &mut Actions) {
        if let Some(generation) = delivery.presence {
            let after_snapshot = matches!(self.presence, Feed::Sent(sent) if generation > sent);
            if after_snapshot && !self.is_ended() {
                out.push_back(Action::Write(Frame::Plain(delivery.frame.clone())));
            }
            return;
        }
        let Some(seq) = delivery.seq else {
            if !self.is_ended() {
                out.push_back(Action::Write(Frame::Plain(delivery.frame.clone())));
            }
            return;
        };
        match &mut self.phase {
            Phase::Ended => {}
            Phase::Replaying(replay) => {
                if replay.buffer.len() >= rules.replay_buffer {
                    // Read these from the log instead.
                    replay.buffer.clear();
                    replay.target = None;
                }
                replay.buffer.push_back(delivery);
            }
            Phase::Live if seq <= self.cursor => {}
            Phase::Live => {
                self.cursor = seq;
                let cut = delivery.cut.filter(|c| c.applies_to(rules.user));
                out.push_back(Action::Write(Frame::Live(delivery)));
                if let Some(cut) = cut {
                    self.end(cut.reason, out);
                }
            }
        }
    }

    /// The hub could not queue a stored event for this connection: read
    /// what was missed from the log.
    pub fn on_lagged(&mut self, out: &mut Actions) {
        match &mut self.phase {
            Phase::Live => self.start_replay(None, false, out),
            Phase::Replaying(replay) => replay.target = None,
            Phase::Ended => {}
        }
    }

    /// One item of the read: `seq`, how many of the channel's messages the
    /// log held after it, and the event (`None`: an invalid stored message,
    /// skipped but counted as read).
    pub fn on_read(
        &mut self,
        rules: &Rules,
        seq: u64,
        pending: u64,
        event: Option<&StoredEvent>,
        out: &mut Actions,
    ) {
        self.read_one(rules, seq, pending, event.map(|e| (e, None)), out)
    }

    /// [`Subscription::on_read`] of an event whose envelope is already
    /// encoded (the router's, kept in the node's window): written as is.
    pub fn on_read_encoded(
        &mut self,
        rules: &Rules,
        pending: u64,
        event: &StoredEvent,
        frame: &Text,
        out: &mut Actions,
    ) {
        self.read_one(rules, event.seq, pending, Some((event, Some(frame))), out)
    }

    fn read_one(
        &mut self,
        rules: &Rules,
        seq: u64,
        pending: u64,
        event: Option<(&StoredEvent, Option<&Text>)>,
        out: &mut Actions,
    ) {
        let Phase::Replaying(replay) = &mut self.phase else {
            out.push_back(Action::StopRead);
            return;
        };
        replay.read_pos = replay.read_pos.max(seq);
        let done = replay.target.is_some_and(|target| seq >= target);
        if let Some((event, frame)) = event.filter(|(e, _)| e.seq > self.cursor) {
            self.cursor = event.seq;
            let user = rules.user;
            let (shown, ends) = match &mut replay.following {
                None => (true, true),
                Some(f) => {
                    let before = f.standing;
                    f.standing = before.after(user, &event.data);
                    let shown = before.sees(f.granted) || access::concerns(user, &event.data);
                    (shown, f.final_cut == Some(event.seq))
                }
            };
            if shown {
                replay.count += 1;
                let frame = frame.cloned().unwrap_or_else(|| event.encode());
                out.push_back(Action::Write(Frame::Replayed(frame)));
            }
            let cut = access::cut(self.channel, &event.data).filter(|c| c.applies_to(user));
            if let Some(cut) = cut {
                // A deletion is for good; another cut only if it ends the
                // user's current standing.
                if ends || cut.user.is_none() {
                    self.end(cut.reason, out);
                    return;
                }
            }
        }
        if done {
            self.finish_replay(rules, out);
        } else if pending == 0 {
            self.on_read_idle(rules, out);
        }
    }

    /// The read has nothing more right now: the replay is complete if the
    /// log holds no event of the channel between the read position and the
    /// target, which is measured first if unknown.
    pub fn on_read_idle(&mut self, rules: &Rules, out: &mut Actions) {
        let Phase::Replaying(replay) = &self.phase else {
            return;
        };
        match replay.target {
            None => out.push_back(Action::MeasureTarget),
            Some(target) if replay.read_pos >= target => self.finish_replay(rules, out),
            Some(target) => out.push_back(Action::Probe {
                from: replay.read_pos.saturating_add(1),
                target,
            }),
        }
    }

    /// The answer to [`Action::MeasureTarget`]: the log's last `seq`.
    pub fn on_target(&mut self, rules: &Rules, last_seq: u64, out: &mut Actions) {
        let Phase::Replaying(replay) = &mut self.phase else {
            return;
        };
        replay.target = Some(last_seq);
        self.on_read_idle(rules, out);
    }

    /// The answer to [`Action::Probe`]: the channel's first `seq` at or
    /// after `from`, if any, asked under `target`. Past the target (or
    /// none), the replay is over; otherwise the read will deliver it.
    pub fn on_probe(
        &mut self,
        rules: &Rules,
        from: u64,
        target: u64,
        next: Option<u64>,
        out: &mut Actions,
    ) {
        let Phase::Replaying(replay) = &self.phase else {
            return;
        };
        if replay.read_pos.saturating_add(1) != from {
            return; // the read moved on meanwhile; it asks again when idle
        }
        // The target was forgotten or measured again since (a lag): the
        // answer may predate events up to the new one. The read is still
        // idle where it asked, so nothing else will ask again: ask anew.
        if replay.target != Some(target) {
            self.on_read_idle(rules, out);
            return;
        }
        if next.is_none_or(|next| next > target) {
            self.finish_replay(rules, out);
        }
    }

    fn start_replay(&mut self, target: Option<u64>, announce: bool, out: &mut Actions) {
        self.phase = Phase::Replaying(Box::new(Replay {
            target,
            read_pos: self.cursor,
            buffer: VecDeque::new(),
            count: 0,
            announce,
            following: None,
        }));
        out.push_back(Action::Read { after: self.cursor });
    }

    /// `replayed` if asked for, then the buffered live events.
    fn finish_replay(&mut self, rules: &Rules, out: &mut Actions) {
        let Phase::Replaying(replay) = std::mem::replace(&mut self.phase, Phase::Live) else {
            return;
        };
        out.push_back(Action::StopRead);
        if replay.announce {
            let replayed = protocol::replayed(self.channel, replay.count, self.cursor);
            out.push_back(Action::Write(Frame::Plain(replayed.into())));
        }
        for delivery in replay.buffer {
            self.on_live(rules, delivery, out);
        }
        if let Some(reason) = self.pending_cut.take() {
            self.end(reason, out);
        }
        if self.presence == Feed::Waiting && !self.is_ended() {
            out.push_back(Action::Presence);
        }
    }

    fn end(&mut self, reason: EndReason, out: &mut Actions) {
        if self.is_ended() {
            return;
        }
        if self.is_replaying() {
            out.push_back(Action::StopRead);
        }
        self.phase = Phase::Ended;
        let unsubscribed = protocol::unsubscribed(None, self.channel, reason);
        out.push_back(Action::Write(Frame::Plain(unsubscribed.into())));
        out.push_back(Action::End(reason));
    }
}

#[cfg(test)]
mod tests;
