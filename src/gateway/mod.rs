//! The gateway node: one router reading the log, one hub fanning out to the
//! local connections, and the connections themselves.
//!
//! - [`hub`]: the local subscriptions and the fan-out of encoded events.
//! - [`router`]: the node's single log consumer (and typing subscription)
//!   feeding the projection and the hub.
//! - [`connection`]: one WebSocket's task: its loop, socket, frames and session.
//! - [`subscription`]: one subscription's delivery rules, a sans-IO state machine.
//! - [`outbox`]: a connection's frames waiting for the next flush.
//! - [`presence`]: each batch of presence changes, encoded once per channel
//!   and queued for the subscriptions that asked for presence.
//! - [`rate`]: the sliding-window limit for bad frames and typing.
//! - [`housekeeping`]: projection snapshots and metric upkeep.
//! - [`protocol`]: client and server frames, close codes.
//! - [`upgrade`]: the HTTP upgrade with a bounded transport configuration.
//! - [`deflate`]: `permessage-deflate`: the answer to an offer, and each
//!   event compressed once per node.
//! - [`inflate`]: the socket's stream that inflates compressed client messages.
//! - [`window`]: the node's recent events in memory, for short replays.
//! - [`front`]: what the HTTP edge may ask of the node ([`Front`]).
//! - [`users`]: each user's local connections, and the operator's disconnect.
//!
//! Architecture invariant: no NATS consumer or subscription per client on
//! the live path; a connection reads the log itself only to replay or to
//! catch up after falling behind. The node owns no token keys, origins
//! or HTTP routes: the edge authorizes an upgrade, then hands it over
//! through [`Front`] with the verifier its `refresh` frames use.

pub mod connection;
pub mod deflate;
pub mod front;
pub mod housekeeping;
pub mod hub;
pub mod inflate;
pub mod outbox;
pub mod presence;
pub mod protocol;
pub mod rate;
pub mod router;
pub mod subscription;
pub mod upgrade;
pub mod users;
pub mod window;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::log::Log;
use crate::metrics::Metrics;
use crate::projection::Projection;
use crate::session::Sessions;
use crate::store::Store;

pub use front::Front;

/// Per-connection bounds: the `limits` group of settings, declared (with
/// their meanings, defaults and bounds) in `settings/declared.rs`.
pub use crate::settings::Limits;

/// Everything a node's tasks share: it wires the log, the router, the hub
/// and the connections. The gateway's modules use its parts (private to
/// `gateway`); `server` uses its methods, and the HTTP edge only its
/// [`Front`].
pub struct Node {
    log: Log,
    hub: hub::Hub,
    /// Each user's connections on this node.
    users: users::Users,
    /// Who is online in each chat channel, on every node (`presence`).
    presence: Arc<crate::presence::node::Presence>,
    /// This node's id, in the commands it sends to the others.
    id: crate::channel::Id,
    /// Recent events, filled by the router: short gaps replay from here.
    window: window::Window,
    /// One permit per replay reading the stream (`max_stream_replays`).
    stream_replays: Arc<tokio::sync::Semaphore>,
    projection: RwLock<Projection>,
    /// The node's sled database: the projection snapshot (and the sessions
    /// when they are kept in sled).
    store: Store,
    /// The sessions, in sled or the bucket.
    sessions: Sessions,
    /// The connections' and replays' bounds. The group also declares the
    /// HTTP ones, which the node never reads: they are the edge's
    /// (`http::Bounds`) and the listener's (`server::listener::Bounds`).
    limits: Limits,
    /// What every connection's state reads of the limits, made once.
    conn_bounds: Arc<connection::Bounds>,
    metrics: &'static Metrics,
    /// Cancelled once, when the node shuts down.
    shutdown: CancellationToken,
    /// Every task of the node, connections included; awaited on shutdown.
    tasks: TaskTracker,
    next_conn: AtomicU64,
}

impl Node {
    pub fn new(
        log: Log,
        store: Store,
        projection: Projection,
        sessions: Sessions,
        limits: Limits,
        presence_grace: std::time::Duration,
        presence_limit: usize,
    ) -> Arc<Node> {
        let last = projection.last_seq;
        let id = crate::channel::Id::new_v4();
        let retention = log.settings().retention;
        let node = Node {
            log,
            hub: hub::Hub::new(),
            users: users::Users::default(),
            presence: crate::presence::node::Presence::new(id, presence_grace, presence_limit),
            id,
            window: window::Window::new(last, limits.window_events, limits.window_bytes, retention),
            stream_replays: Arc::new(tokio::sync::Semaphore::new(limits.max_stream_replays)),
            projection: RwLock::new(projection),
            store,
            conn_bounds: Arc::new(connection::Bounds::of(&limits, sessions.flush_interval())),
            sessions,
            limits,
            metrics: Metrics::get(),
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
            next_conn: AtomicU64::new(1),
        };
        node.hub.routed_through(last);
        Arc::new(node)
    }

    /// The node as the HTTP edge may use it.
    pub fn front(self: &Arc<Self>) -> Front {
        Front::new(self.clone())
    }

    pub fn log(&self) -> &Log {
        &self.log
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Who is online in each chat channel.
    pub fn presence(&self) -> &Arc<crate::presence::node::Presence> {
        &self.presence
    }

    /// The sessions, with their time to live.
    pub fn sessions(&self) -> &Sessions {
        &self.sessions
    }

    fn next_connection_id(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// The projection, readable even if a writer panicked.
    pub fn projection(&self) -> RwLockReadGuard<'_, Projection> {
        self.projection.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The projection, for the router's fold and the snapshot writer.
    fn projection_mut(&self) -> RwLockWriteGuard<'_, Projection> {
        self.projection.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs a task of the node: it is awaited on shutdown.
    pub fn spawn<F>(&self, task: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        self.tasks.spawn(task);
    }

    /// Runs `task` as a task of the node until it ends or the node shuts
    /// down, whichever comes first (for work that has nothing to finish).
    pub fn spawn_until_shutdown<F>(&self, task: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let stop = self.shutdown.clone();
        self.tasks.spawn(async move {
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = task => {}
            }
        });
    }

    /// Resolves once the node starts shutting down.
    pub fn shutting_down(&self) -> tokio_util::sync::WaitForCancellationFuture<'_> {
        self.shutdown.cancelled()
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutdown.is_cancelled()
    }

    /// Starts shutting down: every task is told, and no new one starts.
    pub fn begin_shutdown(&self) {
        self.shutdown.cancel();
        // After the cancel: a connection that registers once this has
        // passed its shard finds the token cancelled (`Connection::serve`).
        self.users.shut_down_all();
        self.tasks.close();
    }

    /// Resolves once every task of the node has ended.
    pub async fn tasks_ended(&self) {
        self.tasks.wait().await
    }
}
