//! An echo server on the gateway's own transport, for the Autobahn
//! WebSocket test suite (`just autobahn`, scripts/autobahn.sh): the
//! gateway's handshake and `permessage-deflate` negotiation
//! (`gateway::upgrade`, `gateway::deflate`), its reading stream
//! (`gateway::inflate` in front of tungstenite) and its frame writer
//! (`gateway::outbox`), with every message echoed back. The gateway itself
//! speaks an application protocol and never echoes; this example exists so
//! that the suite's echo cases test the transport the gateway runs on.
//!
//! `cargo run --release --example autobahn_echo -- 127.0.0.1:9001`

use std::convert::Infallible;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use switchboard::gateway::outbox::Outbox;
use switchboard::gateway::upgrade;
use switchboard::metrics::Metrics;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::error::{CapacityError, Error, ProtocolError};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

/// The suite's largest messages in sections 1 to 13 are 128 KiB; section 9
/// goes to 16 MiB, the gateway's upper bound for `max_frame_bytes`.
const MAX_MESSAGE_BYTES: usize = 16 << 20;

const STALL: Duration = Duration::from_secs(30);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9001".into());
    let listener = TcpListener::bind(&addr).await?;
    println!("echoing on ws://{}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(async move {
            let service = hyper::service::service_fn(|request: hyper::Request<Incoming>| async {
                Ok::<_, Infallible>(answer(request))
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades()
                .await;
        });
    }
}

/// The handshake's answer; the socket, once upgraded, echoes.
fn answer(mut request: hyper::Request<Incoming>) -> warp::reply::Response {
    let (response, deflate) = match upgrade::handshake(request.headers(), true) {
        Ok(answer) => answer,
        Err(e) => {
            let mut response = warp::reply::Response::new(e.to_string().into());
            *response.status_mut() = hyper::StatusCode::BAD_REQUEST;
            return response;
        }
    };
    let on_upgrade = hyper::upgrade::on(&mut request);
    tokio::spawn(async move {
        let config = upgrade::config(MAX_MESSAGE_BYTES);
        if let Some(socket) = upgrade::accept(on_upgrade, config, deflate).await {
            echo(socket, deflate.is_some_and(|d| d.compresses())).await;
        }
    });
    response
}

async fn echo(mut socket: upgrade::Socket, compress: bool) {
    let mut outbox = Outbox::default();
    outbox.compress(compress);
    let metrics = Metrics::get();
    loop {
        let code = match socket.next().await {
            None => return,
            Some(Ok(Message::Text(text))) => {
                outbox.push_text(text.as_str().to_owned());
                None
            }
            Some(Ok(Message::Binary(bytes))) => {
                outbox.push_binary(bytes);
                None
            }
            // The answer to a Close is queued by tungstenite: flushed below.
            Some(Ok(Message::Close(_))) => {
                let _ = socket.flush().await;
                return;
            }
            Some(Ok(_)) => None,
            Some(Err(Error::Capacity(CapacityError::MessageTooLong { .. }))) => {
                Some(CloseCode::Size)
            }
            Some(Err(Error::Utf8(_))) => Some(CloseCode::Invalid),
            Some(Err(Error::Protocol(ProtocolError::ResetWithoutClosingHandshake))) => return,
            Some(Err(Error::Protocol(_))) => Some(CloseCode::Protocol),
            Some(Err(_)) => return,
        };
        if let Some(code) = code {
            let close = CloseFrame {
                code,
                reason: "".into(),
            };
            let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
            outbox.close(&mut socket, close, deadline).await;
            return;
        }
        // Also sends what tungstenite owes (a pong).
        if outbox.flush(&mut socket, STALL, metrics).await.is_err() {
            return;
        }
    }
}
