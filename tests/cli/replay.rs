//! `replay`: the envelopes `publish` reported (NDJSON), `--summary`, the
//! range flags, and bad arguments refused with exit 2.

use serde_json::{json, Value};
use switchboard::channel::Id;

use crate::{message_data, publish_lines, replay, temp};
use switchboard_harness::assert_schema;

#[test]
fn replay_prints_the_envelopes_publish_reported() {
    let nats = switchboard_harness::nats();
    let dir = temp();
    let url = nats.url();
    let (c, d, u) = (Id::new_v4(), Id::new_v4(), Id::new_v4());
    let mut bodies = Vec::new();
    for i in 0..6 {
        let channel = if i % 3 == 2 { d } else { c };
        bodies.push(
            json!({"type": "channel_message", "data": message_data(channel, &format!("m{i}"))}),
        );
    }
    bodies.push(json!({"type": "user_banned",
                       "data": {"channel_id": c, "user_id": u, "motive": "spam"}}));
    let receipts = publish_lines(dir.path(), &url, &bodies);

    let out = replay(dir.path(), &url, &["--channel", &format!("channel:{c}")]).ok();
    let frames = out.lines();
    let on_c: Vec<(usize, &Value)> = receipts
        .iter()
        .enumerate()
        .filter(|(i, _)| bodies[*i]["data"]["channel_id"] == c.to_string())
        .collect();
    assert_eq!(frames.len(), on_c.len(), "{}", out.stdout);
    for (frame, (i, receipt)) in frames.iter().zip(&on_c) {
        assert_schema(frame);
        assert_eq!(frame["seq"], receipt["seq"]);
        assert_eq!(frame["id"], receipt["id"]);
        assert_eq!(frame["timestamp"], receipt["timestamp"], "the log's time");
        assert_eq!(frame["type"], bodies[*i]["type"]);
        assert_eq!(frame["data"], bodies[*i]["data"]);
        assert_eq!(frame["channel"], format!("channel:{c}"));
    }

    // Several channels: in seq order, with the ban's user copy.
    let out = replay(
        dir.path(),
        &url,
        &[
            "--channel",
            &format!("channel:{}", d.to_string().to_uppercase()),
            "--channel",
            &format!("user:{u}"),
        ],
    )
    .ok();
    let frames = out.lines();
    let seqs: Vec<u64> = frames
        .iter()
        .map(|f| f["seq"].as_u64().expect("seq"))
        .collect();
    let ban = receipts.last().expect("ban receipt");
    let mut expected: Vec<u64> = receipts
        .iter()
        .enumerate()
        .filter(|(i, _)| bodies[*i]["data"]["channel_id"] == d.to_string())
        .map(|(_, r)| r["seq"].as_u64().expect("seq"))
        .collect();
    expected.push(ban["user_seq"].as_u64().expect("user_seq"));
    assert_eq!(seqs, expected);
    let user_copy = frames.last().expect("the user copy");
    assert_schema(user_copy);
    assert_eq!(user_copy["channel"], format!("user:{u}"));
    assert_eq!(user_copy["id"], ban["id"]);
    assert!(user_copy["data"].get("user_id").is_none());
}

#[test]
fn replay_summary_and_range_flags() {
    let nats = switchboard_harness::nats();
    let dir = temp();
    let url = nats.url();
    let (c, u) = (Id::new_v4(), Id::new_v4());
    let mut bodies = vec![
        json!({"type": "member_joined", "data": {"channel_id": c, "user_id": u, "username": "ann"}}),
    ];
    for i in 0..5 {
        bodies.push(json!({"type": "channel_message", "data": message_data(c, &format!("m{i}"))}));
    }
    bodies.push(
        json!({"type": "member_left", "data": {"channel_id": c, "user_id": u, "username": null}}),
    );
    // Two publish runs; expectations come from the receipts either way.
    let mut receipts = publish_lines(dir.path(), &url, &bodies[..4]);
    receipts.extend(publish_lines(dir.path(), &url, &bodies[4..]));
    let channel = format!("channel:{c}");
    let seq = |r: &Value| r["seq"].as_u64().expect("seq");
    let stamp = |r: &Value| r["timestamp"].as_str().expect("timestamp").to_string();
    let replayed = |args: &[&str]| -> Vec<u64> {
        let mut all = vec!["--channel", channel.as_str()];
        all.extend_from_slice(args);
        replay(dir.path(), &url, &all)
            .ok()
            .lines()
            .iter()
            .map(|f| f["seq"].as_u64().expect("seq"))
            .collect()
    };

    let summary = replay(dir.path(), &url, &["--channel", &channel, "--summary"])
        .ok()
        .lines();
    assert_eq!(
        summary,
        [json!({
            "events": 7,
            "by_type": {"member_joined": 1, "channel_message": 5, "member_left": 1},
            "first_seq": 1,
            "last_seq": 7,
            "invalid": 0,
            "unknown_types": {},
        })]
    );

    let all: Vec<u64> = receipts.iter().map(seq).collect();
    assert_eq!(replayed(&[]), all);
    assert_eq!(replayed(&["--after-seq", "3"]), all[3..]);
    assert_eq!(replayed(&["--limit", "2"]), all[..2]);
    assert_eq!(replayed(&["--after-seq", "2", "--limit", "3"]), all[2..5]);
    // Timestamps in the receipts are in the same form, so strings compare.
    for r in &receipts {
        let t = stamp(r);
        let since: Vec<u64> = receipts.iter().filter(|x| stamp(x) >= t).map(seq).collect();
        let until: Vec<u64> = receipts.iter().filter(|x| stamp(x) < t).map(seq).collect();
        assert_eq!(replayed(&["--since", &t]), since, "--since {t}");
        assert_eq!(replayed(&["--until", &t]), until, "--until {t}");
    }
    let (first, last) = (stamp(&receipts[1]), stamp(&receipts[5]));
    let expected: Vec<u64> = receipts
        .iter()
        .filter(|x| stamp(x) >= first && stamp(x) < last)
        .map(seq)
        .collect();
    assert_eq!(replayed(&["--since", &first, "--until", &last]), expected);
    let summary = replay(
        dir.path(),
        &url,
        &["--channel", &channel, "--summary", "--limit", "1"],
    )
    .ok()
    .lines();
    assert_eq!(summary[0]["events"], 1);
    assert_eq!(summary[0]["by_type"], json!({"member_joined": 1}));
}

#[test]
fn replay_with_bad_arguments_exits_2() {
    let nats = switchboard_harness::nats();
    let dir = temp();
    let url = nats.url();
    let c = format!("channel:{}", Id::new_v4());
    for (args, words) in [
        (vec!["--channel", "nope"], vec!["--channel", "nope"]),
        (vec!["--channel", "channel:not-a-uuid"], vec!["--channel"]),
        (vec!["--channel", &c.replace('-', "")], vec!["--channel"]),
        (
            vec!["--channel", &c, "--since", "yesterday"],
            vec!["--since"],
        ),
        (
            vec!["--channel", &c, "--until", "2025-13-01T00:00:00Z"],
            vec!["--until"],
        ),
        (vec!["--channel", &c, "--limit", "0"], vec!["--limit"]),
        (vec!["--channel", &c, "--limit", "many"], vec!["--limit"]),
        (vec!["--channel", &c, "--after-seq", "-1"], vec![]),
        (vec![], vec!["--channel"]),
    ] {
        replay(dir.path(), &url, &args).usage_error(&words);
    }
}
