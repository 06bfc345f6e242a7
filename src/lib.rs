//! switchboard: a chat product's real-time event gateway, event-sourced on
//! NATS JetStream. One stream holds every stored event; each node reads it
//! once and fans it out to its WebSockets. See `ARCHITECTURE.md`.
//!
//! Layout, one line per module:
//!
//! - [`channel`]: subscription channels (`channel:`, `user:`, `global`) and ids (domain).
//! - [`event`]: the 14 built-in event types and the added ones, strict validation and the routing rule (domain).
//! - [`catalog`]: event types a deployment adds (one JSON Schema per type), and the AsyncAPI document of the protocols.
//! - [`access`]: authorization: who may subscribe, which events cut a subscription (domain).
//! - [`token`]: JWT claims, their verification (HS secrets, PEM keys, a JWKS) and minting.
//! - [`position`]: the stream's epoch and a position in it (domain).
//! - [`presence`]: who is online in a channel, the same on every node (per-node ownership on core NATS).
//! - [`envelope`]: the delivered envelope, encoded once per event copy.
//! - [`projection`]: the membership projection folded from the log, and its snapshot.
//! - [`log`]: the JetStream stream: idempotent publisher, ordered reads, time → sequence.
//! - [`gateway`]: the node: its one log consumer (router), the hub, the connections.
//! - [`session`]: sessions: a connection's subscriptions and cursors, for resume; both stores and their background work.
//! - [`store`]: the node's own state: its sled database (shared with the sessions) and the projection snapshot.
//! - [`schema`]: the JSON Schemas of `schemas/`, and validation of publish bodies.
//! - [`http`]: the HTTP API and the WebSocket endpoint, as warp filters over its `Edge`.
//! - [`console`]: `GET /console`, the browser console embedded at build time.
//! - [`server`]: `serve`: brings a node up and takes it down, in order.
//! - [`settings`]: settings values, their precedence, and errors that name them.
//! - [`cli`]: the command line (`serve`, `publish`, `replay`, `token`, `projection`, `tail`).
//! - [`tail`]: `switchboard tail`, a gateway client that prints frames and resumes on its own.
//! - [`failure`]: how a command fails: its message and exit code.
//! - [`data_dir`]: the data directory's lock: one switchboard process at a time.
//! - [`local_nats`]: a nats-server child process, for `serve` without a URL (the test harness starts its servers with the same command line).
//! - [`tool_nats`]: the NATS the tools reach the log on: the configured URL, or the data directory's nats-server (started for them when no `serve` runs).
//! - [`metrics`]: the Prometheus series, registered once.
//! - [`diagnostics`]: the process's own log on stderr (its filter, text or JSON lines).
//! - [`origins`]: which web origins may use the gateway from a browser (CORS, WebSocket upgrades).
//! - [`sparse`]: maps that give back the room a busy moment grew them to.

pub mod access;
pub mod catalog;
pub mod channel;
pub mod data_dir;
pub mod diagnostics;
pub mod envelope;
pub mod event;
pub mod failure;
pub mod gateway;
pub mod local_nats;
pub mod log;
pub mod metrics;
pub mod origins;
pub mod position;
pub mod presence;
pub mod projection;
pub mod session;
pub mod store;
pub mod token;

pub mod cli;
pub mod console;
pub mod http;
pub mod schema;
pub mod server;
pub mod settings;
pub mod sparse;
pub mod tail;
pub mod tool_nats;
