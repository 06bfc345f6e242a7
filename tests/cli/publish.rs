//! `publish`: the receipt (id, seq, the log's timestamp), a repeated id
//! stored once, JSON lines on stdin, and invalid input refused with exit 2
//! before anything is stored.

use serde_json::{json, Value};
use switchboard::channel::Id;
use switchboard::event::format_timestamp;
use switchboard::log::{Log, StreamSettings};

use crate::{block, is_timestamp, message_data, messages_held, publish, run, switchboard, temp};

#[test]
fn publish_prints_id_seq_and_log_timestamp_and_a_repeated_id_is_stored_once() {
    let nats = switchboard_harness::nats();
    let dir = temp();
    let c = Id::new_v4();
    let out = publish(
        dir.path(),
        &nats.url(),
        "channel_message",
        &message_data(c, "hi"),
        None,
    )
    .ok();
    let lines = out.lines();
    assert_eq!(lines.len(), 1, "{}", out.stdout);
    let receipt = &lines[0];
    let keys: Vec<&str> = receipt
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, ["id", "seq", "timestamp"]);
    assert!(Id::parse(receipt["id"].as_str().expect("id")).is_ok());
    assert_eq!(receipt["seq"], 1);
    assert!(is_timestamp(&receipt["timestamp"]), "{receipt}");
    // The timestamp is the log's commit time.
    let time = block(async {
        let log = Log::open(&nats.url(), StreamSettings::default())
            .await
            .expect("opens");
        log.time_of(1).await.expect("lookup").expect("held")
    });
    assert_eq!(receipt["timestamp"], format_timestamp(&time));

    let id = Id::new_v4().to_string();
    let data = json!({"channel_id": c, "message_id": Id::new_v4()});
    let first = publish(dir.path(), &nats.url(), "message_deleted", &data, Some(&id)).ok();
    let again = publish(dir.path(), &nats.url(), "message_deleted", &data, Some(&id)).ok();
    let (first, again) = (&first.lines()[0], &again.lines()[0]);
    assert_eq!(first["id"], id.as_str());
    assert_eq!(first["seq"], 2);
    assert!(first.get("duplicate").is_none());
    assert_eq!(again["seq"], first["seq"], "the same id names the same seq");
    assert_eq!(again["timestamp"], first["timestamp"]);
    assert_eq!(again["duplicate"], true);
    assert_eq!(messages_held(&nats.url()), 2);

    // A moderation event reports both copies.
    let u = Id::new_v4();
    let ban = publish(
        dir.path(),
        &nats.url(),
        "user_banned",
        &json!({"channel_id": c, "user_id": u, "motive": "spam"}),
        None,
    )
    .ok();
    let ban = &ban.lines()[0];
    assert_eq!(ban["seq"], 3);
    assert_eq!(ban["user_seq"], 4);
    assert_eq!(messages_held(&nats.url()), 4);
}

#[test]
fn json_lines_on_stdin_publish_several_events() {
    let nats = switchboard_harness::nats();
    let dir = temp();
    let (c, u) = (Id::new_v4(), Id::new_v4());
    let id = Id::new_v4();
    let input = [
        json!({"type": "channel_created", "data": {"channel_id": c, "channel_name": "general"}}),
        json!({"type": "member_joined", "data": {"channel_id": c, "user_id": u, "username": null},
               "id": id}),
        json!({"type": "user_kicked", "data": {"channel_id": c, "user_id": u}}),
        json!({"type": "channel_message", "data": message_data(c, "last")}),
    ]
    .iter()
    .map(Value::to_string)
    .collect::<Vec<_>>()
    .join("\n\n");
    let out = run(
        switchboard(dir.path()).args(["publish", "--nats-url", &nats.url()]),
        Some(&input),
    )
    .ok();
    let lines = out.lines();
    assert_eq!(lines.len(), 4, "one receipt per event:\n{}", out.stdout);
    let seqs: Vec<u64> = lines
        .iter()
        .map(|l| l["seq"].as_u64().expect("seq"))
        .collect();
    assert_eq!(seqs, [1, 2, 3, 5], "the kick's user copy is seq 4");
    assert_eq!(lines[1]["id"], id.to_string());
    assert_eq!(lines[2]["user_seq"], 4);
    assert!(lines.iter().all(|l| is_timestamp(&l["timestamp"])));
    assert_eq!(messages_held(&nats.url()), 5);
}

#[test]
fn invalid_input_exits_2_naming_the_problem_and_stores_nothing() {
    let nats = switchboard_harness::nats();
    let dir = temp();
    let url = nats.url();
    let (c, m) = (Id::new_v4(), Id::new_v4());
    let typed = |kind: &str, data: Value| -> Vec<String> {
        vec![
            "--type".into(),
            kind.into(),
            "--data".into(),
            data.to_string(),
        ]
    };
    let deleted = json!({"type": "channel_deleted", "data": {"channel_id": c}});
    let mut with_bad_id = typed("channel_deleted", json!({"channel_id": c}));
    with_bad_id.extend(["--id".into(), "not-a-uuid".into()]);
    let cases: Vec<(Vec<String>, String, Vec<&str>)> = vec![
        (
            typed(
                "channel_message",
                json!({"channel_id": "nope", "message_id": m, "user_id": m,
                       "username": null, "content": "x"}),
            ),
            String::new(),
            vec!["invalid", "channel_id"],
        ),
        (
            // An unknown field is allowed (tolerant reading), but not in
            // place of a required one.
            typed("message_deleted", json!({"channel_id": c, "surprise": 1})),
            String::new(),
            vec!["message_id"],
        ),
        (
            typed(
                "channel_message",
                json!({"channel_id": c, "message_id": m, "user_id": m, "content": 7}),
            ),
            String::new(),
            vec!["invalid"],
        ),
        (
            typed("channel_exploded", json!({"channel_id": c})),
            String::new(),
            vec!["channel_exploded"],
        ),
        (
            typed(
                "user_typing",
                json!({"channel_id": c, "user_id": m, "username": "a", "is_typing": true}),
            ),
            String::new(),
            vec!["ephemeral"],
        ),
        (
            typed("user_banned", json!({"channel_id": c, "motive": "no user"})),
            String::new(),
            vec!["user_id"],
        ),
        (
            vec![
                "--type".into(),
                "channel_deleted".into(),
                "--data".into(),
                "{not json".into(),
            ],
            String::new(),
            vec!["--data"],
        ),
        (
            vec!["--type".into(), "channel_deleted".into()],
            String::new(),
            vec!["--data"],
        ),
        (with_bad_id, String::new(), vec!["not-a-uuid"]),
        // A bad line after a good one: nothing at all is stored.
        (
            vec![],
            format!(
                "{deleted}\n{}\n",
                json!({"type": "channel_deleted", "data": {"channel_id": "x"}})
            ),
            vec!["event 2", "channel_id"],
        ),
        (
            vec![],
            format!("{deleted}\nthis is not json\n"),
            vec!["line 2"],
        ),
        (vec![], String::new(), vec!["nothing to publish"]),
    ];
    for (args, stdin, words) in cases {
        let out = run(
            switchboard(dir.path())
                .args(["publish", "--nats-url", &url])
                .args(&args),
            Some(&stdin),
        );
        out.usage_error(&words);
        assert!(out.stdout.is_empty(), "nothing printed for {args:?}");
    }
    assert_eq!(messages_held(&url), 0, "nothing was stored");
}
