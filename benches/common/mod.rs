//! What every bench shares: the mode (smoke or full), a nats-server, the
//! real gateway binary, tokens, WebSocket clients, events, and the figures
//! (rates, percentiles, resident memory).
#![allow(dead_code)]

pub mod delivery;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::{SinkExt, StreamExt};
use switchboard::channel::{Channel, Id};
use switchboard::event::{ChannelMessage, Event, EventData};
use switchboard::local_nats::NatsServer;
use switchboard::log::{Log, StreamSettings};
use switchboard::token::{dev_claims, Grant, TokenKeys};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

pub const SECRET: &str = "switchboard-bench-secret";

/// How long any single wait in a bench may take before it is a failure.
pub const PATIENCE: Duration = Duration::from_secs(120);

/// Acks kept in flight by the benches' publishers.
pub const IN_FLIGHT: usize = 256;

/// `cargo bench` passes `--bench`; `cargo test --all-targets` runs the same
/// `main` without it, and then only a quick smoke version runs.
pub fn full() -> bool {
    std::env::args().any(|a| a == "--bench")
}

pub fn mode() -> &'static str {
    if full() {
        "full"
    } else {
        "smoke"
    }
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

pub fn nats() -> NatsServer {
    NatsServer::start_temp().expect("nats-server starts (run `just tools`)")
}

pub async fn log(nats: &NatsServer) -> Log {
    Log::connect(&nats.url(), StreamSettings::default())
        .await
        .expect("log connects")
}

/// Wall-clock nanoseconds: publishers stamp events with it and clients
/// subtract it from their receive time (same machine, same clock).
pub fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos() as u64
}

/// The gateway binary (`serve`), as users run it, in its own process.
pub struct Gateway {
    child: Child,
    pub addr: SocketAddr,
    _data: tempfile::TempDir,
}

impl Gateway {
    pub fn start(nats_url: &str) -> Gateway {
        Gateway::start_logging(nats_url, "warn")
    }

    /// A gateway whose log (`log_path`) keeps what `filter` lets through.
    pub fn start_logging(nats_url: &str, filter: &str) -> Gateway {
        Gateway::start_with(nats_url, filter, &[])
    }

    /// The gateway's log file.
    pub fn log_path(&self) -> std::path::PathBuf {
        self._data.path().join("gateway.log")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn ws_url(&self, token: &str) -> String {
        format!("ws://{}/v1/ws?token={token}", self.addr)
    }

    /// The process's resident set (VmRSS), in bytes.
    pub fn rss_bytes(&self) -> u64 {
        vm_rss(self.pid())
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// VmRSS of a process from /proc, in bytes (0 when unreadable).
pub fn vm_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// CPU time (user + system) a process has used, in seconds (0 when gone).
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the `(comm)`: state is the 1st, utime the 12th, stime the 13th.
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (ticks(11) + ticks(12)) as f64 / 100.0
}

/// This process's nats-server children, oldest first, with whether each
/// was started with a configuration file (`-c`).
pub fn nats_children() -> Vec<(u32, bool)> {
    let me = std::process::id().to_string();
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let parent = stat
            .rsplit(')')
            .next()
            .and_then(|rest| rest.split_whitespace().nth(1));
        if stat.contains("(nats-server)") && parent == Some(me.as_str()) {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let with_config = cmdline.split(|b| *b == 0).any(|arg| arg == b"-c");
            out.push((pid, with_config));
        }
    }
    out.sort_unstable();
    out
}

/// The first nats-server this process started without a configuration file.
pub fn nats_pid() -> u32 {
    nats_children()
        .into_iter()
        .find(|(_, with_config)| !with_config)
        .map_or(0, |(pid, _)| pid)
}

/// CPU used by named processes over a stretch of wall time: shows which
/// process a figure was bound by (2 cores: 2 s of CPU per wall second).
pub struct CpuMeter {
    procs: Vec<(&'static str, u32, f64)>,
    started: std::time::Instant,
}

impl CpuMeter {
    /// Starts measuring the given processes and this one (`bench`).
    pub fn start(procs: &[(&'static str, u32)]) -> CpuMeter {
        let mut all: Vec<(&'static str, u32)> = procs.to_vec();
        all.push(("bench", std::process::id()));
        CpuMeter {
            procs: all
                .into_iter()
                .map(|(name, pid)| (name, pid, cpu_seconds(pid)))
                .collect(),
            started: std::time::Instant::now(),
        }
    }

    fn used(&self) -> Vec<(&'static str, f64)> {
        self.procs
            .iter()
            .map(|(name, pid, at)| (*name, (cpu_seconds(*pid) - at).max(0.0)))
            .collect()
    }

    /// `cpu: gateway 0.41 s, nats-server 0.12 s, bench 0.30 s in 0.42 s`.
    pub fn line(&self) -> String {
        let parts: Vec<String> = self
            .used()
            .iter()
            .map(|(name, s)| format!("{name} {s:.2} s"))
            .collect();
        format!(
            "cpu: {} in {:.2} s wall",
            parts.join(", "),
            self.started.elapsed().as_secs_f64()
        )
    }

    pub fn json(&self) -> serde_json::Value {
        let mut out = serde_json::Map::new();
        for (name, s) in self.used() {
            out.insert(format!("{name}_cpu_s"), round3(s).into());
        }
        out.insert(
            "wall_s".into(),
            round3(self.started.elapsed().as_secs_f64()).into(),
        );
        serde_json::Value::Object(out)
    }
}

/// A token for `user` with the given grant, valid for a day.
pub fn token(user: Id, channels: Grant) -> String {
    let claims = dev_claims(user, Duration::from_secs(86_400), None, channels, vec![]);
    TokenKeys::hs256(SECRET.as_bytes())
        .mint(&claims)
        .expect("mint")
}

/// A `channel_message` in `channel` whose `content` is `content`.
pub fn message(channel: Id, content: String) -> Event {
    Event::new(EventData::ChannelMessage(ChannelMessage {
        channel_id: channel,
        message_id: Id::new_v4(),
        user_id: Id::new_v4(),
        username: Some("bench".into()),
        content,
    }))
}

/// Stores `n` messages in `channel` with [`IN_FLIGHT`] acks in flight; the
/// content of each is the nanosecond time its publish started. Returns the
/// last sequence stored.
pub async fn store_messages(log: &Log, channel: Id, n: usize) -> u64 {
    store_spread(log, &[channel], n).await
}

/// [`store_messages`] round-robin over `channels` (message `i` to
/// `channels[i % len]`).
pub async fn store_spread(log: &Log, channels: &[Id], n: usize) -> u64 {
    let seqs = futures::stream::iter(0..n)
        .map(|i| {
            let event = message(channels[i % channels.len()], now_nanos().to_string());
            async move { log.store(&event).await.expect("store").seq }
        })
        .buffer_unordered(IN_FLIGHT)
        .collect::<Vec<u64>>()
        .await;
    seqs.into_iter().max().unwrap_or(0)
}

pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens a WebSocket with the given read buffer size.
pub async fn connect(url: &str, read_buffer: usize) -> Ws {
    let config = WebSocketConfig::default().read_buffer_size(read_buffer);
    let (ws, _) = tokio::time::timeout(
        PATIENCE,
        tokio_tungstenite::connect_async_with_config(url, Some(config), false),
    )
    .await
    .expect("connect in time")
    .expect("upgrade accepted");
    ws
}

/// The next text frame (pings, pongs and binary frames are skipped).
pub async fn next_text(ws: &mut Ws) -> String {
    loop {
        let message = tokio::time::timeout(PATIENCE, ws.next())
            .await
            .expect("a frame in time")
            .expect("socket open")
            .expect("socket ok");
        if let Message::Text(text) = message {
            return text.to_string();
        }
    }
}

/// A deadline for a whole read loop: registered once, cheap to poll per
/// frame (a timeout per frame would cost a timer each).
pub fn deadline() -> std::pin::Pin<Box<tokio::time::Sleep>> {
    Box::pin(tokio::time::sleep(PATIENCE))
}

/// The next message before the deadline; `None` when the socket ended,
/// failed or the deadline passed.
pub async fn next_before(
    ws: &mut Ws,
    deadline: &mut std::pin::Pin<Box<tokio::time::Sleep>>,
) -> Option<Message> {
    tokio::select! {
        biased;
        message = ws.next() => message.and_then(Result::ok),
        _ = deadline.as_mut() => None,
    }
}

/// The `type` of a control frame, or `None` for an event (it has a `seq`).
pub fn control_type(frame: &str) -> Option<String> {
    if frame.contains("\"seq\":") {
        return None;
    }
    let value: serde_json::Value = serde_json::from_str(frame).ok()?;
    value["type"].as_str().map(str::to_string)
}

/// Connects to the gateway and reads `hello`.
pub async fn connect_gateway(url: &str, read_buffer: usize) -> Ws {
    let mut ws = connect(url, read_buffer).await;
    let hello = next_text(&mut ws).await;
    assert_eq!(control_type(&hello).as_deref(), Some("hello"), "{hello}");
    ws
}

/// Sends `subscribe` (with `since_seq` when given).
pub async fn send_subscribe(ws: &mut Ws, channel: Channel, since_seq: Option<u64>) {
    let mut frame = serde_json::json!({"type": "subscribe", "channel": channel.to_string()});
    if let Some(seq) = since_seq {
        frame["since_seq"] = seq.into();
    }
    ws.send(Message::Text(frame.to_string().into()))
        .await
        .expect("send subscribe");
}

/// Subscribes without replay and waits for `subscribed`.
pub async fn subscribe_live(ws: &mut Ws, channel: Channel) {
    subscribe_all(ws, &[channel]).await;
}

/// Sends a `subscribe` without replay for each channel, then waits for as
/// many `subscribed`.
pub async fn subscribe_all(ws: &mut Ws, channels: &[Channel]) {
    for &channel in channels {
        send_subscribe(ws, channel, None).await;
    }
    let mut subscribed = 0;
    while subscribed < channels.len() {
        let frame = next_text(ws).await;
        match control_type(&frame).as_deref() {
            Some("subscribed") => subscribed += 1,
            Some("error") => panic!("subscribe refused: {frame}"),
            _ => {}
        }
    }
}

/// The `p`-th percentile (0..=100, nearest rank) of sorted samples.
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub fn ms(nanos: u64) -> f64 {
    nanos as f64 / 1e6
}

/// Events per second.
pub fn rate(events: u64, elapsed: Duration) -> f64 {
    events as f64 / elapsed.as_secs_f64().max(1e-9)
}

/// `12345678.9` → `12,345,679`.
pub fn thousands(x: f64) -> String {
    let n = x.round() as u64;
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Rounds for the JSON line.
pub fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Says whether a figure meets its target, in a full run. A smoke run's
/// sizes say nothing about a target, so it prints nothing.
pub fn verdict(what: &str, met: bool, target: &str) {
    if full() {
        let word = if met { "meets" } else { "MISSES" };
        println!("  verdict: {what} {word} the target ({target})");
    }
}

/// `" (target …)"` after a figure in a full run; nothing in a smoke run,
/// whose sizes say nothing about the target.
pub fn target_note(target: &str) -> String {
    if full() {
        format!(" (target {target})")
    } else {
        String::new()
    }
}

/// The last line every bench prints: all its figures, machine-readable.
pub fn print_json(bench: &str, figures: serde_json::Value) {
    let mut line = serde_json::json!({"bench": bench, "mode": mode()});
    if let (Some(out), serde_json::Value::Object(figures)) = (line.as_object_mut(), figures) {
        out.extend(figures);
    }
    println!("{line}");
}

/// Stores `n` events made by `make`, paced to `pace` events/s (in 1 ms
/// steps); each is made just before it is stored (so a time it carries is
/// its publish time).
pub async fn store_paced(log: &Log, n: usize, pace: f64, make: impl Fn() -> Event) {
    let started = std::time::Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut in_flight = futures::stream::FuturesUnordered::new();
    let mut sent = 0;
    while sent < n || !in_flight.is_empty() {
        let due = ((started.elapsed().as_secs_f64() * pace) as usize + 1).min(n);
        while sent < due {
            let event = make();
            in_flight.push(async move { log.store(&event).await.expect("store") });
            sent += 1;
        }
        tokio::select! {
            Some(_) = in_flight.next(), if !in_flight.is_empty() => {}
            _ = tick.tick(), if sent < n => {}
        }
    }
}

// ------------------------------------------------- several gateways, storms

impl Gateway {
    /// A gateway with extra `serve` arguments (`--session-store kv`, ...)
    /// and the log `filter`. (`start_logging` is this with no extra
    /// arguments.)
    pub fn start_with(nats_url: &str, filter: &str, extra: &[&str]) -> Gateway {
        let data = tempfile::Builder::new()
            .prefix("switchboard-bench-")
            .tempdir()
            .expect("temp dir");
        let log = std::fs::File::create(data.path().join("gateway.log")).expect("log file");
        let mut child = Command::new(gateway_binary())
            .arg("serve")
            .args(["--listen", "127.0.0.1:0", "--nats-url", nats_url])
            .arg("--data-dir")
            .arg(data.path())
            .args(["--jwt-secret", SECRET])
            .args(extra)
            .env("SWITCHBOARD_LOG", filter)
            .env_remove("SWITCHBOARD_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("gateway starts");
        let stdout = child.stdout.take().expect("stdout");
        let Some(addr) = switchboard::server::listening_address(stdout, PATIENCE) else {
            let _ = child.kill();
            let log = std::fs::read_to_string(data.path().join("gateway.log"));
            panic!("gateway did not start; log:\n{}", log.unwrap_or_default());
        };
        Gateway {
            child,
            addr,
            _data: data,
        }
    }

    /// Kills the process with SIGKILL (no shutdown, no last writes) and
    /// reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The process's peak resident set so far (VmHWM), in bytes.
    pub fn peak_rss_bytes(&self) -> u64 {
        vm_field(self.pid(), "VmHWM:")
    }

    /// The sum of a Prometheus metric's samples (every label set) on
    /// `GET /metrics`; `None` when the gateway does not report it.
    pub async fn metric(&self, name: &str) -> Option<f64> {
        let url = format!("http://{}/metrics", self.addr);
        let text = tokio::time::timeout(Duration::from_secs(10), async {
            reqwest::get(&url).await.ok()?.text().await.ok()
        })
        .await
        .ok()??;
        prometheus_sum(&text, name)
    }

    /// How many lines of the gateway's log contain `needle`.
    pub fn log_lines_with(&self, needle: &str) -> usize {
        std::fs::read_to_string(self.log_path())
            .unwrap_or_default()
            .lines()
            .filter(|line| line.contains(needle))
            .count()
    }
}

/// The sum of a metric's samples in Prometheus text, `None` when absent.
pub fn prometheus_sum(text: &str, name: &str) -> Option<f64> {
    let mut found = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        if !(rest.starts_with(' ') || rest.starts_with('{')) {
            continue;
        }
        if let Some(value) = rest
            .rsplit(' ')
            .next()
            .and_then(|v| v.trim().parse::<f64>().ok())
        {
            *found.get_or_insert(0.0) += value;
        }
    }
    found
}

/// A field of /proc/<pid>/status given in kB (`VmRSS:`, `VmHWM:`), in
/// bytes (0 when unreadable).
pub fn vm_field(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Whether `switchboard serve` knows a flag (`--session-store`): a setting
/// another branch adds is used only once it exists.
pub fn serve_accepts(flag: &str) -> bool {
    Command::new(gateway_binary())
        .args(["serve", "--help"])
        .env_remove("SWITCHBOARD_CONFIG")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .map(|out| {
            String::from_utf8_lossy(&out.stdout)
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
                .any(|word| word == flag)
        })
        .unwrap_or(false)
}

/// Raises this process's soft open-files limit to its hard limit (children
/// started afterwards, the gateways, inherit it); returns the soft limit now.
pub fn raise_open_files_limit() -> u64 {
    switchboard::server::listener::raise_open_file_limit().unwrap_or(0)
}

/// Opens a WebSocket with the given read buffer size; an error (refused,
/// upgrade denied, timed out) is returned, not a panic: a storm's clients
/// retry.
pub async fn try_connect(url: &str, read_buffer: usize, timeout: Duration) -> Result<Ws, String> {
    let config = WebSocketConfig::default().read_buffer_size(read_buffer);
    match tokio::time::timeout(
        timeout,
        tokio_tungstenite::connect_async_with_config(url, Some(config), false),
    )
    .await
    {
        Ok(Ok((ws, _))) => Ok(ws),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("connect timed out".into()),
    }
}

/// The decimal digits after `key` in a frame (`"seq":`), without parsing
/// the whole frame.
pub fn frame_u64(frame: &str, key: &str) -> Option<u64> {
    let start = frame.find(key)? + key.len();
    let rest = frame[start..].trim_start_matches('"');
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// The `switchboard` binary the benches start: the one cargo built for
/// them, or `SWITCHBOARD_BENCH_BIN` when set (to measure another build, for
/// example a branch not merged yet, with the same bench).
pub fn gateway_binary() -> std::path::PathBuf {
    std::env::var_os("SWITCHBOARD_BENCH_BIN")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_switchboard").into())
}

// ------------------------------------------------- a publisher with receipts

/// What a publisher stored, per channel (by index): `(seq, publish nanos)`,
/// sorted by `seq`.
pub type Receipts = Vec<Vec<(u64, u64)>>;

/// A publisher's running figures.
#[derive(Default)]
pub struct Acked {
    /// The highest `seq` acknowledged so far.
    pub max_seq: std::sync::atomic::AtomicU64,
    /// Events stored so far.
    pub stored: std::sync::atomic::AtomicU64,
    /// Stores that failed (the event may or may not be in the stream).
    pub failed: std::sync::atomic::AtomicU64,
}

/// Stores `channel_message`s round-robin over `channels` at `per_s` (in 1 ms
/// steps, at most [`IN_FLIGHT`] unacknowledged), `data.content` being the
/// publish time in nanoseconds, until `stop` changes; then waits for the
/// acks in flight and returns every receipt.
pub async fn publish_receipts(
    log: Log,
    channels: Vec<Id>,
    per_s: f64,
    acked: std::sync::Arc<Acked>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Receipts {
    use std::sync::atomic::Ordering;
    let mut receipts: Receipts = vec![Vec::new(); channels.len()];
    let started = std::time::Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut in_flight = futures::stream::FuturesUnordered::new();
    let mut sent = 0usize;
    let mut stopping = false;
    loop {
        if !stopping {
            let due = (started.elapsed().as_secs_f64() * per_s) as usize + 1;
            while sent < due && in_flight.len() < IN_FLIGHT {
                let index = sent % channels.len();
                let nanos = now_nanos();
                let event = message(channels[index], nanos.to_string());
                let log = log.clone();
                in_flight.push(async move { (index, nanos, log.store(&event).await) });
                sent += 1;
            }
        } else if in_flight.is_empty() {
            break;
        }
        tokio::select! {
            Some((index, nanos, stored)) = in_flight.next(), if !in_flight.is_empty() => {
                match stored {
                    Ok(stored) => {
                        receipts[index].push((stored.seq, nanos));
                        acked.max_seq.fetch_max(stored.seq, Ordering::Relaxed);
                        acked.stored.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => {
                        acked.failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            _ = tick.tick(), if !stopping => {}
            _ = stop.changed(), if !stopping => stopping = true,
        }
    }
    for list in &mut receipts {
        list.sort_unstable();
    }
    receipts
}

/// Polls `done` every 20 ms until it holds; panics after `patience`.
pub async fn wait_until(done: impl Fn() -> bool, patience: Duration, what: &str) {
    let until = std::time::Instant::now() + patience;
    while !done() {
        assert!(
            std::time::Instant::now() < until,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
