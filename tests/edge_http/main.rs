//! The HTTP edge under slow, half-open and greedy clients (issue 9, part 1;
//! issue 20, parts 3 and 6): half-finished requests are closed within the
//! head timeout and never lock out `/healthz` or a real client, even at the
//! process's open-file limit; a response in flight is never shed to admit
//! new sockets; a head over 64 KiB gets 431; a trickled body is cut; an idle
//! keep-alive connection is closed; one user's WebSockets are capped with
//! 429; `OPTIONS` and `HEAD` answer as the routes do. Black-box, against the
//! binary.
//!
//! This file holds what the modules share (the timeouts the tests set,
//! reading to the close, what a real client does); each module is one kind
//! of client.

mod caps;
mod half_open;
mod methods;
mod slow;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use switchboard::channel::Id;
use switchboard::token::{Grant, Role};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use switchboard_harness::*;

/// The head and body timeouts the tests set.
const TIMEOUT: Duration = Duration::from_secs(2);
const TIMEOUT_FLAG: &str = "2s";

/// What a busy two-core test machine may add to a bound.
const SLACK: Duration = Duration::from_secs(8);

fn chat_message(c: Id, text: &str) -> Value {
    json!({"type": "channel_message", "data": {
        "channel_id": c.to_string(),
        "message_id": Id::new_v4().to_string(),
        "user_id": Id::new_v4().to_string(),
        "username": null,
        "content": text,
    }})
}

/// What a real client does: `/healthz`, `/readyz`, a WebSocket that
/// subscribes, and an event published over HTTP that reaches it.
async fn serve_real_clients(gateway: &Gateway, http: &reqwest::Client, text: &str) {
    for path in ["/healthz", "/readyz"] {
        let status = http
            .get(gateway.http(path))
            .send()
            .await
            .expect(path)
            .status();
        assert_eq!(status, 200, "{path}");
    }
    let c = Id::new_v4();
    let mut client = Client::connect(gateway, &token(Id::new_v4(), Grant::All, &[])).await;
    client.subscribe(chat(c)).await;
    let publisher = token(Id::new_v4(), Grant::None, &[Role::Publisher]);
    let reply = http
        .post(gateway.http("/v1/events"))
        .bearer_auth(&publisher)
        .json(&chat_message(c, text))
        .send()
        .await
        .expect("publish");
    assert_eq!(reply.status(), 200);
    let event = client.next().await;
    assert_eq!(event["data"]["content"], text, "{event}");
    client.close().await;
}
