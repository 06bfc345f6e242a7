//! Operator commands between the nodes of a deployment, on core NATS and
//! never stored: `disconnect` (close every socket of a user, drop their
//! sessions). The subject carries the stream's name, so deployments that
//! share a NATS do not command each other's nodes. A node that is not
//! connected to NATS when a command is published does not get it.

use serde::{Deserialize, Serialize};

use super::{Log, LogError, Op, RequestErrorKind};
use crate::channel::Id;

/// The longest reason a disconnect carries, in bytes (a WebSocket close
/// frame holds 123); a longer one is cut at a character.
pub const MAX_REASON_BYTES: usize = 123;

/// Close every WebSocket of `user_id` on every node, with `reason`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disconnect {
    pub user_id: Id,
    pub reason: String,
    /// The node that took the operator's request (it closed its own).
    pub origin: Id,
}

impl Log {
    fn disconnect_subject(&self) -> String {
        format!("switchboard.{}.disconnect", self.settings().name)
    }

    /// Tells every node (this one too: it skips its own by `origin`), and
    /// waits until NATS has the command.
    pub async fn publish_disconnect(&self, command: &Disconnect) -> Result<(), LogError> {
        let payload = serde_json::to_vec(command).map_err(|e| {
            LogError::request_from(Op::Publish, RequestErrorKind::Failed, "disconnect", e)
        })?;
        self.client
            .publish(self.disconnect_subject(), payload.into())
            .await
            .map_err(|e| {
                LogError::request_from(Op::Publish, RequestErrorKind::Failed, "disconnect", e)
            })?;
        self.client.flush().await.map_err(|e| {
            LogError::request_from(Op::Publish, RequestErrorKind::Failed, "disconnect", e)
        })
    }

    /// The disconnect commands of every node.
    pub async fn subscribe_disconnects(&self) -> Result<async_nats::Subscriber, LogError> {
        self.client
            .subscribe(self.disconnect_subject())
            .await
            .map_err(|e| {
                LogError::request_from(Op::Subscribe, RequestErrorKind::Failed, "disconnect", e)
            })
    }
}

/// A command as it came from NATS, or `None` (logged) when it is not one.
pub fn decode_disconnect(payload: &[u8]) -> Option<Disconnect> {
    match serde_json::from_slice(payload) {
        Ok(command) => Some(command),
        Err(e) => {
            tracing::warn!(error = %e, "ignoring a malformed disconnect command");
            None
        }
    }
}

/// `reason` cut to [`MAX_REASON_BYTES`] at a character boundary.
pub fn bounded_reason(reason: &str) -> String {
    let mut end = reason.len().min(MAX_REASON_BYTES);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    reason[..end].to_string()
}
