//! Time → sequence resolution, exact at the millisecond resolution clients
//! see.

use super::*;

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
