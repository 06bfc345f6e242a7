//! Bad catalog files stop `serve` with their name and the reason;
//! `catalog check` says so with its exit code; `catalog asyncapi` prints
//! a document.

use super::*;

async fn output(args: &[&str]) -> std::process::Output {
    tokio::time::timeout(PATIENCE, switchboard().args(args).output())
        .await
        .expect("in time")
        .expect("runs")
}

#[tokio::test]
async fn serve_refuses_a_bad_catalog_and_catalog_check_says_why() {
    let nats = nats();
    let dir = catalog_dir();
    let path = dir.path().to_str().expect("utf-8");

    let good = output(&["catalog", "check", path]).await;
    assert_eq!(good.status.code(), Some(0), "{good:?}");
    let listed = String::from_utf8_lossy(&good.stdout);
    assert!(listed.contains("reaction_added: stored"), "{listed}");
    assert!(listed.contains("cursor_moved: ephemeral"), "{listed}");

    // A route naming a field the schema does not require.
    let mut bad = reaction_schema();
    bad["x-switchboard"]["routes"] = json!([{"channel": "thread_id"}]);
    write(dir.path(), "thread_reply", &bad);
    let refused = output(&["catalog", "check", path]).await;
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("thread_reply.json") && stderr.contains("thread_id"),
        "{stderr}"
    );

    let serve = output(&[
        "serve",
        "--nats-url",
        &nats.url(),
        "--listen",
        "127.0.0.1:0",
        "--dev",
        "--data-dir",
        dir.path().join("data").to_str().expect("utf-8"),
        "--catalog-dir",
        path,
    ])
    .await;
    assert!(!serve.status.success(), "{serve:?}");
    let stderr = String::from_utf8_lossy(&serve.stderr);
    assert!(stderr.contains("thread_reply.json"), "{stderr}");

    let usage = output(&["catalog", "check"]).await;
    assert_eq!(usage.status.code(), Some(2), "{usage:?}");

    std::fs::remove_file(dir.path().join("thread_reply.json")).expect("remove");
    let document = output(&["catalog", "asyncapi", path]).await;
    assert!(document.status.success(), "{document:?}");
    let document: Value = serde_json::from_slice(&document.stdout).expect("JSON");
    assert_eq!(document["asyncapi"], "3.0.0");
    // The built-in protocol, and the added types beside it.
    assert!(document["components"]["messages"]["hello"].is_object());
    assert!(document["components"]["messages"]["added.reaction_added"].is_object());
    assert_eq!(
        document["channels"]["chat_user_reaction_added"]["address"],
        "chat.user.{user_id}.reaction_added"
    );
    assert!(document["channels"]["chat_channel_cursor_moved"]
        .get("x-stream")
        .is_none());

    let yaml = output(&["catalog", "asyncapi", "--yaml", path]).await;
    assert!(yaml.status.success(), "{yaml:?}");
    let yaml: Value = serde_norway::from_slice(&yaml.stdout).expect("YAML");
    assert_eq!(yaml, document);
}
