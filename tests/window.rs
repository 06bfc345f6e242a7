//! The node's window of recent events: a short gap is replayed from memory
//! (no JetStream consumer), also right after a restart; an older gap reads
//! the stream, with at most `max_stream_replays` reads at once, one
//! consumer per resumed subscription, and the consumers deleted when done.
//! Real nats-server, real binary, real WebSockets.

use futures::StreamExt;
use serde_json::json;
use switchboard::channel::Id;
use switchboard::log::Log;
use switchboard::token::Grant;
use switchboard_harness::*;

const CONSUMERS: &str = "switchboard_log_consumers_created_total";

/// Stores `n` messages on each channel, interleaved; each channel's seqs.
async fn publish(log: &Log, channels: &[Id], n: usize) -> Vec<Vec<u64>> {
    let mut seqs = vec![Vec::new(); channels.len()];
    for i in 0..n {
        for (k, c) in channels.iter().enumerate() {
            let receipt = log
                .store(&message(*c, format!("{i}")))
                .await
                .expect("stored");
            seqs[k].push(receipt.seq);
        }
    }
    seqs
}

/// Waits until the node has routed (and its window holds) `seq`.
async fn wait_routed(gateway: &Gateway, events: usize) {
    wait_until("the window to hold the events", || async {
        gateway.metric("switchboard_window_events ").await >= events as f64
    })
    .await;
}

/// Subscribes with `since_seq` and reads the replay and what follows live
/// until `want` events came; checks them against `want`.
async fn resume(client: &mut Client, c: Id, since: u64, want: &[u64]) {
    let (subscribed, events, _) = client.subscribe_since(chat(c), json!(since)).await;
    assert_eq!(subscribed["data"]["complete"], true, "{subscribed}");
    let mut got = seqs(&events);
    if got.len() < want.len() {
        got.extend(seqs(&client.events(want.len() - got.len()).await));
    }
    assert_seqs(&got, want, "every event after since_seq, once, in order");
}

#[tokio::test]
async fn a_short_gap_is_replayed_from_memory_without_a_consumer() {
    let nats = nats();
    let gateway = Gateway::start(&nats);
    let log = log(&nats).await;
    let (a, b) = (Id::new_v4(), Id::new_v4());
    let seqs = publish(&log, &[a, b], 40).await;
    wait_routed(&gateway, 80).await;
    let consumers = gateway.metric(CONSUMERS).await;
    assert!(consumers >= 1.0, "the router reads the stream");

    let mut client = Client::connect(&gateway, &token(Id::new_v4(), Grant::All, &[])).await;
    resume(&mut client, a, seqs[0][9], &seqs[0][10..]).await;
    resume(&mut client, b, 0, &seqs[1]).await;
    // And live after the replay.
    let live = publish(&log, &[a], 1).await;
    assert_eq!(switchboard_harness::seqs(&client.events(1).await), live[0]);

    assert_eq!(
        gateway.metric(CONSUMERS).await,
        consumers,
        "a gap the window holds creates no consumer"
    );
    assert!(gateway.metric("switchboard_window_replays_total").await >= 2.0);
    assert!(gateway.metric("switchboard_window_bytes").await > 0.0);
}

#[tokio::test]
async fn a_restarted_node_fills_its_window_from_the_stream() {
    let nats = nats();
    let mut gateway = Gateway::start(&nats);
    let log = log(&nats).await;
    let c = Id::new_v4();
    let seqs = publish(&log, &[c], 30).await;
    wait_routed(&gateway, 30).await;

    gateway.kill9();
    gateway.restart();
    wait_routed(&gateway, 30).await;
    // The projection's snapshot says 30 at once; the window fills from the
    // stream just after.
    wait_until("the window to fill from the stream", || async {
        gateway.metric("switchboard_window_events").await >= 30.0
    })
    .await;
    let consumers = gateway.metric(CONSUMERS).await;
    let mut client = Client::connect(&gateway, &token(Id::new_v4(), Grant::All, &[])).await;
    resume(&mut client, c, seqs[0][4], &seqs[0][5..]).await;
    assert_eq!(
        gateway.metric(CONSUMERS).await,
        consumers,
        "the restarted node replays from its window"
    );
}

#[tokio::test]
async fn older_gaps_read_the_stream_with_bounded_reads_and_no_leftover_consumers() {
    let nats = nats();
    let gateway = Gateway::start_with(
        &nats,
        &["--window-events", "5", "--max-stream-replays", "2"],
    );
    let log = log(&nats).await;
    let channels: Vec<Id> = (0..10).map(|_| Id::new_v4()).collect();
    let seqs = publish(&log, &channels, 10).await;
    wait_routed(&gateway, 5).await;
    let consumers = gateway.metric(CONSUMERS).await;

    // 30 clients at once, each resuming two channels from their start.
    let clients = 30;
    let token = token(Id::new_v4(), Grant::All, &[]);
    futures::stream::iter(0..clients)
        .map(|i| {
            let (gateway, token, channels, seqs) = (&gateway, &token, &channels, &seqs);
            async move {
                let mut client = Client::connect(gateway, token).await;
                for k in [i % 10, (i + 3) % 10] {
                    resume(&mut client, channels[k], 0, &seqs[k]).await;
                }
                client.close().await;
            }
        })
        .buffer_unordered(clients)
        .collect::<Vec<()>>()
        .await;

    let created = gateway.metric(CONSUMERS).await - consumers;
    assert!(
        created <= (2 * clients) as f64,
        "{created} consumers for {} resumed subscriptions",
        2 * clients
    );
    assert!(
        created >= 1.0,
        "a gap older than the window reads the stream"
    );
    wait_until("every stream replay to end", || async {
        gateway.metric("switchboard_stream_replays ").await == 0.0
            && gateway.metric("switchboard_stream_replays_waiting ").await == 0.0
    })
    .await;
    // The reads' consumers are deleted, not left for the server's 30 s
    // inactivity threshold: only the router's remains well before then.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let left = consumer_count(&log).await;
        if left <= 1 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{left} consumers left 10 s after the replays ended"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

async fn consumer_count(log: &Log) -> usize {
    let js = async_nats::jetstream::new(log.client().clone());
    match js.get_stream(&log.settings().name).await {
        Ok(mut stream) => match stream.info().await {
            Ok(info) => info.state.consumer_count,
            Err(_) => usize::MAX,
        },
        Err(_) => usize::MAX,
    }
}
