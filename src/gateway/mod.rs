//! The gateway node: one router reading the log, one hub fanning out to the
//! local connections, and the connections themselves.
//!
//! - [`hub`]: the local subscriptions and the fan-out of encoded events.
//! - [`router`]: the node's single log consumer (and typing subscription)
//!   feeding the projection and the hub.
//! - [`connection`]: one WebSocket's task: its loop, socket, frames and session.
//! - [`subscription`]: one subscription's delivery rules, a sans-IO state machine.
//! - [`outbox`]: a connection's frames waiting for the next flush.
//! - [`rate`]: the sliding-window limit for bad frames and typing.
//! - [`housekeeping`]: snapshots, session sweeps and metric upkeep.
//! - [`protocol`]: client and server frames, close codes.
//! - [`upgrade`]: the HTTP upgrade with a bounded transport configuration.
//!
//! Architecture invariant: no NATS consumer or subscription per client on
//! the live path; a connection reads the log itself only to replay or to
//! catch up after falling behind.

pub mod connection;
pub mod housekeeping;
pub mod hub;
pub mod outbox;
pub mod protocol;
pub mod rate;
pub mod router;
pub mod subscription;
pub mod upgrade;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::log::Log;
use crate::metrics::Metrics;
use crate::projection::Projection;
use crate::session::Sessions;
use crate::store::Store;
use crate::token::TokenKeys;

/// Per-connection bounds; each is a setting (see `crate::settings`).
#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest client frame; a larger one closes the socket with 1009.
    pub max_frame_bytes: usize,
    /// Events queued for one connection; past it, its subscriptions read
    /// the log at the client's pace instead (no event is lost).
    pub send_queue: usize,
    /// A socket that accepts nothing for this long is closed with 4008.
    pub stall_timeout: Duration,
    /// How often the server pings; announced in `hello`.
    pub heartbeat: Duration,
    /// Base reconnect delay announced in `hello` (clients add jitter).
    pub reconnect_base: Duration,
    /// Bad frames allowed per minute; one more closes with 4029.
    pub bad_frames_per_minute: usize,
    /// Typing frames per second per channel; the excess is dropped.
    pub typing_per_second: u32,
    /// Subscriptions one connection may hold.
    pub max_subscriptions: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_frame_bytes: 64 * 1024,
            send_queue: 1024,
            stall_timeout: Duration::from_secs(60),
            heartbeat: Duration::from_secs(25),
            reconnect_base: Duration::from_secs(2),
            bad_frames_per_minute: 20,
            typing_per_second: 2,
            max_subscriptions: 1024,
        }
    }
}

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
