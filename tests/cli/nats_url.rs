//! Reaching NATS: the tools without a NATS URL exit 2 saying so, and a URL
//! where nothing listens is reported as unreachable, each cause said once.

use serde_json::json;
use switchboard::channel::Id;

use crate::{replay, run, switchboard, temp};

#[test]
fn without_a_nats_url_the_tools_exit_2_with_a_clear_message() {
    let dir = temp();
    let data = temp();
    let data_dir = data.path().to_str().expect("utf-8 path");
    let c = Id::new_v4();
    let replay = run(
        switchboard(dir.path()).args(["replay", "--data-dir", data_dir, "--channel", "global"]),
        None,
    );
    replay.usage_error(&["no NATS URL", "SWITCHBOARD_NATS_URL"]);
    let publish = run(
        switchboard(dir.path())
            .args([
                "publish",
                "--data-dir",
                data_dir,
                "--type",
                "channel_deleted",
            ])
            .arg("--data")
            .arg(json!({"channel_id": c}).to_string()),
        None,
    );
    publish.usage_error(&["no NATS URL", "SWITCHBOARD_NATS_URL"]);
    let check = run(
        switchboard(dir.path()).args(["projection", "check", "--data-dir", data_dir]),
        None,
    );
    check.usage_error(&["no NATS URL"]);
    // An empty URL in the environment is no URL either.
    let empty = run(
        switchboard(dir.path())
            .args(["replay", "--data-dir", data_dir, "--channel", "global"])
            .env("SWITCHBOARD_NATS_URL", ""),
        None,
    );
    empty.usage_error(&["no NATS URL"]);
}

// Regression: src/log/mod.rs dials NATS without retrying the first
// connect, so a URL where nothing listens fails with a connect error naming
// the URL ("cannot connect to NATS at <url>"), not with a misleading
// "nats-server (unknown version) is too old". Every tool and `serve` share
// this path.
#[test]
fn an_unreachable_nats_is_reported_as_unreachable() {
    let dir = temp();
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        listener.local_addr().expect("addr").port()
    };
    let url = format!("nats://127.0.0.1:{port}");
    let out = replay(dir.path(), &url, &["--channel", "global"]);
    assert_eq!(out.code(), Some(1), "the work failed: {}", out.stderr);
    assert!(
        out.stderr
            .contains(&format!("cannot connect to NATS at {url}"))
            && !out.stderr.contains("too old"),
        "the message names the unreachable URL, not the server's version:\n{}",
        out.stderr
    );
}

#[test]
fn errors_say_each_cause_once_and_hint_at_the_nats_url() {
    let dir = temp();
    let out = run(
        switchboard(dir.path()).args([
            "replay",
            "--nats-url",
            "nats://127.0.0.1:1",
            "--channel",
            "global",
        ]),
        None,
    );
    assert_eq!(out.code(), Some(1), "{}", out.stderr);
    assert!(
        out.stderr.contains("cannot connect to NATS"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("SWITCHBOARD_NATS_URL"),
        "{}",
        out.stderr
    );
    let refused = out.stderr.matches("refused").count();
    assert!(
        refused <= 1,
        "the cause is said once, not {refused} times: {}",
        out.stderr
    );
}
