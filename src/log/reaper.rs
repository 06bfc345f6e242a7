//! The consumers of finished reads, deleted by a task the node owns: a
//! replay's or a history request's consumer is gone when its read ends,
//! not 30 s later (the server's inactivity threshold).

use std::time::Duration;

use async_nats::jetstream;
use tokio::sync::mpsc;

use super::Log;

/// Deletes the consumers of finished reads, one at a time, as a task the
/// node owns ([`Log::reap_reads`]). Its queue holds a name per finished
/// read not yet deleted: at most the reads that ended since the last
/// delete, each of which held a replay permit or a history request.
pub struct Reaper {
    js: jetstream::Context,
    stream: String,
    finished: mpsc::UnboundedReceiver<String>,
}

/// How long one delete may take before the reaper moves on (the server
/// removes that consumer itself after its inactivity threshold).
pub const REAP_TIMEOUT: Duration = Duration::from_secs(2);

impl Reaper {
    /// Deletes finished reads' consumers, until every log that hands them
    /// over is gone (the node stops it at shutdown before that).
    pub async fn run(mut self) {
        while let Some(consumer) = self.finished.recv().await {
            let deleted = self.js.delete_consumer_from_stream(&consumer, &self.stream);
            match tokio::time::timeout(REAP_TIMEOUT, deleted).await {
                Ok(Ok(_)) => {}
                // Gone already (recreated by the ordered reader, or lost
                // with its server): the server removes what is left.
                Ok(Err(e)) => tracing::debug!(%consumer, error = %e, "read's consumer not deleted"),
                Err(_) => tracing::debug!(%consumer, "read's consumer delete timed out"),
            }
        }
    }
}

impl Log {
    /// From now on, this log's reads (and its clones' made after this)
    /// hand their consumers to the returned [`Reaper`] when they end; the
    /// caller runs it.
    pub fn reap_reads(&mut self) -> Reaper {
        let (tx, finished) = mpsc::unbounded_channel();
        self.reaper = Some(tx);
        Reaper {
            js: self.js.clone(),
            stream: self.settings.name.clone(),
            finished,
        }
    }
}
