//! Folding the log into the membership projection: the reading half of
//! `projection`, whose fold stays a pure function of the events.

use futures::StreamExt;

use super::{Log, LogError};
use crate::projection::{Projection, FOLDED};

impl Log {
    /// Reads the log from `projection.last_seq + 1` up to `until`
    /// (inclusive), folds every membership event into `projection`, and
    /// moves its `last_seq` to `until`. Returns how many events were folded.
    ///
    /// One unfiltered read, other types skipped here: nats-server serves
    /// filters with a wildcard in the middle (`chat.channel.*.member_joined`)
    /// far slower than a plain read of everything, on streams with many
    /// subjects. Invalid stored messages are skipped
    /// ([`ReadItem::into_event`](super::ReadItem::into_event)).
    pub async fn fold_into(
        &self,
        projection: &mut Projection,
        until: u64,
    ) -> Result<u64, LogError> {
        if until <= projection.last_seq {
            return Ok(0);
        }
        let mut read = self.read_all(projection.last_seq + 1).await?;
        let mut count = 0;
        if read.initial_pending > 0 {
            while let Some(item) = read.next().await {
                let item = item?;
                let (seq, pending) = (item.seq, item.pending);
                if seq > until {
                    break;
                }
                if let Some(event) = item.into_event() {
                    if FOLDED.contains(&event.data.kind()) {
                        count += 1;
                        projection.apply(event.seq, event.channel, &event.data);
                    }
                }
                if pending == 0 || seq == until {
                    break;
                }
            }
        }
        projection.advance_to(until);
        Ok(count)
    }
}
