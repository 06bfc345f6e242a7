//! The event log: one JetStream stream holding every stored event, on one
//! NATS server or a cluster of them (`connection`), created or updated to
//! match the settings (`provision`).
//!
//! It owns the stream's configuration, the idempotent publisher, ordered
//! reads from a sequence, the resolution of a time to a sequence, the
//! projection's catch-up read (`fold`) and typing on core NATS (`typing`),
//! and which incarnation of the stream it holds (its [`Epoch`]).
//! Architecture invariant: the log knows nothing of WebSockets, sessions or
//! authorization; it speaks in channels, events and sequences.

mod connection;
pub mod control;
mod direct;
mod fold;
mod history;
pub mod presence;
mod provision;
mod publisher;
mod reader;
mod reaper;
pub mod subject;
mod typing;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, stream};
use chrono::{DateTime, Utc};

pub use crate::position::{Epoch, StreamPosition};
pub use connection::LAME_DUCK_RECONNECT;
pub use history::{History, HistoryQuery, HISTORY_DEFAULT_LIMIT, HISTORY_MAX_LIMIT};
pub use publisher::Receipt;
pub use reader::{LogRead, ReadItem, READER_CREATE_RETRY_FOR};
pub use subject::PayloadError;
pub use typing::{TypingSubscription, RESUBSCRIBE_DELAY};

use connection::LameDuckWatch;
use provision::{is_replicas_refusal, provision_placed};
pub use provision::{STREAM_LOOKUP_RETRY_FOR, STREAM_PLACEMENT_RETRY_FOR};

/// The oldest nats-server we run against. 2.9 accepts consumers with several
/// filter subjects and silently ignores the filters: replays would leak
/// other channels' events.
pub const MIN_SERVER_VERSION: (u64, u64) = (2, 10);

/// How long the first connection to NATS may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long one request to NATS (a JetStream API call among them: creating
/// a consumer, a direct get) waits for its answer. async-nats's default,
/// named here because the log's retries and the connection's bounds are
/// counted in it.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a normal stop waits for the NATS connection to close.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// How the stream is configured; the matching settings are in `crate::settings`.
#[derive(Clone, Debug)]
pub struct StreamSettings {
    pub name: String,
    /// Max age of an event before retention drops it.
    pub retention: Duration,
    pub replicas: usize,
    /// How long a `Nats-Msg-Id` is remembered: a retried publish inside it
    /// is stored once.
    pub duplicate_window: Duration,
}

impl Default for StreamSettings {
    fn default() -> Self {
        StreamSettings {
            name: "CHAT_EVENTS".into(),
            retention: Duration::from_secs(7 * 24 * 3600),
            replicas: 1,
            duplicate_window: Duration::from_secs(120),
        }
    }
}

/// What went wrong talking to the log.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error(
        "cannot connect to NATS at {url}: {source} (is nats-server running there? \
         Set SWITCHBOARD_NATS_URL or --nats-url to the right one, or leave it unset \
         for `serve` to start a local nats-server)"
    )]
    Connect {
        url: String,
        source: async_nats::ConnectError,
    },
    #[error("nats-server {found} is too old: switchboard needs {}.{} or newer (2.9 silently ignores multi-filter consumers)", MIN_SERVER_VERSION.0, MIN_SERVER_VERSION.1)]
    ServerTooOld { found: String },
    #[error("NATS did not answer: is nats-server running at the configured URL?")]
    Unreachable,
    #[error("NATS has no JetStream: start nats-server with -js")]
    NoJetStream,
    #[error("stream `{name}`: {reason}")]
    Stream { name: String, reason: String },
    #[error(
        "the stream's `replicas` setting is {replicas} (--replicas / SWITCHBOARD_REPLICAS), \
         but {cluster} has {servers} JetStream server(s) to hold them: \
         set replicas to at most {servers}, or run more servers in the cluster (NATS said: {reason})"
    )]
    Replicas {
        replicas: usize,
        /// What NATS is: "the NATS cluster `name`" or a single server.
        cluster: String,
        /// The servers the cluster lists (1 for a single server).
        servers: usize,
        reason: String,
    },
    /// A request to the log failed: what it was doing (`op`), why, in a
    /// form callers branch on (`kind`), and the error beneath, if any.
    #[error("{op} {kind}: {context}{}", source_text(.source))]
    Request {
        op: Op,
        kind: RequestErrorKind,
        context: String,
        #[source]
        source: Option<BoxError>,
    },
    #[error(transparent)]
    Event(#[from] crate::event::EventError),
}

/// The error beneath a failed request, whatever its type.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What a failed request to the log was doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// Reading events (a replay, history, a fold, the window's fill).
    Read,
    /// Looking up one sequence or a channel's next event.
    Lookup,
    Publish,
    Subscribe,
}

impl std::fmt::Display for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Op::Read => "read",
            Op::Lookup => "lookup",
            Op::Publish => "publish",
            Op::Subscribe => "subscribe",
        })
    }
}

/// Why a request to the log failed: what a caller branches on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestErrorKind {
    /// No answer in time: NATS is slow, or a cluster is electing a leader.
    /// It may pass.
    TimedOut,
    /// The node is shutting down.
    ShuttingDown,
    /// The stream changed under the request (it was recreated).
    StreamChanged,
    /// NATS refused the request or the connection broke.
    Failed,
    /// NATS answered with something that is not what JetStream sends.
    Malformed,
}

impl std::fmt::Display for RequestErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RequestErrorKind::TimedOut => "timed out",
            RequestErrorKind::ShuttingDown => "stopped: the node is shutting down",
            RequestErrorKind::StreamChanged => "stopped: the stream changed",
            RequestErrorKind::Failed => "failed",
            RequestErrorKind::Malformed => "got a malformed answer",
        })
    }
}

fn source_text(source: &Option<BoxError>) -> String {
    source
        .as_ref()
        .map(|e| format!(": {e}"))
        .unwrap_or_default()
}

impl LogError {
    fn stream(name: &str, reason: impl std::fmt::Display) -> LogError {
        LogError::Stream {
            name: name.to_string(),
            reason: reason.to_string(),
        }
    }

    /// A failed request with no error beneath it.
    pub fn request(op: Op, kind: RequestErrorKind, context: impl Into<String>) -> LogError {
        LogError::Request {
            op,
            kind,
            context: context.into(),
            source: None,
        }
    }

    /// A failed request, with the error beneath it.
    pub fn request_from(
        op: Op,
        kind: RequestErrorKind,
        context: impl Into<String>,
        source: impl Into<BoxError>,
    ) -> LogError {
        LogError::Request {
            op,
            kind,
            context: context.into(),
            source: Some(source.into()),
        }
    }

    /// Why a request failed; `None` for the errors of connecting and
    /// provisioning, and for an event refused before it was sent.
    pub fn request_kind(&self) -> Option<RequestErrorKind> {
        match self {
            LogError::Request { kind, .. } => Some(*kind),
            _ => None,
        }
    }
}

/// A handle on the log; cheap to clone.
#[derive(Clone)]
pub struct Log {
    client: async_nats::Client,
    js: jetstream::Context,
    stream: stream::Stream,
    settings: StreamSettings,
    /// The extent last measured, by any clone: its epoch is the stream's
    /// as far as the log knows.
    seen: Arc<Mutex<Extent>>,
    /// The task that leaves a lame-duck server, on a client the log dialled
    /// itself; it stops with the last clone of the log.
    lame_duck_watch: Option<Arc<LameDuckWatch>>,
    /// Where finished reads hand their consumers, once a reaper runs.
    reaper: Option<reaper::Reaping>,
}

/// The stream's extent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extent {
    /// The oldest sequence still held (the next one to be written when empty).
    pub first_seq: u64,
    /// The newest sequence written (0 for a stream never written).
    pub last_seq: u64,
    pub messages: u64,
    /// Which incarnation of the stream these sequences belong to.
    pub epoch: Epoch,
}

impl Extent {
    fn of(info: &stream::Info) -> Extent {
        Extent {
            first_seq: info.state.first_sequence,
            last_seq: info.state.last_sequence,
            messages: info.state.messages,
            epoch: Epoch::created_at(info.created),
        }
    }
}

impl Log {
    /// Connects (`url`: one server or a comma-separated list of a
    /// cluster's servers), checks the server, and creates or updates the
    /// stream to match `settings` (what `serve` does); more replicas than
    /// the cluster holds is [`LogError::Replicas`].
    pub async fn connect(url: &str, settings: StreamSettings) -> Result<Log, LogError> {
        let (client, watch) = connection::dial(url).await?;
        let mut log = Log::with_client(client, settings, true).await?;
        log.lame_duck_watch = Some(Arc::new(watch));
        Ok(log)
    }

    /// Connects and uses the stream as it is, creating it only when missing
    /// (what the tools do: they never reconfigure a running gateway's stream).
    pub async fn open(url: &str, settings: StreamSettings) -> Result<Log, LogError> {
        let (client, watch) = connection::dial(url).await?;
        let mut log = Log::with_client(client, settings, false).await?;
        log.lame_duck_watch = Some(Arc::new(watch));
        Ok(log)
    }

    /// Like [`Log::connect`] (`manage`) or [`Log::open`], on a client the caller made.
    pub async fn with_client(
        client: async_nats::Client,
        settings: StreamSettings,
        manage: bool,
    ) -> Result<Log, LogError> {
        let info = client.server_info();
        if info.version.is_empty() {
            return Err(LogError::Unreachable);
        }
        check_version(&info.version)?;
        if !info.jetstream {
            return Err(LogError::NoJetStream);
        }
        let js = jetstream::new(client.clone());
        let replicas_error = |reason: String| LogError::Replicas {
            replicas: settings.replicas,
            cluster: info.cluster.clone().map_or_else(
                || "NATS (a single server, not a cluster)".into(),
                |c| format!("the NATS cluster `{c}`"),
            ),
            servers: info.connect_urls.len().max(1),
            reason,
        };
        if manage && settings.replicas > 1 && info.cluster.is_none() {
            return Err(replicas_error(
                "the server is not in a cluster; replicas > 1 need one".into(),
            ));
        }
        let servers = info.connect_urls.len().max(1);
        let stream = provision_placed(&js, &settings, manage, servers)
            .await
            .map_err(|e| match e {
                LogError::Stream { reason, .. } if is_replicas_refusal(&reason) => {
                    replicas_error(reason)
                }
                other => other,
            })?;
        let seen = Arc::new(Mutex::new(Extent::of(stream.cached_info())));
        Ok(Log {
            client,
            js,
            stream,
            settings,
            seen,
            lame_duck_watch: None,
            reaper: None,
        })
    }

    /// Closes the connection to NATS (what is buffered is sent first), so
    /// that a normal stop is not reported as a lost connection.
    pub async fn close(&self) {
        if let Err(e) = self.client.drain().await {
            tracing::debug!(error = %e, "NATS connection not drained");
            return;
        }
        let closed = async {
            while self.client.connection_state() == async_nats::connection::State::Connected {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, closed).await;
    }

    /// The raw NATS client. `serve` opens the session bucket on it (one
    /// connection per node); tests and tools write or inspect the stream
    /// behind the log's back with it (a malformed message, a raw read).
    /// The gateway's connections never use it: they speak to the log in
    /// channels, events and sequences.
    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    pub fn settings(&self) -> &StreamSettings {
        &self.settings
    }

    /// Whether NATS is connected and the stream answers.
    pub async fn is_ready(&self) -> bool {
        use async_nats::connection::State;
        self.client.connection_state() == State::Connected && self.stream.get_info().await.is_ok()
    }

    /// Measures the stream's extent (and notes its epoch: see [`Log::epoch`]).
    pub async fn extent(&self) -> Result<Extent, LogError> {
        Ok(self.extent_and_leader().await?.0)
    }

    /// [`Log::extent`] and the name of the server leading the stream on a
    /// cluster (`None` on a single server): one stream info request, as
    /// the router probes the stream.
    pub async fn extent_and_leader(&self) -> Result<(Extent, Option<String>), LogError> {
        let info = self
            .stream
            .get_info()
            .await
            .map_err(|e| LogError::stream(&self.settings.name, e))?;
        let extent = Extent::of(&info);
        *self.seen.lock().unwrap_or_else(|e| e.into_inner()) = extent;
        let leader = info.cluster.and_then(|c| c.leader);
        Ok((extent, leader.filter(|l| !l.is_empty())))
    }

    /// The stream's epoch as of the last extent measured by any clone of
    /// this log (the router measures it every
    /// [`crate::gateway::router::EPOCH_CHECK_INTERVAL`]); no request.
    pub fn epoch(&self) -> Epoch {
        self.last_extent().epoch
    }

    /// The extent last measured by any clone of this log; no request.
    pub fn last_extent(&self) -> Extent {
        *self.seen.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The first sequence whose event's envelope `timestamp` (the log time,
    /// truncated to the millisecond) is at or after `t`; `last_seq + 1` when
    /// there is none.
    ///
    /// A binary search over the log's own times: JetStream's start-time
    /// delivery is not trusted to never skip an event at `t` itself.
    pub async fn seq_at_time(&self, t: DateTime<Utc>) -> Result<u64, LogError> {
        let t = ceil_to_millis(t);
        let extent = self.extent().await?;
        let (mut lo, mut hi) = (extent.first_seq.max(1), extent.last_seq + 1);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.time_of_next(mid).await? {
                Some(time) if time < t => lo = mid + 1,
                _ => hi = mid,
            }
        }
        Ok(lo)
    }
}

/// An envelope shows milliseconds; an event is "at or after `t`" as the
/// client sees it exactly when its nanosecond time is at or after `t`
/// rounded up to the next millisecond.
fn ceil_to_millis(t: DateTime<Utc>) -> DateTime<Utc> {
    let sub_ms = t.timestamp_subsec_nanos() % 1_000_000;
    if sub_ms == 0 {
        t
    } else {
        t + chrono::Duration::nanoseconds(i64::from(1_000_000 - sub_ms))
    }
}

fn check_version(version: &str) -> Result<(), LogError> {
    let mut parts = version
        .trim_start_matches('v')
        .split(['.', '-'])
        .map(|p| p.parse::<u64>().ok());
    let major = parts.next().flatten();
    let minor = parts.next().flatten();
    match (major, minor) {
        (Some(major), Some(minor)) if (major, minor) >= MIN_SERVER_VERSION => Ok(()),
        _ => Err(LogError::ServerTooOld {
            found: if version.is_empty() {
                "(unknown version)".into()
            } else {
                version.to_string()
            },
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_error_says_what_why_and_what_was_beneath() {
        let beneath = std::io::Error::new(std::io::ErrorKind::BrokenPipe, "pipe closed");
        let e = LogError::request_from(
            Op::Lookup,
            RequestErrorKind::TimedOut,
            "sequence 7",
            beneath,
        );
        assert_eq!(e.request_kind(), Some(RequestErrorKind::TimedOut));
        assert_eq!(e.to_string(), "lookup timed out: sequence 7: pipe closed");
        let source = std::error::Error::source(&e).expect("the source is kept");
        assert_eq!(source.to_string(), "pipe closed");
        let plain = LogError::request(Op::Read, RequestErrorKind::ShuttingDown, "a replay");
        assert_eq!(
            plain.to_string(),
            "read stopped: the node is shutting down: a replay"
        );
        assert_eq!(LogError::NoJetStream.request_kind(), None);
    }

    #[test]
    fn version_gate() {
        assert!(check_version("2.10.0").is_ok());
        assert!(check_version("2.15.1").is_ok());
        assert!(check_version("3.0.0-beta").is_ok());
        assert!(check_version("2.9.25").is_err());
        assert!(check_version("").is_err());
        assert!(check_version("garbage").is_err());
    }

    #[test]
    fn ceil_keeps_exact_millis() {
        let t = DateTime::parse_from_rfc3339("2025-01-15T10:30:00.123Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(ceil_to_millis(t), t);
        let later = t + chrono::Duration::nanoseconds(1);
        assert_eq!(ceil_to_millis(later), t + chrono::Duration::milliseconds(1));
    }
}
