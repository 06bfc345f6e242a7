//! Presence: who is online in a `channel:` channel, the same on every node
//! of the deployment. Work in progress (issue 23), not used by the
//! gateway yet: [`view`], the merged view and its rules; [`wire`], this
//! node's holdings, the messages between nodes and what was heard of the
//! others; [`node`], a node's presence and the task that runs it over NATS
//! (`log::presence`). Still to do: connections reporting their joins and
//! leaves, `user_presence` to the subscriptions that asked, the frames,
//! the HTTP route, the clients, the tests across gateways, the bench.
//!
//! The design it is built for: each node owns the presence of its own
//! connections and tells the others on core NATS (its changes as they
//! happen, batched, and a heartbeat with its state's version; a node that
//! sees a gap, or starts, asks the others for their whole state by
//! request-reply). A node not heard from for the detection time is gone:
//! its users are dropped connections (the grace, then offline, unless
//! another node holds them). Every node feeds the same reports to its
//! [`view::View`], so every node announces the same changes, coalesced per
//! channel per poll. Why not a key-value bucket with a TTL per entry:
//! every present user's key would be written again every TTL by its node
//! (10,000 present users, 10,000 writes per period per node), and per-key
//! TTLs need nats-server 2.11; per-node ownership costs one heartbeat per
//! node per period whatever the number of users, and a dead node's users
//! are found by its silence.
//!
//! Open for the rest: the issue bounds a storm to one presence frame per
//! batch interval per channel per client, while `user_presence` is one
//! user's change; a batch with more than a few changes for a channel could
//! go out as one `presence` snapshot frame instead (the SDK already
//! replaces its set from a snapshot). The hook for joins and leaves is
//! `NodeEnv::join`/`leave` (every subscription passes there); a leave
//! from `State::leave_all` (the connection ended) is a drop, any other an
//! end.

pub mod node;
pub mod view;
pub mod wire;

/// The event type of a user's presence change: made by the gateway for
/// the subscriptions that asked, never stored, not accepted from
/// publishers (not an [`crate::event::EventType`]).
pub const USER_PRESENCE: &str = "user_presence";
