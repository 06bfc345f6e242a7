//! The `switchboard` binary as users run it, against a real nats-server:
//! `publish` (flags and stdin), `replay` (NDJSON, summary, ranges), `token`,
//! `projection rebuild`/`check`, and the settings rules of `serve` (refusals
//! that name the setting, config file keys, flag-over-file precedence).
//! Every process a test starts is killed when the test ends, also on panic.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{assert_schema, PATIENCE};
use switchboard::channel::{Channel, Id};
use switchboard::event::format_timestamp;
use switchboard::log::{Log, StreamSettings};
use switchboard::projection::Snapshot;
use switchboard::store::Store;
use switchboard::token::{Grant, Role, TokenKeys};

// ---------------------------------------------------------------------------
// running the binary
// ---------------------------------------------------------------------------

/// A child process that is killed (and reaped) when dropped, with every
/// process of its group: a `serve` without a NATS URL has started a
/// nats-server of its own, which a SIGKILL of `serve` alone would leave
/// running.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        support::kill_group(&mut self.0);
    }
}

/// The binary with no `SWITCHBOARD_*` from the test's environment, run in
/// `dir` (so the default `./data` is a temporary directory).
fn switchboard(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchboard"));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("SWITCHBOARD_") {
            cmd.env_remove(key);
        }
    }
    cmd.current_dir(dir);
    // Its own process group, which `Proc` kills as a whole.
    support::own_process_group(&mut cmd);
    cmd
}

struct Output {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Output {
    fn code(&self) -> Option<i32> {
        self.status.code()
    }

    fn lines(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect()
    }

    fn ok(self) -> Output {
        assert_eq!(
            self.code(),
            Some(0),
            "expected success; stdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
        self
    }

    /// Exit 2 with a message on stderr that contains every one of `words`.
    fn usage_error(&self, words: &[&str]) {
        assert_eq!(
            self.code(),
            Some(2),
            "expected exit 2; stdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
        for word in words {
            assert!(
                self.stderr.contains(word),
                "the message names `{word}`:\n{}",
                self.stderr
            );
        }
    }
}

fn drain(pipe: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_string(&mut text);
        }
        text
    })
}

/// Runs the command to its end (at most PATIENCE), feeding `stdin`.
fn run(cmd: &mut Command, stdin: Option<&str>) -> Output {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut proc = Proc(cmd.spawn().expect("the binary starts"));
    if let Some(input) = stdin {
        let mut pipe = proc.0.stdin.take().expect("stdin");
        pipe.write_all(input.as_bytes()).expect("write stdin");
    }
    let stdout = drain(proc.0.stdout.take());
    let stderr = drain(proc.0.stderr.take());
    let deadline = Instant::now() + PATIENCE;
    let status = loop {
        if let Some(status) = proc.0.try_wait().expect("try_wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "{cmd:?} did not finish within {PATIENCE:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    Output {
        status,
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}

/// A `serve` process: either it came up on `addr` (what it logs is read
/// by `stderr` until it exits), or it exited.
enum Served {
    Up {
        proc: Proc,
        addr: SocketAddr,
        stderr: std::thread::JoinHandle<String>,
    },
    Exited(Output),
}

/// Starts `cmd` (a `switchboard serve …` command) and waits until it
/// listens or exits.
fn serve(cmd: &mut Command) -> Served {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut proc = Proc(cmd.spawn().expect("serve starts"));
    let stdout = proc.0.stdout.take().expect("stdout");
    let stderr = drain(proc.0.stderr.take());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut seen = String::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(addr) = line.strip_prefix(switchboard::server::LISTENING) {
                let _ = tx.send(Ok(addr.trim().to_string()));
            }
            seen.push_str(&line);
            seen.push('\n');
        }
        let _ = tx.send(Err(seen));
    });
    match rx.recv_timeout(PATIENCE) {
        Ok(Ok(addr)) => Served::Up {
            proc,
            addr: addr.parse().expect("a socket address"),
            stderr,
        },
        Ok(Err(stdout)) => {
            let status = proc.0.wait().expect("serve exits");
            Served::Exited(Output {
                status,
                stdout,
                stderr: stderr.join().expect("stderr reader"),
            })
        }
        Err(_) => panic!("serve neither listened nor exited within {PATIENCE:?}"),
    }
}

fn expect_exit(served: Served) -> Output {
    match served {
        Served::Exited(output) => output,
        Served::Up { addr, .. } => panic!("serve came up on {addr}; expected it to refuse"),
    }
}

fn block<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(future)
}

fn messages_held(url: &str) -> u64 {
    block(async {
        let log = Log::open(url, StreamSettings::default())
            .await
            .expect("the log opens");
        log.extent().await.expect("extent").messages
    })
}

fn temp() -> tempfile::TempDir {
    tempfile::tempdir().expect("a temporary directory")
}

fn publish(dir: &Path, url: &str, kind: &str, data: &Value, id: Option<&str>) -> Output {
    let mut cmd = switchboard(dir);
    cmd.args(["publish", "--nats-url", url, "--type", kind])
        .arg("--data")
        .arg(data.to_string());
    if let Some(id) = id {
        cmd.args(["--id", id]);
    }
    run(&mut cmd, None)
}

fn replay(dir: &Path, url: &str, args: &[&str]) -> Output {
    run(
        switchboard(dir)
            .args(["replay", "--nats-url", url])
            .args(args),
        None,
    )
}

fn message_data(c: Id, text: &str) -> Value {
    json!({"channel_id": c, "message_id": Id::new_v4(), "user_id": Id::new_v4(),
           "username": "ann", "content": text})
}

fn is_timestamp(v: &Value) -> bool {
    v.as_str().is_some_and(|s| {
        s.len() == 24 && s.ends_with('Z') && switchboard::event::parse_timestamp(s).is_ok()
    })
}

// ---------------------------------------------------------------------------
// publish
// ---------------------------------------------------------------------------

#[test]
fn publish_prints_id_seq_and_log_timestamp_and_a_repeated_id_is_stored_once() {
    let nats = support::nats();
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
    let nats = support::nats();
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
    let nats = support::nats();
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

// ---------------------------------------------------------------------------
// replay
// ---------------------------------------------------------------------------

/// Publishes lines on stdin and returns the receipts.
fn publish_lines(dir: &Path, url: &str, bodies: &[Value]) -> Vec<Value> {
    let input = bodies
        .iter()
        .map(Value::to_string)
        .collect::<Vec<_>>()
        .join("\n");
    let out = run(
        switchboard(dir).args(["publish", "--nats-url", url]),
        Some(&input),
    )
    .ok();
    let receipts = out.lines();
    assert_eq!(receipts.len(), bodies.len());
    receipts
}

#[test]
fn replay_prints_the_envelopes_publish_reported() {
    let nats = support::nats();
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
    let nats = support::nats();
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
    let nats = support::nats();
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

// ---------------------------------------------------------------------------
// token
// ---------------------------------------------------------------------------

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

#[test]
fn token_mints_a_jwt_with_the_asked_claims() {
    let dir = temp();
    let sub = Id::new_v4();
    let before = now();
    let out = run(
        switchboard(dir.path()).args([
            "token",
            "--sub",
            &sub.to_string(),
            "--channels",
            "*",
            "--roles",
            "publisher",
            "--jwt-secret",
            "s",
        ]),
        None,
    )
    .ok();
    let jwt = out.stdout.trim();
    assert_eq!(out.stdout.lines().count(), 1);
    let claims = TokenKeys::hs256(b"s").verify(jwt).expect("a valid token");
    assert_eq!(claims.sub, sub);
    assert_eq!(claims.channels, Grant::All);
    assert_eq!(claims.roles, [Role::Publisher]);
    assert_eq!(claims.name, None);
    assert!(
        (before + 3600..=now() + 3600).contains(&claims.exp),
        "one hour by default"
    );
    assert!(
        TokenKeys::hs256(b"other").verify(jwt).is_err(),
        "signed with the given secret only"
    );

    let (c1, c2) = (Id::new_v4(), Id::new_v4());
    let channels = format!("channel:{c1}, {}", c2.to_string().to_uppercase());
    let before = now();
    let out = run(
        switchboard(dir.path())
            .args(["token", "--sub", &sub.to_string().to_uppercase()])
            .args(["--channels", &channels, "--roles", "publisher,auditor"])
            .args(["--name", "ann", "--ttl", "2h"])
            .env("SWITCHBOARD_JWT_SECRET", "from-env"),
        None,
    )
    .ok();
    let claims = TokenKeys::hs256(b"from-env")
        .verify(out.stdout.trim())
        .expect("a valid token");
    assert_eq!(claims.sub, sub);
    assert_eq!(claims.channels, Grant::Some(vec![c1, c2]));
    assert_eq!(claims.roles, [Role::Publisher, Role::Auditor]);
    assert_eq!(claims.name.as_deref(), Some("ann"));
    assert!((before + 7200..=now() + 7200).contains(&claims.exp));

    let out = run(
        switchboard(dir.path()).args(["token", "--sub", &sub.to_string(), "--dev"]),
        None,
    )
    .ok();
    let claims = TokenKeys::hs256(switchboard::settings::DEV_SECRET.as_bytes())
        .verify(out.stdout.trim())
        .expect("--dev signs with the development secret");
    assert_eq!(claims.channels, Grant::None);
    assert!(claims.roles.is_empty());
}

#[test]
fn token_with_bad_input_exits_2() {
    let dir = temp();
    let sub = Id::new_v4().to_string();
    for (args, words) in [
        (
            vec!["--sub", "nope", "--jwt-secret", "s"],
            vec!["--sub", "nope"],
        ),
        (
            vec!["--sub", &sub.replace('-', ""), "--jwt-secret", "s"],
            vec!["--sub"],
        ),
        (
            vec![
                "--sub",
                &sub,
                "--roles",
                "publisher,admin",
                "--jwt-secret",
                "s",
            ],
            vec!["--roles", "admin"],
        ),
        (
            vec!["--sub", &sub, "--channels", "general", "--jwt-secret", "s"],
            vec!["--channels", "general"],
        ),
        (
            vec!["--sub", &sub, "--ttl", "forever", "--jwt-secret", "s"],
            vec!["ttl", "forever"],
        ),
        (vec!["--sub", &sub], vec!["SWITCHBOARD_JWT_SECRET"]),
        (vec!["--jwt-secret", "s"], vec!["--sub"]),
    ] {
        let out = run(switchboard(dir.path()).arg("token").args(&args), None);
        out.usage_error(&words);
        assert!(out.stdout.is_empty(), "no token printed for {args:?}");
    }
}

// ---------------------------------------------------------------------------
// serve's settings
// ---------------------------------------------------------------------------

fn write_config(dir: &Path, text: &str) -> String {
    let path = dir.join("switchboard.toml");
    std::fs::write(&path, text).expect("config written");
    path.to_str().expect("utf-8 path").to_string()
}

#[test]
fn serve_refuses_bad_settings_naming_them() {
    let nats = support::nats();
    let dir = temp();
    let url = nats.url();
    let serve_with = |args: &[&str], env: &[(&str, &str)]| {
        let mut cmd = switchboard(dir.path());
        cmd.arg("serve").args(args).envs(env.iter().copied());
        // Usable defaults for every flag the case does not set itself.
        for (flag, value) in [("--listen", "127.0.0.1:0"), ("--nats-url", url.as_str())] {
            if !args.contains(&flag) {
                cmd.args([flag, value]);
            }
        }
        cmd.arg("--data-dir").arg(dir.path().join("data"));
        expect_exit(serve(&mut cmd))
    };

    serve_with(&[], &[]).usage_error(&["jwt_secret", "SWITCHBOARD_JWT_SECRET"]);
    serve_with(&["--jwt-secret", ""], &[]).usage_error(&["jwt_secret"]);
    serve_with(&["--retention", "7x", "--dev"], &[]).usage_error(&[
        "retention",
        "SWITCHBOARD_RETENTION",
        "7x",
    ]);
    serve_with(&["--dev"], &[("SWITCHBOARD_RETENTION", "7x")])
        .usage_error(&["retention", "SWITCHBOARD_RETENTION"]);
    serve_with(&["--retention", "0s", "--dev"], &[]).usage_error(&["retention"]);
    serve_with(&["--listen", "nowhere", "--dev"], &[]).usage_error(&["listen", "nowhere"]);
    serve_with(&["--stream", "a.b", "--dev"], &[]).usage_error(&["stream"]);
    serve_with(&["--nats-url", "http://x", "--dev"], &[]).usage_error(&["nats_url"]);
    serve_with(&["--send-queue", "0", "--dev"], &[]).usage_error(&["send_queue"]);
    serve_with(&["--heartbeat", "0s", "--dev"], &[]).usage_error(&["heartbeat"]);
    serve_with(&["--dev", "maybe"], &[]).usage_error(&["dev", "maybe"]);

    let config = write_config(dir.path(), "listen = \"127.0.0.1:0\"\nlisten_port = 9\n");
    serve_with(&["--dev", "--config", &config], &[]).usage_error(&["config", "listen_port"]);
    let config = write_config(dir.path(), "retention = \"7x\"\n");
    serve_with(&["--dev", "--config", &config], &[]).usage_error(&["retention"]);
    let config = write_config(dir.path(), "this is = not toml [");
    serve_with(&["--dev", "--config", &config], &[]).usage_error(&["config", "TOML"]);
    let missing = dir.path().join("missing.toml");
    serve_with(
        &["--dev", "--config", missing.to_str().expect("utf-8")],
        &[],
    )
    .usage_error(&["config", "missing.toml"]);
}

// Regression: every number has bounds. A send queue of a billion used to
// overflow the transport's buffer size (`send_queue * 1024`) or panic in
// `mpsc::channel`; now it stops `serve` at once, wherever it comes from,
// and no NATS is needed to find out.
#[test]
fn serve_refuses_numbers_outside_their_bounds_from_flags_env_and_file() {
    let dir = temp();
    let serve_with = |args: &[&str], env: &[(&str, &str)]| {
        let mut cmd = switchboard(dir.path());
        cmd.args(["serve", "--dev", "--listen", "127.0.0.1:0"])
            .args(["--nats-url", "nats://127.0.0.1:1"])
            .args(args)
            .envs(env.iter().copied());
        cmd.arg("--data-dir").arg(dir.path().join("data"));
        expect_exit(serve(&mut cmd))
    };
    let huge = "1000000000";
    let words = [
        "send_queue",
        "--send-queue",
        "SWITCHBOARD_SEND_QUEUE",
        "maximum 65536",
    ];
    serve_with(&["--send-queue", huge], &[]).usage_error(&words);
    serve_with(&[], &[("SWITCHBOARD_SEND_QUEUE", huge)]).usage_error(&words);
    let config = write_config(dir.path(), &format!("send_queue = {huge}\n"));
    serve_with(&["--config", &config], &[]).usage_error(&words);
    serve_with(&["--max-frame-bytes", "18446744073709551616"], &[])
        .usage_error(&["max_frame_bytes", "whole number"]);
    serve_with(&["--max-subscriptions", "0"], &[]).usage_error(&["max_subscriptions", "minimum 1"]);
    serve_with(&["--replicas", "6"], &[]).usage_error(&["replicas", "maximum 5"]);
    serve_with(&["--session-ttl", "1000y"], &[]).usage_error(&["session_ttl", "maximum 100y"]);
    // The bounds and the precedence are in `--help`.
    let help = run(switchboard(dir.path()).args(["serve", "--help"]), None).ok();
    assert!(
        help.stdout.contains("[range: 1 to 65536]")
            && help.stdout.contains("in order of precedence"),
        "{}",
        help.stdout
    );
}

fn serve_args(cmd: &mut Command, data: &Path, url: &str) {
    cmd.args(["--nats-url", url, "--data-dir"]).arg(data);
}

#[test]
fn flags_override_the_config_file_and_the_environment_overrides_it_too() {
    let nats = support::nats();
    let dir = temp();
    let url = nats.url();
    let config = write_config(
        dir.path(),
        "listen = \"127.0.0.1:1\"\nstream = \"FROM_FILE\"\njwt_secret = \"file-secret\"\n",
    );

    // The flag wins over the file's `listen`; the file's other keys apply.
    let mut cmd = switchboard(dir.path());
    cmd.args(["serve", "--config", &config, "--listen", "127.0.0.1:0"]);
    serve_args(&mut cmd, &dir.path().join("one"), &url);
    let Served::Up { proc, addr, .. } = serve(&mut cmd) else {
        panic!("serve did not come up")
    };
    assert_ne!(
        addr.port(),
        1,
        "the flag's port 0 was used, not the file's 1"
    );
    assert_ne!(addr.port(), 0);
    block(async {
        let client = async_nats::connect(&url).await.expect("connects");
        let js = async_nats::jetstream::new(client);
        js.get_stream("FROM_FILE")
            .await
            .expect("the file's stream name was used");
        // The file's secret is the gateway's: an auditor token signed with
        // it reads history, one signed otherwise is refused.
        let http = support::http();
        let user = Id::new_v4();
        let token = |secret: &[u8]| {
            let claims = switchboard::token::dev_claims(
                user,
                Duration::from_secs(600),
                None,
                Grant::None,
                vec![Role::Auditor],
            );
            TokenKeys::hs256(secret).mint(&claims).expect("mint")
        };
        let history = format!("http://{addr}/v1/history/{}", Channel::Global);
        let ok = http
            .get(&history)
            .bearer_auth(token(b"file-secret"))
            .send()
            .await
            .expect("history answers");
        assert_eq!(ok.status(), 200);
        let refused = http
            .get(&history)
            .bearer_auth(token(b"other"))
            .send()
            .await
            .expect("history answers");
        assert_eq!(refused.status(), 401);
    });
    drop(proc);

    // The environment wins over the file as well.
    let mut cmd = switchboard(dir.path());
    cmd.args(["serve", "--config", &config])
        .env("SWITCHBOARD_LISTEN", "127.0.0.1:0");
    serve_args(&mut cmd, &dir.path().join("two"), &url);
    let Served::Up { addr, .. } = serve(&mut cmd) else {
        panic!("serve did not come up with SWITCHBOARD_LISTEN")
    };
    assert_ne!(addr.port(), 1);

    // Without either, the file's `listen` (port 1) is the one serve uses:
    // it listens there when allowed to, or names it when it cannot.
    let mut cmd = switchboard(dir.path());
    cmd.args(["serve", "--config", &config]);
    serve_args(&mut cmd, &dir.path().join("three"), &url);
    match serve(&mut cmd) {
        Served::Up { addr, .. } => assert_eq!(addr.port(), 1, "the file's listen applies"),
        Served::Exited(out) => assert!(
            out.stderr.contains("127.0.0.1:1"),
            "the failure names the file's address:\n{}",
            out.stderr
        ),
    }
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

// Regression: `serve` refuses a heartbeat below one millisecond (its declared
// minimum, src/settings/declared.rs) (`--heartbeat 500us`), like zero: the hello frame announces
// the heartbeat in whole milliseconds, and `heartbeat_ms: 0` would fail
// schemas/server/hello.json (`minimum: 1`) and read as "no heartbeat".
#[test]
fn a_sub_millisecond_heartbeat_is_refused() {
    let nats = support::nats();
    let dir = temp();
    for heartbeat in ["500us", "999us"] {
        let mut cmd = switchboard(dir.path());
        cmd.args(["serve", "--heartbeat", heartbeat, "--listen", "127.0.0.1:0"])
            .args(["--jwt-secret", support::SECRET]);
        serve_args(&mut cmd, &dir.path().join("data"), &nats.url());
        expect_exit(serve(&mut cmd)).usage_error(&["heartbeat", "1ms"]);
    }
}

// ---------------------------------------------------------------------------
// projection
// ---------------------------------------------------------------------------

#[test]
fn projection_check_after_rebuild_matches_and_catches_a_tampered_snapshot() {
    let nats = support::nats();
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

#[test]
fn a_token_born_expired_is_refused() {
    let dir = temp();
    let sub = Id::new_v4().to_string();
    for ttl in ["0s", "0ms"] {
        let out = run(
            switchboard(dir.path()).args(["token", "--dev", "--sub", &sub, "--ttl", ttl]),
            None,
        );
        out.usage_error(&["--ttl", "minimum 1s"]);
        assert!(!out.stderr.contains("SWITCHBOARD_TTL"), "{}", out.stderr);
        assert!(out.stdout.is_empty());
    }
}
