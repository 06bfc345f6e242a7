//! Code and schemas cannot drift: every schema file is listed and compiles,
//! everything the code emits (event data, envelopes, stored payloads, control
//! frames) passes its schema, and the schemas and the typed decoders agree on
//! what is valid and what is not.
//!
//! This file holds what the modules share; each module is one concept.

mod client_frames;
mod control_frames;
mod decoder;
mod emitted;
mod files;

use std::collections::BTreeSet;

use serde_json::Value;
use switchboard::channel::Id;
use switchboard::schema::{Schemas, FILES};

const C: &str = "0b6f2c1e-3d4a-4f5b-8c9d-0e1f2a3b4c5d";
const U: &str = "11111111-2222-4333-8444-555555555555";
const M: &str = "99999999-8888-4777-a666-555555555555";

fn schemas() -> &'static Schemas {
    Schemas::get()
}

fn enum_strings(schema: &Value, pointer: &str) -> BTreeSet<String> {
    schema
        .pointer(pointer)
        .and_then(Value::as_array)
        .unwrap_or_else(|| panic!("{pointer} is an enum"))
        .iter()
        .map(|v| v.as_str().expect("enum of strings").to_string())
        .collect()
}

fn file_schema(name: &str) -> Value {
    let (_, text) = FILES
        .iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("{name} is in FILES"));
    serde_json::from_str(text).expect("schema is JSON")
}

/// Ids given upper-case: what the code emits must still be lower-case.
fn upper_id() -> Id {
    Id::parse(&Id::new_v4().to_string().to_uppercase()).expect("upper-case id parses")
}
