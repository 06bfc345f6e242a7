//! `switchboard tail --presence` against the real gateway: the chat channel
//! it follows is subscribed with presence, so it prints the channel's
//! `presence` snapshot, then a `user_presence` line when another user's
//! raw WebSocket client subscribes (online) and unsubscribes (offline);
//! after its connection breaks it reconnects, resumes its session and
//! prints the snapshot it gets again. `global` beside it is followed
//! without presence (a warning); `--presence` with no chat channel exits 2.
//!
//! (`tests/tail.rs` tests the rest of tail; this file has a small runner
//! of its own, and a proxy whose connections can be cut.)

use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use switchboard::channel::Id;
use switchboard::token::Grant;
use switchboard_harness::*;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

/// A running `switchboard tail`: its stdout lines as they come, its stderr
/// as it comes. Killed on drop.
struct Tail {
    child: Child,
    lines: UnboundedReceiver<String>,
    stderr: Arc<Mutex<String>>,
    stderr_reader: Option<std::thread::JoinHandle<()>>,
}

impl Tail {
    /// With a fixed token (`SWITCHBOARD_TOKEN`), no other token source.
    fn start(url: &str, token: &str, args: &[&str]) -> Tail {
        let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .env_remove("SWITCHBOARD_TOKEN_COMMAND")
            .env_remove("SWITCHBOARD_TOKEN_FILE")
            .env("SWITCHBOARD_TOKEN", token)
            .env("SWITCHBOARD_LOG", "info")
            .arg("tail")
            .args(["--url", url])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("tail starts");
        let stdout = child.stdout.take().expect("stdout");
        let (send, lines) = unbounded_channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        let raw = child.stderr.take().expect("stderr");
        let stderr = Arc::new(Mutex::new(String::new()));
        let into = stderr.clone();
        let stderr_reader = std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(raw).lines() {
                let Ok(line) = line else { break };
                let mut text = into.lock().expect("lock");
                text.push_str(&line);
                text.push('\n');
            }
        });
        Tail {
            child,
            lines,
            stderr,
            stderr_reader: Some(stderr_reader),
        }
    }

    fn stderr(&self) -> String {
        self.stderr.lock().expect("lock").clone()
    }

    /// Frames up to and including the next one that `wanted` accepts;
    /// a failure, showing what came, if none does within [`PATIENCE`].
    async fn until(&mut self, wanted: impl Fn(&Value) -> bool) -> Vec<Value> {
        let mut frames = Vec::new();
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let line = match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(line)) => line,
                Ok(None) => panic!("tail ended; after {frames:?}\n{}", self.stderr()),
                Err(_) => panic!("not in time; after {frames:?}\n{}", self.stderr()),
            };
            let frame: Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
            let done = wanted(&frame);
            frames.push(frame);
            if done {
                return frames;
            }
        }
    }

    fn terminate(&self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
    }

    /// Waits for the exit: the status, the lines not read yet, and stderr.
    async fn exit(mut self) -> (ExitStatus, Vec<String>, String) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break status;
            }
            assert!(tokio::time::Instant::now() < deadline, "tail did not exit");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        };
        let mut rest = Vec::new();
        while let Some(line) = self.lines.recv().await {
            rest.push(line);
        }
        if let Some(reader) = self.stderr_reader.take() {
            let _ = reader.join();
        }
        (status, rest, self.stderr())
    }
}

impl Drop for Tail {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP forwarder in front of the gateway whose connections can be cut
/// (no Close frame, as a broken network would), so that tail reconnects.
struct Proxy {
    addr: std::net::SocketAddr,
    connections: Arc<Mutex<tokio::task::JoinSet<()>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start(backend: std::net::SocketAddr) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        let connections = Arc::new(Mutex::new(tokio::task::JoinSet::new()));
        let held = connections.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                held.lock().expect("lock").spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(backend).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        });
        Proxy {
            addr,
            connections,
            task,
        }
    }

    /// Drops every connection through the proxy (both sockets).
    fn cut(&self) {
        self.connections.lock().expect("lock").abort_all();
    }

    fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
        self.cut();
    }
}

/// A `user_presence` line about `user` going `online` (or offline) in `channel`.
fn user_presence(frame: &Value, channel: &str, user: Id, online: bool) -> bool {
    frame["type"] == "user_presence"
        && frame["channel"] == channel
        && frame["data"]["user_id"] == user.to_string()
        && frame["data"]["online"] == online
}

/// A `presence` snapshot of `channel`.
fn snapshot(frame: &Value, channel: &str) -> bool {
    frame["type"] == "presence" && frame["data"]["channel"] == channel
}

/// The snapshot's members as (user id, username).
fn members(frame: &Value) -> Vec<(String, String)> {
    frame["data"]["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| {
            (
                m["user_id"].as_str().expect("user_id").to_string(),
                m["username"].as_str().expect("username").to_string(),
            )
        })
        .collect()
}

/// Whether a presence frame that `bob`'s subscription got unasked shows
/// `user` online: that user's change was announced (a batch went out).
fn announced(frame: &Value, channel: &str, user: Id) -> bool {
    user_presence(frame, channel, user, true)
        || (snapshot(frame, channel)
            && frame["data"].get("request_id").is_none()
            && members(frame).iter().any(|(id, _)| *id == user.to_string()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_prints_presence_changes_and_the_snapshot_again_after_a_reconnect() {
    let nats = nats();
    let gateway = Gateway::start_with(&nats, &["--reconnect-base", "100ms"]);
    let proxy = Proxy::start(gateway.addr).await;
    let (c, watcher, bob, ann) = (Id::new_v4(), Id::new_v4(), Id::new_v4(), Id::new_v4());
    let channel = format!("channel:{c}");
    let user_token = |user, name| token_named(user, Grant::All, &[], Some(name), TOKEN_TTL);

    // Bob is in the channel first, and watches its presence too.
    let mut bob_client = Client::connect(&gateway, &user_token(bob, "bob")).await;
    bob_client
        .send(json!({"type": "subscribe", "channel": channel, "presence": true}))
        .await;
    let frames = [bob_client.next().await, bob_client.next().await];
    assert_eq!(frames[0]["type"], "subscribed", "{frames:?}");
    assert!(snapshot(&frames[1], &channel), "{frames:?}");
    // Bob's arrival is announced (his own change comes back to him): a
    // snapshot holds what was announced, so tail's will hold him.
    while !announced(&bob_client.next().await, &channel, bob) {}

    let mut tail = Tail::start(
        &proxy.url(),
        &user_token(watcher, "watcher"),
        &["--presence", "global", &channel],
    );
    // hello, both `subscribed`, then the chat channel's snapshot: bob and
    // tail's own user are online.
    let frames = tail.until(|f| snapshot(f, &channel)).await;
    assert_eq!(frames[0]["type"], "hello", "{frames:?}");
    assert!(
        frames
            .iter()
            .any(|f| f["type"] == "subscribed" && f["data"]["channel"] == channel),
        "subscribed before the snapshot: {frames:?}"
    );
    assert!(
        frames
            .iter()
            .any(|f| f["type"] == "subscribed" && f["data"]["channel"] == "global"),
        "global is followed, without presence: {frames:?}"
    );
    let first = frames.last().expect("the snapshot");
    assert_schema(first);
    let both = {
        let mut both = vec![
            (watcher.to_string(), "watcher".to_string()),
            (bob.to_string(), "bob".to_string()),
        ];
        both.sort();
        both
    };
    assert_eq!(members(first), both, "{first}");
    assert_eq!(first["data"]["count"], 2, "{first}");
    assert_eq!(first["data"]["truncated"], false, "{first}");
    assert!(
        tail.stderr().contains("presence is only for chat channels"),
        "global's warning: {}",
        tail.stderr()
    );
    // Tail's own arrival is announced (in a batch of its own, or with
    // bob's), so that ann's, next, is a change of its own: one
    // `user_presence` rather than a snapshot of the channel.
    while !announced(&bob_client.next().await, &channel, watcher) {}

    // Ann connects with a raw WebSocket client and subscribes: online.
    let mut ann_client = Client::connect(&gateway, &user_token(ann, "ann")).await;
    ann_client.subscribe(chat(c)).await;
    let frames = tail.until(|f| user_presence(f, &channel, ann, true)).await;
    let online = frames.last().expect("ann online");
    assert_schema(online);
    assert_eq!(online["data"]["username"], "ann", "{online}");
    assert_eq!(online["data"]["channel_id"], c.to_string(), "{online}");
    assert!(online.get("seq").is_none(), "presence has no seq: {online}");

    // Ann unsubscribes: offline, at once (no grace for an ended subscription).
    ann_client
        .send(json!({"type": "unsubscribe", "channel": channel, "request_id": "u"}))
        .await;
    let frames = tail.until(|f| user_presence(f, &channel, ann, false)).await;
    let offline = frames.last().expect("ann offline");
    assert_schema(offline);
    assert_eq!(offline["data"]["username"], "ann", "{offline}");

    // The connection breaks: tail reconnects (resuming its session) and
    // prints the snapshot it gets again: ann is gone from it, and tail's
    // user, back within the grace, never went offline.
    proxy.cut();
    let frames = tail.until(|f| f["type"] == "hello").await;
    let frames_after = tail.until(|f| snapshot(f, &channel)).await;
    assert!(
        !frames
            .iter()
            .chain(&frames_after)
            .any(|f| user_presence(f, &channel, watcher, false)),
        "{frames:?} {frames_after:?}"
    );
    let hello = frames.last().expect("hello");
    if hello["data"]["resumed"] == true {
        // The session remembered that the subscription asked for presence.
        assert!(
            !frames_after
                .iter()
                .any(|f| f["type"] == "subscribed" && f["data"]["request_id"].is_string()),
            "a restored session is not subscribed again: {frames_after:?}"
        );
    }
    let again = frames_after.last().expect("the snapshot again");
    assert_schema(again);
    assert_eq!(members(again), both, "{again}");

    tail.terminate();
    let (status, _, stderr) = tail.exit().await;
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("reconnecting"), "{stderr}");
    ann_client.close().await;
    bob_client.close().await;
}

#[tokio::test]
async fn presence_with_no_chat_channel_exits_2() {
    for args in [
        &["--presence", "global"][..],
        &["--presence", "user:0b6f2c1e-3d4a-4f5b-8c9d-0e1f2a3b4c5d"],
    ] {
        let tail = Tail::start("ws://127.0.0.1:9", "t", args);
        let (status, lines, stderr) = tail.exit().await;
        assert_eq!(status.code(), Some(2), "{args:?}: {stderr}");
        assert!(lines.is_empty(), "{args:?}: {lines:?}");
        assert!(
            stderr.contains("--presence: presence is only for chat channels"),
            "{args:?}: {stderr}"
        );
    }
}
