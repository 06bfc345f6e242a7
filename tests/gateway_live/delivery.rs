//! Delivery: every event type end to end with its exact envelope, fan-out
//! order to many clients, an invalid stored event skipped and counted.

use super::*;

#[tokio::test]
async fn every_event_type_arrives_with_the_exact_envelope() {
    let nats = nats();
    let gateway = Gateway::start(&nats);
    let log = log(&nats).await;
    let stream = async_nats::jetstream::new(log.client().clone())
        .get_stream(&log.settings().name)
        .await
        .expect("the stream");
    let (c, u, observer) = (Id::new_v4(), Id::new_v4(), Id::new_v4());

    // The moderated user watches their own channel and `global`; an
    // observer with a grant watches the chat channel.
    let mut user = Client::connect(&gateway, &token(u, Grant::None, &[])).await;
    assert_schema(&user.hello);
    user.subscribe(Channel::User(u)).await;
    user.subscribe(Channel::Global).await;
    let mut watcher = Client::connect(&gateway, &token(observer, Grant::All, &[])).await;
    watcher.subscribe(chat(c)).await;

    for data in samples(c, u) {
        let event = Event::new(data);
        let receipt = log.publish(&event).await.expect("published");
        for copy in event.copies() {
            let client = match copy.channel {
                Channel::Chat(_) => &mut watcher,
                _ => &mut user,
            };
            let frame = client.next().await;
            assert_schema(&frame);
            let seq = match copy.channel {
                Channel::User(_) => receipt.stored.user_seq.expect("user copy seq"),
                _ => receipt.stored.seq,
            };
            // The stream's own record of the message (`STREAM.MSG.GET`, not
            // the direct get behind `time_of` and the receipt): the envelope
            // carries the log's commit time, and so does the receipt.
            let time = stream
                .get_raw_message(seq)
                .await
                .expect("the stored message")
                .time;
            if seq == receipt.stored.seq {
                assert_eq!(receipt.time, time, "the receipt has the log time");
            }
            let expected_time = json!(format_timestamp(&time));
            assert_eq!(
                frame,
                json!({
                    "type": event.kind().as_str(),
                    "timestamp": expected_time,
                    "data": data_value(&copy.data),
                    "channel": copy.channel.to_string(),
                    "seq": seq,
                    "id": event.id.to_string(),
                }),
                "copy on {}",
                copy.channel
            );
            if copy.channel == Channel::User(u) {
                assert!(
                    frame["data"].get("user_id").is_none(),
                    "user copy has no user_id"
                );
            }
        }
    }
    // The deletion ends the observer's subscription.
    let end = watcher.next().await;
    assert_schema(&end);
    assert_eq!(end["type"], "unsubscribed");
    assert_eq!(end["data"]["reason"], "channel_deleted");
}

#[tokio::test]
async fn fifty_clients_get_three_hundred_events_in_order() {
    let nats = nats();
    let gateway = Gateway::start(&nats);
    let log = log(&nats).await;
    let c = Id::new_v4();
    let mut clients = Vec::new();
    for _ in 0..50 {
        let mut client = Client::connect(&gateway, &token(Id::new_v4(), Grant::All, &[])).await;
        client.subscribe(chat(c)).await;
        clients.push(client);
    }
    let publishes = (0..300).map(|i| {
        let log = log.clone();
        async move {
            log.store(&message(c, format!("m{i}")))
                .await
                .expect("stored")
                .seq
        }
    });
    let mut published: Vec<u64> = futures::future::join_all(publishes).await;
    published.sort_unstable();
    let readers = clients.into_iter().map(|mut client| async move {
        let frames = client.events(300).await;
        seqs(&frames)
    });
    for received in futures::future::join_all(readers).await {
        assert_seqs(&received, &published, "every event, once, in seq order");
    }
}

#[tokio::test]
async fn an_invalid_stored_event_is_skipped_and_counted() {
    let nats = nats();
    let gateway = Gateway::start(&nats);
    let log = log(&nats).await;
    let c = Id::new_v4();
    let mut client = Client::connect(&gateway, &token(Id::new_v4(), Grant::All, &[])).await;
    client.subscribe(chat(c)).await;
    // Another service publishes straight to NATS, badly.
    let subject = format!("chat.channel.{c}.channel_message");
    let js = async_nats::jetstream::new(log.client().clone());
    for payload in [
        "not json".to_string(),
        json!({"id": Id::new_v4().to_string(), "type": "channel_message", "data": {"channel_id": c.to_string()}}).to_string(),
        json!({"id": Id::new_v4().to_string(), "type": "channel_deleted", "data": {"channel_id": c.to_string()}}).to_string(),
    ] {
        js.publish(subject.clone(), payload.into())
            .await
            .expect("publish")
            .await
            .expect("ack");
    }
    let good = log
        .store(&message(c, "after the bad ones"))
        .await
        .expect("stored");
    let frame = client.next().await;
    assert_eq!(
        frame["seq"], good.seq,
        "only the valid event arrives: {frame}"
    );
    let invalid = gateway.metric("switchboard_invalid_events_total").await;
    assert!(invalid >= 3.0, "{invalid}");
    assert!(gateway
        .log_text()
        .contains("skipping an invalid stored event"));
}
