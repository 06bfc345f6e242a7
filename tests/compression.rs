//! `permessage-deflate` against the real gateway, from a raw client that
//! speaks it (TCP and flate2, frame by frame): the handshake's answers,
//! compressed client frames (whole and fragmented), compressed events
//! that decode to the same JSON a plain client gets, an inflation bomb
//! closed with 1009, and the `compression` setting turned off.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use serde_json::{json, Value};
use switchboard::channel::{Channel, Id};
use switchboard::token::Grant;
use switchboard_harness::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

const OP_CONT: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_CLOSE: u8 = 0x8;
const RSV1: u8 = 0x4;
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

const ANSWER: &str = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

/// A client over a raw socket that offers what it is told to.
struct Deflating {
    stream: TcpStream,
    input: Vec<u8>,
    /// The value of the answer's `Sec-WebSocket-Extensions`, if any.
    extensions: Option<String>,
}

/// One server frame: its opcode, whether RSV1 was set, its payload as
/// sent (compressed or not).
struct ServerFrame {
    opcode: u8,
    compressed: bool,
    payload: Vec<u8>,
}

impl ServerFrame {
    /// The message's text, inflated when it came compressed.
    fn text(&self) -> String {
        let bytes = if self.compressed {
            inflate(&self.payload)
        } else {
            self.payload.clone()
        };
        String::from_utf8(bytes).expect("text frames are UTF-8")
    }
}

impl Deflating {
    async fn connect(gateway: &Gateway, token: &str, offer: Option<&str>) -> Deflating {
        let mut stream = TcpStream::connect(gateway.addr).await.expect("connect");
        let offer = offer
            .map(|o| format!("Sec-WebSocket-Extensions: {o}\r\n"))
            .unwrap_or_default();
        let request = format!(
            "GET /v1/ws?token={token} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n{offer}\r\n",
            gateway.addr
        );
        stream.write_all(request.as_bytes()).await.expect("write");
        let mut client = Deflating {
            stream,
            input: Vec::new(),
            extensions: None,
        };
        let head_end = loop {
            if let Some(i) = client.input.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            assert!(client.fill().await, "the server answers the upgrade");
        };
        let head = String::from_utf8_lossy(&client.input[..head_end]).to_string();
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        client.extensions = head.lines().find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.trim()
                .eq_ignore_ascii_case("sec-websocket-extensions")
                .then(|| value.trim().to_string())
        });
        client.input.drain(..head_end);
        client
    }

    async fn fill(&mut self) -> bool {
        let mut buf = [0u8; 16384];
        match tokio::time::timeout(PATIENCE, self.stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => false,
            Ok(Ok(n)) => {
                self.input.extend_from_slice(&buf[..n]);
                true
            }
            Err(_) => panic!("the server sent nothing for {PATIENCE:?}"),
        }
    }

    /// The next server frame; `None` at the end.
    async fn next_frame(&mut self) -> Option<ServerFrame> {
        loop {
            if let Some((frame, used)) = parse(&self.input) {
                self.input.drain(..used);
                return Some(frame);
            }
            if !self.fill().await {
                return None;
            }
        }
    }

    /// The next text frame, as JSON text (pings skipped).
    async fn next_text(&mut self) -> ServerFrame {
        loop {
            let frame = self.next_frame().await.expect("a frame before the end");
            if frame.opcode == OP_TEXT {
                return frame;
            }
            assert_ne!(frame.opcode, OP_CLOSE, "closed: {:?}", frame.payload);
        }
    }

    /// The close code the server ends with (text frames before it skipped).
    async fn close_code(&mut self) -> Option<u16> {
        while let Some(frame) = self.next_frame().await {
            if frame.opcode == OP_CLOSE {
                return frame
                    .payload
                    .get(..2)
                    .map(|code| u16::from_be_bytes([code[0], code[1]]));
            }
        }
        None
    }

    async fn send(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes).await;
    }

    /// A whole compressed text message.
    async fn send_compressed(&mut self, frame: &Value) {
        let payload = deflate(frame.to_string().as_bytes());
        self.send(&masked(true, RSV1, OP_TEXT, &payload)).await;
    }
}

/// A masked client frame.
fn masked(fin: bool, rsv: u8, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![(u8::from(fin) << 7) | (rsv << 4) | opcode];
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

/// One unmasked server frame from the start of `input`, and its length.
fn parse(input: &[u8]) -> Option<(ServerFrame, usize)> {
    let b0 = *input.first()?;
    let b1 = *input.get(1)?;
    assert!(b0 & 0x80 != 0, "the gateway sends final frames only");
    assert_eq!(b1 & 0x80, 0, "server frames are not masked");
    let (len, at) = match b1 & 0x7f {
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
    let payload = input.get(at..at + len)?.to_vec();
    let frame = ServerFrame {
        opcode: b0 & 0x0f,
        compressed: b0 & 0x40 != 0,
        payload,
    };
    Some((frame, at + len))
}

/// Raw DEFLATE, the sync flush's trailer removed (RFC 7692, 7.2.1).
fn deflate(bytes: &[u8]) -> Vec<u8> {
    let mut compress = Compress::new(Compression::default(), false);
    let mut out = Vec::with_capacity(bytes.len() + 1024);
    compress
        .compress_vec(bytes, &mut out, FlushCompress::Sync)
        .expect("compressed");
    assert!(out.ends_with(&TAIL));
    out.truncate(out.len() - TAIL.len());
    out
}

fn inflate(payload: &[u8]) -> Vec<u8> {
    let mut input = payload.to_vec();
    input.extend_from_slice(&TAIL);
    let mut inflater = Decompress::new(false);
    let mut out = Vec::with_capacity(1 << 20);
    inflater
        .decompress_vec(&input, &mut out, FlushDecompress::Sync)
        .expect("the gateway's compressed frames inflate");
    assert_eq!(inflater.total_in(), input.len() as u64);
    out
}

fn user_token() -> String {
    token(Id::new_v4(), Grant::All, &[])
}

fn subscribe(channel: Channel) -> Value {
    json!({"type": "subscribe", "channel": channel.to_string(), "request_id": "sub"})
}

#[tokio::test]
async fn offers_get_the_no_context_takeover_answer_or_none() {
    let nats = nats();
    let gateway = Gateway::start(&nats);
    let cases: [(Option<&str>, Option<String>); 8] = [
        (None, None),
        (Some("permessage-deflate"), Some(ANSWER.into())),
        // What browsers offer.
        (
            Some("permessage-deflate; client_max_window_bits"),
            Some(ANSWER.into()),
        ),
        (
            Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover"),
            Some(ANSWER.into()),
        ),
        (
            Some("permessage-deflate; server_max_window_bits=10"),
            Some(format!("{ANSWER}; server_max_window_bits=10")),
        ),
        // A bad offer is passed over for the next one.
        (
            Some("permessage-deflate; server_max_window_bits=20, permessage-deflate"),
            Some(ANSWER.into()),
        ),
        (Some("permessage-deflate; mystery=1"), None),
        (Some("x-webkit-deflate-frame"), None),
    ];
    for (offer, answer) in cases {
        let mut client = Deflating::connect(&gateway, &user_token(), offer).await;
        assert_eq!(client.extensions, answer, "offer {offer:?}");
        let hello = client.next_text().await;
        assert!(!hello.compressed || answer.is_some());
        let hello: Value = serde_json::from_str(&hello.text()).expect("JSON");
        assert_eq!(hello["type"], "hello", "offer {offer:?}");
    }
}

#[tokio::test]
async fn events_go_compressed_and_inflate_to_the_json_a_plain_client_gets() {
    let nats = nats();
    let gateway = Gateway::start(&nats);
    let log = log(&nats).await;
    let c = Id::new_v4();
    let mut plain = Client::connect(&gateway, &user_token()).await;
    plain.subscribe(chat(c)).await;
    let mut compressing = Deflating::connect(
        &gateway,
        &user_token(),
        Some("permessage-deflate; client_max_window_bits"),
    )
    .await;
    assert_eq!(compressing.extensions.as_deref(), Some(ANSWER));
    compressing.next_text().await; // hello
    compressing.send_compressed(&subscribe(chat(c))).await;
    let subscribed: Value =
        serde_json::from_str(&compressing.next_text().await.text()).expect("JSON");
    assert_eq!(subscribed["type"], "subscribed", "{subscribed}");
    // A second subscription, its compressed frame in three fragments.
    let other = Id::new_v4();
    let data = deflate(subscribe(chat(other)).to_string().as_bytes());
    let (a, rest) = data.split_at(data.len() / 3);
    let (b, rest) = rest.split_at(rest.len() / 2);
    let mut fragments = masked(false, RSV1, OP_TEXT, a);
    fragments.extend(masked(false, 0, OP_CONT, b));
    fragments.extend(masked(true, 0, OP_CONT, rest));
    compressing.send(&fragments).await;
    let subscribed: Value =
        serde_json::from_str(&compressing.next_text().await.text()).expect("JSON");
    assert_eq!(subscribed["data"]["channel"], chat(other).to_string());

    for content in [
        "a short one",
        &"a long, repetitive chat message ".repeat(40),
    ] {
        log.publish(&message(c, content)).await.expect("published");
        let Message::Text(expected) = plain.next_message().await else {
            panic!("a text frame")
        };
        let frame = compressing.next_text().await;
        assert!(frame.compressed, "an event envelope shrinks");
        let text = frame.text();
        assert_eq!(text, expected.as_str(), "the same bytes, inflated");
        assert!(
            frame.payload.len() < text.len(),
            "{} compressed bytes for {}",
            frame.payload.len(),
            text.len()
        );
    }
}

#[tokio::test]
async fn an_inflation_bomb_closes_with_1009() {
    let nats = nats();
    let gateway = Gateway::start(&nats);
    let mut client = Deflating::connect(&gateway, &user_token(), Some("permessage-deflate")).await;
    client.next_text().await;
    // 4 MiB of spaces in about 4 KiB, against a 64 KiB bound.
    let bomb = deflate(&vec![b' '; 4 << 20]);
    assert!(bomb.len() < 8 * 1024, "{}", bomb.len());
    client.send(&masked(true, RSV1, OP_TEXT, &bomb)).await;
    assert_eq!(client.close_code().await, Some(1009));
    // Compressed data that does not inflate is a protocol error.
    let mut client = Deflating::connect(&gateway, &user_token(), Some("permessage-deflate")).await;
    client.next_text().await;
    client.send(&masked(true, RSV1, OP_TEXT, &[0xff; 32])).await;
    assert_eq!(client.close_code().await, Some(1002));
}

#[tokio::test]
async fn with_compression_off_offers_are_declined_and_rsv1_refused() {
    let nats = nats();
    let gateway = Gateway::start_with(&nats, &["--compression", "false"]);
    let mut client = Deflating::connect(&gateway, &user_token(), Some("permessage-deflate")).await;
    assert_eq!(client.extensions, None);
    let hello = client.next_text().await;
    assert!(!hello.compressed);
    client.send_compressed(&subscribe(Channel::Global)).await;
    assert_eq!(client.close_code().await, Some(1002));
}
