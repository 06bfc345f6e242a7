//! A test's own nats-server with JetStream, as nats.rs's harness runs one
//! per test: a free port it picks itself, its own temporary store, ready
//! once its log says so, killed and its store removed on drop. It runs the
//! command line `serve`'s local server runs
//! (`switchboard::local_nats::jetstream_command`), and can crash and come
//! back on the same port and store, which `serve`'s never needs to.

use std::path::{Path, PathBuf};
use std::process::Child;

use switchboard::local_nats::{find_binary, jetstream_command, run_until_ready, LocalNatsError};
use switchboard::log::{Log, StreamSettings};

/// A running nats-server with a temporary store.
pub struct NatsServer {
    child: Child,
    binary: PathBuf,
    store: PathBuf,
    conf: Option<PathBuf>,
    port: u16,
    /// The store (and configuration), removed after the server is killed.
    _temp: tempfile::TempDir,
}

impl NatsServer {
    /// Starts a server with a fresh temporary store.
    pub fn start() -> Result<NatsServer, LocalNatsError> {
        NatsServer::start_in(None)
    }

    /// Starts a server with extra configuration file content (for example a
    /// `websocket {}` block), a temporary store and a free port.
    pub fn start_with_config(extra: &str) -> Result<NatsServer, LocalNatsError> {
        NatsServer::start_in(Some(extra))
    }

    fn start_in(extra: Option<&str>) -> Result<NatsServer, LocalNatsError> {
        let binary = find_binary().ok_or(LocalNatsError::NotFound)?;
        let temp = tempfile::Builder::new()
            .prefix("switchboard-nats-")
            .tempdir()
            .map_err(|e| LocalNatsError::NotReady(format!("temp dir: {e}")))?;
        let store = temp.path().join("store");
        let conf = match extra {
            None => None,
            Some(extra) => {
                let conf = temp.path().join("nats.conf");
                std::fs::write(&conf, extra).map_err(|e| {
                    LocalNatsError::NotReady(format!("writing {}: {e}", conf.display()))
                })?;
                Some(conf)
            }
        };
        let (child, port) = launch(&binary, &store, conf.as_deref(), None)?;
        Ok(NatsServer {
            child,
            binary,
            store,
            conf,
            port,
            _temp: temp,
        })
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills the server (as a crash would) and leaves it stopped.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts it again (killed first if it runs) on the same port with the
    /// same store.
    pub fn restart(&mut self) -> Result<(), LocalNatsError> {
        self.kill();
        let (child, _) = launch(
            &self.binary,
            &self.store,
            self.conf.as_deref(),
            Some(self.port),
        )?;
        self.child = child;
        Ok(())
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn launch(
    binary: &Path,
    store: &Path,
    conf: Option<&Path>,
    port: Option<u16>,
) -> Result<(Child, u16), LocalNatsError> {
    let mut command = jetstream_command(binary, store, port);
    if let Some(conf) = conf {
        command.arg("-c").arg(conf);
    }
    run_until_ready(command, None)
}

/// A test's nats-server; a failure when there is no nats-server to run.
pub fn nats() -> NatsServer {
    NatsServer::start().expect("nats-server starts (run `just tools`)")
}

/// The log on `nats`, with the default stream settings (the stream is
/// created or updated, as the gateway does).
pub async fn log(nats: &NatsServer) -> Log {
    log_with(nats, StreamSettings::default()).await
}

pub async fn log_with(nats: &NatsServer, settings: StreamSettings) -> Log {
    Log::connect(&nats.url(), settings)
        .await
        .expect("log connects")
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
