//! [`Front`]: what the HTTP edge may ask of the node, and nothing more:
//! whether it is ready, publish an event, read a page of history, and take
//! a WebSocket whose upgrade the edge has already authorized.
//!
//! The edge (`http`, `console`) holds a `Front`, never the [`Node`]: it
//! cannot reach the node's log, hub, projection, sessions or tasks except
//! through these methods. Tokens, origins and the HTTP bounds are the
//! edge's own (`http::Edge`); the node never sees them.

use std::sync::Arc;

use tokio_stream::wrappers::ReceiverStream;

use super::deflate::Deflate;
use super::{connection, Node};
use crate::channel::Id;
use crate::envelope::StoredEvent;
use crate::event::Event;
use crate::log::{HistoryQuery, LogError, Receipt};
use crate::token::{Claims, Verifier};

/// The node as the HTTP edge sees it. Cloning it is one reference count.
#[derive(Clone)]
pub struct Front {
    node: Arc<Node>,
}

impl Front {
    pub(super) fn new(node: Arc<Node>) -> Front {
        Front { node }
    }

    /// Whether NATS is connected and the stream answers (`/readyz`).
    pub async fn is_ready(&self) -> bool {
        self.node.log.is_ready().await
    }

    /// Whether the node is shutting down: a new WebSocket would only be
    /// closed again with 1001.
    pub fn is_shutting_down(&self) -> bool {
        self.node.is_shutting_down()
    }

    /// Stores `event` in the log (every copy, idempotently by its id).
    pub async fn publish(&self, event: &Event) -> Result<Receipt, LogError> {
        self.node.log.publish(event).await
    }

    /// Publishes an event of an ephemeral added type on core NATS: every
    /// node delivers it live, nothing stores it.
    pub async fn publish_ephemeral(&self, event: &Event) -> Result<(), LogError> {
        self.node.log.publish_ephemeral(event).await
    }

    /// One page of history, read by a task of the node (awaited on
    /// shutdown) that waits for the reader of the stream: at most
    /// `read_ahead` events are read ahead of it, however large the page.
    /// Invalid stored events are skipped (and counted); a failed read is
    /// the stream's last item.
    pub async fn history(
        &self,
        query: &HistoryQuery,
        read_ahead: usize,
    ) -> Result<ReceiverStream<Result<StoredEvent, LogError>>, LogError> {
        let mut history = self.node.log.history(query).await?;
        let (tx, rx) = tokio::sync::mpsc::channel(read_ahead.max(1));
        self.node.spawn(async move {
            while let Some(item) = history.next().await {
                let item = match item {
                    Ok(item) => match item.into_event() {
                        Some(event) => Ok(event),
                        None => continue,
                    },
                    Err(e) => Err(e),
                };
                let failed = item.is_err();
                if tx.send(item).await.is_err() || failed {
                    break;
                }
            }
        });
        Ok(ReceiverStream::new(rx))
    }

    /// Completes an authorized WebSocket upgrade and runs the connection as
    /// a task of the node. `held` (the user's connection slot) is dropped
    /// when the task ends, however it ends.
    pub fn accept(
        &self,
        on_upgrade: hyper::upgrade::OnUpgrade,
        claims: Claims,
        keys: Arc<Verifier>,
        session: Option<Id>,
        deflate: Option<Deflate>,
        held: impl Send + 'static,
    ) {
        connection::accept(&self.node, on_upgrade, claims, keys, session, deflate, held);
    }

    /// Who is online in chat channel `channel`, on every node.
    pub fn presence(&self, channel: Id) -> crate::presence::view::Snapshot {
        self.node.presence.snapshot(channel, None)
    }

    /// Closes every WebSocket of `user` on every node with 4003 and
    /// `reason`, and drops their sessions; how many closed on this node.
    pub async fn disconnect(&self, user: Id, reason: &str) -> Result<usize, LogError> {
        self.node.disconnect_everywhere(user, reason).await
    }
}
