//! The WebSocket upgrade, done here rather than with `warp::ws()` so that the
//! transport's buffers are ours to bound: tungstenite's default read buffer
//! is 128 KiB per socket, kept for the socket's life, many times what an
//! idle connection costs the gateway in all (docs/performance.md). The
//! handshake also answers a `permessage-deflate` offer
//! ([`super::deflate`]), and the socket's stream inflates what a client
//! compressed ([`super::inflate`]).

use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::WebSocketStream;
use warp::http::{header, HeaderMap, HeaderValue, StatusCode};
use warp::reply::Response;

use super::deflate::{self, Deflate};
use super::inflate::Inflating;

/// Bytes read from the socket at a time, and what an idle connection keeps
/// for reading (tungstenite keeps one buffer per socket for its life, and
/// would grow it for good to hold a larger frame: `gateway::inflate` hands
/// it frames of at most [`PIECE_BYTES`](super::inflate::PIECE_BYTES), so
/// it stays this size). When this was 4 KiB, 5,000 idle subscribed
/// connections cost 13.3 KiB each, and 9.7 KiB with 512 bytes (`just bench
/// fanout`, 2026-11-30); 128 bytes keeps 384 bytes less than 512. Today's
/// figures are in docs/performance.md.
pub const READ_BUFFER_BYTES: usize = 128;

/// tungstenite's write buffer, which holds only its own frames (pongs to
/// the client's pings, the close frame): event frames are written by
/// `gateway::outbox`.
pub const WRITE_BUFFER_BYTES: usize = 16 * 1024;

/// The socket type every connection speaks.
pub type Socket = WebSocketStream<Inflating<TokioIo<Upgraded>>>;

/// The transport configuration: bounded read, write and frame sizes.
pub fn config(max_frame_bytes: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(WRITE_BUFFER_BYTES)
        .max_write_buffer_size(WRITE_BUFFER_BYTES + max_frame_bytes * 2)
        .max_message_size(Some(max_frame_bytes))
        .max_frame_size(Some(max_frame_bytes))
}

/// Why a request is not a WebSocket upgrade.
#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    #[error("not a WebSocket upgrade request: {0}")]
    NotUpgrade(&'static str),
}

/// Checks the handshake headers and returns the `101` response, with what
/// was agreed for compression (`compression`: whether the node offers it
/// at all); `on_upgrade` then yields the raw connection.
pub fn handshake(
    headers: &HeaderMap,
    compression: bool,
) -> Result<(Response, Option<Deflate>), UpgradeError> {
    let has = |name: header::HeaderName, token: &str| {
        headers.get_all(name).iter().any(|v| {
            v.to_str()
                .map(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
                .unwrap_or(false)
        })
    };
    if !has(header::CONNECTION, "upgrade") {
        return Err(UpgradeError::NotUpgrade("missing `Connection: upgrade`"));
    }
    if !has(header::UPGRADE, "websocket") {
        return Err(UpgradeError::NotUpgrade("missing `Upgrade: websocket`"));
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .map(|v| v.as_bytes())
        != Some(b"13")
    {
        return Err(UpgradeError::NotUpgrade(
            "`Sec-WebSocket-Version` must be 13",
        ));
    }
    let key = headers
        .get(header::SEC_WEBSOCKET_KEY)
        .ok_or(UpgradeError::NotUpgrade("missing `Sec-WebSocket-Key`"))?;
    let accept = derive_accept_key(key.as_bytes());
    let mut response = Response::default();
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = response.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(value) = HeaderValue::from_str(&accept) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, value);
    }
    let deflate = match deflate::negotiate(headers).filter(|_| compression) {
        Some((deflate, answer)) => {
            h.insert(header::SEC_WEBSOCKET_EXTENSIONS, answer);
            Some(deflate)
        }
        None => None,
    };
    Ok((response, deflate))
}

/// Completes the upgrade into a socket with our configuration; with
/// `deflate`, its stream inflates compressed messages, each bounded by the
/// configuration's message size.
pub async fn accept(
    on_upgrade: OnUpgrade,
    config: WebSocketConfig,
    deflate: Option<Deflate>,
) -> Option<Socket> {
    match on_upgrade.await {
        Ok(upgraded) => {
            let max = config.max_message_size.unwrap_or(usize::MAX);
            let io = Inflating::new(TokioIo::new(upgraded), deflate, max);
            Some(WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await)
        }
        Err(e) => {
            tracing::debug!(error = %e, "upgrade failed");
            None
        }
    }
}
