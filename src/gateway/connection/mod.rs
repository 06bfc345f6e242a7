//! One WebSocket connection's task: the `select!` loop over the socket, the
//! hub's queue, the replays' log reads and the timers; and how a connection
//! ends ([`End`]).
//!
//! The task owns everything of its connection, and the transport only
//! reads and writes. The delivery rules are not here: each subscription is
//! a sans-IO machine ([`super::subscription`]) that this task feeds and
//! whose log requests it answers ([`replay`]); frames wait in the
//! [`Outbox`] until a flush; client frames are dispatched in [`frames`]; the
//! session's cursors are kept in [`session`].

mod deadlines;
mod frames;
mod reads;
mod replay;
mod session;
mod subs;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, SinkExt, StreamExt};
use tokio_stream::StreamMap;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message};

use super::hub::{Delivery, Inbox, Mailbox, Wake};
use super::outbox::{FlushError, Outbox};
use super::protocol::{self, Close, ErrorCode, FrameError};
use super::rate::RateWindow;
use super::subscription::{Action, Actions, Frame, Rules, REPLAY_BUFFER};
use super::upgrade::{self, Socket};
use super::Node;
use crate::channel::{Channel, Id};
use crate::token::Claims;
use deadlines::Deadlines;

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
    session: Option<Id>,
    held: impl Send + 'static,
) {
    let opening = Box::new(Opening {
        node: node.clone(),
        on_upgrade,
        config: upgrade::config(node.limits.max_frame_bytes),
        claims,
        session,
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
    session: Option<Id>,
}

/// A connection's task: every connection holds this future for its whole
/// life, idle or not.
async fn task<H>(opening: Box<Opening>, held: H) {
    let _held = held;
    run(opening).await;
}

/// The size of a connection task's future, which every connection
/// allocates once (the benches report it).
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
enum End {
    /// The socket broke or reached its end: nothing more to send.
    Gone,
    /// The client sent a Close frame: it gets its answer, then the end.
    ClosedByClient,
    /// We close, with this code and reason.
    Close(Close),
}

/// Runs one connection, from its upgrade to its end.
///
/// The task holds this future for the connection's whole life, so its cold
/// paths (the upgrade, client frames, replays' log requests, flushes, the
/// final close) are boxed and cost memory only while they run; see the
/// test `an_idle_connection_task_stays_small`.
async fn run(opening: Box<Opening>) {
    let Opening {
        node,
        on_upgrade,
        config,
        claims,
        session,
    } = *opening;
    let Some(socket) = Box::pin(upgrade::accept(on_upgrade, config)).await else {
        return;
    };
    let (mailbox, queue) = Mailbox::new(claims.sub, node.limits.send_queue);
    let limits = &node.limits;
    let mut conn = Connection {
        id: node.next_connection_id(),
        rules: Rules {
            user: claims.sub,
            replay_buffer: REPLAY_BUFFER,
        },
        bad_frames: RateWindow::new(limits.bad_frames_per_minute, frames::ABUSE_WINDOW),
        session: session::Keeper::new(),
        receipts: session::Receipts::default(),
        node: node.clone(),
        socket,
        claims,
        mailbox,
        queue,
        subs: subs::Subs::default(),
        replays: StreamMap::new(),
        scratch: Actions::new(),
        requests: VecDeque::new(),
        outbox: Outbox::default(),
        typing: HashMap::new(),
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
    rules: Rules,
    mailbox: Arc<Mailbox>,
    queue: Inbox,
    subs: subs::Subs,
    /// The log reads of replaying subscriptions.
    replays: StreamMap<Channel, reads::Read>,
    /// The machines' output, reused from one input to the next.
    scratch: Actions,
    /// Machine output that starts with a log request, in order: answered
    /// before the next input (see `replay`).
    requests: VecDeque<(Channel, Actions)>,
    outbox: Outbox,
    /// The typing limit, per channel that has typed.
    typing: HashMap<Channel, RateWindow>,
    bad_frames: RateWindow,
    session: session::Keeper,
    receipts: session::Receipts,
}

impl Connection {
    async fn serve(&mut self, requested_session: Option<Id>) -> Result<(), End> {
        Box::pin(self.open_session(requested_session)).await?;
        Box::pin(self.flush()).await?;

        let shutdown = self.node.shutdown.clone();
        let mut deadlines = Deadlines::new(
            &self.claims,
            self.node.limits.heartbeat,
            self.node.sessions().flush_interval(),
        );
        let timer = tokio::time::sleep_until(deadlines.next());
        tokio::pin!(timer);
        // Waits once for the whole life of the connection: made afresh for
        // every turn of the loop, it took the node's shutdown token's lock
        // twice per wake-up, shared by every connection.
        let cancelled = shutdown.cancelled();
        tokio::pin!(cancelled);

        loop {
            tokio::select! {
                biased;
                _ = &mut cancelled => return Err(End::Close(Close::ShuttingDown)),
                _ = &mut timer => {
                    let now = tokio::time::Instant::now();
                    if now >= deadlines.expiry {
                        return Err(End::Close(Close::TokenExpired));
                    }
                    if now >= deadlines.heartbeat {
                        self.outbox.ping();
                        deadlines.heartbeat = now + deadlines.heartbeat_every;
                    }
                    if now >= deadlines.cursors {
                        self.save_session();
                        deadlines.cursors = now + deadlines.cursors_every;
                    }
                    if deadlines.probe.is_some_and(|due| now >= due) {
                        self.send_probe();
                    }
                }
                frame = self.socket.next() => Box::pin(self.on_socket(frame)).await?,
                wake = self.queue.recv() => match wake {
                    Wake::Flagged => self.on_lagged(),
                    Wake::Delivery(delivery) => {
                        self.on_live(delivery);
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
                Some((channel, item)) = self.replays.next(), if !self.replays.is_empty() => {
                    Box::pin(self.on_read(channel, item)).await?;
                    for _ in 1..WRITE_BATCH {
                        match self.replays.next().now_or_never() {
                            Some(Some((channel, item))) => Box::pin(self.on_read(channel, item)).await?,
                            _ => break,
                        }
                    }
                }
            }
            if !self.requests.is_empty() {
                Box::pin(self.answer_requests()).await?;
            }
            if !self.outbox.is_empty() {
                Box::pin(self.flush()).await?;
            }
            deadlines.probe = self.receipts.due();
            let next = deadlines.next();
            if next != timer.deadline() {
                timer.as_mut().reset(next);
            }
        }
    }

    /// Takes up to `most` queued deliveries without waiting; returns how many.
    fn drain_queue(&mut self, most: usize) -> usize {
        let mut taken = 0;
        // A log request (never expected from live input) is answered first.
        while taken < most && self.requests.is_empty() {
            match self.queue.try_recv() {
                Some(delivery) => self.on_live(delivery),
                None => break,
            }
            taken += 1;
        }
        taken
    }

    /// A live delivery from the hub.
    fn on_live(&mut self, delivery: Arc<Delivery>) {
        let channel = delivery.channel;
        let Some(sub) = self.subs.get_mut(&channel) else {
            return;
        };
        let mut out = std::mem::take(&mut self.scratch);
        sub.on_live(&self.rules, delivery, &mut out);
        self.apply(channel, &mut out);
        self.scratch = out;
    }

    /// Carries out a machine's output: frames go to the outbox, ended
    /// subscriptions are forgotten. From the first log request on, the rest
    /// waits in `requests`, in order.
    fn apply(&mut self, channel: Channel, out: &mut Actions) {
        while let Some(action) = out.pop_front() {
            match action {
                Action::Write(frame) => {
                    if !matches!(frame, Frame::Plain(_)) {
                        self.session.touch(); // a cursor moved
                    }
                    self.outbox.push(channel, frame);
                }
                Action::StopRead => {
                    self.replays.remove(&channel);
                }
                Action::End(_) => self.forget(channel),
                request => {
                    out.push_front(request);
                    self.requests.push_back((channel, std::mem::take(out)));
                    return;
                }
            }
        }
    }

    /// Removes a subscription from the connection and the hub.
    fn forget(&mut self, channel: Channel) {
        if self.subs.remove(&channel).is_some() {
            self.node.hub.unsubscribe(channel, self.id);
            self.node.metrics.subscriptions.decrement(1.0);
            self.session.ended(channel);
        }
        self.replays.remove(&channel);
        self.typing.remove(&channel);
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
                Ok(frame) => self.on_frame(frame).await,
                Err(error) => self.reject(error),
            },
            Some(Ok(Message::Pong(payload))) => {
                self.on_pong(&payload);
                Ok(())
            }
            Some(Ok(Message::Binary(_))) => self.reject(FrameError::new(
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
                tracing::debug!(conn = self.id, error = %e, "protocol violation");
                Err(End::Close(Close::ProtocolError))
            }
            Some(Err(e)) => {
                tracing::debug!(conn = self.id, error = %e, "socket error");
                Err(End::Gone)
            }
        }
    }

    /// Writes every pending frame; a socket that takes none of it for the
    /// stall timeout is given up. What the socket took waits for a receipt
    /// probe.
    async fn flush(&mut self) -> Result<(), End> {
        let Connection {
            socket,
            outbox,
            receipts,
            node,
            ..
        } = self;
        let flushed = tokio::select! {
            flushed = outbox.flush(socket, node.limits.stall_timeout, node.metrics) => flushed,
            _ = node.shutdown.cancelled() => return Err(End::Close(Close::ShuttingDown)),
        };
        match flushed {
            Ok(channels) => {
                for channel in channels {
                    receipts.written(channel);
                }
                Ok(())
            }
            Err(FlushError::Broken(e)) => {
                tracing::debug!(conn = self.id, error = %e, "write failed");
                Err(End::Gone)
            }
            Err(FlushError::Stalled) => Err(End::Close(Close::Stalled)),
        }
    }

    /// Leaves the hub, saves the session and closes the socket with a real
    /// close handshake, within [`CLOSE_TIMEOUT`].
    async fn finish(&mut self, end: End) {
        Box::pin(self.close_session(matches!(end, End::Close(_)))).await;
        self.session.close();
        let channels: Vec<Channel> = self.subs.keys().copied().collect();
        for channel in channels {
            self.forget(channel);
        }
        let deadline = tokio::time::Instant::now() + CLOSE_TIMEOUT;
        let close = match end {
            End::Gone => return,
            End::ClosedByClient => {
                // The WebSocket layer queued the answer (the client's code
                // echoed); sending it completes the handshake.
                let _ = tokio::time::timeout_at(deadline, self.socket.flush()).await;
                return;
            }
            End::Close(close) => close,
        };
        if close == Close::Stalled {
            self.node.metrics.slow_consumer_closes.increment(1);
        }
        // What was queued goes out first (say the `error` that explains the
        // close), then the Close frame.
        if let Some(error) = close.explanation() {
            self.outbox.push_text(protocol::error(&error));
        }
        let frame = CloseFrame {
            code: CloseCode::from(close.code()),
            reason: close.reason().into(),
        };
        self.outbox.close(&mut self.socket, frame, deadline).await;
        // Then read and discard until the client's Close or the end: a
        // socket closed with unread input is reset by the kernel, and the
        // client's kernel throws away what it had not read yet, the
        // close frame included.
        let _ = tokio::time::timeout_at(deadline, drain(&mut self.socket)).await;
    }
}

/// Reads until the client's Close frame or the end of the stream. Past a
/// frame the WebSocket layer cannot read (too large, malformed), the rest is
/// read as bytes and thrown away, until they end with what can only be the
/// client's Close reply, so that the server ends the TCP connection once the
/// handshake is done (as it does after its other closes), not at
/// [`CLOSE_TIMEOUT`].
async fn drain(socket: &mut Socket) {
    use futures::stream::FusedStream;
    use tokio::io::AsyncReadExt;
    // A stream that returned an error reads nothing more as frames.
    while !socket.is_terminated() {
        match socket.next().await {
            Some(Ok(Message::Close(_))) | None => return,
            Some(Ok(_)) => {}
            Some(Err(_)) => break,
        }
    }
    let mut tail = Vec::with_capacity(2 * MAX_CLOSE_FRAME);
    let mut sink = [0u8; 1024];
    while let Ok(n) = socket.get_mut().read(&mut sink).await {
        if n == 0 {
            return;
        }
        tail.extend_from_slice(&sink[..n]);
        if ends_with_client_close(&tail) {
            return;
        }
        let keep = tail.len().saturating_sub(MAX_CLOSE_FRAME);
        tail.drain(..keep);
    }
}

/// The longest Close frame a client sends: a 2-byte head, a 4-byte mask
/// and at most 125 bytes of payload (a control frame's limit).
const MAX_CLOSE_FRAME: usize = 2 + 4 + 125;

/// Whether `bytes` end with a whole masked Close frame. After the stream
/// lost its framing (the frame it failed on was left partly unread), this
/// is how the client's Close reply is told apart: the reply is the last
/// thing a client sends. A payload that happens to end the same way only
/// ends a connection that was closing anyway a little early.
fn ends_with_client_close(bytes: &[u8]) -> bool {
    (0..=125usize).any(|len| {
        let size = 6 + len;
        bytes.len() >= size && {
            let head = &bytes[bytes.len() - size..];
            // FIN with the Close opcode; the mask bit with the length.
            head[0] == 0x88 && usize::from(head[1]) == 0x80 | len
        }
    })
}

#[cfg(test)]
mod tests {
    use super::ends_with_client_close;

    fn close_frame(payload: &[u8]) -> Vec<u8> {
        let mut out = vec![0x88, 0x80 | payload.len() as u8, 1, 2, 3, 4];
        out.extend(
            payload
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ [1, 2, 3, 4][i % 4]),
        );
        out
    }

    #[test]
    fn a_client_close_is_found_at_the_end_of_unframed_input() {
        let mut input = vec![0x81, 0xfe, 0xff, 0xff, 9, 9, 9, 9];
        input.extend(std::iter::repeat_n(b'x', 300));
        assert!(!ends_with_client_close(&input));
        for payload in [&b""[..], &1002u16.to_be_bytes(), &[b'r'; 123]] {
            let mut bytes = input.clone();
            bytes.extend(close_frame(payload));
            assert!(ends_with_client_close(&bytes), "{payload:?}");
            assert!(ends_with_client_close(&close_frame(payload)));
            bytes.push(0);
            assert!(!ends_with_client_close(&bytes));
        }
        // An unmasked close (the server's own form) is not the client's.
        assert!(!ends_with_client_close(&[0x88, 0x02, 0x03, 0xe8]));
        assert!(!ends_with_client_close(&[]));
    }

    /// The budget for one connection's task future: with the transport,
    /// the queue and the subscription it keeps an idle connection near 4 KiB.
    const TASK_BUDGET: usize = 2048;

    #[test]
    fn an_idle_connection_task_stays_small() {
        let size = super::task_bytes();
        assert!(
            size <= TASK_BUDGET,
            "a connection task's future is {size} bytes"
        );
    }
}
