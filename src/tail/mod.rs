//! `switchboard tail`: a small client of the gateway. It subscribes to
//! channels, prints every frame it receives as one JSON line, and reconnects
//! and resumes its session on its own, printing no event twice.
//!
//! [`Follower`] (in `follower.rs`) is the client's state across connections,
//! with no I/O: text frames in, lines to print and frames to send out. [`run`]
//! only moves bytes: connect, read, write, back off, stop on a signal.
//! It never panics on anything the network sends.

use std::io::Write;
use std::time::Duration;

use clap::Args;
use futures::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::client::Request;
use tokio_tungstenite::tungstenite::http::{header, HeaderValue, StatusCode, Uri};
use tokio_tungstenite::tungstenite::protocol::{frame::coding::CloseCode, CloseFrame};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use crate::channel::{Channel, Id};
use crate::event::{format_timestamp, parse_timestamp};
use crate::failure::Failure;

mod follower;
pub use follower::{Action, Follower};

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
    #[arg(long, env = "SWITCHBOARD_URL", default_value = DEFAULT_URL)]
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
}
