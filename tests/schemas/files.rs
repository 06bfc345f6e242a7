//! (a) Every schema file is listed, every listed file exists and compiles,
//! and the type enums name exactly the event types.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use switchboard::event::EventType;
use switchboard::schema::FILES;

use crate::{enum_strings, file_schema, schemas};

fn schema_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas")
}

/// Every `*.json` under `dir`, as its path relative to `root` without `.json`.
fn walk(root: &Path, dir: &Path, out: &mut BTreeSet<String>) {
    let entries = std::fs::read_dir(dir).expect("schemas/ is readable");
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            walk(root, &path, out);
        } else if path.extension().is_some_and(|e| e == "json") {
            let rel = path
                .strip_prefix(root)
                .expect("under schemas/")
                .with_extension("");
            let name = rel
                .components()
                .map(|c| c.as_os_str().to_str().expect("utf-8 file name"))
                .collect::<Vec<_>>()
                .join("/");
            out.insert(name);
        }
    }
}

fn stored_types() -> impl Iterator<Item = EventType> {
    EventType::ALL.iter().copied().filter(|k| k.is_stored())
}

#[test]
fn every_schema_file_is_listed_and_every_listed_name_is_a_file() {
    let dir = schema_dir();
    let mut on_disk = BTreeSet::new();
    walk(&dir, &dir, &mut on_disk);
    let listed: BTreeSet<String> = FILES.iter().map(|(n, _)| n.to_string()).collect();
    assert_eq!(FILES.len(), listed.len(), "FILES lists a name twice");
    let unlisted: Vec<_> = on_disk.difference(&listed).collect();
    let missing: Vec<_> = listed.difference(&on_disk).collect();
    assert!(
        unlisted.is_empty(),
        "schema files not in schema::FILES: {unlisted:?}"
    );
    assert!(
        missing.is_empty(),
        "schema::FILES names without a file: {missing:?}"
    );
    for (name, _) in FILES {
        let schema = file_schema(name);
        assert_eq!(
            schema["$schema"], "https://json-schema.org/draft/2020-12/schema",
            "{name} declares draft 2020-12"
        );
        assert_eq!(
            schema["$id"],
            format!("https://switchboard.dev/schemas/{name}.json"),
            "{name}'s $id names its path"
        );
    }
}

#[test]
fn every_schema_compiles_and_is_a_valid_2020_12_schema() {
    for (name, text) in FILES {
        let schema: Value =
            serde_json::from_str(text).unwrap_or_else(|e| panic!("{name} is not JSON: {e}"));
        if let Err(e) = jsonschema::draft202012::meta::validate(&schema) {
            panic!("{name} is not a valid draft 2020-12 schema: {e}");
        }
        if let Err(e) = jsonschema::draft202012::new(&schema) {
            panic!("{name} does not compile: {e}");
        }
        // The crate's own compiled set has it too (a missing one answers "no schema").
        if let Err(e) = schemas().check(name, &Value::Null) {
            assert!(!e.starts_with("no schema"), "Schemas::get() lacks {name}");
        }
    }
    assert!(schemas()
        .check("events/no_such_type", &json!({}))
        .is_err_and(|e| e.starts_with("no schema")));
}

#[test]
fn every_event_type_has_exactly_one_data_schema() {
    let listed: BTreeSet<String> = FILES
        .iter()
        .filter_map(|(n, _)| n.strip_prefix("events/"))
        .map(str::to_string)
        .collect();
    let mut types: BTreeSet<String> = EventType::ALL
        .iter()
        .map(|k| k.as_str().to_string())
        .collect();
    assert_eq!(EventType::ALL.len(), 14);
    // The gateway's own event, beside the catalog.
    types.insert(switchboard::presence::USER_PRESENCE.to_string());
    assert_eq!(listed, types, "events/*.json and EventType::ALL differ");
    for kind in EventType::ALL {
        assert!(
            schema_dir()
                .join("events")
                .join(format!("{kind}.json"))
                .is_file(),
            "schemas/events/{kind}.json exists"
        );
    }
}

#[test]
fn type_enums_name_exactly_the_event_types() {
    let all: BTreeSet<String> = EventType::ALL
        .iter()
        .map(|k| k.as_str().to_string())
        .chain([switchboard::presence::USER_PRESENCE.to_string()])
        .collect();
    let stored: BTreeSet<String> = stored_types().map(|k| k.as_str().to_string()).collect();
    assert_eq!(
        enum_strings(&file_schema("envelope"), "/properties/type/anyOf/0/enum"),
        all
    );
    assert_eq!(
        enum_strings(&file_schema("publish"), "/properties/type/enum"),
        stored
    );
    assert_eq!(
        enum_strings(&file_schema("http_publish"), "/properties/type/enum"),
        stored
    );
}
