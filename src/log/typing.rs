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

    /// Subscribes to every channel's typing. Fails only if this first
    /// subscription is refused; after that it renews itself.
    pub async fn subscribe_typing(&self) -> Result<TypingSubscription, LogError> {
        let subscriber = self
            .client
            .subscribe(subject::typing_wildcard())
            .await
            .map_err(|e| {
                LogError::request_from(Op::Subscribe, RequestErrorKind::Failed, "typing", e)
            })?;
        Ok(TypingSubscription {
            client: self.client.clone(),
            subscriber: Some(subscriber),
        })
    }
}

/// Every channel's typing, from any publisher.
pub struct TypingSubscription {
    client: async_nats::Client,
    /// `None` between a lost subscription and its renewal.
    subscriber: Option<async_nats::Subscriber>,
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
                match self.client.subscribe(subject::typing_wildcard()).await {
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
