//! The event log (`switchboard::log::Log`) against a real nats-server:
//! idempotent publishing, moderation's two copies, ephemeral typing, time →
//! sequence resolution at millisecond resolution, history paging and
//! filters, invalid stored messages, the stream's settings, and the refusal
//! of a server without JetStream.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::join_all;
use futures::StreamExt;
use switchboard::channel::{Channel, Id};
use switchboard::envelope::StoredEvent;
use switchboard::event::{
    format_timestamp, BanChange, ChannelUpdated, Event, EventData, EventError, EventType,
    UserKicked, UserTyping,
};
use switchboard::log::{subject, HistoryQuery, Log, LogError, ReadItem, StreamSettings};
use switchboard_harness::*;

/// Every item of a history query, in order; fails if it does not end.
async fn history_items(log: &Log, query: &HistoryQuery) -> Vec<ReadItem> {
    tokio::time::timeout(PATIENCE, async {
        let mut history = log.history(query).await.expect("history starts");
        let mut out = Vec::new();
        while let Some(item) = history.next().await {
            out.push(item.expect("history reads"));
        }
        out
    })
    .await
    .unwrap_or_else(|_| panic!("history {query:?} did not end"))
}

/// The events of a history query (every stored message must be valid).
async fn history(log: &Log, query: &HistoryQuery) -> Vec<StoredEvent> {
    history_items(log, query)
        .await
        .into_iter()
        .map(|item| item.event.expect("a valid stored event"))
        .collect()
}

fn on(channels: &[Channel]) -> HistoryQuery {
    HistoryQuery {
        channels: channels.to_vec(),
        ..HistoryQuery::default()
    }
}

fn seqs_of(events: &[StoredEvent]) -> Vec<u64> {
    events.iter().map(|e| e.seq).collect()
}

/// The envelope's timestamp, as milliseconds: the time clients see.
fn shown_ms(t: &DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn at_ms(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).expect("a representable time")
}

async fn messages_held(log: &Log) -> u64 {
    log.extent().await.expect("extent").messages
}

fn ban(c: Id, u: Id) -> Event {
    Event::new(EventData::UserBanned(BanChange {
        channel_id: c,
        user_id: Some(u),
        motive: "spam".into(),
    }))
}

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

#[tokio::test]
async fn times_resolve_to_sequences_exactly_at_millisecond_resolution() {
    let nats = nats();
    let log = log(&nats).await;
    let (c, d) = (Id::new_v4(), Id::new_v4());
    assert_eq!(
        log.seq_at_time(Utc::now()).await.expect("resolves"),
        1,
        "an empty log resolves every time to the next sequence"
    );

    // Bursts of concurrent publishes (many acks in flight) of varied sizes,
    // until at least one millisecond holds several events and the events
    // span enough distinct milliseconds to have gaps and lone events too.
    let sizes = [1, 7, 25, 2, 40, 3];
    let mut all = Vec::new();
    let (mut shared, mut distinct) = (false, 0);
    for burst in 0..60 {
        let events: Vec<Event> = (0..sizes[burst % sizes.len()])
            .map(|i| message(if i % 4 == 3 { d } else { c }, format!("{burst}/{i}")))
            .collect();
        for result in join_all(events.iter().map(|e| log.store(e))).await {
            result.expect("stored");
        }
        all = history(&log, &on(&[chat(c), chat(d)])).await;
        shared = all
            .windows(2)
            .any(|w| shown_ms(&w[0].time) == shown_ms(&w[1].time));
        distinct = all
            .iter()
            .map(|e| shown_ms(&e.time))
            .collect::<BTreeSet<_>>()
            .len();
        if shared && distinct >= 12 {
            break;
        }
    }
    assert!(shared, "no millisecond held two events in 60 bursts");
    assert!(distinct >= 12, "only {distinct} distinct milliseconds");
    let last_seq = log.extent().await.expect("extent").last_seq;
    assert_eq!(all.len() as u64, last_seq, "every event was read back");
    assert_eq!(seqs_of(&all), (1..=last_seq).collect::<Vec<_>>());
    for w in all.windows(2) {
        assert!(w[0].time <= w[1].time, "log times never decrease");
    }
    // The read-back time is the one a direct lookup gives.
    for event in all.iter().step_by(17) {
        let looked_up = log.time_of(event.seq).await.expect("lookup");
        assert_eq!(looked_up, Some(event.time));
    }
    for event in &all {
        assert_eq!(
            format_timestamp(&event.time),
            format_timestamp(&at_ms(shown_ms(&event.time))),
            "shown_ms is what the envelope shows"
        );
    }

    let first_at_or_after = |ms: i64| -> u64 {
        all.iter()
            .find(|e| shown_ms(&e.time) >= ms)
            .map_or(last_seq + 1, |e| e.seq)
    };
    let c_since = |ms: i64| -> Vec<u64> {
        all.iter()
            .filter(|e| e.channel == chat(c) && shown_ms(&e.time) >= ms)
            .map(|e| e.seq)
            .collect()
    };
    let c_until = |ms: i64| -> Vec<u64> {
        all.iter()
            .filter(|e| e.channel == chat(c) && shown_ms(&e.time) < ms)
            .map(|e| e.seq)
            .collect()
    };
    let shown: BTreeSet<i64> = all.iter().map(|e| shown_ms(&e.time)).collect();
    let mut gaps = 0;
    for &ms in &shown {
        let t = at_ms(ms);
        assert_eq!(
            log.seq_at_time(t).await.expect("resolves"),
            first_at_or_after(ms),
            "seq_at_time({})",
            format_timestamp(&t)
        );
        let since = history(
            &log,
            &HistoryQuery {
                since: Some(t),
                ..on(&[chat(c)])
            },
        )
        .await;
        assert_eq!(
            seqs_of(&since),
            c_since(ms),
            "since {}",
            format_timestamp(&t)
        );
        let until = history(
            &log,
            &HistoryQuery {
                until: Some(t),
                ..on(&[chat(c)])
            },
        )
        .await;
        assert_eq!(
            seqs_of(&until),
            c_until(ms),
            "until {} excludes it",
            format_timestamp(&t)
        );
        // Half a millisecond later: between this millisecond's events and
        // the next ones.
        let between = t + chrono::Duration::microseconds(500);
        assert_eq!(
            log.seq_at_time(between).await.expect("resolves"),
            first_at_or_after(ms + 1),
            "seq_at_time({between:?})"
        );
        // A whole empty millisecond after this one, when there is a gap.
        if !shown.contains(&(ms + 1)) && ms < *shown.last().expect("some") {
            gaps += 1;
            assert_eq!(
                log.seq_at_time(at_ms(ms + 1)).await.expect("resolves"),
                first_at_or_after(ms + 1)
            );
        }
    }
    assert!(gaps > 0, "the bursts left a gap between them");

    let first_ms = *shown.first().expect("events");
    let last_ms = *shown.last().expect("events");
    let before = at_ms(first_ms) - chrono::Duration::seconds(1);
    assert_eq!(log.seq_at_time(before).await.expect("resolves"), 1);
    assert_eq!(
        seqs_of(
            &history(
                &log,
                &HistoryQuery {
                    since: Some(before),
                    ..on(&[chat(c)])
                }
            )
            .await
        ),
        c_since(first_ms)
    );
    let after = at_ms(last_ms + 1);
    assert_eq!(
        log.seq_at_time(after).await.expect("resolves"),
        last_seq + 1,
        "after the last event: the next sequence"
    );
    let none = history(
        &log,
        &HistoryQuery {
            since: Some(after),
            ..on(&[chat(c)])
        },
    )
    .await;
    assert!(none.is_empty(), "nothing since after the last event");
}

#[tokio::test]
async fn history_pages_concatenate_and_filters_hold() {
    let nats = nats();
    let log = log(&nats).await;
    let (c, d, e) = (Id::new_v4(), Id::new_v4(), Id::new_v4());
    for i in 0..30 {
        let channel = [c, d, e][i % 3];
        log.store(&message(channel, format!("m{i}")))
            .await
            .expect("stored");
    }
    let whole = history(&log, &on(&[chat(c)])).await;
    assert_eq!(whole.len(), 10);
    assert!(whole.iter().all(|ev| ev.channel == chat(c)));
    assert!(whole.windows(2).all(|w| w[0].seq < w[1].seq));

    // Pages of 3, each starting after the last seq read.
    let mut pages = Vec::new();
    let mut after = None;
    for _ in 0..20 {
        let page = history(
            &log,
            &HistoryQuery {
                after_seq: after,
                limit: Some(3),
                ..on(&[chat(c)])
            },
        )
        .await;
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 3, "a page holds at most the limit");
        after = page.last().map(|ev| ev.seq);
        pages.push(page);
    }
    assert_eq!(
        pages.iter().map(Vec::len).collect::<Vec<_>>(),
        vec![3, 3, 3, 1]
    );
    let joined: Vec<StoredEvent> = pages.into_iter().flatten().collect();
    assert_eq!(joined, whole, "the pages concatenate to the whole history");

    let big = history(
        &log,
        &HistoryQuery {
            limit: Some(10_000),
            ..on(&[chat(c)])
        },
    )
    .await;
    assert_eq!(big, whole);
    let zero = history(
        &log,
        &HistoryQuery {
            limit: Some(0),
            ..on(&[chat(c)])
        },
    )
    .await;
    assert!(zero.is_empty());
    let past_end = history(
        &log,
        &HistoryQuery {
            after_seq: Some(whole.last().expect("events").seq),
            ..on(&[chat(c)])
        },
    )
    .await;
    assert!(past_end.is_empty());

    // `until` excludes events at or after it (as shown, in milliseconds).
    for event in &whole {
        let until = at_ms(shown_ms(&event.time));
        let got = history(
            &log,
            &HistoryQuery {
                until: Some(until),
                ..on(&[chat(c)])
            },
        )
        .await;
        let expected: Vec<u64> = whole
            .iter()
            .filter(|ev| shown_ms(&ev.time) < shown_ms(&event.time))
            .map(|ev| ev.seq)
            .collect();
        assert_eq!(seqs_of(&got), expected);
        assert!(!seqs_of(&got).contains(&event.seq), "until excludes");
    }
    // All three bounds at once.
    let (lo, hi) = (&whole[2], &whole[8]);
    let got = history(
        &log,
        &HistoryQuery {
            after_seq: Some(whole[3].seq),
            since: Some(at_ms(shown_ms(&lo.time))),
            until: Some(at_ms(shown_ms(&hi.time))),
            limit: Some(3),
            ..on(&[chat(c)])
        },
    )
    .await;
    let expected: Vec<u64> = whole
        .iter()
        .filter(|ev| ev.seq > whole[3].seq && shown_ms(&ev.time) < shown_ms(&hi.time))
        .map(|ev| ev.seq)
        .take(3)
        .collect();
    assert_eq!(seqs_of(&got), expected);

    // Two channels: interleaved in sequence order, nothing from the third.
    let two = history(&log, &on(&[chat(c), chat(d)])).await;
    assert_eq!(two.len(), 20);
    assert!(two.windows(2).all(|w| w[0].seq < w[1].seq));
    assert!(two.iter().all(|ev| ev.channel != chat(e)));
    let only_d = history(&log, &on(&[chat(d)])).await;
    let mut merged: Vec<u64> = seqs_of(&whole)
        .into_iter()
        .chain(seqs_of(&only_d))
        .collect();
    merged.sort_unstable();
    assert_eq!(seqs_of(&two), merged);
    // Paging works across channels too.
    let first_half = history(
        &log,
        &HistoryQuery {
            limit: Some(7),
            ..on(&[chat(c), chat(d)])
        },
    )
    .await;
    let rest = history(
        &log,
        &HistoryQuery {
            after_seq: first_half.last().map(|ev| ev.seq),
            ..on(&[chat(c), chat(d)])
        },
    )
    .await;
    assert_eq!(first_half.into_iter().chain(rest).collect::<Vec<_>>(), two);
    // No channels: every channel.
    assert_eq!(history(&log, &on(&[])).await.len(), 30);
}

#[tokio::test]
async fn history_of_an_empty_channel_ends() {
    let nats = nats();
    let log = log(&nats).await;
    let (c, d) = (Id::new_v4(), Id::new_v4());
    assert!(history(&log, &on(&[chat(c)])).await.is_empty());
    assert!(history(&log, &on(&[])).await.is_empty(), "an empty log");
    log.store(&message(d, "elsewhere")).await.expect("stored");
    for query in [
        on(&[chat(c)]),
        on(&[Channel::User(c)]),
        on(&[Channel::Global]),
        HistoryQuery {
            since: Some(Utc::now() - chrono::Duration::hours(1)),
            ..on(&[chat(c)])
        },
        HistoryQuery {
            after_seq: Some(0),
            limit: Some(5),
            ..on(&[chat(c)])
        },
    ] {
        assert!(history(&log, &query).await.is_empty(), "{query:?}");
    }
    assert_eq!(history(&log, &on(&[chat(d)])).await.len(), 1);
    let read = log.read(&[chat(c)], 1).await.expect("a reader");
    assert_eq!(read.initial_pending, 0);
}

#[tokio::test]
async fn invalid_stored_messages_are_reported_not_delivered_and_do_not_stop_reads() {
    let nats = nats();
    let log = log(&nats).await;
    let c = Id::new_v4();
    let js = async_nats::jetstream::new(log.client().clone());
    let good1 = message(c, "before");
    log.store(&good1).await.expect("stored");
    let subj = subject::subject(chat(c), EventType::ChannelMessage);
    for junk in [
        &b"not json"[..],
        br#"{"id":"x","type":"channel_message","data":{}}"#,
        br#"{"id":"0b6f2c1e-3d4a-4f5b-8c9d-0e1f2a3b4c5d","type":"member_left","data":{}}"#,
    ] {
        js.publish(subj.clone(), bytes::Bytes::from_static(junk))
            .await
            .expect("sent")
            .await
            .expect("stored by NATS");
    }
    let good2 = message(c, "after");
    log.store(&good2).await.expect("stored");

    let items = history_items(&log, &on(&[chat(c)])).await;
    assert_eq!(items.len(), 5);
    let valid: Vec<_> = items.iter().filter_map(|i| i.event.as_ref().ok()).collect();
    assert_eq!(
        valid.iter().map(|e| e.id).collect::<Vec<_>>(),
        vec![good1.id, good2.id]
    );
    for item in items.iter().filter(|i| i.event.is_err()) {
        assert_eq!(
            item.subject.as_str(),
            subj,
            "an invalid message names its subject"
        );
        assert!((2..=4).contains(&item.seq), "and its sequence");
    }
    // The limit counts valid events only.
    let limited = history_items(
        &log,
        &HistoryQuery {
            limit: Some(2),
            ..on(&[chat(c)])
        },
    )
    .await;
    assert_eq!(
        limited
            .iter()
            .filter_map(|i| i.event.as_ref().ok())
            .map(|e| e.id)
            .collect::<Vec<_>>(),
        vec![good1.id, good2.id]
    );
}

#[tokio::test]
async fn stream_settings_are_applied_and_updated_by_connect_only() {
    let nats = nats();
    let js_info = |log: &Log, name: &'static str| {
        let js = async_nats::jetstream::new(log.client().clone());
        async move {
            js.get_stream(name)
                .await
                .expect("the stream exists")
                .info()
                .await
                .expect("stream info")
                .config
                .clone()
        }
    };
    // Streams may not share subjects: the defaults get a server of their own.
    let other_nats = switchboard_harness::nats();
    let defaults = log(&other_nats).await;
    let config = js_info(&defaults, "CHAT_EVENTS").await;
    assert_eq!(config.max_age, Duration::from_secs(7 * 24 * 3600));
    assert_eq!(config.duplicate_window, Duration::from_secs(120));

    let settings = StreamSettings {
        name: "LOG_TEST".into(),
        retention: Duration::from_secs(90),
        replicas: 1,
        duplicate_window: Duration::from_secs(30),
    };
    let log = log_with(&nats, settings.clone()).await;
    let config = js_info(&log, "LOG_TEST").await;
    assert_eq!(config.max_age, Duration::from_secs(90));
    assert_eq!(config.duplicate_window, Duration::from_secs(30));
    assert_eq!(config.num_replicas, 1);
    assert_eq!(config.subjects, subject::stream_subjects());
    assert!(config.allow_direct, "direct gets resolve times");
    assert_eq!(
        config.storage,
        async_nats::jetstream::stream::StorageType::File
    );
    assert_eq!(
        config.retention,
        async_nats::jetstream::stream::RetentionPolicy::Limits
    );
    assert_eq!(
        config.discard,
        async_nats::jetstream::stream::DiscardPolicy::Old
    );

    // `connect` (serve) brings an existing stream to the settings.
    let changed = StreamSettings {
        retention: Duration::from_secs(2 * 3600),
        duplicate_window: Duration::from_secs(60),
        ..settings.clone()
    };
    let connected = Log::connect(&nats.url(), changed).await.expect("connects");
    let config = js_info(&connected, "LOG_TEST").await;
    assert_eq!(config.max_age, Duration::from_secs(2 * 3600));
    assert_eq!(config.duplicate_window, Duration::from_secs(60));

    // `open` (the tools) never reconfigures it.
    let other = StreamSettings {
        retention: Duration::from_secs(5 * 3600),
        duplicate_window: Duration::from_secs(10),
        ..settings
    };
    let opened = Log::open(&nats.url(), other).await.expect("opens");
    let config = js_info(&opened, "LOG_TEST").await;
    assert_eq!(config.max_age, Duration::from_secs(2 * 3600));
    assert_eq!(config.duplicate_window, Duration::from_secs(60));
}

/// A nats-server without JetStream, killed on drop.
struct PlainNats(std::process::Child);

impl Drop for PlainNats {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn connect_refuses_a_server_without_jetstream() {
    use std::io::{BufRead, BufReader};
    let binary = switchboard::local_nats::find_binary().expect("nats-server (run `just tools`)");
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        listener.local_addr().expect("addr").port()
    };
    let mut child = std::process::Command::new(binary)
        .args(["-a", "127.0.0.1", "-p", &port.to_string()])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("nats-server starts");
    let stderr = child.stderr.take().expect("stderr");
    let _server = PlainNats(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("Server is ready") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(PATIENCE).expect("nats-server is ready");
    let url = format!("nats://127.0.0.1:{port}");
    assert!(matches!(
        Log::connect(&url, StreamSettings::default()).await,
        Err(LogError::NoJetStream)
    ));
    assert!(matches!(
        Log::open(&url, StreamSettings::default()).await,
        Err(LogError::NoJetStream)
    ));
}
