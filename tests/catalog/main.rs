//! Event types added by a catalog directory, end to end: real
//! nats-servers, the real binary, real WebSockets.
//!
//! - [`stored`]: an added stored type through HTTP, the CLI and NATS, on
//!   two routes; live, replay, history, `replay --summary`; the catalog
//!   route.
//! - [`ephemeral`]: an ephemeral added type, live only.
//! - [`rules`]: a banned user's added events withheld, live and in
//!   replay; a node without the type skips it and keeps delivering.
//! - [`files`]: bad catalog files stop `serve` with their name;
//!   `catalog check`'s exit codes; `catalog asyncapi`.

mod ephemeral;
mod files;
mod rules;
mod stored;

use std::path::Path;

use serde_json::{json, Value};
use switchboard::channel::{Channel, Id};
use switchboard::token::{Grant, Role};
use switchboard_harness::*;

/// `reaction_added`: stored, to the channel and to the reacting user.
fn reaction_schema() -> Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "required": ["channel_id", "message_id", "user_id", "emoji"],
        "properties": {
            "channel_id": {"type": "string"},
            "message_id": {"type": "string"},
            "user_id": {"type": "string"},
            "emoji": {"type": "string", "maxLength": 16}
        },
        "x-switchboard": {"routes": [{"channel": "channel_id"}, {"user": "user_id"}], "stored": true}
    })
}

/// `cursor_moved`: live only, to the channel.
fn cursor_schema() -> Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "required": ["channel_id", "x"],
        "properties": {"channel_id": {"type": "string"}, "x": {"type": "integer"}},
        "x-switchboard": {"routes": [{"channel": "channel_id"}], "stored": false}
    })
}

/// A catalog directory with both types.
fn catalog_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("dir");
    write(dir.path(), "reaction_added", &reaction_schema());
    write(dir.path(), "cursor_moved", &cursor_schema());
    dir
}

fn write(dir: &Path, name: &str, schema: &Value) {
    std::fs::write(dir.join(format!("{name}.json")), schema.to_string()).expect("write");
}

fn reaction(channel: Id, user: Id, emoji: &str) -> Value {
    json!({"channel_id": channel, "message_id": Id::new_v4(), "user_id": user, "emoji": emoji})
}

/// `POST /v1/events` as a publisher: status and reply.
async fn post(gateway: &Gateway, body: Value) -> (u16, Value) {
    let publisher = token(Id::new_v4(), Grant::None, &[Role::Publisher]);
    let reply = http()
        .post(gateway.http("/v1/events"))
        .bearer_auth(publisher)
        .json(&body)
        .send()
        .await
        .expect("publish");
    let status = reply.status().as_u16();
    (status, reply.json().await.unwrap_or(Value::Null))
}

/// Subscribes and returns the `subscribed` frame.
async fn subscribe(client: &mut Client, channel: Channel) {
    client.subscribe(channel).await;
}

/// The next frame of `type`, skipping others.
async fn next_of(client: &mut Client, kind: &str) -> Value {
    loop {
        let frame = client.next().await;
        if frame["type"] == kind {
            return frame;
        }
    }
}
