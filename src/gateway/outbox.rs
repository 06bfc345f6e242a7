//! A connection's outbox: the frames waiting for the next flush, which
//! subscriptions they move, and what the flush tells the metrics.
//!
//! Frames are gathered and written in one go, then flushed. A completed
//! flush says which subscriptions had event frames in it: the connection
//! then probes for their receipt (a ping after them), since a frame the
//! socket took can still die in a TCP buffer. Metrics are counted once per
//! flush, not once per frame, so fan-out pays one atomic add per batch.

use std::time::Duration;

use futures::SinkExt;
use tokio_tungstenite::tungstenite::{self, Message, Utf8Bytes};

use super::subscription::Frame;
use super::upgrade::Socket;
use crate::channel::Channel;
use crate::envelope::Text;
use crate::metrics::Metrics;

/// Why a flush did not complete.
#[derive(Debug)]
pub enum FlushError {
    /// The socket broke.
    Broken(tungstenite::Error),
    /// The socket took nothing for the stall timeout.
    Stalled,
}

#[derive(Default)]
pub struct Outbox {
    frames: Vec<Message>,
    /// Subscriptions with event frames since the last flush.
    touched: Vec<Channel>,
    /// Event frames since the last flush, counted at the flush.
    live: u64,
    replayed: u64,
    /// The log time of the oldest live event since the last flush: one
    /// latency sample per flush.
    oldest_live_ms: Option<i64>,
}

impl Outbox {
    /// Queues a subscription's frame.
    pub fn push(&mut self, channel: Channel, frame: Frame) {
        let text = match frame {
            Frame::Live(delivery) => {
                self.touch(channel);
                self.live += 1;
                self.oldest_live_ms.get_or_insert(delivery.log_time_ms);
                delivery.frame.clone()
            }
            Frame::Replayed(text) => {
                self.touch(channel);
                self.replayed += 1;
                text
            }
            Frame::Plain(text) => text,
        };
        self.frames.push(Message::Text(transport_text(text)));
    }

    /// Queues a connection-level frame (`hello`, `error`, `pong`, …).
    pub fn push_text(&mut self, text: impl Into<Text>) {
        self.frames.push(Message::Text(transport_text(text.into())));
    }

    /// A heartbeat ping.
    pub fn ping(&mut self) {
        self.frames.push(Message::Ping(Default::default()));
    }

    /// A ping whose pong tells that the client has every frame before it.
    pub fn probe(&mut self, id: u64) {
        let payload = bytes::Bytes::copy_from_slice(&id.to_be_bytes());
        self.frames.push(Message::Ping(payload));
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty() && self.touched.is_empty()
    }

    fn touch(&mut self, channel: Channel) {
        if self.touched.last() != Some(&channel) && !self.touched.contains(&channel) {
            self.touched.push(channel);
        }
    }

    /// Writes every queued frame and flushes. On success, returns the
    /// subscriptions whose frames the socket took, and counts the metrics.
    pub async fn flush(
        &mut self,
        socket: &mut Socket,
        stall_timeout: Duration,
        metrics: &Metrics,
    ) -> Result<std::vec::Drain<'_, Channel>, FlushError> {
        let Outbox { frames, .. } = self;
        let write = async {
            for message in frames.drain(..) {
                socket.feed(message).await?;
            }
            socket.flush().await
        };
        match tokio::time::timeout(stall_timeout, write).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(FlushError::Broken(e)),
            Err(_) => return Err(FlushError::Stalled),
        }
        let (live, replayed) = (
            std::mem::take(&mut self.live),
            std::mem::take(&mut self.replayed),
        );
        if live + replayed > 0 {
            metrics.events_out.increment(live + replayed);
        }
        if replayed > 0 {
            metrics.events_replayed.increment(replayed);
        }
        if let Some(log_time_ms) = self.oldest_live_ms.take() {
            let lag_ms = chrono::Utc::now().timestamp_millis() - log_time_ms;
            metrics
                .delivery_latency
                .record(lag_ms.max(0) as f64 / 1000.0);
        }
        Ok(self.touched.drain(..))
    }

    /// Writes the queued frames, then a close frame, by `deadline`; the
    /// last words of a connection, so errors are of no further use.
    pub async fn close(
        &mut self,
        socket: &mut Socket,
        close: tungstenite::protocol::CloseFrame,
        deadline: tokio::time::Instant,
    ) {
        let frames = &mut self.frames;
        let _ = tokio::time::timeout_at(deadline, async {
            for message in frames.drain(..) {
                socket.feed(message).await?;
            }
            socket.send(Message::Close(Some(close))).await?;
            socket.flush().await
        })
        .await;
    }
}

/// A frame's text as the WebSocket library takes it, without copying or
/// checking it again.
fn transport_text(text: Text) -> Utf8Bytes {
    // SAFETY: `Text` holds valid UTF-8 by construction: its only
    // constructors take a `String` or a `&'static str` (see `envelope::Text`).
    unsafe { Utf8Bytes::from_bytes_unchecked(text.into_bytes()) }
}
