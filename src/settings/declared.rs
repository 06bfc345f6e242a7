//! Every setting, declared once: its meaning, type, default, bounds and
//! variable. The flags, the file's keys, the resolved structs, `--help` and
//! the README's settings table all come from here (see `declare.rs`).
//!
//! The flag is the name with dashes, the TOML key is the name, and the
//! variable is `SWITCHBOARD_` and the name in capitals (a unit test checks
//! it). Defaults and bounds are written as a user would write them and read
//! by the same parser; a unit test checks that each parses and lies within
//! its bounds.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::declare::declare;
use super::{BucketName, NatsUrl, Optional, StreamName};
use crate::diagnostics::LogFormat;
use crate::origins::Origins;
use crate::session::StoreKind;

declare! {
    /// The log's settings, for every command that reads or writes it
    /// (`serve`, `publish`, `replay`, `projection`).
    group LogFlags => LogSettings {
        /// NATS to use (`nats://`, `tls://`, `ws://`, `wss://` or
        /// `host:port`), or a comma-separated list of a cluster's servers
        /// to fail over between. Unset, `serve` starts a local nats-server under the
        /// data directory, and the tools use the URL that `serve` recorded in
        /// `<data-dir>/nats/url`; when that server is gone and no `serve`
        /// holds the data directory, they start one on its store themselves.
        nats_url: Optional<NatsUrl> = "", env "SWITCHBOARD_NATS_URL";
        /// Sled files (`sled/`) and the local nats-server's store (`nats/`).
        data_dir: PathBuf = "./data", env "SWITCHBOARD_DATA_DIR";
        /// JetStream stream name.
        stream: StreamName = "CHAT_EVENTS", env "SWITCHBOARD_STREAM";
        /// The stream's max age.
        retention: Duration = "7d", "1s" ..= "100y", env "SWITCHBOARD_RETENTION";
        /// The stream's replicas (JetStream allows at most 5).
        replicas: usize = "1", "1" ..= "5", env "SWITCHBOARD_REPLICAS";
        /// How long a `Nats-Msg-Id` is remembered, so a retried publish is
        /// stored once (capped at the retention).
        duplicate_window: Duration = "2m", "1s" ..= "100y", env "SWITCHBOARD_DUPLICATE_WINDOW";
        /// A directory of event types added to the 14 built-in ones: one
        /// JSON Schema per type, `<type>.json`, with its routing in
        /// `x-switchboard` (docs/protocol.md, "Added event types"). Every
        /// file must be valid or the command stops, naming the file. Every
        /// node of a deployment uses the same catalog.
        catalog_dir: Optional<String> = "", env "SWITCHBOARD_CATALOG_DIR";
    }

    /// `serve`'s own settings, beside the log's and the connections'.
    group ServeFlags => ServeOptions {
        /// HTTP and WebSocket address.
        listen: SocketAddr = "127.0.0.1:8080", env "SWITCHBOARD_LISTEN";
        /// A second address, for Prometheus and probes on a private
        /// network: set, `GET /metrics` is answered there only (the main
        /// address answers it 404), and `/healthz` and `/readyz` on both.
        /// It serves nothing else, with no origin check and no CORS. Unset,
        /// all three are on the main address.
        metrics_listen: Optional<SocketAddr> = "", env "SWITCHBOARD_METRICS_LISTEN";
        /// How `serve` writes its log to stderr: `text`, a line per record
        /// for people, or `json`, an object per line for a log collector
        /// (`timestamp`, `level`, `target`, `message` and the record's
        /// fields by name). The filter is `SWITCHBOARD_LOG`'s.
        log_format: LogFormat = "text", env "SWITCHBOARD_LOG_FORMAT";
        /// HS secret for tokens (HS256, HS384, HS512), or several separated
        /// by `,`: a token verified by any of them is accepted, so a secret
        /// is rotated by adding the new one, then removing the old. With no
        /// secret, public key or JWKS URL, `serve` refuses to start, except
        /// with `--dev`.
        #[arg(hide_env_values = true)]
        jwt_secret: Optional<String> = "", env "SWITCHBOARD_JWT_SECRET";
        /// PEM files of public keys that verify tokens (RSA for RS256/384/512
        /// and PS256/384/512, EC P-256 for ES256, P-384 for ES384, Ed25519
        /// for EdDSA), separated by `,`.
        jwt_public_keys: Optional<String> = "", env "SWITCHBOARD_JWT_PUBLIC_KEYS";
        /// The identity provider's JWKS URL (`https://…/jwks.json`), or its
        /// OpenID Connect discovery document
        /// (`https://…/.well-known/openid-configuration`), whose `jwks_uri`
        /// is followed. Fetched at start (if the provider does not answer,
        /// the last set kept in the data directory serves; with none, `serve`
        /// refuses to start), every `jwks_refresh`, and when a token names
        /// an unknown `kid` (at most once per 10 s). The last good set keeps
        /// serving while the provider is down.
        jwks_url: Optional<String> = "", env "SWITCHBOARD_JWKS_URL";
        /// How often the JWKS is fetched again (30 s after a failure, if
        /// sooner).
        jwks_refresh: Duration = "5m", "1s" ..= "1d", env "SWITCHBOARD_JWKS_REFRESH";
        /// The issuer tokens must name in `iss` (for example
        /// `https://tenant.example.com/`); set, a token without it is
        /// refused.
        jwt_issuer: Optional<String> = "", env "SWITCHBOARD_JWT_ISSUER";
        /// The audience tokens must name in `aud` (a string or a list), or
        /// several accepted ones separated by `,`; set, a token without `aud`
        /// is refused. Unset, a token with an `aud` is refused.
        jwt_audience: Optional<String> = "", env "SWITCHBOARD_JWT_AUDIENCE";
        /// The claim that holds the user's id, a UUID: `sub`, or a custom
        /// claim the identity provider adds (for example
        /// `https://chat.example.com/user_id`) when its `sub` is not a UUID
        /// (Auth0's `auth0|…`).
        jwt_user_claim: String = "sub", env "SWITCHBOARD_JWT_USER_CLAIM";
        /// Development mode: use a built-in secret when no key is set.
        #[arg(num_args = 0..=1, default_missing_value = "true")]
        dev: bool = "false", env "SWITCHBOARD_DEV";
        /// How long a session outlives its last connection (a connected
        /// session is re-saved at least every 10 minutes).
        session_ttl: Duration = "24h", "1s" ..= "100y", env "SWITCHBOARD_SESSION_TTL";
        /// Where sessions are kept: `sled` (this node's data directory: one
        /// node) or `kv` (a JetStream key-value bucket, so that a
        /// `?session=` resume works on any node of the deployment).
        session_store: StoreKind = "sled", env "SWITCHBOARD_SESSION_STORE";
        /// The `kv` session store's bucket; `serve` creates or updates it
        /// with the session TTL as its max age and the stream's replicas.
        session_bucket: BucketName = "switchboard_sessions", env "SWITCHBOARD_SESSION_BUCKET";
        /// How often a connection writes its moved cursors (and once more
        /// when it closes): a session resumed after a crash, or on another
        /// node, may replay about this much again. Unset: `500ms` with
        /// sled, so that a cursor reaches disk within a second of the
        /// delivery or ack that moved it (sled flushes every 400 ms), and
        /// `2s` with `kv`, whose writes go over NATS to every replica.
        /// Shorter costs more writes: one record per subscription whose
        /// cursor moved, per connection and interval.
        session_flush_interval: Optional<Duration> = "", "100ms" ..= "1m", env "SWITCHBOARD_SESSION_FLUSH_INTERVAL";
        /// Sessions one user keeps, in either store (the default is one per
        /// connection `max_connections_per_user` allows): one more removes
        /// the user's session whose header was written longest ago, and a
        /// `?session=` of it gets a fresh session.
        max_sessions_per_user: usize = "64", "1" ..= "100000", env "SWITCHBOARD_MAX_SESSIONS_PER_USER";
        /// Web origins whose pages may use the gateway from a browser, as a
        /// comma-separated list (`https://app.example.com,http://localhost:3000`)
        /// or `*`: they get CORS answers from the HTTP API (preflight
        /// included), and a request from any other origin, WebSocket
        /// upgrades included, is refused with 403. An origin is compared
        /// whole: scheme, host and port. The gateway's own origins are
        /// always allowed: `http://` with the listen address and port, and
        /// `http://localhost`, `127.0.0.1` or `[::1]` with the port when it
        /// listens on loopback or every address (never the request's `Host`);
        /// list the origin browsers use behind a proxy or balancer. Requests
        /// without an `Origin` header (not from a browser page) are never
        /// refused for it. Unset with `--dev`: any origin.
        allowed_origins: Origins = "", env "SWITCHBOARD_ALLOWED_ORIGINS";
        /// How long shutdown waits for connections and tasks.
        shutdown_timeout: Duration = "10s", "0s" ..= "1d", env "SWITCHBOARD_SHUTDOWN_TIMEOUT";
        /// How far ahead of this gateway's clock a token's `nbf` (not
        /// before) and `iat` (issued at) may be, for an issuer whose clock
        /// runs ahead; beyond it the token is refused with 401. `exp` gets
        /// no leeway.
        token_leeway: Duration = "5s", "0s" ..= "5m", env "SWITCHBOARD_TOKEN_LEEWAY";
        /// How long a user whose last connection to a channel dropped
        /// stays online there, so that a reconnect or a page reload shows
        /// no offline/online pair (a ban or an unsubscribe is at once).
        presence_grace: Duration = "5s", "0s" ..= "1h", env "SWITCHBOARD_PRESENCE_GRACE";
        /// The most users a presence snapshot lists (its `count` is always
        /// the full number).
        presence_limit: usize = "1000", "1" ..= "100000", env "SWITCHBOARD_PRESENCE_LIMIT";
    }

    /// Per-connection bounds, the same for every connection of a node, and
    /// the node's bounds on replays.
    group LimitFlags => Limits {
        /// Largest client frame in bytes; a larger one closes the socket with
        /// 1009.
        max_frame_bytes: usize = "65536", "256" ..= "16777216", env "SWITCHBOARD_MAX_FRAME_BYTES";
        /// Answer a client's `permessage-deflate` offer: events go compressed
        /// (each compressed once per node), and compressed client messages
        /// are read (inflated within `max_frame_bytes`). `false`: the
        /// extension is never negotiated.
        #[arg(num_args = 0..=1, default_missing_value = "true")]
        compression: bool = "true", env "SWITCHBOARD_COMPRESSION";
        /// Events queued per connection; past it, the connection reads the
        /// log at its own pace (no event is lost). A queued event is a
        /// reference to the one copy the node encoded for every subscriber.
        send_queue: usize = "1024", "1" ..= "65536", env "SWITCHBOARD_SEND_QUEUE";
        /// A client whose socket accepts nothing for this long is closed with
        /// 4008.
        stall_timeout: Duration = "60s", "1ms" ..= "1d", env "SWITCHBOARD_STALL_TIMEOUT";
        /// Server ping interval, announced in `hello.heartbeat_ms`.
        heartbeat: Duration = "25s", "1ms" ..= "1d", env "SWITCHBOARD_HEARTBEAT";
        /// Base reconnect delay, announced in `hello.reconnect_ms` (clients
        /// add jitter).
        reconnect_base: Duration = "2s", "0s" ..= "1d", env "SWITCHBOARD_RECONNECT_BASE";
        /// Bad frames allowed per minute; one more closes with 4029
        /// (`forbidden` and `not_found` answers do not count).
        bad_frames_per_minute: usize = "20", "0" ..= "10000", env "SWITCHBOARD_BAD_FRAMES_PER_MINUTE";
        /// Typing frames per second, per channel, per connection; the excess
        /// is dropped.
        typing_per_second: u32 = "2", "0" ..= "1000", env "SWITCHBOARD_TYPING_PER_SECOND";
        /// Subscriptions one connection may hold; one more is a
        /// `bad_request`.
        max_subscriptions: usize = "1024", "1" ..= "65536", env "SWITCHBOARD_MAX_SUBSCRIPTIONS";
        /// WebSockets one user (the token's `sub`) may hold on this node; one
        /// more upgrade is refused with HTTP 429 before it becomes a socket.
        max_connections_per_user: usize = "64", "1" ..= "1000000", env "SWITCHBOARD_MAX_CONNECTIONS_PER_USER";
        /// Sockets still speaking HTTP (not yet a WebSocket) at once; at the
        /// cap, the one whose last request head is oldest is closed to admit
        /// a new one. Also bounded by the open-file limit.
        max_pending_connections: usize = "1024", "1" ..= "1000000", env "SWITCHBOARD_MAX_PENDING_CONNECTIONS";
        /// Time to receive a request's head (its line and headers), counted
        /// from the connection's start or from the end of the previous
        /// response: a slower client, and a keep-alive connection idle this
        /// long, is closed.
        http_head_timeout: Duration = "10s", "100ms" ..= "1h", env "SWITCHBOARD_HTTP_HEAD_TIMEOUT";
        /// Time to receive a `POST /v1/events` body once its head is in; a
        /// slower body is answered 408 and its connection closed.
        http_body_timeout: Duration = "10s", "100ms" ..= "1h", env "SWITCHBOARD_HTTP_BODY_TIMEOUT";
        /// Memory for `POST /v1/events` bodies being received, all requests
        /// together, in bytes: each authorized request takes its
        /// `Content-Length` from it before its body is read (a request
        /// without a valid token or role is refused on its head alone, and
        /// its body never read), and gives it back when it is answered. A
        /// request that does not fit is answered 503 with `Retry-After`, its
        /// body unread.
        publish_buffer_bytes: usize = "33554432", "262144" ..= "1099511627776", env "SWITCHBOARD_PUBLISH_BUFFER_BYTES";
        /// Recent events the node keeps in memory (its window), so that a
        /// client back after a short gap is replayed without asking NATS;
        /// older gaps are read from the stream. Also bounded by
        /// `window_bytes`.
        window_events: usize = "100000", "0" ..= "100000000", env "SWITCHBOARD_WINDOW_EVENTS";
        /// The window's memory bound in bytes (as accounted: three times an
        /// event's encoded size, plus 256 bytes each).
        window_bytes: usize = "67108864", "0" ..= "1099511627776", env "SWITCHBOARD_WINDOW_BYTES";
        /// Replays from the stream (gaps older than the window) running at
        /// once on this node; more wait their turn, in order, while live
        /// delivery goes on.
        max_stream_replays: usize = "32", "1" ..= "100000", env "SWITCHBOARD_MAX_STREAM_REPLAYS";
    }
}
