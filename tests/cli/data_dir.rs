//! The data directory: `projection rebuild`/`check` (also beside a running
//! `serve`), one `serve` per directory, and a quiet normal stop.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;
use switchboard::channel::Id;
use switchboard::projection::Snapshot;
use switchboard::store::Store;

use crate::{
    expect_exit, message_data, publish_lines, run, serve, switchboard, temp, Output, Proc, Served,
};
use switchboard_harness::PATIENCE;

// ---------------------------------------------------------------------------
// projection
// ---------------------------------------------------------------------------

#[test]
fn projection_check_after_rebuild_matches_and_catches_a_tampered_snapshot() {
    let nats = switchboard_harness::nats();
    let dir = temp();
    let url = nats.url();
    let data = dir.path().join("data");
    let data_dir = data.to_str().expect("utf-8").to_string();
    let (c, gone, u1, u2) = (Id::new_v4(), Id::new_v4(), Id::new_v4(), Id::new_v4());
    let receipts = publish_lines(
        dir.path(),
        &url,
        &[
            json!({"type": "member_joined", "data": {"channel_id": c, "user_id": u1, "username": null}}),
            json!({"type": "member_joined", "data": {"channel_id": c, "user_id": u2, "username": "b"}}),
            json!({"type": "user_banned", "data": {"channel_id": c, "user_id": u2, "motive": "spam"}}),
            json!({"type": "channel_message", "data": message_data(c, "not folded")}),
            json!({"type": "member_joined", "data": {"channel_id": gone, "user_id": u1, "username": null}}),
            json!({"type": "channel_deleted", "data": {"channel_id": gone}}),
        ],
    );
    let last_seq = receipts
        .last()
        .and_then(|r| r["seq"].as_u64())
        .expect("seq");
    let projection = |action: &str| {
        run(
            switchboard(dir.path()).args([
                "projection",
                action,
                "--nats-url",
                &url,
                "--data-dir",
                &data_dir,
            ]),
            None,
        )
    };

    let rebuilt = projection("rebuild").ok();
    let summary = &rebuilt.lines()[0];
    assert_eq!(summary["last_seq"], last_seq);
    assert_eq!(summary["members"], 1, "u1 in c");
    assert_eq!(summary["banned"], 1, "u2 in c");
    assert_eq!(summary["deleted_channels"], 1);
    let checked = projection("check").ok();
    assert!(checked.stdout.contains("matches"), "{}", checked.stdout);
    assert!(checked.stdout.contains(&last_seq.to_string()));

    // A snapshot that disagrees with the log is reported, exit 1.
    {
        let store = Store::open(&data.join("sled")).expect("the store opens");
        let mut snapshot: Snapshot = store
            .snapshot()
            .expect("reads")
            .expect("rebuild wrote a snapshot");
        assert_eq!(snapshot.last_seq, last_seq);
        snapshot.members.insert((c, u2));
        store.put_snapshot(&snapshot).expect("writes");
        store.flush().expect("flushes");
    }
    let tampered = projection("check");
    assert_eq!(tampered.code(), Some(1), "{}", tampered.stderr);
    assert!(
        tampered.stdout.contains(&u2.to_string())
            && tampered.stdout.contains("only in the snapshot"),
        "{}",
        tampered.stdout
    );
    // Rebuilding repairs it.
    projection("rebuild").ok();
    assert!(projection("check").ok().stdout.contains("matches"));
}

// ---------------------------------------------------------------------------
// the data directory: one serve at a time; the tools beside it
// ---------------------------------------------------------------------------

/// A `serve` that came up, and the reader of what it logs.
struct Up {
    proc: Proc,
    stderr: std::thread::JoinHandle<String>,
}

/// `serve --dev` without a NATS URL in `dir` (its `./data`), on a free port.
fn serve_local(dir: &Path) -> Up {
    match serve(switchboard(dir).args(["serve", "--dev", "--listen", "127.0.0.1:0"])) {
        Served::Up { proc, stderr, .. } => Up { proc, stderr },
        Served::Exited(out) => panic!("serve exited: {}", out.stderr),
    }
}

/// Stops a serve as a user's Ctrl-C would, and returns what it logged.
fn stop(up: Up) -> Output {
    let Up { mut proc, stderr } = up;
    let pid = proc.0.id().to_string();
    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    let deadline = Instant::now() + PATIENCE;
    let status = loop {
        if let Some(status) = proc.0.try_wait().expect("try_wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "serve did not stop");
        std::thread::sleep(Duration::from_millis(10));
    };
    Output {
        status,
        stdout: String::new(),
        stderr: stderr.join().expect("stderr reader"),
    }
}

#[test]
fn a_second_serve_on_the_same_data_dir_stops_at_once_and_touches_nothing() {
    let dir = temp();
    let first = serve_local(dir.path());
    let url_file = dir.path().join("data/nats/url");
    let url = std::fs::read_to_string(&url_file).expect("the first serve wrote its URL");

    let second = expect_exit(serve(switchboard(dir.path()).args([
        "serve",
        "--dev",
        "--listen",
        "127.0.0.1:0",
    ])));
    assert_eq!(second.code(), Some(1), "{}", second.stderr);
    let pid = first.proc.0.id();
    assert!(
        second
            .stderr
            .contains(&format!("another switchboard is using ./data (pid {pid})")),
        "{}",
        second.stderr
    );
    assert!(
        !second.stderr.contains("nats-server"),
        "no second nats-server was started: {}",
        second.stderr
    );
    assert_eq!(
        std::fs::read_to_string(&url_file).expect("url file"),
        url,
        "the first one's files are untouched"
    );
    // The tools still find the healthy first gateway's NATS.
    let c = Id::new_v4();
    run(
        switchboard(dir.path())
            .args(["publish", "--type", "channel_created", "--data"])
            .arg(json!({"channel_id": c, "channel_name": "general"}).to_string()),
        None,
    )
    .ok();
    drop(first);
}

#[test]
fn projection_check_works_beside_a_running_serve_and_both_tools_after_it_stops() {
    let dir = temp();
    let gateway = serve_local(dir.path());
    let (c, u) = (Id::new_v4(), Id::new_v4());
    run(
        switchboard(dir.path())
            .args(["publish", "--type", "member_joined", "--data"])
            .arg(json!({"channel_id": c, "user_id": u, "username": null}).to_string()),
        None,
    )
    .ok();
    let check = run(switchboard(dir.path()).args(["projection", "check"]), None).ok();
    assert!(
        check.stdout.contains("matches a fresh fold"),
        "{}",
        check.stdout
    );
    let refused = run(
        switchboard(dir.path()).args(["projection", "rebuild"]),
        None,
    );
    refused.usage_error(&["another switchboard is using ./data", "stop it"]);

    let stopped = stop(gateway);
    assert_eq!(stopped.code(), Some(0), "{}", stopped.stderr);
    // Stopped: the tools start the data directory's nats-server themselves.
    let rebuilt = run(
        switchboard(dir.path()).args(["projection", "rebuild"]),
        None,
    )
    .ok();
    let summary = &rebuilt.lines()[0];
    assert_eq!(summary["members"], 1, "{summary}");
    let check = run(switchboard(dir.path()).args(["projection", "check"]), None).ok();
    assert!(
        check.stdout.contains("matches a fresh fold"),
        "{}",
        check.stdout
    );
}

#[test]
fn a_normal_stop_is_quiet() {
    let dir = temp();
    let gateway = serve_local(dir.path());
    let stopped = stop(gateway);
    assert_eq!(stopped.code(), Some(0), "{}", stopped.stderr);
    // From the signal on (start-up may warn, say about `--dev`'s secret).
    let from = stopped
        .stderr
        .find("shutting down")
        .expect("the stop is logged");
    let stop_log = &stopped.stderr[from..];
    for noise in ["client error", "lost the connection", "ERROR", "WARN"] {
        assert!(
            !stop_log.contains(noise),
            "`{noise}` at a normal stop:\n{}",
            stopped.stderr
        );
    }
}
