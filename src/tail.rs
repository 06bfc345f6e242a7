//! `switchboard tail`: a small client of the gateway. It subscribes to
//! channels, prints every frame it receives as one JSON line, and reconnects
//! and resumes its session on its own, printing no event twice.
//!
//! [`Follower`] is the client's state across connections, with no I/O: text
//! frames in, lines to print and frames to send out (unit-tested below).
//! [`run`] only moves bytes: connect, read, write, back off, stop on a signal.
//! It never panics on anything the network sends.

use std::collections::HashMap;
use std::io::Write;
use std::time::Duration;

use clap::Args;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::client::Request;
use tokio_tungstenite::tungstenite::http::{header, HeaderValue, StatusCode, Uri};
use tokio_tungstenite::tungstenite::protocol::{frame::coding::CloseCode, CloseFrame};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use crate::channel::{Channel, Id};
use crate::cli::Failure;
use crate::event::{format_timestamp, parse_timestamp};

/// The gateway's address when `--url` is not given: `serve`'s default
/// `listen` address (127.0.0.1:8080).
pub const DEFAULT_URL: &str = "ws://127.0.0.1:8080";

/// The WebSocket endpoint's path, added to a URL that has none.
pub const WS_PATH: &str = "/v1/ws";

/// How often the last printed `seq` of each channel is acked (at most), so
/// that a session restore starts exactly after what was printed.
pub const ACK_INTERVAL: Duration = Duration::from_secs(1);

/// The longest wait between two connection attempts, however many failed.
pub const BACKOFF_CAP: Duration = Duration::from_secs(30);

/// The smallest jitter window, so that a gateway announcing
/// `reconnect_ms: 0` is not hammered by repeated failures.
pub const MIN_BACKOFF: Duration = Duration::from_millis(100);

/// A connection attempt (TCP and the upgrade) that takes longer fails and is
/// retried.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a clean close waits for the gateway's Close frame.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Before the first `hello`: the base reconnect delay and the server's ping
/// interval, as the gateway's defaults.
const DEFAULT_RECONNECT_MS: u64 = 2_000;
const DEFAULT_HEARTBEAT_MS: u64 = 25_000;

/// The end of `switchboard tail --help`.
pub const AFTER_HELP: &str = "Exit codes: 0 done (--max-events reached, Ctrl-C or SIGTERM); \
1 the work failed (token refused or expired, subscription refused); 2 bad arguments.";

/// `switchboard tail`'s arguments.
#[derive(Args, Debug)]
pub struct TailArgs {
    /// Channels to follow: global, channel:<uuid>, user:<uuid> (one or more;
    /// optional with --session).
    #[arg(value_name = "CHANNEL")]
    pub channels: Vec<String>,
    /// The gateway: ws://host:port (the path /v1/ws is added if missing).
    #[arg(long, default_value = DEFAULT_URL)]
    pub url: String,
    /// The JWT to connect with (sent as `Authorization: Bearer`).
    #[arg(long, env = "SWITCHBOARD_TOKEN", hide_env_values = true)]
    pub token: String,
    /// Replay the events whose timestamp is at or after this RFC 3339 time, then follow.
    #[arg(long, conflicts_with = "since_seq")]
    pub since: Option<String>,
    /// Replay the events with a seq greater than this, then follow.
    #[arg(long)]
    pub since_seq: Option<u64>,
    /// Resume this session (a `hello.session_id`): its subscriptions and cursors.
    #[arg(long)]
    pub session: Option<String>,
    /// Exit 0 after printing this many events (frames with a `seq`).
    #[arg(long)]
    pub max_events: Option<u64>,
}

/// Where a subscription starts when no event of its channel was printed yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// `since_seq`: the events after this `seq`.
    Seq(u64),
    /// `since`: the events at or after this time (RFC 3339).
    Time(String),
}

/// What `tail` does, checked.
#[derive(Debug, Clone)]
pub struct TailOptions {
    /// The WebSocket URL with its path (see [`gateway_url`]).
    pub url: String,
    pub token: String,
    pub channels: Vec<Channel>,
    pub start: Option<Start>,
    pub session: Option<Id>,
    pub max_events: Option<u64>,
}

impl TailArgs {
    /// Checks the arguments; every problem is a usage error (exit 2).
    pub fn options(self) -> Result<TailOptions, Failure> {
        let channels = self
            .channels
            .iter()
            .map(|c| Channel::parse(c).map_err(|e| Failure::Usage(format!("CHANNEL: {e}"))))
            .collect::<Result<Vec<_>, _>>()?;
        let session = self
            .session
            .as_deref()
            .map(|s| Id::parse(s).map_err(|e| Failure::Usage(format!("--session: {e}"))))
            .transpose()?;
        if channels.is_empty() && session.is_none() {
            return Err(Failure::Usage(
                "no channel: give one or more of global, channel:<uuid>, user:<uuid> (or --session)"
                    .into(),
            ));
        }
        let start = match (self.since, self.since_seq) {
            (Some(_), Some(_)) => {
                return Err(Failure::Usage(
                    "--since and --since-seq cannot be used together".into(),
                ))
            }
            (Some(t), None) => Some(Start::Time(format_timestamp(
                &parse_timestamp(&t).map_err(|e| {
                    Failure::Usage(format!("--since: `{t}` is not an RFC 3339 time: {e}"))
                })?,
            ))),
            (None, Some(n)) => Some(Start::Seq(n)),
            (None, None) => None,
        };
        if self.max_events == Some(0) {
            return Err(Failure::Usage("--max-events must be at least 1".into()));
        }
        if self.token.trim().is_empty() {
            return Err(Failure::Usage(
                "no token: pass --token or set SWITCHBOARD_TOKEN".into(),
            ));
        }
        let options = TailOptions {
            url: gateway_url(&self.url).map_err(|e| Failure::Usage(format!("--url: {e}")))?,
            token: self.token.trim().to_string(),
            channels,
            start,
            session,
            max_events: self.max_events,
        };
        // The request is built the same way on every attempt: check it once.
        request(&options, options.session).map_err(Failure::Usage)?;
        Ok(options)
    }
}

/// The WebSocket URL for `url`: `ws://` (also for `http://` or no scheme),
/// with [`WS_PATH`] when the URL has no path. TLS is not built in.
pub fn gateway_url(url: &str) -> Result<String, String> {
    let uri: Uri = url
        .trim()
        .parse()
        .map_err(|e| format!("`{url}` is not a URL: {e}"))?;
    match uri.scheme_str() {
        None | Some("ws") | Some("http") => {}
        Some("wss") | Some("https") => {
            return Err(format!(
                "`{url}`: TLS is not built into `switchboard tail`; use a ws:// URL"
            ))
        }
        Some(other) => return Err(format!("`{url}`: `{other}` is not ws://")),
    }
    let authority = uri
        .authority()
        .ok_or_else(|| format!("`{url}` has no host, as in {DEFAULT_URL}"))?;
    let path = match uri.path() {
        "" | "/" => WS_PATH,
        path => path,
    };
    let query = uri.query().map(|q| format!("?{q}")).unwrap_or_default();
    Ok(format!("ws://{authority}{path}{query}"))
}

/// The upgrade request: the token in `Authorization`, the session in the query.
fn request(options: &TailOptions, session: Option<Id>) -> Result<Request, String> {
    let mut url = options.url.clone();
    if let Some(id) = session {
        url.push(if url.contains('?') { '&' } else { '?' });
        url.push_str("session=");
        url.push_str(&id.to_string());
    }
    let mut request = url
        .as_str()
        .into_client_request()
        .map_err(|e| format!("--url: `{url}`: {e}"))?;
    let bearer = HeaderValue::from_str(&format!("Bearer {}", options.token))
        .map_err(|_| "--token: not a valid header value".to_string())?;
    request.headers_mut().insert(header::AUTHORIZATION, bearer);
    Ok(request)
}

/// The wait before reconnection attempt `failures + 1` (0 after a working
/// connection): `reconnect_ms`, plus a random share (`unit` in 0..1) of a
/// window that doubles with each failure, up to [`BACKOFF_CAP`].
pub fn backoff(reconnect_ms: u64, failures: u32, unit: f64) -> Duration {
    let base = Duration::from_millis(reconnect_ms).min(BACKOFF_CAP);
    let window = base
        .max(MIN_BACKOFF)
        .saturating_mul(1u32 << failures.min(16))
        .min(BACKOFF_CAP);
    base + window.mul_f64(unit.clamp(0.0, 1.0))
}

/// What the driver does after a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Print this line (one JSON frame) on stdout.
    Print(String),
    /// Send this text frame.
    Send(String),
    /// Drop this connection and reconnect (after the back-off).
    Reconnect(String),
    /// Close cleanly and exit 0.
    Done,
    /// Close and exit 1 with this message.
    Fail(String),
}

/// The client's state across connections: the channels it follows, the
/// last printed `seq` of each (events at or below it are dropped), what was
/// acked, and the session to resume.
#[derive(Debug)]
pub struct Follower {
    followed: Vec<Channel>,
    start: Option<Start>,
    seen: HashMap<Channel, u64>,
    acked: HashMap<Channel, u64>,
    /// For a live subscription (no `--since`): the gateway's time when it was
    /// first confirmed, to resubscribe from if the session is lost before any
    /// event was printed.
    live_from: HashMap<Channel, String>,
    session: Option<Id>,
    reconnect_ms: u64,
    heartbeat_ms: u64,
    events: u64,
    max_events: Option<u64>,
}

impl Follower {
    pub fn new(options: &TailOptions) -> Follower {
        let mut followed = Vec::new();
        for c in &options.channels {
            if !followed.contains(c) {
                followed.push(*c);
            }
        }
        Follower {
            followed,
            start: options.start.clone(),
            seen: HashMap::new(),
            acked: HashMap::new(),
            live_from: HashMap::new(),
            session: options.session,
            reconnect_ms: DEFAULT_RECONNECT_MS,
            heartbeat_ms: DEFAULT_HEARTBEAT_MS,
            events: 0,
            max_events: options.max_events,
        }
    }

    /// The session to resume on the next connection.
    pub fn session(&self) -> Option<Id> {
        self.session
    }

    pub fn reconnect_ms(&self) -> u64 {
        self.reconnect_ms
    }

    /// A connection silent for this long (not even the server's pings) is
    /// taken as broken.
    pub fn silence_limit(&self) -> Duration {
        Duration::from_millis(self.heartbeat_ms.saturating_mul(2)) + Duration::from_secs(10)
    }

    /// The `subscribe` frame for `channel`: from its last printed `seq`,
    /// else from `--since`/`--since-seq`, else from when it first went live.
    fn subscribe(&self, channel: Channel) -> String {
        let mut frame = json!({
            "type": "subscribe",
            "channel": channel,
            "request_id": format!("subscribe {channel}"),
        });
        let start = match self.seen.get(&channel) {
            Some(&seq) => Some(Start::Seq(seq)),
            None => self
                .start
                .clone()
                .or_else(|| self.live_from.get(&channel).cloned().map(Start::Time)),
        };
        match start {
            Some(Start::Seq(n)) => frame["since_seq"] = n.into(),
            Some(Start::Time(t)) => frame["since"] = t.into(),
            None => {}
        }
        frame.to_string()
    }

    /// The `ack` frames due: one per channel whose last printed `seq` is
    /// past the last ack.
    pub fn acks(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        for c in &self.followed {
            let Some(&seq) = self.seen.get(c) else {
                continue;
            };
            if self.acked.get(c).is_some_and(|&a| a >= seq) {
                continue;
            }
            self.acked.insert(*c, seq);
            out.push(json!({"type": "ack", "channel": c, "seq": seq}).to_string());
        }
        out
    }

    /// One text frame from the gateway.
    pub fn on_text(&mut self, text: &str) -> Vec<Action> {
        let Ok(frame) = serde_json::from_str::<Value>(text) else {
            tracing::warn!("the gateway sent a frame that is not JSON; skipped");
            return vec![];
        };
        // One frame, one line, as the gateway wrote it.
        let line = if text.contains('\n') {
            frame.to_string()
        } else {
            text.to_string()
        };
        let channel = frame
            .get("channel")
            .or_else(|| frame["data"].get("channel"))
            .and_then(Value::as_str)
            .and_then(|c| Channel::parse(c).ok());
        if let (Some(seq), Some(c)) = (frame.get("seq").and_then(Value::as_u64), channel) {
            return self.on_event(c, seq, line);
        }
        let data = &frame["data"];
        match frame["type"].as_str().unwrap_or("") {
            "hello" => self.on_hello(data, line),
            "subscribed" => {
                if let Some(c) = channel {
                    if data["complete"] == Value::Bool(false) {
                        tracing::warn!(
                            channel = %c,
                            first_seq = data["first_seq"].as_u64(),
                            "history incomplete: events before first_seq are gone from the log"
                        );
                        self.seen.remove(&c);
                        self.acked.remove(&c);
                    }
                    if self.start.is_none() && !self.seen.contains_key(&c) {
                        if let Some(t) = frame["timestamp"].as_str() {
                            self.live_from.entry(c).or_insert_with(|| t.to_string());
                        }
                    }
                }
                vec![Action::Print(line)]
            }
            "unsubscribed" => {
                let reason = data["reason"].as_str().unwrap_or("unknown");
                let mut out = vec![Action::Print(line)];
                if let Some(c) = channel {
                    tracing::warn!(channel = %c, reason, "subscription ended");
                    self.followed.retain(|f| *f != c);
                    if self.followed.is_empty() {
                        tracing::warn!("no channel left to follow");
                        out.push(Action::Done);
                    }
                }
                out
            }
            "error" => {
                let code = data["code"].as_str().unwrap_or("unknown");
                let message = data["message"].as_str().unwrap_or("");
                let mut out = vec![Action::Print(line)];
                let subscribe = data["request_id"]
                    .as_str()
                    .and_then(|r| r.strip_prefix("subscribe "));
                match (subscribe, code) {
                    (Some(c), "forbidden" | "not_found" | "bad_request") => out.push(Action::Fail(
                        format!("cannot subscribe to {c}: {code}: {message}"),
                    )),
                    (Some(c), _) => out.push(Action::Reconnect(format!(
                        "subscribing to {c} failed: {code}: {message}"
                    ))),
                    (None, _) => tracing::warn!(code, message, "the gateway reported an error"),
                }
                out
            }
            _ => vec![Action::Print(line)],
        }
    }

    fn on_event(&mut self, channel: Channel, seq: u64, line: String) -> Vec<Action> {
        if self.seen.get(&channel).is_some_and(|&last| seq <= last) {
            tracing::debug!(%channel, seq, "already printed; dropped");
            return vec![];
        }
        self.seen.insert(channel, seq);
        self.events += 1;
        let mut out = vec![Action::Print(line)];
        if self.max_events.is_some_and(|max| self.events >= max) {
            out.push(Action::Done);
        }
        out
    }

    fn on_hello(&mut self, data: &Value, line: String) -> Vec<Action> {
        let asked = self.session;
        self.session = data["session_id"].as_str().and_then(|s| Id::parse(s).ok());
        if let Some(ms) = data["reconnect_ms"].as_u64() {
            self.reconnect_ms = ms;
        }
        if let Some(ms) = data["heartbeat_ms"].as_u64() {
            self.heartbeat_ms = ms;
        }
        // A new connection: ack again what was printed, so that this
        // session's cursors are exact.
        self.acked.clear();
        let resumed = data["resumed"] == Value::Bool(true);
        let restored: Vec<Channel> = if resumed {
            data["channels"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| c.as_str().and_then(|c| Channel::parse(c).ok()))
                .collect()
        } else {
            if let Some(id) = asked {
                tracing::warn!(session = %id, "session not restored (unknown or expired): subscribing afresh");
            }
            vec![]
        };
        if resumed {
            tracing::info!(channels = restored.len(), "session resumed");
        }
        for c in &restored {
            if !self.followed.contains(c) {
                self.followed.push(*c);
            }
        }
        let mut out = vec![Action::Print(line)];
        if self.followed.is_empty() {
            out.push(Action::Fail(
                "nothing to follow: the session has no subscription and no channel was given"
                    .into(),
            ));
            return out;
        }
        for c in &self.followed {
            if !restored.contains(c) {
                out.push(Action::Send(self.subscribe(*c)));
            }
        }
        out
    }
}

/// SIGINT (Ctrl-C) and SIGTERM, registered before the first connection.
struct Stop {
    interrupt: Signal,
    terminate: Signal,
}

impl Stop {
    fn new() -> std::io::Result<Stop> {
        Ok(Stop {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    /// Resolves on the first signal (cancel-safe).
    async fn wait(&mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
    }
}

/// How one connection ended.
enum Ended {
    /// Exit with this result.
    Exit(Result<(), Failure>),
    /// Reconnect; `hello` says whether the connection got as far as `hello`.
    Lost { reason: String, hello: bool },
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Runs `tail` until `--max-events`, a signal, or a failure that retrying
/// cannot mend (a refused token, an expired one, a refused subscription).
pub async fn run(options: TailOptions) -> Result<(), Failure> {
    let work = |message: String| Failure::Work(anyhow::anyhow!(message));
    let mut stop = Stop::new().map_err(|e| work(format!("cannot watch for signals: {e}")))?;
    let mut follower = Follower::new(&options);
    let mut failures: u32 = 0;
    let mut connected_once = false;
    loop {
        let request = request(&options, follower.session()).map_err(Failure::Usage)?;
        let attempt =
            tokio::time::timeout(CONNECT_TIMEOUT, tokio_tungstenite::connect_async(request));
        let connected = tokio::select! {
            _ = stop.wait() => return Ok(()),
            connected = attempt => connected,
        };
        let lost = match connected {
            Err(_) => format!("no answer within {CONNECT_TIMEOUT:?}"),
            Ok(Err(e)) => match refused(&e) {
                Some(message) => return Err(work(message)),
                None if connected_once => format!("cannot connect to {}: {e}", options.url),
                None => format!(
                    "cannot connect to {}: {e} (is the gateway running there? see --url)",
                    options.url
                ),
            },
            Ok(Ok((socket, _))) => {
                connected_once = true;
                tracing::info!(url = %options.url, "connected");
                match follow(socket, &mut follower, &mut stop).await {
                    Ended::Exit(result) => return result,
                    Ended::Lost { reason, hello } => {
                        if hello {
                            failures = 0;
                        }
                        reason
                    }
                }
            }
        };
        let delay = backoff(follower.reconnect_ms(), failures, fastrand::f64());
        failures = failures.saturating_add(1);
        tracing::warn!("{lost}; reconnecting in {} ms", delay.as_millis());
        tokio::select! {
            _ = stop.wait() => return Ok(()),
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

/// A refused upgrade that retrying cannot mend: the message to exit with.
fn refused(error: &WsError) -> Option<String> {
    let WsError::Http(response) = error else {
        return None;
    };
    let status = response.status();
    let retry = status.is_server_error()
        || status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT;
    if retry {
        return None;
    }
    let reason = response
        .body()
        .as_deref()
        .and_then(|b| serde_json::from_slice::<Value>(b).ok())
        .and_then(|v| v["error"]["message"].as_str().map(str::to_string));
    let what = if status == StatusCode::UNAUTHORIZED {
        "the gateway refused the token"
    } else {
        "the gateway refused the connection"
    };
    Some(match reason {
        Some(reason) => format!("{what} (HTTP {}): {reason}", status.as_u16()),
        None => format!("{what} (HTTP {})", status.as_u16()),
    })
}

/// Reads one connection until it ends.
async fn follow(socket: Socket, follower: &mut Follower, stop: &mut Stop) -> Ended {
    let (mut sink, mut stream) = socket.split();
    let mut acks = tokio::time::interval(ACK_INTERVAL);
    acks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut hello = false;
    let lost = |reason: String, hello: bool| Ended::Lost { reason, hello };
    let mut heard = tokio::time::Instant::now();
    loop {
        let silence = follower.silence_limit();
        let message = tokio::select! {
            _ = stop.wait() => {
                close(&mut sink, &mut stream, follower).await;
                return Ended::Exit(Ok(()));
            }
            _ = acks.tick() => {
                for frame in follower.acks() {
                    if let Err(e) = sink.send(Message::text(frame)).await {
                        return lost(format!("connection broken: {e}"), hello);
                    }
                }
                continue;
            }
            _ = tokio::time::sleep_until(heard + silence) => {
                return lost(format!("nothing received for {} s", silence.as_secs()), hello);
            }
            message = stream.next() => message,
        };
        heard = tokio::time::Instant::now();
        let text = match message {
            None => return lost("the connection ended".into(), hello),
            Some(Err(e)) => return lost(format!("connection broken: {e}"), hello),
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Close(frame))) => {
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, sink.close()).await;
                let (code, reason) = frame
                    .map(|f| (u16::from(f.code), f.reason.to_string()))
                    .unwrap_or((1005, String::new()));
                if code == 4001 {
                    return Ended::Exit(Err(Failure::Work(anyhow::anyhow!(
                        "the token expired (close 4001); mint a new one"
                    ))));
                }
                return lost(format!("the gateway closed with {code} {reason}"), hello);
            }
            // Pings (answered by the WebSocket stack), pongs, binary frames.
            Some(Ok(_)) => continue,
        };
        for action in follower.on_text(&text) {
            match action {
                Action::Print(line) => {
                    hello = true; // the first frame printed is `hello`
                    if let Err(e) = print(&line) {
                        close(&mut sink, &mut stream, follower).await;
                        return Ended::Exit(if e.kind() == std::io::ErrorKind::BrokenPipe {
                            Ok(())
                        } else {
                            Err(Failure::Work(anyhow::anyhow!("cannot write stdout: {e}")))
                        });
                    }
                }
                Action::Send(frame) => {
                    if let Err(e) = sink.send(Message::text(frame)).await {
                        return lost(format!("connection broken: {e}"), hello);
                    }
                }
                Action::Reconnect(reason) => {
                    close(&mut sink, &mut stream, follower).await;
                    return lost(reason, false);
                }
                Action::Done => {
                    close(&mut sink, &mut stream, follower).await;
                    return Ended::Exit(Ok(()));
                }
                Action::Fail(message) => {
                    close(&mut sink, &mut stream, follower).await;
                    return Ended::Exit(Err(Failure::Work(anyhow::anyhow!(message))));
                }
            }
        }
    }
}

/// One line on stdout, flushed.
fn print(line: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(line.as_bytes())?;
    out.write_all(b"\n")?;
    out.flush()
}

/// Acks what was printed, sends Close 1000, and waits (bounded) for the
/// gateway's Close. Failures are ignored: the connection is ending anyway.
async fn close(
    sink: &mut futures::stream::SplitSink<Socket, Message>,
    stream: &mut futures::stream::SplitStream<Socket>,
    follower: &mut Follower,
) {
    let goodbye = async {
        for frame in follower.acks() {
            sink.send(Message::text(frame)).await?;
        }
        sink.send(Message::Close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        })))
        .await
    };
    if tokio::time::timeout(CLOSE_TIMEOUT, goodbye).await.is_err() {
        return;
    }
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
        while let Some(Ok(message)) = stream.next().await {
            if matches!(message, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    const C: &str = "channel:0b6f2c1e-3d4a-4f5b-8c9d-0e1f2a3b4c5d";
    const S: &str = "9f0b2c1e-3d4a-4f5b-8c9d-0e1f2a3b4c5d";

    fn options(channels: &[&str], start: Option<Start>) -> TailOptions {
        TailOptions {
            url: "ws://127.0.0.1:8080/v1/ws".into(),
            token: "t".into(),
            channels: channels
                .iter()
                .map(|c| Channel::parse(c).unwrap())
                .collect(),
            start,
            session: None,
            max_events: None,
        }
    }

    fn hello(resumed: bool, channels: &[&str]) -> String {
        json!({"type": "hello", "timestamp": "2025-01-15T10:30:00.000Z", "data": {
            "session_id": S, "user_id": S, "heartbeat_ms": 1000, "reconnect_ms": 50,
            "resumed": resumed, "channels": channels}})
        .to_string()
    }

    fn event(channel: &str, seq: u64) -> String {
        json!({"type": "channel_created", "timestamp": "2025-01-15T10:30:01.000Z",
               "data": {}, "channel": channel, "seq": seq, "id": "x"})
        .to_string()
    }

    fn sent(actions: &[Action]) -> Vec<Value> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Send(f) => serde_json::from_str(f).ok(),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn urls_get_the_path_and_lose_nothing_else() {
        assert_eq!(
            gateway_url("ws://127.0.0.1:8080").unwrap(),
            "ws://127.0.0.1:8080/v1/ws"
        );
        assert_eq!(gateway_url("http://h:1/").unwrap(), "ws://h:1/v1/ws");
        assert_eq!(gateway_url("h:1").unwrap(), "ws://h:1/v1/ws");
        assert_eq!(
            gateway_url("ws://h:1/x/v1/ws?a=b").unwrap(),
            "ws://h:1/x/v1/ws?a=b"
        );
        assert!(gateway_url("wss://h:1").unwrap_err().contains("TLS"));
        assert!(gateway_url("ftp://h:1").is_err());
        assert!(gateway_url("not a url").is_err());
    }

    #[test]
    fn backoff_is_the_base_plus_a_capped_doubling_jitter() {
        assert_eq!(backoff(2000, 0, 0.0), Duration::from_millis(2000));
        assert_eq!(backoff(2000, 0, 1.0), Duration::from_millis(4000));
        assert_eq!(backoff(2000, 2, 1.0), Duration::from_millis(10_000));
        assert_eq!(backoff(2000, 40, 1.0), Duration::from_millis(32_000));
        assert_eq!(backoff(0, 0, 1.0), MIN_BACKOFF);
        assert_eq!(backoff(u64::MAX, u32::MAX, 1.0), BACKOFF_CAP * 2);
    }

    #[test]
    fn hello_subscribes_every_channel_with_its_start() {
        let mut f = Follower::new(&options(&[C, "global"], Some(Start::Seq(3))));
        let actions = f.on_text(&hello(false, &[]));
        assert!(matches!(&actions[0], Action::Print(l) if l.contains("hello")));
        let frames = sent(&actions);
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[0]["channel"], C);
        assert_eq!(frames[0]["since_seq"], 3);
        assert_eq!(frames[1]["channel"], "global");
        assert_eq!(f.session().unwrap().to_string(), S);
        assert_eq!(f.reconnect_ms(), 50);
    }

    #[test]
    fn a_resumed_session_subscribes_only_what_it_lacks() {
        let mut f = Follower::new(&options(&[C, "global"], None));
        let frames = sent(&f.on_text(&hello(true, &[C])));
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0]["channel"], "global");
        assert!(frames[0].get("since_seq").is_none() && frames[0].get("since").is_none());
    }

    #[test]
    fn events_at_or_below_the_last_printed_seq_are_dropped_and_resubscribe_from_it() {
        let mut f = Follower::new(&options(&[C], None));
        f.on_text(&hello(false, &[]));
        assert_eq!(f.on_text(&event(C, 5)).len(), 1);
        assert_eq!(f.on_text(&event(C, 5)), vec![]);
        assert_eq!(f.on_text(&event(C, 4)), vec![]);
        assert_eq!(f.on_text(&event(C, 7)).len(), 1);
        // Other channels have their own seqs.
        assert_eq!(f.on_text(&event("global", 1)).len(), 1);
        let frames = sent(&f.on_text(&hello(false, &[])));
        assert_eq!(frames[0]["since_seq"], 7);
    }

    #[test]
    fn acks_go_once_per_new_seq_and_again_on_a_new_connection() {
        let mut f = Follower::new(&options(&[C], None));
        f.on_text(&hello(false, &[]));
        assert!(f.acks().is_empty());
        f.on_text(&event(C, 5));
        f.on_text(&event(C, 6));
        let acks: Vec<Value> = f
            .acks()
            .iter()
            .map(|a| serde_json::from_str(a).unwrap())
            .collect();
        assert_eq!(acks, vec![json!({"type": "ack", "channel": C, "seq": 6})]);
        assert!(f.acks().is_empty());
        f.on_text(&hello(true, &[C]));
        assert_eq!(f.acks().len(), 1);
    }

    #[test]
    fn a_live_subscription_resubscribes_from_when_it_went_live() {
        let mut f = Follower::new(&options(&[C], None));
        f.on_text(&hello(false, &[]));
        f.on_text(
            &json!({"type": "subscribed", "timestamp": "2025-01-15T10:30:00.500Z",
                    "data": {"channel": C, "complete": true, "request_id": format!("subscribe {C}")}})
            .to_string(),
        );
        let frames = sent(&f.on_text(&hello(false, &[])));
        assert_eq!(frames[0]["since"], "2025-01-15T10:30:00.500Z");
    }

    #[test]
    fn incomplete_history_forgets_the_seq() {
        let mut f = Follower::new(&options(&[C], None));
        f.on_text(&hello(false, &[]));
        f.on_text(&event(C, 50));
        f.on_text(
            &json!({"type": "subscribed", "timestamp": "t",
                    "data": {"channel": C, "complete": false, "first_seq": 1}})
            .to_string(),
        );
        assert_eq!(f.on_text(&event(C, 2)).len(), 1);
    }

    #[test]
    fn max_events_refused_subscriptions_and_ended_channels_finish() {
        let mut o = options(&[C], None);
        o.max_events = Some(2);
        let mut f = Follower::new(&o);
        f.on_text(&hello(false, &[]));
        assert_eq!(f.on_text(&event(C, 1)).len(), 1);
        assert_eq!(f.on_text(&event(C, 2)).last(), Some(&Action::Done));

        let mut f = Follower::new(&options(&[C], None));
        let error = json!({"type": "error", "timestamp": "t", "data": {
            "code": "forbidden", "message": "not a member", "request_id": format!("subscribe {C}")}});
        let actions = f.on_text(&error.to_string());
        assert!(matches!(actions.last(), Some(Action::Fail(m)) if m.contains("not a member")));

        let mut f = Follower::new(&options(&[C], None));
        let ended = json!({"type": "unsubscribed", "timestamp": "t",
                           "data": {"channel": C, "reason": "banned"}});
        assert_eq!(f.on_text(&ended.to_string()).last(), Some(&Action::Done));
    }
}
