//! Presence between the nodes of a deployment, on core NATS and never
//! stored: each node publishes its deltas and heartbeats on one subject
//! every node subscribes to, and answers sync requests on a subject of its
//! own. The subjects carry the stream's name, as the operator's commands
//! do, so deployments sharing a NATS stay apart. The messages are
//! `presence::wire`'s, in JSON.

use bytes::Bytes;
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use super::{Log, LogError, Op, RequestErrorKind};
use crate::presence::view::NodeId;
use crate::presence::wire::{Delta, Heartbeat, Sync};

/// How long a sync request waits for its answer.
pub const SYNC_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// The most parts a sync answer may come in (of `wire::MAX_ENTRIES`
/// entries each: two million holdings).
const MAX_SYNC_PARTS: usize = 1_000;

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

    /// Answers a sync request with this node's holdings, in parts.
    pub async fn answer_sync(
        &self,
        reply: async_nats::Subject,
        parts: &[Sync],
    ) -> Result<(), LogError> {
        for part in parts {
            let payload =
                serde_json::to_vec(part).map_err(|e| Log::presence_error(Op::Publish, e))?;
            self.client
                .publish(reply.clone(), payload.into())
                .await
                .map_err(|e| Log::presence_error(Op::Publish, e))?;
        }
        Ok(())
    }

    /// Asks `node` for its whole holdings: every part of one answer, in
    /// order, within [`SYNC_TIMEOUT`].
    pub async fn request_sync(&self, node: NodeId) -> Result<Vec<Sync>, LogError> {
        let inbox = self.client.new_inbox();
        let mut replies = self
            .client
            .subscribe(inbox.clone())
            .await
            .map_err(|e| Log::presence_error(Op::Subscribe, e))?;
        self.client
            .publish_with_reply(self.sync_subject(node), inbox, Bytes::new())
            .await
            .map_err(|e| Log::presence_error(Op::Publish, e))?;
        let collect = async {
            let mut parts: Vec<Option<Sync>> = Vec::new();
            while let Some(message) = replies.next().await {
                let part: Sync = serde_json::from_slice(&message.payload)
                    .map_err(|e| Log::presence_error(Op::Lookup, e))?;
                let (at, of) = (part.part as usize, part.parts as usize);
                if parts.is_empty() {
                    if of == 0 || of > MAX_SYNC_PARTS {
                        return Err(LogError::request(
                            Op::Lookup,
                            RequestErrorKind::Failed,
                            "presence sync of an impossible size",
                        ));
                    }
                    parts.resize(of, None);
                }
                if of != parts.len() || at >= of {
                    continue; // another answer's part
                }
                parts[at] = Some(part);
                if parts.iter().all(Option::is_some) {
                    return Ok(parts.into_iter().flatten().collect());
                }
            }
            Err(LogError::request(
                Op::Lookup,
                RequestErrorKind::Failed,
                "presence sync ended early",
            ))
        };
        tokio::time::timeout(SYNC_TIMEOUT, collect)
            .await
            .map_err(|_| {
                LogError::request(Op::Lookup, RequestErrorKind::TimedOut, "presence sync")
            })?
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
