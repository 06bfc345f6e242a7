//! The node's periodic chores: projection snapshots, expired-session sweeps
//! and metric upkeep. Each runs until shutdown; the snapshot is written once
//! more on the way out.

use std::sync::Arc;
use std::time::Duration;

use super::Node;

/// How often the projection snapshot is written when it changed.
pub const SNAPSHOT_INTERVAL: Duration = Duration::from_secs(5);

/// Writes the projection snapshot every [`SNAPSHOT_INTERVAL`] when it moved,
/// and once more on shutdown.
pub async fn run_snapshots(node: Arc<Node>) {
    let mut written = node.projection().last_seq;
    let mut tick = tokio::time::interval(SNAPSHOT_INTERVAL);
    loop {
        let stop = tokio::select! {
            _ = node.shutdown.cancelled() => true,
            _ = tick.tick() => false,
        };
        let routed = node.hub.last_routed();
        // Below what was written only after the stream was recreated
        // (`Hub::restart`): the rebuilt projection is written at once.
        if routed != written {
            let snapshot = {
                let mut projection = node.projection_mut();
                projection.advance_to(routed);
                projection.snapshot()
            };
            match node.store.put_snapshot(&snapshot) {
                Ok(()) => written = snapshot.last_seq,
                Err(e) => tracing::warn!(error = %e, "projection snapshot not written"),
            }
        }
        if stop {
            return;
        }
    }
}

/// Removes expired sessions every [`crate::session::SWEEP_INTERVAL`].
pub async fn run_session_sweeper(node: Arc<Node>) {
    let mut tick = tokio::time::interval(crate::session::SWEEP_INTERVAL);
    loop {
        tokio::select! {
            _ = node.shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        match node.sessions().sweep() {
            Ok(0) => {}
            Ok(n) => tracing::info!(removed = n, "expired sessions removed"),
            Err(e) => tracing::warn!(error = %e, "session sweep failed"),
        }
    }
}

/// Folds metric samples every [`crate::metrics::UPKEEP_INTERVAL`].
pub async fn run_metrics_upkeep(node: Arc<Node>) {
    let mut tick = tokio::time::interval(crate::metrics::UPKEEP_INTERVAL);
    loop {
        tokio::select! {
            _ = node.shutdown.cancelled() => return,
            _ = tick.tick() => crate::metrics::Metrics::upkeep(),
        }
    }
}
