//! `scripts/cluster.sh` (`just cluster`) as a developer runs it: with the
//! old fixed ports taken it still comes up (free ports), prints gateways
//! that answer and commands that work as printed, and Ctrl-C stops every
//! process it started.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::{drain, run, temp, Proc};
use switchboard_harness::PATIENCE;

/// The line the script prints last once everything is up.
const UP: &str = "Ctrl-C stops everything.";

#[test]
fn the_cluster_script_takes_free_ports_prints_working_commands_and_ctrl_c_stops_all() {
    // The ports it used to take by default, held (when they are free).
    let _held: Vec<TcpListener> = [14222, 14223, 14224, 8081, 8082]
        .iter()
        .filter_map(|&port| TcpListener::bind(("127.0.0.1", port)).ok())
        .collect();
    let dir = temp();
    let mut cmd = script(dir.path());
    cmd.env_remove("CLUSTER_PORT").env_remove("GATEWAY_PORT");
    let mut script_proc = Proc(cmd.spawn().expect("bash runs the script"));
    let stderr = drain(script_proc.0.stderr.take());
    let stdout = script_proc.0.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // Three servers and two gateways, each given up to a minute by the script.
    let deadline = Instant::now() + 3 * PATIENCE;
    let mut printed = Vec::new();
    while !printed.iter().any(|l: &String| l == UP) {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => printed.push(line),
            Err(_) => {
                let _ = Command::new("kill")
                    .args(["-TERM", &script_proc.0.id().to_string()])
                    .status();
                panic!(
                    "the script printed no `{UP}`; stdout:\n{}\nstderr:\n{}",
                    printed.join("\n"),
                    stderr.join().unwrap_or_default()
                );
            }
        }
    }
    let text = printed.join("\n");
    let after = |prefix: &str| -> Vec<String> {
        printed
            .iter()
            .filter_map(|l| l.strip_prefix(prefix).map(str::to_string))
            .collect()
    };

    // Both gateways are ready at the addresses printed.
    let gateways = after("gateway ");
    assert_eq!(gateways.len(), 2, "{text}");
    for gateway in &gateways {
        let http = gateway
            .split_whitespace()
            .find_map(|w| w.strip_prefix("http://"))
            .unwrap_or_else(|| panic!("no http:// address in `{gateway}`"));
        assert_eq!(get(http, "/readyz"), Some(200), "{http}/readyz: {text}");
        assert!(
            text.contains(&format!("http://{http}/console")),
            "the console of {http} is printed: {text}"
        );
        assert!(
            !http.ends_with(":8081") && !http.ends_with(":8082"),
            "{text}"
        );
    }
    assert!(
        !text.contains(":14222"),
        "the taken port is not used: {text}"
    );

    // The printed commands work as printed: publish an event, and follow
    // it with the printed tail command (from the start, one event).
    let publish = after("publish (another terminal): ");
    let publish = publish.first().unwrap_or_else(|| panic!("{text}"));
    let (words, data) = publish
        .split_once(" --data '")
        .unwrap_or_else(|| panic!("no --data in `{publish}`"));
    let data = data.strip_suffix('\'').expect("quoted data");
    let words: Vec<&str> = words.split_whitespace().collect();
    let published = run(
        Command::new(words[0])
            .args(&words[1..])
            .arg("--data")
            .arg(data),
        None,
    )
    .ok();
    assert_eq!(published.lines()[0]["seq"], 1, "{}", published.stdout);
    let follow = after("follow (another terminal): ");
    let follow = follow.first().unwrap_or_else(|| panic!("{text}"));
    let words: Vec<&str> = follow.split_whitespace().collect();
    assert!(words.contains(&"--token"), "{follow}");
    let followed = run(
        Command::new(words[0])
            .args(&words[1..])
            .args(["--since-seq", "0", "--max-events", "1"]),
        None,
    )
    .ok();
    assert!(
        followed.stdout.contains(r#""channel_name":"general""#),
        "the tail command's token is accepted and the event printed:\n{}\n{}",
        followed.stdout,
        followed.stderr
    );

    // Ctrl-C (SIGINT to the script): everything stops, nothing is left.
    let pid = script_proc.0.id();
    let _ = Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status();
    let deadline = Instant::now() + PATIENCE;
    let status = loop {
        if let Some(status) = script_proc.0.try_wait().expect("try_wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the script did not stop after SIGINT"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let rest: Vec<String> = rx.try_iter().collect();
    assert!(status.success(), "{status}: {}", rest.join("\n"));
    assert!(rest.iter().any(|l| l == "stopped"), "{}", rest.join("\n"));
    let deadline = Instant::now() + PATIENCE;
    while group_alive(pid) {
        assert!(
            Instant::now() < deadline,
            "processes of the script's group still run after it stopped"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_server_that_cannot_start_is_named_with_the_end_of_its_log() {
    // CLUSTER_PORT is honoured: its first port, taken, stops n0.
    let taken = TcpListener::bind("127.0.0.1:0").expect("a free port");
    let port = taken.local_addr().expect("addr").port();
    let dir = temp();
    let mut cmd = script(dir.path());
    cmd.env("CLUSTER_PORT", port.to_string());
    let out = run(&mut cmd, None);
    assert_eq!(out.code(), Some(1), "{}\n{}", out.stdout, out.stderr);
    for words in [
        "cluster: n0 exited; the last lines of ",
        &format!("127.0.0.1:{port}"),
        "address already in use",
    ] {
        assert!(out.stderr.contains(words), "`{words}` in:\n{}", out.stderr);
    }
    assert!(out.stdout.contains("stopped"), "{}", out.stdout);
}

/// `bash scripts/cluster.sh` in `dir` (its cluster under `dir/cluster`)
/// on the test's binary, with nats-server on its PATH and no
/// `SWITCHBOARD_*` from the test's environment, in a process group of its
/// own (what it starts is in it; `Proc` kills the whole group).
fn script(dir: &Path) -> Command {
    let nats_server = switchboard::local_nats::find_binary().expect("nats-server (just tools)");
    let path = std::env::join_paths(
        nats_server
            .parent()
            .map(Path::to_path_buf)
            .into_iter()
            .chain(std::env::split_paths(
                &std::env::var_os("PATH").unwrap_or_default(),
            )),
    )
    .expect("a PATH");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/cluster.sh");
    let mut cmd = Command::new("bash");
    cmd.arg(&script)
        .current_dir(dir)
        .env("PATH", path)
        .env("SWITCHBOARD_BIN", env!("CARGO_BIN_EXE_switchboard"))
        .env("CLUSTER_DIR", dir.join("cluster"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("SWITCHBOARD_") {
            cmd.env_remove(key);
        }
    }
    switchboard_harness::own_process_group(&mut cmd);
    cmd
}

/// Whether any process of process group `pgid` is alive.
fn group_alive(pgid: u32) -> bool {
    Command::new("kill")
        .args(["-0", "--", &format!("-{pgid}")])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The status of a GET of `path` at `addr`, if it answers.
fn get(addr: &str, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(PATIENCE)).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    text.split_whitespace().nth(1)?.parse().ok()
}
