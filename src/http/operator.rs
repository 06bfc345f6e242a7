//! The operator's routes (`admin` role): `POST /v1/users/{user_id}/disconnect`
//! closes every WebSocket of a user on every node with 4003 (on logout, a
//! password change, an account's deletion) and drops their sessions.

use std::sync::Arc;

use serde_json::{json, Value};
use warp::http::{HeaderMap, StatusCode};
use warp::reply::Response;

use super::publish::{close_after, read_body, BodyRefused};
use super::{authenticate, error_reply, json_reply, Edge};
use crate::channel::Id;
use crate::token::Role;

/// The largest body a disconnect takes (`{"reason": ...}`).
pub const MAX_DISCONNECT_BODY: u64 = 4096;

/// The reason when the body gives none.
pub const DEFAULT_REASON: &str = "disconnected by the operator";

/// `POST /v1/users/{user_id}/disconnect`, body optional `{"reason": string}`:
/// answers `{"closed": n}`, the connections closed on this node (the other
/// nodes close theirs when NATS brings them the command).
pub(super) async fn disconnect<B: bytes::Buf>(
    user: String,
    headers: HeaderMap,
    body: impl futures::Stream<Item = Result<B, warp::Error>>,
    edge: Arc<Edge>,
) -> Response {
    if let Err(refusal) = authenticate(&edge.keys, &headers, None, Some(Role::Admin)).await {
        let mut response = refusal.into_response();
        close_after(&mut response);
        return response;
    }
    let user = match Id::parse(&user) {
        Ok(user) => user,
        Err(e) => {
            let mut response = error_reply(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("user id: {e}"),
            );
            close_after(&mut response);
            return response;
        }
    };
    let length = headers
        .get(warp::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(0);
    if length > MAX_DISCONNECT_BODY {
        let mut response = error_reply(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("the body is larger than {MAX_DISCONNECT_BODY} bytes"),
        );
        close_after(&mut response);
        return response;
    }
    let reason = if length == 0 {
        DEFAULT_REASON.to_string()
    } else {
        let body = match read_body(body, length, edge.bounds.http_body_timeout).await {
            Ok(body) => body,
            Err(refused) => return BodyRefused::into_response(refused),
        };
        match reason_of(&body) {
            Ok(reason) => reason,
            Err(message) => return error_reply(StatusCode::BAD_REQUEST, "bad_request", message),
        }
    };
    match edge.node.disconnect(user, &reason).await {
        Ok(closed) => json_reply(StatusCode::OK, &json!({ "closed": closed })),
        Err(e) => error_reply(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            format!(
                "the user's connections on this node were closed and their sessions dropped, \
                 but the other nodes could not be told ({e}); try again"
            ),
        ),
    }
}

/// The body's `reason`: `{}` or `{"reason": null}` is the default one.
fn reason_of(body: &[u8]) -> Result<String, String> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
    match value.get("reason") {
        _ if !value.is_object() => Err("the body must be a JSON object".into()),
        None | Some(Value::Null) => Ok(DEFAULT_REASON.to_string()),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(DEFAULT_REASON.to_string()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err("`reason` must be a string".into()),
    }
}
