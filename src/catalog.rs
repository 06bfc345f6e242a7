//! The event catalog: the 14 built-in types ([`crate::event`]) and the
//! types a deployment adds without a rebuild, one JSON Schema per type in
//! the catalog directory (`catalog_dir`), each with its routing:
//!
//! ```json
//! {"$schema": "https://json-schema.org/draft/2020-12/schema",
//!  "type": "object",
//!  "required": ["channel_id", "message_id", "emoji"],
//!  "properties": {…},
//!  "x-switchboard": {"routes": [{"channel": "channel_id"}], "stored": true}}
//! ```
//!
//! in `reaction_added.json`. [`load`] reads and checks a directory (every
//! file, or none: the first bad file stops it, named with the reason);
//! [`install`] makes a catalog the process's, once, before anything
//! decodes an event; [`get`] is it (empty until installed). An added type
//! is an [`crate::event::EventType::Added`]: the event code asks the
//! installed catalog for its name, routes, stored flag and validator.
//!
//! [`asyncapi`] is the AsyncAPI document of the protocols, built-in types
//! and added ones (the repository's `asyncapi.yaml` is its built-in part).
//!
//! Architecture invariant: nothing here knows NATS, sockets or HTTP (the
//! AsyncAPI document describes them as data, and does no I/O); the
//! compiled validators are built once, at load.

pub mod asyncapi;
pub(crate) mod load;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::OnceLock;

use serde_json::Value;

use crate::channel::{Channel, Id};

pub use load::{check_name, load, CatalogError, MAX_ADDED_TYPES};

/// Where an added type's copies go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// `channel:{data[field]}`.
    Channel(String),
    /// `user:{data[field]}`.
    User(String),
    /// `global`.
    Global,
}

impl Route {
    /// The channel this route gives for `data`, or the field that does not
    /// hold an id.
    pub fn channel(&self, data: &serde_json::Map<String, Value>) -> Result<Channel, String> {
        let id = |field: &str| {
            data.get(field)
                .and_then(Value::as_str)
                .and_then(|s| Id::parse(s).ok())
                .ok_or_else(|| format!("`{field}` must be a UUID (it routes the event)"))
        };
        match self {
            Route::Channel(field) => id(field).map(Channel::Chat),
            Route::User(field) => id(field).map(Channel::User),
            Route::Global => Ok(Channel::Global),
        }
    }

    /// The route as the catalog file writes it.
    pub fn json(&self) -> Value {
        match self {
            Route::Channel(field) => serde_json::json!({ "channel": field }),
            Route::User(field) => serde_json::json!({ "user": field }),
            Route::Global => Value::from("global"),
        }
    }

    /// The subject wildcard of this route's copies of `kind`.
    pub fn subject_filter(&self, kind: &str) -> String {
        let root = crate::log::subject::ROOT;
        match self {
            Route::Channel(_) => format!("{root}.channel.*.{kind}"),
            Route::User(_) => format!("{root}.user.*.{kind}"),
            Route::Global => format!("{root}.global.{kind}"),
        }
    }
}

/// One added type.
pub struct AddedType {
    pub name: String,
    pub routes: Vec<Route>,
    /// Stored in the log (with a `seq`), or live only.
    pub stored: bool,
    /// The file's schema, as written (the catalog route and the AsyncAPI
    /// document show it).
    pub schema: Value,
    /// Where it was read from.
    pub file: PathBuf,
    pub(crate) validator: jsonschema::Validator,
}

impl std::fmt::Debug for AddedType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AddedType")
            .field("name", &self.name)
            .field("routes", &self.routes)
            .field("stored", &self.stored)
            .field("file", &self.file)
            .finish_non_exhaustive()
    }
}

impl AddedType {
    /// Validates `data` against the type's schema; the error names the
    /// failing location and rule.
    pub fn check(&self, data: &Value) -> Result<(), String> {
        if self.validator.is_valid(data) {
            return Ok(());
        }
        let errors: Vec<String> = self
            .validator
            .iter_errors(data)
            .take(5)
            .map(|e| {
                let path = e.instance_path.to_string();
                let message = e.to_string();
                let message: String = message.chars().take(240).collect();
                if path.is_empty() {
                    message
                } else {
                    format!("{path}: {message}")
                }
            })
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }
}

/// The added types, in name order.
#[derive(Debug, Default)]
pub struct Catalog {
    added: Vec<AddedType>,
    by_name: HashMap<String, u16>,
}

impl Catalog {
    pub(crate) fn new(mut added: Vec<AddedType>) -> Catalog {
        added.sort_by(|a, b| a.name.cmp(&b.name));
        let by_name = added
            .iter()
            .enumerate()
            .filter_map(|(i, t)| Some((t.name.clone(), u16::try_from(i).ok()?)))
            .collect();
        Catalog { added, by_name }
    }

    /// The index of the added type `name`.
    pub fn find(&self, name: &str) -> Option<u16> {
        self.by_name.get(name).copied()
    }

    pub fn added(&self) -> &[AddedType] {
        &self.added
    }

    /// The added type at `index` (an index [`Catalog::find`] gave).
    pub fn at(&self, index: u16) -> Option<&AddedType> {
        self.added.get(usize::from(index))
    }

    pub fn is_empty(&self) -> bool {
        self.added.is_empty()
    }
}

static INSTALLED: OnceLock<Catalog> = OnceLock::new();

/// Makes `catalog` the process's. Only the first call counts; it must come
/// before any event is decoded (a type decoded before would stay unknown).
/// Returns whether this call installed it.
pub fn install(catalog: Catalog) -> bool {
    INSTALLED.set(catalog).is_ok()
}

/// The process's catalog: the installed one, else none added.
pub fn get() -> &'static Catalog {
    static EMPTY: OnceLock<Catalog> = OnceLock::new();
    INSTALLED
        .get()
        .unwrap_or_else(|| EMPTY.get_or_init(Catalog::default))
}
