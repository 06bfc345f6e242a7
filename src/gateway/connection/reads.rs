//! A replaying subscription's read of the log: from the node's window of
//! recent events while it holds the gap (no request to NATS at all), else
//! from the stream, under the node's bound on stream replays.
//!
//! A read starts in the window when the window holds every event after
//! its position, and moves to the stream for good if the window drops
//! events it has not read yet. A stream read first waits for one of the
//! node's `max_stream_replays` permits, in arrival order, and holds it
//! until the read is dropped: a storm of old gaps queues up instead of
//! crowding NATS, and live delivery goes on meanwhile (the wait is a stream
//! the connection polls, not an `await` in its loop).
//!
//! Either way the subscription sees the same steps: events in `seq` order
//! with how many are pending after them, and `Idle` when the read has
//! nothing more for now.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use futures::{FutureExt, Stream, StreamExt};
use tokio::sync::{watch, OwnedSemaphorePermit};

use super::plan::with_timeout;
use crate::channel::Channel;
use crate::gateway::window::Recent;
use crate::gateway::Node;
use crate::log::{LogError, LogRead, Op, ReadItem, RequestErrorKind};
use crate::metrics::Metrics;

/// Events taken from the window at a time.
const WINDOW_BATCH: usize = 64;

/// One step of a read.
pub(super) enum Step {
    /// An event read from the window; `pending`: 0 when the read has
    /// caught up with the window's end.
    Window(Arc<Recent>, u64),
    /// A message read from the stream.
    Log(Box<ReadItem>),
    /// Nothing more to read for now.
    Idle,
}

/// A read of one channel from a position on; see the module documentation.
pub(super) struct Read {
    node: Arc<Node>,
    channel: Channel,
    state: State,
}

enum State {
    Window(WindowRead),
    /// Waiting for a stream replay permit, then creating the consumer.
    Opening(BoxFuture<'static, Result<Reading, LogError>>),
    Stream(Box<Reading>),
    /// The stream was recreated under the window: the connection restarts
    /// its subscriptions and drops this read.
    Stale,
}

struct WindowRead {
    generation: u64,
    /// The last `seq` looked at.
    after: u64,
    batch: VecDeque<Arc<Recent>>,
    at_end: bool,
    /// Whether the subscription knows the read is idle (an event with
    /// `pending` 0, or `Idle`) since it last got an event.
    told_idle: bool,
    grew: watch::Receiver<u64>,
    waiting: Option<BoxFuture<'static, ()>>,
}

struct Reading {
    read: LogRead,
    told_idle: bool,
    _permit: OwnedSemaphorePermit,
}

impl Read {
    /// Reads `channel`'s events with `seq > after`.
    pub(super) fn start(node: &Arc<Node>, channel: Channel, after: u64) -> Read {
        let window = &node.window;
        let generation = window.generation();
        let state = if window.holds_after(after) {
            node.metrics.window_replays.increment(1);
            State::Window(WindowRead {
                generation,
                after,
                batch: VecDeque::new(),
                at_end: false,
                told_idle: false,
                grew: window.watch(),
                waiting: None,
            })
        } else {
            State::Opening(open(node.clone(), channel, after))
        };
        Read {
            node: node.clone(),
            channel,
            state,
        }
    }
}

/// A stream read from `after + 1`, once a permit is free.
fn open(
    node: Arc<Node>,
    channel: Channel,
    after: u64,
) -> BoxFuture<'static, Result<Reading, LogError>> {
    async move {
        let waiting = Waiting::new(node.metrics);
        let permit = node.stream_replays.clone().acquire_owned().await;
        drop(waiting);
        let permit = permit.map_err(|_| {
            LogError::request(
                Op::Read,
                RequestErrorKind::ShuttingDown,
                "waiting for a stream replay",
            )
        })?;
        let read = with_timeout(
            Op::Read,
            node.log.read_channel(channel, after.saturating_add(1)),
        )
        .await?;
        Ok(Reading {
            told_idle: false,
            read,
            _permit: permit,
        })
    }
    .boxed()
}

impl Stream for Read {
    type Item = Result<Step, LogError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            match &mut this.state {
                State::Window(read) => match read.poll_step(&this.node, this.channel, cx) {
                    WindowPoll::Step(step) => return Poll::Ready(Some(Ok(step))),
                    WindowPoll::Pending => return Poll::Pending,
                    WindowPoll::Behind(after) => {
                        this.state = State::Opening(open(this.node.clone(), this.channel, after));
                    }
                    WindowPoll::Stale => this.state = State::Stale,
                },
                State::Opening(opening) => match opening.poll_unpin(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Err(e)) => return Poll::Ready(Some(Err(e))),
                    Poll::Ready(Ok(reading)) => {
                        this.node.metrics.stream_replays.increment(1.0);
                        this.state = State::Stream(Box::new(reading));
                    }
                },
                State::Stream(reading) => {
                    if !reading.told_idle && reading.read.initial_pending == 0 {
                        reading.told_idle = true;
                        return Poll::Ready(Some(Ok(Step::Idle)));
                    }
                    reading.told_idle = true;
                    return reading
                        .read
                        .poll_next_unpin(cx)
                        .map(|item| item.map(|item| item.map(|item| Step::Log(Box::new(item)))));
                }
                State::Stale => return Poll::Pending,
            }
        }
    }
}

impl Drop for Read {
    fn drop(&mut self) {
        if matches!(self.state, State::Stream(_)) {
            self.node.metrics.stream_replays.decrement(1.0);
        }
    }
}

/// Counts a read waiting for a permit, however the wait ends.
struct Waiting(&'static Metrics);

impl Waiting {
    fn new(metrics: &'static Metrics) -> Waiting {
        metrics.stream_replays_waiting.increment(1.0);
        Waiting(metrics)
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.stream_replays_waiting.decrement(1.0);
    }
}

enum WindowPoll {
    Step(Step),
    Pending,
    /// The window dropped events after this `seq` before they were read.
    Behind(u64),
    Stale,
}

impl WindowRead {
    fn poll_step(&mut self, node: &Node, channel: Channel, cx: &mut Context<'_>) -> WindowPoll {
        // Scans without a new event before letting others run.
        let mut rounds = 0;
        loop {
            if let Some(event) = self.batch.pop_front() {
                let caught_up = self.batch.is_empty() && self.at_end;
                self.told_idle = caught_up;
                return WindowPoll::Step(Step::Window(event, u64::from(!caught_up)));
            }
            if self.at_end {
                if !self.told_idle {
                    self.told_idle = true;
                    return WindowPoll::Step(Step::Idle);
                }
                // Wait for the window to grow, then look again.
                let waiting = self.waiting.get_or_insert_with(|| {
                    let mut grew = self.grew.clone();
                    async move {
                        let _ = grew.changed().await;
                    }
                    .boxed()
                });
                if waiting.poll_unpin(cx).is_pending() {
                    return WindowPoll::Pending;
                }
                self.waiting = None;
                self.at_end = false;
            }
            if rounds == 4 {
                cx.waker().wake_by_ref();
                return WindowPoll::Pending;
            }
            rounds += 1;
            // Marks the window's end as seen before looking, so a later
            // event wakes the wait above.
            self.grew.borrow_and_update();
            let Some(batch) =
                node.window
                    .read_after(channel, self.after, WINDOW_BATCH, self.generation)
            else {
                return if node.window.generation() != self.generation {
                    WindowPoll::Stale
                } else {
                    WindowPoll::Behind(self.after)
                };
            };
            self.after = batch.through;
            self.at_end = batch.at_end;
            self.batch.extend(batch.events);
        }
    }
}
