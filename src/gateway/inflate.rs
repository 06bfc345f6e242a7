//! Reading client frames: a byte stream between the socket and the
//! WebSocket library that hands the library small plain frames, and
//! inflates `permessage-deflate` messages (RFC 7692) into them.
//!
//! The library keeps one read buffer per socket for the socket's life, and
//! grows it to hold a frame's whole payload on top of what it has already
//! read: a single 1 KiB `refresh` would cost an idle connection 1 KiB until
//! it closes. So this stream reads each frame's header itself and hands the
//! library its header alone, then its payload: a data frame of more than
//! [`PIECE_BYTES`] is handed on as a fragmented run of plain frames of at
//! most that many bytes, each with the frame's own masking key (pieces
//! start on a multiple of four, where the key starts over, so nothing is
//! unmasked or masked again). Control frames, frames over the size bound,
//! and frames the library must refuse (reserved bits, reserved opcodes,
//! unmasked) go through as they are. The library reassembles the pieces
//! into the message, and frees what it assembled once the message is
//! read.
//!
//! On a connection that negotiated the extension, a compressed message's
//! frames are unmasked and inflated, and what they inflate to is handed on
//! the same way, in plain frames of at most [`PIECE_BYTES`] with a zero
//! masking key (a client's frames must be masked; a zero key leaves the
//! payload as it is). The library then checks them as it checks any
//! frame: UTF-8 of text, control frame rules, message size.
//!
//! A compressed message's inflater and buffers exist only while it is
//! read, and are dropped at its last frame: no context takeover is
//! negotiated, and an idle connection keeps no inflater.
//!
//! What the library cannot see is turned into a frame it refuses for the
//! right reason: a message inflating past the size bound becomes a frame
//! header over the bound (closed with 1009, like any too large message),
//! and broken compressed data, or a new message inside a compressed one,
//! becomes a frame with RSV1 set (closed with 1002). Frames with RSV1 set
//! where the extension does not allow it (control and continuation
//! frames, a connection without the extension) go through to be refused.
//! This module never writes: the write side passes straight through.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use flate2::{Decompress, FlushDecompress, Status};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::deflate::{Deflate, TAIL};
use super::upgrade::READ_BUFFER_BYTES;

/// The largest payload of a plain frame handed to the library: a header
/// and this fit the read buffer it starts with, so the buffer never grows.
/// A multiple of four, so a masked frame's pieces keep its masking key.
pub const PIECE_BYTES: usize = (READ_BUFFER_BYTES - MAX_HEAD) & !3;

const _: () = assert!(PIECE_BYTES >= 64 && PIECE_BYTES.is_multiple_of(4));

/// Compressed bytes read from the socket at a time.
const INPUT_BYTES: usize = 1024;

/// The longest frame header: 2 bytes, an 8-byte length and a masking key.
const MAX_HEAD: usize = 14;

/// The shortest header of a frame from a client (which masks them all): 2
/// bytes and a masking key.
const MIN_HEAD: usize = 6;

/// A socket's stream, handing the library small frames, and inflating
/// compressed messages when the connection negotiated `permessage-deflate`.
pub struct Inflating<S> {
    inner: S,
    /// Boxed: the stream lives in the connection's task, which is kept
    /// small.
    frames: Box<Frames>,
}

impl<S> Inflating<S> {
    /// `deflate`: what the handshake agreed to, if anything; a compressed
    /// message's inflated size is held to `max_message_bytes`.
    pub fn new(inner: S, deflate: Option<Deflate>, max_message_bytes: usize) -> Inflating<S> {
        Inflating {
            inner,
            frames: Box::new(Frames {
                deflate,
                max_bytes: u32::try_from(max_message_bytes).unwrap_or(u32::MAX),
                head: [0; MAX_HEAD],
                have: 0,
                step: Step::Head,
                split_left: 0,
                split_fin: false,
                message: None,
            }),
        }
    }

    /// What the handshake agreed to (kept here, where the connection
    /// already pays for it).
    pub fn deflate(&self) -> Option<Deflate> {
        self.frames.deflate
    }
}

/// The client's frames as this stream reads them.
struct Frames {
    /// `None` without the extension: every frame is plain.
    deflate: Option<Deflate>,
    /// A message's bound, inflated.
    max_bytes: u32,
    /// The header being read, or handed on.
    head: [u8; MAX_HEAD],
    /// Bytes of `head` read (while reading it) or handed on (after).
    have: u8,
    step: Step,
    /// Payload bytes of the plain frame being handed on in pieces that are
    /// not yet in a piece (0: none).
    split_left: u64,
    /// That frame's FIN, for its last piece.
    split_fin: bool,
    /// The compressed message being read.
    message: Option<Box<Inflation>>,
}

enum Step {
    /// Reading a frame header into `head`.
    Head,
    /// Handing on `head[have..len]`, then `then`.
    Emit { len: u8, then: After },
    /// Handing on this many payload bytes from the socket as they are (then
    /// the next piece of a split frame, or the next header).
    Pass { left: u64 },
    /// Reading a compressed frame's payload: `left` bytes to go, unmasked
    /// with `mask` from its byte `at`.
    Inflate {
        left: u64,
        mask: [u8; 4],
        at: u8,
        fin: bool,
    },
    /// Nothing more to read (the end, or a frame the library refuses).
    Done,
}

#[derive(Clone, Copy)]
enum After {
    Pass(u64),
    Done,
}

/// One compressed message being inflated.
struct Inflation {
    inflater: Decompress,
    /// The message's opcode, for its first plain frame (later ones are
    /// continuations).
    opcode: u8,
    first_sent: bool,
    /// Inflated bytes so far.
    total: usize,
    input: Box<[u8; INPUT_BYTES]>,
    in_start: usize,
    in_end: usize,
    /// Whether the trailer (RFC 7692, section 7.2.2) went in.
    tail_fed: bool,
    /// The inflater reached the end of a final block: the rest is ignored.
    ended: bool,
    /// A plain frame: header room, then the data. While `sealed`, its
    /// header is written and `frame[out..]` is handed on.
    frame: Vec<u8>,
    sealed: bool,
    out: usize,
    /// The sealed frame is the message's last.
    last: bool,
}

/// What a step of inflation ran into.
enum Broken {
    /// The message inflates past the bound.
    TooLarge,
    /// Broken compressed data.
    Corrupt,
}

impl Inflation {
    fn new(opcode: u8) -> Box<Inflation> {
        let mut frame = Vec::with_capacity(MAX_HEAD + PIECE_BYTES);
        frame.resize(MAX_HEAD, 0);
        Box::new(Inflation {
            inflater: Decompress::new(false),
            opcode,
            first_sent: false,
            total: 0,
            input: Box::new([0; INPUT_BYTES]),
            in_start: 0,
            in_end: 0,
            tail_fed: false,
            ended: false,
            frame,
            sealed: false,
            out: 0,
            last: false,
        })
    }

    /// Inflates input into the frame's room; returns whether the room
    /// filled up (the frame is then sealed).
    fn run(&mut self, max_bytes: usize) -> Result<bool, Broken> {
        if self.ended {
            self.in_start = self.in_end;
            return Ok(false);
        }
        let before = (self.inflater.total_in(), self.frame.len());
        let input = &self.input[self.in_start..self.in_end];
        // The Vec's spare capacity is the room for this frame's data.
        let status = self
            .inflater
            .decompress_vec(input, &mut self.frame, FlushDecompress::Sync)
            .map_err(|_| Broken::Corrupt)?;
        self.in_start += (self.inflater.total_in() - before.0) as usize;
        self.total += self.frame.len() - before.1;
        if self.total > max_bytes {
            return Err(Broken::TooLarge);
        }
        if status == Status::StreamEnd {
            self.ended = true;
            self.in_start = self.in_end;
        }
        let full = self.frame.len() - MAX_HEAD >= PIECE_BYTES;
        if full {
            self.seal(false);
        }
        Ok(full)
    }

    /// Writes the header of the frame's data and starts handing it on.
    fn seal(&mut self, last: bool) {
        let len = self.frame.len() - MAX_HEAD;
        let opcode = if self.first_sent { 0 } else { self.opcode };
        self.first_sent = true;
        let (head, head_len) = plain_head(last, opcode, len as u64);
        self.out = MAX_HEAD - head_len;
        self.frame[self.out..MAX_HEAD].copy_from_slice(&head[..head_len]);
        self.sealed = true;
        self.last = last;
    }
}

/// A masked frame header with a zero masking key: `(bytes, length)`.
fn plain_head(fin: bool, opcode: u8, len: u64) -> ([u8; MAX_HEAD], usize) {
    let mut head = [0u8; MAX_HEAD];
    head[0] = if fin { 0x80 } else { 0 } | opcode;
    let n = if len < 126 {
        head[1] = 0x80 | len as u8;
        2
    } else if let Ok(len) = u16::try_from(len) {
        head[1] = 0x80 | 126;
        head[2..4].copy_from_slice(&len.to_be_bytes());
        4
    } else {
        head[1] = 0x80 | 127;
        head[2..10].copy_from_slice(&len.to_be_bytes());
        10
    };
    (head, n + 4)
}

/// The header's full length once its first two bytes are known.
fn head_len(head: &[u8]) -> usize {
    if head.len() < 2 {
        return 2;
    }
    let masked = if head[1] & 0x80 != 0 { 4 } else { 0 };
    let extended = match head[1] & 0x7f {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    2 + extended + masked
}

impl Frames {
    fn poll_read<S: AsyncRead + Unpin>(
        &mut self,
        inner: &mut S,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            if let Some(message) = self.message.as_mut().filter(|m| m.sealed) {
                // The header alone, then the data (see the module's doc).
                let end = if message.out < MAX_HEAD {
                    MAX_HEAD
                } else {
                    message.frame.len()
                };
                let n = buf.remaining().min(end - message.out);
                buf.put_slice(&message.frame[message.out..message.out + n]);
                message.out += n;
                if message.out == message.frame.len() {
                    message.sealed = false;
                    message.frame.truncate(MAX_HEAD);
                    if message.last {
                        self.message = None;
                        self.step = Step::Head;
                    }
                }
                return Poll::Ready(Ok(()));
            }
            match &mut self.step {
                Step::Done => return Poll::Ready(Ok(())),
                Step::Head => {
                    let have = usize::from(self.have);
                    // A client's header is at least `MIN_HEAD` bytes: they
                    // come in one read, and what the first two say is left
                    // (if any) in a second.
                    let need = if have < 2 {
                        MIN_HEAD
                    } else {
                        head_len(&self.head[..have])
                    };
                    if have < need {
                        let mut read = ReadBuf::new(&mut self.head[have..need]);
                        ready!(Pin::new(&mut *inner).poll_read(cx, &mut read))?;
                        let n = read.filled().len();
                        if n == 0 {
                            // The end of the stream: the library sees it
                            // as such (a header cut short is lost with it).
                            self.step = Step::Done;
                            return Poll::Ready(Ok(()));
                        }
                        self.have += n as u8;
                        continue;
                    }
                    self.on_head(need);
                }
                Step::Emit { len, then } => {
                    let (len, then) = (usize::from(*len), *then);
                    let from = usize::from(self.have);
                    let n = buf.remaining().min(len - from);
                    buf.put_slice(&self.head[from..from + n]);
                    self.have += n as u8;
                    if from + n == len {
                        self.have = 0;
                        self.step = match then {
                            After::Pass(left) => Step::Pass { left },
                            After::Done => Step::Done,
                        };
                    }
                    return Poll::Ready(Ok(()));
                }
                Step::Pass { left } => {
                    if *left == 0 {
                        if self.split_left > 0 {
                            // A piece's header is 6 bytes, its key last.
                            let mut mask = [0; 4];
                            mask.copy_from_slice(&self.head[2..6]);
                            self.next_piece(0, mask);
                        } else {
                            self.step = Step::Head;
                        }
                        continue;
                    }
                    let most = usize::try_from(*left).unwrap_or(usize::MAX);
                    let n = if buf.remaining() <= most {
                        let before = buf.filled().len();
                        ready!(Pin::new(&mut *inner).poll_read(cx, buf))?;
                        buf.filled().len() - before
                    } else {
                        let mut part = ReadBuf::new(buf.initialize_unfilled_to(most));
                        ready!(Pin::new(&mut *inner).poll_read(cx, &mut part))?;
                        let n = part.filled().len();
                        buf.advance(n);
                        n
                    };
                    if n == 0 {
                        self.step = Step::Done;
                    } else {
                        *left -= n as u64;
                    }
                    return Poll::Ready(Ok(()));
                }
                Step::Inflate {
                    left,
                    mask,
                    at,
                    fin,
                } => {
                    let Some(message) = self.message.as_mut() else {
                        self.step = Step::Head;
                        continue;
                    };
                    let result = if message.in_start < message.in_end {
                        message.run(self.max_bytes as usize).map(|_| ())
                    } else if *left > 0 {
                        let most = (*left).min(INPUT_BYTES as u64) as usize;
                        let mut read = ReadBuf::new(&mut message.input[..most]);
                        ready!(Pin::new(&mut *inner).poll_read(cx, &mut read))?;
                        let n = read.filled().len();
                        if n == 0 {
                            self.message = None;
                            self.step = Step::Done;
                            return Poll::Ready(Ok(()));
                        }
                        for (i, byte) in message.input[..n].iter_mut().enumerate() {
                            *byte ^= mask[(usize::from(*at) + i) % 4];
                        }
                        *at = ((usize::from(*at) + n) % 4) as u8;
                        *left -= n as u64;
                        message.in_start = 0;
                        message.in_end = n;
                        Ok(())
                    } else if !*fin {
                        // The message goes on in a continuation frame.
                        self.step = Step::Head;
                        Ok(())
                    } else if !message.tail_fed {
                        message.tail_fed = true;
                        message.input[..TAIL.len()].copy_from_slice(&TAIL);
                        message.in_start = 0;
                        message.in_end = TAIL.len();
                        Ok(())
                    } else {
                        // Every byte is in: what the inflater still holds
                        // comes out, and the message's last frame with it.
                        message.run(self.max_bytes as usize).map(|full| {
                            if !full {
                                message.seal(true);
                            }
                        })
                    };
                    if let Err(broken) = result {
                        self.fail(broken);
                    }
                }
            }
        }
    }

    /// A whole header is in `head[..len]`: what to do with its frame. An
    /// unmasked frame's header is shorter than [`MIN_HEAD`], so its first
    /// payload bytes (or, for a payload shorter still, the next frame's)
    /// may have been read with it, up to `head[..self.have]`.
    fn on_head(&mut self, len: usize) {
        let head = &self.head[..len];
        let fin = head[0] & 0x80 != 0;
        let rsv1 = head[0] & 0x40 != 0;
        let opcode = head[0] & 0x0f;
        let masked = head[1] & 0x80 != 0;
        let payload = match head[1] & 0x7f {
            126 => u64::from(u16::from_be_bytes([head[2], head[3]])),
            127 => u64::from_be_bytes([
                head[2], head[3], head[4], head[5], head[6], head[7], head[8], head[9],
            ]),
            n => u64::from(n),
        };
        let mut mask = [0u8; 4];
        if masked {
            mask.copy_from_slice(&head[len - 4..len]);
        }
        let control = opcode & 0x08 != 0;
        let extension = self.deflate.is_some();
        let compressed_start = extension && rsv1 && masked && (opcode == 0x1 || opcode == 0x2);
        let compressed_next = !rsv1 && masked && opcode == 0x0 && self.message.is_some();
        if !control && self.message.is_some() && opcode != 0x0 {
            // A new message inside a compressed one.
            return self.fail(Broken::Corrupt);
        }
        if (compressed_start || compressed_next) && payload > u64::from(self.max_bytes) {
            return self.fail(Broken::TooLarge);
        }
        if compressed_start {
            self.message = Some(Inflation::new(opcode));
        }
        if compressed_start || compressed_next {
            self.have = 0;
            self.step = Step::Inflate {
                left: payload,
                mask,
                at: 0,
                fin,
            };
        } else if head[0] & 0x70 == 0
            && masked
            && opcode <= 0x2
            && payload > PIECE_BYTES as u64
            && payload <= u64::from(self.max_bytes)
        {
            self.split_left = payload;
            self.split_fin = fin;
            self.next_piece(opcode, mask);
        } else {
            // Handed on as it is, header and payload. Bytes read past the
            // header are handed on with it; past the payload too (the
            // library refuses an unmasked frame), the stream ends there.
            let read = self.have;
            let extra = u64::from(read) - len as u64;
            self.have = 0;
            self.step = Step::Emit {
                len: read,
                then: match payload.checked_sub(extra) {
                    Some(left) => After::Pass(left),
                    None => After::Done,
                },
            };
        }
    }

    /// Hands on the next piece of the frame being split: `opcode` is the
    /// frame's own for the first piece, then continuation; every piece has
    /// the frame's masking key.
    fn next_piece(&mut self, opcode: u8, mask: [u8; 4]) {
        let n = self.split_left.min(PIECE_BYTES as u64);
        self.split_left -= n;
        let last = self.split_left == 0;
        let (mut head, len) = plain_head(last && self.split_fin, opcode, n);
        head[len - 4..len].copy_from_slice(&mask);
        self.head = head;
        self.have = 0;
        self.step = Step::Emit {
            len: len as u8,
            then: After::Pass(n),
        };
    }

    /// Ends the stream with a frame the library refuses for `broken`'s
    /// reason.
    fn fail(&mut self, broken: Broken) {
        self.message = None;
        let len = match broken {
            // Over any bound the library is given: 1009.
            Broken::TooLarge => {
                let (head, len) = plain_head(true, 0x2, u64::from(u32::MAX) + 1);
                self.head = head;
                len
            }
            // RSV1 on an empty text frame: 1002.
            Broken::Corrupt => {
                let (mut head, len) = plain_head(true, 0x1, 0);
                head[0] |= 0x40;
                self.head = head;
                len
            }
        };
        self.have = 0;
        self.step = Step::Emit {
            len: len as u8,
            then: After::Done,
        };
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Inflating<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.frames.poll_read(&mut this.inner, cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Inflating<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests;
