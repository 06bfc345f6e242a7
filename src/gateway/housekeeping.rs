//! The node's periodic chores: projection snapshots and metric upkeep.
//! Each runs until shutdown; the snapshot is written once more on the way
//! out. (Expired sessions are swept by the sessions' own sled thread,
//! `session::sled_thread`.)
//!
//! Architecture invariant: no chore does O(projection) or O(store) work on
//! a runtime thread, and the snapshot writer holds the projection's lock
//! for O(1) per write: it takes the recorded changes there, and brings its
//! copy up to date, serializes and writes on a blocking thread. (Its one
//! O(n) step under the lock is the copy it makes when it starts.)

use std::sync::Arc;
use std::time::Duration;

use super::Node;
use crate::projection::{Changes, Projection, Snapshot};
use crate::store::{Store, StoreError};

/// How often the projection snapshot is written when it changed.
pub const SNAPSHOT_INTERVAL: Duration = Duration::from_secs(5);

/// Writes the projection snapshot every [`SNAPSHOT_INTERVAL`] when it moved,
/// and once more on shutdown.
pub async fn run_snapshots(node: Arc<Node>) {
    let mut writer = SnapshotWriter::new(&node);
    let mut tick = tokio::time::interval(SNAPSHOT_INTERVAL);
    loop {
        let stop = tokio::select! {
            _ = node.shutdown.cancelled() => true,
            _ = tick.tick() => false,
        };
        writer.write(&node).await;
        if stop {
            return;
        }
    }
}

/// The snapshot writer's state between writes.
///
/// It keeps its own sorted copy of the projection, made once (the only
/// O(n) work under the lock, when the writer starts), and brings it up to
/// date with the changes the router's fold recorded since the last write.
/// When none was recorded, only the stored `last_seq` moves.
struct SnapshotWriter {
    /// The sorted copy; `None` before the first write, or after a blocking
    /// job was lost, until it is made again.
    copy: Option<Snapshot>,
    /// The last sequence whose snapshot is stored.
    written: u64,
    /// The `last_seq` of the stored snapshot while its facts equal the
    /// copy's (it can then be advanced without a rewrite).
    stored: Option<u64>,
}

/// What a write does away from the runtime.
enum Job {
    /// Sort a fresh copy of the projection, then write it whole.
    Copy(Projection),
    /// Bring the copy up to date, then write it (or only its `last_seq`).
    Changes(Snapshot, Changes),
}

/// What a blocking job did.
enum Wrote {
    Whole,
    Sequence,
}

impl SnapshotWriter {
    fn new(node: &Node) -> SnapshotWriter {
        SnapshotWriter {
            copy: None,
            written: node.projection().last_seq,
            stored: None,
        }
    }

    /// Writes the snapshot if the node routed events since the last one
    /// (and makes the writer's copy first if it has none).
    async fn write(&mut self, node: &Node) {
        let routed = node.hub.last_routed();
        // A recreated stream (a new epoch): the router swapped in a rebuilt
        // projection and routes from its start; the copy and what is stored
        // belong to the old stream, so the new one is written whole at once.
        let epoch = node.projection().epoch;
        if self.copy.as_ref().is_some_and(|copy| copy.epoch != epoch) {
            *self = SnapshotWriter {
                copy: None,
                written: 0,
                stored: None,
            };
        }
        if routed <= self.written && self.copy.is_some() {
            return;
        }
        let job = {
            let mut projection = node.projection_mut();
            projection.advance_to(routed);
            match (self.copy.take(), projection.take_changes()) {
                (Some(copy), Some(changes)) => Job::Changes(copy, changes),
                _ => Job::Copy(projection.record_changes()),
            }
        };
        let store = node.store().clone();
        let (stored, written) = (self.stored, self.written);
        let started = std::time::Instant::now();
        let done = tokio::task::spawn_blocking(move || run(job, &store, stored, written)).await;
        let ms = started.elapsed().as_millis() as u64;
        match done {
            Ok((copy, result)) => {
                let last_seq = copy.last_seq;
                self.copy = Some(copy);
                match result {
                    Ok(None) => {}
                    Ok(Some(wrote)) => {
                        self.written = last_seq;
                        if matches!(wrote, Wrote::Whole) {
                            self.stored = Some(last_seq);
                        }
                        // `benches/projection.rs` reads this line.
                        tracing::debug!(
                            last_seq,
                            whole = matches!(wrote, Wrote::Whole),
                            ms,
                            "projection snapshot written"
                        );
                    }
                    Err(e) => {
                        self.stored = None;
                        tracing::warn!(error = %e, "projection snapshot not written");
                    }
                }
            }
            Err(e) => {
                // The copy went with the job: the next write makes another.
                self.stored = None;
                tracing::warn!(error = %e, "projection snapshot job failed");
            }
        }
    }
}

/// The blocking half of a write: returns the writer's copy, brought up to
/// date, and what was written (`None`: nothing needed writing).
fn run(
    job: Job,
    store: &Store,
    stored: Option<u64>,
    written: u64,
) -> (Snapshot, Result<Option<Wrote>, StoreError>) {
    let (copy, changed) = match job {
        Job::Copy(projection) => (projection.snapshot(), true),
        Job::Changes(mut copy, changes) => {
            let changed = !changes.is_empty();
            copy.apply_changes(changes);
            (copy, changed)
        }
    };
    // Nothing routed since the last write: as before, nothing is written
    // (only a writer's first copy gets here).
    let result = if copy.last_seq <= written {
        Ok(None)
    } else if let (Some(of), false) = (stored, changed) {
        store
            .advance_snapshot(of, copy.last_seq)
            .map(|()| Some(Wrote::Sequence))
    } else {
        store.put_snapshot(&copy).map(|()| Some(Wrote::Whole))
    };
    (copy, result)
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
