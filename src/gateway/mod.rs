//! The gateway node: one router reading the log, one hub fanning out to the
//! local connections, and the connections themselves.
//!
//! - [`hub`]: the local subscriptions and the fan-out of encoded events.
//! - [`router`]: the node's single log consumer (and typing subscription)
//!   feeding the projection and the hub.
//! - [`connection`]: one WebSocket's protocol, replays and cursors.
//! - [`housekeeping`]: snapshots, session sweeps and metric upkeep.
//! - [`protocol`]: client and server frames.
//! - [`upgrade`]: the HTTP upgrade with a bounded transport configuration.
//!
//! Architecture invariant: no NATS consumer or subscription per client on
//! the live path; a connection reads the log itself only to replay or to
//! catch up after falling behind.

pub mod connection;
pub mod housekeeping;
pub mod hub;
pub mod protocol;
pub mod router;
pub mod upgrade;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::log::Log;
use crate::metrics::Metrics;
use crate::projection::Projection;
use crate::session::Sessions;
use crate::store::Store;
use crate::token::TokenKeys;

/// Per-connection bounds: the `limits` group of settings, declared (with
/// their meanings, defaults and bounds) in `settings/declared.rs`.
pub use crate::settings::Limits;

/// Everything a node's tasks share.
pub struct Node {
    pub log: Log,
    pub hub: hub::Hub,
    pub projection: RwLock<Projection>,
    pub sessions: Sessions,
    pub store: Store,
    pub keys: TokenKeys,
    pub limits: Limits,
    pub metrics: &'static Metrics,
    /// Cancelled once, when the node shuts down.
    pub shutdown: CancellationToken,
    /// Every task of the node, connections included; awaited on shutdown.
    pub tasks: TaskTracker,
    next_conn: AtomicU64,
}

impl Node {
    pub fn new(
        log: Log,
        store: Store,
        projection: Projection,
        sessions: Sessions,
        keys: TokenKeys,
        limits: Limits,
    ) -> Arc<Node> {
        let last = projection.last_seq;
        let node = Node {
            log,
            hub: hub::Hub::new(),
            projection: RwLock::new(projection),
            sessions,
            store,
            keys,
            limits,
            metrics: Metrics::get(),
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
            next_conn: AtomicU64::new(1),
        };
        node.hub.routed_through(last);
        Arc::new(node)
    }

    pub fn next_connection_id(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// The projection, readable even if a writer panicked.
    pub fn projection(&self) -> std::sync::RwLockReadGuard<'_, Projection> {
        self.projection.read().unwrap_or_else(|e| e.into_inner())
    }
}
