//! `switchboard tail`: a small client of the gateway. It subscribes to
//! channels, prints every frame it receives as one JSON line, and reconnects
//! and resumes its session on its own, printing no event twice.
//!
//! [`Follower`] (in `follower.rs`) is the client's state across connections,
//! with no I/O: text frames in, lines to print and frames to send out.
//! `token.rs` owns where the token comes from and when it is refreshed in
//! band (a clock-free schedule), `refreshing.rs` the timer and the fetch
//! that schedule needs on one connection, `options.rs` the command line. [`run`]
//! only moves bytes and keeps the timers: connect, read, write, refresh the
//! token, back off, stop on a signal. It never panics on anything the
//! network, the token command or the token file gives it.

use std::io::Write;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::client::Request;
use tokio_tungstenite::tungstenite::http::{header, HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::{frame::coding::CloseCode, CloseFrame};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use crate::channel::Id;
use crate::failure::Failure;

mod follower;
mod options;
mod refreshing;
pub mod token;
pub use follower::{Action, Follower};
pub use options::{gateway_url, Start, TailArgs, TailOptions, AFTER_HELP, DEFAULT_URL, WS_PATH};
use refreshing::{token_from, until, Refreshing};
use token::TokenSource;

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

/// The upgrade request: the token in `Authorization`, the session in the query.
fn request(url: &str, session: Option<Id>, token: &str) -> Result<Request, String> {
    let mut url = url.to_string();
    if let Some(id) = session {
        url.push(if url.contains('?') { '&' } else { '?' });
        url.push_str("session=");
        url.push_str(&id.to_string());
    }
    let mut request = url
        .as_str()
        .into_client_request()
        .map_err(|e| format!("--url: `{url}`: {e}"))?;
    let bearer = HeaderValue::from_str(&format!("Bearer {token}"))
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
/// cannot mend (a refused token, a fixed token that expired, a refused
/// subscription, the operator's disconnect).
///
/// Before each connection attempt the token comes fresh from its source.
/// A source that cannot give one at the start is a failure (exit 1); later
/// it is retried with the back-off, as a network failure is (the file may be
/// being replaced, the issuer briefly away). A token the gateway refuses at
/// the upgrade (HTTP 401) is a failure at any time.
pub async fn run(options: TailOptions) -> Result<(), Failure> {
    let work = |message: String| Failure::Work(anyhow::anyhow!(message));
    let mut stop = Stop::new().map_err(|e| work(format!("cannot watch for signals: {e}")))?;
    let mut follower = Follower::new(&options);
    let mut failures: u32 = 0;
    let mut connected_once = false;
    let mut first = true;
    loop {
        let fetched = tokio::select! {
            _ = stop.wait() => return Ok(()),
            token = options.token.fetch() => token,
        };
        let lost = match fetched {
            Err(e) if first => return Err(work(e.to_string())),
            Err(e) => format!("no token: {e}"),
            Ok(token) => {
                let request = request(&options.url, follower.session(), &token)
                    .map_err(|e| work(format!("{}: {e}", options.token.describe())))?;
                let attempt = tokio::time::timeout(
                    CONNECT_TIMEOUT,
                    tokio_tungstenite::connect_async(request),
                );
                let connected = tokio::select! {
                    _ = stop.wait() => return Ok(()),
                    connected = attempt => connected,
                };
                match connected {
                    Err(_) => format!("no answer within {CONNECT_TIMEOUT:?}"),
                    Ok(Err(e)) => match refused(&e) {
                        Some(message) if options.token.refreshes() => {
                            return Err(work(format!(
                                "{message} (from {})",
                                options.token.describe()
                            )))
                        }
                        Some(message) => return Err(work(message)),
                        None if connected_once => {
                            format!("cannot connect to {}: {e}", options.url)
                        }
                        None => format!(
                            "cannot connect to {}: {e} (is the gateway running there? see --url)",
                            options.url
                        ),
                    },
                    Ok(Ok((socket, _))) => {
                        connected_once = true;
                        tracing::info!(url = %options.url, "connected");
                        let connection = Connection {
                            source: &options.token,
                            token,
                        };
                        match follow(socket, connection, &mut follower, &mut stop).await {
                            Ended::Exit(result) => return result,
                            Ended::Lost { reason, hello } => {
                                if hello {
                                    failures = 0;
                                }
                                reason
                            }
                        }
                    }
                }
            }
        };
        first = false;
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

/// What one connection was opened with.
struct Connection<'a> {
    source: &'a TokenSource,
    /// The token of the upgrade.
    token: String,
}

/// Reads one connection until it ends.
async fn follow(
    socket: Socket,
    connection: Connection<'_>,
    follower: &mut Follower,
    stop: &mut Stop,
) -> Ended {
    let (mut sink, mut stream) = socket.split();
    let mut acks = tokio::time::interval(ACK_INTERVAL);
    acks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut hello = false;
    let lost = |reason: String, hello: bool| Ended::Lost { reason, hello };
    let mut heard = tokio::time::Instant::now();
    let mut refreshing = Refreshing::new(connection.source);
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
            _ = until(refreshing.timer) => {
                refreshing.due();
                continue;
            }
            token = token_from(&mut refreshing.fetching) => {
                if let Some(frame) = refreshing.fetched(token) {
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
                return closed(code, reason, connection.source, hello);
            }
            // Pings (answered by the WebSocket stack), pongs, binary frames.
            Some(Ok(_)) => continue,
        };
        for action in follower.on_text(&text) {
            match action {
                Action::Print(line) => {
                    if let Err(e) = print(&line) {
                        close(&mut sink, &mut stream, follower).await;
                        return Ended::Exit(if e.kind() == std::io::ErrorKind::BrokenPipe {
                            Ok(())
                        } else {
                            Err(Failure::Work(anyhow::anyhow!("cannot write stdout: {e}")))
                        });
                    }
                }
                Action::Connected { server_time_ms } => {
                    hello = true;
                    refreshing.connected(&connection.token, server_time_ms);
                }
                Action::Refreshed { exp } => refreshing.refreshed(exp),
                Action::RefreshRefused(why) => refreshing.refused(&why),
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

/// The gateway closed the connection with `code`: exit, or reconnect.
fn closed(code: u16, reason: String, source: &TokenSource, hello: bool) -> Ended {
    let fail = |message: String| Ended::Exit(Err(Failure::Work(anyhow::anyhow!(message))));
    match code {
        4001 if source.refreshes() => Ended::Lost {
            reason: format!(
                "the token expired (close 4001); a fresh one comes from {}",
                source.describe()
            ),
            hello,
        },
        4001 => fail("the token expired (close 4001); mint a new one".into()),
        // The operator's: the user's sessions are gone; coming back is not tail's call.
        4003 => fail(match reason.as_str() {
            "" | "disconnected by the operator" => "disconnected by the operator".to_string(),
            reason => format!("disconnected by the operator: {reason}"),
        }),
        _ => Ended::Lost {
            reason: format!("the gateway closed with {code} {reason}"),
            hello,
        },
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
    fn backoff_is_the_base_plus_a_capped_doubling_jitter() {
        assert_eq!(backoff(2000, 0, 0.0), Duration::from_millis(2000));
        assert_eq!(backoff(2000, 0, 1.0), Duration::from_millis(4000));
        assert_eq!(backoff(2000, 2, 1.0), Duration::from_millis(10_000));
        assert_eq!(backoff(2000, 40, 1.0), Duration::from_millis(32_000));
        assert_eq!(backoff(0, 0, 1.0), MIN_BACKOFF);
        assert_eq!(backoff(u64::MAX, u32::MAX, 1.0), BACKOFF_CAP * 2);
    }
}
