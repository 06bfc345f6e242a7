//! Typing: ephemeral, over core NATS, never stored; invalid typing is
//! reported.

use super::*;

#[tokio::test]
async fn typing_goes_through_core_nats_and_invalid_typing_is_reported() {
    let nats = nats();
    let log = log(&nats).await;
    let (c, u) = (Id::new_v4(), Id::new_v4());
    let mut subscription = log.subscribe_typing().await.expect("subscribed");
    // A malformed message on a typing subject is an error item, and the
    // subscription goes on.
    log.client()
        .publish(
            subject::subject(chat(c), EventType::UserTyping),
            "not json".into(),
        )
        .await
        .expect("raw publish");
    let typing = UserTyping {
        channel_id: c,
        user_id: u,
        username: "ann".into(),
        is_typing: true,
    };
    log.publish_typing(typing.clone()).await;
    let first = tokio::time::timeout(PATIENCE, subscription.next())
        .await
        .expect("typing in time");
    assert!(first.is_err(), "the malformed message is reported");
    let (channel, _id, data) = tokio::time::timeout(PATIENCE, subscription.next())
        .await
        .expect("typing in time")
        .expect("valid typing");
    assert_eq!((channel, data), (chat(c), EventData::UserTyping(typing)));
    assert_eq!(messages_held(&log).await, 0, "typing is never stored");
}
