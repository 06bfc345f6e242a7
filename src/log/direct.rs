//! Reads of single stored messages by direct get (the stream allows it:
//! any replica answers, with no consumer to create): a sequence's log
//! time, the next event of a channel, and the router's bridge across a
//! consumer's replacement.

use chrono::{DateTime, Utc};

use super::reader::{decode, ReadItem};
use super::{subject, BoxError, Log, LogError, Op, RequestErrorKind};
use crate::channel::Channel;

impl Log {
    /// The log time of the first event at or after `seq`, if any.
    pub async fn time_of_next(&self, seq: u64) -> Result<Option<DateTime<Utc>>, LogError> {
        Ok(self
            .next_on(subject::everything(), seq)
            .await?
            .map(|(_, time)| time))
    }

    /// The sequence of the channel's first event at or after `seq`, if any.
    pub async fn next_seq_of(&self, channel: Channel, seq: u64) -> Result<Option<u64>, LogError> {
        Ok(self
            .next_on(subject::filter(channel), seq)
            .await?
            .map(|(seq, _)| seq))
    }

    pub(super) async fn next_on(
        &self,
        filter: String,
        seq: u64,
    ) -> Result<Option<(u64, DateTime<Utc>)>, LogError> {
        use async_nats::jetstream::stream::DirectGetErrorKind;
        match self
            .stream
            .direct_get_next_for_subject(filter, Some(seq))
            .await
        {
            Ok(message) => Ok(Some((message.sequence, message.time))),
            Err(e) if e.kind() == DirectGetErrorKind::NotFound => Ok(None),
            Err(e) => Err(lookup_failed(
                e.kind() == DirectGetErrorKind::TimedOut,
                seq,
                e,
            )),
        }
    }

    /// The log time of a sequence just acknowledged. A direct get may be
    /// answered by a replica that has not applied it yet (on a cluster),
    /// so a miss is asked again of the stream's leader, which has it.
    pub async fn time_of_stored(&self, seq: u64) -> Result<Option<DateTime<Utc>>, LogError> {
        if let Some(time) = self.time_of(seq).await? {
            return Ok(Some(time));
        }
        use async_nats::jetstream::stream::LastRawMessageErrorKind;
        match self.stream.get_raw_message(seq).await {
            Ok(message) => Ok(Some(message.time)),
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
            Err(e) => Err(lookup_failed(false, seq, e)),
        }
    }

    /// The log time of one sequence, if it is still held.
    pub async fn time_of(&self, seq: u64) -> Result<Option<DateTime<Utc>>, LogError> {
        use async_nats::jetstream::stream::DirectGetErrorKind;
        match self.stream.direct_get(seq).await {
            Ok(message) => Ok(Some(message.time)),
            Err(e) if e.kind() == DirectGetErrorKind::NotFound => Ok(None),
            Err(e) => Err(lookup_failed(
                e.kind() == DirectGetErrorKind::TimedOut,
                seq,
                e,
            )),
        }
    }

    /// The first stored message at or after `seq`, as a reader would give
    /// it, if the replica that answers holds one. Replicas apply the stream
    /// in order: one that holds a later message holds every earlier one
    /// still stored, so nothing is skipped; one behind answers `None`.
    /// `pending` is unknown here and given as 0.
    pub async fn read_next_direct(&self, seq: u64) -> Result<Option<ReadItem>, LogError> {
        use async_nats::jetstream::stream::DirectGetErrorKind;
        match self
            .stream
            .direct_get_next_for_subject(subject::everything(), Some(seq))
            .await
        {
            Ok(message) => {
                let event = decode(
                    message.subject.as_str(),
                    &message.payload,
                    message.sequence,
                    message.time,
                );
                Ok(Some(ReadItem {
                    seq: message.sequence,
                    pending: 0,
                    event,
                    subject: message.subject,
                }))
            }
            Err(e) if e.kind() == DirectGetErrorKind::NotFound => Ok(None),
            Err(e) => Err(lookup_failed(
                e.kind() == DirectGetErrorKind::TimedOut,
                seq,
                e,
            )),
        }
    }
}

fn lookup_failed(timed_out: bool, seq: u64, e: impl Into<BoxError>) -> LogError {
    let kind = match timed_out {
        true => RequestErrorKind::TimedOut,
        false => RequestErrorKind::Failed,
    };
    LogError::request_from(Op::Lookup, kind, format!("sequence {seq}"), e)
}
