//! The end of a closing socket: after the server's Close frame, what the
//! client still sends is read and thrown away until its Close reply or
//! the end of the stream, so that the kernel does not reset a socket with
//! unread input (which would throw the Close frame away at the client).

use futures::StreamExt;
use tokio_tungstenite::tungstenite::Message;

use super::super::upgrade::Socket;

/// Reads until the client's Close frame or the end of the stream. Past a
/// frame the WebSocket layer cannot read (too large, malformed), the rest is
/// read as bytes and thrown away, until they end with what can only be the
/// client's Close reply, so that the server ends the TCP connection once the
/// handshake is done (as it does after its other closes), not at
/// [`super::CLOSE_TIMEOUT`].
pub(super) async fn drain(socket: &mut Socket) {
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
}
