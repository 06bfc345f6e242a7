//! The README's shell examples, run as written: every ```sh block but the
//! install, `./x` and `just` ones, in order, as one bash script, against a real
//! `switchboard serve --dev` started the way `just run` starts it (no NATS
//! URL, so it runs its own nats-server under `./data`). Only the address
//! differs: the examples say `127.0.0.1:8080`, the test listens on a free
//! port, and `./target/release/switchboard` is the binary under test.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use serde_json::Value;
use switchboard_harness::PATIENCE;

/// The README's ```sh blocks, each as its lines.
fn sh_blocks(readme: &str) -> Vec<Vec<String>> {
    let mut blocks = Vec::new();
    let mut current: Option<Vec<String>> = None;
    for line in readme.lines() {
        match (&mut current, line.trim_end()) {
            (None, "```sh") => current = Some(Vec::new()),
            (Some(_), "```") => blocks.extend(current.take()),
            (Some(block), line) => block.push(line.to_string()),
            (None, _) => {}
        }
    }
    blocks
}

/// Installation, `./x` and `just` recipes are for a person at a terminal:
/// `./x run` serves until stopped, `./x test` is this suite. npm's blocks
/// install the client in an app, which the client's own
/// `test/package.test.mjs` does for real.
fn runnable(block: &[String]) -> bool {
    !block.iter().any(|line| {
        let line = line.trim_start();
        line.starts_with("./x ")
            || line.starts_with("just ")
            || line.starts_with("pip ")
            || line.starts_with("bash scripts/")
            || line.contains("npm ")
    })
}

/// `serve` and the nats-server it starts, killed together when dropped.
struct Serve(std::process::Child);

impl Drop for Serve {
    fn drop(&mut self) {
        switchboard_harness::kill_group(&mut self.0);
    }
}

#[test]
fn the_readme_shell_examples_run_as_written() {
    assert!(
        Command::new("curl").arg("--version").output().is_ok(),
        "the README's HTTP examples need curl: install it (.ci/run does)"
    );
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let blocks: Vec<_> = sh_blocks(&readme)
        .into_iter()
        .filter(|b| runnable(b))
        .collect();
    assert!(
        blocks.len() >= 3,
        "the README has its publish, HTTP and tail examples: {blocks:?}"
    );

    let dir = tempfile::tempdir().expect("temp dir");
    let bin = env!("CARGO_BIN_EXE_switchboard");
    let mut serve = Command::new(bin);
    serve
        .args(["serve", "--dev", "--listen", "127.0.0.1:0"])
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    switchboard_harness::own_process_group(&mut serve);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("SWITCHBOARD_") {
            serve.env_remove(key);
        }
    }
    let mut serve = Serve(serve.spawn().expect("serve starts"));
    let stdout = serve.0.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(addr) = line.strip_prefix(switchboard::server::LISTENING) {
                let _ = tx.send(addr.trim().to_string());
            }
        }
    });
    let addr = rx.recv_timeout(PATIENCE).expect("serve listens");

    let script = blocks
        .iter()
        .map(|block| block.join("\n"))
        .collect::<Vec<_>>()
        .join("\n")
        .replace("sb=./target/release/switchboard", &format!("sb={bin}"))
        .replace("127.0.0.1:8080", &addr);
    let mut bash = Command::new("bash");
    bash.args(["-euo", "pipefail", "-c", &script])
        .current_dir(dir.path())
        .env("SWITCHBOARD_URL", format!("ws://{addr}"));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("SWITCHBOARD_") {
            bash.env_remove(key);
        }
    }
    bash.env("SWITCHBOARD_URL", format!("ws://{addr}"));
    let out = bash.output().expect("bash runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the README's examples failed:\n{script}\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );
    // What the examples say they print: JSON lines (the publish receipts,
    // the replays, history, and the frames `tail` prints).
    // (`curl` prints a reply without a final newline: JSON values are read
    // one after the other, whatever separates them.)
    let lines: Vec<Value> = stdout
        .lines()
        .filter(|l| l.starts_with('{'))
        .flat_map(|l| serde_json::Deserializer::from_str(l).into_iter::<Value>())
        .map(|v| v.unwrap_or_else(|e| panic!("{e}:\n{stdout}")))
        .collect();
    let published: Vec<u64> = lines
        .iter()
        .filter(|v| v.get("id").is_some() && v.get("type").is_none() && v.get("seq").is_some())
        .filter_map(|v| v["seq"].as_u64())
        .collect();
    assert_eq!(published, vec![1, 2], "two events published:\n{stdout}");
    let types: Vec<&str> = lines.iter().filter_map(|v| v["type"].as_str()).collect();
    for expected in ["hello", "subscribed", "channel_created"] {
        assert!(types.contains(&expected), "`{expected}` printed:\n{stdout}");
    }
    drop(serve);
}
