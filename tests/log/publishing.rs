//! Storing events: one event id stored once however often it is published,
//! a moderation event's two copies, and the events the log refuses.

use super::*;

#[tokio::test]
async fn publishing_one_event_id_twice_stores_it_once() {
    let nats = nats();
    let log = log(&nats).await;
    let c = Id::new_v4();
    let event = message(c, "once");

    let first = log.store(&event).await.expect("stored");
    assert!(!first.duplicate, "the first publish is not a duplicate");
    assert_eq!(first.user_seq, None);
    let second = log.store(&event).await.expect("stored again");
    assert_eq!(second.seq, first.seq, "the retry names the same sequence");
    assert!(second.duplicate, "the retry is reported as a duplicate");
    let receipt = log.publish(&event).await.expect("published again");
    assert_eq!(receipt.stored.seq, first.seq);
    assert!(receipt.stored.duplicate);

    // Same id, other data: still the first event (the id is the identity).
    let impostor = Event {
        id: event.id,
        ..message(c, "other text")
    };
    let third = log.store(&impostor).await.expect("stored");
    assert_eq!(third.seq, first.seq);
    assert!(third.duplicate);

    assert_eq!(messages_held(&log).await, 1);
    let stored = history(&log, &on(&[chat(c)])).await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].id, event.id);
    assert_eq!(
        stored[0].data, event.data,
        "the first publish's data is kept"
    );
    assert_eq!(
        stored[0].time, receipt.time,
        "the receipt's time is the log time a reader sees"
    );

    // Many concurrent publishes of one new id: one store, one sequence.
    let racer = message(c, "race");
    let results = join_all((0..16).map(|_| log.store(&racer))).await;
    let results: Vec<_> = results.into_iter().map(|r| r.expect("stored")).collect();
    let seqs: BTreeSet<u64> = results.iter().map(|r| r.seq).collect();
    assert_eq!(seqs.len(), 1, "every concurrent publish names one sequence");
    assert_eq!(
        results.iter().filter(|r| !r.duplicate).count(),
        1,
        "exactly one publish stored it"
    );
    assert_eq!(messages_held(&log).await, 2);

    // A moderation event's two copies are each stored once.
    let u = Id::new_v4();
    let moderation = ban(c, u);
    let first = log.store(&moderation).await.expect("stored");
    let again = log.store(&moderation).await.expect("stored again");
    assert_eq!((again.seq, again.user_seq), (first.seq, first.user_seq));
    assert!(again.duplicate && !first.duplicate);
    assert_eq!(messages_held(&log).await, 4);
}

#[tokio::test]
async fn a_moderation_event_is_two_copies_and_the_user_copy_has_no_user_id() {
    let nats = nats();
    let log = log(&nats).await;
    let c = Id::new_v4();
    let events = [
        ban(c, Id::new_v4()),
        Event::new(EventData::UserUnbanned(BanChange {
            channel_id: c,
            user_id: Some(Id::new_v4()),
            motive: "appeal".into(),
        })),
        Event::new(EventData::UserKicked(UserKicked {
            channel_id: c,
            user_id: Some(Id::new_v4()),
        })),
    ];
    for event in &events {
        let u = event.data.moderated_user().expect("names its user");
        let stored = log.store(event).await.expect("stored");
        let user_seq = stored.user_seq.expect("a user copy");
        assert_ne!(stored.seq, user_seq, "two copies, two sequences");

        let channel_copy = history(
            &log,
            &HistoryQuery {
                after_seq: Some(stored.seq - 1),
                limit: Some(1),
                ..on(&[chat(c)])
            },
        )
        .await;
        assert_eq!(channel_copy.len(), 1);
        assert_eq!(channel_copy[0].seq, stored.seq);
        assert_eq!(channel_copy[0].id, event.id);
        assert_eq!(channel_copy[0].channel, chat(c));
        assert_eq!(channel_copy[0].data, event.data);
        assert_eq!(channel_copy[0].data.moderated_user(), Some(u));

        let user_copy = history(&log, &on(&[Channel::User(u)])).await;
        assert_eq!(user_copy.len(), 1, "one copy on user:{u}");
        let copy = &user_copy[0];
        assert_eq!(copy.seq, user_seq);
        assert_eq!(copy.id, event.id, "both copies carry the event's id");
        assert_eq!(copy.channel, Channel::User(u));
        assert_eq!(copy.data.kind(), event.kind());
        assert_eq!(copy.data.moderated_user(), None);
        let value = data_value(&copy.data);
        assert!(value.get("user_id").is_none(), "user copy: {value}");
        assert_eq!(value["channel_id"], c.to_string());

        // An ordered read of the user channel sees the same copy.
        let mut read = log
            .read(&[Channel::User(u)], 1)
            .await
            .expect("a reader starts");
        let item = tokio::time::timeout(PATIENCE, read.next())
            .await
            .expect("the copy arrives in time")
            .expect("the read goes on")
            .expect("the read works");
        assert_eq!(item.seq, user_seq);
        assert_eq!(item.event.expect("valid"), copy.clone());
    }
}

#[tokio::test]
async fn typing_and_unpublishable_events_are_refused_and_nothing_is_stored() {
    let nats = nats();
    let log = log(&nats).await;
    let (c, u) = (Id::new_v4(), Id::new_v4());
    let typing = Event::new(EventData::UserTyping(UserTyping {
        channel_id: c,
        user_id: u,
        username: "ann".into(),
        is_typing: true,
    }));
    assert!(matches!(
        log.store(&typing).await,
        Err(LogError::Event(EventError::Ephemeral))
    ));
    assert!(matches!(
        log.publish(&typing).await,
        Err(LogError::Event(EventError::Ephemeral))
    ));
    let anonymous_kick = Event::new(EventData::UserKicked(UserKicked {
        channel_id: c,
        user_id: None,
    }));
    assert!(matches!(
        log.store(&anonymous_kick).await,
        Err(LogError::Event(EventError::Rule { .. }))
    ));
    let no_change = Event::new(EventData::ChannelUpdated(ChannelUpdated {
        channel_id: c,
        changes: serde_json::Map::new(),
    }));
    assert!(matches!(
        log.store(&no_change).await,
        Err(LogError::Event(EventError::Rule { .. }))
    ));
    assert_eq!(messages_held(&log).await, 0);

    // The stream has no subject for typing: a JetStream publish finds no stream.
    let js = async_nats::jetstream::new(log.client().clone());
    let subject = subject::subject(chat(c), EventType::UserTyping);
    let payload = subject::encode_payload(typing.id, &typing.data);
    let refused = match js.publish(subject, payload).await {
        Ok(ack) => ack.await.is_err(),
        Err(_) => true,
    };
    assert!(refused, "user_typing subjects are not stored");
    assert_eq!(messages_held(&log).await, 0);
}
