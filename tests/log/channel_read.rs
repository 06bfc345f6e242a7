//! A replay's read of one channel (`Log::read_channel`): every event of the
//! channel after a sequence, once and in order, across pulls, with deleted
//! messages and other channels' events between them, and across a
//! restart of nats-server in the middle.

use super::*;

/// Stores `n` events, one in every `every` for `c` and the others for
/// `other`; returns `c`'s sequences.
async fn store_mixed(log: &Log, c: Id, other: Id, n: usize, every: usize) -> Vec<u64> {
    let stored = futures::stream::iter(0..n)
        .map(|i| {
            let channel = if i % every == 0 { c } else { other };
            let event = message(channel, format!("e{i}"));
            async move { (channel, log.store(&event).await.expect("stored").seq) }
        })
        .buffered(64)
        .collect::<Vec<_>>()
        .await;
    let mut seqs: Vec<u64> = stored
        .into_iter()
        .filter(|(channel, _)| *channel == c)
        .map(|(_, seq)| seq)
        .collect();
    seqs.sort_unstable();
    seqs
}

/// Reads `c` from `from` until `want` items came (and the last one says
/// nothing is pending), calling `midway` once after `pause_after` items.
async fn read_all_of(
    log: &Log,
    c: Id,
    from: u64,
    want: usize,
    pause_after: usize,
    mut midway: impl FnMut(),
) -> Vec<u64> {
    tokio::time::timeout(PATIENCE, async {
        let mut read = log.read_channel(chat(c), from).await.expect("read starts");
        let mut seqs = Vec::new();
        while seqs.len() < want {
            let item = read.next().await.expect("the read goes on").expect("read");
            assert_eq!(item.event.as_ref().map(|e| e.channel).ok(), Some(chat(c)));
            seqs.push(item.seq);
            if seqs.len() == pause_after {
                midway();
            }
            if seqs.len() == want {
                assert_eq!(item.pending, 0, "the last item says the read caught up");
            }
        }
        seqs
    })
    .await
    .expect("the read delivered everything")
}

#[tokio::test]
async fn a_channel_read_crosses_pulls_skips_deletions_and_others() {
    let nats = nats();
    let log = log(&nats).await;
    let (c, other, sparse) = (Id::new_v4(), Id::new_v4(), Id::new_v4());
    // More than one pull of the dense channel, the other channel between.
    let mut want = store_mixed(&log, c, other, 12_000, 2).await;
    // Deleted messages inside the range.
    let js = async_nats::jetstream::new(log.client().clone());
    let stream = js.get_stream(&log.settings().name).await.expect("stream");
    for seq in [want[10], want[2_600], want[5_001], want[5_002]] {
        stream.delete_message(seq).await.expect("deleted");
        want.retain(|s| *s != seq);
    }
    let read = read_all_of(&log, c, 1, want.len(), 0, || {}).await;
    assert_eq!(read, want, "every event of the channel, once, in order");

    // From the middle: only what is after it.
    let from = want[3_000];
    let tail: Vec<u64> = want.iter().copied().filter(|s| *s >= from).collect();
    let read = read_all_of(&log, c, from, tail.len(), 0, || {}).await;
    assert_eq!(read, tail);

    // A sparse channel among 99 others' events.
    let sparse_seqs = store_mixed(&log, sparse, other, 5_000, 100).await;
    let read = read_all_of(&log, sparse, 1, sparse_seqs.len(), 0, || {}).await;
    assert_eq!(read, sparse_seqs);
}

#[tokio::test]
async fn a_channel_read_goes_on_after_nats_restarts() {
    let mut nats = nats();
    let log = log(&nats).await;
    let (c, other) = (Id::new_v4(), Id::new_v4());
    let want = store_mixed(&log, c, other, 24_000, 2).await;
    // 12,000 events of `c`, more than two pulls: restarted once a few
    // hundred are read, the read's consumer (in memory) is gone with the
    // server, and the read recreates it from where it was.
    let nats_ref = &mut nats;
    let read = read_all_of(&log, c, 1, want.len(), 300, || {
        nats_ref.restart().expect("nats-server restarts");
    })
    .await;
    assert_eq!(read, want, "every event once, in order, across the restart");
}
