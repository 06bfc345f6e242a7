//! The `switchboard` binary as users run it, against a real nats-server:
//! `publish` (flags and stdin), `replay` (NDJSON, summary, ranges), `token`,
//! `projection rebuild`/`check`, and the settings rules of `serve` (refusals
//! that name the setting, config file keys, flag-over-file precedence),
//! the tools after `serve` is gone (the data directory's own nats-server),
//! and `scripts/cluster.sh` (`just cluster`).
//! Every process a test starts is killed when the test ends, also on panic.
//!
//! This file holds what the modules share (running the binary,
//! helpers); each module covers one concept.

mod cluster_script;
mod data_dir;
mod nats_url;
mod publish;
mod recorded_nats;
mod replay;
mod settings;
mod token;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use switchboard::channel::Id;
use switchboard::log::{Log, StreamSettings};
use switchboard_harness::PATIENCE;

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
        switchboard_harness::kill_group(&mut self.0);
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
    switchboard_harness::own_process_group(&mut cmd);
    cmd
}

/// The harness (a library, which cannot use `env!("CARGO_BIN_EXE_…")`)
/// finds the binary beside the test executable: the one cargo built.
#[test]
fn the_harness_runs_the_binary_cargo_built_for_the_tests() {
    let canonical = |p: &Path| p.canonicalize().expect("the binary exists");
    assert_eq!(
        canonical(&switchboard_harness::binary()),
        canonical(Path::new(env!("CARGO_BIN_EXE_switchboard")))
    );
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
