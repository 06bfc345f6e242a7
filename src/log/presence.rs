//! Presence between the nodes of a deployment, on core NATS and never
//! stored: each node publishes its deltas and heartbeats on one subject
//! every node subscribes to, and answers sync requests on a subject of its
//! own. The subjects carry the stream's name, as the operator's commands
//! do, so deployments sharing a NATS stay apart. The messages are
//! `presence::wire`'s, in JSON.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::{Log, LogError, Op, RequestErrorKind};
use crate::presence::view::NodeId;
use crate::presence::wire::{Delta, Heartbeat, Sync};

/// How long a sync request waits for its answer.
pub const SYNC_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// What travels on the shared presence subject.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Message {
    Delta(Delta),
    Heartbeat(Heartbeat),
}

impl Log {
    fn presence_subject(&self) -> String {
        format!("switchboard.{}.presence", self.settings().name)
    }

    fn sync_subject(&self, node: NodeId) -> String {
        format!("switchboard.{}.presence.sync.{node}", self.settings().name)
    }

    fn presence_error(op: Op, e: impl Into<super::BoxError>) -> LogError {
        LogError::request_from(op, RequestErrorKind::Failed, "presence", e)
    }

    /// Tells every node (this one skips its own by `node`).
    pub async fn publish_presence(&self, message: &Message) -> Result<(), LogError> {
        let payload =
            serde_json::to_vec(message).map_err(|e| Log::presence_error(Op::Publish, e))?;
        self.client
            .publish(self.presence_subject(), payload.into())
            .await
            .map_err(|e| Log::presence_error(Op::Publish, e))
    }

    /// Every node's deltas and heartbeats.
    pub async fn subscribe_presence(&self) -> Result<async_nats::Subscriber, LogError> {
        self.client
            .subscribe(self.presence_subject())
            .await
            .map_err(|e| Log::presence_error(Op::Subscribe, e))
    }

    /// The sync requests addressed to `node`.
    pub async fn subscribe_sync_requests(
        &self,
        node: NodeId,
    ) -> Result<async_nats::Subscriber, LogError> {
        self.client
            .subscribe(self.sync_subject(node))
            .await
            .map_err(|e| Log::presence_error(Op::Subscribe, e))
    }

    /// Answers a sync request with this node's holdings.
    pub async fn answer_sync(
        &self,
        reply: async_nats::Subject,
        sync: &Sync,
    ) -> Result<(), LogError> {
        let payload = serde_json::to_vec(sync).map_err(|e| Log::presence_error(Op::Publish, e))?;
        self.client
            .publish(reply, payload.into())
            .await
            .map_err(|e| Log::presence_error(Op::Publish, e))
    }

    /// Asks `node` for its whole holdings.
    pub async fn request_sync(&self, node: NodeId) -> Result<Sync, LogError> {
        let asked = self.client.request(self.sync_subject(node), Bytes::new());
        let answer = tokio::time::timeout(SYNC_TIMEOUT, asked)
            .await
            .map_err(|_| {
                LogError::request(Op::Lookup, RequestErrorKind::TimedOut, "presence sync")
            })?
            .map_err(|e| Log::presence_error(Op::Lookup, e))?;
        serde_json::from_slice(&answer.payload).map_err(|e| Log::presence_error(Op::Lookup, e))
    }
}

/// A message from the shared subject, or `None` (logged) when it is not one.
pub fn decode(payload: &[u8]) -> Option<Message> {
    match serde_json::from_slice(payload) {
        Ok(message) => Some(message),
        Err(e) => {
            tracing::warn!(error = %e, "ignoring a malformed presence message");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::Id;
    use crate::presence::wire::Entry;

    #[test]
    fn messages_round_trip_and_garbage_is_none() {
        let node = Id::new_v4();
        let delta = Message::Delta(Delta {
            node,
            version: 3,
            entries: vec![Entry {
                channel: Id::new_v4(),
                user: Id::new_v4(),
                username: "ann".into(),
                connections: 2,
                ended: false,
            }],
        });
        for message in [delta, Message::Heartbeat(Heartbeat { node, version: 3 })] {
            let text = serde_json::to_vec(&message).unwrap();
            assert_eq!(decode(&text), Some(message));
        }
        assert_eq!(decode(b"{\"kind\":\"dance\"}"), None);
        assert_eq!(decode(b"not json"), None);
    }
}
