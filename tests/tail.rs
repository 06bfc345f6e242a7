//! `switchboard tail` against the real gateway: it prints the NDJSON frames
//! of published events, reconnects and resumes by itself after the gateway
//! is killed (no gap, no duplicate), replays with `--since-seq`, stops after
//! `--max-events` and on SIGTERM, and exits 1 or 2 with a reason. With a
//! `--token-file` or a `--token-command` it refreshes its token in band,
//! past the first token's `exp`, on one connection; after a 4001 it
//! reconnects with a fresh token; the operator's disconnect (4003) ends it.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use switchboard::channel::Id;
use switchboard::log::Log;
use switchboard::tail::token::expiry;
use switchboard::token::{Grant, Role};
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

/// The environment variables of the token sources, none of which a test
/// inherits.
const TOKEN_VARIABLES: [&str; 3] = [
    "SWITCHBOARD_TOKEN",
    "SWITCHBOARD_TOKEN_COMMAND",
    "SWITCHBOARD_TOKEN_FILE",
];

impl Tail {
    /// With a fixed token in `SWITCHBOARD_TOKEN`.
    fn start(url: &str, token: &str, args: &[&str]) -> Tail {
        Tail::start_with(url, &[("SWITCHBOARD_TOKEN", token)], args)
    }

    /// With these environment variables (the token source among them).
    fn start_with(url: &str, env: &[(&str, &str)], args: &[&str]) -> Tail {
        let mut command = Command::new(env!("CARGO_BIN_EXE_switchboard"));
        for variable in TOKEN_VARIABLES {
            command.env_remove(variable);
        }
        let mut child = command
            .arg("tail")
            .args(["--url", url])
            .args(args)
            .envs(env.iter().copied())
            .env("SWITCHBOARD_LOG", "info")
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

    /// What tail wrote on stderr so far.
    fn stderr(&self) -> String {
        self.stderr.lock().expect("lock").clone()
    }

    /// Waits until stderr has said `what` `times` times.
    async fn said(&self, what: &str, times: usize) {
        wait_until(&format!("tail to say {what:?} {times} times"), || async {
            self.stderr().matches(what).count() >= times
        })
        .await
    }

    /// The next line, which must be one JSON frame.
    async fn next(&mut self) -> Value {
        let line = tokio::time::timeout(PATIENCE, self.lines.recv())
            .await
            .expect("a line in time")
            .expect("tail still prints");
        assert!(!line.contains('\n'));
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"))
    }

    /// Frames up to and including the next one of type `kind`.
    async fn until(&mut self, kind: &str) -> Vec<Value> {
        let mut frames = Vec::new();
        loop {
            let frame = self.next().await;
            let done = frame["type"] == kind;
            frames.push(frame);
            if done {
                return frames;
            }
        }
    }

    /// Event frames (with a `seq`) up to and including `seq`; other frames
    /// are returned apart.
    async fn events_until(&mut self, seq: u64) -> (Vec<Value>, Vec<Value>) {
        let (mut events, mut other) = (Vec::new(), Vec::new());
        loop {
            let frame = self.next().await;
            match frame["seq"].as_u64() {
                Some(s) => {
                    events.push(frame);
                    if s >= seq {
                        return (events, other);
                    }
                }
                None => other.push(frame),
            }
        }
    }

    fn terminate(&self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
    }

    /// Waits for the exit: the status, the lines not read yet, and stderr.
    async fn exit(mut self) -> (ExitStatus, Vec<Value>, String) {
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
            rest.push(serde_json::from_str(&line).expect("a JSON line"));
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

/// A TCP forwarder with a fixed address in front of a gateway whose port
/// changes when it restarts.
struct Proxy {
    addr: SocketAddr,
    backend: Arc<Mutex<SocketAddr>>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start(backend: SocketAddr) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        let backend = Arc::new(Mutex::new(backend));
        let target = backend.clone();
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((mut client, _)) = listener.accept().await {
                let to = *target.lock().expect("lock");
                connections.spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(to).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        });
        Proxy {
            addr,
            backend,
            task,
        }
    }

    fn point_at(&self, backend: SocketAddr) {
        *self.backend.lock().expect("lock") = backend;
    }

    fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn url(gateway: &Gateway) -> String {
    format!("ws://{}", gateway.addr)
}

async fn publish(log: &Log, c: Id, text: &str) -> u64 {
    log.store(&message(c, text)).await.expect("stored").seq
}

#[tokio::test]
async fn tail_prints_the_frames_of_published_events_as_json_lines() {
    let nats = nats();
    let gateway = Gateway::start(&nats);
    let log = log(&nats).await;
    let c = Id::new_v4();
    let token = token(Id::new_v4(), Grant::All, &[]);
    let mut tail = Tail::start(&url(&gateway), &token, &["global", &format!("channel:{c}")]);

    let hello = tail.next().await;
    assert_eq!(hello["type"], "hello", "{hello}");
    assert_schema(&hello);
    let mut channels = Vec::new();
    for _ in 0..2 {
        let subscribed = tail.next().await;
        assert_eq!(subscribed["type"], "subscribed", "{subscribed}");
        assert_schema(&subscribed);
        channels.push(
            subscribed["data"]["channel"]
                .as_str()
                .expect("channel")
                .to_string(),
        );
    }
    channels.sort();
    assert_eq!(channels, vec![format!("channel:{c}"), "global".to_string()]);

    let first = publish(&log, c, "one").await;
    let second = publish(&log, c, "two").await;
    let (events, other) = tail.events_until(second).await;
    assert!(other.is_empty(), "{other:?}");
    assert_eq!(seqs(&events), vec![first, second]);
    for (event, text) in events.iter().zip(["one", "two"]) {
        assert_schema(event);
        assert_eq!(event["type"], "channel_message");
        assert_eq!(event["channel"], format!("channel:{c}"));
        assert_eq!(event["data"]["content"], text);
    }

    tail.terminate();
    let (status, _, stderr) = tail.exit().await;
    assert_eq!(status.code(), Some(0), "SIGTERM is a clean exit: {stderr}");
    gateway.wait_for_no_connections().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_reconnects_by_itself_and_resumes_with_no_gap_and_no_duplicate() {
    let nats = nats();
    // Cursors written every 0.5 s: on disk within about a second.
    let mut gateway = Gateway::start_with(
        &nats,
        &[
            "--reconnect-base",
            "100ms",
            "--session-flush-interval",
            "500ms",
        ],
    );
    let proxy = Proxy::start(gateway.addr).await;
    let log = log(&nats).await;
    let c = Id::new_v4();
    let token = token(Id::new_v4(), Grant::All, &[]);
    let mut tail = Tail::start(&proxy.url(), &token, &[&format!("channel:{c}")]);
    let mut hello = tail.until("hello").await.pop().expect("hello");
    tail.until("subscribed").await;
    let mut next = 0;
    let mut publish_some = |what: &'static str| {
        let log = log.clone();
        next += 5;
        let from = next - 5;
        async move {
            let mut seqs = Vec::new();
            for i in from..from + 5 {
                seqs.push(publish(&log, c, &format!("{what} {i}")).await);
            }
            seqs
        }
    };
    let before = publish_some("before").await;
    let (events, _) = tail.events_until(before[4]).await;
    assert_eq!(seqs(&events), before);

    // Round 1: the gateway dies at once (its session may not be on disk
    // yet), round 2: after the last ack reached disk (acks go within 1 s,
    // cursors reach disk within 1 s; not a condition wait: the guarantee
    // under test is time-bound). Events are published while it is down.
    for round in 1..=2 {
        if round == 2 {
            tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
        }
        gateway.kill9();
        let during = publish_some("during").await;
        gateway.restart();
        proxy.point_at(gateway.addr);

        let (events, other) = tail.events_until(during[4]).await;
        assert_seqs(
            &seqs(&events),
            &during,
            &format!("round {round}: every missed event once, in order, nothing printed again"),
        );
        let again = other
            .iter()
            .find(|f| f["type"] == "hello")
            .unwrap_or_else(|| panic!("round {round}: a new hello: {other:?}"))
            .clone();
        if round == 2 {
            assert_eq!(again["data"]["resumed"], true, "{again}");
            assert_eq!(again["data"]["session_id"], hello["data"]["session_id"]);
            assert!(
                !other
                    .iter()
                    .any(|f| f["type"] == "subscribed" && f["data"]["request_id"].is_string()),
                "a restored session is not subscribed again: {other:?}"
            );
        }
        hello = again;

        // Live again, and still nothing printed twice.
        let after = publish_some("after").await;
        let (events, _) = tail.events_until(after[4]).await;
        assert_eq!(seqs(&events), after);
    }

    tail.terminate();
    let (status, _, stderr) = tail.exit().await;
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("reconnecting"), "{stderr}");
}

#[tokio::test]
async fn since_seq_replays_and_max_events_exits_0() {
    let nats = nats();
    let gateway = Gateway::start(&nats);
    let log = log(&nats).await;
    let c = Id::new_v4();
    let seqs_published = [
        publish(&log, c, "a").await,
        publish(&log, c, "b").await,
        publish(&log, c, "c").await,
    ];
    let token = token(Id::new_v4(), Grant::All, &[]);
    let since = seqs_published[0].to_string();
    let tail = Tail::start(
        &url(&gateway),
        &token,
        &[
            &format!("channel:{c}"),
            "--since-seq",
            &since,
            "--max-events",
            "2",
        ],
    );
    let (status, lines, stderr) = tail.exit().await;
    assert_eq!(status.code(), Some(0), "{stderr}");
    let events: Vec<Value> = lines
        .iter()
        .filter(|f| f.get("seq").is_some())
        .cloned()
        .collect();
    assert_eq!(seqs(&events), seqs_published[1..].to_vec());
    assert_eq!(lines[0]["type"], "hello");
    assert_eq!(lines[1]["type"], "subscribed");
    gateway.wait_for_no_connections().await;
}

#[tokio::test]
async fn a_refused_or_expired_token_exits_1_with_the_reason() {
    let nats = nats();
    let gateway = Gateway::start(&nats);
    let tail = Tail::start(&url(&gateway), "not-a-token", &["global"]);
    let (status, lines, stderr) = tail.exit().await;
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(lines.is_empty(), "{lines:?}");
    assert!(
        stderr.contains("refused the token") && stderr.contains("401"),
        "{stderr}"
    );

    let short = token_named(
        Id::new_v4(),
        Grant::All,
        &[],
        None,
        std::time::Duration::from_secs(2),
    );
    let tail = Tail::start(&url(&gateway), &short, &["global"]);
    let (status, lines, stderr) = tail.exit().await;
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert_eq!(lines[0]["type"], "hello");
    assert!(stderr.contains("token expired"), "{stderr}");
}

#[tokio::test]
async fn bad_arguments_exit_2() {
    let cases: [&[&str]; 6] = [
        &[
            "global",
            "--since",
            "2025-01-15T10:30:00Z",
            "--since-seq",
            "3",
        ],
        &["channel:nope"],
        &[],
        &["global", "--since", "yesterday"],
        // Two token sources (the fixed one is in SWITCHBOARD_TOKEN).
        &["global", "--token-file", "/run/token"],
        &["global", "--token-command", "echo t"],
    ];
    for args in cases {
        let tail = Tail::start("ws://127.0.0.1:9", "t", args);
        let (status, lines, stderr) = tail.exit().await;
        assert_eq!(status.code(), Some(2), "{args:?}: {stderr}");
        assert!(lines.is_empty(), "{args:?}: {lines:?}");
        assert!(!stderr.trim().is_empty(), "{args:?}: a reason is given");
    }
}

/// The lifetime of the short tokens below: a refresh is due a second
/// before `exp` (three quarters of it), so several come in a test.
const SHORT: Duration = Duration::from_secs(4);

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs() as i64
}

/// Replaces the token in `path` at once (written beside it, then renamed
/// over it), as an issuer should.
fn write_token(path: &Path, token: &str) {
    let new = path.with_extension("new");
    std::fs::write(&new, token).expect("write the token");
    std::fs::rename(&new, path).expect("rename the token");
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 temporary path")
}

/// Publishes events to `c` one by one, each printed before the next, until
/// tail has printed three `refreshed` and an event published when the
/// clock was past `exp` (seconds; the gateway closes at `exp` without a
/// refresh). Returns the events printed, the other frames and the `seq`s
/// published.
async fn follow_past(
    tail: &mut Tail,
    log: &Log,
    c: Id,
    exp: i64,
) -> (Vec<Value>, Vec<Value>, Vec<u64>) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let (mut events, mut other, mut published) = (Vec::new(), Vec::new(), Vec::new());
    loop {
        // Past `exp` by more than the second it is rounded to.
        let late = unix_now() > exp + 1;
        let seq = publish(log, c, &format!("event {}", published.len())).await;
        published.push(seq);
        let (printed, rest) = tail.events_until(seq).await;
        events.extend(printed);
        other.extend(rest);
        let kinds: Vec<&str> = other.iter().filter_map(|f| f["type"].as_str()).collect();
        assert!(
            !kinds.contains(&"hello"),
            "reconnected: {kinds:?}\n{}",
            tail.stderr()
        );
        let refreshed = kinds.iter().filter(|&&k| k == "refreshed").count();
        if late && refreshed >= 3 {
            return (events, other, published);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "three refreshes and an event past exp {exp}: {kinds:?}\n{}",
            tail.stderr()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// One connection all along: one `hello`, every event once and in order,
/// every `refreshed` valid and the last one past `exp`.
fn assert_one_connection(frames: &[Value], events: &[Value], published: &[u64], exp: i64) {
    let hellos = frames.iter().filter(|f| f["type"] == "hello").count();
    assert_eq!(hellos, 1, "never reconnected: {frames:?}");
    assert_seqs(&seqs(events), published, "every event once, in order");
    let refreshed: Vec<&Value> = frames.iter().filter(|f| f["type"] == "refreshed").collect();
    for frame in &refreshed {
        assert_schema(frame);
        assert_eq!(frame["data"]["request_id"], "tail-refresh", "{frame}");
    }
    let last = refreshed.last().expect("a refreshed")["data"]["exp"]
        .as_i64()
        .expect("exp");
    assert!(last > exp, "the token was replaced: {last} > {exp}");
}

#[tokio::test]
async fn a_token_file_is_refreshed_in_band_past_the_first_tokens_exp() {
    let nats = nats();
    let gateway = Gateway::start(&nats);
    let log = log(&nats).await;
    let (user, c) = (Id::new_v4(), Id::new_v4());
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("token");
    let first = token_named(user, Grant::All, &[], None, SHORT);
    let exp = expiry(&first).expect("exp");
    write_token(&file, &first);
    // The issuer: a fresh token in the file every half second.
    let writer = {
        let file = file.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                write_token(&file, &token_named(user, Grant::All, &[], None, SHORT));
            }
        })
    };
    let mut tail = Tail::start_with(
        &url(&gateway),
        &[("SWITCHBOARD_TOKEN_FILE", path_str(&file))],
        &[&format!("channel:{c}")],
    );
    let mut frames = tail.until("subscribed").await;
    let (events, other, published) = follow_past(&mut tail, &log, c, exp).await;
    writer.abort();
    frames.extend(other);
    assert_one_connection(&frames, &events, &published, exp);

    tail.terminate();
    let (status, _, stderr) = tail.exit().await;
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("4001"), "{stderr}");
}

#[tokio::test]
async fn a_token_command_is_run_for_each_refresh() {
    let nats = nats();
    let gateway = Gateway::start(&nats);
    let log = log(&nats).await;
    let (user, c) = (Id::new_v4(), Id::new_v4());
    // The issuer: `switchboard token`, a 4 s token each time.
    let command = format!(
        "'{}' token --sub {user} --channels '*' --ttl {}s --jwt-secret '{SECRET}'",
        env!("CARGO_BIN_EXE_switchboard"),
        SHORT.as_secs()
    );
    let mut tail = Tail::start_with(
        &url(&gateway),
        &[("SWITCHBOARD_TOKEN_COMMAND", &command)],
        &[&format!("channel:{c}")],
    );
    let mut frames = tail.until("subscribed").await;
    // The first token was minted before the hello: it expires by then + 4 s.
    let exp = unix_now() + SHORT.as_secs() as i64;
    let (events, other, published) = follow_past(&mut tail, &log, c, exp).await;
    frames.extend(other);
    assert_one_connection(&frames, &events, &published, exp);

    tail.terminate();
    let (status, _, stderr) = tail.exit().await;
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("4001"), "{stderr}");
}

/// The file holds a token for another user (the gateway refuses it as a
/// refresh), then nothing (no token at all): the first token expires, the
/// gateway closes with 4001, and tail keeps trying to reconnect until the
/// file holds a good token again; then it resumes with no event lost or
/// printed twice.
#[tokio::test]
async fn a_token_file_gone_bad_lets_the_token_expire_and_tail_reconnects_once_it_is_good() {
    let nats = nats();
    let gateway = Gateway::start_with(&nats, &["--reconnect-base", "100ms"]);
    let log = log(&nats).await;
    let (user, c) = (Id::new_v4(), Id::new_v4());
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("token");
    write_token(&file, &token_named(user, Grant::All, &[], None, SHORT));
    let mut tail = Tail::start_with(
        &url(&gateway),
        &[("SWITCHBOARD_TOKEN_FILE", path_str(&file))],
        &[&format!("channel:{c}")],
    );
    let mut frames = tail.until("subscribed").await;
    write_token(&file, &token(Id::new_v4(), Grant::All, &[]));
    tail.said("the gateway refused the new token (forbidden", 1)
        .await;
    write_token(&file, "");
    tail.said("the token expired (close 4001)", 1).await;
    tail.said("no token: --token-file", 1).await;

    let missed = publish(&log, c, "while tail had no token").await;
    write_token(&file, &token(user, Grant::All, &[]));
    let (events, other) = tail.events_until(missed).await;
    assert_eq!(seqs(&events), vec![missed], "{other:?}");
    frames.extend(other);
    let live = publish(&log, c, "after").await;
    let (events, other) = tail.events_until(live).await;
    assert_eq!(seqs(&events), vec![live], "{other:?}");
    frames.extend(other);
    let hellos = frames.iter().filter(|f| f["type"] == "hello").count();
    assert_eq!(hellos, 2, "one reconnection: {frames:?}");
    assert!(
        frames
            .iter()
            .any(|f| f["type"] == "error" && f["data"]["request_id"] == "tail-refresh"),
        "the refusal is printed: {frames:?}"
    );

    tail.terminate();
    let (status, _, stderr) = tail.exit().await;
    assert_eq!(status.code(), Some(0), "{stderr}");
}

/// A token the gateway refuses at the reconnect (HTTP 401) ends tail, as
/// at the start: it names the source.
#[tokio::test]
async fn a_token_refused_at_the_reconnect_exits_1_naming_the_source() {
    let nats = nats();
    let gateway = Gateway::start_with(&nats, &["--reconnect-base", "100ms"]);
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("token");
    let short = token_named(Id::new_v4(), Grant::All, &[], None, SHORT);
    write_token(&file, &short);
    let mut tail = Tail::start_with(
        &url(&gateway),
        &[("SWITCHBOARD_TOKEN_FILE", path_str(&file))],
        &["global"],
    );
    tail.until("subscribed").await;
    write_token(&file, "not-a-token");
    let (status, _, stderr) = tail.exit().await;
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("close 4001"), "{stderr}");
    assert!(
        stderr.contains("refused the token (HTTP 401)") && stderr.contains("--token-file"),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_token_source_that_fails_at_the_start_exits_1_with_its_stderr() {
    let tail = Tail::start_with(
        "ws://127.0.0.1:9",
        &[(
            "SWITCHBOARD_TOKEN_COMMAND",
            "echo 'the issuer is away' >&2; exit 3",
        )],
        &["global"],
    );
    let (status, lines, stderr) = tail.exit().await;
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(lines.is_empty(), "{lines:?}");
    assert!(
        stderr.contains("exited with 3") && stderr.contains("the issuer is away"),
        "{stderr}"
    );
}

/// Close 4003: tail exits 1 with the operator's reason and does not
/// reconnect, though its token file would give it a token.
#[tokio::test]
async fn the_operators_disconnect_ends_tail_with_the_reason() {
    let nats = nats();
    let gateway = Gateway::start(&nats);
    let user = Id::new_v4();
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("token");
    write_token(&file, &token(user, Grant::All, &[]));
    let mut tail = Tail::start_with(
        &url(&gateway),
        &[("SWITCHBOARD_TOKEN_FILE", path_str(&file))],
        &["global"],
    );
    tail.until("subscribed").await;
    let admin = token(Id::new_v4(), Grant::None, &[Role::Admin]);
    let response = http()
        .post(gateway.http(&format!("/v1/users/{user}/disconnect")))
        .bearer_auth(&admin)
        .json(&json!({"reason": "rotating keys"}))
        .send()
        .await
        .expect("the disconnect request");
    assert_eq!(response.status().as_u16(), 200);
    let (status, lines, stderr) = tail.exit().await;
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(lines.is_empty(), "nothing more printed: {lines:?}");
    assert!(
        stderr.contains("disconnected by the operator: rotating keys"),
        "{stderr}"
    );
    assert!(!stderr.contains("reconnecting"), "{stderr}");
    gateway.wait_for_no_connections().await;
}
