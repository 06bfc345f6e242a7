//! The idempotent publisher: every copy carries a `Nats-Msg-Id`, so a retry
//! inside the stream's duplicate window is stored once. An event's kept
//! `data` text (fields this version does not know and all) is stored as given.

use std::time::Duration;

use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::publish::PublishAck;
use chrono::{DateTime, Utc};

use super::{subject, Log, LogError, Op, RequestErrorKind};
use crate::channel::{Channel, Id};
use crate::event::{format_timestamp, Event, EventData, EventError, RawData};

/// How long one copy is retried (after a transient failure) before the
/// publish fails: long enough for a NATS cluster to elect a new leader for
/// the stream when its leader's server dies (a few seconds), during which
/// the stream answers nothing. Capped at the stream's duplicate window:
/// every attempt carries the same `Nats-Msg-Id`, so retries inside it
/// never store twice.
pub const PUBLISH_RETRY_FOR: Duration = Duration::from_secs(30);

/// How long one attempt waits for the stream's ack before the copy is sent
/// again (the same `Nats-Msg-Id`: stored once). A publish sent while the
/// stream has no leader (a cluster electing one) is answered by nobody, and
/// async-nats's own ack timeout is 5 s: the event would be stored up to 5 s
/// after the election. With 1 s, it is stored within about a second of it.
/// An attempt that timed out is sent again at once (its wait was the
/// pause); the server may then get a copy twice, and keeps one.
pub const PUBLISH_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(1);

/// The pause before the first retry after a failed attempt; doubled on each
/// further one, up to [`RETRY_BACKOFF_MAX`].
pub const RETRY_BACKOFF: Duration = Duration::from_millis(100);

/// The longest pause between two attempts.
pub const RETRY_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Where an event was stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    pub id: Id,
    /// The channel copy's sequence (the global copy for `channel_created`).
    pub seq: u64,
    /// The user copy's sequence, for moderation events.
    pub user_seq: Option<u64>,
    /// An added type with several routes: every copy's sequence, in route
    /// order (`seq` is the first).
    pub route_seqs: Vec<u64>,
    /// Whether the log already had this id (a retried or repeated publish).
    pub duplicate: bool,
}

/// [`Stored`] plus the log's commit time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Receipt {
    pub stored: Stored,
    pub time: DateTime<Utc>,
}

impl Receipt {
    /// The publish reply, the same for `POST /v1/events` and `switchboard
    /// publish`: `{id, seq, timestamp}`, plus `user_seq` for a moderation
    /// event, plus `"duplicate": true` when the id was already stored.
    pub fn to_json(&self) -> serde_json::Value {
        let mut reply = serde_json::json!({
            "id": self.stored.id,
            "seq": self.stored.seq,
            "timestamp": format_timestamp(&self.time),
        });
        if let Some(user_seq) = self.stored.user_seq {
            reply["user_seq"] = user_seq.into();
        }
        if self.stored.route_seqs.len() > 1 {
            reply["seqs"] = self.stored.route_seqs.clone().into();
        }
        if self.stored.duplicate {
            reply["duplicate"] = true.into();
        }
        reply
    }
}

impl Log {
    /// Stores an event: every copy, with acks in flight at once. Call it from
    /// many tasks to keep many acks in flight.
    pub async fn store(&self, event: &Event) -> Result<Stored, LogError> {
        if !event.kind().is_stored() {
            return Err(EventError::Ephemeral.into());
        }
        event.validate()?;
        if let EventData::Added(_) = &event.data {
            return self.store_routes(event).await;
        }
        let home = event.home_channel();
        let stored = self.store_copy(home, event.id, &event.data, event.raw_data.as_ref());
        let (home_ack, user_ack) = match event.user_copy() {
            None => (stored.await?, None),
            Some(copy) => {
                let user =
                    self.store_copy(copy.channel, event.id, &copy.data, copy.raw_data.as_ref());
                let (home_ack, user_ack) = tokio::try_join!(stored, user)?;
                (home_ack, Some(user_ack))
            }
        };
        Ok(Stored {
            id: event.id,
            seq: home_ack.sequence,
            user_seq: user_ack.map(|ack| ack.sequence),
            route_seqs: Vec::new(),
            duplicate: home_ack.duplicate,
        })
    }

    /// Stores an added type's copies, one per route, at once.
    async fn store_routes(&self, event: &Event) -> Result<Stored, LogError> {
        let copies = event.copies();
        let acks = futures::future::try_join_all(copies.iter().map(|copy| {
            self.store_copy(copy.channel, event.id, &copy.data, copy.raw_data.as_ref())
        }))
        .await?;
        let first = acks.first().ok_or_else(|| {
            LogError::request(
                Op::Publish,
                RequestErrorKind::Failed,
                "an event with no route",
            )
        })?;
        Ok(Stored {
            id: event.id,
            seq: first.sequence,
            user_seq: None,
            route_seqs: acks.iter().map(|ack| ack.sequence).collect(),
            duplicate: first.duplicate,
        })
    }

    /// Publishes an event of an ephemeral type on core NATS, one message
    /// per copy: live only, never stored (as typing from NATS).
    pub async fn publish_ephemeral(&self, event: &Event) -> Result<(), LogError> {
        event.validate()?;
        for copy in event.copies() {
            let subject = subject::subject(copy.channel, copy.data.kind());
            let payload =
                subject::encode_payload_kept(event.id, &copy.data, copy.raw_data.as_ref());
            self.client.publish(subject, payload).await.map_err(|e| {
                LogError::request_from(Op::Publish, RequestErrorKind::Failed, "ephemeral event", e)
            })?;
        }
        Ok(())
    }

    /// Stores an event and reads back its log time.
    pub async fn publish(&self, event: &Event) -> Result<Receipt, LogError> {
        let stored = self.store(event).await?;
        let time = self.time_of_stored(stored.seq).await?.ok_or_else(|| {
            LogError::request(
                Op::Publish,
                RequestErrorKind::Failed,
                format!(
                    "sequence {} was acknowledged but is no longer held",
                    stored.seq
                ),
            )
        })?;
        Ok(Receipt { stored, time })
    }

    async fn store_copy(
        &self,
        channel: Channel,
        id: Id,
        data: &EventData,
        raw: Option<&RawData>,
    ) -> Result<PublishAck, LogError> {
        let payload = subject::encode_payload_kept(id, data, raw);
        let subject = subject::subject(channel, data.kind());
        let msg_id = message_id(id, channel);
        let mut backoff = RETRY_BACKOFF;
        let mut attempt = 1;
        let retry_for = PUBLISH_RETRY_FOR.min(self.settings.duplicate_window);
        let give_up = tokio::time::Instant::now() + retry_for;
        loop {
            let publish = PublishMessage::build()
                .payload(payload.clone())
                .message_id(msg_id.as_str());
            let attempt_ends = tokio::time::Instant::now() + PUBLISH_ATTEMPT_TIMEOUT;
            let result = tokio::time::timeout_at(attempt_ends, async {
                match self.js.send_publish(subject.clone(), publish).await {
                    Ok(ack) => ack.await,
                    Err(e) => Err(e),
                }
            })
            .await;
            let result = match result {
                Ok(result) => result,
                Err(_) if attempt_ends < give_up => {
                    tracing::debug!(%subject, attempt, "publish unanswered; sending it again");
                    attempt += 1;
                    continue;
                }
                Err(_) => {
                    return Err(LogError::request(
                        Op::Publish,
                        RequestErrorKind::TimedOut,
                        format!("{subject}: no ack within {retry_for:?}"),
                    ))
                }
            };
            match result {
                Ok(ack) => return Ok(ack),
                Err(e)
                    if tokio::time::Instant::now() + backoff < give_up
                        && is_transient(e.kind()) =>
                {
                    tracing::debug!(%subject, attempt, error = %e, "publish retry");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(RETRY_BACKOFF_MAX);
                    attempt += 1;
                }
                Err(e) => {
                    let kind = match e.kind() {
                        PublishErrorKind::TimedOut => RequestErrorKind::TimedOut,
                        _ => RequestErrorKind::Failed,
                    };
                    return Err(LogError::request_from(Op::Publish, kind, subject, e));
                }
            }
        }
    }
}

/// The copies of one event get distinct message ids: the channel copy (or
/// the only copy) uses the event id, the user copy `{id}:user`.
fn message_id(id: Id, channel: Channel) -> String {
    let mut out = String::with_capacity(41);
    id.write_to(&mut out);
    if let Channel::User(_) = channel {
        out.push_str(":user");
    }
    out
}

fn is_transient(kind: PublishErrorKind) -> bool {
    matches!(
        kind,
        PublishErrorKind::TimedOut
            | PublishErrorKind::BrokenPipe
            | PublishErrorKind::StreamNotFound
            | PublishErrorKind::Other
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_copy_has_its_own_message_id() {
        let id = Id::new_v4();
        assert_eq!(message_id(id, Channel::Chat(Id::new_v4())), id.to_string());
        assert_eq!(message_id(id, Channel::Global), id.to_string());
        assert_eq!(
            message_id(id, Channel::User(Id::new_v4())),
            format!("{id}:user")
        );
    }

    #[test]
    fn the_receipt_names_the_user_copy_and_a_duplicate_only_when_there_is_one() {
        let id = Id::new_v4();
        let time = DateTime::from_timestamp_millis(1_700_000_000_123).unwrap();
        let mut receipt = Receipt {
            stored: Stored {
                id,
                seq: 7,
                user_seq: None,
                route_seqs: Vec::new(),
                duplicate: false,
            },
            time,
        };
        assert_eq!(
            receipt.to_json(),
            serde_json::json!({"id": id, "seq": 7, "timestamp": "2023-11-14T22:13:20.123Z"})
        );
        receipt.stored.user_seq = Some(8);
        receipt.stored.duplicate = true;
        let reply = receipt.to_json();
        assert_eq!(
            (&reply["user_seq"], &reply["duplicate"]),
            (&8.into(), &true.into())
        );
    }
}
