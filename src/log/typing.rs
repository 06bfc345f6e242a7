//! Typing beside the log: `user_typing` travels on core NATS, one subject
//! per channel, and is never stored (the stream takes no `user_typing`
//! subject). Any node, or another service, may publish it; every node
//! subscribes to all of it.

use std::time::Duration;

use futures::StreamExt;

use super::{subject, Log, LogError, Op, PayloadError, RequestErrorKind};
use crate::channel::{Channel, Id};
use crate::event::{EventData, UserTyping};

/// The pause before subscribing again when NATS refused the typing
/// subscription; typing published meanwhile is simply not seen.
pub const RESUBSCRIBE_DELAY: Duration = Duration::from_millis(250);

impl Log {
    /// Publishes a user's typing on its channel's core NATS subject; never
    /// stored. Best effort, as typing is: a failure is logged at DEBUG and
    /// the typing dropped.
    pub async fn publish_typing(&self, typing: UserTyping) {
        let channel = Channel::Chat(typing.channel_id);
        let data = EventData::UserTyping(typing);
        let subject = subject::subject(channel, data.kind());
        let payload = subject::encode_payload(Id::new_v4(), &data);
        if let Err(e) = self.client.publish(subject, payload).await {
            tracing::debug!(error = %e, "typing not published");
        }
    }

    /// Subscribes to every channel's typing, and to every ephemeral type
    /// the catalog adds. Fails only if this first subscription is refused;
    /// after that it renews itself.
    pub async fn subscribe_typing(&self) -> Result<TypingSubscription, LogError> {
        let subjects = subject::ephemeral_subjects();
        let subscriber = subscribe_all(&self.client, &subjects).await.map_err(|e| {
            LogError::request_from(Op::Subscribe, RequestErrorKind::Failed, "typing", e)
        })?;
        Ok(TypingSubscription {
            client: self.client.clone(),
            subjects,
            subscriber: Some(subscriber),
        })
    }
}

type Subscribers = futures::stream::SelectAll<async_nats::Subscriber>;

async fn subscribe_all(
    client: &async_nats::Client,
    subjects: &[String],
) -> Result<Subscribers, async_nats::SubscribeError> {
    let mut all = futures::stream::SelectAll::new();
    for subject in subjects {
        all.push(client.subscribe(subject.clone()).await?);
    }
    Ok(all)
}

/// Every channel's typing, and every ephemeral added type, from any
/// publisher.
pub struct TypingSubscription {
    client: async_nats::Client,
    subjects: Vec<String>,
    /// `None` between a lost subscription and its renewal.
    subscriber: Option<Subscribers>,
}

impl TypingSubscription {
    /// The next typing message: its channel, its id and its data (a
    /// `user_typing`), or why a message on a typing subject is not a valid
    /// one (logged here at DEBUG with its subject; the caller counts it, and
    /// the subscription goes on).
    ///
    /// Never ends: when the subscription ends it subscribes again, after
    /// [`RESUBSCRIBE_DELAY`] if NATS refuses. Cancel-safe, so it can sit in a
    /// `select!` beside a shutdown signal.
    pub async fn next(&mut self) -> Result<(Channel, Id, EventData), PayloadError> {
        loop {
            if self.subscriber.is_none() {
                match subscribe_all(&self.client, &self.subjects).await {
                    Ok(subscriber) => self.subscriber = Some(subscriber),
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot subscribe to typing");
                        tokio::time::sleep(RESUBSCRIBE_DELAY).await;
                        continue;
                    }
                }
            }
            let Some(subscriber) = self.subscriber.as_mut() else {
                continue;
            };
            match subscriber.next().await {
                Some(message) => {
                    return subject::decode(&message.subject, &message.payload).inspect_err(|e| {
                        tracing::debug!(subject = %message.subject, error = %e, "ignoring invalid typing");
                    })
                }
                None => self.subscriber = None,
            }
        }
    }
}
