//! What only the benches use: the mode (a full run under `cargo bench`, a
//! smoke run under `cargo test --all-targets`), gateways as a bench starts
//! them (the binary of `SWITCHBOARD_BENCH_BIN` when set, a quiet log),
//! load on the log, lean sockets, and the figures. The harness's shared
//! parts a bench needs (nats-servers, tokens, messages, `/proc` readers)
//! are re-exported here, so a bench imports this module alone.

pub mod delivery;
mod figures;
mod publisher;
mod ws;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

pub use figures::*;
pub use publisher::*;
pub use ws::*;

pub use crate::process::{cpu_seconds, nats_children, nats_pid};
pub use crate::{log, message, nats, token, wait_within, Gateway, NatsServer, Serve};

/// How long any single wait in a bench may take before it is a failure:
/// longer than a test's [`PATIENCE`](crate::PATIENCE), for a full run's
/// loads.
pub const PATIENCE: Duration = Duration::from_secs(120);

/// The log filter of a bench's gateway: warnings only, so that logging
/// costs nothing in the figures.
pub const BENCH_LOG: &str = "warn";

/// `cargo bench` passes `--bench`; `cargo test --all-targets` runs the same
/// `main` without it, and then only a quick smoke version runs.
pub fn full() -> bool {
    std::env::args().any(|a| a == "--bench")
}

pub fn mode() -> &'static str {
    if full() {
        "full"
    } else {
        "smoke"
    }
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// The `switchboard` binary the benches start: the one cargo built for
/// them, or `SWITCHBOARD_BENCH_BIN` when set (to measure another build, for
/// example a branch not merged yet, with the same bench).
pub fn gateway_binary() -> PathBuf {
    std::env::var_os("SWITCHBOARD_BENCH_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(crate::binary)
}

/// A bench's gateway on `nats_url`: [`gateway_binary`], logging
/// [`BENCH_LOG`].
pub fn gateway(nats_url: &str) -> Gateway {
    gateway_with(nats_url, BENCH_LOG, &[])
}

/// A bench's gateway whose log (`Gateway::log_path`) keeps what `filter`
/// lets through.
pub fn gateway_logging(nats_url: &str, filter: &str) -> Gateway {
    gateway_with(nats_url, filter, &[])
}

/// A bench's gateway with extra `serve` arguments (`--session-store kv`,
/// ...) and the log `filter`.
pub fn gateway_with(nats_url: &str, filter: &str, extra: &[&str]) -> Gateway {
    Serve::new(nats_url)
        .binary(gateway_binary())
        .log_filter(filter)
        .args(extra)
        .start()
}

/// Whether `switchboard serve` knows a flag (`--session-store`): a setting
/// another branch adds is used only once it exists.
pub fn serve_accepts(flag: &str) -> bool {
    Command::new(gateway_binary())
        .args(["serve", "--help"])
        .env_remove("SWITCHBOARD_CONFIG")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .map(|out| {
            String::from_utf8_lossy(&out.stdout)
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
                .any(|word| word == flag)
        })
        .unwrap_or(false)
}

/// Raises this process's soft open-files limit to its hard limit (children
/// started afterwards, the gateways, inherit it); returns the soft limit now.
pub fn raise_open_files_limit() -> u64 {
    switchboard::server::listener::raise_open_file_limit().unwrap_or(0)
}

/// `<target>/<name>`, where a bench writes its report (the bench binary is
/// `<target>/<profile>/deps/…`); the repository's `target/<name>` when that
/// cannot be told.
pub fn report_dir(name: &str) -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.parent()?.to_path_buf()))
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join("target")
        })
        .join(name)
}

/// The two channels (indices, of `channels`) that client `i` of a storm or
/// a soak follows, spread evenly.
pub fn pair(i: usize, channels: usize) -> [usize; 2] {
    let first = i % channels;
    let second = (i + 1 + i / channels) % channels;
    if second == first {
        [first, (first + 1) % channels]
    } else {
        [first, second]
    }
}
