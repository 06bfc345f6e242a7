//! The JSON Schemas in `schemas/`, compiled once, and the validation of what
//! publishers send (the schema's error is the one they get back).
//!
//! The gateway's hot path validates stored events with the typed decoder in
//! [`crate::event`]; tests hold the two to the same verdicts, and validate
//! every frame the code emits against these schemas, so they cannot drift.

use std::collections::HashMap;
use std::sync::OnceLock;

use jsonschema::Validator;
use serde_json::Value;

use crate::channel::Id;
use crate::event::{Event, EventData, EventType};

macro_rules! embedded {
    ($($name:literal),* $(,)?) => {
        &[$(($name, include_str!(concat!("../schemas/", $name, ".json"))),)*]
    };
}

/// Every schema file, by its path under `schemas/` without `.json`.
pub const FILES: &[(&str, &str)] = embedded![
    "envelope",
    "publish",
    "http_publish",
    "events/channel_message",
    "events/message_updated",
    "events/message_deleted",
    "events/message_reply",
    "events/member_joined",
    "events/member_left",
    "events/member_role_updated",
    "events/user_banned",
    "events/user_unbanned",
    "events/user_kicked",
    "events/channel_created",
    "events/channel_updated",
    "events/channel_deleted",
    "events/user_typing",
    "events/user_presence",
    "client/subscribe",
    "client/unsubscribe",
    "client/typing",
    "client/ack",
    "client/ping",
    "client/presence",
    "client/refresh",
    "server/hello",
    "server/subscribed",
    "server/replayed",
    "server/unsubscribed",
    "server/pong",
    "server/presence",
    "server/error",
    "server/refreshed",
];

/// The compiled schemas.
pub struct Schemas {
    validators: HashMap<&'static str, Validator>,
}

impl Schemas {
    /// Compiles every schema once. The schemas are part of the binary; one
    /// that does not compile is a build defect, reported on first use.
    pub fn get() -> &'static Schemas {
        static SCHEMAS: OnceLock<Schemas> = OnceLock::new();
        SCHEMAS.get_or_init(|| {
            let mut validators = HashMap::new();
            for (name, text) in FILES {
                let compiled = serde_json::from_str::<Value>(text)
                    .map_err(|e| e.to_string())
                    .and_then(|schema| {
                        jsonschema::validator_for(&schema).map_err(|e| e.to_string())
                    });
                match compiled {
                    Ok(v) => {
                        validators.insert(*name, v);
                    }
                    Err(e) => tracing::error!(schema = name, error = %e, "schema does not compile"),
                }
            }
            Schemas { validators }
        })
    }

    /// Validates `value` against the named schema; the error names the
    /// failing location and rule.
    pub fn check(&self, name: &str, value: &Value) -> Result<(), String> {
        let validator = self
            .validators
            .get(name)
            .ok_or_else(|| format!("no schema `{name}`"))?;
        let errors: Vec<String> = validator
            .iter_errors(value)
            .take(5)
            .map(|e| {
                let path = e.instance_path.to_string();
                let message = quoted_briefly(&e.to_string(), &e.instance.to_string());
                if path.is_empty() {
                    message
                } else {
                    format!("{}: {message}", excerpt(&path, MAX_QUOTED))
                }
            })
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }

    /// Validates an event's `data` against its type's schema.
    pub fn check_data(&self, kind: EventType, data: &Value) -> Result<(), String> {
        self.check(&format!("events/{kind}"), data)
            .map_err(|e| format!("data: {e}"))
    }
}

/// Characters of the refused input an error quotes, at most: a schema error
/// names the location and the rule, and quotes only an excerpt of the value
/// (a publisher's body may be 256 KiB).
pub const MAX_QUOTED: usize = 80;

/// A validator's message with the instance it quotes cut to an excerpt,
/// and the whole message bounded (it may also list unexpected keys).
fn quoted_briefly(message: &str, instance: &str) -> String {
    let message = if instance.chars().count() > MAX_QUOTED {
        message.replacen(instance, &excerpt(instance, MAX_QUOTED), 1)
    } else {
        message.to_string()
    };
    excerpt(&message, 4 * MAX_QUOTED)
}

/// At most `max` characters of `s`, with `…` when cut.
fn excerpt(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((end, _)) => format!("{}…", &s[..end]),
        None => s.to_string(),
    }
}

/// Why a publish body was refused.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Rejected(pub String);

/// Validates a publish request `{type, data, id?}` (JSON text) against the
/// schemas and the domain rules, and makes the event. `user_typing` is
/// refused: it is ephemeral and never stored. `data` is kept as given,
/// fields this version does not know and all (README "Publishers can be newer than the gateway"): it is
/// stored byte for byte, but for ids, which are stored in canonical form.
pub fn event_from_body(body: &[u8]) -> Result<Event, Rejected> {
    /// The body's `data`, as text; the other fields are read from the value.
    #[derive(serde::Deserialize)]
    struct DataText<'a> {
        #[serde(borrow)]
        data: &'a serde_json::value::RawValue,
    }

    let schemas = Schemas::get();
    let body_value: Value =
        serde_json::from_slice(body).map_err(|e| Rejected(format!("body is not JSON: {e}")))?;
    if body_value.get("type").and_then(Value::as_str) == Some("user_typing") {
        return Err(Rejected(crate::event::EventError::Ephemeral.to_string()));
    }
    let added = body_value
        .get("type")
        .and_then(Value::as_str)
        .and_then(|t| crate::catalog::get().find(t));
    match added {
        // An added type's body: the built-in schema's type list does not
        // name it; its `data` is checked by its own schema below.
        Some(_) => check_added_body(&body_value)?,
        None => schemas
            .check("http_publish", &body_value)
            .map_err(Rejected)?,
    }
    let kind = body_value
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| Rejected("missing `type`".into()))
        .and_then(|t| EventType::parse(t).map_err(|e| Rejected(e.to_string())))?;
    let data = body_value.get("data").unwrap_or(&Value::Null);
    if added.is_none() {
        schemas.check_data(kind, data).map_err(Rejected)?;
    }
    // The text of `data` as given; a repeated `data` key is refused here
    // (the value above kept only the last one).
    let text: DataText =
        serde_json::from_slice(body).map_err(|e| Rejected(format!("body: {e}")))?;
    let (data, raw_data) =
        EventData::decode_kept(kind, text.data.get()).map_err(|e| Rejected(e.to_string()))?;
    let id = match body_value.get("id").and_then(Value::as_str) {
        Some(id) => Id::parse(id).map_err(|e| Rejected(e.to_string()))?,
        None => Id::new_v4(),
    };
    let event = Event {
        id,
        data,
        raw_data: Some(raw_data),
    };
    event.validate().map_err(|e| Rejected(e.to_string()))?;
    Ok(event)
}

/// The shape of a publish body of an added type: `{type, data, id?}`,
/// `data` an object and `id` a UUID (as `http_publish.json` has it for the
/// built-in types).
fn check_added_body(body: &Value) -> Result<(), Rejected> {
    let object = body
        .as_object()
        .ok_or_else(|| Rejected("the body is not a JSON object".into()))?;
    if let Some(key) = object
        .keys()
        .find(|k| !matches!(k.as_str(), "type" | "data" | "id"))
    {
        return Err(Rejected(format!(
            "unknown field `{}` (a body is {{type, data, id?}})",
            excerpt(key, MAX_QUOTED)
        )));
    }
    if !object.get("data").is_some_and(Value::is_object) {
        return Err(Rejected("`data` must be a JSON object".into()));
    }
    match object.get("id") {
        None => Ok(()),
        Some(Value::String(id)) if Id::parse(id).is_ok() => Ok(()),
        Some(_) => Err(Rejected("`id` must be a UUID".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_schema_compiles() {
        let schemas = Schemas::get();
        for (name, _) in FILES {
            assert!(
                schemas.validators.contains_key(name),
                "{name} did not compile"
            );
        }
    }

    #[test]
    fn every_event_type_has_a_schema() {
        for kind in EventType::ALL {
            let name = format!("events/{kind}");
            assert!(
                FILES.iter().any(|(n, _)| *n == name),
                "no schema for {kind}"
            );
        }
    }

    fn event_from_body(body: &Value) -> Result<Event, Rejected> {
        super::event_from_body(body.to_string().as_bytes())
    }

    #[test]
    fn extra_data_fields_are_kept_as_given() {
        let c = c_id();
        let body = format!(
            r#"{{"type":"channel_deleted","data":{{"channel_id":"{}", "reason":{{"by":"ops","n":1.50}}}}}}"#,
            c.to_uppercase()
        );
        let event = super::event_from_body(body.as_bytes()).unwrap();
        assert_eq!(
            event.raw_data.unwrap().as_str(),
            format!(r#"{{"channel_id":"{c}","reason":{{"by":"ops","n":1.50}}}}"#)
        );
        let repeated = format!(
            r#"{{"type":"channel_deleted","data":{{"channel_id":"{c}"}},"data":{{"channel_id":"{c}"}}}}"#
        );
        assert!(super::event_from_body(repeated.as_bytes()).is_err());
        assert!(super::event_from_body(b"{")
            .unwrap_err()
            .0
            .contains("not JSON"));
    }

    #[test]
    fn publish_bodies() {
        let c = "0b6f2c1e-3d4a-4f5b-8c9d-0e1f2a3b4c5d";
        let ok = json!({"type": "channel_deleted", "data": {"channel_id": c}});
        assert!(event_from_body(&ok).is_ok());
        let typing = json!({"type": "user_typing", "data": {}});
        assert!(event_from_body(&typing)
            .unwrap_err()
            .0
            .contains("ephemeral"));
        let bad = json!({"type": "channel_deleted", "data": {"channel_id": "x"}});
        assert!(event_from_body(&bad).unwrap_err().0.contains("channel_id"));
        let no_user = json!({"type": "user_kicked", "data": {"channel_id": c}});
        assert!(event_from_body(&no_user).is_err());
    }

    #[test]
    fn errors_quote_only_an_excerpt_of_the_body() {
        let big = "z".repeat(200_000);
        for (body, rule) in [
            (json!({"type": big, "data": {}}), "is not one of"),
            (
                json!({"type": "channel_deleted", "data": {"channel_id": big}}),
                "does not match",
            ),
            (
                json!({"type": "channel_deleted", "data": [big]}),
                "is not of type",
            ),
            (
                json!({"type": "channel_deleted", "data": {}, big.clone(): 1}),
                "Additional properties",
            ),
            (
                json!({"type": "channel_deleted", "data": {"channel_id": c_id(), "x": big.clone(), "y": []}, "z": 1}),
                "Additional properties",
            ),
        ] {
            let e = event_from_body(&body).unwrap_err().0;
            assert!(e.len() < 2_000, "{} bytes: {}…", e.len(), &e[..200]);
            assert!(e.contains(rule), "{e}");
        }
    }

    fn c_id() -> &'static str {
        "0b6f2c1e-3d4a-4f5b-8c9d-0e1f2a3b4c5d"
    }
}
