//! `serve`: brings a gateway node up and takes it down in order.
//!
//! Start: NATS (a local nats-server when no URL is set) → the log → the
//! store → the sessions (sled, or the bucket; their background work
//! starts with them) → the projection caught up from its snapshot → the
//! node's tasks → the listeners (the metrics address's, when set, then the
//! main one). Stop: cancel (both listeners stop
//! accepting, every socket gets 1001 and saves its session, the router and
//! typing stop) → wait for every task, bounded (the snapshot writer writes
//! the last projection snapshot) → the sessions' background work ends
//! (what the connections saved is written) → a store flush → the local
//! nats-server.
//!
//! [`listener`] is the accept loop: the socket budget, HTTP's time and size
//! bounds, and how HTTP connections end.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

pub mod listener;

use crate::data_dir::DataDirLock;
use crate::gateway::{self, housekeeping, router, Node};
use crate::http::{self, Edge};
use crate::local_nats::NatsServer;
use crate::log::Log;
use crate::projection::{Projection, SNAPSHOT_FORMAT};
use crate::session::{self, kv, Sessions, StoreKind};
use crate::settings::{local_url_file, ServeSettings};
use crate::store::Store;
use crate::token::{Signer, Verifier};

/// A started gateway.
pub struct Running {
    pub addr: SocketAddr,
    /// The metrics address (`metrics_listen`), when one is set.
    pub metrics_addr: Option<SocketAddr>,
    pub node: Arc<Node>,
    server: tokio::task::JoinHandle<()>,
    /// The metrics address's accept loop, stopped with the main one.
    metrics_server: Option<tokio::task::JoinHandle<()>>,
    nats: Option<NatsServer>,
    /// The sessions' background work (sled's threads, or the bucket
    /// writer's task): it outlives the node's tasks, to write what their
    /// connections saved.
    sessions: session::Background,
    shutdown_timeout: Duration,
    /// Released last, once the local nats-server is gone.
    _data_dir: DataDirLock,
}

/// Opens the store and brings the projection up to the log's current end.
///
/// The snapshot is used only for the stream it was folded from: one of
/// another epoch (the stream was deleted and created again) is dropped and
/// the log folded afresh. A snapshot written before epochs existed belongs
/// to the stream it was written beside.
pub async fn load_projection(log: &Log, store: &Store) -> anyhow::Result<Projection> {
    let started = Instant::now();
    let mut projection = match store.snapshot() {
        Ok(Some(snapshot)) if snapshot.format != SNAPSHOT_FORMAT => {
            tracing::warn!(
                format = snapshot.format,
                "the projection snapshot was folded by other rules (an older version); folding the log afresh"
            );
            Projection::default()
        }
        Ok(Some(snapshot)) => Projection::from_snapshot(snapshot),
        Ok(None) => Projection::default(),
        Err(e) => {
            tracing::warn!(error = %e, "projection snapshot unreadable; folding the log afresh");
            Projection::default()
        }
    };
    let from = projection.last_seq;
    let extent = log.extent().await?;
    let epoch = extent.epoch;
    if projection.epoch.is_some_and(|e| e != epoch) {
        tracing::warn!(
            snapshot = %projection.epoch.map(|e| e.to_string()).unwrap_or_default(),
            log = %epoch,
            "the snapshot is of another epoch of the stream (it was recreated); folding afresh"
        );
        projection = Projection::default();
    } else if extent.last_seq < projection.last_seq {
        tracing::warn!(
            snapshot = projection.last_seq,
            log = extent.last_seq,
            "the snapshot is ahead of the log (a different stream?); folding afresh"
        );
        projection = Projection::default();
    }
    projection.epoch = Some(epoch);
    let folded = log.fold_into(&mut projection, extent.last_seq).await?;
    tracing::info!(
        from,
        to = projection.last_seq,
        folded,
        %epoch,
        ms = started.elapsed().as_millis() as u64,
        "projection ready"
    );
    Ok(projection)
}

/// The sessions the settings choose, with their background work.
async fn open_sessions(
    settings: &ServeSettings,
    log: &Log,
    store: &Store,
) -> anyhow::Result<(Sessions, session::Background)> {
    match settings.session_store {
        StoreKind::Sled => {
            let opened = Sessions::sled(
                store,
                settings.session_ttl,
                settings.session_flush_interval,
                settings.max_sessions_per_user,
            )
            .context("cannot open the sessions in sled")?;
            Ok(opened)
        }
        StoreKind::Kv => {
            let js = async_nats::jetstream::new(log.client().clone());
            let bucket_settings = kv::BucketSettings {
                name: settings.session_bucket.clone(),
                max_age: settings.session_ttl,
                replicas: settings.stream.replicas,
            };
            let bucket = kv::Bucket::create_or_update(&js, &bucket_settings).await?;
            let opened = Sessions::kv(
                bucket,
                settings.session_ttl,
                settings.session_flush_interval,
                settings.max_sessions_per_user,
            );
            tracing::info!(
                bucket = %bucket_settings.name,
                replicas = bucket_settings.replicas,
                flush_ms = settings.session_flush_interval.as_millis() as u64,
                "sessions kept in a key-value bucket"
            );
            Ok(opened)
        }
    }
}

pub async fn start(settings: ServeSettings) -> anyhow::Result<Running> {
    // Before anything else: a second `serve` on this directory must not
    // start a nats-server on its store or overwrite its files.
    let data_dir = DataDirLock::take(&settings.data_dir)?;
    let (url, nats) = match &settings.nats_url {
        Some(url) => (url.clone(), None),
        None => {
            let store = settings.data_dir.join("nats");
            let server = NatsServer::start(&store)?;
            let url = server.url();
            write_url_file(&settings.data_dir, &url)?;
            tracing::info!(%url, store = %store.display(), "started a local nats-server");
            (url, Some(server))
        }
    };
    // The token keys before anything listens: a JWKS that cannot be had
    // (nor its cached copy) stops the start.
    let keys = Arc::new(
        Verifier::load(&settings.tokens)
            .await
            .context("cannot load the token keys")?,
    );
    tracing::info!(keys = %keys.describe(), "tokens verified with");
    let mut log = Log::connect(&url, settings.stream.clone()).await?;
    let reaper = log.reap_reads();
    let store = Store::open(&settings.data_dir.join("sled"))
        .with_context(|| format!("cannot open the store in {}", settings.data_dir.display()))?;
    let (sessions, session_background) = open_sessions(&settings, &log, &store).await?;
    let projection = load_projection(&log, &store).await?;
    let start_seq = projection.last_seq + 1;
    let epoch = log.epoch();
    let node = Node::new(
        log,
        store,
        projection,
        sessions,
        settings.limits.clone(),
        settings.presence_grace,
        settings.presence_limit,
    );

    let typing = node
        .log()
        .subscribe_typing()
        .await
        .context("cannot subscribe to typing")?;
    node.spawn_until_shutdown(reaper.run());
    if let Some(jwks) = keys.jwks() {
        node.spawn_until_shutdown(jwks.clone().run());
    }
    node.spawn(router::run(node.clone(), start_seq, epoch));
    node.spawn(router::run_typing(node.clone(), typing));
    let disconnects = node
        .log()
        .subscribe_disconnects()
        .await
        .context("cannot subscribe to the operator's disconnects")?;
    node.spawn(crate::gateway::users::run_disconnects(
        node.clone(),
        disconnects,
    ));
    // Presence between the nodes, and its changes to the subscriptions
    // that asked.
    let presence = node.presence().clone();
    let fan_out_node = node.clone();
    node.spawn_until_shutdown(presence.run(node.log().clone(), move |batch| {
        gateway::presence::fan_out(&fan_out_node, batch)
    }));
    node.spawn(housekeeping::run_snapshots(node.clone()));
    node.spawn(housekeeping::run_metrics_upkeep(node.clone()));

    let listener =
        listen(settings.listen).with_context(|| format!("cannot listen on {}", settings.listen))?;
    let addr = listener.local_addr()?;
    let metrics_listener = match settings.metrics_listen {
        Some(at) => Some(listen(at).with_context(|| {
            format!("cannot listen on {at} (the metrics address, metrics_listen)")
        })?),
        None => None,
    };
    // The HTTP layer: the node's front, and what only HTTP uses. The
    // gateway's own origins come from the address it listens on.
    let dev_signer = settings
        .tokens
        .secrets
        .first()
        .map(|secret| Signer::hs256(secret.as_bytes()));
    let mut edge = Edge::new(
        node.front(),
        keys,
        dev_signer,
        settings.allowed_origins.clone(),
        addr,
        settings.dev,
        http::Bounds::of(&settings.limits),
    );
    if metrics_listener.is_some() {
        edge = edge.metrics_elsewhere();
    }
    let edge = Arc::new(edge);
    let open_files = open_files();
    let mut sockets = listener::socket_budget(open_files);
    // The metrics address's sockets come out of the same budget.
    let metrics = match metrics_listener {
        Some(metrics_listener) => {
            sockets = sockets.saturating_sub(METRICS_SOCKETS).max(1);
            let metrics_addr = metrics_listener.local_addr()?;
            let bounds = listener::Bounds {
                head_timeout: settings.limits.http_head_timeout,
                sockets: METRICS_SOCKETS,
                pending: METRICS_SOCKETS,
                write_stall: settings.limits.stall_timeout,
            };
            let routes = http::operations::routes(edge.clone());
            let task = tokio::spawn(listener::run(
                metrics_listener,
                node.clone(),
                routes,
                bounds,
            ));
            tracing::info!(addr = %metrics_addr, "metrics, health and readiness on their own address");
            Some((metrics_addr, task))
        }
        None => None,
    };
    let bounds = listener::Bounds {
        head_timeout: settings.limits.http_head_timeout,
        sockets,
        pending: settings.limits.max_pending_connections,
        write_stall: settings.limits.stall_timeout,
    };
    tracing::info!(
        open_files,
        sockets = bounds.sockets,
        pending = bounds.pending,
        head_timeout_ms = bounds.head_timeout.as_millis() as u64,
        "client sockets bounded"
    );
    let server = tokio::spawn(listener::run(
        listener,
        node.clone(),
        http::routes(edge),
        bounds,
    ));
    let (metrics_addr, metrics_server) = metrics.unzip();
    Ok(Running {
        addr,
        metrics_addr,
        node,
        server,
        metrics_server,
        nats,
        sessions: session_background,
        shutdown_timeout: settings.shutdown_timeout,
        _data_dir: data_dir,
    })
}

impl Running {
    /// Stops in order, within the shutdown timeout.
    pub async fn stop(mut self) {
        let started = Instant::now();
        self.node.begin_shutdown();
        let waited = tokio::time::timeout(self.shutdown_timeout, async {
            self.node.tasks_ended().await;
            let _ = (&mut self.server).await;
            if let Some(metrics_server) = &mut self.metrics_server {
                let _ = metrics_server.await;
            }
        })
        .await;
        if waited.is_err() {
            tracing::warn!("shutdown timed out; some connections were cut");
            self.server.abort();
            if let Some(metrics_server) = &self.metrics_server {
                metrics_server.abort();
            }
        }
        // What the connections saved on their way out gets written (to
        // sled, flushed, or to the bucket), within the shutdown budget (at
        // least a second); then sled's threads are joined, or the bucket
        // writer's task awaited.
        let budget = self
            .shutdown_timeout
            .saturating_sub(started.elapsed())
            .max(Duration::from_secs(1));
        if let Err(e) = self.sessions.close(budget).await {
            tracing::warn!(error = %e, "sessions not all written; some cursors come again after a restore");
        }
        if let Err(e) = self.node.store().flush() {
            tracing::warn!(error = %e, "store flush failed");
        }
        if let Some(mut nats) = self.nats.take() {
            self.node.log().close().await;
            nats.terminate().await;
        }
        tracing::info!(ms = started.elapsed().as_millis() as u64, "stopped");
    }
}

/// Sockets the metrics address (`metrics_listen`) holds at once, taken
/// from the client sockets' budget: scrapers and probes are few, and past
/// it the one idle longest gives way, as on the main address.
pub const METRICS_SOCKETS: usize = 64;

/// Connections waiting to be accepted before the kernel refuses more.
pub const LISTEN_BACKLOG: u32 = 1024;

/// The open-file limit assumed when the process's cannot be read.
pub const DEFAULT_OPEN_FILES: u64 = 1024;

/// The process's open-file limit, raised first to its hard limit (logged
/// with the socket budget it gives: "client sockets bounded").
fn open_files() -> u64 {
    listener::raise_open_file_limit().unwrap_or_else(|| {
        tracing::warn!(
            assumed = DEFAULT_OPEN_FILES,
            "cannot read the open-file limit"
        );
        DEFAULT_OPEN_FILES
    })
}

/// The listening socket. `TCP_NODELAY` is set here and inherited by every
/// accepted socket (Linux): small event frames go out at once instead of
/// waiting up to 40 ms for Nagle's algorithm and delayed ACKs.
fn listen(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.set_nodelay(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

fn write_url_file(data_dir: &Path, url: &str) -> anyhow::Result<()> {
    let path = local_url_file(data_dir);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&path, url).with_context(|| format!("cannot write {}", path.display()))
}

/// The line `serve` prints on stdout once it listens; scripts, tests and
/// benches read it to find the port (`--listen 127.0.0.1:0`; the harness's
/// `listening_address`).
pub const LISTENING: &str = "switchboard listening on http://";

/// The line `serve` prints on stdout, before [`LISTENING`], when the
/// metrics address is set (`--metrics-listen 127.0.0.1:0` finds its port).
pub const METRICS_LISTENING: &str = "switchboard metrics on http://";

/// Runs until SIGTERM or Ctrl-C, then stops.
pub async fn serve(settings: ServeSettings) -> anyhow::Result<()> {
    let running = start(settings).await?;
    // The stop signals are ours before the listening line goes out: a
    // supervisor (or a test) may send SIGTERM as soon as it reads it.
    let stop = stop_signal().context("cannot listen for SIGTERM and SIGINT")?;
    if let Some(metrics_addr) = running.metrics_addr {
        println!("{METRICS_LISTENING}{metrics_addr}");
    }
    println!("{LISTENING}{}", running.addr);
    tracing::info!(addr = %running.addr, "listening");
    stop.await;
    tracing::info!("shutting down");
    running.stop().await;
    Ok(())
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C); both are caught from the call on.
fn stop_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = interrupt.recv() => {}
        }
    })
}
