//! The `switchboard` command line: `serve`, `publish`, `replay`, `token`
//! and `projection`. Exit codes: 0 done; 1 the work failed (NATS, disk);
//! 2 bad arguments, settings or input (nothing was done).

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use serde_json::{json, Value};

use crate::channel::{Channel, Id};
use crate::event::parse_timestamp;
use crate::gateway::Limits;
use crate::log::{HistoryQuery, Log, StreamSettings};
use crate::settings::{self, File, Given, ServeSettings, SettingError, DEV_SECRET};
use crate::token::{dev_claims, Grant, Role, TokenKeys};

const AFTER_HELP: &str = "Settings come from, in order of precedence: command-line flags, \
SWITCHBOARD_* environment variables, the TOML file named by --config / SWITCHBOARD_CONFIG \
(keys are the flag names with underscores, e.g. `listen = \"0.0.0.0:8080\"`), then defaults.\n\n\
Exit codes: 0 done; 1 the work failed (NATS, disk); 2 bad arguments, settings or input.";

/// switchboard: a real-time chat event gateway on NATS JetStream.
#[derive(Parser, Debug)]
#[command(name = "switchboard", version, after_help = AFTER_HELP)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the gateway (WebSocket + HTTP API). Starts a local nats-server when no NATS URL is set.
    #[command(after_help = AFTER_HELP)]
    Serve(ServeArgs),
    /// Publish events: one from --type/--data, or JSON lines `{type, data, id?}` on stdin.
    #[command(after_help = AFTER_HELP)]
    Publish(PublishArgs),
    /// Audit replay of channels over a sequence or time range, as NDJSON envelopes or a summary.
    #[command(after_help = AFTER_HELP)]
    Replay(ReplayArgs),
    /// Mint a development JWT (HS256 with the configured secret) and print it.
    #[command(after_help = AFTER_HELP)]
    Token(TokenArgs),
    /// The membership projection: rebuild the snapshot, or check it against a fresh fold.
    #[command(after_help = AFTER_HELP)]
    Projection(ProjectionArgs),
}

/// Where the log is; shared by every command that reads or writes it.
#[derive(Args, Debug, Clone)]
pub struct LogArgs {
    /// TOML settings file.
    #[arg(long, env = "SWITCHBOARD_CONFIG")]
    pub config: Option<PathBuf>,
    /// NATS URL [default: a local nats-server under the data directory].
    #[arg(long, env = "SWITCHBOARD_NATS_URL")]
    pub nats_url: Option<String>,
    /// Data directory: sled files and the local nats-server's store [default: ./data].
    #[arg(long, env = "SWITCHBOARD_DATA_DIR")]
    pub data_dir: Option<String>,
    /// JetStream stream name [default: CHAT_EVENTS].
    #[arg(long, env = "SWITCHBOARD_STREAM")]
    pub stream: Option<String>,
    /// The stream's max age: 90s, 2h, 7d, ... [default: 7d].
    #[arg(long, env = "SWITCHBOARD_RETENTION")]
    pub retention: Option<String>,
    /// The stream's replicas [default: 1].
    #[arg(long, env = "SWITCHBOARD_REPLICAS")]
    pub replicas: Option<String>,
    /// The stream's duplicate window for idempotent publishing [default: 2m].
    #[arg(long, env = "SWITCHBOARD_DUPLICATE_WINDOW")]
    pub duplicate_window: Option<String>,
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    #[command(flatten)]
    pub log: LogArgs,
    /// HTTP and WebSocket address [default: 127.0.0.1:8080].
    #[arg(long, env = "SWITCHBOARD_LISTEN")]
    pub listen: Option<String>,
    /// HS256 secret for tokens (required unless --dev).
    #[arg(long, env = "SWITCHBOARD_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// Development mode: a built-in secret when none is set.
    #[arg(long, env = "SWITCHBOARD_DEV", num_args = 0..=1, default_missing_value = "true")]
    pub dev: Option<String>,
    /// Largest client frame in bytes; larger closes with 1009 [default: 65536].
    #[arg(long, env = "SWITCHBOARD_MAX_FRAME_BYTES")]
    pub max_frame_bytes: Option<String>,
    /// Events queued per connection before it reads the log at its own pace [default: 1024].
    #[arg(long, env = "SWITCHBOARD_SEND_QUEUE")]
    pub send_queue: Option<String>,
    /// A client that reads nothing this long is closed with 4008 [default: 60s].
    #[arg(long, env = "SWITCHBOARD_STALL_TIMEOUT")]
    pub stall_timeout: Option<String>,
    /// Server ping interval, announced in `hello` [default: 25s].
    #[arg(long, env = "SWITCHBOARD_HEARTBEAT")]
    pub heartbeat: Option<String>,
    /// Base reconnect delay announced in `hello` [default: 2s].
    #[arg(long, env = "SWITCHBOARD_RECONNECT_BASE")]
    pub reconnect_base: Option<String>,
    /// Bad frames allowed per minute before closing with 4029 [default: 20].
    #[arg(long, env = "SWITCHBOARD_BAD_FRAMES_PER_MINUTE")]
    pub bad_frames_per_minute: Option<String>,
    /// Typing frames per second per channel per connection [default: 2].
    #[arg(long, env = "SWITCHBOARD_TYPING_PER_SECOND")]
    pub typing_per_second: Option<String>,
    /// Subscriptions one connection may hold [default: 1024].
    #[arg(long, env = "SWITCHBOARD_MAX_SUBSCRIPTIONS")]
    pub max_subscriptions: Option<String>,
    /// How long a session outlives its last connection [default: 24h].
    #[arg(long, env = "SWITCHBOARD_SESSION_TTL")]
    pub session_ttl: Option<String>,
    /// How long shutdown waits for connections and tasks [default: 10s].
    #[arg(long, env = "SWITCHBOARD_SHUTDOWN_TIMEOUT")]
    pub shutdown_timeout: Option<String>,
}

#[derive(Args, Debug)]
pub struct PublishArgs {
    #[command(flatten)]
    pub log: LogArgs,
    /// Event type; without it, JSON lines `{type, data, id?}` are read from stdin.
    #[arg(long = "type")]
    pub kind: Option<String>,
    /// The event's data as JSON (with --type).
    #[arg(long)]
    pub data: Option<String>,
    /// The event id (a UUID); publishing the same id again stores it once.
    #[arg(long)]
    pub id: Option<String>,
}

#[derive(Args, Debug)]
pub struct ReplayArgs {
    #[command(flatten)]
    pub log: LogArgs,
    /// A channel: channel:<uuid>, user:<uuid> or global (repeat for several).
    #[arg(long, required = true)]
    pub channel: Vec<String>,
    /// Only events whose timestamp is at or after this RFC 3339 time.
    #[arg(long)]
    pub since: Option<String>,
    /// Only events whose timestamp is before this RFC 3339 time.
    #[arg(long)]
    pub until: Option<String>,
    /// Only events with seq greater than this.
    #[arg(long)]
    pub after_seq: Option<u64>,
    /// At most this many events.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Print counts by type instead of the events.
    #[arg(long)]
    pub summary: bool,
}

#[derive(Args, Debug)]
pub struct TokenArgs {
    /// The user id (UUID).
    #[arg(long)]
    pub sub: String,
    /// Channel ids the token grants, comma-separated, or `*`.
    #[arg(long)]
    pub channels: Option<String>,
    /// Roles, comma-separated: publisher, auditor.
    #[arg(long)]
    pub roles: Option<String>,
    /// Username shown with typing.
    #[arg(long)]
    pub name: Option<String>,
    /// Lifetime: 1h, 30m, 7d, ...
    #[arg(long, default_value = "1h")]
    pub ttl: String,
    /// HS256 secret.
    #[arg(long, env = "SWITCHBOARD_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// Use the development secret when none is set.
    #[arg(long, env = "SWITCHBOARD_DEV", num_args = 0..=1, default_missing_value = "true")]
    pub dev: Option<String>,
}

#[derive(Args, Debug)]
pub struct ProjectionArgs {
    #[command(subcommand)]
    pub action: ProjectionAction,
}

#[derive(Subcommand, Debug)]
pub enum ProjectionAction {
    /// Fold the projection afresh from the log and replace the snapshot (stop `serve` first).
    #[command(after_help = AFTER_HELP)]
    Rebuild(LogArgs),
    /// Compare the snapshot with a fresh fold up to the snapshot's sequence; exit 1 if they differ.
    #[command(after_help = AFTER_HELP)]
    Check(LogArgs),
}

/// How a command failed.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// Bad arguments, settings or input: exit 2.
    #[error("{0}")]
    Usage(String),
    /// The work failed: exit 1.
    #[error("{0:#}")]
    Work(#[from] anyhow::Error),
}

impl From<SettingError> for Failure {
    fn from(e: SettingError) -> Self {
        Failure::Usage(e.to_string())
    }
}

impl Failure {
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::Usage(_) => 2,
            Failure::Work(_) => 1,
        }
    }
}

const LOG_KEYS: &[&str] = &[
    "nats_url",
    "data_dir",
    "stream",
    "retention",
    "replicas",
    "duplicate_window",
];
const SERVE_KEYS: &[&str] = &[
    "listen",
    "jwt_secret",
    "dev",
    "max_frame_bytes",
    "send_queue",
    "stall_timeout",
    "heartbeat",
    "reconnect_base",
    "bad_frames_per_minute",
    "typing_per_second",
    "max_subscriptions",
    "session_ttl",
    "shutdown_timeout",
];

/// The log settings, resolved.
struct LogSettings {
    nats_url: Option<String>,
    data_dir: PathBuf,
    stream: StreamSettings,
}

fn resolve_log(args: &LogArgs, file: &File) -> Result<LogSettings, SettingError> {
    let get = |name: &'static str, value: &Option<String>| file.pick(Given { name, value });
    let defaults = StreamSettings::default();
    let nats_url = get("nats_url", &args.nats_url)?
        .filter(|s| !s.trim().is_empty())
        .map(|s| settings::nats_url(&s))
        .transpose()?;
    let data_dir =
        PathBuf::from(get("data_dir", &args.data_dir)?.unwrap_or_else(|| "./data".into()));
    let name = match get("stream", &args.stream)? {
        Some(s) => settings::stream_name(&s)?,
        None => defaults.name,
    };
    let retention = match get("retention", &args.retention)? {
        Some(s) => settings::duration("retention", &s)?,
        None => defaults.retention,
    };
    if retention < Duration::from_secs(1) {
        return Err(settings::error("retention", "must be at least 1s"));
    }
    let replicas = match get("replicas", &args.replicas)? {
        Some(s) => settings::number::<usize>("replicas", &s, 1)?,
        None => defaults.replicas,
    };
    let duplicate_window = match get("duplicate_window", &args.duplicate_window)? {
        Some(s) => settings::duration("duplicate_window", &s)?,
        None => defaults.duplicate_window,
    };
    // NATS refuses a duplicate window longer than the max age.
    let duplicate_window = duplicate_window.min(retention);
    Ok(LogSettings {
        nats_url,
        data_dir,
        stream: StreamSettings {
            name,
            retention,
            replicas,
            duplicate_window,
        },
    })
}

fn load_file(args: &LogArgs, known: &[&str]) -> Result<File, SettingError> {
    let file = File::load(args.config.as_deref())?;
    let unknown = file.unknown_keys(known);
    if !unknown.is_empty() {
        return Err(settings::error(
            "config",
            format!("unknown keys in the config file: {}", unknown.join(", ")),
        ));
    }
    Ok(file)
}

/// Every key a config file may hold: one file serves every command.
fn all_keys() -> Vec<&'static str> {
    LOG_KEYS.iter().chain(SERVE_KEYS).copied().collect()
}

/// Resolves every `serve` setting.
pub fn serve_settings(args: &ServeArgs) -> Result<ServeSettings, SettingError> {
    let file = load_file(&args.log, &all_keys())?;
    let log = resolve_log(&args.log, &file)?;
    let get = |name: &'static str, value: &Option<String>| file.pick(Given { name, value });
    let dur = |name: &'static str,
               value: &Option<String>,
               default: Duration|
     -> Result<Duration, SettingError> {
        match get(name, value)? {
            Some(s) => settings::duration(name, &s),
            None => Ok(default),
        }
    };
    let num = |name: &'static str,
               value: &Option<String>,
               default: usize,
               min: usize|
     -> Result<usize, SettingError> {
        match get(name, value)? {
            Some(s) => settings::number(name, &s, min),
            None => Ok(default),
        }
    };
    let listen = get("listen", &args.listen)?.unwrap_or_else(|| "127.0.0.1:8080".into());
    let listen = listen.parse().map_err(|_| {
        settings::error(
            "listen",
            format!("`{listen}` is not an address like 127.0.0.1:8080"),
        )
    })?;
    let dev = match get("dev", &args.dev)? {
        Some(s) => settings::boolean("dev", &s)?,
        None => false,
    };
    let jwt_secret = match get("jwt_secret", &args.jwt_secret)?.filter(|s| !s.is_empty()) {
        Some(secret) => secret,
        None if dev => DEV_SECRET.to_string(),
        None => {
            return Err(settings::error(
                "jwt_secret",
                "not set: serve refuses to start without a secret (or pass --dev for a development one)",
            ))
        }
    };
    let d = Limits::default();
    let limits = Limits {
        max_frame_bytes: num(
            "max_frame_bytes",
            &args.max_frame_bytes,
            d.max_frame_bytes,
            256,
        )?,
        send_queue: num("send_queue", &args.send_queue, d.send_queue, 1)?,
        stall_timeout: dur("stall_timeout", &args.stall_timeout, d.stall_timeout)?,
        heartbeat: dur("heartbeat", &args.heartbeat, d.heartbeat)?,
        reconnect_base: dur("reconnect_base", &args.reconnect_base, d.reconnect_base)?,
        bad_frames_per_minute: num(
            "bad_frames_per_minute",
            &args.bad_frames_per_minute,
            d.bad_frames_per_minute,
            0,
        )?,
        typing_per_second: num(
            "typing_per_second",
            &args.typing_per_second,
            d.typing_per_second as usize,
            0,
        )?
        .min(u32::MAX as usize) as u32,
        max_subscriptions: num(
            "max_subscriptions",
            &args.max_subscriptions,
            d.max_subscriptions,
            1,
        )?,
    };
    if limits.heartbeat < Duration::from_millis(1) {
        return Err(settings::error("heartbeat", "must be at least 1ms"));
    }
    if limits.stall_timeout.is_zero() {
        return Err(settings::error("stall_timeout", "must be more than zero"));
    }
    Ok(ServeSettings {
        listen,
        nats_url: log.nats_url,
        data_dir: log.data_dir,
        jwt_secret,
        dev,
        stream: log.stream,
        limits,
        session_ttl: dur(
            "session_ttl",
            &args.session_ttl,
            Duration::from_secs(24 * 3600),
        )?,
        shutdown_timeout: dur(
            "shutdown_timeout",
            &args.shutdown_timeout,
            Duration::from_secs(10),
        )?,
    })
}

/// Connects to the configured NATS, or to the one a local `serve` started.
async fn connect(args: &LogArgs) -> Result<Log, Failure> {
    let file = load_file(args, &all_keys())?;
    let settings = resolve_log(args, &file)?;
    let url = match settings.nats_url {
        Some(url) => url,
        None => {
            let path = settings::local_url_file(&settings.data_dir);
            match std::fs::read_to_string(&path) {
                Ok(url) => url.trim().to_string(),
                Err(_) => {
                    return Err(Failure::Usage(format!(
                        "no NATS URL: set SWITCHBOARD_NATS_URL (or --nats-url), or run `switchboard serve` \
                         with the same data directory so its local nats-server is found ({} is missing)",
                        path.display()
                    )))
                }
            }
        }
    };
    Log::open(&url, settings.stream)
        .await
        .map_err(|e| Failure::Work(e.into()))
}

pub async fn run(cli: Cli) -> Result<(), Failure> {
    match cli.command {
        Command::Serve(args) => {
            let settings = serve_settings(&args)?;
            if settings.dev && args.jwt_secret.is_none() {
                tracing::warn!("--dev: using the built-in development secret");
            }
            crate::server::serve(settings).await.map_err(Failure::Work)
        }
        Command::Publish(args) => publish(args).await,
        Command::Replay(args) => replay(args).await,
        Command::Token(args) => token(args),
        Command::Projection(args) => projection(args).await,
    }
}

async fn publish(args: PublishArgs) -> Result<(), Failure> {
    let bodies: Vec<Value> =
        match &args.kind {
            Some(kind) => {
                let data: Value = match &args.data {
                    Some(d) => serde_json::from_str(d)
                        .map_err(|e| Failure::Usage(format!("--data is not JSON: {e}")))?,
                    None => return Err(Failure::Usage("--type needs --data".into())),
                };
                let mut body = json!({"type": kind, "data": data});
                if let Some(id) = &args.id {
                    body["id"] = Value::String(id.clone());
                }
                vec![body]
            }
            None => {
                if args.data.is_some() || args.id.is_some() {
                    return Err(Failure::Usage("--data and --id go with --type".into()));
                }
                let mut bodies = Vec::new();
                for (n, line) in std::io::stdin().lock().lines().enumerate() {
                    let line = line.map_err(|e| Failure::Usage(format!("reading stdin: {e}")))?;
                    if line.trim().is_empty() {
                        continue;
                    }
                    bodies.push(serde_json::from_str(&line).map_err(|e| {
                        Failure::Usage(format!("stdin line {}: not JSON: {e}", n + 1))
                    })?);
                }
                if bodies.is_empty() {
                    return Err(Failure::Usage(
                        "nothing to publish: give --type and --data, or JSON lines on stdin".into(),
                    ));
                }
                bodies
            }
        };
    // Validate everything before storing anything.
    let events = bodies
        .iter()
        .enumerate()
        .map(|(n, body)| {
            crate::schema::event_from_body(body).map_err(|e| {
                if bodies.len() == 1 {
                    Failure::Usage(format!("invalid event: {e}"))
                } else {
                    Failure::Usage(format!("event {}: invalid: {e}", n + 1))
                }
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let log = connect(&args.log).await?;
    let mut out = std::io::stdout().lock();
    // One at a time, in input order: lines such as a join and then a ban
    // must be stored in the order given. (For throughput, many publishers
    // or `Log::store` from many tasks keep many acks in flight.)
    for event in events {
        let receipt = log
            .publish(&event)
            .await
            .map_err(|e| Failure::Work(e.into()))?;
        writeln!(out, "{}", receipt.to_json()).map_err(|e| Failure::Work(e.into()))?;
    }
    Ok(())
}

async fn replay(args: ReplayArgs) -> Result<(), Failure> {
    let channels = args
        .channel
        .iter()
        .map(|c| Channel::parse(c).map_err(|e| Failure::Usage(format!("--channel: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    let time = |name: &str, v: &Option<String>| {
        v.as_deref()
            .map(|s| {
                parse_timestamp(s).map_err(|e| {
                    Failure::Usage(format!("--{name}: `{s}` is not an RFC 3339 time: {e}"))
                })
            })
            .transpose()
    };
    let query = HistoryQuery {
        channels,
        after_seq: args.after_seq,
        since: time("since", &args.since)?,
        until: time("until", &args.until)?,
        limit: args.limit,
    };
    if args.limit == Some(0) {
        return Err(Failure::Usage("--limit must be at least 1".into()));
    }
    let log = connect(&args.log).await?;
    let mut history = log
        .history(&query)
        .await
        .map_err(|e| Failure::Work(e.into()))?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut counts: std::collections::BTreeMap<&'static str, u64> = Default::default();
    let (mut total, mut invalid, mut first, mut last) = (0u64, 0u64, None, None);
    while let Some(item) = history.next().await {
        let item = item.map_err(|e| Failure::Work(e.into()))?;
        let event = match item.event {
            Ok(event) => event,
            Err(reason) => {
                invalid += 1;
                tracing::warn!(seq = item.seq, subject = %item.subject, %reason, "skipping an invalid stored event");
                continue;
            }
        };
        total += 1;
        first.get_or_insert(event.seq);
        last = Some(event.seq);
        if args.summary {
            *counts.entry(event.data.kind().as_str()).or_default() += 1;
        } else {
            out.write_all(&event.encode())
                .and_then(|()| out.write_all(b"\n"))
                .map_err(|e| Failure::Work(e.into()))?;
        }
    }
    if args.summary {
        let summary = json!({
            "events": total,
            "by_type": counts,
            "first_seq": first,
            "last_seq": last,
            "invalid": invalid,
        });
        writeln!(out, "{summary}").map_err(|e| Failure::Work(e.into()))?;
    }
    out.flush().map_err(|e| Failure::Work(e.into()))?;
    Ok(())
}

fn token(args: TokenArgs) -> Result<(), Failure> {
    let sub = Id::parse(&args.sub).map_err(|e| Failure::Usage(format!("--sub: {e}")))?;
    let channels = match args.channels.as_deref().map(str::trim) {
        None | Some("") => Grant::None,
        Some("*") => Grant::All,
        Some(list) => Grant::Some(
            list.split(',')
                .map(|c| {
                    let c = c.trim();
                    let c = c.strip_prefix("channel:").unwrap_or(c);
                    Id::parse(c).map_err(|e| Failure::Usage(format!("--channels: {e}")))
                })
                .collect::<Result<_, _>>()?,
        ),
    };
    let roles = match args.roles.as_deref() {
        None => vec![],
        Some(list) => list
            .split(',')
            .filter(|r| !r.trim().is_empty())
            .map(|r| match r.trim() {
                "publisher" => Ok(Role::Publisher),
                "auditor" => Ok(Role::Auditor),
                other => Err(Failure::Usage(format!(
                    "--roles: unknown role `{other}` (publisher, auditor)"
                ))),
            })
            .collect::<Result<_, _>>()?,
    };
    let ttl = settings::duration("ttl", &args.ttl)?;
    let dev = args
        .dev
        .as_deref()
        .map(|v| settings::boolean("dev", v))
        .transpose()?
        .unwrap_or(false);
    let secret = match args.jwt_secret.filter(|s| !s.is_empty()) {
        Some(s) => s,
        None if dev => DEV_SECRET.to_string(),
        None => {
            return Err(Failure::Usage(
                "no secret: set SWITCHBOARD_JWT_SECRET (or --jwt-secret), or pass --dev".into(),
            ))
        }
    };
    let claims = dev_claims(sub, ttl, args.name, channels, roles);
    let token = TokenKeys::hs256(secret.as_bytes())
        .mint(&claims)
        .map_err(|e| Failure::Work(e.into()))?;
    println!("{token}");
    Ok(())
}

async fn projection(args: ProjectionArgs) -> Result<(), Failure> {
    use crate::projection::{diff, Projection};
    let (ProjectionAction::Rebuild(log_args) | ProjectionAction::Check(log_args)) = &args.action;
    let file = load_file(log_args, &all_keys())?;
    let data_dir = resolve_log(log_args, &file)?.data_dir;
    let log = connect(log_args).await?;
    let store = crate::store::Store::open(&data_dir.join("sled")).map_err(|e| {
        Failure::Work(anyhow::anyhow!(
            "cannot open the store in {} (is `serve` running? stop it first): {e}",
            data_dir.display()
        ))
    })?;
    let work = |e: crate::log::LogError| Failure::Work(e.into());
    match args.action {
        ProjectionAction::Rebuild(_) => {
            let started = std::time::Instant::now();
            let until = log.extent().await.map_err(work)?.last_seq;
            let mut fresh = Projection::default();
            let folded = fresh.catch_up(&log, until).await.map_err(work)?;
            store
                .put_snapshot(&fresh.snapshot())
                .and_then(|()| store.flush())
                .map_err(|e| Failure::Work(e.into()))?;
            let (members, banned, deleted) = fresh.len();
            println!(
                "{}",
                json!({"last_seq": fresh.last_seq, "folded": folded, "members": members,
                       "banned": banned, "deleted_channels": deleted,
                       "ms": started.elapsed().as_millis() as u64})
            );
            Ok(())
        }
        ProjectionAction::Check(_) => {
            let snapshot = store
                .snapshot()
                .map_err(|e| Failure::Work(e.into()))?
                .unwrap_or_default();
            let mut fresh = Projection::default();
            fresh
                .catch_up(&log, snapshot.last_seq)
                .await
                .map_err(work)?;
            let differences = diff(&snapshot, &fresh.snapshot());
            if differences.is_empty() {
                println!(
                    "projection snapshot matches a fresh fold up to seq {}",
                    snapshot.last_seq
                );
                Ok(())
            } else {
                for line in &differences {
                    println!("{line}");
                }
                Err(Failure::Work(anyhow::anyhow!(
                    "{} differences between the snapshot and a fresh fold",
                    differences.len()
                )))
            }
        }
    }
}
