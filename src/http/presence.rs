//! `GET /v1/presence/{channel}` (`auditor` or `admin`): who is online in a
//! chat channel, on every node, as the `presence` frame's `data` says it.

use std::sync::Arc;

use serde_json::json;
use warp::http::{HeaderMap, StatusCode};
use warp::reply::Response;

use super::{authenticate, error_reply, json_reply, Edge, Refusal};
use crate::channel::Channel;
use crate::presence::view::Snapshot;
use crate::token::Role;

pub(super) async fn presence(channel: String, headers: HeaderMap, edge: Arc<Edge>) -> Response {
    let claims = match authenticate(&edge.keys, &headers, None, None).await {
        Ok(claims) => claims,
        Err(refusal) => return refusal.into_response(),
    };
    if !(claims.has_role(Role::Auditor) || claims.has_role(Role::Admin)) {
        return Refusal::Forbidden(Role::Auditor).into_response();
    }
    let id = match Channel::parse(&channel) {
        Ok(Channel::Chat(id)) => id,
        Ok(other) => {
            return error_reply(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("{other}: presence is only for `channel:` channels"),
            )
        }
        Err(e) => return error_reply(StatusCode::BAD_REQUEST, "bad_request", e),
    };
    let snapshot = edge.node.presence(id);
    json_reply(StatusCode::OK, &snapshot_json(Channel::Chat(id), &snapshot))
}

/// A snapshot as the protocol writes it: `{channel, count, members:
/// [{user_id, username, connections}], truncated}`.
pub fn snapshot_json(channel: Channel, snapshot: &Snapshot) -> serde_json::Value {
    let members: Vec<serde_json::Value> = snapshot
        .members
        .iter()
        .map(|m| json!({"user_id": m.user, "username": m.username, "connections": m.connections}))
        .collect();
    json!({
        "channel": channel,
        "count": snapshot.count,
        "members": members,
        "truncated": snapshot.truncated,
    })
}
