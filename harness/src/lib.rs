//! switchboard's test and bench harness: what `tests/` and `benches/` run
//! the gateway with, as nats.rs's tests run their nats-server harness. A
//! dev-dependency of the gateway, never published; the gateway's library
//! holds nothing that exists for tests alone.
//!
//! Tests own their processes and speak the real wire format: a real
//! nats-server per test (its own port and store), the real `switchboard`
//! binary on port 0, WebSocket clients that speak JSON frames. Everything
//! is stopped on drop, also when a test panics; waits are on conditions,
//! with generous timeouts ([`PATIENCE`]).
//!
//! Layout, one line per module:
//!
//! - `nats`: a test's nats-server ([`NatsServer`], [`nats`]) and logs on it ([`log`]).
//! - `cluster`: three nats-servers in one JetStream cluster ([`NatsCluster`], [`cluster`]).
//! - `gateway`: the `switchboard` binary running `serve` ([`Gateway`], [`Serve`], [`binary`]).
//! - `client`: a WebSocket client that speaks the protocol ([`Client`]).
//! - `token`: tokens the harness's gateways accept ([`token`], [`SECRET`]).
//! - `keys`: the committed RSA, EC and Ed25519 test keys, their tokens and JWKs ([`TestKey`], [`claims`]).
//! - `jwks`: a hand-made JWKS and discovery server for fault cases ([`JwksServer`], [`JwksMode`]).
//! - `oidc`: a real OpenID Connect provider, the npm `oidc-provider` ([`OidcProvider`]).
//! - `events`: sample events, chat messages, `seq`s, the schema check of a frame.
//! - `outside`: what other services and tools do: HTTP, raw publishes, the CLI.
//! - `process`: resident memory and CPU time from `/proc`.
//! - [`raw`]: a WebSocket client on a bare socket: frames with any bits, compressed frames as sent, bytes counted.
//! - `stall`: a NATS proxy that holds back requests on some subjects ([`StallProxy`]).
//! - [`bench`](mod@bench): what only benches use: smoke or full runs, load, figures, lean sockets.
//!
//! Tests import it whole (`use switchboard_harness::*;`); benches take
//! [`bench`](mod@bench), which brings the shared parts along.

mod client;
mod cluster;
mod events;
mod gateway;
mod jwks;
mod keys;
mod nats;
mod oidc;
mod outside;
pub mod process;
pub mod raw;
mod stall;
mod token;

pub mod bench;

use std::time::Duration;

pub use client::Client;
pub use cluster::{cluster, NatsCluster, CLUSTER_NAME, CLUSTER_READY_TIMEOUT, CLUSTER_SIZE};
pub use events::{
    assert_schema, assert_seqs, chat, data_value, decode_value, message, samples, seqs,
};
pub use gateway::{
    binary, kill_group, listening_address, listening_addresses, own_process_group, prometheus_sum,
    Gateway, Serve, TEST_LOG,
};
pub use jwks::{JwksMode, JwksServer, DISCOVERY_PATH, GARBAGE, JWKS_PATH};
pub use keys::{algorithm_name, claims, keys_dir, TestKey};
pub use nats::{log, log_named, log_with, nats, NatsServer};
pub use oidc::{OidcProvider, ProviderKey, OIDC_AUDIENCE, OIDC_CLIENT_SECRET};
pub use outside::{
    cli_replay, history_lines, http, publish_raw, read_head, read_to_close, run, switchboard,
};
pub use process::rss_kib;
pub use stall::StallProxy;
pub use token::{token, token_named, TOKEN_TTL};

/// The JWT secret every gateway the harness starts verifies with.
pub const SECRET: &str = "switchboard-harness-secret";

/// How long any wait in a test may take before it is a failure.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// Polls `check` every 50 ms until it holds; a failure after [`PATIENCE`].
pub async fn wait_until<F, Fut>(what: &str, check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    wait_within(what, PATIENCE, check).await
}

/// Polls `check` every 50 ms until it holds; a failure after `patience`.
pub async fn wait_within<F, Fut>(what: &str, patience: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + patience;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
