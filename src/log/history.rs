//! Audit history: some channels' events over a sequence or time range, a
//! page at a time, read lazily through an ordered [`LogRead`].

use chrono::{DateTime, Utc};
use futures::StreamExt;

use super::{Log, LogError, LogRead, ReadItem};
use crate::channel::Channel;

/// The default and the largest page of the history API and `replay`.
pub const HISTORY_DEFAULT_LIMIT: usize = 1000;
pub const HISTORY_MAX_LIMIT: usize = 10_000;

/// An audit read: some channels' events in a sequence or time range.
#[derive(Clone, Debug, Default)]
pub struct HistoryQuery {
    pub channels: Vec<Channel>,
    /// Only events with `seq > after_seq`.
    pub after_seq: Option<u64>,
    /// Only events whose envelope timestamp is `>= since`.
    pub since: Option<DateTime<Utc>>,
    /// Only events whose envelope timestamp is `< until`.
    pub until: Option<DateTime<Utc>>,
    /// At most this many events (invalid stored messages are skipped and not counted).
    pub limit: Option<usize>,
}

/// A page of history, read lazily: memory is one consumer batch.
pub struct History {
    read: Option<LogRead>,
    remaining: usize,
    until_seq_time: Option<DateTime<Utc>>,
}

impl Log {
    pub async fn history(&self, query: &HistoryQuery) -> Result<History, LogError> {
        let mut start = query.after_seq.map_or(1, |s| s.saturating_add(1));
        if let Some(since) = query.since {
            start = start.max(self.seq_at_time(since).await?);
        }
        let remaining = query.limit.unwrap_or(usize::MAX);
        let read = self.read(&query.channels, start).await?;
        let read = (read.initial_pending > 0 && remaining > 0).then_some(read);
        Ok(History {
            read,
            remaining,
            until_seq_time: query.until.map(super::ceil_to_millis),
        })
    }
}

impl History {
    /// The next item, or `None` at the end of the range, the limit or the log.
    pub async fn next(&mut self) -> Option<Result<ReadItem, LogError>> {
        let read = self.read.as_mut()?;
        let item = match read.next().await {
            Some(Ok(item)) => item,
            other => {
                self.read = None;
                return other;
            }
        };
        if let (Some(until), Ok(event)) = (self.until_seq_time, &item.event) {
            if event.time >= until {
                self.read = None;
                return None;
            }
        }
        if item.event.is_ok() {
            self.remaining -= 1;
        }
        if item.pending == 0 || self.remaining == 0 {
            self.read = None;
        }
        Some(Ok(item))
    }
}
