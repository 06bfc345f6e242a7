//! `GET /v1/presence/{channel}` (`auditor` or `admin`): who is online in a
//! chat channel, on every node, as the `presence` frame's `data` says it.

use std::sync::Arc;

use warp::http::{HeaderMap, StatusCode};
use warp::reply::Response;

use super::{authenticate, error_reply, json_reply, Edge, Refusal};
use crate::channel::Channel;
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
    json_reply(StatusCode::OK, &edge.node.presence(id).json(id))
}
