//! The live path over a real WebSocket: every event type end to end,
//! authorization, typing, fan-out order, bad input, 401s and shutdown.
//!
//! Each module is one concept; shutdown is tested here.

mod authorization;
mod client_frames;
mod delivery;
mod http_api;

use std::time::Duration;

use serde_json::{json, Value};
use switchboard::channel::{Channel, Id};
use switchboard::event::{format_timestamp, Event};
use switchboard::token::{Grant, Role};
use switchboard_harness::*;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn shutdown_closes_every_socket_with_1001() {
    let nats = nats();
    let mut gateway = Gateway::start(&nats);
    let mut clients = Vec::new();
    for _ in 0..3 {
        let mut client = Client::connect(&gateway, &token(Id::new_v4(), Grant::All, &[])).await;
        client.subscribe(Channel::Global).await;
        clients.push(client);
    }
    let stopping = tokio::task::spawn_blocking(move || {
        let status = gateway.terminate();
        (gateway, status)
    });
    for client in &mut clients {
        assert_eq!(client.closed_with().await, 1001);
        let reconnect = client.hello["data"]["reconnect_ms"].as_u64().expect("hint");
        assert!(reconnect > 0);
    }
    let (_gateway, status) = stopping.await.expect("joined");
    assert!(status.success(), "{status:?}");
}
