//! One connection as a value, as quinn-proto's `Connection` is: inputs in
//! (client frames, deliveries from the hub, a replay's read steps, the
//! answers to log requests, pongs, the clock), outputs out: frames queued
//! in its [`Outbox`] for the driver to write, [`Effect`]s for the driver
//! to run (log requests, reads, typing to publish), and [`End`] when the
//! connection must close. Nothing here awaits, and nothing touches a
//! socket or NATS; what it reads of its node comes from an [`Env`].
//!
//! A subscription with a replay whose plan needs the log waits in a
//! planning slot: it joined the hub (so no event after its position is
//! missed), its live deliveries wait in a bounded buffer, and the rest of
//! the connection goes on. The plan's answer (or its failure) comes back
//! through [`State::on_answer`]; an answer for a slot that is gone (the
//! client unsubscribed, the stream was recreated) is recognised by its
//! ticket and dropped.
//!
//! Client frames: `subscribe`, `unsubscribe`, `ack`, `typing`, `ping`,
//! `refresh` (its rules in `state::refresh`); the
//! bad-frame limit (close 4029) and the typing limit (the excess dropped).
//! Over 500 lines on purpose: these are the inputs of one state value,
//! read together; the pure parts it uses live beside it (`plan`, `session`,
//! `subs`, `deadlines`).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::deadlines::Deadlines;
use super::env::Env;
use super::plan::{plan_now, PlanRequest, Planned};
use super::reads::Step;
use super::session::{Keeper, Receipts, SESSION_REFRESH};
use super::subs::Subs;
use super::End;
use crate::access::{self, EndReason};
use crate::channel::{Channel, Id};
use crate::event::UserTyping;
use crate::gateway::hub::Delivery;
use crate::gateway::outbox::Outbox;
use crate::gateway::protocol::{self, ClientFrame, Close, ErrorCode, FrameError, Since};
use crate::gateway::rate::RateWindow;
use crate::gateway::subscription::{Action, Actions, Frame, Rules, Subscription, REPLAY_BUFFER};
use crate::gateway::Limits;
use crate::log::{Epoch, LogError};
use crate::metrics::Metrics;
use crate::presence::view::Left;
use crate::session::record::{Change, Cursor};
use crate::session::{Opened, SessionError};
use crate::token::{Claims, TokenError};

/// The window the bad-frame limit counts in.
pub const ABUSE_WINDOW: Duration = Duration::from_secs(60);

/// The window the typing limit counts in.
pub const TYPING_WINDOW: Duration = Duration::from_secs(1);

/// Work the state asks its driver to run beside the socket.
#[derive(Debug)]
pub(super) enum Effect {
    /// Plan a replay with the log's help; answer with [`Answer::Planned`].
    Plan {
        channel: Channel,
        ticket: u64,
        request: PlanRequest,
        /// The subscriber's grants, against which its standing is followed.
        claims: Claims,
    },
    /// Ask the log for the channel's first `seq >= from`; answer with
    /// [`Answer::Probed`].
    Probe {
        channel: Channel,
        ticket: u64,
        from: u64,
        target: u64,
    },
    /// Read the channel from `after + 1` (from the window, or the stream
    /// under a permit), replacing any read of it; feed each step to
    /// [`State::on_read_step`].
    Read { channel: Channel, after: u64 },
    /// Stop the channel's read, if any.
    StopRead { channel: Channel },
    /// Publish the user's typing on core NATS (nothing comes back).
    PublishTyping(UserTyping),
    /// Verify a `refresh` frame's token; answer with [`Answer::Verified`].
    Verify {
        token: String,
        ticket: u64,
        request_id: Option<String>,
    },
}

/// The answer to an [`Effect`].
#[derive(Debug)]
pub(super) enum Answer {
    Planned {
        channel: Channel,
        ticket: u64,
        result: Result<Planned, LogError>,
    },
    Probed {
        channel: Channel,
        ticket: u64,
        from: u64,
        target: u64,
        result: Result<Option<u64>, LogError>,
    },
    Verified {
        ticket: u64,
        request_id: Option<String>,
        result: Result<Claims, TokenError>,
    },
}

/// A subscription whose replay is being planned by the log.
#[derive(Debug)]
struct Planning {
    channel: Channel,
    ticket: u64,
    request_id: Option<String>,
    /// Live deliveries meanwhile, at most [`Rules::replay_buffer`].
    buffer: VecDeque<Arc<Delivery>>,
    /// Deliveries were dropped (the buffer was full, or the hub's queue):
    /// the replay measures its target again.
    lagged: bool,
    /// A restored subscription the projection denies: it ends when its
    /// replay is over.
    pending_cut: Option<EndReason>,
    /// A restored subscription's cursor: its record stays in the session
    /// meanwhile. `Some((seq, true))` when the record counts in the
    /// stream's epoch (nothing to write until the cursor moves).
    restored: Option<(u64, bool)>,
    /// It asked for presence.
    presence: bool,
}

/// How a subscription joins: what the client asked for, or what its
/// session kept.
#[derive(Debug, Default)]
struct Joining {
    since: Option<Since>,
    epoch: Option<Epoch>,
    request_id: Option<String>,
    presence: bool,
    /// A restored subscription the projection denies: it ends when its
    /// replay is over.
    pending_cut: Option<EndReason>,
    /// A restored subscription's cursor ([`Planning::restored`]).
    restored: Option<(u64, bool)>,
}

/// The per-connection bounds the state applies.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Bounds {
    pub(super) max_subscriptions: usize,
    pub(super) typing_per_second: usize,
    pub(super) heartbeat: Duration,
    pub(super) reconnect_base: Duration,
    pub(super) flush_interval: Duration,
}

impl Bounds {
    pub(crate) fn of(limits: &Limits, flush_interval: Duration) -> Bounds {
        Bounds {
            max_subscriptions: limits.max_subscriptions,
            typing_per_second: limits.typing_per_second as usize,
            heartbeat: limits.heartbeat,
            reconnect_base: limits.reconnect_base,
            flush_interval,
        }
    }
}

/// One connection's state; see the module documentation.
pub(super) struct State {
    id: u64,
    claims: Claims,
    rules: Rules,
    /// The node's, shared by its connections.
    bounds: Arc<Bounds>,
    subs: Subs,
    planning: Vec<Planning>,
    next_ticket: u64,
    outbox: Outbox,
    effects: VecDeque<Effect>,
    /// The typing limit, per channel that has typed.
    /// Made with the first `typing` frame (many connections never send
    /// one): an empty map is 48 bytes of every idle connection.
    #[allow(clippy::box_collection)] // boxed for its size while `None`
    typing: Option<Box<HashMap<Channel, RateWindow>>>,
    /// The bad-frame limit, made with the first bad frame (most
    /// connections never send one): its limit until then.
    bad_frames: BadFrames,
    session: Keeper,
    receipts: Receipts,
    deadlines: Deadlines,
    /// The machines' output, reused from one input to the next.
    scratch: Actions,
    /// The `refresh` frames' tokens being verified, and the last applied.
    refreshes: refresh::Refreshes,
    /// How a subscription that is forgotten now leaves: ended, unless the
    /// connection is ending ([`State::leave_all`]).
    leaving: Left,
}

/// The bad-frame limit; its window is made with the first bad frame (a
/// `RateWindow` is 56 bytes of every idle connection, this is 16).
struct BadFrames {
    limit: usize,
    window: Option<Box<RateWindow>>,
}

impl BadFrames {
    fn window(&mut self) -> &mut RateWindow {
        let limit = self.limit;
        self.window
            .get_or_insert_with(|| Box::new(RateWindow::new(limit, ABUSE_WINDOW)))
    }
}

impl State {
    pub(super) fn new(
        id: u64,
        claims: Claims,
        bounds: Arc<Bounds>,
        bad_frames_per_minute: usize,
    ) -> State {
        let deadlines = Deadlines::new(&claims, bounds.heartbeat, bounds.flush_interval);
        State {
            id,
            rules: Rules {
                user: claims.sub,
                replay_buffer: REPLAY_BUFFER,
            },
            claims,
            bounds,
            subs: Subs::default(),
            planning: Vec::new(),
            next_ticket: 0,
            outbox: Outbox::default(),
            effects: VecDeque::new(),
            typing: None,
            bad_frames: BadFrames {
                limit: bad_frames_per_minute,
                window: None,
            },
            session: Keeper::new(),
            receipts: Receipts::default(),
            deadlines,
            scratch: Actions::new(),
            refreshes: refresh::Refreshes::default(),
            leaving: Left::Ended,
        }
    }

    /// The frames waiting for the driver to write them.
    pub(super) fn outbox(&mut self) -> &mut Outbox {
        &mut self.outbox
    }

    /// The next effect for the driver to run. The queue's memory goes
    /// with its last effect: an `Effect` is about 200 bytes, and a queue
    /// that once held one would keep room for four for the connection's
    /// life.
    pub(super) fn poll_effect(&mut self) -> Option<Effect> {
        let effect = self.effects.pop_front();
        if effect.is_none() && self.effects.capacity() > 0 {
            self.effects = VecDeque::new();
        }
        effect
    }

    /// When [`State::on_timeout`] is next due.
    pub(super) fn poll_timeout(&mut self) -> tokio::time::Instant {
        self.deadlines.probe = self.receipts.due();
        self.deadlines.next()
    }

    /// The session opened for the connection: `hello` goes first, then
    /// every restored subscription starts (those the log must plan wait in
    /// the background; `hello` and the others do not wait for them).
    pub(super) fn open(&mut self, env: &mut dyn Env, opened: Opened) {
        self.session.id = opened.id;
        self.session.stored = opened.resumed;
        self.session.whole = opened.legacy;
        let refresh = refresh_every(env);
        let age = opened.written_at.map_or(Duration::ZERO, |at| {
            let seconds = chrono::Utc::now().timestamp().saturating_sub(at);
            Duration::from_secs(seconds.max(0) as u64)
        });
        self.session.refresh_at = std::time::Instant::now() + refresh.saturating_sub(age);
        let epoch = env.epoch();
        self.session.epoch = Some(epoch);
        let channels: Vec<Channel> = opened.subscriptions.keys().copied().collect();
        self.outbox.push_text(protocol::hello(
            opened.id,
            self.claims.sub,
            self.bounds.heartbeat.as_millis() as u64,
            self.bounds.reconnect_base.as_millis() as u64,
            opened.resumed,
            &channels,
            &epoch.to_string(),
        ));
        for (channel, cursor) in opened.subscriptions {
            // Cursors of a session written before epochs existed belong to
            // the current stream; others say which stream they count.
            let same_epoch = cursor.epoch == Some(epoch);
            let cursors_epoch = cursor.epoch.unwrap_or(epoch);
            // A ban or deletion since the cursor is in the log: the replay
            // reaches it and cuts there, as live delivery would. Should
            // retention have dropped it, the cut happens when the replay ends.
            let pending_cut = match self.authorize(env, channel) {
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
            let joining = Joining {
                since: Some(Since::Seq(cursor.seq)),
                epoch: Some(cursors_epoch),
                request_id: None,
                presence: cursor.presence,
                pending_cut,
                restored: Some((cursor.seq, same_epoch)),
            };
            self.join(env, channel, joining);
        }
        self.save_session(env);
    }

    /// A client frame.
    pub(super) fn on_frame(&mut self, env: &mut dyn Env, frame: ClientFrame) -> Result<(), End> {
        match frame {
            ClientFrame::Subscribe {
                channel,
                since,
                epoch,
                presence,
                request_id,
            } => {
                let joining = Joining {
                    since,
                    epoch,
                    request_id,
                    presence,
                    ..Joining::default()
                };
                self.subscribe(env, channel, joining)
            }
            ClientFrame::Unsubscribe {
                channel,
                request_id,
            } => {
                if !self.holds(channel) {
                    return self.reject(not_subscribed(channel, request_id));
                }
                self.forget(env, channel);
                self.save_session(env);
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
            } => self.typing(channel, is_typing, request_id),
            ClientFrame::Ping { request_id } => {
                self.outbox.push_text(protocol::pong(request_id.as_deref()));
                Ok(())
            }
            ClientFrame::Refresh { token, request_id } => self.refresh(token, request_id),
            ClientFrame::Presence {
                channel,
                request_id,
            } => self.presence(env, channel, request_id),
        }
    }

    /// A frame that could not be decoded: answered, and counted towards
    /// the bad-frame limit when it is the client's fault.
    pub(super) fn on_bad_frame(&mut self, error: FrameError) -> Result<(), End> {
        self.reject(error)
    }

    /// A live delivery from the hub.
    pub(super) fn on_delivery(&mut self, env: &mut dyn Env, delivery: Arc<Delivery>) {
        let channel = delivery.channel;
        if let Some(sub) = self.subs.get_mut(&channel) {
            let mut out = std::mem::take(&mut self.scratch);
            sub.on_live(&self.rules, delivery, &mut out);
            self.apply(env, channel, &mut out);
            self.scratch = out;
            return;
        }
        let most = self.rules.replay_buffer;
        if let Some(slot) = self.planning.iter_mut().find(|p| p.channel == channel) {
            if delivery.seq.is_none() {
                return; // ephemeral: nothing to keep for later
            }
            if slot.buffer.len() >= most {
                // Read these from the log instead, once planned.
                slot.buffer.clear();
                slot.lagged = true;
            }
            slot.buffer.push_back(delivery);
        }
    }

    /// The hub dropped stored events for this connection: every
    /// subscription reads what it missed from the log (running replays
    /// measure their target again).
    pub(super) fn on_lagged(&mut self, env: &mut dyn Env) {
        for slot in &mut self.planning {
            slot.buffer.clear();
            slot.lagged = true;
        }
        let mut out = std::mem::take(&mut self.scratch);
        let channels: Vec<Channel> = self.subs.keys().collect();
        for channel in channels {
            if let Some(sub) = self.subs.get_mut(&channel) {
                sub.on_lagged(&mut out);
                self.apply(env, channel, &mut out);
            }
        }
        self.scratch = out;
    }

    /// The stream was deleted and recreated (the router rebuilt the
    /// projection and restarted the hub): every cursor counts the old
    /// stream's seqs. Each subscription (a planning one too) is told
    /// `subscribed` with `complete: false`, `first_seq` and the new epoch,
    /// then replays the new stream from its start (none of it reached the
    /// client yet) with `replayed`, then goes on live. One the rebuilt
    /// projection denies ends at once with `unsubscribed`.
    ///
    /// The driver emptied the queue first: every stored event still queued
    /// was the old stream's or is in the new stream's log (the hub flags
    /// the connection between the router's last old and first new
    /// delivery), and the replays' targets are measured after that, so
    /// nothing of the new stream is missed.
    pub(super) fn on_stream_recreated(&mut self, env: &mut dyn Env) {
        let extent = env.last_extent();
        self.session.new_epoch(extent.epoch);
        let epoch = extent.epoch.to_string();
        let first_seq = extent.first_seq.max(1);
        let mut request_ids: BTreeMap<Channel, Option<String>> = BTreeMap::new();
        let mut presence: BTreeSet<Channel> = self
            .subs
            .cursors()
            .filter(|(_, _, _, presence)| *presence)
            .map(|(channel, ..)| channel)
            .collect();
        for slot in std::mem::take(&mut self.planning) {
            if slot.presence {
                presence.insert(slot.channel);
            }
            request_ids.insert(slot.channel, slot.request_id);
        }
        let mut channels: Vec<Channel> = self.subs.keys().collect();
        channels.extend(request_ids.keys().copied());
        let mut out = std::mem::take(&mut self.scratch);
        for channel in channels {
            self.effects.push_back(Effect::StopRead { channel });
            let request_id = request_ids.remove(&channel).flatten();
            let denied = match self.authorize(env, channel) {
                Ok(()) => None,
                Err(access::Denied::Banned) => Some(EndReason::Banned),
                Err(access::Denied::ChannelDeleted) => Some(EndReason::ChannelDeleted),
                Err(_) => Some(EndReason::Left),
            };
            let sub = match denied {
                // The new stream does not let the user see the channel:
                // `unsubscribed` at once, nothing of it replayed.
                Some(reason) => {
                    let mut sub = Subscription::live(channel, 0);
                    sub.cut_when_replayed(reason, &mut out);
                    sub
                }
                None => {
                    self.outbox.push_text(protocol::subscribed(
                        request_id.as_deref(),
                        channel,
                        Some(first_seq),
                        &epoch,
                    ));
                    // Replays from the start, announced; its target is
                    // forgotten at once so that it is measured after the
                    // queue was emptied.
                    let mut sub = Subscription::replaying(channel, 0, 0, &mut out);
                    sub.on_lagged(&mut out);
                    if presence.contains(&channel) {
                        sub.want_presence(&mut out);
                    }
                    sub
                }
            };
            let ticket = self.ticket();
            self.subs.insert(channel, sub, ticket);
            self.apply(env, channel, &mut out);
        }
        self.scratch = out;
    }

    /// One step of a replay's read.
    pub(super) fn on_read_step(
        &mut self,
        env: &mut dyn Env,
        channel: Channel,
        step: Result<Step, LogError>,
    ) -> Result<(), End> {
        let step = step.map_err(log_lost)?;
        let Some(sub) = self.subs.get_mut(&channel) else {
            self.effects.push_back(Effect::StopRead { channel });
            return Ok(());
        };
        let mut out = std::mem::take(&mut self.scratch);
        match step {
            Step::Idle => sub.on_read_idle(&self.rules, &mut out),
            Step::Window(recent, pending) => {
                sub.on_read_encoded(&self.rules, pending, &recent.event, &recent.frame, &mut out)
            }
            Step::Log(item) => {
                let (seq, pending) = (item.seq, item.pending);
                let event = (*item).into_event();
                sub.on_read(&self.rules, seq, pending, event.as_ref(), &mut out);
            }
        }
        self.apply(env, channel, &mut out);
        self.scratch = out;
        Ok(())
    }

    /// The answer to a log request the state asked for.
    pub(super) fn on_answer(&mut self, env: &mut dyn Env, answer: Answer) -> Result<(), End> {
        match answer {
            Answer::Verified {
                ticket,
                request_id,
                result,
            } => self.on_verified(env, ticket, request_id, result),
            Answer::Planned {
                channel,
                ticket,
                result,
            } => {
                let Some(at) = self
                    .planning
                    .iter()
                    .position(|p| p.channel == channel && p.ticket == ticket)
                else {
                    return Ok(()); // unsubscribed, or restarted, meanwhile
                };
                let slot = self.planning.swap_remove(at);
                match result {
                    Ok(planned) => self.start(env, slot, planned),
                    Err(e) => {
                        tracing::warn!(conn = self.id, %channel, error = %e, "cannot plan a replay");
                        env.leave(channel, Left::Ended);
                        Metrics::get().subscriptions.decrement(1.0);
                        if slot.restored.is_some() {
                            self.session.ended(channel);
                        }
                        self.outbox.push_text(protocol::error(&FrameError::new(
                            ErrorCode::Unavailable,
                            "the event log is unavailable; try again",
                            slot.request_id,
                        )));
                    }
                }
                Ok(())
            }
            Answer::Probed {
                channel,
                ticket,
                from,
                target,
                result,
            } => {
                let next = result.map_err(log_lost)?;
                if self.subs.ticket(&channel) != Some(ticket) {
                    return Ok(());
                }
                if let Some(sub) = self.subs.get_mut(&channel) {
                    let mut out = std::mem::take(&mut self.scratch);
                    sub.on_probe(&self.rules, from, target, next, &mut out);
                    self.apply(env, channel, &mut out);
                    self.scratch = out;
                }
                Ok(())
            }
        }
    }

    /// A pong: if it answers the receipt probe, what was written before the
    /// probe has arrived.
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

    /// The driver wrote event frames of these channels to the socket.
    pub(super) fn on_flushed(&mut self, channels: impl IntoIterator<Item = Channel>) {
        for channel in channels {
            self.receipts.written(channel);
        }
    }

    /// The clock reached [`State::poll_timeout`].
    pub(super) fn on_timeout(
        &mut self,
        env: &mut dyn Env,
        now: tokio::time::Instant,
    ) -> Result<(), End> {
        if now >= self.deadlines.expiry {
            return Err(End::Close(Close::TokenExpired));
        }
        if now >= self.deadlines.heartbeat {
            self.outbox.ping();
            self.deadlines.heartbeat = now + self.bounds.heartbeat;
            self.release_idle_limits(Instant::now());
        }
        if now >= self.deadlines.cursors {
            self.deadlines.cursors = now + self.bounds.flush_interval;
            self.save_session(env);
        }
        if self.receipts.due().is_some_and(|due| now >= due) {
            self.send_probe();
        }
        Ok(())
    }

    /// The connection is ending: its last save, after which nothing more
    /// is saved (its subscriptions leave the connection, not the session).
    /// `written`, when given, is told once the change is in the store;
    /// whether a change was handed over (else `written` is dropped).
    pub(super) fn close_save(
        &mut self,
        env: &mut dyn Env,
        written: Option<tokio::sync::oneshot::Sender<()>>,
    ) -> bool {
        if written.is_some() {
            // Handed over even if unchanged: an earlier change may still
            // wait in the bucket writer, and this (empty) one is told when
            // it lands.
            self.session.touch();
        }
        let handed = self.save_session_then(env, written);
        self.session.close();
        handed
    }

    /// The operator ended the user's sessions: this connection's is
    /// removed (after what it handed over before), and nothing of it is
    /// written again.
    pub(super) fn remove_session(&mut self, env: &mut dyn Env) {
        let change = crate::session::record::Change::remove(self.claims.sub);
        if let Err(e) = env.save_session(self.session.id, change, None) {
            tracing::warn!(conn = self.id, error = %e, "session not removed");
        }
        self.session.close();
    }

    /// Leaves the hub with every subscription: the connection ended, as
    /// `how` says (a drop gets the presence grace; the operator's
    /// disconnect does not).
    pub(super) fn leave_all(&mut self, env: &mut dyn Env, how: Left) {
        self.leaving = how;
        let mut channels: Vec<Channel> = self.subs.keys().collect();
        channels.extend(self.planning.iter().map(|p| p.channel));
        for channel in channels {
            self.forget(env, channel);
        }
    }

    fn subscribe(
        &mut self,
        env: &mut dyn Env,
        channel: Channel,
        joining: Joining,
    ) -> Result<(), End> {
        let request_id = joining.request_id.clone();
        if self.holds(channel) {
            return self.reject(FrameError::new(
                ErrorCode::BadRequest,
                format!("already subscribed to {channel}"),
                request_id,
            ));
        }
        let most = self.bounds.max_subscriptions;
        if self.subs.len() + self.planning.len() >= most {
            return self.reject(FrameError::new(
                ErrorCode::BadRequest,
                format!("a connection holds at most {most} subscriptions"),
                request_id,
            ));
        }
        if let Err(denied) = self.authorize(env, channel) {
            return self.reject(FrameError::new(
                ErrorCode::Forbidden,
                format!("{channel}: {denied}"),
                request_id,
            ));
        }
        self.join(env, channel, joining);
        Ok(())
    }

    /// Answers a `presence` frame: the channel's snapshot, for a channel
    /// the connection holds.
    fn presence(
        &mut self,
        env: &mut dyn Env,
        channel: Id,
        request_id: Option<String>,
    ) -> Result<(), End> {
        let chat = Channel::Chat(channel);
        if !self.holds(chat) {
            if let Err(denied) = self.authorize(env, chat) {
                return self.reject(FrameError::new(
                    ErrorCode::Forbidden,
                    format!("{chat}: {denied}"),
                    request_id,
                ));
            }
            return self.reject(not_subscribed(chat, request_id));
        }
        let snapshot = env.presence(channel).json(channel);
        self.outbox
            .push_text(protocol::presence(request_id.as_deref(), snapshot));
        Ok(())
    }

    /// Joins the hub, then starts the subscription: live at once, or with
    /// its replay planned from memory, or planned by the log meanwhile.
    fn join(&mut self, env: &mut dyn Env, channel: Channel, joining: Joining) {
        let Joining {
            since,
            epoch,
            request_id,
            presence,
            pending_cut,
            restored,
        } = joining;
        let routed = env.join(channel, presence);
        Metrics::get().subscriptions.increment(1.0);
        self.session.touch();
        let ticket = self.ticket();
        let Some(since) = since else {
            self.subs
                .insert(channel, Subscription::live(channel, routed), ticket);
            self.outbox.push_text(protocol::subscribed(
                request_id.as_deref(),
                channel,
                None,
                &env.epoch().to_string(),
            ));
            if presence {
                self.want_presence(env, channel);
            }
            self.confirmed(env, restored);
            return;
        };
        let request = PlanRequest {
            channel,
            since,
            epoch,
            routed,
        };
        let slot = Planning {
            channel,
            ticket,
            request_id,
            buffer: VecDeque::new(),
            lagged: false,
            pending_cut,
            restored,
            presence,
        };
        match plan_now(&*env, &self.claims, &request) {
            Some(planned) => self.start(env, slot, planned),
            None => {
                self.planning.push(slot);
                self.effects.push_back(Effect::Plan {
                    channel,
                    ticket,
                    request,
                    claims: self.claims.clone(),
                });
            }
        }
    }

    /// A planned subscription starts: `subscribed`, then its replay, with
    /// what arrived live meanwhile waiting in the replay's buffer.
    fn start(&mut self, env: &mut dyn Env, slot: Planning, planned: Planned) {
        let channel = slot.channel;
        self.outbox.push_text(protocol::subscribed(
            slot.request_id.as_deref(),
            channel,
            planned.first_seq,
            &planned.epoch.to_string(),
        ));
        let mut out = std::mem::take(&mut self.scratch);
        let mut sub = Subscription::replaying_following(
            channel,
            planned.after,
            planned.target,
            planned.following,
            &mut out,
        );
        if slot.lagged {
            sub.on_lagged(&mut out);
        }
        for delivery in slot.buffer {
            sub.on_live(&self.rules, delivery, &mut out);
        }
        if let Some(reason) = slot.pending_cut {
            sub.cut_when_replayed(reason, &mut out);
        }
        if slot.presence {
            sub.want_presence(&mut out);
        }
        self.subs.insert(channel, sub, slot.ticket);
        // The record holds this cursor, in this stream: nothing to write
        // until it moves.
        if let Some((seq, true)) = slot.restored {
            self.subs.set_saved(&channel, Some(seq));
        }
        self.apply(env, channel, &mut out);
        self.scratch = out;
        self.confirmed(env, slot.restored);
    }

    /// A subscription was confirmed to the client (`subscribed` is
    /// queued). A client's own subscribe is in the session from now on,
    /// not from the next cursor write: a client that drops and comes
    /// straight back could otherwise read (and then write back) a record
    /// without it. A restored one is in it already.
    fn confirmed(&mut self, env: &mut dyn Env, restored: Option<(u64, bool)>) {
        if restored.is_none() {
            self.save_session(env);
        }
    }

    /// Carries out a machine's output: frames go to the outbox, reads to
    /// the driver, the target is measured and the window probed at once,
    /// ended subscriptions are forgotten. An answer's own output comes
    /// before the rest of the output that asked for it.
    fn apply(&mut self, env: &mut dyn Env, channel: Channel, out: &mut Actions) {
        while let Some(action) = out.pop_front() {
            match action {
                Action::Write(frame) => {
                    if !matches!(frame, Frame::Plain(_)) {
                        self.session.touch(); // a cursor moved
                    }
                    self.outbox.push(channel, frame);
                }
                Action::Read { after } => self.effects.push_back(Effect::Read { channel, after }),
                Action::StopRead => self.effects.push_back(Effect::StopRead { channel }),
                Action::End(_) => self.forget(env, channel),
                Action::Presence => {
                    if let Channel::Chat(id) = channel {
                        let snapshot = env.presence(id);
                        let text = protocol::presence(None, snapshot.json(id));
                        self.outbox.push(channel, Frame::Plain(text.into()));
                        if let Some(sub) = self.subs.get_mut(&channel) {
                            sub.on_presence_sent(snapshot.generation);
                        }
                    }
                }
                // Every event up to the hub's routed position is in the
                // log (and the window); every later one reaches the queue.
                Action::MeasureTarget => {
                    let routed = env.last_routed();
                    let mut answer = Actions::new();
                    if let Some(sub) = self.subs.get_mut(&channel) {
                        sub.on_target(&self.rules, routed, &mut answer);
                    }
                    prepend(out, answer);
                }
                Action::Probe { from, target } => match env.window_next_of(channel, from) {
                    Some(next) => {
                        let mut answer = Actions::new();
                        if let Some(sub) = self.subs.get_mut(&channel) {
                            sub.on_probe(&self.rules, from, target, next, &mut answer);
                        }
                        prepend(out, answer);
                    }
                    None => {
                        if let Some(ticket) = self.subs.ticket(&channel) {
                            self.effects.push_back(Effect::Probe {
                                channel,
                                ticket,
                                from,
                                target,
                            });
                        }
                    }
                },
            }
        }
    }

    /// `channel`'s subscription sends its presence snapshot (now, or once
    /// its replay is over), then presence as it changes.
    fn want_presence(&mut self, env: &mut dyn Env, channel: Channel) {
        let mut out = std::mem::take(&mut self.scratch);
        if let Some(sub) = self.subs.get_mut(&channel) {
            sub.want_presence(&mut out);
        }
        self.apply(env, channel, &mut out);
        self.scratch = out;
    }

    /// Presence deliveries were dropped (the queue was full): every
    /// subscription that asked for presence is sent its snapshot again.
    pub(super) fn on_presence_lost(&mut self, env: &mut dyn Env) {
        let channels: Vec<Channel> = self
            .subs
            .cursors()
            .filter(|(_, _, _, presence)| *presence)
            .map(|(channel, ..)| channel)
            .collect();
        for channel in channels {
            self.want_presence(env, channel);
        }
    }

    /// Whether the connection holds `channel`, subscribed or planning.
    fn holds(&self, channel: Channel) -> bool {
        self.subs.contains_key(&channel) || self.planning.iter().any(|p| p.channel == channel)
    }

    /// Removes a subscription (or a planning one) from the connection and
    /// the hub.
    fn forget(&mut self, env: &mut dyn Env, channel: Channel) {
        let planning = self.planning.iter().position(|p| p.channel == channel);
        if let Some(at) = planning {
            self.planning.swap_remove(at);
        }
        if self.subs.remove(&channel).is_some() || planning.is_some() {
            env.leave(channel, self.leaving);
            Metrics::get().subscriptions.decrement(1.0);
            self.session.ended(channel);
        }
        self.effects.push_back(Effect::StopRead { channel });
        if let Some(typing) = &mut self.typing {
            typing.remove(&channel);
        }
    }

    fn ticket(&mut self) -> u64 {
        self.next_ticket = self.next_ticket.wrapping_add(1);
        self.next_ticket
    }

    fn authorize(&self, env: &dyn Env, channel: Channel) -> Result<(), access::Denied> {
        access::may_subscribe(&self.claims, channel, |id| {
            env.standing(id, self.claims.sub)
        })
    }

    /// Publishes the user's typing, within the per-channel limit; the
    /// excess is dropped.
    fn typing(
        &mut self,
        channel: Id,
        is_typing: bool,
        request_id: Option<String>,
    ) -> Result<(), End> {
        let chat = Channel::Chat(channel);
        if !self.subs.contains_key(&chat) {
            return self.reject(not_subscribed(chat, request_id));
        }
        let limit = self.bounds.typing_per_second;
        let admitted = self
            .typing
            .get_or_insert_with(Box::default)
            .entry(chat)
            .or_insert_with(|| RateWindow::new(limit, TYPING_WINDOW))
            .admit(Instant::now());
        if !admitted {
            Metrics::get().typing_rate_limited.increment(1);
            return Ok(());
        }
        self.effects.push_back(Effect::PublishTyping(UserTyping {
            channel_id: channel,
            user_id: self.claims.sub,
            username: self.claims.username(),
            is_typing,
        }));
        Ok(())
    }

    /// Lets go of the rate limits whose windows hold no hit any more (made
    /// by a burst of typing, refreshes or bad frames, they would otherwise
    /// stay for the connection's life); made again on the next hit.
    fn release_idle_limits(&mut self, now: Instant) {
        RateWindow::let_go_if_idle(&mut self.bad_frames.window, now);
        self.refreshes.release_idle(now);
        if let Some(typing) = self.typing.as_mut() {
            typing.retain(|_, window| !window.is_idle(now));
            if typing.is_empty() {
                self.typing = None;
            }
        }
    }

    /// Answers a bad frame; too many in the abuse window close the connection.
    fn reject(&mut self, error: FrameError) -> Result<(), End> {
        self.outbox.push_text(protocol::error(&error));
        if !error.code.counts_as_abuse() {
            return Ok(());
        }
        let metrics = Metrics::get();
        metrics.bad_frames.increment(1);
        if !self.bad_frames.window().admit(Instant::now()) {
            metrics.abuse_closes.increment(1);
            return Err(End::Close(Close::Abuse));
        }
        Ok(())
    }

    /// Sends a receipt probe after what was written so far.
    fn send_probe(&mut self) {
        let (id, channels) = self.receipts.probe();
        for channel in channels {
            if let Some(sub) = self.subs.get_mut(channel) {
                sub.on_probe_sent();
            }
        }
        self.outbox.probe(id);
    }

    /// Hands the store what changed of the session, if anything: cursors
    /// that moved, subscriptions that came or went; the header and every
    /// record at least every [`SESSION_REFRESH`] (or half the TTL) so a
    /// quiet connection's session does not expire.
    fn save_session(&mut self, env: &mut dyn Env) {
        self.save_session_then(env, None);
    }

    /// [`State::save_session`]; whether a change was handed over.
    fn save_session_then(
        &mut self,
        env: &mut dyn Env,
        written: Option<tokio::sync::oneshot::Sender<()>>,
    ) -> bool {
        let now = std::time::Instant::now();
        let keeper = &mut self.session;
        let due = now >= keeper.refresh_at;
        if keeper.closed || (!keeper.dirty && !due && !keeper.whole) {
            return false;
        }
        let user = self.claims.sub;
        // Restored subscriptions still being planned keep their records.
        let restoring: Vec<(Channel, u64, bool)> = self
            .planning
            .iter()
            .filter_map(|p| p.restored.map(|(seq, _)| (p.channel, seq, p.presence)))
            .collect();
        let change = if self.subs.is_empty() && restoring.is_empty() {
            if !keeper.stored {
                // Nothing to restore, and nothing stored: nothing to write.
                keeper.ended.clear();
                keeper.rewrite = false;
                keeper.dirty = false;
                keeper.whole = false;
                keeper.refresh_at = now + refresh_every(env);
                return false;
            }
            Change::remove(user)
        } else {
            let rewrite = keeper.rewrite;
            let whole = rewrite || due || keeper.whole || !keeper.stored;
            let epoch = keeper.epoch;
            let mut change = Change::new(user);
            change.remove_all = rewrite;
            for channel in &keeper.ended {
                change.subscriptions.insert(*channel, None);
            }
            let cursor = |seq, presence| {
                Some(Cursor {
                    seq,
                    epoch,
                    presence,
                })
            };
            for (channel, seq, saved, presence) in self.subs.cursors() {
                if whole || saved != Some(seq) {
                    change.subscriptions.insert(channel, cursor(seq, presence));
                }
            }
            if whole {
                for (channel, seq, presence) in restoring {
                    change.subscriptions.insert(channel, cursor(seq, presence));
                }
                change.header = Some(env.session_expires_at());
            }
            change
        };
        let header = change.header.is_some();
        let removed = change.remove_all;
        if change.records() == 0 && written.is_none() {
            keeper.dirty = false;
            return false;
        }
        match env.save_session(keeper.id, change, written) {
            Ok(()) => {
                self.subs.mark_saved();
                let keeper = &mut self.session;
                keeper.ended.clear();
                keeper.rewrite = false;
                keeper.dirty = false;
                keeper.whole = false;
                if header || removed {
                    keeper.stored = header;
                    keeper.refresh_at = now + refresh_every(env);
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

/// How often the header and every subscription record are written.
fn refresh_every(env: &dyn Env) -> Duration {
    SESSION_REFRESH.min(env.session_ttl() / 2)
}

/// Puts `answer` in front of what is left of `out`, in its order.
fn prepend(out: &mut Actions, answer: Actions) {
    for action in answer.into_iter().rev() {
        out.push_front(action);
    }
}

fn not_subscribed(channel: Channel, request_id: Option<String>) -> FrameError {
    FrameError::new(
        ErrorCode::NotFound,
        format!("not subscribed to {channel}"),
        request_id,
    )
}

/// The log failed mid-replay: close, and let the client resume later from
/// its cursor (nothing is skipped: the cursor only moves on delivery). A
/// read stopped by the node's shutdown closes as the shutdown does.
fn log_lost(e: LogError) -> End {
    if e.request_kind() == Some(crate::log::RequestErrorKind::ShuttingDown) {
        return End::Close(Close::ShuttingDown);
    }
    tracing::warn!(error = %e, "log unavailable during a replay; closing");
    End::Close(Close::LogUnavailable)
}

mod refresh;
pub use refresh::REFRESHES_PER_MINUTE;

#[cfg(test)]
mod tests;
