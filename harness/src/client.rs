//! A WebSocket client that speaks the gateway's protocol as an app does:
//! JSON text frames, `hello` first, pings answered by the socket, every
//! read bounded by [`PATIENCE`](crate::PATIENCE).

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use switchboard::channel::Channel;
use tokio_tungstenite::tungstenite::Message;

use crate::{Gateway, PATIENCE};

/// A WebSocket client that speaks the protocol.
pub struct Client {
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    pub hello: Value,
}

impl Client {
    pub async fn connect(gateway: &Gateway, token: &str) -> Client {
        Client::connect_url(&gateway.ws_url(token)).await
    }

    pub async fn connect_session(gateway: &Gateway, token: &str, session: &str) -> Client {
        Client::connect_url(&format!("{}&session={session}", gateway.ws_url(token))).await
    }

    pub async fn connect_url(url: &str) -> Client {
        Client::try_connect_url(url)
            .await
            .expect("upgrade accepted")
    }

    pub fn session_id(&self) -> String {
        self.hello["data"]["session_id"]
            .as_str()
            .expect("session id")
            .to_string()
    }

    pub async fn send(&mut self, frame: Value) {
        self.ws
            .send(Message::Text(frame.to_string().into()))
            .await
            .expect("send");
    }

    pub async fn send_raw(&mut self, message: Message) {
        self.ws.send(message).await.expect("send");
    }

    /// The next text frame as JSON (pings and pongs skipped).
    pub async fn next(&mut self) -> Value {
        match self.next_message().await {
            Message::Text(text) => serde_json::from_str(&text).expect("frames are JSON"),
            other => panic!("expected a text frame, got {other:?}"),
        }
    }

    /// The next non-ping message, whatever it is.
    pub async fn next_message(&mut self) -> Message {
        loop {
            let message = tokio::time::timeout(PATIENCE, self.ws.next())
                .await
                .expect("a frame in time")
                .expect("socket open")
                .expect("socket ok");
            match message {
                Message::Ping(_) | Message::Pong(_) => continue,
                other => return other,
            }
        }
    }

    /// The next text frame, or `None` once the socket is closed or broken;
    /// a failure if neither happens within [`PATIENCE`].
    pub async fn try_next(&mut self) -> Option<Value> {
        loop {
            let message = tokio::time::timeout(PATIENCE, self.ws.next())
                .await
                .expect("a frame or the end of the socket in time")?;
            match message {
                Ok(Message::Text(text)) => return serde_json::from_str(&text).ok(),
                Ok(Message::Close(_)) | Err(_) => return None,
                Ok(_) => continue,
            }
        }
    }

    /// Waits for the close frame and returns its code.
    pub async fn closed_with(&mut self) -> u16 {
        self.closed_with_reason().await.0
    }

    /// Waits for the close frame (skipping what comes before it) and
    /// returns its code and reason.
    pub async fn closed_with_reason(&mut self) -> (u16, String) {
        loop {
            let message = tokio::time::timeout(PATIENCE, self.ws.next())
                .await
                .expect("close in time");
            match message {
                Some(Ok(Message::Close(Some(frame)))) => {
                    return (frame.code.into(), frame.reason.to_string())
                }
                Some(Ok(Message::Close(None))) => return (1005, String::new()),
                Some(Ok(_)) => continue,
                Some(Err(e)) => panic!("socket error before a close frame: {e}"),
                None => panic!("socket ended without a close frame"),
            }
        }
    }

    /// Nothing arrives within `quiet` (a short look, for "nothing more" checks
    /// after a condition was already awaited).
    pub async fn assert_silent(&mut self, quiet: Duration) {
        if let Ok(Some(Ok(message))) = tokio::time::timeout(quiet, self.ws.next()).await {
            match message {
                Message::Ping(_) | Message::Pong(_) => {}
                other => panic!("expected silence, got {other:?}"),
            }
        }
    }

    pub async fn subscribe(&mut self, channel: Channel) -> Value {
        self.send(
            json!({"type": "subscribe", "channel": channel.to_string(), "request_id": "sub"}),
        )
        .await;
        let reply = self.next().await;
        assert_eq!(reply["type"], "subscribed", "{reply}");
        reply
    }

    /// Subscribes with `since_seq` and returns (subscribed, replayed events, replayed frame).
    pub async fn subscribe_since(
        &mut self,
        channel: Channel,
        since: Value,
    ) -> (Value, Vec<Value>, Value) {
        let mut frame = json!({"type": "subscribe", "channel": channel.to_string()});
        match since {
            Value::String(_) => frame["since"] = since,
            other => frame["since_seq"] = other,
        }
        self.send(frame).await;
        self.read_replay(channel).await
    }

    /// Reads `subscribed`, the replayed events and `replayed` for `channel`.
    pub async fn read_replay(&mut self, channel: Channel) -> (Value, Vec<Value>, Value) {
        let subscribed = self.next().await;
        assert_eq!(subscribed["type"], "subscribed", "{subscribed}");
        assert_eq!(subscribed["data"]["channel"], channel.to_string());
        let mut events = Vec::new();
        loop {
            let frame = self.next().await;
            if frame["type"] == "replayed" && frame["data"]["channel"] == channel.to_string() {
                return (subscribed, events, frame);
            }
            events.push(frame);
        }
    }

    /// The next `n` event frames (with a `seq`), failing on anything else.
    pub async fn events(&mut self, n: usize) -> Vec<Value> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let frame = self.next().await;
            assert!(frame.get("seq").is_some(), "expected an event, got {frame}");
            out.push(frame);
        }
        out
    }

    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }

    /// Drops the connection as a network failure would: no close frame, and
    /// a TCP reset (whatever the gateway wrote that was not read is lost).
    pub fn abort(self) {
        if let tokio_tungstenite::MaybeTlsStream::Plain(tcp) = self.ws.get_ref() {
            let _ = tcp.set_zero_linger();
        }
    }

    /// Like [`Client::connect_url`], but a refused upgrade (or any other
    /// failure to connect) is returned instead of failing the test.
    pub async fn try_connect_url(
        url: &str,
    ) -> Result<Client, tokio_tungstenite::tungstenite::Error> {
        let (ws, _) = tokio::time::timeout(PATIENCE, tokio_tungstenite::connect_async(url))
            .await
            .expect("connect in time")?;
        let mut client = Client {
            ws,
            hello: Value::Null,
        };
        let hello = client.next().await;
        assert_eq!(hello["type"], "hello", "first frame is hello: {hello}");
        client.hello = hello;
        Ok(client)
    }
}
