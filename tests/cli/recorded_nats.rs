//! The tools without a NATS URL after `serve` is gone: the nats-server it
//! recorded in `./data/nats/url` died with it, so the tools serve the data
//! directory's store themselves and find what was stored before; while
//! another process holds the directory, the error says what to do.

use serde_json::json;
use switchboard::channel::Id;

use crate::{run, serve, switchboard, temp, Served};

#[test]
fn after_serve_was_killed_with_its_nats_server_the_tools_serve_the_data_dirs_store() {
    let dir = temp();
    let gateway =
        match serve(switchboard(dir.path()).args(["serve", "--dev", "--listen", "127.0.0.1:0"])) {
            Served::Up { proc, .. } => proc,
            Served::Exited(out) => panic!("serve exited: {}", out.stderr),
        };
    let url_file = dir.path().join("data/nats/url");
    let recorded = std::fs::read_to_string(&url_file).expect("serve recorded its nats-server");
    let c = Id::new_v4();
    let publish = |name: &str| {
        run(
            switchboard(dir.path())
                .args(["publish", "--type", "channel_created", "--data"])
                .arg(json!({"channel_id": c, "channel_name": name}).to_string()),
            None,
        )
        .ok()
    };
    publish("before");
    // SIGKILL to serve and its nats-server (its process group): the
    // recorded URL is stale.
    drop(gateway);
    assert_eq!(
        std::fs::read_to_string(&url_file).expect("the url file stays"),
        recorded
    );

    let replay = || {
        run(
            switchboard(dir.path()).args(["replay", "--channel", "global"]),
            None,
        )
        .ok()
    };
    let before = replay();
    let names: Vec<String> = before
        .lines()
        .iter()
        .map(|e| e["data"]["channel_name"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(names, ["before"], "{}", before.stdout);
    assert!(
        before.stderr.contains("is gone") && before.stderr.contains(recorded.trim()),
        "says why it starts a nats-server of its own:\n{}",
        before.stderr
    );
    let receipt = &publish("after").lines()[0];
    assert_eq!(receipt["seq"], 2, "{receipt}");
    let after = replay();
    assert_eq!(after.lines().len(), 2, "{}", after.stdout);
    assert_eq!(after.lines()[1]["data"]["channel_name"], "after");

    // A gateway on a NATS URL it was given now holds the directory: the
    // recorded server is still dead, and the store is not the tool's.
    let nats = switchboard_harness::nats();
    let other = match serve(switchboard(dir.path()).args([
        "serve",
        "--dev",
        "--listen",
        "127.0.0.1:0",
        "--nats-url",
        &nats.url(),
    ])) {
        Served::Up { proc, .. } => proc,
        Served::Exited(out) => panic!("serve exited: {}", out.stderr),
    };
    let refused = run(
        switchboard(dir.path()).args(["replay", "--channel", "global"]),
        None,
    );
    refused.usage_error(&[
        &format!("({})", recorded.trim()),
        "does not answer",
        &format!("the switchboard using ./data (pid {})", other.0.id()),
        "pass the same URL with --nats-url or SWITCHBOARD_NATS_URL",
    ]);
    drop(other);
}
