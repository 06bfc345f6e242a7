//! One WebSocket connection's task: the driver around its [`State`]. It
//! moves bytes (frames from the socket, the state's outbox to it), feeds
//! the state its inputs (client frames, the hub's deliveries, the replays'
//! read steps, the answers to its log requests, the clock), and runs the
//! state's [`Effect`]s as futures polled by the same `select!`, so nothing
//! is ever awaited inline: a log request that answers late holds up only
//! the subscription that asked. And how a connection ends ([`End`]).
//!
//! The rules are not here: the connection's are in [`state`], each
//! subscription's in [`super::subscription`], both without I/O.

mod closing;
mod deadlines;
mod env;
mod plan;
mod reads;
mod session;
pub(crate) mod state;
mod subs;

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, SinkExt, StreamExt};
use tokio_stream::StreamMap;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message};

use super::deflate::Deflate;
use super::hub::{Inbox, Mailbox, Wake};
use super::outbox::FlushError;
use super::protocol::{self, Close, ErrorCode, FrameError};
use super::upgrade::{self, Socket};
use super::Node;
use crate::channel::{Channel, Id};
use crate::presence::view::Left;
use crate::token::{Claims, Verifier};
use env::NodeEnv;
use state::{Answer, Effect, State};

pub(crate) use state::Bounds;

pub use plan::LOG_TIMEOUT;
pub use session::{CLOSE_SAVE_TIMEOUT, PROBE_DELAY, SESSION_REFRESH};
pub use state::{ABUSE_WINDOW, REFRESHES_PER_MINUTE, TYPING_WINDOW};

/// Items taken from the queue or a replay before the socket is flushed.
pub const WRITE_BATCH: usize = 256;

/// How long a closing socket gets to take its last frames and close frame.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// Completes a WebSocket upgrade and runs the connection as a task of the
/// node, with the transport bounded by the limits. `held` (the user's
/// connection slot) is dropped when the task ends, however it ends.
pub(super) fn accept(
    node: &Arc<Node>,
    on_upgrade: hyper::upgrade::OnUpgrade,
    claims: Claims,
    keys: Arc<Verifier>,
    session: Option<Id>,
    deflate: Option<Deflate>,
    held: impl Send + 'static,
) {
    let opening = Box::new(Opening {
        node: node.clone(),
        on_upgrade,
        config: upgrade::config(node.limits.max_frame_bytes),
        claims,
        keys,
        session,
        deflate,
    });
    node.spawn(task(opening, held));
}

/// What a connection starts from, handed to its task in one box: a
/// future keeps a slot for each argument of its async fn for its whole
/// life, even once the value moved on (into the [`Connection`]), so the
/// arguments are one pointer.
pub struct Opening {
    node: Arc<Node>,
    on_upgrade: hyper::upgrade::OnUpgrade,
    config: tokio_tungstenite::tungstenite::protocol::WebSocketConfig,
    claims: Claims,
    /// Verifies the tokens of `refresh` frames.
    keys: Arc<Verifier>,
    session: Option<Id>,
    /// `permessage-deflate`, when the handshake agreed to it.
    deflate: Option<Deflate>,
}

/// A connection's task: every connection holds this future for its whole
/// life, idle or not.
async fn task<H>(opening: Box<Opening>, held: H) {
    run(opening).await;
    drop(held);
}

/// The size of a connection task's future, which every connection
/// allocates once. Public because only this crate can name the future: the
/// fanout bench reports it (docs/performance.md).
pub fn task_bytes() -> usize {
    fn output_size<F, A, B, Fut>(_: F) -> usize
    where
        F: FnOnce(A, B) -> Fut,
    {
        std::mem::size_of::<Fut>()
    }
    output_size(task::<()>)
}

/// How a connection ends.
#[derive(Debug)]
pub(crate) enum End {
    /// The socket broke or reached its end: nothing more to send.
    Gone,
    /// The client sent a Close frame: it gets its answer, then the end.
    ClosedByClient,
    /// We close, with this code and reason.
    Close(Close),
    /// The operator disconnected the user (4003), with this reason: the
    /// session is removed, not saved.
    Disconnected(Box<str>),
}

/// The next answer of the running requests (none running: pending).
async fn next_answer(requests: &mut Option<Requests>) -> Option<Option<Answer>> {
    match requests {
        Some(requests) => requests.next().await,
        None => std::future::pending().await,
    }
}

/// The state's log requests and typing publishes, running; each ends with
/// an answer for the state, or nothing.
type Requests = FuturesUnordered<BoxFuture<'static, Option<Answer>>>;

/// Runs one connection, from its upgrade to its end.
///
/// The task holds this future for the connection's whole life, so its cold
/// paths (the upgrade, the session's opening, client frames, flushes, the
/// final close) are boxed and cost memory only while they run; see the
/// test `an_idle_connection_task_stays_small`.
async fn run(opening: Box<Opening>) {
    // The upgrade is a boxed step of its own: its locals (the claims, the
    // handshake's future) would otherwise keep their slots in the task for
    // the connection's life.
    let Some((mut conn, session)) = Box::pin(connect(opening)).await else {
        return;
    };
    let node = conn.env.node.clone();
    node.metrics.connections.increment(1.0);
    let end = match conn.serve(session).await {
        Ok(()) => End::Gone,
        Err(end) => end,
    };
    node.users.unregister(conn.env.mailbox.user, conn.env.conn);
    Box::pin(conn.finish(end)).await;
    node.metrics.connections.decrement(1.0);
}

/// Completes the upgrade and makes the connection, registered with the
/// node's users; `None` when the upgrade failed. Also returns the session
/// the client asked to resume.
async fn connect(opening: Box<Opening>) -> Option<(Connection, Option<Id>)> {
    // Taken out of its box in a block of its own: the box is freed at the
    // end of the scope that owns it.
    let Opening {
        node,
        on_upgrade,
        config,
        claims,
        keys,
        session,
        deflate,
    } = {
        let opening = opening;
        *opening
    };
    let socket = upgrade::accept(on_upgrade, config, deflate).await?;
    let (mailbox, queue) = Mailbox::new(claims.sub, node.limits.send_queue);
    let id = node.next_connection_id();
    let user = claims.sub;
    let name = claims.name.clone().map(String::into_boxed_str);
    let state = State::new(
        id,
        claims,
        node.conn_bounds.clone(),
        node.limits.bad_frames_per_minute,
    );
    node.users.register(user, id, mailbox.clone());
    let mut conn = Connection {
        env: NodeEnv {
            node: node.clone(),
            conn: id,
            mailbox,
            name,
        },
        keys,
        socket,
        queue,
        state,
        replays: StreamMap::new(),
        requests: None,
    };
    let compress = conn
        .socket
        .get_ref()
        .deflate()
        .is_some_and(|d| d.compresses());
    conn.state.outbox().compress(compress);
    Some((conn, session))
}

struct Connection {
    env: NodeEnv,
    keys: Arc<Verifier>,
    socket: Socket,
    queue: Inbox,
    state: State,
    /// The log reads of replaying subscriptions.
    replays: StreamMap<Channel, reads::Read>,
    /// Made with the first request: an empty `FuturesUnordered` already
    /// holds two allocations, which an idle connection need not pay.
    requests: Option<Requests>,
}

impl Connection {
    async fn serve(&mut self, requested_session: Option<Id>) -> Result<(), End> {
        // The opening is boxed: it runs once, and its state would be kept
        // for the connection's life.
        Box::pin(self.open(requested_session)).await?;
        // The node's shutdown reaches a connection as a flag of its mailbox
        // (`Users::shut_down_all`); one registered after that finds the
        // token cancelled here.
        if self.env.node.is_shutting_down() {
            return Err(End::Close(Close::ShuttingDown));
        }
        // Boxed: inline, its 112 bytes put the task in mimalloc's next
        // larger size class (see `an_idle_connection_task_stays_small`).
        let mut timer = Box::pin(tokio::time::sleep_until(self.state.poll_timeout()));
        loop {
            tokio::select! {
                biased;
                _ = timer.as_mut() => {
                    let now = tokio::time::Instant::now();
                    self.state.on_timeout(&mut self.env, now)?;
                }
                frame = self.socket.next() => Box::pin(self.on_socket(frame)).await?,
                wake = self.queue.recv() => match wake {
                    Wake::Flagged => self.on_flagged()?,
                    Wake::Delivery(delivery) => {
                        self.state.on_delivery(&mut self.env, delivery);
                        let taken = 1 + self.drain_queue(WRITE_BATCH - 1);
                        if taken > 1 && taken < WRITE_BATCH {
                            // Events are coming faster than one per wake-up:
                            // let the router queue what it has in hand, so one
                            // write carries more of them. One event alone
                            // goes out at once (yielding would put its write
                            // behind every other woken connection's turn).
                            tokio::task::yield_now().await;
                            self.drain_queue(WRITE_BATCH - taken);
                        }
                    }
                },
                Some((channel, step)) = self.replays.next(), if !self.replays.is_empty() => {
                    self.state.on_read_step(&mut self.env, channel, step)?;
                    for _ in 1..WRITE_BATCH {
                        match self.replays.next().now_or_never() {
                            Some(Some((channel, step))) => {
                                self.state.on_read_step(&mut self.env, channel, step)?;
                            }
                            _ => break,
                        }
                    }
                }
                Some(answer) = next_answer(&mut self.requests), if self.requests.as_ref().is_some_and(|r| !r.is_empty()) => {
                    if self.requests.as_ref().is_some_and(|r| r.is_empty()) {
                        self.requests = None; // the last one ended: give its storage back
                    }
                    if let Some(answer) = answer {
                        self.state.on_answer(&mut self.env, answer)?;
                    }
                }
            }
            self.run_effects();
            if !self.state.outbox().is_empty() {
                Box::pin(self.flush()).await?;
            }
            let next = self.state.poll_timeout();
            if next != timer.deadline() {
                timer.as_mut().reset(next);
            }
        }
    }

    /// The session's record (the bucket: one round trip), then `hello`,
    /// flushed before anything else.
    async fn open(&mut self, requested_session: Option<Id>) -> Result<(), End> {
        let node = self.env.node.clone();
        let opened = tokio::select! {
            opened = node.sessions().open(requested_session, self.env.mailbox.user) => opened,
            _ = node.shutdown.cancelled() => return Err(End::Close(Close::ShuttingDown)),
        };
        self.state.open(&mut self.env, opened);
        self.run_effects();
        self.flush().await
    }

    /// Starts what the state asked for: reads in the replay map, log
    /// requests and typing publishes among the running requests.
    fn run_effects(&mut self) {
        while let Some(effect) = self.state.poll_effect() {
            let node = &self.env.node;
            let request = match effect {
                Effect::Read { channel, after } => {
                    let read = reads::Read::start(node, channel, after);
                    self.replays.insert(channel, read);
                    continue;
                }
                Effect::StopRead { channel } => {
                    self.replays.remove(&channel);
                    continue;
                }
                Effect::Plan {
                    channel,
                    ticket,
                    request,
                    claims,
                } => {
                    let node = node.clone();
                    async move {
                        let result = plan::plan(node, claims, request).await;
                        Some(Answer::Planned {
                            channel,
                            ticket,
                            result,
                        })
                    }
                    .boxed()
                }
                Effect::Probe {
                    channel,
                    ticket,
                    from,
                    target,
                } => {
                    let node = node.clone();
                    async move {
                        let result = plan::probe(node, channel, from).await;
                        Some(Answer::Probed {
                            channel,
                            ticket,
                            from,
                            target,
                            result,
                        })
                    }
                    .boxed()
                }
                Effect::Verify {
                    token,
                    ticket,
                    request_id,
                } => {
                    let keys = self.keys.clone();
                    async move {
                        let result = keys.verify(&token).await;
                        Some(Answer::Verified {
                            ticket,
                            request_id,
                            result,
                        })
                    }
                    .boxed()
                }
                Effect::PublishTyping(typing) => {
                    let node = node.clone();
                    async move {
                        node.log.publish_typing(typing).await;
                        None
                    }
                    .boxed()
                }
            };
            self.requests
                .get_or_insert_with(FuturesUnordered::new)
                .push(request);
        }
    }

    /// Takes up to `most` queued deliveries without waiting; returns how many.
    fn drain_queue(&mut self, most: usize) -> usize {
        let mut taken = 0;
        while taken < most {
            match self.queue.try_recv() {
                Some(delivery) => self.state.on_delivery(&mut self.env, delivery),
                None => break,
            }
            taken += 1;
        }
        taken
    }

    /// The hub flagged the connection: it dropped stored events for it
    /// (every subscription reads what it missed from the log), or the
    /// stream was recreated (every stored event still queued is the old
    /// stream's or in the new one's log: the queue is emptied first).
    fn on_flagged(&mut self) -> Result<(), End> {
        let mailbox = &self.env.mailbox;
        if mailbox.is_shut_down() {
            return Err(End::Close(Close::ShuttingDown));
        }
        if let Some(reason) = mailbox.disconnected() {
            return Err(End::Disconnected(reason.into()));
        }
        if mailbox.take_restarted() {
            while self.queue.try_recv().is_some() {}
            self.env.mailbox.take_lagged();
            self.state.on_stream_recreated(&mut self.env);
            return Ok(());
        }
        if mailbox.take_lagged() {
            self.state.on_lagged(&mut self.env);
        }
        if self.env.mailbox.take_presence_lost() {
            self.state.on_presence_lost(&mut self.env);
        }
        Ok(())
    }

    async fn on_socket(
        &mut self,
        frame: Option<Result<Message, tungstenite::Error>>,
    ) -> Result<(), End> {
        use tungstenite::error::{CapacityError, Error, ProtocolError};
        match frame {
            None => Err(End::Gone),
            Some(Ok(Message::Close(_))) => Err(End::ClosedByClient),
            Some(Ok(Message::Text(text))) => match protocol::decode(&text) {
                Ok(frame) => self.state.on_frame(&mut self.env, frame),
                Err(error) => self.state.on_bad_frame(error),
            },
            Some(Ok(Message::Pong(payload))) => {
                self.state.on_pong(&payload);
                Ok(())
            }
            Some(Ok(Message::Binary(_))) => self.state.on_bad_frame(FrameError::new(
                ErrorCode::BadRequest,
                "binary frames are not accepted: send JSON text frames",
                None,
            )),
            Some(Ok(_)) => Ok(()),
            Some(Err(Error::Capacity(CapacityError::MessageTooLong { .. }))) => {
                Err(End::Close(Close::TooLarge))
            }
            Some(Err(Error::Utf8(_))) => Err(End::Close(Close::InvalidUtf8)),
            Some(Err(Error::Protocol(ProtocolError::ResetWithoutClosingHandshake))) => {
                Err(End::Gone)
            }
            Some(Err(Error::Protocol(e))) => {
                tracing::debug!(conn = self.env.conn, error = %e, "protocol violation");
                Err(End::Close(Close::ProtocolError))
            }
            Some(Err(e)) => {
                tracing::debug!(conn = self.env.conn, error = %e, "socket error");
                Err(End::Gone)
            }
        }
    }

    /// Writes every pending frame; a socket that takes none of it for the
    /// stall timeout is given up. What the socket took waits for a receipt
    /// probe.
    async fn flush(&mut self) -> Result<(), End> {
        let Connection {
            socket, state, env, ..
        } = self;
        let node = &env.node;
        // Biased: a write the socket takes at once (nearly every one)
        // never polls the shutdown future, whose first poll takes the
        // token's lock, shared by every connection.
        let flushed = tokio::select! {
            biased;
            flushed = state.outbox().flush(socket, node.limits.stall_timeout, node.metrics) => flushed,
            _ = node.shutdown.cancelled() => return Err(End::Close(Close::ShuttingDown)),
        };
        match flushed {
            Ok(channels) => {
                state.on_flushed(channels);
                Ok(())
            }
            Err(FlushError::Broken(e)) => {
                tracing::debug!(conn = self.env.conn, error = %e, "write failed");
                Err(End::Gone)
            }
            Err(FlushError::Stalled) => Err(End::Close(Close::Stalled)),
        }
    }

    /// Saves the session, leaves the hub and closes the socket with a real
    /// close handshake, within [`CLOSE_TIMEOUT`]. When the node closes the
    /// connection (its client reconnects at once, maybe to another node),
    /// the close waits, at most [`CLOSE_SAVE_TIMEOUT`], until the session's
    /// last record is in the bucket.
    async fn finish(&mut self, end: End) {
        let closed_by_node = matches!(end, End::Close(_));
        if matches!(end, End::Disconnected(_)) {
            // The operator ended the user's sessions: this one is removed
            // (after whatever this connection handed over before).
            self.state.remove_session(&mut self.env);
        } else if closed_by_node && self.env.node.sessions().writer().is_some() {
            let (written, done) = tokio::sync::oneshot::channel();
            if self.state.close_save(&mut self.env, Some(written)) {
                let _ = tokio::time::timeout(CLOSE_SAVE_TIMEOUT, done).await;
            }
        } else {
            self.state.close_save(&mut self.env, None);
        }
        // A user the operator disconnected (a logout) is offline at once;
        // any other end may be a reload or a reconnect elsewhere.
        let how = match end {
            End::Disconnected(_) => Left::Ended,
            _ => Left::Dropped,
        };
        self.state.leave_all(&mut self.env, how);
        self.replays.clear();
        let deadline = tokio::time::Instant::now() + CLOSE_TIMEOUT;
        let close = match end {
            End::Gone => return,
            End::ClosedByClient => {
                // The WebSocket layer queued the answer (the client's code
                // echoed); sending it completes the handshake.
                let _ = tokio::time::timeout_at(deadline, self.socket.flush()).await;
                return;
            }
            End::Close(close) => (close, close.reason().into()),
            End::Disconnected(reason) => (Close::Disconnected, reason),
        };
        let (close, reason) = close;
        if close == Close::Stalled {
            self.env.node.metrics.slow_consumer_closes.increment(1);
        }
        // What was queued goes out first (say the `error` that explains the
        // close), then the Close frame.
        let outbox = self.state.outbox();
        if let Some(error) = close.explanation() {
            outbox.push_text(protocol::error(&error));
        }
        let frame = CloseFrame {
            code: CloseCode::from(close.code()),
            reason: crate::log::control::bounded_reason(&reason).into(),
        };
        outbox.close(&mut self.socket, frame, deadline).await;
        // Then read and discard until the client's Close or the end: a
        // socket closed with unread input is reset by the kernel, and the
        // client's kernel throws away what it had not read yet, the
        // close frame included.
        let _ = tokio::time::timeout_at(deadline, closing::drain(&mut self.socket)).await;
    }
}

#[cfg(test)]
mod tests {
    /// The budget for one connection's task future. tokio allocates it
    /// in a cell with its header and trailer (about 104 bytes), in
    /// multiples of 128 bytes, and the node's task tracker adds 8: under
    /// this budget, with the 24 bytes of the user's slot that the HTTP edge
    /// hands the task (`task::<()>` leaves it out), the cell fits
    /// mimalloc's 1,536-byte size class. The future was 1,864 bytes (a
    /// 2,048-byte cell) on 2026-12-06, and 2,048 (2,560) before that (`just
    /// bench fanout`, case (d), docs/performance.md).
    const TASK_BUDGET: usize = 1_400;

    #[test]
    fn an_idle_connection_task_stays_small() {
        let size = super::task_bytes();
        assert!(
            size <= TASK_BUDGET,
            "a connection task's future is {size} bytes"
        );
    }
}
