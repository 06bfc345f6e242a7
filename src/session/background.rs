//! The sessions' background work, owned: sled's threads or the bucket
//! writer's task, started with the sessions and ended by
//! [`Background::close`] (see the module's doc, "The module owns its
//! background work").

use std::time::Duration;

use super::{sled_thread, writer};

/// Why the sessions' background work did not end cleanly
/// ([`Background::close`]).
#[derive(Debug, thiserror::Error)]
pub enum CloseError {
    /// The budget ran out. The bucket writer's task was aborted with what
    /// it still held (its cursors come again after a restore, never
    /// skipped); sled's threads were told to stop and end with the process.
    #[error("{what} did not finish within {budget:?}")]
    TimedOut { what: String, budget: Duration },
    #[error("{what} panicked")]
    Panicked { what: String },
}

/// The sessions' background work: sled's threads, or the bucket writer's
/// task. One per node, never cloned: [`Background::close`] ends it in
/// order; dropped without `close`, it tells sled's threads to stop (after
/// what is queued) and aborts the writer's task (what it holds is lost).
pub struct Background {
    /// `None` once closed.
    work: Option<Work>,
}

enum Work {
    Sled(sled_thread::Threads),
    Kv {
        writer: writer::Writer,
        task: tokio::task::JoinHandle<()>,
    },
}

impl Background {
    pub(super) fn sled(threads: sled_thread::Threads) -> Background {
        Background {
            work: Some(Work::Sled(threads)),
        }
    }

    pub(super) fn kv(writer: writer::Writer, task: tokio::task::JoinHandle<()>) -> Background {
        Background {
            work: Some(Work::Kv { writer, task }),
        }
    }

    /// Ends the sessions' background work once the connections have handed
    /// over their last changes, within `budget`: sled's threads apply what
    /// was queued, flush sled and are joined; the bucket writer writes what
    /// it holds and its task is awaited. Past the budget the writer's task
    /// is aborted, and sled's threads are left to end with the process.
    pub async fn close(mut self, budget: Duration) -> Result<(), CloseError> {
        match self.work.take() {
            None => Ok(()),
            Some(Work::Sled(threads)) => {
                match tokio::time::timeout(budget, threads.close()).await {
                    Ok(closed) => closed,
                    Err(_) => Err(CloseError::TimedOut {
                        what: "sled's session threads".into(),
                        budget,
                    }),
                }
            }
            Some(Work::Kv { writer, mut task }) => {
                writer.close();
                match tokio::time::timeout(budget, &mut task).await {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => Err(CloseError::Panicked {
                        what: format!("the session writer ({e})"),
                    }),
                    Err(_) => {
                        task.abort();
                        Err(CloseError::TimedOut {
                            what: format!(
                                "the session writer ({} sessions' changes not written)",
                                writer.pending()
                            ),
                            budget,
                        })
                    }
                }
            }
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        match self.work.take() {
            None => {}
            Some(Work::Sled(threads)) => threads.stop(),
            Some(Work::Kv { writer, task }) => {
                writer.close();
                task.abort();
            }
        }
    }
}
