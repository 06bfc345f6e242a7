//! `POST /v1/events`: the publish route, whose head alone decides whether
//! its body is read.
//!
//! A missing or bad token (401), a missing role (403), a missing or too
//! large `Content-Length` (411, 413) and a full [`PublishBuffer`] (503 with
//! `Retry-After`) are answered without reading a byte of the body: hyper
//! sends `100 Continue` only when a body is first read, so a refused
//! `Expect: 100-continue` request never gets one, and a stranger's body
//! costs no memory. Every such answer closes the connection (its body is
//! unread). An authorized body is read into room it took from the buffer
//! (by its `Content-Length`, held until the answer), growing with what
//! arrives, and must arrive within `http_body_timeout` (408).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use warp::http::{HeaderMap, HeaderValue, StatusCode};
use warp::reply::Response;

use super::{authenticate, error_reply, json_reply, Edge};
use crate::metrics::Metrics;
use crate::schema;
use crate::token::Role;

/// Largest `POST /v1/events` body: a longer `Content-Length` is answered
/// 413 before the body is read.
pub const MAX_PUBLISH_BODY: u64 = 256 * 1024;

/// The `Retry-After` of a publish refused because the `PublishBuffer` is
/// full, in seconds: bodies in it are read within `http_body_timeout`, most
/// far sooner.
pub const PUBLISH_RETRY_AFTER: &str = "1";

/// `POST /v1/events`: the head decides (token, role, length, room in the
/// buffer) before a byte of the body is read.
pub(super) async fn publish<B: bytes::Buf>(
    headers: HeaderMap,
    body: impl futures::Stream<Item = Result<B, warp::Error>>,
    edge: Arc<Edge>,
) -> Response {
    if let Err(refusal) = authenticate(&edge.keys, &headers, None, Some(Role::Publisher)).await {
        let mut response = refusal.into_response();
        close_after(&mut response);
        return response;
    }
    let length = match declared_length(&headers) {
        Ok(length) => length,
        Err(refused) => return refused.into_response(),
    };
    // Held until the answer: the body, then the event made of it.
    let Some(_room) = edge.publish_buffer.take(length) else {
        return BodyRefused::BufferFull.into_response();
    };
    let body = match read_body(body, length, edge.bounds.http_body_timeout).await {
        Ok(body) => body,
        Err(refused) => return refused.into_response(),
    };
    let event = schema::event_from_body(&body);
    drop(body);
    let event = match event {
        Ok(event) => event,
        Err(e) => return error_reply(StatusCode::BAD_REQUEST, "bad_request", e),
    };
    if !event.kind().is_stored() {
        // An ephemeral added type: live on every node, never stored.
        return match edge.node.publish_ephemeral(&event).await {
            Ok(()) => json_reply(
                StatusCode::OK,
                &serde_json::json!({"id": event.id, "stored": false}),
            ),
            Err(e) => {
                tracing::warn!(error = %e, "ephemeral publish failed");
                error_reply(StatusCode::SERVICE_UNAVAILABLE, "unavailable", e)
            }
        };
    }
    let started = Instant::now();
    match edge.node.publish(&event).await {
        Ok(receipt) => {
            Metrics::get()
                .publish_latency
                .record(started.elapsed().as_secs_f64());
            json_reply(StatusCode::OK, &receipt.to_json())
        }
        Err(e) => {
            tracing::warn!(error = %e, "publish failed");
            error_reply(StatusCode::SERVICE_UNAVAILABLE, "unavailable", e)
        }
    }
}

/// The memory for `POST /v1/events` bodies being received, all requests
/// together (the `publish_buffer_bytes` setting): one permit per byte.
#[derive(Clone)]
pub(super) struct PublishBuffer(Arc<Semaphore>);

impl PublishBuffer {
    pub(super) fn new(bytes: usize) -> PublishBuffer {
        PublishBuffer(Arc::new(Semaphore::new(bytes.min(Semaphore::MAX_PERMITS))))
    }

    /// Room for a body of `length` bytes, given back when dropped; `None`
    /// when the buffer does not have it now.
    fn take(&self, length: u64) -> Option<OwnedSemaphorePermit> {
        let permits = u32::try_from(length).ok()?;
        self.0.clone().try_acquire_many_owned(permits).ok()
    }
}

/// The body's length as its head declares it, if the body may be read:
/// present and at most [`MAX_PUBLISH_BODY`].
fn declared_length(headers: &HeaderMap) -> Result<u64, BodyRefused> {
    let Some(length) = headers.get(warp::http::header::CONTENT_LENGTH) else {
        return Err(BodyRefused::LengthRequired);
    };
    // hyper has refused a malformed or ambiguous one already.
    let length = length
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .ok_or(BodyRefused::LengthRequired)?;
    if length > MAX_PUBLISH_BODY {
        return Err(BodyRefused::TooLarge);
    }
    Ok(length)
}

/// Bytes a body's storage starts with; it then doubles as bytes arrive, up
/// to the declared length (never allocated ahead of the bytes).
const BODY_FIRST_ALLOCATION: usize = 4096;

/// The request body, whole, if it arrives within `timeout` of the end of
/// the head and is no longer than `declared` (whatever its framing says);
/// else why not. What it holds is never more than `declared` bytes, nor
/// more than twice what has arrived.
pub(super) async fn read_body<B: bytes::Buf>(
    body: impl futures::Stream<Item = Result<B, warp::Error>>,
    declared: u64,
    timeout: Duration,
) -> Result<Bytes, BodyRefused> {
    use futures::StreamExt;
    // At most MAX_PUBLISH_BODY (`declared_length`).
    let declared = usize::try_from(declared).unwrap_or(usize::MAX);
    let read = async move {
        let mut body = std::pin::pin!(body);
        let mut bytes: Vec<u8> = Vec::new();
        while let Some(chunk) = body.next().await {
            let mut chunk = chunk.map_err(|_| BodyRefused::Broken)?;
            let needed = bytes.len() + chunk.remaining();
            if needed > declared {
                return Err(BodyRefused::TooLarge);
            }
            if needed > bytes.capacity() {
                let grown = needed
                    .max(bytes.capacity() * 2)
                    .max(BODY_FIRST_ALLOCATION)
                    .min(declared);
                bytes.reserve_exact(grown - bytes.len());
            }
            while chunk.has_remaining() {
                let part = chunk.chunk();
                let n = part.len();
                bytes.extend_from_slice(part);
                chunk.advance(n);
            }
        }
        Ok(Bytes::from(bytes))
    };
    match tokio::time::timeout(timeout, read).await {
        Ok(read) => read,
        Err(_) => {
            Metrics::get().http_client_errors.body_timeout.increment(1);
            Err(BodyRefused::Timeout(timeout))
        }
    }
}

/// Why a request body was not read whole (or not read at all).
#[derive(Debug)]
pub(super) enum BodyRefused {
    /// No `Content-Length`.
    LengthRequired,
    /// Over [`MAX_PUBLISH_BODY`].
    TooLarge,
    /// The [`PublishBuffer`] has no room for it now.
    BufferFull,
    /// Not within `http_body_timeout`.
    Timeout(Duration),
    /// The connection failed in the middle of it.
    Broken,
}

impl BodyRefused {
    /// The answer; the rest of the body is not read, so the connection
    /// cannot carry another request and is closed.
    pub(super) fn into_response(self) -> Response {
        let mut response = match self {
            BodyRefused::LengthRequired => error_reply(
                StatusCode::LENGTH_REQUIRED,
                "length_required",
                format!(
                    "send the body with a `Content-Length` header (at most {} KiB)",
                    MAX_PUBLISH_BODY / 1024
                ),
            ),
            BodyRefused::TooLarge => error_reply(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!(
                    "the body is larger than {} KiB, the most `POST /v1/events` takes",
                    MAX_PUBLISH_BODY / 1024
                ),
            ),
            BodyRefused::BufferFull => {
                Metrics::get().shed_publish_buffer.increment(1);
                let mut response = error_reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    format!(
                        "the gateway is receiving as many publish bodies as it holds at once \
                         (publish_buffer_bytes); retry in {PUBLISH_RETRY_AFTER} s, or publish \
                         through another gateway"
                    ),
                );
                response
                    .headers_mut()
                    .insert("retry-after", HeaderValue::from_static(PUBLISH_RETRY_AFTER));
                response
            }
            BodyRefused::Timeout(timeout) => error_reply(
                StatusCode::REQUEST_TIMEOUT,
                "timeout",
                format!(
                    "the request body did not arrive within {}",
                    humantime::format_duration(timeout)
                ),
            ),
            BodyRefused::Broken => error_reply(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "the request body could not be read",
            ),
        };
        close_after(&mut response);
        response
    }
}

/// Marks a response as the connection's last: it is answered before its
/// request's body was read, so the connection cannot carry another.
pub(super) fn close_after(response: &mut Response) {
    response
        .headers_mut()
        .insert("connection", HeaderValue::from_static("close"));
}
