//! The inflating reader on the frames a client writes, whole or in pieces:
//! compressed and plain messages, the size bound, and the misuses of RSV1
//! it refuses.

use futures::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::error::{CapacityError, Error, ProtocolError};
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::*;
use crate::gateway::deflate::deflate;

const MAX: usize = 64 * 1024;
const ON: Deflate = Deflate {
    server_window_bits: 15,
};

/// A client frame, masked with a key that is not zero.
fn frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x12, 0x34, 0x56, 0x78];
    let (head, len) = plain_head(false, 0, payload.len() as u64);
    let mut out = head[..len - 4].to_vec();
    out[0] = first;
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// Raw DEFLATE of `text`, whole, as a client sends it.
fn compressed(text: &[u8]) -> Vec<u8> {
    let mut compress = flate2::Compress::new(flate2::Compression::new(6), false);
    let mut out = Vec::with_capacity(text.len() * 2 + 64);
    compress
        .compress_vec(text, &mut out, flate2::FlushCompress::Sync)
        .unwrap();
    assert!(out.ends_with(&TAIL));
    out.truncate(out.len() - TAIL.len());
    out
}

/// The messages (or the error) a server socket with the extension reads
/// from `bytes`, written in pieces of `piece` bytes.
async fn read(bytes: Vec<u8>, piece: usize) -> (Vec<Message>, Option<Error>) {
    read_with(Some(ON), bytes, piece).await
}

/// [`read`], with or without the extension.
async fn read_with(
    deflate: Option<Deflate>,
    bytes: Vec<u8>,
    piece: usize,
) -> (Vec<Message>, Option<Error>) {
    let (client, server) = tokio::io::duplex(1 << 20);
    let config = WebSocketConfig::default()
        .read_buffer_size(128)
        .max_message_size(Some(MAX))
        .max_frame_size(Some(MAX));
    let io = Inflating::new(server, deflate, MAX);
    let mut socket = WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await;
    // Written in pieces, then the end of the stream; the client's end is
    // kept until the reading is over, so a pong the server writes back
    // finds it open. (The server may stop reading first: a failed write is
    // no error here.)
    let writer = tokio::spawn(async move {
        let mut client = client;
        for chunk in bytes.chunks(piece) {
            if client.write_all(chunk).await.is_err() {
                return client;
            }
            tokio::task::yield_now().await;
        }
        let _ = client.shutdown().await;
        client
    });
    let mut messages = Vec::new();
    let mut error = None;
    while let Some(message) = socket.next().await {
        match message {
            Ok(message) => messages.push(message),
            // The end of the stream without a close handshake: the
            // end of what was written.
            Err(Error::Protocol(ProtocolError::ResetWithoutClosingHandshake)) => break,
            Err(e) => {
                error = Some(e);
                break;
            }
        }
    }
    drop(writer);
    (messages, error)
}

fn text(s: &str) -> Message {
    Message::Text(s.into())
}

#[tokio::test]
async fn compressed_and_plain_messages_read_alike() {
    let json = r#"{"type":"subscribe","channel":"channel:0b6f2c1e-3d4a-4f5b-8c9d-0e1f2a3b4c5d"}"#;
    // Over `PIECE_BYTES`, so handed on in several frames.
    let long = "a chat message ".repeat(3_000);
    let mut bytes = frame(0xc1, &compressed(json.as_bytes()));
    bytes.extend(frame(0x81, b"plain"));
    bytes.extend(frame(0x89, b"ping"));
    // Fragmented: compressed data split over three frames, a ping
    // between them.
    let data = compressed(long.as_bytes());
    let (a, rest) = data.split_at(10);
    let (b, c) = rest.split_at(rest.len() / 2);
    bytes.extend(frame(0x41, a));
    bytes.extend(frame(0x00, b));
    bytes.extend(frame(0x89, b"mid"));
    bytes.extend(frame(0x80, c));
    // The empty message: one 0x00 byte (RFC 7692, section 7.2.3.6).
    bytes.extend(frame(0xc1, &[0x00]));
    bytes.extend(frame(0xc2, &compressed(b"binary")));
    for piece in [1, 7, 1 << 20] {
        let (messages, error) = read(bytes.clone(), piece).await;
        assert!(error.is_none(), "{error:?}");
        assert_eq!(
            messages,
            vec![
                text(json),
                text("plain"),
                Message::Ping("ping".into()),
                Message::Ping("mid".into()),
                text(&long),
                text(""),
                Message::Binary("binary".into()),
            ],
            "pieces of {piece}"
        );
    }
}

#[tokio::test]
async fn a_message_inflating_past_the_bound_is_too_large() {
    let bomb = vec![b'a'; MAX * 16];
    let data = compressed(&bomb);
    assert!(data.len() < MAX / 16);
    let (messages, error) = read(frame(0xc1, &data), 1 << 20).await;
    assert!(messages.is_empty());
    assert!(
        matches!(
            error,
            Some(Error::Capacity(CapacityError::MessageTooLong { .. }))
        ),
        "{error:?}"
    );
    // Just under the bound is fine.
    let fits = "b".repeat(MAX);
    let (messages, error) = read(frame(0xc1, &compressed(fits.as_bytes())), 1 << 20).await;
    assert!(error.is_none(), "{error:?}");
    assert_eq!(messages, vec![text(&fits)]);
}

#[tokio::test]
async fn misplaced_compression_is_a_protocol_error() {
    let data = deflate(&[b'x'; 100]).unwrap();
    let cases = [
        // RSV1 on a control frame.
        frame(0xc9, b""),
        // RSV1 on a continuation frame.
        [frame(0x41, &data[..2]), frame(0xc0, &data[2..])].concat(),
        // A new message inside a compressed one.
        [frame(0x41, &data[..2]), frame(0x81, b"x")].concat(),
        // Data that is not DEFLATE.
        frame(0xc1, &[0xff; 16]),
    ];
    for (i, bytes) in cases.into_iter().enumerate() {
        let (_, error) = read(bytes, 1 << 20).await;
        assert!(
            matches!(
                error,
                Some(Error::Protocol(ProtocolError::NonZeroReservedBits))
            ),
            "case {i}: {error:?}"
        );
    }
}

#[tokio::test]
async fn without_the_extension_rsv1_is_refused() {
    let (client, server) = tokio::io::duplex(1024);
    let io = Inflating::new(server, None, MAX);
    let mut socket = WebSocketStream::from_raw_socket(io, Role::Server, None).await;
    let mut client = client;
    client
        .write_all(&frame(0xc1, &compressed(b"hello")))
        .await
        .unwrap();
    let error = socket.next().await.unwrap().unwrap_err();
    assert!(matches!(
        error,
        Error::Protocol(ProtocolError::NonZeroReservedBits)
    ));
}

/// What the library is handed from `bytes` without the extension, read by
/// read as it reads (128 bytes at most): `(header, payload)` of each frame,
/// each header having come in a read of its own.
async fn handed_on(bytes: Vec<u8>) -> Vec<(Vec<u8>, Vec<u8>)> {
    let (mut client, server) = tokio::io::duplex(1 << 20);
    client.write_all(&bytes).await.unwrap();
    drop(client);
    let mut io = Inflating::new(server, None, MAX);
    let mut reads = Vec::new();
    loop {
        let mut room = [0u8; 128];
        let n = tokio::io::AsyncReadExt::read(&mut io, &mut room)
            .await
            .unwrap();
        if n == 0 {
            break;
        }
        reads.push(room[..n].to_vec());
    }
    let mut frames = Vec::new();
    let mut reads = reads.into_iter();
    while let Some(head) = reads.next() {
        assert_eq!(head.len(), head_len(&head), "a header alone: {head:?}");
        let mut len = usize::from(head[1] & 0x7f);
        if len == 126 {
            len = usize::from(u16::from_be_bytes([head[2], head[3]]));
        }
        let mut payload = Vec::new();
        while payload.len() < len {
            payload.extend(reads.next().unwrap());
        }
        assert_eq!(payload.len(), len);
        frames.push((head, payload));
    }
    frames
}

/// `payload` unmasked with a frame header's key.
fn unmasked(head: &[u8], payload: &[u8]) -> Vec<u8> {
    let mask = &head[head.len() - 4..];
    payload
        .iter()
        .enumerate()
        .map(|(i, b)| b ^ mask[i % 4])
        .collect()
}

#[tokio::test]
async fn a_large_plain_frame_is_handed_on_in_small_pieces_with_its_own_key() {
    let long: Vec<u8> = (0..1_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    // A whole text frame, then a message in two frames with a ping
    // between them, then a small frame.
    let mut bytes = frame(0x81, &long);
    bytes.extend(frame(0x02, &long[..300]));
    bytes.extend(frame(0x89, b"ping"));
    bytes.extend(frame(0x80, &long[300..]));
    bytes.extend(frame(0x81, b"small"));
    let frames = handed_on(bytes).await;

    let mut messages: Vec<(u8, Vec<u8>)> = Vec::new();
    let mut open: Option<(u8, Vec<u8>)> = None;
    for (head, payload) in &frames {
        assert!(payload.len() <= PIECE_BYTES, "{} bytes", payload.len());
        assert_ne!(&head[head.len() - 4..], &[0; 4], "the frame's own key");
        let (fin, opcode) = (head[0] & 0x80 != 0, head[0] & 0x0f);
        let data = unmasked(head, payload);
        if opcode & 0x08 != 0 {
            messages.push((opcode, data));
            continue;
        }
        match open.as_mut() {
            None => open = Some((opcode, data)),
            Some(message) => {
                assert_eq!(opcode, 0, "a continuation");
                message.1.extend(data);
            }
        }
        if fin {
            messages.extend(open.take());
        }
    }
    assert!(open.is_none());
    assert_eq!(
        messages,
        vec![
            (0x1, long.clone()),
            (0x9, b"ping".to_vec()),
            (0x2, long.clone()),
            (0x1, b"small".to_vec()),
        ]
    );
    // 1,000 bytes make nine pieces; the two frames of the second message
    // three and seven.
    assert_eq!(frames.len(), 9 + 3 + 1 + 7 + 1);
}

#[tokio::test]
async fn plain_messages_read_alike_with_and_without_the_extension() {
    let long = "a chat message ".repeat(3_000);
    let mut bytes = frame(0x81, long.as_bytes());
    bytes.extend(frame(0x01, &long.as_bytes()[..1_001]));
    bytes.extend(frame(0x89, b"mid"));
    bytes.extend(frame(0x80, &long.as_bytes()[1_001..]));
    bytes.extend(frame(0x82, &[7; 500]));
    bytes.extend(frame(0x81, b"short"));
    for deflate in [None, Some(ON)] {
        for piece in [1, 7, 1 << 20] {
            let (messages, error) = read_with(deflate, bytes.clone(), piece).await;
            assert!(error.is_none(), "{error:?}");
            assert_eq!(
                messages,
                vec![
                    text(&long),
                    Message::Ping("mid".into()),
                    text(&long),
                    Message::Binary(vec![7; 500].into()),
                    text("short"),
                ],
                "{deflate:?}, pieces of {piece}"
            );
        }
    }
}

#[tokio::test]
async fn frames_the_library_refuses_are_not_split() {
    let long = [b'x'; 1_000];
    let unmasked_frame = {
        let (head, len) = plain_head(true, 0x1, long.len() as u64);
        let mut out = head[..len - 4].to_vec();
        out[1] &= 0x7f;
        out.extend_from_slice(&long);
        out
    };
    // Unmasked frames shorter than a masked header, each followed by a
    // good frame (read with its header, in part).
    let short_unmasked = |payload: &[u8]| {
        let mut out = vec![0x81, payload.len() as u8];
        out.extend_from_slice(payload);
        out.extend(frame(0x81, b"after"));
        out
    };
    // A header over the bound, with no payload behind it.
    let (head, len) = plain_head(true, 0x1, MAX as u64 + 1);
    let over = head[..len].to_vec();
    type Expected = fn(&Error) -> bool;
    let unmasked: Expected =
        |e| matches!(e, Error::Protocol(ProtocolError::UnmaskedFrameFromClient));
    let cases: [(Vec<u8>, Expected); 7] = [
        (unmasked_frame, unmasked),
        (short_unmasked(b""), unmasked),
        (short_unmasked(b"ab"), unmasked),
        (short_unmasked(b"abcd"), unmasked),
        (frame(0xa1, &long), |e| {
            matches!(e, Error::Protocol(ProtocolError::NonZeroReservedBits))
        }),
        (frame(0x83, &long), |e| {
            matches!(e, Error::Protocol(ProtocolError::InvalidOpcode(3)))
        }),
        (over, |e| {
            matches!(e, Error::Capacity(CapacityError::MessageTooLong { .. }))
        }),
    ];
    for (i, (bytes, expected)) in cases.into_iter().enumerate() {
        let (messages, error) = read_with(None, bytes, 1 << 20).await;
        assert!(messages.is_empty(), "case {i}: {messages:?}");
        assert!(error.as_ref().is_some_and(expected), "case {i}: {error:?}");
    }
}

/// A stream that counts the reads that gave something.
struct Counted<S> {
    inner: S,
    reads: usize,
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        ready!(Pin::new(&mut self.inner).poll_read(cx, buf))?;
        if buf.filled().len() > before {
            self.reads += 1;
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A small frame that has arrived whole costs two reads of the socket:
/// its header, then its payload. A longer one takes a read per piece, and
/// one more for the rest of a header with a 16-bit length.
#[tokio::test]
async fn a_small_frame_that_has_arrived_takes_two_reads() {
    for (payload, per_frame) in [(0, 1), (20, 2), (PIECE_BYTES, 2), (113, 3), (126, 4)] {
        let (mut client, server) = tokio::io::duplex(1 << 20);
        let frames = 5;
        for _ in 0..frames {
            client
                .write_all(&frame(0x82, &vec![9; payload]))
                .await
                .unwrap();
        }
        drop(client);
        let counted = Counted {
            inner: server,
            reads: 0,
        };
        let mut io = Inflating::new(counted, None, MAX);
        let mut room = vec![0u8; 1 << 16];
        while tokio::io::AsyncReadExt::read(&mut io, &mut room)
            .await
            .unwrap()
            > 0
        {}
        assert_eq!(
            io.inner.reads,
            frames * per_frame,
            "{payload}-byte payloads"
        );
    }
}

/// Every connection keeps one: 64 bytes is mimalloc's size class below 80.
#[test]
fn a_connections_frames_stay_small() {
    assert!(std::mem::size_of::<Frames>() <= 64);
}
