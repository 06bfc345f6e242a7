//! The integration-test harness: a real nats-server per test (its own port
//! and store), the real `switchboard` binary on port 0, and WebSocket
//! clients that speak the wire format. Everything is stopped on drop, also
//! when a test panics. Waits are on conditions, with generous timeouts.
#![allow(dead_code)]

mod outside;
pub mod stall;
#[allow(unused_imports)]
pub use outside::*;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use switchboard::channel::{Channel, Id};
use switchboard::local_nats::NatsServer;
use switchboard::log::{Log, StreamSettings};
use switchboard::token::{dev_claims, Grant, Role, TokenKeys};
use tokio_tungstenite::tungstenite::Message;

pub const SECRET: &str = "integration-test-secret";

/// How long any wait in a test may take before it is a failure.
pub const PATIENCE: Duration = Duration::from_secs(60);

pub fn nats() -> NatsServer {
    NatsServer::start_temp().expect("nats-server starts (run `just tools`)")
}

pub async fn log(nats: &NatsServer) -> Log {
    log_with(nats, StreamSettings::default()).await
}

pub async fn log_with(nats: &NatsServer, settings: StreamSettings) -> Log {
    Log::connect(&nats.url(), settings)
        .await
        .expect("log connects")
}

/// The gateway binary, running.
pub struct Gateway {
    child: Child,
    pub addr: SocketAddr,
    pub nats_url: String,
    data: PathBuf,
    args: Vec<String>,
    _temp: Option<tempfile::TempDir>,
}

impl Gateway {
    pub fn start(nats: &NatsServer) -> Gateway {
        Gateway::start_with(nats, &[])
    }

    pub fn start_with(nats: &NatsServer, args: &[&str]) -> Gateway {
        let temp = tempfile::tempdir().expect("temp dir");
        let data = temp.path().to_path_buf();
        let mut gateway = Gateway::spawn(&nats.url(), &data, args);
        gateway._temp = Some(temp);
        gateway
    }

    /// Starts a gateway on an existing data directory (restarts, a second node).
    pub fn spawn(nats_url: &str, data: &Path, args: &[&str]) -> Gateway {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let (child, addr) = launch(nats_url, data, &args);
        Gateway {
            child,
            addr,
            nats_url: nats_url.to_string(),
            data: data.to_path_buf(),
            args,
            _temp: None,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    pub fn ws_url(&self, token: &str) -> String {
        format!("ws://{}/v1/ws?token={token}", self.addr)
    }

    pub fn http(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Kills the process as a crash would (SIGKILL).
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Asks the process to stop (SIGTERM) and waits for it to exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        self.child.wait().expect("gateway exits")
    }

    /// A restarted process on the same data directory (a new port).
    pub fn restart(&mut self) {
        self.kill9();
        let (child, addr) = launch(&self.nats_url, &self.data, &self.args);
        self.child = child;
        self.addr = addr;
    }

    /// The `/metrics` text.
    pub async fn metrics(&self) -> String {
        http()
            .get(self.http("/metrics"))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text")
    }

    /// The value of the first series line starting with `series` (0 if absent).
    pub async fn metric(&self, series: &str) -> f64 {
        self.metrics()
            .await
            .lines()
            .find(|l| l.starts_with(series))
            .and_then(|l| l.split_whitespace().last())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0.0)
    }

    /// Waits until the node has no connection left: every connection task
    /// has ended, so each one's final session save is done.
    pub async fn wait_for_no_connections(&self) {
        wait_until("every connection to end", || async {
            self.metric("switchboard_connections ").await == 0.0
        })
        .await;
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.data.join("gateway.log")).unwrap_or_default()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            let log = self.log_text();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("--- gateway log (last lines) ---");
            for line in tail.into_iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

fn launch(nats_url: &str, data: &Path, args: &[String]) -> (Child, SocketAddr) {
    run_serve(serve_command(nats_url, data, args), data)
}

/// The `switchboard serve` command a test gateway runs, its log in `data`.
fn serve_command(nats_url: &str, data: &Path, args: &[String]) -> Command {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(data.join("gateway.log"))
        .expect("log file");
    let mut command = Command::new(env!("CARGO_BIN_EXE_switchboard"));
    command
        .arg("serve")
        .args(["--listen", "127.0.0.1:0", "--nats-url", nats_url])
        .arg("--data-dir")
        .arg(data)
        .args(["--jwt-secret", SECRET])
        .args(args)
        .env("SWITCHBOARD_LOG", "info,switchboard=debug")
        .env_remove("SWITCHBOARD_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log);
    command
}

/// Starts `command` and waits for its listening line.
fn run_serve(mut command: Command, data: &Path) -> (Child, SocketAddr) {
    let mut child = command.spawn().expect("gateway starts");
    let stdout = child.stdout.take().expect("stdout");
    let Some(addr) = switchboard::server::listening_address(stdout, PATIENCE) else {
        let _ = child.kill();
        panic!(
            "gateway did not start; log:\n{}",
            std::fs::read_to_string(data.join("gateway.log")).unwrap_or_default()
        )
    };
    (child, addr)
}

/// Runs `command` in a process group of its own, for [`kill_group`].
pub fn own_process_group(command: &mut Command) -> &mut Command {
    std::os::unix::process::CommandExt::process_group(command, 0)
}

/// SIGKILLs `child` and every process of its group, and reaps it: a
/// `serve` without a NATS URL has started a nats-server of its own, which a
/// SIGKILL of `serve` alone would leave running.
pub fn kill_group(child: &mut Child) {
    let group = format!("-{}", child.id());
    let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
    let _ = child.kill();
    let _ = child.wait();
}

/// Polls `check` every 50 ms until it holds; a failure after [`PATIENCE`].
pub async fn wait_until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A token for `user` with the given grant and roles.
pub fn token(user: Id, channels: Grant, roles: &[Role]) -> String {
    token_named(user, channels, roles, None, Duration::from_secs(3600))
}

pub fn token_named(
    user: Id,
    channels: Grant,
    roles: &[Role],
    name: Option<&str>,
    ttl: Duration,
) -> String {
    let claims = dev_claims(
        user,
        ttl,
        name.map(str::to_string),
        channels,
        roles.to_vec(),
    );
    TokenKeys::hs256(SECRET.as_bytes())
        .mint(&claims)
        .expect("mint")
}

pub fn chat(id: Id) -> Channel {
    Channel::Chat(id)
}

/// A WebSocket client that speaks the protocol.
pub struct Client {
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    pub hello: Value,
}

impl Client {
    pub async fn connect(gateway: &Gateway, token: &str) -> Client {
        Client::connect_url(&gateway.ws_url(token)).await
    }

    pub async fn connect_session(gateway: &Gateway, token: &str, session: &str) -> Client {
        Client::connect_url(&format!("{}&session={session}", gateway.ws_url(token))).await
    }

    pub async fn connect_url(url: &str) -> Client {
        Client::try_connect_url(url)
            .await
            .expect("upgrade accepted")
    }

    pub fn session_id(&self) -> String {
        self.hello["data"]["session_id"]
            .as_str()
            .expect("session id")
            .to_string()
    }

    pub async fn send(&mut self, frame: Value) {
        self.ws
            .send(Message::Text(frame.to_string().into()))
            .await
            .expect("send");
    }

    pub async fn send_raw(&mut self, message: Message) {
        self.ws.send(message).await.expect("send");
    }

    /// The next text frame as JSON (pings and pongs skipped).
    pub async fn next(&mut self) -> Value {
        match self.next_message().await {
            Message::Text(text) => serde_json::from_str(&text).expect("frames are JSON"),
            other => panic!("expected a text frame, got {other:?}"),
        }
    }

    /// The next non-ping message, whatever it is.
    pub async fn next_message(&mut self) -> Message {
        loop {
            let message = tokio::time::timeout(PATIENCE, self.ws.next())
                .await
                .expect("a frame in time")
                .expect("socket open")
                .expect("socket ok");
            match message {
                Message::Ping(_) | Message::Pong(_) => continue,
                other => return other,
            }
        }
    }

    /// The next text frame, or `None` once the socket is closed or broken;
    /// a failure if neither happens within [`PATIENCE`].
    pub async fn try_next(&mut self) -> Option<Value> {
        loop {
            let message = tokio::time::timeout(PATIENCE, self.ws.next())
                .await
                .expect("a frame or the end of the socket in time")?;
            match message {
                Ok(Message::Text(text)) => return serde_json::from_str(&text).ok(),
                Ok(Message::Close(_)) | Err(_) => return None,
                Ok(_) => continue,
            }
        }
    }

    /// Waits for the close frame and returns its code.
    pub async fn closed_with(&mut self) -> u16 {
        loop {
            let message = tokio::time::timeout(PATIENCE, self.ws.next())
                .await
                .expect("close in time");
            match message {
                Some(Ok(Message::Close(Some(frame)))) => return frame.code.into(),
                Some(Ok(Message::Close(None))) => return 1005,
                Some(Ok(_)) => continue,
                Some(Err(e)) => panic!("socket error before a close frame: {e}"),
                None => panic!("socket ended without a close frame"),
            }
        }
    }

    /// Nothing arrives within `quiet` (a short look, for "nothing more" checks
    /// after a condition was already awaited).
    pub async fn assert_silent(&mut self, quiet: Duration) {
        if let Ok(Some(Ok(message))) = tokio::time::timeout(quiet, self.ws.next()).await {
            match message {
                Message::Ping(_) | Message::Pong(_) => {}
                other => panic!("expected silence, got {other:?}"),
            }
        }
    }

    pub async fn subscribe(&mut self, channel: Channel) -> Value {
        self.send(
            json!({"type": "subscribe", "channel": channel.to_string(), "request_id": "sub"}),
        )
        .await;
        let reply = self.next().await;
        assert_eq!(reply["type"], "subscribed", "{reply}");
        reply
    }

    /// Subscribes with `since_seq` and returns (subscribed, replayed events, replayed frame).
    pub async fn subscribe_since(
        &mut self,
        channel: Channel,
        since: Value,
    ) -> (Value, Vec<Value>, Value) {
        let mut frame = json!({"type": "subscribe", "channel": channel.to_string()});
        match since {
            Value::String(_) => frame["since"] = since,
            other => frame["since_seq"] = other,
        }
        self.send(frame).await;
        self.read_replay(channel).await
    }

    /// Reads `subscribed`, the replayed events and `replayed` for `channel`.
    pub async fn read_replay(&mut self, channel: Channel) -> (Value, Vec<Value>, Value) {
        let subscribed = self.next().await;
        assert_eq!(subscribed["type"], "subscribed", "{subscribed}");
        assert_eq!(subscribed["data"]["channel"], channel.to_string());
        let mut events = Vec::new();
        loop {
            let frame = self.next().await;
            if frame["type"] == "replayed" && frame["data"]["channel"] == channel.to_string() {
                return (subscribed, events, frame);
            }
            events.push(frame);
        }
    }

    /// The next `n` event frames (with a `seq`), failing on anything else.
    pub async fn events(&mut self, n: usize) -> Vec<Value> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let frame = self.next().await;
            assert!(frame.get("seq").is_some(), "expected an event, got {frame}");
            out.push(frame);
        }
        out
    }

    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }

    /// Drops the connection as a network failure would: no close frame, and
    /// a TCP reset (whatever the gateway wrote that was not read is lost).
    pub fn abort(self) {
        if let tokio_tungstenite::MaybeTlsStream::Plain(tcp) = self.ws.get_ref() {
            let _ = tcp.set_zero_linger();
        }
    }
}

/// Frames' `seq`s.
pub fn seqs(frames: &[Value]) -> Vec<u64> {
    frames
        .iter()
        .map(|f| f["seq"].as_u64().expect("seq"))
        .collect()
}

/// An HTTP client with no connection pooling surprises.
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(PATIENCE)
        .build()
        .expect("http client")
}

/// One sample of every stored event type about channel `c` and user `u`.
pub fn samples(c: Id, u: Id) -> Vec<switchboard::event::EventData> {
    use switchboard::event::*;
    let m = Id::new_v4();
    let mut changes = serde_json::Map::new();
    changes.insert("channel_name".into(), json!("renamed"));
    changes.insert("topic".into(), Value::Null);
    vec![
        EventData::ChannelCreated(ChannelCreated {
            channel_id: c,
            channel_name: "general".into(),
        }),
        EventData::MemberJoined(Member {
            channel_id: c,
            user_id: u,
            username: Some("ann".into()),
        }),
        EventData::ChannelMessage(ChannelMessage {
            channel_id: c,
            message_id: m,
            user_id: u,
            username: None,
            content: "hello \"world\" ✓".into(),
        }),
        EventData::MessageUpdated(MessageUpdated {
            channel_id: c,
            message_id: m,
            content: "edited".into(),
        }),
        EventData::MessageReply(MessageReply {
            channel_id: c,
            message_id: Id::new_v4(),
            parent_message_id: m,
            user_id: u,
            username: Some("ann".into()),
            content: "reply".into(),
        }),
        EventData::MessageDeleted(MessageDeleted {
            channel_id: c,
            message_id: m,
        }),
        EventData::MemberRoleUpdated(MemberRoleUpdated {
            channel_id: c,
            user_id: u,
            username: None,
            new_role: "admin".into(),
        }),
        EventData::ChannelUpdated(ChannelUpdated {
            channel_id: c,
            changes,
        }),
        EventData::UserUnbanned(BanChange {
            channel_id: c,
            user_id: Some(u),
            motive: "appeal".into(),
        }),
        EventData::UserBanned(BanChange {
            channel_id: c,
            user_id: Some(u),
            motive: "spam".into(),
        }),
        EventData::UserKicked(UserKicked {
            channel_id: c,
            user_id: Some(u),
        }),
        EventData::MemberLeft(Member {
            channel_id: c,
            user_id: u,
            username: None,
        }),
        EventData::ChannelDeleted(ChannelDeleted { channel_id: c }),
    ]
}

/// A chat message in channel `c`.
pub fn message(c: Id, text: &str) -> switchboard::event::Event {
    use switchboard::event::*;
    Event::new(EventData::ChannelMessage(ChannelMessage {
        channel_id: c,
        message_id: Id::new_v4(),
        user_id: Id::new_v4(),
        username: Some("bot".into()),
        content: text.into(),
    }))
}

/// Validates a frame the gateway sent against its schema.
pub fn assert_schema(frame: &Value) {
    use switchboard::schema::Schemas;
    let kind = frame["type"].as_str().expect("type");
    let schemas = Schemas::get();
    let control = [
        "hello",
        "subscribed",
        "replayed",
        "unsubscribed",
        "pong",
        "error",
    ];
    if control.contains(&kind) {
        schemas
            .check(&format!("server/{kind}"), frame)
            .unwrap_or_else(|e| panic!("{kind} frame fails its schema: {e}\n{frame}"));
    } else {
        schemas
            .check("envelope", frame)
            .unwrap_or_else(|e| panic!("envelope fails its schema: {e}\n{frame}"));
        schemas
            .check(&format!("events/{kind}"), &frame["data"])
            .unwrap_or_else(|e| panic!("{kind} data fails its schema: {e}\n{frame}"));
    }
}

/// Compares sequence lists and reports the first difference, not 40,000 numbers.
#[track_caller]
pub fn assert_seqs(got: &[u64], want: &[u64], what: &str) {
    if got == want {
        return;
    }
    let at = got
        .iter()
        .zip(want)
        .position(|(a, b)| a != b)
        .unwrap_or(got.len().min(want.len()));
    let window = |v: &[u64]| v[at.min(v.len())..(at + 5).min(v.len())].to_vec();
    panic!(
        "{what}: got {} seqs, want {}; first difference at index {at}: got {:?}…, want {:?}…",
        got.len(),
        want.len(),
        window(got),
        window(want)
    );
}

impl Gateway {
    /// A gateway whose process may open at most `open_files` descriptors
    /// (soft and hard limit), to try it at its open-file limit.
    pub fn start_with_open_files(nats: &NatsServer, args: &[&str], open_files: u64) -> Gateway {
        use std::os::unix::process::CommandExt;
        let temp = tempfile::tempdir().expect("temp dir");
        let data = temp.path().to_path_buf();
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let mut command = serve_command(&nats.url(), &data, &args);
        #[allow(clippy::unnecessary_cast)] // `rlim_t` is not `u64` everywhere.
        let limit = libc::rlimit {
            rlim_cur: open_files as libc::rlim_t,
            rlim_max: open_files as libc::rlim_t,
        };
        // SAFETY: setrlimit is async-signal-safe and touches only `limit`.
        unsafe {
            command.pre_exec(move || {
                if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
        let (child, addr) = run_serve(command, &data);
        Gateway {
            child,
            addr,
            nats_url: nats.url(),
            data,
            args,
            _temp: Some(temp),
        }
    }

    /// The process's resident memory in KiB (`VmRSS`), if it can be read.
    pub fn rss_kib(&self) -> Option<u64> {
        rss_kib(self.pid())
    }
}

/// A process's resident memory in KiB, from `/proc/<pid>/status`.
pub fn rss_kib(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

impl Client {
    /// Like [`Client::connect_url`], but a refused upgrade (or any other
    /// failure to connect) is returned instead of failing the test.
    pub async fn try_connect_url(
        url: &str,
    ) -> Result<Client, tokio_tungstenite::tungstenite::Error> {
        let (ws, _) = tokio::time::timeout(PATIENCE, tokio_tungstenite::connect_async(url))
            .await
            .expect("connect in time")?;
        let mut client = Client {
            ws,
            hello: Value::Null,
        };
        let hello = client.next().await;
        assert_eq!(hello["type"], "hello", "first frame is hello: {hello}");
        client.hello = hello;
        Ok(client)
    }
}

/// A three-node nats-server cluster with JetStream (temporary stores, free
/// ports), ready: every node knows a meta leader.
pub fn cluster() -> switchboard::local_nats::NatsCluster {
    switchboard::local_nats::NatsCluster::start_temp()
        .expect("a nats-server cluster starts (run `just tools`)")
}

impl Gateway {
    /// A gateway on `nats_url` (one server or a comma-separated list) with a
    /// fresh temporary data directory.
    pub fn start_on(nats_url: &str, args: &[&str]) -> Gateway {
        let temp = tempfile::tempdir().expect("temp dir");
        let data = temp.path().to_path_buf();
        let mut gateway = Gateway::spawn(nats_url, &data, args);
        gateway._temp = Some(temp);
        gateway
    }
}

/// A log on `nats_url` (one server or a comma-separated list) whose NATS
/// connection is named `name` (the gateway's is `switchboard`), using the
/// stream as it is.
pub async fn log_named(nats_url: &str, name: &str, settings: StreamSettings) -> Log {
    let servers: Vec<&str> = nats_url.split(',').collect();
    let client = async_nats::ConnectOptions::new()
        .name(name)
        .connect(servers)
        .await
        .expect("NATS connects");
    Log::with_client(client, settings, false)
        .await
        .expect("log opens")
}
