//! History: pages that concatenate, filters that hold, an empty channel's
//! end, and invalid stored messages reported without stopping a read.

use super::*;

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
