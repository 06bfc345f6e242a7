//! What a connection's [`State`](super::state::State) asks of its node, all
//! of it answered at once from memory: the hub's subscriptions and routed
//! position, the projection's standing, the window's recent events, the
//! stream's epoch, and the hand-over of session records (to sled's thread
//! or the bucket writer, never awaited).
//!
//! Anything that waits (a request to NATS) is not here: the state asks for
//! it with an [`Effect`](super::state::Effect), and its driver runs it
//! beside the socket. The tests drive the state with an `Env` of their own.

use std::sync::Arc;

use crate::access::Standing;
use crate::channel::{Channel, Id};
use crate::gateway::hub::Mailbox;
use crate::gateway::Node;
use crate::log::{Epoch, Extent};
use crate::presence::view::{Left, Snapshot};
use crate::session::record::Change;
use crate::session::{SessionError, Sessions};

/// The node as one connection sees it; see the module documentation.
pub(super) trait Env {
    /// Joins the hub for `channel` (with its presence, if `presence`):
    /// every event routed after the returned position reaches the
    /// connection's queue (or flags it as lagging).
    fn join(&mut self, channel: Channel, presence: bool) -> u64;
    /// The connection stops holding `channel`: `how` says whether the
    /// connection dropped (the user's presence gets its grace) or the
    /// subscription was ended (an unsubscribe, a cut: at once).
    fn leave(&mut self, channel: Channel, how: Left);
    /// Who is online in chat channel `channel`, on every node.
    fn presence(&self, channel: Id) -> Snapshot;
    /// The hub's routed position: every event up to it is in the log.
    fn last_routed(&self) -> u64;
    /// `user`'s standing in chat channel `channel`, as the projection has it.
    fn standing(&self, channel: Id, user: Id) -> Standing;
    /// Whether the window holds every event with `seq > after`.
    fn window_holds_after(&self, after: u64) -> bool;
    /// Whether `user`'s standing in `channel` changes within
    /// `(after, to]`, if the window can tell.
    fn window_standing_changes(&self, channel: Id, user: Id, after: u64, to: u64) -> Option<bool>;
    /// The channel's first `seq >= from`, if the window can tell.
    fn window_next_of(&self, channel: Channel, from: u64) -> Option<Option<u64>>;
    /// The stream's epoch as last measured.
    fn epoch(&self) -> Epoch;
    /// The stream's extent as last measured.
    fn last_extent(&self) -> Extent;
    /// Hands what changed of a session to the store (written in the
    /// background); `written` is told once it is in it.
    fn save_session(
        &mut self,
        id: Id,
        change: Change,
        written: Option<tokio::sync::oneshot::Sender<()>>,
    ) -> Result<(), SessionError>;
    /// The expiry a session's header written now gets (unix seconds).
    fn session_expires_at(&self) -> i64;
    /// How long a session lives after its last write.
    fn session_ttl(&self) -> std::time::Duration;
}

/// The real node, for the connection `conn` whose queue is `mailbox`.
pub(super) struct NodeEnv {
    pub(super) node: Arc<Node>,
    pub(super) conn: u64,
    /// The connection's queue; its `user` is the connection's.
    pub(super) mailbox: Arc<Mailbox>,
    /// The token's `name`, which the user's presence shows; without one,
    /// the user id (made when needed rather than kept by every connection).
    pub(super) name: Option<Box<str>>,
}

impl NodeEnv {
    fn sessions(&self) -> &Sessions {
        self.node.sessions()
    }
}

impl Env for NodeEnv {
    fn join(&mut self, channel: Channel, presence: bool) -> u64 {
        let routed = self
            .node
            .hub
            .subscribe(channel, self.conn, presence, self.mailbox.clone());
        if let Channel::Chat(id) = channel {
            let user = self.mailbox.user;
            let username = match &self.name {
                Some(name) => std::borrow::Cow::Borrowed(&**name),
                None => std::borrow::Cow::Owned(user.to_string()),
            };
            self.node.presence.join(id, user, &username);
        }
        routed
    }

    fn leave(&mut self, channel: Channel, how: Left) {
        self.node.hub.unsubscribe(channel, self.conn);
        if let Channel::Chat(id) = channel {
            self.node.presence.leave(id, self.mailbox.user, how);
        }
    }

    fn presence(&self, channel: Id) -> Snapshot {
        self.node
            .presence
            .snapshot(channel, Some(self.mailbox.user))
    }

    fn last_routed(&self) -> u64 {
        self.node.hub.last_routed()
    }

    fn standing(&self, channel: Id, user: Id) -> Standing {
        self.node.projection().standing(channel, user)
    }

    fn window_holds_after(&self, after: u64) -> bool {
        self.node.window.holds_after(after)
    }

    fn window_standing_changes(&self, channel: Id, user: Id, after: u64, to: u64) -> Option<bool> {
        self.node.window.standing_changes(channel, user, after, to)
    }

    fn window_next_of(&self, channel: Channel, from: u64) -> Option<Option<u64>> {
        self.node.window.next_of(channel, from)
    }

    fn epoch(&self) -> Epoch {
        self.node.log.epoch()
    }

    fn last_extent(&self) -> Extent {
        self.node.log.last_extent()
    }

    fn save_session(
        &mut self,
        id: Id,
        change: Change,
        written: Option<tokio::sync::oneshot::Sender<()>>,
    ) -> Result<(), SessionError> {
        self.sessions().save(id, change, written)
    }

    fn session_expires_at(&self) -> i64 {
        self.sessions().expires_at()
    }

    fn session_ttl(&self) -> std::time::Duration {
        self.sessions().ttl()
    }
}
