//! The catalog's added types: for each, its event on the WebSocket
//! (`added.{type}`, the envelope with the type's schema as `data`), and
//! per route the NATS channel services publish to, with the message as
//! published (`added.stored.{type}`, `added.stored_user.{type}` for a user
//! copy, `added.nats.{type}` live only) and the gateway's receive
//! operation.
//!
//! The keys carry a `.`, which no type name and no built-in key has, so an
//! added type never takes a built-in message's key (a type may be named
//! `hello` or `stored_user_banned`). The type's schema is inlined where
//! each message needs it; its local `$ref`s (`#/$defs/…`) are pointed at
//! the place it is inlined.

use serde_json::Value;

use super::nats::{address, stream_name, CopyOn};
use super::tree::{list, map, reference, Node};
use super::websocket::delivery;
use super::{channel_message, payload, Catalog, Sections};
use crate::catalog::{AddedType, Route};

/// The key of an added type's event on the WebSocket.
pub(super) fn event_key(name: &str) -> String {
    format!("added.{name}")
}

/// The added type's event as the WebSocket delivers it: the envelope
/// (`schemas/envelope.json`'s, whose `type` lists only the built-in
/// types) with `type` fixed and the type's schema as `data`.
pub(super) fn event_message(added: &AddedType) -> Node {
    let name = &added.name;
    let key = event_key(name);
    let copies: Vec<(CopyOn, String)> = added.routes.iter().map(copy).collect();
    let stored = if added.stored {
        "Stored: carries `seq`."
    } else {
        "Ephemeral: live only, no `seq`."
    };
    let mut properties = map([
        ("type", map([("const", Node::from(name.as_str()))])),
        (
            "timestamp",
            map([
                ("type", Node::from("string")),
                ("format", "date-time".into()),
            ]),
        ),
        ("channel", map([("type", Node::from("string"))])),
        (
            "id",
            map([("type", Node::from("string")), ("format", "uuid".into())]),
        ),
    ]);
    let mut required = vec!["type", "timestamp", "data", "channel", "id"];
    if added.stored {
        properties.push(
            "seq",
            map([("type", Node::from("integer")), ("minimum", 1u16.into())]),
        );
        required.push("seq");
    }
    properties.push(
        "data",
        data(
            added,
            &format!("#/components/messages/{key}/payload/schema/properties/data"),
        ),
    );
    map([
        ("name", Node::from(name.as_str())),
        ("title", format!("{name} event").into()),
        ("summary", summary(added).into()),
        (
            "description",
            format!("Delivered on {}. {stored}", delivery(&copies, false)).into(),
        ),
        (
            "payload",
            payload(map([
                ("type", Node::from("object")),
                ("properties", properties),
                ("required", list(required.into_iter().map(Node::from))),
            ])),
        ),
    ])
}

pub(super) fn describe(sections: &mut Sections, catalog: &Catalog) {
    for added in catalog.added() {
        let name = added.name.as_str();
        let mut published: Vec<String> = Vec::new();
        for route in &added.routes {
            let (on, parameter) = copy(route);
            let mut key = format!("chat_{}_{name}", on.token());
            if sections.channels.get_mut(&key).is_some() {
                // A second route of the same kind (the same subjects).
                key = format!("{key}_{parameter}");
            }
            let address = address(on, &parameter, name);
            let message = match (added.stored, on) {
                (true, CopyOn::User) => format!("added.stored_user.{name}"),
                (true, _) => format!("added.stored.{name}"),
                (false, _) => format!("added.nats.{name}"),
            };
            let mut channel = map([
                ("address", Node::from(address.as_str())),
                (
                    "title",
                    format!(
                        "{name} ({})",
                        if added.stored { "stored" } else { "core NATS" }
                    )
                    .into(),
                ),
                ("description", channel_description(added, route).into()),
                ("servers", list([reference("#/servers/nats")])),
            ]);
            if on != CopyOn::Global {
                channel.push(
                    "parameters",
                    map([(
                        parameter.as_str(),
                        map([(
                            "description",
                            Node::from(format!(
                                "`data.{parameter}`, the id that routes this copy (a UUID)."
                            )),
                        )]),
                    )]),
                );
            }
            channel.push(
                "messages",
                map([(name, reference(format!("#/components/messages/{message}")))]),
            );
            if added.stored {
                channel.push("x-stream", stream_name().into());
            }
            sections.channels.push(key.clone(), channel);

            let description = if added.stored {
                "The gateway reads the stream in order; services publish here.".to_string()
            } else {
                format!(
                    "Subscribed on core NATS as `{}`; fanned out to the channel's subscribers. \
                     Services publish here.",
                    route.subject_filter(name)
                )
            };
            sections.operations.push(
                format!("receive_{key}"),
                map([
                    ("action", Node::from("receive")),
                    ("title", format!("Read {address}").into()),
                    ("description", description.into()),
                    ("channel", reference(format!("#/channels/{key}"))),
                    ("messages", list([channel_message(&key, name)])),
                ]),
            );

            if !published.contains(&message) {
                sections
                    .messages
                    .push(message.clone(), published_message(added, &message, on));
                published.push(message);
            }
        }
    }
}

/// A route as a copy and its id parameter (the field that routes it).
fn copy(route: &Route) -> (CopyOn, String) {
    match route {
        Route::Channel(field) => (CopyOn::Channel, field.clone()),
        Route::User(field) => (CopyOn::User, field.clone()),
        Route::Global => (CopyOn::Global, String::new()),
    }
}

fn summary(added: &AddedType) -> String {
    let file = added
        .file
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    format!("An event type the catalog adds ({file}).")
}

fn channel_description(added: &AddedType, route: &Route) -> String {
    let copy = match route {
        Route::Channel(field) => {
            format!("The copy for subscribers of `channel:{{{field}}}` (`data.{field}`).")
        }
        Route::User(field) => format!("The copy for `user:{{{field}}}` (`data.{field}`)."),
        Route::Global => "The copy on the `global` subscription channel.".to_string(),
    };
    if added.stored {
        format!("{copy} Stored in the stream.")
    } else {
        format!("{copy} On core NATS only: never stored, never replayed.")
    }
}

/// The payload as published: `{id, type, timestamp?, data}`, with the
/// `Nats-Msg-Id` headers of a stored copy.
fn published_message(added: &AddedType, key: &str, on: CopyOn) -> Node {
    let name = added.name.as_str();
    let (title, headers) = match (added.stored, on) {
        (true, CopyOn::User) => (
            format!("{name} as published (user copy)"),
            Some("storedUserCopyHeaders"),
        ),
        (true, _) => (format!("{name} as published"), Some("storedHeaders")),
        (false, _) => (format!("{name} as published on core NATS"), None),
    };
    let mut message = map([
        ("name", Node::from(name)),
        ("title", title.into()),
        ("summary", summary(added).into()),
    ]);
    if let Some(headers) = headers {
        message.push(
            "headers",
            reference(format!("#/components/schemas/{headers}")),
        );
    }
    message.push(
        "payload",
        payload(map([
            ("type", Node::from("object")),
            (
                "properties",
                map([
                    (
                        "id",
                        map([("type", Node::from("string")), ("format", "uuid".into())]),
                    ),
                    ("type", map([("const", Node::from(name))])),
                    (
                        "timestamp",
                        map([
                            ("type", Node::from("string")),
                            ("format", "date-time".into()),
                        ]),
                    ),
                    (
                        "data",
                        data(
                            added,
                            &format!("#/components/messages/{key}/payload/schema/properties/data"),
                        ),
                    ),
                ]),
            ),
            ("required", list(["id", "type", "data"].map(Node::from))),
        ])),
    );
    message
}

/// The type's schema inlined at `at` (a `$ref` pointer): without
/// `$schema` (the payload's schemaFormat says which draft), its local
/// `$ref`s made relative to `at`.
fn data(added: &AddedType, at: &str) -> Node {
    let mut schema = added.schema.clone();
    if let Some(object) = schema.as_object_mut() {
        object.remove("$schema");
    }
    repoint(&mut schema, at);
    Node::from(&schema)
}

fn repoint(value: &mut Value, at: &str) {
    match value {
        Value::Object(object) => {
            for (key, inner) in object.iter_mut() {
                match inner {
                    Value::String(target) if key == "$ref" && target.starts_with('#') => {
                        *target = format!("{at}{}", &target[1..]);
                    }
                    other => repoint(other, at),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| repoint(v, at)),
        _ => {}
    }
}
