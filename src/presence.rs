//! Presence: who is online in a `channel:` channel, the same on every node
//! of the deployment. [`view`]: the merged view and its rules (the grace,
//! ends that skip it, a dead node, coalescing, snapshots), in 32 bytes per
//! present user; [`wire`]: what this node has still to send, the messages
//! between nodes and what was heard of the others; [`node`]: a node's
//! presence and the task that runs it over NATS (`log::presence`), whose
//! batches `gateway::presence` hands to the subscriptions that asked.
//!
//! The design: each node owns the presence of its own connections and
//! tells the others on core NATS: its changes every batch (200 ms), and a
//! heartbeat with its version every 2 s; a node that sees a gap, or a node
//! new to it, asks that node for its whole holdings by request-reply. A
//! node not heard from for the detection time (6 s) is gone: its users are
//! dropped connections (the grace, then offline, unless another node holds
//! them). Every node feeds the same reports to its [`view::View`], so every
//! node announces the same changes, coalesced per channel per batch.
//!
//! Why not a key-value bucket with a TTL per entry: every present user's
//! key would be written again every TTL by its node (10,000 present users,
//! 10,000 writes per period per node, replicated three times), per-key
//! TTLs need nats-server 2.11, and a watcher still has to rebuild the same
//! merged view. Per-node ownership costs one heartbeat per node per period
//! whatever the number of users, a dead node's users are found by its
//! silence, and nothing is stored: a NATS node's death costs a reconnect
//! and a sync, not data.
//!
//! The hook for joins and leaves is the connection's `Env::join`/`leave`
//! (every subscription passes there): a leave because the connection ended
//! is a drop (the grace), any other an end (offline at once).

pub mod node;
pub mod view;
pub mod wire;

/// The event type of a user's presence change: made by the gateway for
/// the subscriptions that asked, never stored, not accepted from
/// publishers (not an [`crate::event::EventType`]).
pub const USER_PRESENCE: &str = "user_presence";
