//! Lean WebSocket clients for load: raw text frames, no JSON parsing on
//! the hot path (a frame's `type` or `seq` is found in its text), reads
//! bounded by the bench's [`PATIENCE`] or one deadline per read loop.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use switchboard::channel::Channel;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

use super::PATIENCE;

pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens a WebSocket with the given read buffer size.
pub async fn connect(url: &str, read_buffer: usize) -> Ws {
    let config = WebSocketConfig::default().read_buffer_size(read_buffer);
    let (ws, _) = tokio::time::timeout(
        PATIENCE,
        tokio_tungstenite::connect_async_with_config(url, Some(config), false),
    )
    .await
    .expect("connect in time")
    .expect("upgrade accepted");
    ws
}

/// The next text frame (pings, pongs and binary frames are skipped).
pub async fn next_text(ws: &mut Ws) -> String {
    loop {
        let message = tokio::time::timeout(PATIENCE, ws.next())
            .await
            .expect("a frame in time")
            .expect("socket open")
            .expect("socket ok");
        if let Message::Text(text) = message {
            return text.to_string();
        }
    }
}

/// A deadline for a whole read loop: registered once, cheap to poll per
/// frame (a timeout per frame would cost a timer each).
pub fn deadline() -> std::pin::Pin<Box<tokio::time::Sleep>> {
    Box::pin(tokio::time::sleep(PATIENCE))
}

/// The next message before the deadline; `None` when the socket ended,
/// failed or the deadline passed.
pub async fn next_before(
    ws: &mut Ws,
    deadline: &mut std::pin::Pin<Box<tokio::time::Sleep>>,
) -> Option<Message> {
    tokio::select! {
        biased;
        message = ws.next() => message.and_then(Result::ok),
        _ = deadline.as_mut() => None,
    }
}

/// The `type` of a control frame, or `None` for an event (it has a `seq`).
pub fn control_type(frame: &str) -> Option<String> {
    if frame.contains("\"seq\":") {
        return None;
    }
    let value: serde_json::Value = serde_json::from_str(frame).ok()?;
    value["type"].as_str().map(str::to_string)
}

/// Connects to the gateway and reads `hello`.
pub async fn connect_gateway(url: &str, read_buffer: usize) -> Ws {
    let mut ws = connect(url, read_buffer).await;
    let hello = next_text(&mut ws).await;
    assert_eq!(control_type(&hello).as_deref(), Some("hello"), "{hello}");
    ws
}

/// Sends `subscribe` (with `since_seq` when given).
pub async fn send_subscribe(ws: &mut Ws, channel: Channel, since_seq: Option<u64>) {
    let mut frame = serde_json::json!({"type": "subscribe", "channel": channel.to_string()});
    if let Some(seq) = since_seq {
        frame["since_seq"] = seq.into();
    }
    ws.send(Message::Text(frame.to_string().into()))
        .await
        .expect("send subscribe");
}

/// Subscribes without replay and waits for `subscribed`.
pub async fn subscribe_live(ws: &mut Ws, channel: Channel) {
    subscribe_all(ws, &[channel]).await;
}

/// Sends a `subscribe` without replay for each channel, then waits for as
/// many `subscribed`.
pub async fn subscribe_all(ws: &mut Ws, channels: &[Channel]) {
    for &channel in channels {
        send_subscribe(ws, channel, None).await;
    }
    let mut subscribed = 0;
    while subscribed < channels.len() {
        let frame = next_text(ws).await;
        match control_type(&frame).as_deref() {
            Some("subscribed") => subscribed += 1,
            Some("error") => panic!("subscribe refused: {frame}"),
            _ => {}
        }
    }
}

/// Opens a WebSocket with the given read buffer size; an error (refused,
/// upgrade denied, timed out) is returned, not a panic: a storm's clients
/// retry.
pub async fn try_connect(url: &str, read_buffer: usize, timeout: Duration) -> Result<Ws, String> {
    let config = WebSocketConfig::default().read_buffer_size(read_buffer);
    match tokio::time::timeout(
        timeout,
        tokio_tungstenite::connect_async_with_config(url, Some(config), false),
    )
    .await
    {
        Ok(Ok((ws, _))) => Ok(ws),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("connect timed out".into()),
    }
}

/// The decimal digits after `key` in a frame (`"seq":`), without parsing
/// the whole frame.
pub fn frame_u64(frame: &str, key: &str) -> Option<u64> {
    let start = frame.find(key)? + key.len();
    let rest = frame[start..].trim_start_matches('"');
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}
