//! When the bucket is written: once per connection per flush interval, and
//! the latest cursor at a normal stop.

use super::*;

/// The bucket's write rate: each connection whose cursors move writes at
/// most once per flush interval, however many events it receives (here 50
/// connections, 100 events/s, 1 s flushes: about 50 writes/s for 5,000
/// deliveries/s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bucket_is_written_once_per_connection_per_flush() {
    const CLIENTS: usize = 50;
    const FLUSH_RATE: Duration = Duration::from_secs(1);
    const WINDOW: Duration = Duration::from_secs(5);
    let nats = nats();
    let deployment = start_gateways(&nats.url(), 1, &["--session-flush-interval", "1s"]);
    let gateway = &deployment.gateways[0];
    let log = log(&nats).await;
    let channels: Vec<Id> = (0..5).map(|_| Id::new_v4()).collect();
    let user = token(Id::new_v4(), Grant::All, &[]);
    let mut readers = Vec::new();
    for i in 0..CLIENTS {
        let mut client = Client::connect(gateway, &user).await;
        client.subscribe(chat(channels[i % channels.len()])).await;
        // Reading answers the receipt probes: the cursors move.
        readers.push(tokio::spawn(async move {
            let mut events = 0u64;
            while let Some(frame) = client.try_next().await {
                if frame.get("seq").is_some() {
                    events += 1;
                }
            }
            events
        }));
    }
    let (stop, publisher) = publish_steadily(log.clone(), channels, Duration::from_millis(10));
    // Past the first flushes, then one window counted.
    tokio::time::sleep(FLUSH_RATE * 2).await;
    let from = gateway.metric("switchboard_session_writes_total").await;
    let delivered_from = gateway.metric("switchboard_events_out_total").await;
    tokio::time::sleep(WINDOW).await;
    let writes = gateway.metric("switchboard_session_writes_total").await - from;
    let delivered = gateway.metric("switchboard_events_out_total").await - delivered_from;
    let _ = stop.send(());
    let _ = publisher.await;
    let seconds = WINDOW.as_secs_f64();
    println!(
        "{CLIENTS} connections, {:.0} deliveries/s: {:.1} session writes/s ({writes} in {seconds} s)",
        delivered / seconds,
        writes / seconds
    );
    let most = CLIENTS as f64 * (seconds / FLUSH_RATE.as_secs_f64() + 1.0);
    assert!(writes <= most, "{writes} writes, at most {most} expected");
    assert!(
        writes >= CLIENTS as f64,
        "the cursors were written ({writes})"
    );
    drop(deployment);
    for reader in readers {
        let _ = reader.await;
    }
}

/// A normal stop writes every session before the process ends: an ack made
/// just before a SIGTERM (well within the flush interval) is the cursor the
/// other gateway restores, so nothing comes again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_normal_stop_writes_the_latest_cursor() {
    let nats = nats();
    let mut deployment = start_gateways(&nats.url(), 2, &["--session-flush-interval", "1m"]);
    let log = log(&nats).await;
    let c = Id::new_v4();
    let user = token(Id::new_v4(), Grant::All, &[]);
    let mut client = Client::connect(&deployment.gateways[0], &user).await;
    let session = client.session_id();
    client.subscribe(chat(c)).await;
    for n in 0..10 {
        log.publish(&message(c, format!("m{n}")))
            .await
            .expect("published");
    }
    let events = client.events(10).await;
    let last = events[9]["seq"].as_u64().expect("seq");
    client
        .send(json!({"type": "ack", "channel": chat(c).to_string(), "seq": last}))
        .await;
    // The gateway reads the ack well within this.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut a = deployment.gateways.remove(0);
    let a = tokio::task::spawn_blocking(move || {
        a.terminate();
        a
    })
    .await
    .expect("A stops");
    assert_eq!(client.closed_with().await, 1001);

    let mut client = Client::connect_session(&deployment.gateways[0], &user, &session).await;
    assert_eq!(client.hello["data"]["resumed"], true, "{}", client.hello);
    let (_, replayed, _) = client.read_replay(chat(c)).await;
    assert_eq!(seqs(&replayed), Vec::<u64>::new(), "nothing comes again");
    let receipt = log.publish(&message(c, "after")).await.expect("published");
    let next = client.events(1).await;
    assert_eq!(next[0]["seq"].as_u64(), Some(receipt.stored.seq));
    drop(a);
}
