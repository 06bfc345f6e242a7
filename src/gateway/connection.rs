//! One WebSocket connection: its protocol, subscriptions, replays, cursors
//! and bounds. One task per connection owns all of it; the transport only
//! reads and writes.
//!
//! A subscription is either live (events come from the hub through the
//! connection's bounded queue) or replaying (events come from its own
//! ordered read of the log while live events wait in a bounded buffer).
//! A replay ends once it has read every event of the channel up to a
//! target sequence measured *after* the subscription joined the hub, so
//! every later event is in the buffer: the handover has no gap, and events
//! seen twice are dropped by `seq`. If the buffer overflows, or the hub
//! could not queue an event (a slow reader), the target is measured again
//! and the replay goes on: the log has every stored event, so nothing is
//! lost and memory stays bounded.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{FutureExt, SinkExt, StreamExt};
use tokio_stream::StreamMap;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message, Utf8Bytes};

use super::hub::{Delivery, Mailbox};
use super::protocol::{self, ClientFrame, ErrorCode, FrameError, Since};
use super::upgrade::Socket;
use super::{router, Node};
use crate::access::{self, EndReason};
use crate::channel::{Channel, Id};
use crate::event::{EventData, UserTyping};
use crate::log::{LogError, LogRead, ReadItem};
use crate::session::CURSOR_FLUSH_INTERVAL;
use crate::token::Claims;

/// Live events a replaying subscription holds while its replay runs; past
/// it they are dropped and read from the log instead.
pub const REPLAY_BUFFER: usize = 1024;

/// Items taken from the queue or a replay before the socket is flushed.
pub const WRITE_BATCH: usize = 256;

/// How long a log request may take before the connection gives up on it.
pub const LOG_TIMEOUT: Duration = Duration::from_secs(10);

/// A connected session is written at least this often, so it outlives its
/// connection by the session TTL however quiet the connection is.
pub const SESSION_REFRESH: Duration = Duration::from_secs(600);

/// How long a closing socket gets to take its close frame.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// The window the bad-frame limit counts in.
pub const ABUSE_WINDOW: Duration = Duration::from_secs(60);

/// How a connection ends.
#[derive(Debug)]
enum End {
    /// The client closed or the socket broke: nothing more to send.
    Gone,
    /// We close with this code and reason.
    Close(u16, &'static str),
    /// The client took nothing for the stall timeout.
    Stalled,
}

/// A replay in progress for one subscription.
struct Replay {
    /// The replay is complete once it has read this sequence, or once the
    /// log has no event of the channel between the read position and it.
    /// `None`: measure it again (events were dropped from the buffer).
    target: Option<u64>,
    /// The last sequence the replay's reader returned.
    read_pos: u64,
    /// Live events that arrived meanwhile, in `seq` order.
    buffer: VecDeque<Arc<Delivery>>,
    count: u64,
    /// Whether the client asked for it (then it ends with `replayed`).
    announce: bool,
}

struct Subscription {
    /// The last `seq` sent (queued for the socket); later copies are dropped.
    cursor: u64,
    /// The last `seq` the socket took: `cursor` as of the last completed
    /// flush. Frames still queued when a connection ends were not delivered.
    delivered: u64,
    /// The last `seq` the client acknowledged.
    acked: Option<u64>,
    replay: Option<Replay>,
    /// A restored subscription the projection now denies: ended when its
    /// replay ends, unless an event in the replay cut it first.
    pending_cut: Option<EndReason>,
    typing_window: (Instant, u32),
}

impl Subscription {
    fn new(cursor: u64) -> Subscription {
        Subscription {
            cursor,
            delivered: cursor,
            acked: None,
            replay: None,
            pending_cut: None,
            typing_window: (Instant::now(), 0),
        }
    }

    /// What the session keeps: the last ack, else the last delivery.
    fn session_cursor(&self) -> u64 {
        self.acked.unwrap_or(self.delivered)
    }

    /// Records that the frame of `seq` is queued for the socket.
    /// A subscription joins `touched` on its first frame since the last flush.
    fn sent(&mut self, seq: u64, touched: &mut Vec<Channel>, channel: Channel) {
        if self.cursor == self.delivered {
            touched.push(channel);
        }
        self.cursor = seq;
    }
}

/// Runs one accepted connection to its end.
///
/// Every connection's task holds this future for its whole life, so its
/// cold paths (client frames, replays' log requests, the final close) are
/// boxed and cost memory only while they run; see the test
/// `an_idle_connection_task_stays_small`.
pub async fn run(node: Arc<Node>, socket: Socket, claims: Claims, session: Option<Id>) {
    let (mailbox, queue) = Mailbox::new(claims.sub, node.limits.send_queue);
    let mut conn = Connection {
        id: node.next_connection_id(),
        node: node.clone(),
        socket,
        claims,
        session: Id::new_v4(),
        mailbox,
        queue,
        subs: HashMap::new(),
        replays: StreamMap::new(),
        out: Vec::new(),
        touched: Vec::new(),
        dirty: false,
        bad_frames: VecDeque::new(),
        saved_at: Instant::now(),
        oldest_unflushed_ms: None,
        unflushed_live: 0,
        unflushed_replayed: 0,
    };
    node.metrics.connections.increment(1.0);
    let end = match conn.serve(session).await {
        Ok(()) => End::Gone,
        Err(end) => end,
    };
    Box::pin(conn.finish(end)).await;
    node.metrics.connections.decrement(1.0);
}

struct Connection {
    node: Arc<Node>,
    id: u64,
    socket: Socket,
    claims: Claims,
    session: Id,
    mailbox: Arc<Mailbox>,
    queue: tokio::sync::mpsc::Receiver<Arc<Delivery>>,
    subs: HashMap<Channel, Subscription>,
    replays: StreamMap<Channel, LogRead>,
    /// Frames waiting for the next flush.
    out: Vec<Message>,
    /// Subscriptions whose cursor moved since the last flush.
    touched: Vec<Channel>,
    /// Whether cursors or subscriptions changed since the session was saved.
    dirty: bool,
    bad_frames: VecDeque<Instant>,
    saved_at: Instant,
    /// The log time of the oldest live event written since the last flush.
    oldest_unflushed_ms: Option<i64>,
    /// Event frames written since the last flush: counted into the shared
    /// metrics once per flush, not once per frame.
    unflushed_live: u64,
    unflushed_replayed: u64,
}

impl Connection {
    async fn serve(&mut self, requested_session: Option<Id>) -> Result<(), End> {
        Box::pin(self.open_session(requested_session)).await?;
        self.flush().await?;

        let limits = self.node.limits.clone();
        let shutdown = self.node.shutdown.clone();
        let mailbox = self.mailbox.clone();
        let expiry = tokio::time::sleep(self.claims.time_left());
        tokio::pin!(expiry);
        let mut heartbeat = tokio::time::interval(limits.heartbeat);
        heartbeat.tick().await;
        let mut cursor_flush = tokio::time::interval(CURSOR_FLUSH_INTERVAL);

        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => return Err(End::Close(1001, "server shutting down")),
                _ = &mut expiry => return Err(End::Close(4001, "token expired")),
                frame = self.socket.next() => Box::pin(self.on_socket(frame)).await?,
                _ = mailbox.lagged_signal() => Box::pin(self.on_lagged()).await?,
                Some(delivery) = self.queue.recv() => {
                    self.on_live(delivery);
                    let taken = 1 + self.drain_queue(WRITE_BATCH - 1);
                    if taken < WRITE_BATCH {
                        // Let the router queue what it has in hand, so one
                        // write carries many frames under load; idle, this
                        // costs one trip through the scheduler.
                        tokio::task::yield_now().await;
                        self.drain_queue(WRITE_BATCH - taken);
                    }
                }
                Some((channel, item)) = self.replays.next(), if !self.replays.is_empty() => {
                    self.on_replay(channel, item).await?;
                    for _ in 1..WRITE_BATCH {
                        match self.replays.next().now_or_never() {
                            Some(Some((channel, item))) => self.on_replay(channel, item).await?,
                            _ => break,
                        }
                    }
                }
                _ = heartbeat.tick() => self.out.push(Message::Ping(Default::default())),
                _ = cursor_flush.tick() => self.save_session(),
            }
            if self.has_unflushed() {
                Box::pin(self.flush()).await?;
            }
        }
    }

    /// Takes up to `most` queued deliveries without waiting; returns how many.
    fn drain_queue(&mut self, most: usize) -> usize {
        let mut taken = 0;
        while taken < most {
            match self.queue.try_recv() {
                Ok(delivery) => self.on_live(delivery),
                Err(_) => break,
            }
            taken += 1;
        }
        taken
    }

    /// Sends `hello`, then restores the session's subscriptions.
    async fn open_session(&mut self, requested: Option<Id>) -> Result<(), End> {
        let opened = self
            .node
            .sessions
            .open(requested, self.claims.sub)
            .map_err(|e| {
                tracing::error!(error = %e, "session store failed");
                End::Close(1011, "session store unavailable")
            })?;
        self.session = opened.id;
        let channels: Vec<Channel> = opened.subscriptions.keys().copied().collect();
        let limits = &self.node.limits;
        self.push_text(protocol::hello(
            opened.id,
            self.claims.sub,
            limits.heartbeat.as_millis() as u64,
            limits.reconnect_base.as_millis() as u64,
            opened.resumed,
            &channels,
        ));
        for (channel, cursor) in opened.subscriptions {
            // A ban or deletion since the cursor is in the log: the replay
            // reaches it and cuts there, as live delivery would. Should
            // retention have dropped it, the cut happens when the replay ends.
            let pending_cut = match self.authorize(channel) {
                Ok(()) => None,
                Err(access::Denied::Banned) => Some(EndReason::Banned),
                Err(access::Denied::ChannelDeleted) => Some(EndReason::ChannelDeleted),
                Err(denied) => {
                    self.dirty = true;
                    self.push_error(&FrameError::new(
                        ErrorCode::Forbidden,
                        format!("{channel} is not restored: {denied}"),
                        None,
                    ));
                    continue;
                }
            };
            let since = Since::Seq(cursor);
            self.open_subscription(channel, Some(since), None).await?;
            if let Some(sub) = self.subs.get_mut(&channel) {
                sub.pending_cut = pending_cut;
                if sub.replay.is_none() {
                    self.finish_cut(channel);
                }
            }
        }
        self.save_session();
        Ok(())
    }

    fn authorize(&self, channel: Channel) -> Result<(), access::Denied> {
        let projection = self.node.projection();
        access::may_subscribe(&self.claims, channel, |id| {
            projection.standing(id, self.claims.sub)
        })
    }

    async fn on_socket(
        &mut self,
        frame: Option<Result<Message, tungstenite::Error>>,
    ) -> Result<(), End> {
        use tungstenite::error::{CapacityError, Error};
        match frame {
            None | Some(Ok(Message::Close(_))) => Err(End::Gone),
            Some(Ok(Message::Text(text))) => match protocol::decode(&text) {
                Ok(frame) => self.on_frame(frame).await,
                Err(error) => self.reject(error),
            },
            Some(Ok(Message::Binary(_))) => self.reject(FrameError::new(
                ErrorCode::BadRequest,
                "binary frames are not accepted: send JSON text frames",
                None,
            )),
            Some(Ok(_)) => Ok(()),
            Some(Err(Error::Capacity(CapacityError::MessageTooLong { .. }))) => {
                Err(End::Close(1009, "frame too large"))
            }
            Some(Err(Error::Utf8(_))) => Err(End::Close(1007, "invalid UTF-8")),
            Some(Err(e)) => {
                tracing::debug!(conn = self.id, error = %e, "socket error");
                Err(End::Gone)
            }
        }
    }

    async fn on_frame(&mut self, frame: ClientFrame) -> Result<(), End> {
        match frame {
            ClientFrame::Subscribe {
                channel,
                since,
                request_id,
            } => self.subscribe(channel, since, request_id).await,
            ClientFrame::Unsubscribe {
                channel,
                request_id,
            } => {
                if !self.subs.contains_key(&channel) {
                    return self.reject(not_subscribed(channel, request_id));
                }
                self.drop_subscription(channel);
                self.push_text(protocol::unsubscribed(
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
                let seq = seq.min(sub.cursor);
                if sub.acked.is_none_or(|acked| seq > acked) {
                    sub.acked = Some(seq);
                    self.dirty = true;
                }
                Ok(())
            }
            ClientFrame::Typing {
                channel,
                is_typing,
                request_id,
            } => {
                let chat = Channel::Chat(channel);
                let limit = self.node.limits.typing_per_second;
                let Some(sub) = self.subs.get_mut(&chat) else {
                    return self.reject(not_subscribed(chat, request_id));
                };
                let now = Instant::now();
                let (start, count) = &mut sub.typing_window;
                if now.duration_since(*start) >= Duration::from_secs(1) {
                    *start = now;
                    *count = 0;
                }
                if *count >= limit {
                    self.node.metrics.typing_rate_limited.increment(1);
                    return Ok(());
                }
                *count += 1;
                let data = EventData::UserTyping(UserTyping {
                    channel_id: channel,
                    user_id: self.claims.sub,
                    username: self.claims.username(),
                    is_typing,
                });
                Box::pin(router::publish_typing(&self.node, chat, data)).await;
                Ok(())
            }
            ClientFrame::Ping { request_id } => {
                self.push_text(protocol::pong(request_id.as_deref()));
                Ok(())
            }
        }
    }

    async fn subscribe(
        &mut self,
        channel: Channel,
        since: Option<Since>,
        request_id: Option<String>,
    ) -> Result<(), End> {
        if self.subs.contains_key(&channel) {
            return self.reject(FrameError::new(
                ErrorCode::BadRequest,
                format!("already subscribed to {channel}"),
                request_id,
            ));
        }
        if self.subs.len() >= self.node.limits.max_subscriptions {
            return self.reject(FrameError::new(
                ErrorCode::BadRequest,
                format!(
                    "a connection holds at most {} subscriptions",
                    self.node.limits.max_subscriptions
                ),
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
        self.open_subscription(channel, since, request_id).await
    }

    /// Joins the hub first, then plans and starts the replay, if any.
    async fn open_subscription(
        &mut self,
        channel: Channel,
        since: Option<Since>,
        request_id: Option<String>,
    ) -> Result<(), End> {
        let routed = self
            .node
            .hub
            .subscribe(channel, self.id, self.mailbox.clone());
        self.subs.insert(channel, Subscription::new(routed));
        self.node.metrics.subscriptions.increment(1.0);
        self.dirty = true;
        let Some(since) = since else {
            self.push_text(protocol::subscribed(request_id.as_deref(), channel, None));
            return Ok(());
        };
        match with_timeout(plan_replay(&self.node, since)).await {
            Ok(plan) => {
                if let Some(sub) = self.subs.get_mut(&channel) {
                    sub.cursor = plan.after;
                    sub.delivered = plan.after;
                }
                self.push_text(protocol::subscribed(
                    request_id.as_deref(),
                    channel,
                    plan.first_seq,
                ));
                self.start_replay(channel, plan.after, Some(plan.target), true)
                    .await
            }
            Err(e) => {
                tracing::warn!(conn = self.id, %channel, error = %e, "cannot plan a replay");
                self.drop_subscription(channel);
                self.push_error(&FrameError::new(
                    ErrorCode::Unavailable,
                    "the event log is unavailable; try again",
                    request_id,
                ));
                Ok(())
            }
        }
    }

    async fn start_replay(
        &mut self,
        channel: Channel,
        after: u64,
        target: Option<u64>,
        announce: bool,
    ) -> Result<(), End> {
        let read = with_timeout(self.node.log.read(&[channel], after + 1))
            .await
            .map_err(log_lost)?;
        let Some(sub) = self.subs.get_mut(&channel) else {
            return Ok(());
        };
        sub.replay = Some(Replay {
            target,
            read_pos: after,
            buffer: VecDeque::new(),
            count: 0,
            announce,
        });
        let empty = read.initial_pending == 0;
        self.replays.insert(channel, read);
        if empty {
            Box::pin(self.check_replay_end(channel)).await?;
        }
        Ok(())
    }

    async fn on_replay(
        &mut self,
        channel: Channel,
        item: Result<ReadItem, LogError>,
    ) -> Result<(), End> {
        let item = item.map_err(log_lost)?;
        let user = self.claims.sub;
        let Some(sub) = self.subs.get_mut(&channel) else {
            self.replays.remove(&channel);
            return Ok(());
        };
        let Some(replay) = sub.replay.as_mut() else {
            self.replays.remove(&channel);
            return Ok(());
        };
        replay.read_pos = item.seq;
        let done = replay.target.is_some_and(|target| item.seq >= target);
        let mut cut = None;
        match &item.event {
            Err(reason) => {
                self.node.metrics.invalid_events.increment(1);
                tracing::warn!(seq = item.seq, subject = %item.subject, %reason, "replay skips an invalid stored event");
            }
            Ok(event) if event.seq > sub.cursor => {
                replay.count += 1;
                sub.sent(event.seq, &mut self.touched, channel);
                cut = access::cut(channel, &event.data).filter(|c| c.applies_to(user));
                self.dirty = true;
                self.out.push(Message::Text(frame_text(event.encode())));
                self.unflushed_replayed += 1;
            }
            Ok(_) => {}
        }
        if let Some(cut) = cut {
            self.end_subscription(channel, cut.reason);
        } else if done {
            self.finish_replay(channel);
        } else if item.pending == 0 {
            Box::pin(self.check_replay_end(channel)).await?;
        }
        Ok(())
    }

    /// The reader has nothing more right now: the replay is complete when the
    /// log holds no event of the channel between the read position and the
    /// target (measured now if unknown).
    async fn check_replay_end(&mut self, channel: Channel) -> Result<(), End> {
        let Some(replay) = self.subs.get(&channel).and_then(|s| s.replay.as_ref()) else {
            return Ok(());
        };
        let (read_pos, target) = (replay.read_pos, replay.target);
        let target = match target {
            Some(target) => target,
            None => {
                let extent = with_timeout(self.node.log.extent())
                    .await
                    .map_err(log_lost)?;
                if let Some(replay) = self.subs.get_mut(&channel).and_then(|s| s.replay.as_mut()) {
                    replay.target = Some(extent.last_seq);
                }
                extent.last_seq
            }
        };
        if read_pos >= target {
            self.finish_replay(channel);
            return Ok(());
        }
        let next = with_timeout(self.node.log.next_seq_of(channel, read_pos + 1))
            .await
            .map_err(log_lost)?;
        if next.is_none_or(|next| next > target) {
            self.finish_replay(channel);
        }
        Ok(())
    }

    /// Ends a replay: `replayed` if asked for, then the buffered live events.
    fn finish_replay(&mut self, channel: Channel) {
        self.replays.remove(&channel);
        let Some(sub) = self.subs.get_mut(&channel) else {
            return;
        };
        let Some(replay) = sub.replay.take() else {
            return;
        };
        if replay.announce {
            self.out.push(Message::Text(
                protocol::replayed(channel, replay.count, sub.cursor).into(),
            ));
        }
        for delivery in replay.buffer {
            self.on_live(delivery);
        }
        self.finish_cut(channel);
    }

    /// Ends a subscription whose cut was decided before its replay ran.
    fn finish_cut(&mut self, channel: Channel) {
        let reason = self.subs.get(&channel).and_then(|s| s.pending_cut);
        if let Some(reason) = reason {
            self.end_subscription(channel, reason);
        }
    }

    /// A live delivery from the hub.
    fn on_live(&mut self, delivery: Arc<Delivery>) {
        let user = self.claims.sub;
        let Some(sub) = self.subs.get_mut(&delivery.channel) else {
            return;
        };
        let Some(seq) = delivery.seq else {
            self.out.push(Message::Text(delivery.frame.clone()));
            return;
        };
        if let Some(replay) = sub.replay.as_mut() {
            if replay.buffer.len() >= REPLAY_BUFFER {
                // Read these from the log instead.
                replay.buffer.clear();
                replay.target = None;
            }
            replay.buffer.push_back(delivery);
            return;
        }
        if seq <= sub.cursor {
            return;
        }
        sub.sent(seq, &mut self.touched, delivery.channel);
        self.dirty = true;
        self.out.push(Message::Text(delivery.frame.clone()));
        self.unflushed_live += 1;
        // One latency sample per flush (the batch's oldest event), not one
        // per event: the histogram's cost stays flat under fan-out.
        self.oldest_unflushed_ms.get_or_insert(delivery.log_time_ms);
        if let Some(cut) = delivery.cut.filter(|c| c.applies_to(user)) {
            self.end_subscription(delivery.channel, cut.reason);
        }
    }

    /// The hub dropped stored events for us: every live subscription reads
    /// what it missed from the log; running replays measure their target again.
    async fn on_lagged(&mut self) -> Result<(), End> {
        if !self.mailbox.take_lagged() {
            return Ok(());
        }
        let mut restart = Vec::new();
        for (channel, sub) in &mut self.subs {
            match sub.replay.as_mut() {
                Some(replay) => replay.target = None,
                None => restart.push((*channel, sub.cursor)),
            }
        }
        for (channel, cursor) in restart {
            self.start_replay(channel, cursor, None, false).await?;
        }
        Ok(())
    }

    fn end_subscription(&mut self, channel: Channel, reason: EndReason) {
        self.drop_subscription(channel);
        self.push_text(protocol::unsubscribed(None, channel, reason));
    }

    fn drop_subscription(&mut self, channel: Channel) {
        if self.subs.remove(&channel).is_some() {
            self.node.hub.unsubscribe(channel, self.id);
            self.node.metrics.subscriptions.decrement(1.0);
            self.dirty = true;
        }
        self.replays.remove(&channel);
    }

    /// Answers a bad frame; too many in a minute close the connection.
    fn reject(&mut self, error: FrameError) -> Result<(), End> {
        self.push_error(&error);
        if !error.code.counts_as_abuse() {
            return Ok(());
        }
        self.node.metrics.bad_frames.increment(1);
        let now = Instant::now();
        while self
            .bad_frames
            .front()
            .is_some_and(|t| now.duration_since(*t) > ABUSE_WINDOW)
        {
            self.bad_frames.pop_front();
        }
        self.bad_frames.push_back(now);
        if self.bad_frames.len() > self.node.limits.bad_frames_per_minute {
            self.node.metrics.abuse_closes.increment(1);
            return Err(End::Close(4029, "too many bad frames"));
        }
        Ok(())
    }

    fn push_error(&mut self, error: &FrameError) {
        self.push_text(protocol::error(error));
    }

    fn push_text(&mut self, text: String) {
        self.out.push(Message::Text(text.into()));
    }

    /// Frames to write, or cursors to confirm.
    fn has_unflushed(&self) -> bool {
        !self.out.is_empty() || !self.touched.is_empty()
    }

    /// Writes every pending frame; a socket that takes none of it for the
    /// stall timeout is given up.
    async fn flush(&mut self) -> Result<(), End> {
        if !self.has_unflushed() {
            return Ok(());
        }
        let Connection { socket, out, .. } = self;
        let write = async {
            for message in out.drain(..) {
                socket.feed(message).await?;
            }
            socket.flush().await
        };
        let shutdown = self.node.shutdown.clone();
        let written = tokio::select! {
            written = tokio::time::timeout(self.node.limits.stall_timeout, write) => written,
            _ = shutdown.cancelled() => return Err(End::Close(1001, "server shutting down")),
        };
        match written {
            Ok(Ok(())) => {
                let metrics = self.node.metrics;
                let (live, replayed) = (self.unflushed_live, self.unflushed_replayed);
                (self.unflushed_live, self.unflushed_replayed) = (0, 0);
                metrics.events_out.increment(live + replayed);
                if replayed > 0 {
                    metrics.events_replayed.increment(replayed);
                }
                if let Some(log_time_ms) = self.oldest_unflushed_ms.take() {
                    let lag_ms = chrono::Utc::now().timestamp_millis() - log_time_ms;
                    metrics
                        .delivery_latency
                        .record(lag_ms.max(0) as f64 / 1000.0);
                }
                for channel in self.touched.drain(..) {
                    if let Some(sub) = self.subs.get_mut(&channel) {
                        sub.delivered = sub.cursor;
                    }
                }
                Ok(())
            }
            Ok(Err(e)) => {
                tracing::debug!(conn = self.id, error = %e, "write failed");
                Err(End::Gone)
            }
            Err(_) => Err(End::Stalled),
        }
    }

    /// Writes the session's cursors if they moved, and at least every
    /// [`SESSION_REFRESH`] so a quiet connection's session does not expire.
    fn save_session(&mut self) {
        let refresh = SESSION_REFRESH.min(self.node.sessions.ttl() / 2);
        if !self.dirty && self.saved_at.elapsed() < refresh {
            return;
        }
        let cursors = self
            .subs
            .iter()
            .map(|(channel, sub)| (*channel, sub.session_cursor()))
            .collect();
        match self
            .node
            .sessions
            .save(self.session, self.claims.sub, &cursors)
        {
            Ok(()) => {
                self.dirty = false;
                self.saved_at = Instant::now();
            }
            Err(e) => tracing::warn!(session = %self.session, error = %e, "session not saved"),
        }
    }

    /// Leaves the hub, saves the session and closes the socket.
    async fn finish(&mut self, end: End) {
        self.save_session();
        let channels: Vec<Channel> = self.subs.keys().copied().collect();
        for channel in channels {
            self.drop_subscription(channel);
        }
        let close = match end {
            End::Gone => None,
            End::Stalled => {
                self.node.metrics.slow_consumer_closes.increment(1);
                Some((
                    4008,
                    "stalled: the client read nothing for the stall timeout",
                ))
            }
            End::Close(code, reason) => Some((code, reason)),
        };
        if let Some((code, reason)) = close {
            self.out.clear();
            if code == 1011 {
                self.push_error(&FrameError::new(ErrorCode::Unavailable, reason, None));
            }
            let frame = CloseFrame {
                code: CloseCode::from(code),
                reason: reason.into(),
            };
            let Connection { socket, out, .. } = self;
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
                for message in out.drain(..) {
                    socket.feed(message).await?;
                }
                socket.send(Message::Close(Some(frame))).await?;
                socket.flush().await
            })
            .await;
        }
    }
}

/// Where a subscription with history starts, and up to where it replays.
struct ReplayPlan {
    /// Replay every event with `seq > after`.
    after: u64,
    /// The log's last sequence when the subscription joined the hub.
    target: u64,
    /// The oldest held sequence, when retention may have dropped events asked for.
    first_seq: Option<u64>,
}

async fn plan_replay(node: &Node, since: Since) -> Result<ReplayPlan, LogError> {
    let extent = node.log.extent().await?;
    let (after, incomplete) = match since {
        Since::Seq(n) => (n, extent.first_seq > n.saturating_add(1)),
        Since::Time(t) => {
            let start = node.log.seq_at_time(t).await?;
            let dropped_any = extent.first_seq > 1;
            let incomplete = dropped_any
                && match node.log.time_of_next(extent.first_seq).await? {
                    Some(oldest) => oldest > t,
                    None => true,
                };
            (start.saturating_sub(1), incomplete)
        }
    };
    Ok(ReplayPlan {
        after,
        target: extent.last_seq,
        first_seq: incomplete.then_some(extent.first_seq),
    })
}

/// A log request, bounded in time. The request's future lives on the heap
/// while it runs, so an idle connection's task is not sized for it.
async fn with_timeout<T>(
    f: impl std::future::Future<Output = Result<T, LogError>>,
) -> Result<T, LogError> {
    tokio::time::timeout(LOG_TIMEOUT, Box::pin(f))
        .await
        .unwrap_or_else(|_| Err(LogError::Read("timed out".into())))
}

/// The log failed mid-replay: close, and let the client resume later from
/// its cursor (nothing is skipped: the cursor only moves on delivery).
fn log_lost(e: LogError) -> End {
    tracing::warn!(error = %e, "log unavailable during a replay; closing");
    End::Close(1011, "event log unavailable; resume later")
}

fn not_subscribed(channel: Channel, request_id: Option<String>) -> FrameError {
    FrameError::new(
        ErrorCode::NotFound,
        format!("not subscribed to {channel}"),
        request_id,
    )
}

/// Envelopes are built from UTF-8 text; a frame that is not (never expected)
/// is sent as an empty object rather than invalid text.
pub fn frame_text(bytes: bytes::Bytes) -> Utf8Bytes {
    Utf8Bytes::try_from(bytes).unwrap_or_else(|_| Utf8Bytes::from_static("{}"))
}

#[cfg(test)]
mod tests {
    /// The budget for one connection's task future: with tungstenite's
    /// read buffer and the queue it keeps an idle connection under 16 KiB.
    const TASK_BUDGET: usize = 4096;

    #[test]
    fn an_idle_connection_task_stays_small() {
        fn output_size<F, A, B, C, D, Fut>(_: F) -> usize
        where
            F: FnOnce(A, B, C, D) -> Fut,
        {
            std::mem::size_of::<Fut>()
        }
        let size = output_size(super::run);
        assert!(
            size <= TASK_BUDGET,
            "connection::run future is {size} bytes"
        );
    }
}
