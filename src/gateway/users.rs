//! Which local connections each user holds, so that the operator can close
//! every socket of a user at once (`POST /v1/users/{id}/disconnect`, and
//! the same command from another node through NATS).
//!
//! Sharded by user like the hub by channel: connections open and close
//! concurrently without one lock.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex};

use futures::StreamExt;

use super::hub::Mailbox;
use super::Node;
use crate::channel::Id;
use crate::log::control::{bounded_reason, decode_disconnect, Disconnect};
use crate::log::LogError;

/// Shards of the user map.
const SHARDS: usize = 64;

type Held = Vec<(u64, Arc<Mailbox>)>;

/// The node's connections, by user.
pub struct Users {
    shards: Box<[Mutex<HashMap<Id, Held>>]>,
    hasher: std::collections::hash_map::RandomState,
}

impl Default for Users {
    fn default() -> Self {
        Users {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: Default::default(),
        }
    }
}

impl Users {
    fn shard(&self, user: &Id) -> std::sync::MutexGuard<'_, HashMap<Id, Held>> {
        let i = (self.hasher.hash_one(user) as usize) % self.shards.len();
        self.shards[i].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Connection `conn` of `user` opened; its mailbox takes the
    /// disconnect.
    pub fn register(&self, user: Id, conn: u64, mailbox: Arc<Mailbox>) {
        let mut shard = self.shard(&user);
        let held = shard.entry(user).or_default();
        held.reserve_exact(1);
        held.push((conn, mailbox));
    }

    /// Connection `conn` of `user` ended.
    pub fn unregister(&self, user: Id, conn: u64) {
        let mut shard = self.shard(&user);
        if let Some(held) = shard.get_mut(&user) {
            held.retain(|(c, _)| *c != conn);
            if held.is_empty() {
                shard.remove(&user);
                crate::sparse::give_back(&mut shard);
            }
        }
    }

    /// Tells every connection on this node that the node is shutting
    /// down. A connection registered after this call finds the node's
    /// shutdown token cancelled when its loop starts.
    pub fn shut_down_all(&self) {
        for shard in self.shards.iter() {
            let shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            for (_, mailbox) in shard.values().flatten() {
                mailbox.shut_down();
            }
        }
    }

    /// Asks every connection of `user` on this node to close with 4003 and
    /// `reason`; how many were asked.
    pub fn disconnect(&self, user: Id, reason: &str) -> usize {
        let shard = self.shard(&user);
        let Some(held) = shard.get(&user) else {
            return 0;
        };
        for (_, mailbox) in held {
            mailbox.disconnect(reason);
        }
        held.len()
    }
}

impl Node {
    /// Closes every connection of `user` on this node with 4003 and
    /// `reason`, and removes the user's sessions from the store; how many
    /// connections were closed. Each closing connection removes its own
    /// session too, after anything it handed over before.
    pub async fn disconnect_user(&self, user: Id, reason: &str) -> usize {
        let closed = self.users.disconnect(user, reason);
        match self.sessions.remove_user(user).await {
            Ok(removed) => {
                tracing::info!(%user, closed, sessions = removed, reason, "user disconnected")
            }
            Err(e) => {
                tracing::warn!(%user, closed, error = %e, "user disconnected; their sessions could not all be removed")
            }
        }
        closed
    }

    /// Disconnects `user` here, then has every other node do the same.
    pub async fn disconnect_everywhere(&self, user: Id, reason: &str) -> Result<usize, LogError> {
        let reason = bounded_reason(reason);
        let closed = self.disconnect_user(user, &reason).await;
        let command = Disconnect {
            user_id: user,
            reason,
            origin: self.id,
        };
        self.log.publish_disconnect(&command).await?;
        Ok(closed)
    }
}

/// The node's part in other nodes' disconnects: runs until the node shuts
/// down, subscribing again when the subscription ends.
pub async fn run_disconnects(node: Arc<Node>, mut commands: async_nats::Subscriber) {
    loop {
        let message = tokio::select! {
            _ = node.shutting_down() => return,
            message = commands.next() => message,
        };
        match message {
            Some(message) => {
                let Some(command) = decode_disconnect(&message.payload) else {
                    continue;
                };
                if command.origin != node.id {
                    node.disconnect_user(command.user_id, &command.reason).await;
                }
            }
            None => loop {
                match node.log.subscribe_disconnects().await {
                    Ok(renewed) => {
                        commands = renewed;
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot subscribe to disconnects");
                        tokio::select! {
                            _ = node.shutting_down() => return,
                            _ = tokio::time::sleep(crate::log::RESUBSCRIBE_DELAY) => {}
                        }
                    }
                }
            },
        }
    }
}
