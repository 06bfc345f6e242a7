//! The AsyncAPI 3.0 document of a catalog's added types: for each type,
//! one NATS channel per route (`chat.channel.{id}.{type}`, …) that
//! services publish to, and the message, whose payload is the stored
//! `{id, type, timestamp?, data}` with the type's own schema as `data`.
//! The built-in types are in the repository's `asyncapi.yaml`.

use serde_json::{json, Map, Value};

use super::{Catalog, Route};

/// The document, as JSON.
pub fn document(catalog: &Catalog) -> Value {
    let mut channels = Map::new();
    let mut operations = Map::new();
    let mut messages = Map::new();
    for added in catalog.added() {
        let name = &added.name;
        let mut schema = added.schema.clone();
        if let Some(object) = schema.as_object_mut() {
            object.remove("$schema");
        }
        messages.insert(
            name.clone(),
            json!({
                "name": name,
                "title": format!("{name} (added)"),
                "summary": format!(
                    "An event type the catalog adds: {}, {}.",
                    if added.stored { "stored with a seq" } else { "ephemeral (live only, no seq)" },
                    added.file.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default()
                ),
                "payload": {
                    "type": "object",
                    "required": ["id", "type", "data"],
                    "properties": {
                        "id": {"type": "string", "format": "uuid"},
                        "type": {"const": name},
                        "timestamp": {"type": "string", "format": "date-time"},
                        "data": schema,
                    }
                }
            }),
        );
        for route in &added.routes {
            let (key, address, parameter) = match route {
                Route::Channel(field) => (
                    format!("{name}_on_channel"),
                    format!("chat.channel.{{{field}}}.{name}"),
                    Some(field),
                ),
                Route::User(field) => (
                    format!("{name}_on_user"),
                    format!("chat.user.{{{field}}}.{name}"),
                    Some(field),
                ),
                Route::Global => (
                    format!("{name}_on_global"),
                    format!("chat.global.{name}"),
                    None,
                ),
            };
            let mut channel = json!({
                "address": address,
                "title": format!("{name} on {}", route.json()),
                "messages": { name.clone(): {"$ref": format!("#/components/messages/{name}")} },
            });
            if let Some(field) = parameter {
                channel["parameters"] = json!({
                    field.clone(): {"description": format!("data.{field}, the route's id")}
                });
            }
            channels.insert(key.clone(), channel);
            operations.insert(
                format!("publish_{key}"),
                json!({
                    "action": "receive",
                    "title": format!("Publish {name} on {}", route.json()),
                    "channel": {"$ref": format!("#/channels/{key}")},
                    "messages": [{"$ref": format!("#/channels/{key}/messages/{name}")}],
                }),
            );
        }
    }
    json!({
        "asyncapi": "3.0.0",
        "info": {
            "title": "switchboard: added event types",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The event types this deployment's catalog adds to the 14 built-in ones (asyncapi.yaml). Each is published on NATS per route, stored or live only as its file says, and delivered on the WebSocket in the usual envelope."
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages},
    })
}
