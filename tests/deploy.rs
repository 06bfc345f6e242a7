//! The operator's kit (`deploy/`, docs/deploy.md): the alert rules pass
//! `promtool` and their unit tests; every series the dashboard's queries
//! and the rules' expressions name is one a real gateway exports; the
//! metrics address (`metrics_listen`) takes `/metrics` off the main
//! address and keeps health on both; `log_format = json` writes one JSON
//! object per stderr line; and a stream's store copied while its
//! nats-server was stopped comes back with its epoch and its events (the
//! backup docs/deploy.md describes). Real nats-server, real binary.
//!
//! promtool comes from `scripts/promtool.sh` (Debian's `prometheus`
//! package, installed when missing and possible).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};
use switchboard::channel::{Channel, Id};
use switchboard::log::StreamSettings;
use switchboard::token::{Grant, Role};
use switchboard_harness::*;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// promtool's path, from `scripts/promtool.sh` (which installs it when it
/// can, and says how otherwise).
fn promtool() -> PathBuf {
    let out = Command::new("bash")
        .arg(repo().join("scripts/promtool.sh"))
        .output()
        .expect("bash runs scripts/promtool.sh");
    assert!(
        out.status.success(),
        "no promtool: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// Runs promtool with `args` in `deploy/`; its output.
fn run_promtool(promtool: &Path, args: &[&str]) -> String {
    let out = Command::new(promtool)
        .args(args)
        .current_dir(repo().join("deploy"))
        .output()
        .expect("promtool runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

/// The alert rule files of `deploy/`.
fn rule_files() -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(repo().join("deploy"))
        .expect("deploy/ is readable")
        .filter_map(|entry| entry.ok())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".rules.yml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "deploy/ has no *.rules.yml");
    files
}

#[test]
fn the_alert_rules_pass_promtool_and_their_unit_tests() {
    let promtool = promtool();
    let files = rule_files();
    let mut args = vec!["check", "rules"];
    args.extend(files.iter().map(String::as_str));
    let checked = run_promtool(&promtool, &args);
    assert!(checked.contains("SUCCESS"), "{checked}");
    let tested = run_promtool(&promtool, &["test", "rules", "switchboard.rules.test.yml"]);
    assert!(tested.contains("SUCCESS"), "{tested}");
}

/// Every PromQL expression of the rule files.
fn rule_expressions() -> Vec<String> {
    let mut exprs = Vec::new();
    for file in rule_files() {
        let text = std::fs::read_to_string(repo().join("deploy").join(&file)).expect("readable");
        let rules: Value = serde_norway::from_str(&text).expect("the rules are YAML");
        for group in rules["groups"].as_array().expect("groups") {
            for rule in group["rules"].as_array().expect("rules") {
                let expr = rule["expr"].as_str().expect("each rule has an expr");
                exprs.push(expr.to_string());
            }
        }
    }
    exprs
}

/// Every query of the dashboard: its panels' targets and its variables'.
fn dashboard_expressions() -> Vec<String> {
    let path = repo().join("deploy/switchboard.dashboard.json");
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("readable")).expect("JSON");
    fn walk(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                for (key, value) in map {
                    match (key.as_str(), value) {
                        ("expr" | "definition", Value::String(query)) => out.push(query.clone()),
                        _ => walk(value, out),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|item| walk(item, out)),
            _ => {}
        }
    }
    let mut exprs = Vec::new();
    walk(&dashboard, &mut exprs);
    exprs
}

/// The `switchboard_*` series an expression names.
fn series_named(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = expr;
    while let Some(at) = rest.find("switchboard_") {
        let name: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
            .collect();
        rest = &rest[at + name.len()..];
        names.insert(name);
    }
    names
}

/// The series of a scrape: every sample's name (histograms give theirs
/// with `_bucket`, `_sum` and `_count`), and every `# TYPE` line's.
fn series_exported(scrape: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in scrape.lines() {
        let name = match line.strip_prefix("# TYPE ") {
            Some(typed) => typed.split_whitespace().next(),
            None if line.starts_with('#') => None,
            None => line.split(['{', ' ']).next(),
        };
        if let Some(name) = name.filter(|n| !n.is_empty()) {
            names.insert(name.to_string());
        }
    }
    names
}

/// A chat message event, as `POST /v1/events` takes it, of about the size
/// a chat sends (a sentence of text).
fn chat_message(channel: Id, n: usize) -> Value {
    json!({"type": "channel_message", "data": {
        "channel_id": channel.to_string(),
        "message_id": Id::new_v4().to_string(),
        "user_id": Id::new_v4().to_string(),
        "username": "ada",
        "content": format!("message {n}: see you at the standup in ten minutes, bring the notes"),
    }})
}

/// Publishes `count` chat messages to `channel` through the HTTP API.
async fn publish_messages(gateway: &Gateway, channel: Id, count: usize) {
    let publisher = token(Id::new_v4(), Grant::None, &[Role::Publisher]);
    for n in 0..count {
        let response = http()
            .post(gateway.http("/v1/events"))
            .bearer_auth(&publisher)
            .json(&chat_message(channel, n))
            .send()
            .await
            .expect("publish");
        assert_eq!(response.status(), 200, "{:?}", response.text().await);
    }
}

#[tokio::test]
async fn the_dashboard_and_the_alerts_name_series_the_gateway_exports() {
    let nats = nats();
    // With a JWKS, so that its series exist too.
    let jwks = JwksServer::start(vec![
        TestKey::Ec256.jwk(jsonwebtoken::Algorithm::ES256, "deploy")
    ]);
    let gateway = Serve::new(&nats.url())
        .args(&[
            "--metrics-listen",
            "127.0.0.1:0",
            "--jwks-url",
            &jwks.jwks_url(),
        ])
        .start();
    let metrics_addr = gateway
        .metrics_addr
        .expect("the metrics address is printed");

    // Some traffic: a subscriber, publishes delivered live, a replay.
    let channel = Id::new_v4();
    let user = Id::new_v4();
    let mut client = Client::connect(&gateway, &token(user, Grant::All, &[])).await;
    client.subscribe(Channel::Chat(channel)).await;
    publish_messages(&gateway, channel, 200).await;
    let live = client.events(200).await;
    assert_eq!(live.len(), 200);
    let mut late = Client::connect(&gateway, &token(user, Grant::All, &[])).await;
    let (_, replayed, _) = late.subscribe_since(Channel::Chat(channel), json!(0)).await;
    assert_eq!(replayed.len(), 200);
    // The delivery histogram's samples are folded every 5 s.
    wait_until("delivery latency samples in the scrape", || async {
        prometheus_sum(
            &gateway.metrics().await,
            "switchboard_delivery_latency_seconds_count",
        )
        .is_some_and(|n| n > 0.0)
    })
    .await;

    let scrape = http()
        .get(format!("http://{metrics_addr}/metrics"))
        .send()
        .await
        .expect("scrape")
        .text()
        .await
        .expect("scrape text");
    let exported = series_exported(&scrape);
    for (what, exprs) in [
        ("deploy/switchboard.dashboard.json", dashboard_expressions()),
        ("deploy/*.rules.yml", rule_expressions()),
    ] {
        assert!(!exprs.is_empty(), "{what} has no queries");
        let named: BTreeSet<String> = exprs.iter().flat_map(|e| series_named(e)).collect();
        assert!(named.len() >= 10, "{what} names only {named:?}");
        let missing: Vec<&String> = named.difference(&exported).collect();
        assert!(
            missing.is_empty(),
            "{what} names series the gateway does not export: {missing:?}\nexported: {exported:?}"
        );
    }

    // The figure docs/deploy.md sizes disks with: the stream's bytes per
    // stored event, as JetStream counts them (its store adds its own
    // overhead per message on disk).
    let js = async_nats::jetstream::new(
        async_nats::connect(nats.url())
            .await
            .expect("NATS connects"),
    );
    let mut stream = js
        .get_stream(StreamSettings::default().name)
        .await
        .expect("the stream");
    let state = stream.info().await.expect("stream info").state.clone();
    assert_eq!(state.messages, 200);
    eprintln!(
        "stored chat messages: {} bytes for {} events, {} bytes each",
        state.bytes,
        state.messages,
        state.bytes / state.messages
    );
}

#[tokio::test]
async fn the_metrics_address_takes_metrics_off_the_main_one_and_keeps_health_on_both() {
    let nats = nats();
    let gateway = Gateway::start_with(&nats, &["--metrics-listen", "127.0.0.1:0"]);
    let metrics_addr = gateway
        .metrics_addr
        .expect("the metrics address is printed");
    assert_ne!(metrics_addr, gateway.addr);
    let status = |url: String| async move {
        http()
            .get(url)
            .send()
            .await
            .expect("an answer")
            .status()
            .as_u16()
    };
    let on_metrics = |path: &str| format!("http://{metrics_addr}{path}");

    let scrape = http()
        .get(on_metrics("/metrics"))
        .send()
        .await
        .expect("scrape");
    assert_eq!(scrape.status(), 200);
    assert!(scrape
        .text()
        .await
        .expect("text")
        .contains("switchboard_connections "));
    let head = http()
        .head(on_metrics("/metrics"))
        .send()
        .await
        .expect("HEAD");
    assert_eq!(head.status(), 200);
    assert_eq!(status(gateway.http("/metrics")).await, 404);
    assert_eq!(
        status(gateway.http("/metrics")).await,
        404,
        "twice: no state"
    );
    for path in ["/healthz", "/readyz"] {
        assert_eq!(
            status(gateway.http(path)).await,
            200,
            "{path} on the main address"
        );
        assert_eq!(
            status(on_metrics(path)).await,
            200,
            "{path} on the metrics address"
        );
    }
    // Nothing else on the metrics address: no API, no WebSocket.
    for path in ["/v1/ws", "/v1/events", "/console", "/"] {
        let response = http().get(on_metrics(path)).send().await.expect("answer");
        assert_eq!(response.status(), 404, "{path}");
        let body = response.text().await.expect("body");
        assert!(body.contains("GET /metrics"), "{path}: {body}");
    }
    // The API still works on the main address.
    let mut client = Client::connect(&gateway, &token(Id::new_v4(), Grant::All, &[])).await;
    client.subscribe(Channel::Global).await;
    wait_until("the connection on the metrics address", || async {
        gateway.metric("switchboard_connections ").await == 1.0
    })
    .await;
}

#[test]
fn the_metrics_address_may_not_be_the_main_one() {
    let out = Command::new(binary())
        .args([
            "serve",
            "--dev",
            "--listen",
            "127.0.0.1:18080",
            "--metrics-listen",
            "127.0.0.1:18080",
        ])
        .env_remove("SWITCHBOARD_CONFIG")
        .output()
        .expect("switchboard runs");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--metrics-listen") && stderr.contains("SWITCHBOARD_METRICS_LISTEN"),
        "{stderr}"
    );
}

#[tokio::test]
async fn json_logs_are_one_object_per_line() {
    let nats = nats();
    let mut gateway = Gateway::start_with(&nats, &["--log-format", "json"]);
    // A connection, then a clean stop: the start, the connection's and the
    // shutdown's records, with fields.
    let mut client = Client::connect(&gateway, &token(Id::new_v4(), Grant::All, &[])).await;
    client.subscribe(Channel::Global).await;
    client.close().await;
    assert!(gateway.terminate().success());
    let log = gateway.log_text();
    let records: Vec<Value> = log
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect();
    assert!(records.len() >= 5, "{log}");
    for record in &records {
        for key in ["timestamp", "level", "target"] {
            assert!(record[key].is_string(), "no `{key}`: {record}");
        }
    }
    // The record's fields are keys of their own, beside the message.
    let listening = records
        .iter()
        .find(|r| r["message"] == "listening")
        .unwrap_or_else(|| panic!("no `listening` record in {log}"));
    assert_eq!(listening["level"], "INFO");
    assert_eq!(listening["addr"], gateway.addr.to_string());
    assert!(records.iter().any(|r| r["message"] == "stopped"), "{log}");
}

/// The bytes of the files under `dir`.
fn bytes_under(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|entry| entry.ok())
                .map(|entry| match entry.file_type() {
                    Ok(t) if t.is_dir() => bytes_under(&entry.path()),
                    _ => entry.metadata().map(|m| m.len()).unwrap_or(0),
                })
                .sum()
        })
        .unwrap_or(0)
}

/// The backup of docs/deploy.md ("Backup and restore"): stop the
/// nats-server, copy its store directory, start a server on the copy. The
/// stream comes back whole, with the same epoch: its creation time is in
/// the store, so clients' seqs and epochs stay valid.
#[tokio::test]
async fn a_store_copied_while_its_server_was_stopped_restores_the_stream_and_its_epoch() {
    let temp = tempfile::tempdir().expect("temp dir");
    let store = temp.path().join("store");
    let mut server = switchboard::local_nats::NatsServer::start(&store).expect("nats-server");
    let channel = Id::new_v4();
    let user = Id::new_v4();
    let (epoch, before) = {
        let mut gateway = Gateway::start_on(&server.url(), &[]);
        publish_messages(&gateway, channel, 200).await;
        let mut client = Client::connect(&gateway, &token(user, Grant::All, &[])).await;
        let (_, events, _) = client
            .subscribe_since(Channel::Chat(channel), json!(0))
            .await;
        assert!(gateway.terminate().success());
        (client.hello["data"]["epoch"].clone(), events)
    };
    assert_eq!(before.len(), 200);
    assert!(epoch.is_string(), "hello has the epoch");
    server.terminate().await;
    let stream_dir = store.join("jetstream/$G/streams/CHAT_EVENTS");
    eprintln!(
        "stream store on disk: {} bytes for 200 chat messages, {} each",
        bytes_under(&stream_dir),
        bytes_under(&stream_dir) / 200
    );

    let copy = temp.path().join("restored");
    let copied = Command::new("cp")
        .arg("-a")
        .arg(&store)
        .arg(&copy)
        .status()
        .expect("cp runs");
    assert!(copied.success());
    drop(server);
    let restored = switchboard::local_nats::NatsServer::start(&copy).expect("nats-server");
    let gateway = Gateway::start_on(&restored.url(), &[]);
    let mut client = Client::connect(&gateway, &token(user, Grant::All, &[])).await;
    assert_eq!(client.hello["data"]["epoch"], epoch, "the same epoch");
    let (subscribed, after, _) = client
        .subscribe_since(Channel::Chat(channel), json!(0))
        .await;
    assert_eq!(subscribed["data"]["complete"], true, "{subscribed}");
    let ids = |events: &[Value]| -> Vec<(Value, Value)> {
        events
            .iter()
            .map(|e| (e["seq"].clone(), e["id"].clone()))
            .collect()
    };
    assert_eq!(
        ids(&after),
        ids(&before),
        "the same events at the same seqs"
    );
}

/// The unit passes `systemd-analyze verify` (with its binary at the path
/// this build has); skipped, saying so, where systemd's tools are missing.
#[test]
fn the_systemd_unit_verifies() {
    let Ok(version) = Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!("skipped: no systemd-analyze on this machine");
        return;
    };
    assert!(version.status.success());
    let unit = std::fs::read_to_string(repo().join("deploy/switchboard.service")).expect("unit");
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("switchboard.service");
    let binary = binary();
    std::fs::write(
        &path,
        unit.replace(
            "/usr/local/bin/switchboard",
            binary.to_str().expect("a UTF-8 path"),
        ),
    )
    .expect("written");
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze runs");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{said}");
    assert!(said.trim().is_empty(), "warnings: {said}");
}

#[test]
fn a_log_format_that_is_not_text_or_json_is_refused() {
    let out = Command::new(binary())
        .args(["serve", "--dev"])
        .env("SWITCHBOARD_LOG_FORMAT", "yaml")
        .env_remove("SWITCHBOARD_CONFIG")
        .output()
        .expect("switchboard runs");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("SWITCHBOARD_LOG_FORMAT") && stderr.contains("text or json"),
        "{stderr}"
    );
}
