//! The NATS the tools (`publish`, `replay`, `projection`) reach the log
//! on: the configured URL, or else the data directory's own nats-server.
//! One path for every tool.
//!
//! Without a NATS URL:
//!
//! - a `serve` holds the data directory: the nats-server it recorded in
//!   `<data-dir>/nats/url` (the one it started);
//! - none does: the recorded server while it still answers (a `serve`
//!   killed without its nats-server), else a nats-server started by the
//!   tool on the data directory's store (`<data-dir>/nats`), stopped when
//!   the tool ends. The tool holds the data directory meanwhile, so no
//!   `serve` starts a second nats-server on the same store.
//!
//! When neither can be had, the error says what to set or to do.

use std::path::Path;

use crate::data_dir::{DataDirError, DataDirLock};
use crate::failure::Failure;
use crate::local_nats::NatsServer;
use crate::log::{Log, LogError};
use crate::settings::{local_url_file, LogSettings};

/// The log as a tool reaches it, with what it holds meanwhile.
pub struct ToolLog {
    pub log: Log,
    /// The data directory's lock, when the tool holds it (no `serve` does).
    pub lock: Option<DataDirLock>,
    /// The nats-server the tool started on the data directory's store.
    server: Option<NatsServer>,
}

impl ToolLog {
    /// Closes the connection and stops the nats-server the tool started, if
    /// any (cleanly: SIGTERM, then SIGKILL after its grace).
    pub async fn close(mut self) {
        self.log.close().await;
        if let Some(server) = self.server.as_mut() {
            server.terminate().await;
        }
    }
}

/// Reaches the log for a tool. `held`: the data directory's lock when the
/// caller already took it (`projection`); without it, it is taken here
/// when no NATS URL is set and the directory exists.
pub async fn open(settings: &LogSettings, held: Option<DataDirLock>) -> Result<ToolLog, Failure> {
    let stream = settings.stream_settings();
    if let Some(url) = &settings.nats_url {
        let log = Log::open(&url.0, stream).await.map_err(work)?;
        return Ok(ToolLog {
            log,
            lock: held,
            server: None,
        });
    }
    let dir = settings.data_dir.as_path();
    let url_file = local_url_file(dir);
    let recorded = std::fs::read_to_string(&url_file)
        .ok()
        .map(|url| url.trim().to_string())
        .filter(|url| !url.is_empty());
    let lock = match held {
        Some(lock) => Some(lock),
        None if dir.is_dir() => match DataDirLock::take(dir) {
            Ok(lock) => Some(lock),
            Err(DataDirError::Busy { pid, .. }) => {
                return beside_serve(settings, recorded, &pid).await
            }
            Err(e) => return Err(Failure::Work(e.into())),
        },
        None => None,
    };
    // No `serve` holds the directory: its recorded server, if alive.
    let mut gone = None;
    if let Some(url) = recorded {
        match Log::open(&url, stream.clone()).await {
            Ok(log) => {
                return Ok(ToolLog {
                    log,
                    lock,
                    server: None,
                })
            }
            Err(e) if is_dead(&e) => gone = Some(url),
            Err(e) => return Err(work(e)),
        }
    }
    let store = dir.join("nats");
    let lock = match lock {
        Some(lock) if store.is_dir() => lock,
        _ => return Err(no_server(dir, &url_file, gone.as_deref())),
    };
    if let Some(url) = &gone {
        tracing::warn!(
            recorded = %url,
            store = %store.display(),
            "the nats-server recorded in {} is gone (the `serve` that started it stopped); \
             starting one on the data directory's store for this command",
            url_file.display()
        );
    }
    let server = NatsServer::start(&store).map_err(|e| {
        Failure::Work(anyhow::Error::new(e).context(format!(
            "no `serve` runs on {} and its store {} could not be served by a nats-server \
             of this command's own",
            dir.display(),
            store.display()
        )))
    })?;
    let log = match Log::open(&server.url(), stream).await {
        Ok(log) => log,
        Err(e) => {
            let mut server = server;
            server.terminate().await;
            return Err(work(e));
        }
    };
    Ok(ToolLog {
        log,
        lock: Some(lock),
        server: Some(server),
    })
}

/// A `serve` (pid `pid`) holds the data directory: the nats-server it
/// recorded, which must answer; its store is that gateway's, never the
/// tool's to serve.
async fn beside_serve(
    settings: &LogSettings,
    recorded: Option<String>,
    pid: &str,
) -> Result<ToolLog, Failure> {
    let dir = settings.data_dir.display();
    let url_file = local_url_file(&settings.data_dir);
    let Some(url) = recorded else {
        return Err(Failure::Usage(format!(
            "no NATS URL: the switchboard using {dir} (pid {pid}) recorded no nats-server of \
             its own in {}, so it runs on a NATS URL it was given: pass the same URL with \
             --nats-url or SWITCHBOARD_NATS_URL",
            url_file.display()
        )));
    };
    match Log::open(&url, settings.stream_settings()).await {
        Ok(log) => Ok(ToolLog {
            log,
            lock: None,
            server: None,
        }),
        Err(e) if is_dead(&e) => Err(Failure::Usage(format!(
            "no NATS URL, and the nats-server recorded in {} ({url}) does not answer; the \
             switchboard using {dir} (pid {pid}) holds the data directory, so no nats-server \
             can be started on its store. If that gateway runs on a NATS URL it was given, \
             pass the same URL with --nats-url or SWITCHBOARD_NATS_URL; if its local \
             nats-server died, restart that gateway (or stop it, and the tools start the \
             data directory's nats-server themselves)",
            url_file.display()
        ))),
        Err(e) => Err(work(e)),
    }
}

/// No NATS URL, and nothing to start a nats-server on.
fn no_server(dir: &Path, url_file: &Path, gone: Option<&str>) -> Failure {
    let store = dir.join("nats");
    let recorded = match gone {
        Some(url) => format!(
            "the nats-server recorded in {} ({url}) does not answer, and ",
            url_file.display()
        ),
        None => String::new(),
    };
    Failure::Usage(format!(
        "no NATS URL: {recorded}{} holds no nats-server store ({} is missing): set \
         SWITCHBOARD_NATS_URL (or --nats-url), or run `switchboard serve` with this data \
         directory first (it starts a nats-server storing there)",
        dir.display(),
        store.display()
    ))
}

/// Whether nothing answers at the URL (as opposed to a server that
/// answered and refused).
fn is_dead(e: &LogError) -> bool {
    matches!(e, LogError::Connect { .. } | LogError::Unreachable)
}

fn work(e: LogError) -> Failure {
    Failure::Work(e.into())
}
