//! `GET /v1/catalog` (any valid token): every event type this node knows,
//! built in or added by its catalog, with its routes, whether it is
//! stored, and its `data` schema.

use std::sync::Arc;

use serde_json::{json, Value};
use warp::http::{HeaderMap, StatusCode};
use warp::reply::Response;

use super::{authenticate, json_reply, Edge};
use crate::event::EventType;

pub(super) async fn catalog(headers: HeaderMap, edge: Arc<Edge>) -> Response {
    if let Err(refusal) = authenticate(&edge.keys, &headers, None, None).await {
        return refusal.into_response();
    }
    json_reply(StatusCode::OK, &listing())
}

/// The listing: the built-in types, then the added ones, by name.
pub fn listing() -> Value {
    let mut types: Vec<Value> = EventType::ALL.iter().map(|kind| built_in(*kind)).collect();
    for added in crate::catalog::get().added() {
        let routes: Vec<Value> = added.routes.iter().map(|r| r.json()).collect();
        types.push(json!({
            "type": added.name,
            "built_in": false,
            "stored": added.stored,
            "routes": routes,
            "schema": added.schema,
        }));
    }
    json!({ "types": types })
}

fn built_in(kind: EventType) -> Value {
    let routes = match kind {
        EventType::ChannelCreated => json!(["global"]),
        k if k.is_moderation() => json!([{"channel": "channel_id"}, {"user": "user_id"}]),
        _ => json!([{"channel": "channel_id"}]),
    };
    let name = format!("events/{kind}");
    let schema = crate::schema::FILES
        .iter()
        .find(|(file, _)| *file == name)
        .and_then(|(_, text)| serde_json::from_str::<Value>(text).ok())
        .unwrap_or(Value::Null);
    json!({
        "type": kind.as_str(),
        "built_in": true,
        "stored": kind.is_stored(),
        "routes": routes,
        "schema": schema,
    })
}
