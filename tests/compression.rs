//! `permessage-deflate` against the real gateway, from a raw client that
//! speaks it (TCP and flate2, frame by frame): the handshake's answers,
//! compressed client frames (whole and fragmented), compressed events
//! that decode to the same JSON a plain client gets, an inflation bomb
//! closed with 1009, and the `compression` setting turned off.

use flate2::Decompress;
use serde_json::{json, Value};
use switchboard::channel::{Channel, Id};
use switchboard::token::Grant;
use switchboard_harness::raw::{
    client_frame, deflate, inflate, Frame, RawSocket, OP_CLOSE, OP_CONT, OP_TEXT, RSV1,
};
use switchboard_harness::*;
use tokio_tungstenite::tungstenite::Message;

const ANSWER: &str = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

/// A raw client that offers what it is told to.
struct Deflating(RawSocket);

impl Deflating {
    async fn connect(gateway: &Gateway, token: &str, offer: Option<&str>) -> Deflating {
        Deflating(RawSocket::connect(gateway.addr, &format!("token={token}"), offer).await)
    }

    /// The next text frame as sent (pings skipped); the gateway sends
    /// final frames only, unmasked.
    async fn next_text(&mut self) -> Frame {
        loop {
            let frame = self.0.next_frame().await.expect("a frame before the end");
            assert!(frame.fin && !frame.masked, "{frame:?}");
            if frame.opcode == OP_TEXT {
                return frame;
            }
            assert_ne!(frame.opcode, OP_CLOSE, "closed: {:?}", frame.payload);
        }
    }

    /// The close code the server ends with (text frames before it skipped).
    async fn close_code(&mut self) -> Option<u16> {
        while let Some(frame) = self.0.next_frame().await {
            if frame.opcode == OP_CLOSE {
                return frame.close_code();
            }
        }
        None
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.0.send(bytes).await;
    }

    /// A whole compressed text message.
    async fn send_compressed(&mut self, frame: &Value) {
        let payload = deflate(frame.to_string().as_bytes());
        self.send(&client_frame(true, RSV1, OP_TEXT, &payload))
            .await;
    }
}

/// A text frame's message, inflated when it came compressed.
fn text(frame: &Frame) -> String {
    let bytes = if frame.compressed() {
        inflate(&mut Decompress::new(false), &frame.payload)
    } else {
        frame.payload.clone()
    };
    String::from_utf8(bytes).expect("text frames are UTF-8")
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
        assert_eq!(client.0.extensions, answer, "offer {offer:?}");
        let hello = client.next_text().await;
        assert!(!hello.compressed() || answer.is_some());
        let hello: Value = serde_json::from_str(&text(&hello)).expect("JSON");
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
    assert_eq!(compressing.0.extensions.as_deref(), Some(ANSWER));
    compressing.next_text().await; // hello
    compressing.send_compressed(&subscribe(chat(c))).await;
    let subscribed: Value =
        serde_json::from_str(&text(&compressing.next_text().await)).expect("JSON");
    assert_eq!(subscribed["type"], "subscribed", "{subscribed}");
    // A second subscription, its compressed frame in three fragments.
    let other = Id::new_v4();
    let data = deflate(subscribe(chat(other)).to_string().as_bytes());
    let (a, rest) = data.split_at(data.len() / 3);
    let (b, rest) = rest.split_at(rest.len() / 2);
    let mut fragments = client_frame(false, RSV1, OP_TEXT, a);
    fragments.extend(client_frame(false, 0, OP_CONT, b));
    fragments.extend(client_frame(true, 0, OP_CONT, rest));
    compressing.send(&fragments).await;
    let subscribed: Value =
        serde_json::from_str(&text(&compressing.next_text().await)).expect("JSON");
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
        assert!(frame.compressed(), "an event envelope shrinks");
        let text = text(&frame);
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
    client.send(&client_frame(true, RSV1, OP_TEXT, &bomb)).await;
    assert_eq!(client.close_code().await, Some(1009));
    // Compressed data that does not inflate is a protocol error.
    let mut client = Deflating::connect(&gateway, &user_token(), Some("permessage-deflate")).await;
    client.next_text().await;
    client
        .send(&client_frame(true, RSV1, OP_TEXT, &[0xff; 32]))
        .await;
    assert_eq!(client.close_code().await, Some(1002));
}

#[tokio::test]
async fn with_compression_off_offers_are_declined_and_rsv1_refused() {
    let nats = nats();
    let gateway = Gateway::start_with(&nats, &["--compression", "false"]);
    let mut client = Deflating::connect(&gateway, &user_token(), Some("permessage-deflate")).await;
    assert_eq!(client.0.extensions, None);
    let hello = client.next_text().await;
    assert!(!hello.compressed());
    client.send_compressed(&subscribe(Channel::Global)).await;
    assert_eq!(client.close_code().await, Some(1002));
}
