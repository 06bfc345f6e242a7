//! The consumers of finished reads, deleted by a task the node owns: a
//! replay's or a history request's consumer is gone when its read ends,
//! not 30 s later (the server's inactivity threshold).
//!
//! So is the consumer of a read whose caller gave up while it was being
//! created (a connection closed mid-replay, a request's time ran out): a
//! creation its caller drops goes to the reaper ([`Log::open_reaped`]),
//! which sees it through and then deletes the consumer it made. The delete
//! follows the create instead of racing it, and no task is spawned per
//! read. A try to create one that timed out (and may yet be carried out)
//! goes to it too, to be deleted once its request could no longer be
//! waiting anywhere.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use async_nats::jetstream;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use tokio::sync::mpsc;

use super::{Log, LogError};

/// What a read hands the reaper.
pub(super) enum Reap {
    /// The name of a consumer whose read is done.
    Finished(String),
    /// A consumer's creation that its caller gave up, or the wait before
    /// deleting a try that timed out: it ends with the name of the
    /// consumer to delete, if there is one.
    Abandoned(BoxFuture<'static, Option<String>>),
}

/// Where reads hand their consumers.
pub(super) type Reaping = mpsc::UnboundedSender<Reap>;

/// Deletes the consumers of finished reads, one at a time, and sees
/// abandoned creations through, as a task the node owns
/// ([`Log::reap_reads`]). Its queue holds a name per finished read not yet
/// deleted: at most the reads that ended since the last delete, each of
/// which held a replay permit or a history request. An abandoned creation
/// lasts at most the log's retries and one request.
pub struct Reaper {
    js: jetstream::Context,
    stream: String,
    finished: mpsc::UnboundedReceiver<Reap>,
}

/// How long one delete may take before the reaper moves on (the server
/// removes that consumer itself after its inactivity threshold).
pub const REAP_TIMEOUT: Duration = Duration::from_secs(2);

impl Reaper {
    /// Deletes finished reads' consumers, until every log that hands them
    /// over is gone (the node stops it at shutdown before that). Creations
    /// still under way then are dropped, their consumers left to the
    /// server.
    pub async fn run(mut self) {
        let mut abandoned = FuturesUnordered::new();
        loop {
            let consumer = tokio::select! {
                Some(created) = abandoned.next() => match created {
                    Some(consumer) => consumer,
                    None => continue,
                },
                reap = self.finished.recv() => match reap {
                    Some(Reap::Finished(consumer)) => consumer,
                    Some(Reap::Abandoned(creation)) => {
                        abandoned.push(creation);
                        continue;
                    }
                    None => return,
                },
            };
            self.delete(consumer).await;
        }
    }

    async fn delete(&self, consumer: String) {
        let deleted = self.js.delete_consumer_from_stream(&consumer, &self.stream);
        match tokio::time::timeout(REAP_TIMEOUT, deleted).await {
            Ok(Ok(_)) => {}
            // Gone already (recreated by the ordered reader, or lost with
            // its server): the server removes what is left.
            Ok(Err(e)) => tracing::debug!(%consumer, error = %e, "read's consumer not deleted"),
            Err(_) => tracing::debug!(%consumer, "read's consumer delete timed out"),
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

    /// Awaits `opening`, a read's consumer creation (and the start of its
    /// reading), which ends with the consumer's name and what it made.
    /// Dropped before that, this hands `opening` to the reaper, which sees
    /// it through and deletes the consumer.
    pub(super) async fn open_reaped<T, F>(&self, opening: F) -> Result<(String, T), LogError>
    where
        T: Send + 'static,
        F: Future<Output = Result<(String, T), LogError>> + Send + 'static,
    {
        Opening {
            creation: Some(opening.boxed()),
            reaper: self.reaper.clone(),
        }
        .await
    }
}

/// A consumer's creation, which goes to the reaper if dropped unfinished.
struct Opening<T: Send + 'static> {
    creation: Option<BoxFuture<'static, Result<(String, T), LogError>>>,
    reaper: Option<Reaping>,
}

impl<T: Send + 'static> Future for Opening<T> {
    type Output = Result<(String, T), LogError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // Polled again once done: nothing more comes.
        let Some(creation) = self.creation.as_mut() else {
            return Poll::Pending;
        };
        let done = std::task::ready!(creation.poll_unpin(cx));
        self.creation = None;
        Poll::Ready(done)
    }
}

impl<T: Send + 'static> Drop for Opening<T> {
    fn drop(&mut self) {
        if let (Some(creation), Some(reaper)) = (self.creation.take(), &self.reaper) {
            tracing::debug!("a read's consumer creation given up: the reaper sees it through");
            let created = async move { creation.await.ok().map(|(name, _)| name) };
            let _ = reaper.send(Reap::Abandoned(created.boxed()));
        }
    }
}
