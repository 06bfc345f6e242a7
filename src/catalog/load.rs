//! Reading a catalog directory: every `*.json` file is one added type, and
//! every one must pass, or nothing is loaded. The checks, each refused
//! with the file and the reason: the name (`^[a-z][a-z0-9_]{0,63}$`, from
//! the file name, not a built-in type nor `user_presence`), JSON, a draft
//! 2020-12 schema of an object (`$schema`, when given, names 2020-12), the
//! `x-switchboard` declaration (`routes`: at least one of `{"channel": F}`,
//! `{"user": F}`, `"global"`, each field `F` listed in the schema's
//! `required`; `stored`: a boolean; nothing else), and that the schema
//! compiles.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{AddedType, Catalog, Route};
use crate::event::EventType;

/// The most types a catalog may add.
pub const MAX_ADDED_TYPES: usize = 4_096;

/// The largest catalog file read.
const MAX_FILE_BYTES: u64 = 1024 * 1024;

const DRAFT_2020_12: &str = "https://json-schema.org/draft/2020-12/schema";

/// Why a catalog cannot be loaded: the file and the reason.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("catalog directory {dir}: {reason}")]
    Directory { dir: PathBuf, reason: String },
    #[error("catalog file {file}: {reason}")]
    File { file: PathBuf, reason: String },
}

/// Whether `name` may name an added type; the reason when not.
pub fn check_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase());
    let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !first_ok || !rest_ok || name.len() > 64 {
        return Err(format!(
            "`{name}` is not a type name (a lower-case letter, then at most 63 lower-case letters, digits or `_`)"
        ));
    }
    if EventType::ALL.iter().any(|t| t.as_str() == name) {
        return Err(format!(
            "`{name}` is a built-in type: it cannot be redefined"
        ));
    }
    if name == crate::presence::USER_PRESENCE {
        return Err(format!("`{name}` is the gateway's own event"));
    }
    let control = crate::gateway::protocol::ControlType::ALL
        .iter()
        .any(|t| t.as_str() == name);
    if control {
        return Err(format!(
            "`{name}` is a server control frame's type: a client could not tell the two apart"
        ));
    }
    Ok(())
}

/// Reads every `*.json` file of `dir` as an added type.
pub fn load(dir: &Path) -> Result<Catalog, CatalogError> {
    let directory = |reason: String| CatalogError::Directory {
        dir: dir.to_path_buf(),
        reason,
    };
    let entries = std::fs::read_dir(dir).map_err(|e| directory(e.to_string()))?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| directory(e.to_string()))?.path();
        if path.extension().is_some_and(|e| e == "json") {
            files.push(path);
        }
    }
    files.sort();
    if files.len() > MAX_ADDED_TYPES {
        return Err(directory(format!(
            "{} type files; a catalog adds at most {MAX_ADDED_TYPES}",
            files.len()
        )));
    }
    let mut added = Vec::with_capacity(files.len());
    for file in files {
        let kind = read_type(&file).map_err(|reason| CatalogError::File {
            file: file.clone(),
            reason,
        })?;
        added.push(kind);
    }
    Ok(Catalog::new(added))
}

fn read_type(file: &Path) -> Result<AddedType, String> {
    let name = file
        .file_stem()
        .and_then(|s| s.to_str())
        .ok_or("the file name is not UTF-8")?
        .to_string();
    check_name(&name)?;
    let size = std::fs::metadata(file).map_err(|e| e.to_string())?.len();
    if size > MAX_FILE_BYTES {
        return Err(format!(
            "{size} bytes; a type's schema is at most {MAX_FILE_BYTES}"
        ));
    }
    let text = std::fs::read_to_string(file).map_err(|e| e.to_string())?;
    let schema: Value = serde_json::from_str(&text).map_err(|e| format!("not JSON: {e}"))?;
    parse_type(name, schema, file.to_path_buf())
}

/// One type from its name and schema (what a file holds).
pub(crate) fn parse_type(name: String, schema: Value, file: PathBuf) -> Result<AddedType, String> {
    let object = schema
        .as_object()
        .ok_or("the schema is not a JSON object")?;
    if let Some(draft) = object.get("$schema") {
        if draft.as_str() != Some(DRAFT_2020_12) {
            return Err(format!(
                "`$schema` must be {DRAFT_2020_12} (draft 2020-12), not {draft}"
            ));
        }
    }
    if object.get("type").and_then(Value::as_str) != Some("object") {
        return Err(
            "the schema must have `\"type\": \"object\"`: an event's data is an object".into(),
        );
    }
    let declaration = object
        .get("x-switchboard")
        .ok_or("no `x-switchboard` declaration (`{\"routes\": [...], \"stored\": true}`)")?
        .as_object()
        .ok_or("`x-switchboard` is not an object")?;
    if let Some(key) = declaration
        .keys()
        .find(|k| *k != "routes" && *k != "stored")
    {
        return Err(format!(
            "`x-switchboard` has an unknown key `{key}` (it takes `routes` and `stored`)"
        ));
    }
    let stored = declaration
        .get("stored")
        .ok_or("`x-switchboard.stored` is missing (true: stored with a seq; false: live only)")?
        .as_bool()
        .ok_or("`x-switchboard.stored` must be true or false")?;
    let required: Vec<&str> = object
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let routes = declaration
        .get("routes")
        .ok_or("`x-switchboard.routes` is missing")?
        .as_array()
        .ok_or("`x-switchboard.routes` must be an array")?;
    if routes.is_empty() {
        return Err("`x-switchboard.routes` is empty: an event must go somewhere".into());
    }
    let mut parsed = Vec::with_capacity(routes.len());
    for route in routes {
        let route = parse_route(route)?;
        if let Route::Channel(field) | Route::User(field) = &route {
            if !required.contains(&field.as_str()) {
                return Err(format!(
                    "the route {} names `{field}`, which the schema's `required` does not list",
                    route.json()
                ));
            }
        }
        if parsed.contains(&route) {
            return Err(format!("the route {} is given twice", route.json()));
        }
        parsed.push(route);
    }
    jsonschema::draft202012::meta::validate(&schema)
        .map_err(|e| format!("not a valid draft 2020-12 schema: {e}"))?;
    let validator = jsonschema::draft202012::new(&schema)
        .map_err(|e| format!("the schema does not compile: {e}"))?;
    Ok(AddedType {
        name,
        routes: parsed,
        stored,
        schema,
        file,
        validator,
    })
}

fn parse_route(route: &Value) -> Result<Route, String> {
    if route.as_str() == Some("global") {
        return Ok(Route::Global);
    }
    let bad = || {
        format!(
            "the route {route} is not `{{\"channel\": FIELD}}`, `{{\"user\": FIELD}}` or `\"global\"`"
        )
    };
    let object = route.as_object().ok_or_else(bad)?;
    if object.len() != 1 {
        return Err(bad());
    }
    let (kind, field) = object.iter().next().ok_or_else(bad)?;
    let field = field
        .as_str()
        .filter(|f| !f.is_empty())
        .ok_or_else(bad)?
        .to_string();
    match kind.as_str() {
        "channel" => Ok(Route::Channel(field)),
        "user" => Ok(Route::User(field)),
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests;
