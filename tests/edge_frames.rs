//! The WebSocket edge against hostile and careless clients, over raw
//! sockets: close handshakes (a client's Close is answered; a server close
//! arrives with its code and the frames before it, even while the client is
//! still sending), protocol violations (1002), floods repeated so that a race
//! cannot pass by luck, and arithmetic on client numbers.

use proptest::prelude::*;
use serde_json::{json, Value};
use switchboard::channel::{Channel, Id};
use switchboard::token::Grant;
use switchboard_harness::raw::{client_frame, RawSocket, OP_CLOSE, OP_CONT, OP_PING, OP_TEXT};
use switchboard_harness::*;

/// A client that writes frames byte by byte, as the RFC has them (and as
/// a broken or hostile client may not).
struct Raw(RawSocket);

/// What the server sent, up to its Close frame or the end of the stream.
#[derive(Debug, Default)]
struct Received {
    texts: Vec<Value>,
    /// The close code, if a Close frame came.
    close: Option<u16>,
    /// The connection was reset rather than closed.
    reset: bool,
}

impl Raw {
    async fn connect(gateway: &Gateway, token: &str) -> Raw {
        Raw(RawSocket::connect(gateway.addr, &format!("token={token}"), None).await)
    }

    async fn fill(&mut self) -> bool {
        self.0.fill().await
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.0.send(bytes).await;
    }

    async fn close(&mut self, code: u16, reason: &str) {
        self.0.close(code, reason).await;
    }

    /// Everything up to the server's Close frame or the end.
    async fn until_close(&mut self) -> Received {
        let mut got = Received::default();
        while let Some(frame) = self.0.next_frame().await {
            match frame.opcode {
                OP_TEXT => got
                    .texts
                    .push(serde_json::from_slice(&frame.payload).expect("text frames are JSON")),
                OP_CLOSE => {
                    got.close = frame.close_code();
                    return got;
                }
                _ => {}
            }
        }
        got.reset = true;
        got
    }

    /// After the server's Close: answer it, and the server ends the TCP
    /// connection (a clean end, not a reset).
    async fn finish_handshake(&mut self, code: u16) {
        self.close(code, "").await;
        if let Err(e) = self.0.until_end().await {
            panic!("the server reset instead of closing: {e}");
        }
    }

    /// The next text frame (`hello` first).
    async fn until_close_or_text(&mut self) -> Value {
        loop {
            match self.0.next_frame().await {
                Some(frame) if frame.opcode == OP_TEXT => {
                    return serde_json::from_slice(&frame.payload).expect("JSON")
                }
                Some(_) => {}
                None => panic!("the connection ended before a text frame"),
            }
        }
    }
}

fn user_token() -> String {
    token(Id::new_v4(), Grant::All, &[])
}

#[tokio::test]
async fn a_clients_close_is_answered_with_its_code() {
    let nats = nats();
    let gateway = Gateway::start(&nats);
    for code in [1000u16, 1001, 3000, 4999] {
        let mut raw = Raw::connect(&gateway, &user_token()).await;
        let hello = raw.until_close_or_text().await;
        assert_eq!(hello["type"], "hello");
        raw.close(code, "bye").await;
        let got = raw.until_close().await;
        assert_eq!(got.close, Some(code), "the close code is echoed: {got:?}");
        // The server then ends the TCP connection.
        assert!(!raw.fill().await, "nothing after the close");
    }
}

#[tokio::test]
async fn protocol_violations_close_with_1002() {
    let nats = nats();
    let gateway = Gateway::start(&nats);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("reserved bits", client_frame(true, 0b100, OP_TEXT, b"{}")),
        ("reserved data opcode", client_frame(true, 0, 0x3, b"{}")),
        ("reserved control opcode", client_frame(true, 0, 0xB, b"")),
        (
            "continuation without a start",
            client_frame(true, 0, OP_CONT, b"{}"),
        ),
        (
            "a 126-byte ping",
            client_frame(true, 0, OP_PING, &[0u8; 126]),
        ),
        (
            "a fragmented ping",
            client_frame(false, 0, OP_PING, b"split"),
        ),
        (
            "an invalid close code",
            client_frame(true, 0, OP_CLOSE, &999u16.to_be_bytes()),
        ),
    ];
    for (what, bytes) in cases {
        let mut raw = Raw::connect(&gateway, &user_token()).await;
        raw.until_close_or_text().await;
        raw.send(&bytes).await;
        let got = raw.until_close().await;
        assert_eq!(got.close, Some(1002), "{what}: {got:?}");
    }
}

/// After any close the server starts, the client's Close reply completes
/// the handshake and the server ends the TCP connection then (RFC 6455
/// 7.1.1: the server closes first), not when its close timeout runs out:
/// also after a frame the WebSocket layer could not read to its end.
#[tokio::test]
async fn the_server_ends_tcp_on_the_close_reply_after_every_close_it_starts() {
    let nats = nats();
    let gateway = Gateway::start(&nats);
    let mut flood = Vec::new();
    for _ in 0..25 {
        flood.extend(client_frame(true, 0, OP_TEXT, b"not json"));
    }
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        (
            "reserved bits",
            client_frame(true, 0b100, OP_TEXT, b"{}"),
            1002,
        ),
        (
            "a fragmented ping",
            client_frame(false, 0, OP_PING, b"split"),
            1002,
        ),
        (
            "invalid UTF-8",
            client_frame(true, 0, OP_TEXT, &[0xff, 0xfe, 0x22]),
            1007,
        ),
        (
            "a 70 KB frame",
            client_frame(true, 0, OP_TEXT, &vec![b' '; 70_000]),
            1009,
        ),
        ("a flood of bad frames", flood, 4029),
    ];
    for (what, bytes, code) in cases {
        let mut raw = Raw::connect(&gateway, &user_token()).await;
        raw.until_close_or_text().await;
        raw.send(&bytes).await;
        let got = raw.until_close().await;
        assert_eq!(got.close, Some(code), "{what}: {got:?}");
        let replied = std::time::Instant::now();
        raw.finish_handshake(code).await;
        let ended = replied.elapsed();
        assert!(
            ended < switchboard::gateway::connection::CLOSE_TIMEOUT,
            "{what}: the server ended TCP {ended:?} after the Close reply, at its timeout"
        );
    }
}

/// The server's close must reach a client that is still sending: the
/// frames queued before it, then the code, then a clean end.
async fn flood_then_read(gateway: &Gateway, frames: &[u8]) -> Received {
    let mut raw = Raw::connect(gateway, &user_token()).await;
    raw.until_close_or_text().await;
    raw.send(frames).await;
    let got = raw.until_close().await;
    if let Some(code) = got.close {
        raw.finish_handshake(code).await;
    }
    got
}

#[tokio::test]
async fn bad_frame_floods_get_their_errors_and_4029_every_time() {
    let nats = nats();
    let gateway = Gateway::start(&nats);
    let mut flood = Vec::new();
    for _ in 0..200 {
        flood.extend(client_frame(true, 0, OP_TEXT, b"not json"));
    }
    for run in 0..20 {
        let got = flood_then_read(&gateway, &flood).await;
        assert_eq!(got.close, Some(4029), "run {run}: {got:?}");
        let errors = got.texts.iter().filter(|f| f["type"] == "error").count();
        assert!(
            errors >= 20,
            "run {run}: {errors} error frames before the close"
        );
    }
}

#[tokio::test]
async fn subscribe_floods_get_4029_every_time() {
    let nats = nats();
    let gateway = Gateway::start(&nats);
    let mut flood = Vec::new();
    let subscribe = json!({"type": "subscribe", "channel": "global"}).to_string();
    for _ in 0..10_000 {
        flood.extend(client_frame(true, 0, OP_TEXT, subscribe.as_bytes()));
    }
    for run in 0..20 {
        let got = flood_then_read(&gateway, &flood).await;
        assert_eq!(got.close, Some(4029), "run {run}: {got:?}");
        assert_eq!(
            got.texts.first().map(|f| f["type"].clone()),
            Some(json!("subscribed"))
        );
    }
}

#[tokio::test]
async fn an_oversized_frame_gets_1009_every_time() {
    let nats = nats();
    let gateway = Gateway::start(&nats);
    let big = client_frame(true, 0, OP_TEXT, &vec![b' '; 65_537]);
    for run in 0..10 {
        let got = flood_then_read(&gateway, &big).await;
        assert_eq!(got.close, Some(1009), "run {run}: {got:?}");
    }
}

#[tokio::test]
async fn a_since_seq_past_the_end_is_incomplete_then_live() {
    let nats = nats();
    let gateway = Gateway::start(&nats);
    let log = log(&nats).await;
    let c = Id::new_v4();
    log.publish(&message(c, "before")).await.expect("published");
    let mut client = Client::connect(&gateway, &user_token()).await;
    for since_seq in [u64::MAX, u64::MAX - 1, 1 << 53, 1_000_000] {
        let channel = Channel::Chat(Id::new_v4());
        client
            .send(json!({"type": "subscribe", "channel": channel.to_string(), "since_seq": since_seq}))
            .await;
        let subscribed = client.next().await;
        assert_schema(&subscribed);
        assert_eq!(subscribed["type"], "subscribed", "{subscribed}");
        assert_eq!(
            subscribed["data"]["complete"], false,
            "{since_seq}: {subscribed}"
        );
        assert!(subscribed["data"]["first_seq"].is_u64(), "{subscribed}");
        let replayed = client.next().await;
        assert_eq!(replayed["type"], "replayed", "{replayed}");
        assert_eq!(replayed["data"]["count"], 0);
        let Channel::Chat(id) = channel else {
            unreachable!()
        };
        let receipt = log.publish(&message(id, "live")).await.expect("published");
        let event = client.next().await;
        assert_eq!(
            event["seq"], receipt.stored.seq,
            "live after {since_seq}: {event}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Whatever numbers a client sends in `since_seq` and `ack`, the
    /// subscription stays alive and gets the next live event, and the
    /// gateway does not fall over.
    #[test]
    fn arbitrary_numbers_never_kill_a_subscription(
        since_seq in prop_oneof![Just(u64::MAX), Just(0u64), any::<u64>(), 0u64..50],
        acks in proptest::collection::vec(prop_oneof![Just(u64::MAX), any::<u64>(), 0u64..50], 0..4),
    ) {
        CASES.with(|world| world.run(since_seq, acks));
    }
}

/// One gateway for all the property's cases.
struct World {
    runtime: tokio::runtime::Runtime,
    _nats: NatsServer,
    gateway: Gateway,
    log: switchboard::log::Log,
}

thread_local! {
    static CASES: World = {
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        let nats = nats();
        let gateway = Gateway::start(&nats);
        let log = runtime.block_on(log(&nats));
        World { runtime, _nats: nats, gateway, log }
    };
}

impl World {
    fn run(&self, since_seq: u64, acks: Vec<u64>) {
        self.runtime.block_on(async {
            let c = Id::new_v4();
            let channel = Channel::Chat(c);
            self.log.publish(&message(c, "history")).await.expect("published");
            let mut client = Client::connect(&self.gateway, &user_token()).await;
            client
                .send(json!({"type": "subscribe", "channel": channel.to_string(), "since_seq": since_seq}))
                .await;
            let subscribed = client.next().await;
            assert_eq!(subscribed["type"], "subscribed", "{subscribed}");
            for seq in acks {
                client
                    .send(json!({"type": "ack", "channel": channel.to_string(), "seq": seq}))
                    .await;
            }
            client.send(json!({"type": "ping", "request_id": "p"})).await;
            let receipt = self.log.publish(&message(c, "live")).await.expect("published");
            // Whatever came before (replayed history, `replayed`, `pong`),
            // the live event arrives.
            loop {
                let frame = client.next().await;
                if frame["seq"] == receipt.stored.seq {
                    break;
                }
                assert!(
                    frame["seq"].as_u64().is_none_or(|s| s < receipt.stored.seq),
                    "{frame}"
                );
            }
            client.close().await;
        });
        assert!(
            !self.gateway.log_text().contains("panicked"),
            "the gateway panicked:\n{}",
            self.gateway.log_text()
        );
    }
}

#[tokio::test]
async fn frames_with_a_repeated_key_are_refused() {
    let nats = nats();
    let gateway = Gateway::start(&nats);
    let mut client = Client::connect(&gateway, &user_token()).await;
    client
        .send_raw(tokio_tungstenite::tungstenite::Message::Text(
            r#"{"type":"ping","type":"subscribe","request_id":"r"}"#.into(),
        ))
        .await;
    let error = client.next().await;
    assert_schema(&error);
    assert_eq!(error["type"], "error");
    assert_eq!(error["data"]["code"], "bad_request");
    assert!(
        error["data"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("duplicate"),
        "{error}"
    );
}
