//! switchboard: a chat product's real-time event gateway, event-sourced on
//! NATS JetStream.
//!
//! Layout, one concept per module:
//! - [`channel`]: subscription channels and ids (domain).
//! - [`event`]: the 14 event types, strict validation, routing (domain).
//! - [`envelope`]: the delivered envelope, encoded once per event copy.
//! - [`log`]: the JetStream stream: publisher, ordered reads, time → sequence.

pub mod access;
pub mod channel;
pub mod envelope;
pub mod event;
pub mod gateway;
pub mod local_nats;
pub mod log;
pub mod metrics;
pub mod projection;
pub mod session;
pub mod store;
pub mod token;

pub mod cli;
pub mod http;
pub mod schema;
pub mod server;
pub mod settings;
