//! Session cursors never skip: a client that never acks and loses its TCP
//! connection abruptly (frames written by the gateway but never read die
//! with it) restores its session and gets every event it had not read,
//! many times in a row while events flow. Events may come again (those read
//! after the last confirmed ping), never go missing.

use std::collections::BTreeSet;
use std::time::Duration;

use switchboard::channel::Id;
use switchboard::token::Grant;
use switchboard_harness::*;

/// Restores in a row.
const ROUNDS: usize = 15;

/// The publisher's pace.
const EVENT_EVERY: Duration = Duration::from_millis(5);

#[tokio::test]
async fn abrupt_drops_while_events_flow_never_skip_an_event() {
    let nats = nats();
    let gateway = Gateway::start(&nats);
    let log = log(&nats).await;
    let c = Id::new_v4();
    let user = token(Id::new_v4(), Grant::All, &[]);

    let mut client = Client::connect(&gateway, &user).await;
    let session = client.session_id();
    client.subscribe(chat(c)).await;

    // A steady stream of events until the rounds are done.
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let publisher = {
        let log = log.clone();
        tokio::spawn(async move {
            let mut last = 0;
            let mut tick = tokio::time::interval(EVENT_EVERY);
            for n in 0..100_000u32 {
                tokio::select! {
                    _ = &mut stopped => break,
                    _ = tick.tick() => {}
                }
                let receipt = log
                    .publish(&message(c, format!("m{n}")))
                    .await
                    .expect("published");
                last = receipt.stored.seq;
            }
            last
        })
    };

    let mut seen = BTreeSet::new();
    let mut again = Vec::new();
    for round in 0..ROUNDS {
        // Read for a while (a little longer each round, so that probes are
        // both answered and not), then stop reading while the gateway keeps
        // writing, then the network drops.
        let reading = Duration::from_millis(150 + 70 * round as u64);
        let mut repeated = 0;
        let until = tokio::time::Instant::now() + reading;
        while let Ok(frame) = tokio::time::timeout_at(until, client.next()).await {
            let Some(seq) = frame["seq"].as_u64() else {
                continue; // subscribed, replayed
            };
            if !seen.insert(seq) {
                repeated += 1;
            }
            // No gap: every event before this one was seen already.
            let first = *seen.first().expect("seen");
            assert_eq!(
                seen.len() as u64,
                seq.max(*seen.last().expect("seen")) - first + 1,
                "round {round}: a gap before seq {seq}"
            );
        }
        if round > 0 {
            again.push(repeated);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        client.abort();
        client = Client::connect_session(&gateway, &user, &session).await;
        assert_eq!(client.hello["data"]["resumed"], true, "round {round}");
    }
    let _ = stop.send(());
    let last = publisher.await.expect("publisher");
    // The last restore catches up to the end without a gap either.
    while !seen.contains(&last) {
        let frame = client.next().await;
        if let Some(seq) = frame["seq"].as_u64() {
            seen.insert(seq);
        }
    }
    let first = *seen.first().expect("seen");
    assert_eq!(
        seen.len() as u64,
        last - first + 1,
        "every event, once at least"
    );
    let average = again.iter().sum::<usize>() as f64 / again.len().max(1) as f64;
    println!(
        "{} restores; events delivered again per restore: average {average:.1}, max {}",
        again.len(),
        again.iter().max().unwrap_or(&0)
    );
}
