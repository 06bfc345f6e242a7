//! `asyncapi.yaml` is what the generator (`switchboard::catalog::asyncapi`)
//! writes with no catalog; after a change to the generator or to a list it
//! reads, rewrite it with `UPDATE_ASYNCAPI=1 cargo test --test asyncapi`.
//!
//! And it describes everything the code knows (by construction now, still
//! checked): every client frame type, server control frame type, event
//! type, close code, error code and NATS subject, each in its place (client
//! frames received, the rest sent; stored subjects in the stream, typing
//! not), with payloads that point at the matching file of `schemas/`. A
//! catalog's added types join it, each in its place. That the document is
//! valid AsyncAPI is checked by `clients/typescript/test/asyncapi.test.mjs`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use switchboard::catalog::{self, asyncapi, Catalog};
use switchboard::event::EventType;
use switchboard::gateway::protocol::{Close, ControlType, ErrorCode, CLIENT_FRAME_TYPES};
use switchboard::log::subject::{stream_subjects, typing_wildcard};

const WS_CHANNEL: &str = "gateway";
const NATS_SERVER: &str = "#/servers/nats";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn document() -> Value {
    let path = repo().join("asyncapi.yaml");
    let text = std::fs::read_to_string(&path).expect("asyncapi.yaml at the repository root");
    serde_norway::from_str(&text).expect("asyncapi.yaml is YAML")
}

fn json_file(relative: &str) -> Value {
    let path: PathBuf = repo().join(relative.trim_start_matches("./"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{relative}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{relative}: {e}"))
}

/// Follows a local `$ref` (`#/a/b`), or returns the value itself.
fn resolve<'a>(doc: &'a Value, value: &'a Value) -> &'a Value {
    match value["$ref"].as_str() {
        Some(r) if r.starts_with("#/") => doc
            .pointer(&r[1..])
            .unwrap_or_else(|| panic!("dangling $ref {r}")),
        _ => value,
    }
}

fn str_set<'a>(items: impl IntoIterator<Item = &'a str>) -> BTreeSet<String> {
    items.into_iter().map(str::to_string).collect()
}

/// A component message, by key, or a description of what is missing.
fn message<'a>(doc: &'a Value, key: &str) -> Result<&'a Value, String> {
    doc["components"]["messages"]
        .get(key)
        .ok_or_else(|| format!("no message `components.messages.{key}`"))
}

/// The message keys an operation names (`#/channels/<c>/messages/<key>`).
fn operation_messages(op: &Value) -> Vec<String> {
    op["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["$ref"].as_str())
        .filter_map(|r| r.rsplit('/').next())
        .map(str::to_string)
        .collect()
}

/// The messages of every operation with this action on this channel.
fn operated(doc: &Value, action: &str, channel: &str) -> BTreeSet<String> {
    let target = format!("#/channels/{channel}");
    doc["operations"]
        .as_object()
        .expect("operations")
        .values()
        .filter(|op| op["action"] == action && op["channel"]["$ref"] == target.as_str())
        .flat_map(operation_messages)
        .collect()
}

/// The AsyncAPI key of a client frame's message: its type, or
/// `{type}_request` when a server frame has that type too (`presence`).
fn client_key(kind: &str) -> String {
    let answered_by_namesake = ControlType::ALL.iter().any(|t| t.as_str() == kind);
    if answered_by_namesake {
        format!("{kind}_request")
    } else {
        kind.to_string()
    }
}

/// A control or client frame's message (under `key`): named `kind`, its
/// payload is the frame's schema file.
fn check_frame(doc: &Value, key: &str, kind: &str, dir: &str, problems: &mut Vec<String>) {
    let m = match message(doc, key) {
        Ok(m) => m,
        Err(e) => return problems.push(e),
    };
    let want = format!("./schemas/{dir}/{kind}.json");
    if m["name"] != kind || m["payload"]["schema"]["$ref"] != want.as_str() {
        problems.push(format!(
            "message `{key}` must be named `{kind}` with payload {want}"
        ));
        return;
    }
    if json_file(&want)["properties"]["type"]["const"] != kind {
        problems.push(format!("{want} is not the `{kind}` frame"));
    }
}

/// An event-shaped payload: `allOf` of the outer schema and `{type, data}`.
fn check_allof(payload: &Value, outer: &str, kind: &str) -> Result<(), String> {
    let parts = payload["schema"]["allOf"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let data = format!("./schemas/events/{kind}.json");
    let ok = parts.len() == 2
        && parts[0]["$ref"] == outer
        && parts[1]["properties"]["type"]["const"] == kind
        && parts[1]["properties"]["data"]["$ref"] == data.as_str();
    if !ok {
        return Err(format!(
            "payload of `{kind}` must be allOf [{outer}, {{type: {kind}, data: {data}}}]"
        ));
    }
    json_file(&data);
    Ok(())
}

#[test]
fn every_websocket_frame_type_is_described() {
    let doc = document();
    assert_eq!(doc["asyncapi"], "3.0.0");
    let mut problems = Vec::new();

    for kind in CLIENT_FRAME_TYPES {
        check_frame(&doc, &client_key(kind), kind, "client", &mut problems);
    }
    let client: BTreeSet<String> = CLIENT_FRAME_TYPES.iter().map(|k| client_key(k)).collect();
    let control = str_set(ControlType::ALL.iter().map(|t| t.as_str()));
    for kind in &control {
        check_frame(&doc, kind, kind, "server", &mut problems);
    }
    let mut events = str_set(EventType::ALL.iter().map(|t| t.as_str()));
    assert_eq!(events.len(), 14);
    // The gateway's own event, beside the catalog.
    events.insert(switchboard::presence::USER_PRESENCE.to_string());
    for kind in &events {
        match message(&doc, kind)
            .and_then(|m| check_allof(&m["payload"], "./schemas/envelope.json", kind))
        {
            Ok(()) => {}
            Err(e) => problems.push(e),
        }
    }

    let on_channel: BTreeSet<String> = doc["channels"][WS_CHANNEL]["messages"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    let sent: BTreeSet<String> = control.union(&events).cloned().collect();
    let all: BTreeSet<String> = client.union(&sent).cloned().collect();
    if on_channel != all {
        problems.push(format!(
            "channel `{WS_CHANNEL}` has messages {on_channel:?}, the code knows {all:?}"
        ));
    }
    let received = operated(&doc, "receive", WS_CHANNEL);
    if received != client {
        problems.push(format!(
            "the gateway receives {received:?} on the WebSocket, the code decodes {client:?}"
        ));
    }
    let sent_ops = operated(&doc, "send", WS_CHANNEL);
    if sent_ops != sent {
        problems.push(format!(
            "the gateway sends {sent_ops:?} on the WebSocket, the code sends {sent:?}"
        ));
    }
    assert!(
        problems.is_empty(),
        "asyncapi.yaml:\n{}",
        problems.join("\n")
    );
}

#[test]
fn every_close_code_and_error_code_is_described() {
    let doc = document();
    let mut problems = Vec::new();

    let closes = doc["channels"][WS_CHANNEL]["x-close-codes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for close in Close::ALL {
        let described = closes
            .iter()
            .any(|c| c["code"] == close.code() && c["reason"] == close.reason());
        if !described {
            problems.push(format!(
                "x-close-codes has no {} with reason {:?} ({close:?})",
                close.code(),
                close.reason()
            ));
        }
    }

    let error = match message(&doc, "error") {
        Ok(m) => m,
        Err(e) => panic!("{e}"),
    };
    let described = str_set(
        error["x-error-codes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["code"].as_str()),
    );
    for code in ErrorCode::ALL {
        if !described.contains(code.as_str()) {
            problems.push(format!("x-error-codes has no `{}`", code.as_str()));
        }
    }
    let schema = json_file("schemas/server/error.json");
    let in_schema = str_set(
        schema["properties"]["data"]["properties"]["code"]["enum"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str),
    );
    if described != in_schema {
        problems.push(format!(
            "x-error-codes {described:?} differ from schemas/server/error.json's {in_schema:?}"
        ));
    }
    assert!(
        problems.is_empty(),
        "asyncapi.yaml:\n{}",
        problems.join("\n")
    );
}

/// A channel address with its `{parameters}` as NATS wildcards.
fn as_subject_filter(address: &str) -> String {
    address
        .split('.')
        .map(|token| {
            if token.starts_with('{') && token.ends_with('}') {
                "*"
            } else {
                token
            }
        })
        .collect::<Vec<_>>()
        .join(".")
}

#[test]
fn every_nats_subject_is_described() {
    let doc = document();
    let mut problems = Vec::new();
    let channels = doc["channels"].as_object().expect("channels");
    let nats: Vec<(&String, &Value)> = channels
        .iter()
        .filter(|(_, c)| {
            c["servers"]
                .as_array()
                .is_some_and(|s| s.iter().any(|s| s["$ref"] == NATS_SERVER))
        })
        .collect();

    let stream: BTreeSet<String> = stream_subjects().into_iter().collect();
    let typing = typing_wildcard();
    let mut known = stream.clone();
    known.insert(typing.clone());
    let described: BTreeSet<String> = nats
        .iter()
        .filter_map(|(_, c)| c["address"].as_str())
        .map(as_subject_filter)
        .collect();
    if described != known {
        problems.push(format!(
            "NATS channels {:?} are not in asyncapi.yaml; {:?} are there but not in the code",
            known.difference(&described).collect::<Vec<_>>(),
            described.difference(&known).collect::<Vec<_>>()
        ));
    }

    let received = |key: &str| {
        doc["operations"].as_object().is_some_and(|ops| {
            ops.values().any(|op| {
                op["action"] == "receive" && op["channel"]["$ref"] == format!("#/channels/{key}")
            })
        })
    };
    for (key, channel) in &nats {
        let address = channel["address"].as_str().unwrap_or_default();
        let filter = as_subject_filter(address);
        let stored = stream.contains(&filter);
        if stored != channel.get("x-stream").is_some() {
            problems.push(format!(
                "channel `{key}` ({address}): x-stream must be there exactly when the stream stores it"
            ));
        }
        for param in address.split('.').filter(|t| t.starts_with('{')) {
            let name = param.trim_matches(|c| c == '{' || c == '}');
            if channel["parameters"].get(name).is_none() {
                problems.push(format!(
                    "channel `{key}` does not describe parameter {name}"
                ));
            }
        }
        if !received(key) {
            problems.push(format!("no receive operation on channel `{key}`"));
        }
        let kind = filter.rsplit('.').next().unwrap_or_default();
        let Some(m) = channel["messages"].get(kind) else {
            problems.push(format!("channel `{key}` has no message `{kind}`"));
            continue;
        };
        let m = resolve(&doc, m);
        if m["name"] != kind {
            problems.push(format!("channel `{key}`'s message is not named `{kind}`"));
        }
        if stored {
            if let Err(e) = check_allof(&m["payload"], "./schemas/publish.json", kind) {
                problems.push(format!("channel `{key}`: {e}"));
            }
            let headers = resolve(&doc, &m["headers"]);
            let required = &headers["schema"]["required"];
            if !required
                .as_array()
                .is_some_and(|r| r.iter().any(|h| h == "Nats-Msg-Id"))
            {
                problems.push(format!(
                    "channel `{key}`: stored messages carry Nats-Msg-Id"
                ));
            }
        } else if m["payload"]["schema"]["properties"]["data"]["$ref"]
            != format!("./schemas/events/{kind}.json")
        {
            problems.push(format!(
                "channel `{key}`: data must be ./schemas/events/{kind}.json"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "asyncapi.yaml:\n{}",
        problems.join("\n")
    );
}

/// Every file `$ref` points at a file of the repository.
#[test]
fn every_file_ref_exists() {
    fn walk(value: &Value, refs: &mut BTreeSet<String>) {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(r)) = map.get("$ref") {
                    if !r.starts_with('#') {
                        refs.insert(r.clone());
                    }
                }
                map.values().for_each(|v| walk(v, refs));
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, refs)),
            _ => {}
        }
    }
    let mut refs = BTreeSet::new();
    walk(&document(), &mut refs);
    assert!(!refs.is_empty());
    let missing: Vec<_> = refs
        .iter()
        .filter(|r| !repo().join(r.trim_start_matches("./")).is_file())
        .collect();
    assert!(missing.is_empty(), "dangling file refs: {missing:?}");
}

#[test]
fn the_committed_document_is_the_generated_one() {
    let path = repo().join("asyncapi.yaml");
    let generated = asyncapi::yaml(&Catalog::default());
    if std::env::var_os("UPDATE_ASYNCAPI").is_some() {
        std::fs::write(&path, &generated).expect("asyncapi.yaml is writable");
        return;
    }
    let committed = std::fs::read_to_string(&path).expect("asyncapi.yaml at the repository root");
    assert!(
        committed == generated,
        "asyncapi.yaml differs from what src/catalog/asyncapi.rs writes; \
         run `UPDATE_ASYNCAPI=1 cargo test --test asyncapi` (first difference at line {})",
        committed
            .lines()
            .zip(generated.lines())
            .position(|(a, b)| a != b)
            .map_or(
                committed.lines().count().min(generated.lines().count()),
                |i| i
            )
            + 1
    );
}

/// The YAML text and the JSON document are the same document, with a
/// catalog too (a YAML reader takes no string for anything else).
#[test]
fn the_yaml_reads_back_as_the_json_document() {
    let dir = catalog_dir();
    let catalog = catalog::load(dir.path()).expect("the test catalog loads");
    for catalog in [Catalog::default(), catalog] {
        let text = asyncapi::yaml(&catalog);
        let read: Value = serde_norway::from_str(&text).expect("the generated YAML is YAML");
        assert_eq!(read, asyncapi::document(&catalog));
    }
}

/// A catalog with a stored type on two routes (one field with a local
/// `$ref`) and an ephemeral type named like a control frame.
fn catalog_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("dir");
    let write = |name: &str, schema: Value| {
        std::fs::write(dir.path().join(format!("{name}.json")), schema.to_string()).expect("write")
    };
    write(
        "reaction_added",
        json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "required": ["channel_id", "user_id", "emoji"],
            "$defs": {"id": {"type": "string"}},
            "properties": {
                "channel_id": {"$ref": "#/$defs/id"},
                "user_id": {"$ref": "#/$defs/id"},
                "emoji": {"type": "string", "maxLength": 16, "description": "One emoji: 'x' or \"y\"."}
            },
            "x-switchboard": {"routes": [{"channel": "channel_id"}, {"user": "user_id"}], "stored": true}
        }),
    );
    write(
        "subscribe",
        json!({
            "type": "object",
            "required": ["room"],
            "properties": {"room": {"type": "string"}},
            "x-switchboard": {"routes": [{"channel": "room"}, "global"], "stored": false}
        }),
    );
    dir
}

/// Each added type is on the WebSocket beside the built-in events (its
/// own key: `subscribe` stays the client frame), and on NATS once per route,
/// in the stream when stored, with the gateway reading it.
#[test]
fn a_catalogs_types_are_added_in_their_places() {
    let dir = catalog_dir();
    let catalog = catalog::load(dir.path()).expect("the test catalog loads");
    let doc = asyncapi::document(&catalog);
    let builtin = asyncapi::document(&Catalog::default());
    let mut problems = Vec::new();

    // Everything built in is still there, unchanged.
    for section in ["servers", "channels", "operations"] {
        for (key, value) in builtin[section].as_object().expect(section) {
            if key != WS_CHANNEL && key != "send_events" && doc[section][key] != *value {
                problems.push(format!("{section}.{key} changed with a catalog"));
            }
        }
    }
    let sent = operated(&doc, "send", WS_CHANNEL);
    for (name, stored) in [("reaction_added", true), ("subscribe", false)] {
        let key = format!("added.{name}");
        let m = &doc["components"]["messages"][&key];
        if m["name"] != name || m["payload"]["schema"]["properties"]["type"]["const"] != name {
            problems.push(format!("no WebSocket message `{key}` named {name}"));
        }
        let has_seq = m["payload"]["schema"]["properties"].get("seq").is_some();
        if has_seq != stored {
            problems.push(format!("`{key}`: seq exactly when stored"));
        }
        if doc["channels"][WS_CHANNEL]["messages"].get(&key).is_none() || !sent.contains(&key) {
            problems.push(format!(
                "the gateway does not send `{key}` on the WebSocket"
            ));
        }
    }
    if doc["components"]["messages"]["subscribe"] != builtin["components"]["messages"]["subscribe"]
    {
        problems.push("the added `subscribe` took the client frame's key".into());
    }
    let id = &doc["components"]["messages"]["added.reaction_added"]["payload"]["schema"]
        ["properties"]["data"]["properties"]["user_id"]["$ref"];
    if resolve_pointer(&doc, id) != &json!({"type": "string"}) {
        problems.push(format!(
            "the inlined schema's local $ref {id} does not resolve"
        ));
    }

    let stream: Vec<String> = [
        "chat.channel.*.reaction_added",
        "chat.user.*.reaction_added",
    ]
    .map(String::from)
    .to_vec();
    for (key, address, stored) in [
        (
            "chat_channel_reaction_added",
            "chat.channel.{channel_id}.reaction_added",
            true,
        ),
        (
            "chat_user_reaction_added",
            "chat.user.{user_id}.reaction_added",
            true,
        ),
        (
            "chat_channel_subscribe",
            "chat.channel.{room}.subscribe",
            false,
        ),
        ("chat_global_subscribe", "chat.global.subscribe", false),
    ] {
        let channel = &doc["channels"][key];
        if channel["address"] != address {
            problems.push(format!("channel `{key}` is not at {address}"));
            continue;
        }
        let filter = as_subject_filter(address);
        if stored != channel.get("x-stream").is_some() || stored != stream.contains(&filter) {
            problems.push(format!("channel `{key}`: x-stream exactly when stored"));
        }
        let kind = filter.rsplit('.').next().unwrap_or_default();
        let m = resolve(&doc, &channel["messages"][kind]);
        if m["name"] != kind || m["payload"]["schema"]["properties"]["type"]["const"] != kind {
            problems.push(format!("channel `{key}` has no message `{kind}`"));
        }
        if stored != m.get("headers").is_some() {
            problems.push(format!(
                "channel `{key}`: Nats-Msg-Id headers exactly when stored"
            ));
        }
        if !operated(&doc, "receive", key).contains(kind) {
            problems.push(format!("no receive operation on channel `{key}`"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The value a `#/…` pointer names.
fn resolve_pointer<'a>(doc: &'a Value, target: &Value) -> &'a Value {
    let target = target.as_str().unwrap_or_default();
    doc.pointer(target.trim_start_matches('#'))
        .unwrap_or(&Value::Null)
}
