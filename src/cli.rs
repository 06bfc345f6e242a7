//! The `switchboard` command line: `serve`, `publish`, `replay`, `token`,
//! `projection` and `tail` (its client loop is [`crate::tail`]). Exit codes:
//! 0 done; 1 the work failed (NATS, disk); 2 bad arguments, settings or
//! input (nothing was done).
//!
//! Over 500 lines on purpose: the commands' arguments and their short
//! bodies (each calls into the modules that do the work) read as one
//! manual; the settings themselves are declared in `settings`.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use serde_json::json;

pub use crate::failure::{causes, Failure};

use crate::channel::{Channel, Id};
use crate::event::parse_timestamp;
use crate::log::{HistoryQuery, Log};
use crate::settings::{
    self, FileSettings, LimitFlags, LogFlags, LogSettings, ServeFlags, ServeSettings, SettingError,
    DEV_SECRET,
};
use crate::token::{dev_claims, Grant, Role, Signer};

/// Every command's help ends with the precedence of settings and the exit codes.
fn after_help() -> String {
    format!(
        "{}\n\nExit codes: 0 done; 1 the work failed (NATS, disk); 2 bad arguments, settings or input.",
        settings::PRECEDENCE
    )
}

/// switchboard: a real-time chat event gateway on NATS JetStream.
#[derive(Parser, Debug)]
#[command(name = "switchboard", version, after_help = after_help())]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

// Parsed once per process: the size of `serve`'s many settings costs nothing.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the gateway (WebSocket + HTTP API). Starts a local nats-server when no NATS URL is set.
    #[command(after_help = after_help())]
    Serve(Box<ServeArgs>),
    /// Publish events: one from --type/--data, or JSON lines `{type, data, id?}` on stdin.
    #[command(after_help = after_help())]
    Publish(PublishArgs),
    /// Audit replay of channels over a sequence or time range, as NDJSON envelopes or a summary.
    #[command(after_help = after_help())]
    Replay(ReplayArgs),
    /// Mint a development JWT (HS256 with the configured secret) and print it.
    #[command(after_help = after_help())]
    Token(TokenArgs),
    /// The membership projection: rebuild the snapshot, or check it against a fresh fold.
    #[command(after_help = after_help())]
    Projection(ProjectionArgs),
    /// Follow channels over the gateway's WebSocket: print every frame (events; presence with --presence) as a JSON line; reconnect and resume.
    #[command(after_help = crate::tail::AFTER_HELP)]
    Tail(crate::tail::TailArgs),
    /// Event types added without a rebuild: check a catalog directory, or print its AsyncAPI document.
    #[command(subcommand)]
    Catalog(CatalogCommand),
}

/// `switchboard catalog`.
#[derive(Subcommand, Debug)]
pub enum CatalogCommand {
    /// Check a catalog directory as `serve` would load it: every file valid
    /// (exit 0, listing the types), or the first bad one named with the
    /// reason (exit 1).
    Check {
        /// The directory of `<type>.json` schemas.
        dir: std::path::PathBuf,
    },
    /// Print the AsyncAPI 3.0 document (JSON; YAML with --yaml): the
    /// built-in protocol, which is the repository's asyncapi.yaml, plus a
    /// catalog directory's added types. Its payloads refer to the
    /// repository's schemas/ (./schemas/...).
    Asyncapi {
        /// The directory of `<type>.json` schemas (none: the built-in types only).
        dir: Option<std::path::PathBuf>,
        /// YAML, as asyncapi.yaml is written, instead of JSON.
        #[arg(long)]
        yaml: bool,
    },
}

/// Where the log is; shared by every command that reads or writes it.
#[derive(Args, Debug, Clone)]
pub struct LogArgs {
    #[arg(long, env = settings::CONFIG.env, help = settings::CONFIG.help())]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub settings: LogFlags,
}

impl LogArgs {
    /// The file named by `--config`, if any.
    pub fn file(&self) -> Result<FileSettings, SettingError> {
        FileSettings::load(self.config.as_deref())
    }

    /// The log's settings, resolved.
    pub fn resolve(&self) -> Result<LogSettings, SettingError> {
        LogSettings::resolve(&self.settings, &self.file()?)
    }
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    #[command(flatten)]
    pub log: LogArgs,
    #[command(flatten)]
    pub serve: ServeFlags,
    #[command(flatten)]
    pub limits: LimitFlags,
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
    /// Roles, comma-separated: publisher, auditor, admin.
    #[arg(long)]
    pub roles: Option<String>,
    /// Username shown with typing.
    #[arg(long)]
    pub name: Option<String>,
    /// Lifetime: 1h, 30m, 7d, ... (at least 1s: a token must not be born expired)
    #[arg(long, default_value = "1h", value_parser = settings::parser::<Duration>(Some(("1s", "3650d"))))]
    pub ttl: Duration,
    /// HS256 secret.
    #[arg(long, env = "SWITCHBOARD_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// Sign with the private key in this PEM file (RSA, EC P-256/P-384 or
    /// Ed25519) instead of a secret.
    #[arg(long, value_name = "FILE")]
    pub key: Option<std::path::PathBuf>,
    /// The algorithm: HS256/384/512 with a secret (HS256 by default);
    /// RS256/384/512 or PS256/384/512 with an RSA key (RS256 by default),
    /// ES256 or ES384 with an EC key, EdDSA with an Ed25519 key.
    #[arg(long)]
    pub alg: Option<String>,
    /// The key id to put in the token's header (`kid`).
    #[arg(long)]
    pub kid: Option<String>,
    /// The `iss` claim.
    #[arg(long)]
    pub issuer: Option<String>,
    /// The `aud` claim (one audience).
    #[arg(long)]
    pub audience: Option<String>,
    /// Use the development secret when none is set.
    #[arg(long, env = "SWITCHBOARD_DEV", num_args = 0..=1, default_missing_value = "true",
          value_parser = settings::parser::<bool>(None))]
    pub dev: Option<bool>,
}

#[derive(Args, Debug)]
pub struct ProjectionArgs {
    #[command(subcommand)]
    pub action: ProjectionAction,
}

#[derive(Subcommand, Debug)]
pub enum ProjectionAction {
    /// Fold the projection afresh from the log and replace the snapshot (stop `serve` first;
    /// starts the data directory's nats-server when no NATS URL is set).
    #[command(after_help = after_help())]
    Rebuild(LogArgs),
    /// Compare the snapshot with a fresh fold up to the snapshot's sequence; exit 1 if they
    /// differ. Works beside a running `serve`; with none, starts the data directory's nats-server.
    #[command(after_help = after_help())]
    Check(LogArgs),
}

/// Resolves every `serve` setting.
pub fn serve_settings(args: &ServeArgs) -> Result<ServeSettings, SettingError> {
    let file = args.log.file()?;
    ServeSettings::resolve(&args.log.settings, &args.serve, &args.limits, &file)
}

/// How the command writes its log: `serve`'s `log_format` (its flag,
/// variable or file key), text for every other command.
pub fn log_format(cli: &Cli) -> Result<crate::diagnostics::LogFormat, SettingError> {
    match &cli.command {
        Command::Serve(args) => {
            let file = args.log.file()?;
            Ok(settings::ServeOptions::resolve(&args.serve, &file)?.log_format)
        }
        _ => Ok(crate::diagnostics::LogFormat::Text),
    }
}

/// Reaches the log for a tool: the configured NATS, or the data
/// directory's (see [`crate::tool_nats`]).
async fn connect(args: &LogArgs) -> Result<crate::tool_nats::ToolLog, Failure> {
    crate::tool_nats::open(&args.resolve()?, None).await
}

pub async fn run(cli: Cli) -> Result<(), Failure> {
    match cli.command {
        Command::Serve(args) => {
            install_catalog(&args.log)?;
            crate::console::warn_if_not_built();
            let settings = serve_settings(&args)?;
            if settings.dev && settings.tokens.secrets == [DEV_SECRET] {
                tracing::warn!("--dev: using the built-in development secret");
            }
            crate::server::serve(settings).await.map_err(Failure::Work)
        }
        Command::Publish(args) => publish(args).await,
        Command::Replay(args) => replay(args).await,
        Command::Token(args) => token(args),
        Command::Projection(args) => projection(args).await,
        Command::Tail(args) => crate::tail::run(args.options()?).await,
        Command::Catalog(command) => catalog(command),
    }
}

/// Loads the configured catalog directory, if any, and makes it the
/// process's: before anything decodes an event.
fn install_catalog(args: &LogArgs) -> Result<(), Failure> {
    let settings = args.resolve()?;
    let Some(dir) = settings.catalog_dir.filter(|d| !d.is_empty()) else {
        return Ok(());
    };
    let catalog = crate::catalog::load(std::path::Path::new(&dir))
        .map_err(|e| Failure::Usage(e.to_string()))?;
    tracing::info!(dir, types = catalog.added().len(), "event catalog loaded");
    crate::catalog::install(catalog);
    Ok(())
}

/// `switchboard catalog`: checks a catalog directory, or prints the
/// AsyncAPI document of one.
fn catalog(command: CatalogCommand) -> Result<(), Failure> {
    match command {
        CatalogCommand::Check { dir } => {
            let catalog = crate::catalog::load(&dir).map_err(|e| Failure::Work(e.into()))?;
            for added in catalog.added() {
                let routes: Vec<serde_json::Value> =
                    added.routes.iter().map(|r| r.json()).collect();
                println!(
                    "{}: {}, routes {}",
                    added.name,
                    if added.stored { "stored" } else { "ephemeral" },
                    serde_json::Value::from(routes)
                );
            }
            println!(
                "{}: {} added types, all valid",
                dir.display(),
                catalog.added().len()
            );
            Ok(())
        }
        CatalogCommand::Asyncapi { dir, yaml } => {
            let catalog = match dir {
                Some(dir) => crate::catalog::load(&dir).map_err(|e| Failure::Work(e.into()))?,
                None => crate::catalog::Catalog::default(),
            };
            if yaml {
                print!("{}", crate::catalog::asyncapi::yaml(&catalog));
                return Ok(());
            }
            let document = crate::catalog::asyncapi::document(&catalog);
            let text =
                serde_json::to_string_pretty(&document).map_err(|e| Failure::Work(e.into()))?;
            println!("{text}");
            Ok(())
        }
    }
}

async fn publish(args: PublishArgs) -> Result<(), Failure> {
    install_catalog(&args.log)?;
    // Bodies stay text, so that `data` is stored as given (README "Publishers can be newer than the gateway").
    let bodies: Vec<String> = match &args.kind {
        Some(kind) => {
            let data = match &args.data {
                Some(d) => serde_json::from_str::<&serde_json::value::RawValue>(d)
                    .map_err(|e| Failure::Usage(format!("--data is not JSON: {e}")))?,
                None => return Err(Failure::Usage("--type needs --data".into())),
            };
            let mut body = format!(r#"{{"type":{},"data":{}"#, json!(kind), data.get());
            if let Some(id) = &args.id {
                body.push_str(&format!(r#","id":{}"#, json!(id)));
            }
            body.push('}');
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
                serde_json::from_str::<serde::de::IgnoredAny>(&line)
                    .map_err(|e| Failure::Usage(format!("stdin line {}: not JSON: {e}", n + 1)))?;
                bodies.push(line);
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
            crate::schema::event_from_body(body.as_bytes()).map_err(|e| {
                if bodies.len() == 1 {
                    Failure::Usage(format!("invalid event: {e}"))
                } else {
                    Failure::Usage(format!("event {}: invalid: {e}", n + 1))
                }
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let reached = connect(&args.log).await?;
    let result = publish_events(&reached.log, events).await;
    reached.close().await;
    result
}

async fn publish_events(log: &Log, events: Vec<crate::event::Event>) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    // One at a time, in input order: lines such as a join and then a ban
    // must be stored in the order given. (For throughput, many publishers
    // or `Log::store` from many tasks keep many acks in flight.)
    for event in events {
        let reply = if event.kind().is_stored() {
            let receipt = log
                .publish(&event)
                .await
                .map_err(|e| Failure::Work(e.into()))?;
            receipt.to_json()
        } else {
            // An ephemeral added type: live only, on core NATS.
            log.publish_ephemeral(&event)
                .await
                .map_err(|e| Failure::Work(e.into()))?;
            json!({"id": event.id, "stored": false})
        };
        writeln!(out, "{reply}").map_err(|e| Failure::Work(e.into()))?;
    }
    Ok(())
}

async fn replay(args: ReplayArgs) -> Result<(), Failure> {
    install_catalog(&args.log)?;
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
    let reached = connect(&args.log).await?;
    let result = replay_history(&reached.log, &query, args.summary).await;
    reached.close().await;
    result
}

async fn replay_history(log: &Log, query: &HistoryQuery, summary: bool) -> Result<(), Failure> {
    let mut history = log
        .history(query)
        .await
        .map_err(|e| Failure::Work(e.into()))?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut counts: std::collections::BTreeMap<&'static str, u64> = Default::default();
    let (mut total, mut invalid, mut first, mut last) = (0u64, 0u64, None, None);
    let mut unknown: std::collections::BTreeMap<String, u64> = Default::default();
    while let Some(item) = history.next().await {
        let item = item.map_err(|e| Failure::Work(e.into()))?;
        let skipped_type = item.unknown_type().map(str::to_string);
        let Some(event) = item.into_event() else {
            match skipped_type {
                Some(kind) => *unknown.entry(kind).or_default() += 1,
                None => invalid += 1,
            }
            continue;
        };
        total += 1;
        first.get_or_insert(event.seq);
        last = Some(event.seq);
        if summary {
            *counts.entry(event.data.kind().as_str()).or_default() += 1;
        } else {
            out.write_all(&event.encode())
                .and_then(|()| out.write_all(b"\n"))
                .map_err(|e| Failure::Work(e.into()))?;
        }
    }
    if summary {
        let summary = json!({
            "events": total,
            "by_type": counts,
            "first_seq": first,
            "last_seq": last,
            "invalid": invalid,
            "unknown_types": unknown,
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
            .map(|r| {
                Role::parse(r.trim()).ok_or_else(|| {
                    Failure::Usage(format!(
                        "--roles: unknown role `{}` (publisher, auditor, admin)",
                        r.trim()
                    ))
                })
            })
            .collect::<Result<_, _>>()?,
    };
    let alg = match args.alg.as_deref() {
        None => None,
        Some(name) => Some(crate::token::algorithm(name).ok_or_else(|| {
            Failure::Usage(format!(
                "--alg: `{name}` is not one of HS256, HS384, HS512, RS256, RS384, RS512, \
                 PS256, PS384, PS512, ES256, ES384, EdDSA"
            ))
        })?),
    };
    let signer = match &args.key {
        Some(path) => {
            Signer::private_pem(path, alg).map_err(|e| Failure::Usage(format!("--key: {e}")))?
        }
        None => {
            let dev = args.dev.unwrap_or(false);
            // Of several secrets (a rotation), the first signs.
            let secret =
                match args
                    .jwt_secret
                    .as_deref()
                    .and_then(|s| s.split(',').map(str::trim).find(|s| !s.is_empty()))
                {
                    Some(s) => s.to_string(),
                    None if dev => DEV_SECRET.to_string(),
                    None => return Err(Failure::Usage(
                        "no key: set SWITCHBOARD_JWT_SECRET (or --jwt-secret), give --key FILE, \
                         or pass --dev"
                            .into(),
                    )),
                };
            let alg = alg.unwrap_or(jsonwebtoken::Algorithm::HS256);
            Signer::secret(secret.as_bytes(), alg)
                .map_err(|e| Failure::Usage(format!("--alg: {e}")))?
        }
    }
    .with_kid(args.kid);
    let mut extra = serde_json::Map::new();
    if let Some(iss) = args.issuer {
        extra.insert("iss".into(), iss.into());
    }
    if let Some(aud) = args.audience {
        extra.insert("aud".into(), aud.into());
    }
    let claims = dev_claims(sub, args.ttl, args.name, channels, roles);
    let token = signer
        .mint_with(&claims, extra)
        .map_err(|e| Failure::Work(e.into()))?;
    println!("{token}");
    Ok(())
}

async fn projection(args: ProjectionArgs) -> Result<(), Failure> {
    use crate::data_dir::{DataDirError, DataDirLock};
    let (ProjectionAction::Rebuild(log_args) | ProjectionAction::Check(log_args)) = &args.action;
    install_catalog(log_args)?;
    let rebuild = matches!(args.action, ProjectionAction::Rebuild(_));
    let settings = log_args.resolve()?;
    let data_dir = settings.data_dir.clone();
    let sled_dir = data_dir.join("sled");
    // With no gateway on the data directory, it is ours: its store, and its
    // local nats-server if no NATS URL is set. With one, `check` reads the
    // snapshot file beside its store and the NATS it uses; `rebuild` waits.
    let held = match DataDirLock::take(&data_dir) {
        Ok(lock) => Some(lock),
        Err(busy @ DataDirError::Busy { .. }) if rebuild => {
            return Err(Failure::Usage(format!(
                "{busy}: stop it before `projection rebuild` (a running gateway keeps \
                 and snapshots its own projection; `projection check` works while it runs)"
            )))
        }
        Err(DataDirError::Busy { .. }) => None,
        Err(e) => return Err(Failure::Work(e.into())),
    };
    // Without a NATS URL: the data directory's nats-server, which the tool
    // starts itself when no `serve` holds the directory.
    let reached = crate::tool_nats::open(&settings, held).await?;
    let own_store = reached.lock.is_some();
    let result = fold_and_compare(&reached.log, &sled_dir, own_store, rebuild).await;
    reached.close().await;
    result
}

/// `projection rebuild` (writes the snapshot) or `check` (compares it with a
/// fresh fold); `own_store`: no gateway holds the data directory.
async fn fold_and_compare(
    log: &Log,
    sled_dir: &std::path::Path,
    own_store: bool,
    rebuild: bool,
) -> Result<(), Failure> {
    use crate::projection::{diff, Projection};
    let work = |e: crate::log::LogError| Failure::Work(e.into());
    let store_error = |e: crate::store::StoreError| Failure::Work(e.into());
    if rebuild {
        let store = crate::store::Store::open(sled_dir).map_err(store_error)?;
        let started = std::time::Instant::now();
        let until = log.extent().await.map_err(work)?.last_seq;
        let mut fresh = Projection::default();
        let folded = log.fold_into(&mut fresh, until).await.map_err(work)?;
        store
            .put_snapshot(&fresh.snapshot())
            .and_then(|()| store.flush())
            .map_err(store_error)?;
        let (members, banned, deleted) = fresh.len();
        println!(
            "{}",
            json!({"last_seq": fresh.last_seq, "folded": folded, "members": members,
                   "banned": banned, "deleted_channels": deleted,
                   "ms": started.elapsed().as_millis() as u64})
        );
        return Ok(());
    }
    let snapshot = if own_store {
        crate::store::Store::open(sled_dir)
            .and_then(|store| store.snapshot())
            .map_err(store_error)?
    } else {
        crate::store::Store::read_snapshot_file(sled_dir).map_err(store_error)?
    }
    .unwrap_or_default();
    let mut fresh = Projection::default();
    log.fold_into(&mut fresh, snapshot.last_seq)
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
