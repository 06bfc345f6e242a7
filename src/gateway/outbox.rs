//! A connection's outbox: the frames waiting for the next flush, which
//! subscriptions they move, and what the flush tells the metrics.
//!
//! Frames are written by this module, not by the WebSocket library: each
//! is a header of at most 10 bytes (RFC 6455, section 5.2; a server's
//! frames are not masked) and the event's bytes, shared by every
//! subscriber, and a flush hands the socket up to [`SLICES_PER_WRITE`] of
//! those in one vectored write. Nothing is copied in user space, and
//! nothing is kept after a flush: the library's own write buffer would
//! keep the largest batch it ever held for the life of the connection.
//! The library still reads, answers the client's pings and writes the
//! close frame; its own output is flushed before ours, and ours is never
//! left half-written when it writes (a flush cut short resumes where it
//! stopped, at the next flush or before the close frame).
//!
//! On a connection that negotiated `permessage-deflate`, a text frame goes
//! compressed (RSV1 set) when it shrinks: a live event's compressed bytes
//! are made once per node and shared like its JSON
//! ([`super::deflate::Deflated`]); other frames are compressed on the way
//! in. Control frames never are.
//!
//! A completed flush says which subscriptions had event frames in it: the
//! connection then probes for their receipt (a ping after them), since a
//! frame the socket took can still die in a TCP buffer. Metrics are counted
//! once per flush, not once per frame, so fan-out pays one atomic add per
//! batch.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::time::Duration;

use bytes::Bytes;
use futures::SinkExt;
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::{self, Message};

use super::deflate::{self, Deflated};
use super::subscription::Frame;
use super::upgrade::Socket;
use crate::channel::Channel;
use crate::envelope::Text;
use crate::metrics::Metrics;

/// Most slices (a header and a payload per frame) handed to one write
/// call (Linux takes up to 1,024).
pub const SLICES_PER_WRITE: usize = 512;

/// A flush that carried fewer frames than this gives its storage back: an
/// idle connection keeps none, a busy one keeps what it reuses.
const KEEP_AFTER_FRAMES: u32 = 32;

/// Why a flush did not complete.
#[derive(Debug)]
pub enum FlushError {
    /// The socket broke.
    Broken(tungstenite::Error),
    /// The socket took nothing for the stall timeout.
    Stalled,
}

/// WebSocket opcodes (RFC 6455, section 5.2).
const TEXT: u8 = 0x1;
const BINARY: u8 = 0x2;
const PING: u8 = 0x9;

/// RSV1: the frame's message is compressed (RFC 7692, section 6).
const COMPRESSED: u8 = 0x40;

/// One frame as it goes on the wire: its header, then its payload.
struct WireFrame {
    head: [u8; 10],
    head_len: u8,
    payload: Bytes,
}

impl WireFrame {
    /// A final, unmasked frame (RFC 6455, section 5.2); `flags`: RSV1
    /// for a compressed one.
    fn new(opcode: u8, flags: u8, payload: Bytes) -> WireFrame {
        let mut head = [0u8; 10];
        head[0] = 0x80 | flags | opcode;
        let len = payload.len();
        let head_len = if len < 126 {
            head[1] = len as u8;
            2
        } else if let Ok(len) = u16::try_from(len) {
            head[1] = 126;
            head[2..4].copy_from_slice(&len.to_be_bytes());
            4
        } else {
            head[1] = 127;
            head[2..10].copy_from_slice(&(len as u64).to_be_bytes());
            10
        };
        WireFrame {
            head,
            head_len,
            payload,
        }
    }

    fn len(&self) -> usize {
        usize::from(self.head_len) + self.payload.len()
    }
}

#[derive(Default)]
pub struct Outbox {
    /// Frames not yet written, oldest first.
    frames: VecDeque<WireFrame>,
    /// Bytes of the first frame the socket already took.
    written: usize,
    /// Frames queued since the last completed flush.
    queued: u32,
    /// Subscriptions with event frames since the last flush.
    touched: Vec<Channel>,
    /// Event frames since the last flush, counted at the flush.
    /// (32 bits each: a flush carries far fewer, and the connection's
    /// task stays within its budget.)
    live: u32,
    replayed: u32,
    /// The log time of the oldest live event since the last flush: one
    /// latency sample per flush.
    oldest_live_ms: Option<i64>,
    /// Whether text frames go compressed when they shrink.
    compress: bool,
}

impl Outbox {
    /// Text frames from now on go compressed when they shrink (the
    /// connection negotiated `permessage-deflate`).
    pub fn compress(&mut self, on: bool) {
        self.compress = on;
    }

    /// Queues a subscription's frame.
    pub fn push(&mut self, channel: Channel, frame: Frame) {
        match frame {
            Frame::Live(delivery) => {
                self.touch(channel);
                self.live = self.live.saturating_add(1);
                self.oldest_live_ms.get_or_insert(delivery.log_time_ms);
                self.queue_text(delivery.frame.clone(), Some(&delivery.deflated));
            }
            Frame::Replayed(text) => {
                self.touch(channel);
                self.replayed = self.replayed.saturating_add(1);
                self.queue_text(text, None);
            }
            Frame::Plain(text) => self.queue_text(text, None),
        }
    }

    /// Queues a connection-level frame (`hello`, `error`, `pong`, …).
    pub fn push_text(&mut self, text: impl Into<Text>) {
        self.queue_text(text.into(), None);
    }

    /// Queues a binary frame, compressed like text. The gateway's protocol
    /// has none; the transport's echo (examples/autobahn_echo.rs) sends
    /// them.
    pub fn push_binary(&mut self, payload: Bytes) {
        match deflate::deflate(&payload).filter(|_| self.compress) {
            Some(compressed) => self.queue(BINARY, COMPRESSED, compressed),
            None => self.queue(BINARY, 0, payload),
        }
    }

    /// A heartbeat ping.
    pub fn ping(&mut self) {
        self.queue(PING, 0, Bytes::new());
    }

    /// A ping whose pong tells that the client has every frame before it.
    pub fn probe(&mut self, id: u64) {
        self.queue(PING, 0, Bytes::copy_from_slice(&id.to_be_bytes()));
    }

    /// A text frame, compressed when the connection compresses and it
    /// shrinks: from `shared`, the node's one compressed copy, when given.
    /// `Text` holds UTF-8 by construction (`envelope::Text`), so a text
    /// frame's payload is valid as RFC 6455 requires.
    fn queue_text(&mut self, text: Text, shared: Option<&Deflated>) {
        if self.compress {
            let compressed = match shared {
                Some(slot) => slot.of(&text),
                None => deflate::deflate(&text),
            };
            if let Some(compressed) = compressed {
                return self.queue(TEXT, COMPRESSED, compressed);
            }
        }
        self.queue(TEXT, 0, text.into_bytes());
    }

    fn queue(&mut self, opcode: u8, flags: u8, payload: Bytes) {
        self.frames
            .push_back(WireFrame::new(opcode, flags, payload));
        self.queued = self.queued.saturating_add(1);
    }

    /// Takes every queued frame as a flush would write it, without a
    /// socket: `(opcode, payload)` each, and the subscriptions whose event
    /// frames they were. For tests of the connection's state.
    #[cfg(test)]
    pub(crate) fn take_written(&mut self) -> (Vec<(u8, Bytes)>, Vec<Channel>) {
        let frames = std::mem::take(&mut self.frames)
            .into_iter()
            .map(|f| (f.head[0] & 0x0f, f.payload))
            .collect();
        self.written = 0;
        self.queued = 0;
        self.live = 0;
        self.replayed = 0;
        self.oldest_live_ms = None;
        (frames, std::mem::take(&mut self.touched))
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty() && self.touched.is_empty()
    }

    fn touch(&mut self, channel: Channel) {
        if self.touched.last() != Some(&channel) && !self.touched.contains(&channel) {
            self.touched.push(channel);
        }
    }

    /// Writes every queued frame (after what the WebSocket library has
    /// pending, a pong it owes). On success, returns the subscriptions
    /// whose frames the socket took, and counts the metrics.
    pub async fn flush(
        &mut self,
        socket: &mut Socket,
        stall_timeout: Duration,
        metrics: &Metrics,
    ) -> Result<Vec<Channel>, FlushError> {
        let write = async {
            socket.flush().await?;
            self.write_frames(socket)
                .await
                .map_err(tungstenite::Error::Io)
        };
        match tokio::time::timeout(stall_timeout, write).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(FlushError::Broken(e)),
            Err(_) => return Err(FlushError::Stalled),
        }
        if std::mem::take(&mut self.queued) < KEEP_AFTER_FRAMES {
            self.frames = VecDeque::new();
        }
        let (live, replayed) = (
            u64::from(std::mem::take(&mut self.live)),
            u64::from(std::mem::take(&mut self.replayed)),
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
        // Handed over with its storage: an idle connection keeps none.
        Ok(std::mem::take(&mut self.touched))
    }

    /// Writes the queued frames to the socket's stream, many per call.
    /// Cancel-safe: what the socket took is accounted as it goes, so a
    /// later call goes on from there.
    async fn write_frames(&mut self, socket: &mut Socket) -> io::Result<()> {
        let io = socket.get_mut();
        while !self.frames.is_empty() {
            let n = {
                let mut slices = Vec::with_capacity((self.frames.len() * 2).min(SLICES_PER_WRITE));
                let mut skip = self.written;
                for frame in &self.frames {
                    if slices.len() + 2 > SLICES_PER_WRITE {
                        break;
                    }
                    let head = &frame.head[..usize::from(frame.head_len)];
                    if skip < head.len() {
                        slices.push(IoSlice::new(&head[skip..]));
                        skip = 0;
                    } else {
                        skip -= head.len();
                    }
                    if skip < frame.payload.len() {
                        slices.push(IoSlice::new(&frame.payload[skip..]));
                    }
                    skip = 0;
                }
                io.write_vectored(&slices).await?
            };
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            self.advance(n);
        }
        io.flush().await
    }

    /// The socket took `n` more bytes: drops the frames it took whole.
    fn advance(&mut self, mut n: usize) {
        while let Some(frame) = self.frames.front() {
            let left = frame.len() - self.written;
            if n < left {
                self.written += n;
                return;
            }
            n -= left;
            self.written = 0;
            self.frames.pop_front();
        }
    }

    /// Writes the queued frames, then a close frame, by `deadline`; the
    /// last words of a connection, so errors are of no further use.
    pub async fn close(
        &mut self,
        socket: &mut Socket,
        close: tungstenite::protocol::CloseFrame,
        deadline: tokio::time::Instant,
    ) {
        let _ = tokio::time::timeout_at(deadline, async {
            socket.flush().await?;
            self.write_frames(socket).await?;
            socket.send(Message::Close(Some(close))).await
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_use_the_shortest_length_form() {
        let head = |len: usize| {
            let f = WireFrame::new(TEXT, 0, Bytes::from(vec![b'x'; len]));
            f.head[..usize::from(f.head_len)].to_vec()
        };
        assert_eq!(head(0), [0x81, 0]);
        assert_eq!(head(125), [0x81, 125]);
        assert_eq!(head(126), [0x81, 126, 0, 126]);
        assert_eq!(head(65_535), [0x81, 126, 0xff, 0xff]);
        assert_eq!(head(65_536), [0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0]);
        let ping = WireFrame::new(PING, 0, Bytes::new());
        assert_eq!(&ping.head[..2], [0x89, 0]);
        let compressed = WireFrame::new(TEXT, COMPRESSED, Bytes::from_static(b"xy"));
        assert_eq!(&compressed.head[..2], [0xc1, 2]);
    }

    #[test]
    fn a_partial_write_resumes_inside_the_frame_it_stopped_in() {
        let mut outbox = Outbox::default();
        outbox.push_text(Text::from_static("abc")); // 2 + 3 bytes
        outbox.push_text(Text::from_static("defgh")); // 2 + 5 bytes
        outbox.advance(1);
        assert_eq!((outbox.frames.len(), outbox.written), (2, 1));
        outbox.advance(4);
        assert_eq!((outbox.frames.len(), outbox.written), (1, 0));
        outbox.advance(3);
        assert_eq!((outbox.frames.len(), outbox.written), (1, 3));
        outbox.advance(4);
        assert!(outbox.frames.is_empty());
        assert_eq!(outbox.written, 0);
    }
}
