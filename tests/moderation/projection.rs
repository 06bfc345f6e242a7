//! The projection survives a restart, and the `projection` tools agree with
//! it.

use super::*;

/// The value of `name=value` in a log line (tracing's plain format).
fn field(line: &str, name: &str) -> Option<String> {
    let prefix = format!("{name}=");
    line.split_whitespace()
        .find_map(|token| token.strip_prefix(prefix.as_str()))
        .map(str::to_string)
}

#[tokio::test]
async fn the_projection_survives_a_restart_and_the_tools_agree() {
    let nats = nats();
    let mut gateway = Gateway::start(&nats);
    let log = log(&nats).await;
    let (c, u) = (Id::new_v4(), Id::new_v4());
    let snapshot_seq = store(&log, &joined(c, u)).await;
    let member = token(u, Grant::None, &[]);
    let mut client = Client::connect(&gateway, &member).await;
    subscribe_until(&mut client, chat(c), "subscribed").await;
    // A clean stop writes the snapshot (up to the join); restart from it.
    let stopped = tokio::task::spawn_blocking(move || {
        gateway.terminate();
        gateway
    });
    assert_eq!(client.closed_with().await, 1001);
    let mut gateway = stopped.await.expect("joined");
    let other = Id::new_v4();
    let ban = log.store(&banned(c, other)).await.expect("stored");
    let log_end = ban.user_seq.expect("user copy").max(ban.seq);
    gateway.restart();
    let log_text = gateway.log_text();
    let ready = log_text
        .lines()
        .rfind(|l| l.contains("projection ready"))
        .expect("projection ready line");
    assert_eq!(
        (field(ready, "from"), field(ready, "to")),
        (Some(snapshot_seq.to_string()), Some(log_end.to_string())),
        "started from the snapshot and caught up to the log's end: {ready}"
    );
    let mut client = Client::connect(&gateway, &member).await;
    subscribe_until(&mut client, chat(c), "subscribed").await;
    let mut banned_user = Client::connect(&gateway, &token(other, Grant::All, &[])).await;
    subscribe_until(&mut banned_user, chat(c), "forbidden").await;

    gateway.kill9();
    let tool = |args: &[&str]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .arg("projection")
            .args(args)
            .args(["--nats-url", &nats.url()])
            .arg("--data-dir")
            .arg(gateway.data_dir())
            .output()
            .expect("runs");
        let stdout = String::from_utf8_lossy(&output.stdout).to_string();
        let stderr = String::from_utf8_lossy(&output.stderr).to_string();
        (output.status, format!("{stdout}{stderr}"))
    };
    let (status, out) = tool(&["check"]);
    assert!(status.success(), "check: {out}");
    assert!(out.contains("matches"), "{out}");
    let (status, out) = tool(&["rebuild"]);
    assert!(status.success(), "rebuild: {out}");
    let summary: Value =
        serde_json::from_str(out.lines().next().unwrap_or("")).expect("JSON summary");
    assert_eq!(summary["members"], 1);
    assert_eq!(summary["banned"], 1);
}
