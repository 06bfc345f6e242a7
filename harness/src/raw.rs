//! A WebSocket client over a bare TCP socket, for what a library client
//! will not write or hides: frames with any bits set (as a broken or
//! hostile client sends them), compressed frames as they came, and every
//! byte the wire carried. Frames are built and parsed here as RFC 6455 has
//! them; `permessage-deflate` payloads (RFC 7692) are made and read with
//! flate2.

use std::net::SocketAddr;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

use crate::{read_head, PATIENCE};

pub const OP_CONT: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;
/// The reserved bits' value (of three) that marks a compressed message.
pub const RSV1: u8 = 0b100;

/// What a sync flush ends with, and a compressed message's payload leaves
/// off (RFC 7692, 7.2.1).
const DEFLATE_TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// A client frame: masked (with a key that is not zero), its first byte
/// made of `fin`, the three reserved bits `rsv` and `opcode` as given.
pub fn client_frame(fin: bool, rsv: u8, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 14);
    out.push((u8::from(fin) << 7) | (rsv << 4) | opcode);
    let len = payload.len();
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len <= u16::MAX as usize {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    let mask = [0x9a, 0x3c, 0x01, 0xe7];
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// A frame as the server sent it.
#[derive(Debug)]
pub struct Frame {
    pub fin: bool,
    /// The three reserved bits.
    pub rsv: u8,
    pub opcode: u8,
    /// Servers must not mask; the payload here is unmasked either way.
    pub masked: bool,
    /// As sent: compressed when [`Frame::compressed`].
    pub payload: Vec<u8>,
}

impl Frame {
    pub fn compressed(&self) -> bool {
        self.rsv & RSV1 != 0
    }

    /// A Close frame's code, if it has one.
    pub fn close_code(&self) -> Option<u16> {
        let code = self.payload.get(..2)?;
        Some(u16::from_be_bytes([code[0], code[1]]))
    }
}

/// The whole frame at the start of `input` and the bytes it took; `None`
/// until all of it is there.
pub fn server_frame(input: &[u8]) -> Option<(Frame, usize)> {
    let b0 = *input.first()?;
    let b1 = *input.get(1)?;
    let (len, mut at) = match b1 & 0x7f {
        126 => (
            u16::from_be_bytes([*input.get(2)?, *input.get(3)?]) as usize,
            4,
        ),
        127 => {
            let bytes: [u8; 8] = input.get(2..10)?.try_into().ok()?;
            (u64::from_be_bytes(bytes) as usize, 10)
        }
        n => (n as usize, 2),
    };
    let masked = b1 & 0x80 != 0;
    let mask: Option<[u8; 4]> = if masked {
        let mask = input.get(at..at + 4)?.try_into().ok();
        at += 4;
        mask
    } else {
        None
    };
    let mut payload = input.get(at..at + len)?.to_vec();
    if let Some(mask) = mask {
        payload
            .iter_mut()
            .enumerate()
            .for_each(|(i, b)| *b ^= mask[i % 4]);
    }
    let frame = Frame {
        fin: b0 & 0x80 != 0,
        rsv: (b0 >> 4) & 0b111,
        opcode: b0 & 0x0f,
        masked,
        payload,
    };
    Some((frame, at + len))
}

/// A message's payload compressed whole, as a client sends it.
pub fn deflate(bytes: &[u8]) -> Vec<u8> {
    let mut compress = Compress::new(Compression::default(), false);
    let mut out = Vec::with_capacity(bytes.len() + 1024);
    compress
        .compress_vec(bytes, &mut out, FlushCompress::Sync)
        .expect("deflate into a buffer with room");
    assert!(out.ends_with(&DEFLATE_TAIL), "a sync flush ends the output");
    out.truncate(out.len() - DEFLATE_TAIL.len());
    out
}

/// A compressed message's payload inflated, on `inflater` reset for it
/// (no context takeover), checking that all of it was read.
pub fn inflate(inflater: &mut Decompress, payload: &[u8]) -> Vec<u8> {
    inflater.reset(false);
    let mut input = payload.to_vec();
    input.extend_from_slice(&DEFLATE_TAIL);
    let mut out = Vec::with_capacity(payload.len() * 8 + 256);
    loop {
        let read = inflater.total_in() as usize;
        inflater
            .decompress_vec(&input[read..], &mut out, FlushDecompress::Sync)
            .expect("the gateway's compressed frames inflate");
        if inflater.total_in() as usize == input.len() && out.len() < out.capacity() {
            return out;
        }
        out.reserve(out.capacity());
    }
}

/// A client on a bare socket: its upgrade done, the frames read one at a
/// time, the bytes written as given.
pub struct RawSocket {
    read: OwnedReadHalf,
    write: OwnedWriteHalf,
    /// Bytes read but not parsed yet.
    input: Vec<u8>,
    /// The upgrade answer's `Sec-WebSocket-Extensions`, if any.
    pub extensions: Option<String>,
    /// Every byte read from the socket, the upgrade's answer included.
    pub read_bytes: u64,
}

impl RawSocket {
    /// Upgraded at `addr`'s `/v1/ws?{query}`, offering `offer` as its
    /// `Sec-WebSocket-Extensions` if given; panics unless the answer is 101.
    pub async fn connect(addr: SocketAddr, query: &str, offer: Option<&str>) -> RawSocket {
        let stream = TcpStream::connect(addr).await.expect("connect");
        let (mut read, mut write) = stream.into_split();
        let offer = offer
            .map(|o| format!("Sec-WebSocket-Extensions: {o}\r\n"))
            .unwrap_or_default();
        let request = format!(
            "GET /v1/ws?{query} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n{offer}\r\n"
        );
        write
            .write_all(request.as_bytes())
            .await
            .expect("upgrade request written");
        let head = read_head(&mut read).await;
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        let extensions = head.lines().find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.trim()
                .eq_ignore_ascii_case("sec-websocket-extensions")
                .then(|| value.trim().to_string())
        });
        RawSocket {
            read,
            write,
            input: Vec::with_capacity(16 * 1024),
            extensions,
            read_bytes: head.len() as u64,
        }
    }

    /// Reads more input; false at the end of the stream or on a reset.
    /// Panics when the server sends nothing for [`PATIENCE`].
    pub async fn fill(&mut self) -> bool {
        self.input.reserve(16 * 1024);
        match tokio::time::timeout(PATIENCE, self.read.read_buf(&mut self.input)).await {
            Ok(Ok(0)) | Ok(Err(_)) => false,
            Ok(Ok(n)) => {
                self.read_bytes += n as u64;
                true
            }
            Err(_) => panic!("the server sent nothing for {PATIENCE:?}"),
        }
    }

    /// Writes `bytes` as they are. A reset meanwhile is no error here:
    /// what the server does then is what the caller reads next.
    pub async fn send(&mut self, bytes: &[u8]) {
        let _ = self.write.write_all(bytes).await;
    }

    /// A Close frame with `code` and `reason`.
    pub async fn close(&mut self, code: u16, reason: &str) {
        let mut payload = code.to_be_bytes().to_vec();
        payload.extend_from_slice(reason.as_bytes());
        self.send(&client_frame(true, 0, OP_CLOSE, &payload)).await;
    }

    /// The next whole frame; `None` at the end of the stream or a reset.
    pub async fn next_frame(&mut self) -> Option<Frame> {
        loop {
            if let Some((frame, used)) = server_frame(&self.input) {
                self.input.drain(..used);
                return Some(frame);
            }
            if !self.fill().await {
                return None;
            }
        }
    }

    /// Reads to the end of the stream: `Ok` when the server ended it
    /// cleanly (FIN), the error when it reset it. Panics after
    /// [`PATIENCE`] without either.
    pub async fn until_end(&mut self) -> std::io::Result<()> {
        let mut buf = [0u8; 1024];
        loop {
            match tokio::time::timeout(PATIENCE, self.read.read(&mut buf)).await {
                Ok(Ok(0)) => return Ok(()),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(e),
                Err(_) => panic!("the server did not end the connection in {PATIENCE:?}"),
            }
        }
    }
}
