//! Ordered reads of the log from a sequence (the audit history over a
//! range, `super::history`, is one of them).
//!
//! Reads use an ordered pull consumer: the server sends a bounded batch at a
//! time and the next batch only once the reader has taken half of it, so a
//! reader never holds more than a batch however long the backlog is. A
//! replay's read of one channel pulls larger batches from a pull consumer of
//! its own, with the ordered consumer's rules (`read_channel`).

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use async_nats::jetstream::{
    self,
    consumer::{pull, DeliverPolicy},
};
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use futures::{FutureExt, Stream, StreamExt};

use super::reaper::{Reap, Reaping};
use super::{subject, Log, LogError, Op, RequestErrorKind, REQUEST_TIMEOUT};
use crate::channel::Channel;
use crate::envelope::StoredEvent;
use crate::event::EventType;
use crate::metrics::Metrics;

/// How long one pull request of a reader lasts. The server sends an idle
/// heartbeat every half of it; a reader that hears nothing for twice the
/// heartbeat has missed one, and after two misses in a row (twice this
/// long) it recreates its consumer from the next sequence: a consumer lost
/// with its server (on a cluster, while this client's own connection is on
/// another server) is replaced within seconds, not the 45 s of
/// async-nats's defaults. An idle reader costs one pull request per expiry
/// and two heartbeats. (The router also watches the stream's leader: see
/// `gateway::router`.)
pub const READ_REQUEST_EXPIRES: Duration = Duration::from_secs(1);

/// One message read from the log.
#[derive(Debug)]
pub struct ReadItem {
    pub seq: u64,
    /// Messages matching the read's filter that the log held after this one
    /// when it was sent; 0 means the reader has caught up.
    pub pending: u64,
    /// The event, or why the stored message is not a valid event (such a
    /// message is skipped by every reader and counted, never delivered).
    pub event: Result<StoredEvent, Skipped>,
    pub subject: async_nats::Subject,
}

/// Why a stored message is skipped.
#[derive(Debug)]
pub struct Skipped {
    pub reason: String,
    /// It is of a type this node's catalog does not have (not invalid:
    /// a node with a newer catalog stored it).
    pub unknown_type: Option<String>,
}

impl ReadItem {
    /// The event, or `None` for a stored message that is not a valid event.
    ///
    /// Every reader skips such a message without stopping; this is the one
    /// place that says so: it is logged at WARN with its sequence and
    /// subject, and counted in `switchboard_invalid_events_total`. Read
    /// `seq` and `pending` first if they are needed afterwards.
    pub fn into_event(self) -> Option<StoredEvent> {
        match self.event {
            Ok(event) => Some(event),
            Err(Skipped {
                unknown_type: Some(kind),
                ..
            }) => {
                metrics::counter!("switchboard_unknown_events_total", "type" => kind.clone())
                    .increment(1);
                if first_of_type(&kind) {
                    tracing::warn!(seq = self.seq, subject = %self.subject, %kind, "skipping stored events of a type this node's catalog does not have (logged once per type; counted in switchboard_unknown_events_total)");
                }
                None
            }
            Err(Skipped { reason, .. }) => {
                Metrics::get().invalid_events.increment(1);
                tracing::warn!(seq = self.seq, subject = %self.subject, %reason, "skipping an invalid stored event");
                None
            }
        }
    }

    /// The type of a skipped message this node's catalog does not have.
    pub fn unknown_type(&self) -> Option<&str> {
        match &self.event {
            Err(skipped) => skipped.unknown_type.as_deref(),
            Ok(_) => None,
        }
    }
}

/// Whether `kind` is seen unknown for the first time in this process.
fn first_of_type(kind: &str) -> bool {
    static SEEN: std::sync::Mutex<Option<std::collections::HashSet<String>>> =
        std::sync::Mutex::new(None);
    let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
    seen.get_or_insert_with(Default::default)
        .insert(kind.to_string())
}

/// An ordered read of some channels (or all of them) from a sequence on.
///
/// Dropping it hands its consumer to the log's [`Reaper`](super::reaper::Reaper), when one runs,
/// to be deleted: the server would otherwise keep it for its inactivity
/// threshold (30 s), and a storm of replays would leave a crowd of
/// consumers behind it. Without a reaper (the tools) the server removes it
/// after that threshold.
pub struct LogRead {
    messages: Messages,
    /// Matching messages at and after the start when the read began.
    pub initial_pending: u64,
    /// Where to hand the consumer's name once the read is done.
    reap: Option<(Reaping, String)>,
}

impl Drop for LogRead {
    fn drop(&mut self) {
        if let Some((reaper, consumer)) = self.reap.take() {
            // A reaper that stopped (the node is shutting down) leaves it
            // to the server.
            let _ = reaper.send(Reap::Finished(consumer));
        }
    }
}

enum Messages {
    Ordered(Box<pull::Ordered>),
    Pulled(Box<PulledRead>),
}

/// The messages of a channel read: a pull consumer of its own (no acks,
/// in memory, one replica, as an ordered consumer) pulling
/// [`CHANNEL_READ_PULL`] messages at a time, with the ordered consumer's
/// rules: a gap in the consumer's sequence (a reply lost on the way) or a
/// failed pull (two missed heartbeats, the consumer gone) recreates it
/// from the stream sequence after the last message read.
struct PulledRead {
    log: Log,
    config: pull::Config,
    messages: Option<pull::Stream>,
    recreating: Option<BoxFuture<'static, Result<(String, pull::Stream), LogError>>>,
    /// The stream and consumer sequences of the last message read.
    stream_seq: u64,
    consumer_seq: u64,
}

/// The messages one pull of a channel read asks for, and its bytes at most.
/// async-nats's ordered consumer asks for 500 and pulls again once half are
/// taken; larger pulls keep nats-server busy while the gateway writes
/// (docs/performance.md, Replay). A read pulls again once half a pull is
/// left, so it holds at most one and a half pulls: 7,500 messages or
/// 3 MiB.
pub const CHANNEL_READ_PULL: usize = 5000;
pub const CHANNEL_READ_PULL_BYTES: usize = 2 * 1024 * 1024;

impl Log {
    /// Reads the given channels' events (every channel when empty) with
    /// `seq >= from_seq`, in order, then waits for new ones.
    pub async fn read(&self, channels: &[Channel], from_seq: u64) -> Result<LogRead, LogError> {
        let filters = channels.iter().map(|c| subject::filter(*c)).collect();
        self.read_filtered(filters, from_seq).await
    }

    /// Reads one channel's events with `seq >= from_seq`, in order, then
    /// waits for new ones, with larger pulls than [`Log::read`] (a
    /// replay's read: see [`CHANNEL_READ_PULL`]).
    pub async fn read_channel(&self, channel: Channel, from_seq: u64) -> Result<LogRead, LogError> {
        let config = pull::Config {
            deliver_policy: DeliverPolicy::ByStartSequence {
                start_sequence: from_seq.max(1),
            },
            ack_policy: jetstream::consumer::AckPolicy::None,
            filter_subject: subject::filter(channel),
            inactive_threshold: Duration::from_secs(30),
            memory_storage: true,
            num_replicas: 1,
            max_expires: READ_REQUEST_EXPIRES,
            ..Default::default()
        };
        let (name, (initial_pending, messages)) = open_pulled(self.clone(), config.clone()).await?;
        let reap = self.reaper.clone().map(|reaper| (reaper, name));
        Ok(LogRead {
            messages: Messages::Pulled(Box::new(PulledRead {
                log: self.clone(),
                config,
                messages: Some(messages),
                recreating: None,
                stream_seq: from_seq.max(1) - 1,
                consumer_seq: 0,
            })),
            initial_pending,
            reap,
        })
    }

    /// Reads one channel's events of the given types with `seq >= from_seq`,
    /// in order, then waits for new ones (literal subjects, no wildcard).
    pub async fn read_kinds(
        &self,
        channel: Channel,
        kinds: &[EventType],
        from_seq: u64,
    ) -> Result<LogRead, LogError> {
        let filters = kinds
            .iter()
            .map(|k| subject::subject(channel, *k))
            .collect();
        self.read_filtered(filters, from_seq).await
    }

    /// The first `seq >= from` of one channel's events of the given types,
    /// if any: one direct get per type, no consumer.
    pub async fn first_of_kinds(
        &self,
        channel: Channel,
        kinds: &[EventType],
        from: u64,
    ) -> Result<Option<u64>, LogError> {
        let lookups = kinds
            .iter()
            .map(|k| self.next_on(subject::subject(channel, *k), from));
        let found = futures::future::try_join_all(lookups).await?;
        Ok(found.into_iter().flatten().map(|(seq, _)| seq).min())
    }

    /// Reads every event with `seq >= from_seq`, in order, then waits for
    /// new ones: one unfiltered consumer, which nats-server serves faster
    /// than any filter with a wildcard in the middle.
    pub async fn read_all(&self, from_seq: u64) -> Result<LogRead, LogError> {
        self.read_filtered(Vec::new(), from_seq).await
    }

    /// Reads the events on the given subject filters (every subject when
    /// empty). Subjects stay inside the log: callers name channels.
    async fn read_filtered(
        &self,
        filters: Vec<String>,
        from_seq: u64,
    ) -> Result<LogRead, LogError> {
        let mut config = pull::OrderedConfig {
            deliver_policy: DeliverPolicy::ByStartSequence {
                start_sequence: from_seq.max(1),
            },
            max_expires: READ_REQUEST_EXPIRES,
            ..Default::default()
        };
        match filters.len() {
            0 => {}
            1 => config.filter_subject = filters[0].clone(),
            _ => config.filter_subjects = filters,
        }
        let log = self.clone();
        let opening = async move {
            let named = |name| pull::OrderedConfig {
                name: Some(name),
                ..config.clone()
            };
            let consumer = log.create_reader(named).await?;
            let info = consumer.cached_info();
            let (name, initial_pending) = (info.name.clone(), info.num_pending);
            let messages = consumer.messages().await.map_err(|e| {
                LogError::request_from(Op::Read, RequestErrorKind::Failed, "starting a reader", e)
            })?;
            Ok((name, (initial_pending, messages)))
        };
        let (name, (initial_pending, messages)) = self.open_reaped(opening).await?;
        let reap = self.reaper.clone().map(|reaper| (reaper, name));
        Ok(LogRead {
            messages: Messages::Ordered(Box::new(messages)),
            initial_pending,
            reap,
        })
    }
}

impl Log {
    /// Creates a reader's consumer (counted in
    /// `switchboard_log_consumers_created_total`). A request that timed
    /// out or found JetStream unavailable (a cluster electing a leader
    /// after a server died) is tried again for up to
    /// [`READER_CREATE_RETRY_FOR`].
    ///
    /// Each try's consumer has a new name (`named` makes its config): tried
    /// again under one name, a read on a 3-server cluster with a server
    /// down (`tests/cluster.rs`) timed out on every try. A try that timed
    /// out may still be carried out: its name goes to the reaper, which
    /// deletes that consumer once the request could no longer be waiting
    /// (another [`REQUEST_TIMEOUT`]).
    async fn create_reader<C>(
        &self,
        named: impl Fn(String) -> C,
    ) -> Result<async_nats::jetstream::consumer::Consumer<C>, LogError>
    where
        C: jetstream::consumer::IntoConsumerConfig + jetstream::consumer::FromConsumer,
    {
        use async_nats::jetstream::stream::ConsumerErrorKind;
        let give_up = tokio::time::Instant::now() + READER_CREATE_RETRY_FOR;
        let mut backoff = Duration::from_millis(100);
        loop {
            let name = format!("read-{}", uuid::Uuid::new_v4().simple());
            let e = match self.stream.create_consumer(named(name.clone())).await {
                Ok(consumer) => {
                    Metrics::get().log_consumers_created.increment(1);
                    return Ok(consumer);
                }
                Err(e) => e,
            };
            if let (ConsumerErrorKind::TimedOut, Some(reaper)) = (e.kind(), &self.reaper) {
                let _ = reaper.send(Reap::Abandoned(
                    async move {
                        tokio::time::sleep(REQUEST_TIMEOUT).await;
                        Some(name)
                    }
                    .boxed(),
                ));
            }
            let passing = match e.kind() {
                ConsumerErrorKind::TimedOut | ConsumerErrorKind::Request => true,
                ConsumerErrorKind::JetStream(j) => j.code() >= 500,
                _ => false,
            };
            if !passing || tokio::time::Instant::now() + backoff >= give_up {
                let kind = match e.kind() {
                    ConsumerErrorKind::TimedOut => RequestErrorKind::TimedOut,
                    _ => RequestErrorKind::Failed,
                };
                return Err(LogError::request_from(
                    Op::Read,
                    kind,
                    "creating a reader",
                    e,
                ));
            }
            tracing::debug!(error = %e, "reader creation retry");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(1));
        }
    }
}

/// How long creating a reader is retried while NATS times out or has no
/// JetStream leader to answer.
pub const READER_CREATE_RETRY_FOR: Duration = Duration::from_secs(20);

/// Creates a channel read's consumer and starts its pulls: its name, the
/// messages pending, and the messages.
async fn open_pulled(
    log: Log,
    config: pull::Config,
) -> Result<(String, (u64, pull::Stream)), LogError> {
    let reaped = log.clone();
    let opening = async move {
        let named = |name| pull::Config {
            name: Some(name),
            ..config.clone()
        };
        let consumer = log.create_reader(named).await?;
        let info = consumer.cached_info();
        let (name, pending) = (info.name.clone(), info.num_pending);
        let messages = consumer
            .stream()
            .max_messages_per_batch(CHANNEL_READ_PULL)
            .max_bytes_per_batch(CHANNEL_READ_PULL_BYTES)
            .expires(READ_REQUEST_EXPIRES)
            .heartbeat(READ_REQUEST_EXPIRES / 2)
            .messages()
            .await
            .map_err(|e| {
                LogError::request_from(Op::Read, RequestErrorKind::Failed, "starting a reader", e)
            })?;
        Ok((name, (pending, messages)))
    };
    reaped.open_reaped(opening).await
}

impl LogRead {
    fn poll_message(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<async_nats::jetstream::Message, LogError>>> {
        let read = match &mut self.messages {
            Messages::Ordered(messages) => {
                return messages.poll_next_unpin(cx).map(|m| {
                    m.map(|m| {
                        m.map_err(|e| {
                            LogError::request_from(Op::Read, RequestErrorKind::Failed, "reading", e)
                        })
                    })
                })
            }
            Messages::Pulled(read) => read,
        };
        loop {
            if let Some(recreating) = &mut read.recreating {
                let (name, messages) = match std::task::ready!(recreating.poll_unpin(cx)) {
                    Ok(opened) => opened,
                    Err(e) => {
                        read.recreating = None;
                        return Poll::Ready(Some(Err(e)));
                    }
                };
                read.recreating = None;
                read.messages = Some(messages);
                read.consumer_seq = 0;
                if let Some((reaper, old)) = &mut self.reap {
                    let _ = reaper.send(Reap::Finished(std::mem::replace(old, name)));
                }
            }
            let Some(messages) = &mut read.messages else {
                return Poll::Ready(None);
            };
            let lost = match std::task::ready!(messages.poll_next_unpin(cx)) {
                None => "the pulls ended".to_string(),
                Some(Err(e)) => e.to_string(),
                Some(Ok(message)) => {
                    let reply = message.reply.as_ref().map_or("", |r| r.as_str());
                    match Delivery::consumer_seq(reply) {
                        Some(cseq) if cseq == read.consumer_seq + 1 => {
                            read.consumer_seq = cseq;
                            if let Some(d) = Delivery::parse(reply) {
                                read.stream_seq = d.seq;
                            }
                            return Poll::Ready(Some(Ok(message)));
                        }
                        Some(cseq) => {
                            format!("consumer sequence {cseq} after {}", read.consumer_seq)
                        }
                        None => return Poll::Ready(Some(Ok(message))),
                    }
                }
            };
            // Recreate from the message after the last one read.
            tracing::debug!(%lost, after = read.stream_seq, "a channel read recreates its consumer");
            read.messages = None;
            let mut config = read.config.clone();
            config.deliver_policy = DeliverPolicy::ByStartSequence {
                start_sequence: read.stream_seq + 1,
            };
            read.recreating = Some(
                open_pulled(read.log.clone(), config)
                    .map(|r| r.map(|(name, (_, messages))| (name, messages)))
                    .boxed(),
            );
        }
    }
}

impl Stream for LogRead {
    type Item = Result<ReadItem, LogError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let message = match self.poll_message(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
            Poll::Ready(Some(Ok(message))) => message,
        };
        let reply = message.reply.as_ref().map_or("", |reply| reply.as_str());
        let Some(Delivery { seq, pending, time }) = Delivery::parse(reply) else {
            let reply: String = reply.chars().take(200).collect();
            return Poll::Ready(Some(Err(LogError::request(
                Op::Read,
                RequestErrorKind::Malformed,
                format!("`{reply}` is not a JetStream delivery"),
            ))));
        };
        let subject = message.subject.clone();
        let event = decode(subject.as_str(), &message.payload, seq, time);
        Poll::Ready(Some(Ok(ReadItem {
            seq,
            pending,
            event,
            subject,
        })))
    }
}

/// What the server says of one delivered message, in its reply subject.
#[derive(Debug, PartialEq)]
struct Delivery {
    seq: u64,
    pending: u64,
    time: DateTime<Utc>,
}

impl Delivery {
    /// Reads `$JS.ACK.<stream>.<consumer>.<delivered>.<seq>.<consumer
    /// seq>.<nanos>.<pending>`, or the form with `<domain>.<account hash>.`
    /// before the stream and optional tokens after `pending`.
    ///
    /// async-nats's `Message::info` reads the same; the ordered consumer
    /// has already called it on this message, and this reads only the three
    /// numbers a reader keeps (it runs once per event replayed).
    fn parse(reply: &str) -> Option<Delivery> {
        let at = Self::tokens(reply)?;
        let number = |i: usize| at[i].parse::<u64>().ok();
        let nanos = at[5].parse::<i64>().ok()?;
        Some(Delivery {
            seq: number(3)?,
            pending: number(6)?,
            time: DateTime::from_timestamp_nanos(nanos),
        })
    }

    /// The consumer sequence in a delivery's reply subject.
    fn consumer_seq(reply: &str) -> Option<u64> {
        Self::tokens(reply)?[4].parse().ok()
    }

    /// A reply subject's seven tokens from the stream on (stream, consumer,
    /// delivered, seq, consumer seq, nanos, pending), whichever form it has.
    fn tokens(reply: &str) -> Option<[&str; 7]> {
        let mut at = [""; 9];
        let mut n = 0;
        for token in reply.strip_prefix("$JS.ACK.")?.split('.').take(at.len()) {
            at[n] = token;
            n += 1;
        }
        // Seven tokens: an old server's form without domain and hash.
        let skip = match n {
            9 => 2,
            7 => 0,
            _ => return None,
        };
        let mut from = [""; 7];
        from.copy_from_slice(&at[skip..skip + 7]);
        Some(from)
    }
}

pub(super) fn decode(
    subject: &str,
    payload: &[u8],
    seq: u64,
    time: DateTime<Utc>,
) -> Result<StoredEvent, Skipped> {
    let decoded = subject::decode_kept(subject, payload).map_err(|e| Skipped {
        unknown_type: match &e {
            subject::PayloadError::Subject(subject::SubjectError::UnknownType(kind)) => {
                Some(kind.clone())
            }
            _ => None,
        },
        reason: e.to_string(),
    })?;
    Ok(StoredEvent {
        seq,
        time,
        id: decoded.id,
        channel: decoded.channel,
        data: decoded.data,
        raw_data: Some(decoded.raw_data),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delivery_is_read_from_either_reply_form() {
        let time = DateTime::from_timestamp_nanos(1_764_470_000_123_456_789);
        let expected = Delivery {
            seq: 42,
            pending: 7,
            time,
        };
        let old = "$JS.ACK.CHAT_EVENTS.c1.1.42.3.1764470000123456789.7";
        assert_eq!(Delivery::parse(old), Some(expected));
        let new = "$JS.ACK._.hash.CHAT_EVENTS.c1.1.42.3.1764470000123456789.7.tok.more";
        assert_eq!(Delivery::parse(new).map(|d| d.seq), Some(42));
        assert_eq!(Delivery::consumer_seq(old), Some(3));
        assert_eq!(Delivery::consumer_seq(new), Some(3));
        for bad in [
            "",
            "$JS.ACK.CHAT_EVENTS.c1.1.42.3.1764470000123456789",
            "$JS.ACK.CHAT_EVENTS.c1.1.x.3.1764470000123456789.7",
            "_INBOX.abc.def",
        ] {
            assert_eq!(Delivery::parse(bad), None, "{bad}");
        }
    }
}
