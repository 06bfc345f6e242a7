//! Every kind of bad catalog file is refused with its name and the reason;
//! a good directory loads whole.

use serde_json::json;

use super::*;

fn reaction() -> Value {
    json!({
        "$schema": DRAFT_2020_12,
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

fn dir_with(files: &[(&str, String)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

#[test]
fn a_good_directory_loads_every_type_in_name_order() {
    let mut typing = reaction();
    typing["x-switchboard"] = json!({"routes": ["global"], "stored": false});
    let dir = dir_with(&[
        ("reaction_added.json", reaction().to_string()),
        ("cursor_moved.json", typing.to_string()),
        ("README.md", "not a type".into()),
    ]);
    let catalog = load(dir.path()).unwrap();
    let names: Vec<&str> = catalog.added().iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["cursor_moved", "reaction_added"]);
    let reaction = catalog.at(catalog.find("reaction_added").unwrap()).unwrap();
    assert!(reaction.stored);
    assert_eq!(
        reaction.routes,
        [
            Route::Channel("channel_id".into()),
            Route::User("user_id".into())
        ]
    );
    assert!(reaction
        .check(&json!({"channel_id": "c", "message_id": "m", "user_id": "u", "emoji": "+1"}))
        .is_ok());
    let refused = reaction
        .check(&json!({"channel_id": "c", "emoji": 7}))
        .unwrap_err();
    assert!(
        refused.contains("emoji") || refused.contains("required"),
        "{refused}"
    );
    assert!(
        !catalog
            .at(catalog.find("cursor_moved").unwrap())
            .unwrap()
            .stored
    );
}

#[test]
fn every_kind_of_bad_file_is_refused_with_its_name_and_reason() {
    let with = |edit: &dyn Fn(&mut Value)| {
        let mut schema = reaction();
        edit(&mut schema);
        schema.to_string()
    };
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "Reaction.json",
            reaction().to_string(),
            "is not a type name",
        ),
        (
            "channel_message.json",
            reaction().to_string(),
            "built-in type",
        ),
        (
            "user_presence.json",
            reaction().to_string(),
            "the gateway's own event",
        ),
        ("error.json", reaction().to_string(), "control frame"),
        ("hello.json", reaction().to_string(), "control frame"),
        ("broken.json", "{\"type\": ".into(), "not JSON"),
        ("array.json", "[]".into(), "not a JSON object"),
        (
            "draft7.json",
            with(&|s| s["$schema"] = json!("http://json-schema.org/draft-07/schema#")),
            "draft 2020-12",
        ),
        (
            "string.json",
            with(&|s| s["type"] = json!("string")),
            "\"type\": \"object\"",
        ),
        (
            "undeclared.json",
            with(&|s| {
                s.as_object_mut().unwrap().remove("x-switchboard");
            }),
            "no `x-switchboard`",
        ),
        (
            "typo.json",
            with(&|s| s["x-switchboard"]["store"] = json!(true)),
            "unknown key `store`",
        ),
        (
            "unstored.json",
            with(&|s| {
                s["x-switchboard"].as_object_mut().unwrap().remove("stored");
            }),
            "stored` is missing",
        ),
        (
            "nowhere.json",
            with(&|s| s["x-switchboard"]["routes"] = json!([])),
            "is empty",
        ),
        (
            "odd_route.json",
            with(&|s| s["x-switchboard"]["routes"] = json!([{"room": "channel_id"}])),
            "is not `{\"channel\"",
        ),
        (
            "optional_route.json",
            with(&|s| s["x-switchboard"]["routes"] = json!([{"channel": "thread_id"}])),
            "does not list",
        ),
        (
            "twice.json",
            with(&|s| s["x-switchboard"]["routes"] = json!(["global", "global"])),
            "given twice",
        ),
        (
            "bad_schema.json",
            with(&|s| s["properties"]["emoji"]["maxLength"] = json!(-1)),
            "draft 2020-12 schema",
        ),
    ];
    for (file, text, reason) in cases {
        let dir = dir_with(&[("fine.json", reaction().to_string()), (file, text)]);
        let error = load(dir.path()).unwrap_err().to_string();
        assert!(error.contains(file), "{file}: {error}");
        assert!(error.contains(reason), "{file}: {error}");
    }
    let missing = load(Path::new("/nonexistent/catalog"))
        .unwrap_err()
        .to_string();
    assert!(missing.contains("/nonexistent/catalog"), "{missing}");
}
