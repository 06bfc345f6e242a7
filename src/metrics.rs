//! Prometheus metrics: the series the README lists, as handles registered once
//! so that hot paths pay an atomic add, not a registry lookup.

use std::sync::OnceLock;

use metrics::{counter, gauge, histogram, Counter, Gauge, Histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// How often histogram samples are folded into buckets.
pub const UPKEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// Latency buckets, in seconds: 50 µs to 5 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0,
];

/// Every series switchboard exports.
#[derive(Clone)]
pub struct Metrics {
    pub connections: Gauge,
    pub subscriptions: Gauge,
    /// Stored events the node's router read from the log.
    pub events_in: Counter,
    /// Event frames written to sockets (live and replayed).
    pub events_out: Counter,
    pub events_replayed: Counter,
    /// Stored events a full queue could not take (read later from the log).
    pub lagged: Counter,
    pub typing_dropped: Counter,
    pub typing_rate_limited: Counter,
    /// Presence deliveries a full queue could not take (the connection is
    /// sent the snapshot again).
    pub presence_dropped: Counter,
    /// Users present in a channel (one per user and channel), as this
    /// node sees the deployment.
    pub presence_users: Gauge,
    /// The other nodes this node hears presence from.
    pub presence_nodes: Gauge,
    pub invalid_events: Counter,
    pub slow_consumer_closes: Counter,
    pub abuse_closes: Counter,
    pub bad_frames: Counter,
    pub publish_latency: Histogram,
    pub delivery_latency: Histogram,
    /// Sockets still speaking HTTP (not upgraded to a WebSocket).
    pub http_connections: Gauge,
    pub http_client_errors: HttpClientErrors,
    /// A socket still speaking HTTP, closed to admit a new one (the pending
    /// cap was reached, or every socket slot was taken).
    pub shed_pending: Counter,
    /// A new socket closed at once: every slot was taken by a WebSocket.
    pub shed_full: Counter,
    /// A WebSocket upgrade refused with 429: the user's connection cap.
    pub shed_user_cap: Counter,
    /// A `POST /v1/events` refused with 503 on its head: the bodies being
    /// received fill `publish_buffer_bytes`.
    pub shed_publish_buffer: Counter,
    /// JetStream consumers the node created (the router's, replays that
    /// the window could not serve, audit reads, and bucket sessions too
    /// large for one batched read).
    pub log_consumers_created: Counter,
    /// Times the node lost its NATS connection (it reconnects on its own).
    pub nats_disconnects: Counter,
    /// The router's consumer replaced because it delivered nothing for
    /// the router's stall timeout while the stream held more, or because
    /// the stream has a new leader.
    pub router_stalls: Counter,
    /// The router's consumer recreated because its read failed.
    pub router_lost: Counter,
    /// Stored events the router has not routed yet (the stream's last
    /// sequence minus the router's), checked every second.
    pub router_behind: Gauge,
    /// Stream replays waiting for one of the node's `max_stream_replays` slots.
    pub stream_replays_waiting: Gauge,
    /// Stream replays running.
    pub stream_replays: Gauge,
    /// Replays served from the window (no request to NATS).
    pub window_replays: Counter,
    /// Events held in the window of recent events, and their accounted memory.
    pub window_events: Gauge,
    pub window_bytes: Gauge,
    /// Session records written to or removed from the session store (sled
    /// or the bucket): a header, a subscription's cursor, a user's index.
    pub session_writes: Counter,
    /// Their bytes: a record written counts its key and value, one removed
    /// its key.
    pub session_write_bytes: Counter,
}

/// HTTP connections ended by something the client did or failed to do (each
/// logged at debug), by reason.
#[derive(Clone)]
pub struct HttpClientErrors {
    /// The request head did not arrive within `http_head_timeout` (also an
    /// idle keep-alive connection).
    pub head_timeout: Counter,
    /// `POST /v1/events`: the body did not arrive within `http_body_timeout`.
    pub body_timeout: Counter,
    /// The client took none of a response for `stall_timeout`.
    pub write_stall: Counter,
    /// The client closed in the middle of a request.
    pub incomplete: Counter,
    /// Not HTTP/1.1, or a head over the size limit.
    pub malformed: Counter,
    /// The socket failed (reset, broken pipe).
    pub io: Counter,
}

impl Metrics {
    /// The process-wide handles (one recorder per process).
    pub fn get() -> &'static Metrics {
        static METRICS: OnceLock<Metrics> = OnceLock::new();
        METRICS.get_or_init(|| {
            let _ = exporter();
            Metrics {
                connections: gauge!("switchboard_connections"),
                subscriptions: gauge!("switchboard_subscriptions"),
                events_in: counter!("switchboard_events_in_total"),
                events_out: counter!("switchboard_events_out_total"),
                events_replayed: counter!("switchboard_events_replayed_total"),
                lagged: counter!("switchboard_events_dropped_total", "reason" => "queue_full"),
                typing_dropped: counter!("switchboard_events_dropped_total", "reason" => "typing_slow_reader"),
                typing_rate_limited: counter!("switchboard_events_dropped_total", "reason" => "typing_rate_limit"),
                presence_dropped: counter!("switchboard_events_dropped_total", "reason" => "presence_slow_reader"),
                presence_users: gauge!("switchboard_presence_users"),
                presence_nodes: gauge!("switchboard_presence_nodes"),
                invalid_events: counter!("switchboard_invalid_events_total"),
                slow_consumer_closes: counter!("switchboard_slow_consumer_closes_total"),
                abuse_closes: counter!("switchboard_abuse_closes_total"),
                bad_frames: counter!("switchboard_bad_frames_total"),
                publish_latency: histogram!("switchboard_publish_latency_seconds"),
                delivery_latency: histogram!("switchboard_delivery_latency_seconds"),
                http_connections: gauge!("switchboard_http_connections"),
                http_client_errors: HttpClientErrors {
                    head_timeout: counter!("switchboard_http_client_errors_total", "reason" => "head_timeout"),
                    body_timeout: counter!("switchboard_http_client_errors_total", "reason" => "body_timeout"),
                    write_stall: counter!("switchboard_http_client_errors_total", "reason" => "write_stall"),
                    incomplete: counter!("switchboard_http_client_errors_total", "reason" => "incomplete"),
                    malformed: counter!("switchboard_http_client_errors_total", "reason" => "malformed"),
                    io: counter!("switchboard_http_client_errors_total", "reason" => "io"),
                },
                shed_pending: counter!("switchboard_connections_shed_total", "reason" => "pending_evicted"),
                shed_full: counter!("switchboard_connections_shed_total", "reason" => "no_slot"),
                shed_user_cap: counter!("switchboard_connections_shed_total", "reason" => "user_cap"),
                shed_publish_buffer: counter!("switchboard_connections_shed_total", "reason" => "publish_buffer"),
                log_consumers_created: counter!("switchboard_log_consumers_created_total"),
                nats_disconnects: counter!("switchboard_nats_disconnects_total"),
                router_stalls: counter!("switchboard_router_consumer_restarts_total", "reason" => "stalled"),
                router_lost: counter!("switchboard_router_consumer_restarts_total", "reason" => "lost"),
                router_behind: gauge!("switchboard_router_behind_events"),
                stream_replays_waiting: gauge!("switchboard_stream_replays_waiting"),
                stream_replays: gauge!("switchboard_stream_replays"),
                window_replays: counter!("switchboard_window_replays_total"),
                window_events: gauge!("switchboard_window_events"),
                window_bytes: gauge!("switchboard_window_bytes"),
                session_writes: counter!("switchboard_session_writes_total"),
                session_write_bytes: counter!("switchboard_session_write_bytes_total"),
            }
        })
    }

    /// Folds recorded histogram samples into their buckets. The exporter
    /// keeps raw samples until then, so the node runs this periodically
    /// (see [`UPKEEP_INTERVAL`]) whether or not anyone scrapes.
    pub fn upkeep() {
        if let Some(handle) = exporter() {
            handle.run_upkeep();
        }
    }

    /// The Prometheus text of every series.
    pub fn render() -> String {
        Metrics::get();
        exporter().map(|h| h.render()).unwrap_or_default()
    }
}

fn exporter() -> Option<&'static PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("latency_seconds".into()), LATENCY_BUCKETS)
                .ok()?
                .build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            Some(handle)
        })
        .as_ref()
}
