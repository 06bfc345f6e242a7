//! The real `switchboard` binary as a test or bench runs it: `serve` on
//! port 0 with the harness's secret and its own data directory, found by
//! the line it prints once it listens, its log in `gateway.log` there,
//! killed on drop (its log's last lines printed when a test panics).
//!
//! The binary is the one cargo built beside the running test or bench
//! ([`binary`]): a library cannot use `env!("CARGO_BIN_EXE_switchboard")`,
//! but cargo builds the binary for every integration test and bench, into
//! the directory above the executable's `deps/`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use switchboard::server::{LISTENING, METRICS_LISTENING};

use crate::{http, process, wait_until, NatsServer, PATIENCE, SECRET};

/// The log filter of a test's gateway: everything the gateway says about
/// itself, for the report of a failing test.
pub const TEST_LOG: &str = "info,switchboard=debug";

/// The `switchboard` binary cargo built for the running test or bench:
/// `target/<profile>/switchboard`, beside the `deps/` directory the test
/// executable is in.
pub fn binary() -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    let profile = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test executable is in target/<profile>/deps");
    let binary = profile.join(format!("switchboard{}", std::env::consts::EXE_SUFFIX));
    assert!(
        binary.is_file(),
        "{} not found: run tests and benches with cargo (`cargo test`, `cargo bench`), which builds it",
        binary.display()
    );
    binary
}

/// How a gateway is started: which binary, on which NATS URL, with which
/// token secret, extra `serve` arguments, log filter and open-file limit.
#[derive(Clone, Debug)]
pub struct Serve {
    pub binary: PathBuf,
    pub nats_url: String,
    /// `--jwt-secret` ([`SECRET`] unless set; `None` for a gateway that
    /// verifies with public keys or a JWKS alone).
    pub jwt_secret: Option<String>,
    pub args: Vec<String>,
    /// `SWITCHBOARD_LOG` of the process ([`TEST_LOG`] unless set).
    pub log_filter: String,
    /// The process's open-file limit (soft and hard), when set.
    pub open_files: Option<u64>,
}

impl Serve {
    /// [`binary`] on `nats_url` (one server or a comma-separated list),
    /// with no extra arguments and the [`TEST_LOG`] filter.
    pub fn new(nats_url: &str) -> Serve {
        Serve {
            binary: binary(),
            nats_url: nats_url.to_string(),
            jwt_secret: Some(SECRET.to_string()),
            args: Vec::new(),
            log_filter: TEST_LOG.to_string(),
            open_files: None,
        }
    }

    pub fn args(mut self, args: &[&str]) -> Serve {
        self.args = args.iter().map(|s| s.to_string()).collect();
        self
    }

    /// Verifies HS tokens with `secrets` (one, or several separated by
    /// `,`) instead of [`SECRET`].
    pub fn jwt_secret(mut self, secrets: &str) -> Serve {
        self.jwt_secret = Some(secrets.to_string());
        self
    }

    /// No `--jwt-secret`: the keys come from `args` alone (`--jwt-public-keys`,
    /// `--jwks-url`).
    pub fn without_secret(mut self) -> Serve {
        self.jwt_secret = None;
        self
    }

    pub fn log_filter(mut self, filter: &str) -> Serve {
        self.log_filter = filter.to_string();
        self
    }

    pub fn binary(mut self, binary: PathBuf) -> Serve {
        self.binary = binary;
        self
    }

    /// A process that may open at most `open_files` descriptors (soft and
    /// hard limit), to try it at its open-file limit.
    pub fn open_files(mut self, open_files: u64) -> Serve {
        self.open_files = Some(open_files);
        self
    }

    /// Starts it with a fresh temporary data directory.
    pub fn start(self) -> Gateway {
        let temp = tempfile::Builder::new()
            .prefix("switchboard-gateway-")
            .tempdir()
            .expect("temp dir");
        let mut gateway = self.start_in(temp.path());
        gateway._temp = Some(temp);
        gateway
    }

    /// Starts it on an existing data directory (a restart, a second node).
    pub fn start_in(self, data: &Path) -> Gateway {
        let (child, addr, metrics_addr) = launch(&self, data);
        Gateway {
            child,
            addr,
            metrics_addr,
            nats_url: self.nats_url.clone(),
            data: data.to_path_buf(),
            serve: self,
            _temp: None,
        }
    }
}

/// The gateway binary, running.
pub struct Gateway {
    child: Child,
    pub addr: SocketAddr,
    /// The metrics address, when started with `--metrics-listen`: the
    /// metric helpers below scrape it instead of `addr`.
    pub metrics_addr: Option<SocketAddr>,
    pub nats_url: String,
    data: PathBuf,
    serve: Serve,
    _temp: Option<tempfile::TempDir>,
}

impl Gateway {
    pub fn start(nats: &NatsServer) -> Gateway {
        Serve::new(&nats.url()).start()
    }

    pub fn start_with(nats: &NatsServer, args: &[&str]) -> Gateway {
        Serve::new(&nats.url()).args(args).start()
    }

    /// A gateway on `nats_url` (one server or a comma-separated list) with a
    /// fresh temporary data directory.
    pub fn start_on(nats_url: &str, args: &[&str]) -> Gateway {
        Serve::new(nats_url).args(args).start()
    }

    /// Starts a gateway on an existing data directory (restarts, a second node).
    pub fn spawn(nats_url: &str, data: &Path, args: &[&str]) -> Gateway {
        Serve::new(nats_url).args(args).start_in(data)
    }

    /// A gateway whose process may open at most `open_files` descriptors
    /// (soft and hard limit), to try it at its open-file limit.
    pub fn start_with_open_files(nats: &NatsServer, args: &[&str], open_files: u64) -> Gateway {
        Serve::new(&nats.url())
            .args(args)
            .open_files(open_files)
            .start()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    pub fn ws_url(&self, token: &str) -> String {
        format!("ws://{}/v1/ws?token={token}", self.addr)
    }

    pub fn http(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Kills the process as a crash would (SIGKILL), and reaps it.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Asks the process to stop (SIGTERM) and waits for it to exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        self.child.wait().expect("gateway exits")
    }

    /// A restarted process on the same data directory (a new port).
    pub fn restart(&mut self) {
        self.kill9();
        let (child, addr, metrics_addr) = launch(&self.serve, &self.data);
        self.child = child;
        self.addr = addr;
        self.metrics_addr = metrics_addr;
    }

    /// The URL of `path` on the address serving `/metrics`: the metrics
    /// address when one is set, else the main one.
    pub fn metrics_http(&self, path: &str) -> String {
        format!("http://{}{path}", self.metrics_addr.unwrap_or(self.addr))
    }

    /// The `/metrics` text.
    pub async fn metrics(&self) -> String {
        http()
            .get(self.metrics_http("/metrics"))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text")
    }

    /// The value of the first series line starting with `series` (0 if
    /// absent): `"name "` for a series without labels, `name{label="v"}`
    /// for one label set.
    pub async fn metric(&self, series: &str) -> f64 {
        self.metrics()
            .await
            .lines()
            .find(|l| l.starts_with(series))
            .and_then(|l| l.split_whitespace().last())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0.0)
    }

    /// The sum of a metric's samples over every label set; `None` when the
    /// gateway does not report it or does not answer within 10 s (a bench
    /// asks while the gateway is loaded, and goes on without it).
    pub async fn metric_sum(&self, name: &str) -> Option<f64> {
        let url = self.metrics_http("/metrics");
        let text = tokio::time::timeout(Duration::from_secs(10), async {
            reqwest::get(&url).await.ok()?.text().await.ok()
        })
        .await
        .ok()??;
        prometheus_sum(&text, name)
    }

    /// Waits until the node has no connection left: every connection task
    /// has ended, so each one's final session save is done.
    pub async fn wait_for_no_connections(&self) {
        wait_until("every connection to end", || async {
            self.metric("switchboard_connections ").await == 0.0
        })
        .await;
    }

    /// The gateway's log file.
    pub fn log_path(&self) -> PathBuf {
        self.data.join("gateway.log")
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// How many lines of the gateway's log contain `needle`.
    pub fn log_lines_with(&self, needle: &str) -> usize {
        self.log_text()
            .lines()
            .filter(|line| line.contains(needle))
            .count()
    }

    /// The process's resident memory in KiB (`VmRSS`), if it can be read.
    pub fn rss_kib(&self) -> Option<u64> {
        process::rss_kib(self.pid())
    }

    /// The process's resident set (`VmRSS`), in bytes (0 when unreadable).
    pub fn rss_bytes(&self) -> u64 {
        process::vm_bytes(self.pid(), "VmRSS:")
    }

    /// The process's peak resident set so far (`VmHWM`), in bytes.
    pub fn peak_rss_bytes(&self) -> u64 {
        process::vm_bytes(self.pid(), "VmHWM:")
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            let log = self.log_text();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("--- gateway log (last lines) ---");
            for line in tail.into_iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

/// Starts `serve` as `how` says, its log appended to `data/gateway.log`,
/// and waits for its listening line (and the metrics address's, printed
/// before it when `--metrics-listen` is given).
fn launch(how: &Serve, data: &Path) -> (Child, SocketAddr, Option<SocketAddr>) {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(data.join("gateway.log"))
        .expect("log file");
    let mut command = Command::new(&how.binary);
    command
        .arg("serve")
        .args(["--listen", "127.0.0.1:0", "--nats-url", &how.nats_url])
        .arg("--data-dir")
        .arg(data)
        .args(how.jwt_secret.iter().flat_map(|s| ["--jwt-secret", s]))
        .args(&how.args)
        .env("SWITCHBOARD_LOG", &how.log_filter)
        .env_remove("SWITCHBOARD_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log);
    if let Some(open_files) = how.open_files {
        limit_open_files(&mut command, open_files);
    }
    let mut child = command.spawn().expect("gateway starts");
    let stdout = child.stdout.take().expect("stdout");
    let Some((addr, metrics_addr)) = listening_addresses(stdout, PATIENCE) else {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "gateway did not start; log:\n{}",
            std::fs::read_to_string(data.join("gateway.log")).unwrap_or_default()
        )
    };
    (child, addr, metrics_addr)
}

/// Sets the open-file limit (soft and hard) of the process `command` starts.
fn limit_open_files(command: &mut Command, open_files: u64) {
    use std::os::unix::process::CommandExt;
    #[allow(clippy::unnecessary_cast)] // `rlim_t` is not `u64` everywhere.
    let limit = libc::rlimit {
        rlim_cur: open_files as libc::rlim_t,
        rlim_max: open_files as libc::rlim_t,
    };
    // SAFETY: setrlimit is async-signal-safe and touches only `limit`.
    unsafe {
        command.pre_exec(move || {
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
}

/// Reads a `serve` process's stdout until its
/// [`LISTENING`](switchboard::server::LISTENING) line, and keeps draining it
/// afterwards so the process never blocks on a full pipe.
pub fn listening_address(
    stdout: std::process::ChildStdout,
    timeout: Duration,
) -> Option<SocketAddr> {
    listening_addresses(stdout, timeout).map(|(addr, _)| addr)
}

/// As [`listening_address`], with the metrics address of the
/// [`METRICS_LISTENING`](switchboard::server::METRICS_LISTENING) line
/// printed before it, if any.
pub fn listening_addresses(
    stdout: std::process::ChildStdout,
    timeout: Duration,
) -> Option<(SocketAddr, Option<SocketAddr>)> {
    use std::io::BufRead;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut metrics = None;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if let Some(addr) = line.strip_prefix(METRICS_LISTENING) {
                metrics = addr.trim().parse::<SocketAddr>().ok();
            }
            if let Some(addr) = line.strip_prefix(LISTENING) {
                let _ = tx.send(addr.trim().parse::<SocketAddr>().map(|a| (a, metrics)));
            }
        }
    });
    rx.recv_timeout(timeout).ok()?.ok()
}

/// The sum of a metric's samples in Prometheus text, `None` when absent.
pub fn prometheus_sum(text: &str, name: &str) -> Option<f64> {
    let mut found = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        if !(rest.starts_with(' ') || rest.starts_with('{')) {
            continue;
        }
        if let Some(value) = rest
            .rsplit(' ')
            .next()
            .and_then(|v| v.trim().parse::<f64>().ok())
        {
            *found.get_or_insert(0.0) += value;
        }
    }
    found
}

/// Runs `command` in a process group of its own, for [`kill_group`].
pub fn own_process_group(command: &mut Command) -> &mut Command {
    std::os::unix::process::CommandExt::process_group(command, 0)
}

/// SIGKILLs `child` and every process of its group, and reaps it: a
/// `serve` without a NATS URL has started a nats-server of its own, which a
/// SIGKILL of `serve` alone would leave running.
pub fn kill_group(child: &mut Child) {
    let group = format!("-{}", child.id());
    let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
    let _ = child.kill();
    let _ = child.wait();
}
