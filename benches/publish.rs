//! Publishing throughput: switchboard's idempotent `Log::store` (and
//! `Log::publish`, which reads the commit time back) against a plain
//! async-nats JetStream publisher, same server, same payloads, the same
//! number of acks in flight.
//!
//! `cargo bench --bench publish`: 100_000 events per figure, two rounds
//! (the best of each is the headline). The target compares `Log::store`
//! with the plain publisher that also sends `Nats-Msg-Id` (the same
//! idempotence, so the same work on the server); the ratio to the plain
//! publisher without it is printed for information. Without `--bench` (as
//! `cargo test --all-targets` runs it): a few hundred events.

use switchboard_harness::bench;

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, message::PublishMessage, stream};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use serde_json::json;
use switchboard::channel::{Channel, Id};
use switchboard::event::Event;
use switchboard::log::{subject, Log};

use bench::{rate, thousands, IN_FLIGHT};

/// The plain publisher's stream and subjects (`peer.` is as long as `chat.`).
const PEER_STREAM: &str = "PEER_BENCH";
const PEER_ROOT: &str = "peer";

/// `Log::store` against the plain publisher with `Nats-Msg-Id`.
const TARGET_VS_PLAIN_MSG_ID: f64 = 0.9;

fn main() {
    let (events, rounds) = if bench::full() {
        (100_000, 2)
    } else {
        (300, 1)
    };
    bench::runtime().block_on(run(events, rounds));
}

/// One plain publish: subject, payload and an optional `Nats-Msg-Id`.
struct Plain {
    subject: String,
    payload: Bytes,
    msg_id: Option<String>,
}

/// The same events as the plain publisher sees them: their encoded
/// payloads on a subject of the same length.
fn plain_of(events: &[Event], with_msg_id: bool) -> Vec<Plain> {
    events
        .iter()
        .map(|event| {
            let copy = &event.copies()[0];
            let chat = subject::subject(copy.channel, copy.data.kind());
            Plain {
                subject: chat.replacen(subject::ROOT, PEER_ROOT, 1),
                payload: subject::encode_payload(event.id, &copy.data),
                msg_id: with_msg_id.then(|| event.id.to_string()),
            }
        })
        .collect()
}

fn messages(channel: Id, n: usize) -> Vec<Event> {
    (0..n)
        .map(|i| bench::message(channel, format!("benchmark message number {i}")))
        .collect()
}

async fn plain(js: &jetstream::Context, items: &[Plain]) -> Duration {
    let started = Instant::now();
    futures::stream::iter(items)
        .map(|item| async move {
            let mut publish = PublishMessage::build().payload(item.payload.clone());
            if let Some(id) = &item.msg_id {
                publish = publish.message_id(id.as_str());
            }
            let ack = js.send_publish(item.subject.clone(), publish).await?;
            ack.await.map(|_| ())
        })
        .buffer_unordered(IN_FLIGHT)
        .try_for_each(|()| async { Ok(()) })
        .await
        .expect("plain publish");
    started.elapsed()
}

async fn store(log: &Log, events: &[Event]) -> Duration {
    let started = Instant::now();
    futures::stream::iter(events)
        .map(|event| log.store(event))
        .buffer_unordered(IN_FLIGHT)
        .try_for_each(|stored| async move {
            assert!(!stored.duplicate, "fresh ids are never duplicates");
            Ok(())
        })
        .await
        .expect("store");
    started.elapsed()
}

async fn publish(log: &Log, events: &[Event]) -> Duration {
    let started = Instant::now();
    futures::stream::iter(events)
        .map(|event| log.publish(event))
        .buffer_unordered(IN_FLIGHT)
        .try_for_each(|_| async { Ok(()) })
        .await
        .expect("publish");
    started.elapsed()
}

#[derive(Default, Clone, Copy)]
struct Round {
    plain: f64,
    plain_msg_id: f64,
    store: f64,
    publish: f64,
}

async fn run(n: usize, rounds: usize) {
    let nats = bench::nats();
    let log = bench::log(&nats).await;
    let client = async_nats::connect(nats.url()).await.expect("plain client");
    let js = jetstream::new(client);
    let settings = log.settings().clone();
    js.create_stream(stream::Config {
        name: PEER_STREAM.into(),
        subjects: vec![format!("{PEER_ROOT}.>")],
        max_age: settings.retention,
        duplicate_window: settings.duplicate_window,
        storage: stream::StorageType::File,
        allow_direct: true,
        ..Default::default()
    })
    .await
    .expect("peer stream");

    let channel = Id::new_v4();
    let payload_bytes = subject::encode_payload(
        Id::new_v4(),
        &messages(channel, 1)[0].copies()[0].data.clone(),
    )
    .len();
    println!(
        "publish: {} channel_message events per figure, {IN_FLIGHT} acks in flight, payload {payload_bytes} B, {rounds} round(s) [{} mode]",
        thousands(n as f64),
        bench::mode()
    );
    println!("  channel {}", Channel::Chat(channel));

    // Warm both paths (connections, stream files, allocator) untimed.
    let warm = (n / 10).clamp(50, 5_000);
    plain(&js, &plain_of(&messages(channel, warm), false)).await;
    store(&log, &messages(channel, warm)).await;

    let cpu = bench::CpuMeter::start(&[("nats-server", bench::nats_pid())]);
    let mut all = Vec::new();
    for round in 1..=rounds {
        let mut r = Round::default();
        let events = messages(channel, n);
        r.plain = rate(n as u64, plain(&js, &plain_of(&events, false)).await);
        r.store = rate(n as u64, store(&log, &events).await);
        let events = messages(channel, n);
        r.plain_msg_id = rate(n as u64, plain(&js, &plain_of(&events, true)).await);
        r.publish = rate(n as u64, publish(&log, &events).await);
        println!(
            "  round {round}: plain {} /s, plain+Msg-Id {} /s, Log::store {} /s, Log::publish {} /s",
            thousands(r.plain),
            thousands(r.plain_msg_id),
            thousands(r.store),
            thousands(r.publish)
        );
        all.push(r);
    }

    println!("    {} (all rounds)", cpu.line());
    let best = |f: fn(&Round) -> f64| all.iter().map(f).fold(0.0, f64::max);
    let (plain_best, plain_id_best) = (best(|r| r.plain), best(|r| r.plain_msg_id));
    let (store_best, publish_best) = (best(|r| r.store), best(|r| r.publish));
    let ratio = store_best / plain_best;
    let ratio_id = store_best / plain_id_best;

    let extent = log.extent().await.expect("extent");
    let expected = (warm + 2 * n * rounds) as u64;
    assert_eq!(
        extent.messages, expected,
        "every stored event is in the log once"
    );

    println!("publish results (best of {rounds}):");
    println!(
        "  plain JetStream publish           {:>12} events/s",
        thousands(plain_best)
    );
    println!(
        "  plain JetStream publish + Msg-Id  {:>12} events/s",
        thousands(plain_id_best)
    );
    println!(
        "  switchboard Log::store            {:>12} events/s  = {:.1}% of plain + Msg-Id{}, {:.1}% of plain without it",
        thousands(store_best),
        ratio_id * 100.0,
        bench::target_note(&format!(">= {:.0}%", TARGET_VS_PLAIN_MSG_ID * 100.0)),
        ratio * 100.0
    );
    println!(
        "  switchboard Log::publish          {:>12} events/s  (store + a direct get for the log time)",
        thousands(publish_best)
    );
    bench::verdict(
        "Log::store",
        ratio_id >= TARGET_VS_PLAIN_MSG_ID,
        &format!(
            ">= {:.0}% of plain + Msg-Id",
            TARGET_VS_PLAIN_MSG_ID * 100.0
        ),
    );
    let rounds_json: Vec<_> = all
        .iter()
        .map(|r| {
            json!({"plain_per_s": r.plain.round(), "plain_msg_id_per_s": r.plain_msg_id.round(),
                   "store_per_s": r.store.round(), "publish_per_s": r.publish.round()})
        })
        .collect();
    bench::print_json(
        "publish",
        json!({
            "events": n,
            "in_flight": IN_FLIGHT,
            "payload_bytes": payload_bytes,
            "plain_per_s": plain_best.round(),
            "plain_msg_id_per_s": plain_id_best.round(),
            "store_per_s": store_best.round(),
            "publish_per_s": publish_best.round(),
            "store_vs_plain": bench::round3(ratio),
            "store_vs_plain_msg_id": bench::round3(ratio_id),
            "target_store_vs_plain_msg_id": TARGET_VS_PLAIN_MSG_ID,
            "rounds": rounds_json,
        }),
    );
}
