//! [`Edge`]: everything the HTTP layer owns. The token verifier, the origins,
//! `--dev`, the HTTP bounds and their state (the publish buffer, each
//! user's WebSockets), and the node's [`Front`], the only way it reaches
//! the node.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::publish::PublishBuffer;
use crate::channel::Id;
use crate::gateway::Front;
use crate::origins::Origins;
use crate::settings::Limits;
use crate::token::{Signer, Verifier};

/// The HTTP layer's bounds: settings of the `limits` group that only it
/// reads (the listener's are `server::listener::Bounds`).
#[derive(Clone, Debug)]
pub struct Bounds {
    /// WebSockets one user may hold on this node; one more upgrade gets
    /// 429 before it becomes a socket.
    pub max_connections_per_user: usize,
    /// Time to receive a `POST /v1/events` body once its head is in; a
    /// slower one gets 408.
    pub http_body_timeout: Duration,
    /// Memory for `POST /v1/events` bodies being received, all requests
    /// together; a body that does not fit gets 503, unread.
    pub publish_buffer_bytes: usize,
    /// Whether a WebSocket upgrade may negotiate `permessage-deflate`.
    pub compression: bool,
}

impl Bounds {
    pub fn of(limits: &Limits) -> Bounds {
        Bounds {
            max_connections_per_user: limits.max_connections_per_user,
            http_body_timeout: limits.http_body_timeout,
            publish_buffer_bytes: limits.publish_buffer_bytes,
            compression: limits.compression,
        }
    }
}

/// The HTTP layer of one gateway: what its routes ([`super::routes`]) share.
pub struct Edge {
    /// The node: readiness, publish, history, and WebSockets.
    pub(super) node: Front,
    /// Verify the tokens of every route and of `refresh` frames.
    pub(super) keys: Arc<Verifier>,
    /// Mints the console's tokens, in `--dev` only.
    pub(super) dev_signer: Option<Arc<Signer>>,
    /// The origins whose pages may use the gateway: its own and
    /// `allowed_origins`.
    pub(super) origins: Arc<Origins>,
    pub(super) bounds: Bounds,
    /// Room for the publish bodies being received.
    pub(super) publish_buffer: PublishBuffer,
    /// Each user's WebSockets on this node.
    pub(super) users: UserConnections,
    /// Whether `/metrics` is served on this address (false when
    /// `metrics_listen` gives it one of its own).
    pub(super) metrics_here: bool,
}

impl Edge {
    /// The HTTP layer of a gateway listening on `listening`, which names
    /// its own origins (never the request's `Host`).
    pub fn new(
        node: Front,
        keys: Arc<Verifier>,
        dev_signer: Option<Signer>,
        allowed_origins: Origins,
        listening: SocketAddr,
        dev: bool,
        bounds: Bounds,
    ) -> Edge {
        Edge {
            node,
            keys,
            dev_signer: dev_signer.filter(|_| dev).map(Arc::new),
            origins: Arc::new(allowed_origins.serving(listening)),
            publish_buffer: PublishBuffer::new(bounds.publish_buffer_bytes),
            users: UserConnections::default(),
            bounds,
            metrics_here: true,
        }
    }

    /// `/metrics` is served on the `metrics_listen` address
    /// ([`super::operations::routes`]), and no longer among these routes.
    pub fn metrics_elsewhere(mut self) -> Edge {
        self.metrics_here = false;
        self
    }
}

/// The WebSockets each user holds on this node, for the
/// `max_connections_per_user` cap.
#[derive(Clone, Default)]
pub(super) struct UserConnections(Arc<Mutex<HashMap<Id, usize>>>);

impl UserConnections {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Id, usize>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A slot for one more connection of `user`, or `None` at the cap.
    pub(super) fn take(&self, user: Id, max: usize) -> Option<UserSlot> {
        let mut counts = self.lock();
        let count = counts.entry(user).or_insert(0);
        if *count >= max {
            return None;
        }
        *count += 1;
        Some(UserSlot {
            users: self.clone(),
            user,
        })
    }
}

/// One connection's place under its user's cap. It moves into the
/// connection's task and is given back when the task ends, however it ends.
pub(super) struct UserSlot {
    users: UserConnections,
    user: Id,
}

impl Drop for UserSlot {
    fn drop(&mut self) {
        let mut users = self.users.lock();
        if let Entry::Occupied(mut count) = users.entry(self.user) {
            *count.get_mut() -= 1;
            if *count.get() == 0 {
                count.remove();
                crate::sparse::give_back(&mut users);
            }
        }
    }
}
