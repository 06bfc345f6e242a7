//! The membership projection: how fast it folds the log, and what a
//! snapshot saves at gateway start-up.
//!
//! 1_000_000 membership events (`member_joined`, `member_left`,
//! `user_banned`) across 1_000 channels and 10_000 users are stored; then
//! `Log::fold_into` folds them all, `server::load_projection` starts
//! from an empty store (a full fold), and again from a snapshot with a
//! small tail. Without `--bench`: a few thousand events.

mod common;

use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use serde_json::json;
use switchboard::channel::Id;
use switchboard::event::{BanChange, Event, EventData, Member};
use switchboard::log::Log;
use switchboard::projection::{Projection, FOLDED};
use switchboard::store::Store;

use common::{rate, thousands, IN_FLIGHT};

struct Sizes {
    events: usize,
    channels: usize,
    users: usize,
    tail: usize,
}

fn main() {
    let sizes = if common::full() {
        Sizes {
            events: 1_000_000,
            channels: 1_000,
            users: 10_000,
            tail: 1_000,
        }
    } else {
        Sizes {
            events: 2_000,
            channels: 20,
            users: 200,
            tail: 50,
        }
    };
    common::runtime().block_on(run(sizes));
}

/// 60% joins, 30% leaves, 10% bans, on random channels and users.
fn membership_event(channels: &[Id], users: &[Id]) -> Event {
    let channel_id = channels[fastrand::usize(..channels.len())];
    let user_id = users[fastrand::usize(..users.len())];
    let member = Member {
        channel_id,
        user_id,
        username: None,
    };
    Event::new(match fastrand::u8(..10) {
        0..=5 => EventData::MemberJoined(member),
        6..=8 => EventData::MemberLeft(member),
        _ => EventData::UserBanned(BanChange {
            channel_id,
            user_id: Some(user_id),
            motive: "benchmark".into(),
        }),
    })
}

/// Stores `n` membership events with acks in flight; returns the time taken.
async fn store_membership(log: &Log, n: usize, channels: &[Id], users: &[Id]) -> Duration {
    let started = Instant::now();
    futures::stream::iter(0..n)
        .map(|_| {
            let event = membership_event(channels, users);
            async move { log.store(&event).await.map(|_| ()) }
        })
        .buffer_unordered(IN_FLIGHT)
        .try_for_each(|()| async { Ok(()) })
        .await
        .expect("store");
    started.elapsed()
}

/// Reference: the same fold through one unfiltered reader (as the router
/// reads the log), other event types and copies skipped on this side:
/// what `fold_into` could do instead of its six-filter consumer, which
/// nats-server serves slowly on a stream with many subjects. Returns the
/// projection and how many messages were read.
async fn fold_unfiltered(log: &Log, until: u64) -> (Projection, u64) {
    let mut read = log.read_all(1).await.expect("read");
    let mut projection = Projection::default();
    let mut count = 0;
    if read.initial_pending > 0 {
        while let Some(item) = read.next().await {
            let item = item.expect("read item");
            let (seq, pending) = (item.seq, item.pending);
            if seq > until {
                break;
            }
            count += 1;
            if let Some(event) = item.into_event() {
                if FOLDED.contains(&event.data.kind()) {
                    projection.apply(event.seq, event.channel, &event.data);
                }
            }
            if pending == 0 || seq == until {
                break;
            }
        }
    }
    projection.advance_to(until);
    (projection, count)
}

async fn run(sizes: Sizes) {
    let nats = common::nats();
    let log = common::log(&nats).await;
    let channels: Vec<Id> = (0..sizes.channels).map(|_| Id::new_v4()).collect();
    let users: Vec<Id> = (0..sizes.users).map(|_| Id::new_v4()).collect();
    println!(
        "projection: {} membership events (60% member_joined, 30% member_left, 10% user_banned) over {} channels and {} users [{} mode]",
        thousands(sizes.events as f64),
        thousands(sizes.channels as f64),
        thousands(sizes.users as f64),
        common::mode()
    );
    let stored = store_membership(&log, sizes.events, &channels, &users).await;
    let extent = log.extent().await.expect("extent");
    println!(
        "  stored in {:.1} s ({} events/s, {} stream messages with the bans' user copies)",
        stored.as_secs_f64(),
        thousands(rate(sizes.events as u64, stored)),
        thousands(extent.messages as f64)
    );

    let procs = [("nats-server", common::nats_pid())];

    // Reference first: the same events through an unfiltered reader.
    let cpu = common::CpuMeter::start(&procs);
    let started = Instant::now();
    let (reference, reference_read) = fold_unfiltered(&log, extent.last_seq).await;
    let reference_time = started.elapsed();
    let reference_rate = rate(sizes.events as u64, reference_time);
    println!(
        "  reference: one unfiltered reader + Projection::apply: {} events ({} messages read) in {:.3} s = {} events/s",
        thousands(sizes.events as f64),
        thousands(reference_read as f64),
        reference_time.as_secs_f64(),
        thousands(reference_rate)
    );
    println!("    {}", cpu.line());
    let reference_cpu = cpu.json();

    // The fold alone.
    let cpu = common::CpuMeter::start(&procs);
    let started = Instant::now();
    let mut folded_projection = Projection::default();
    let read = log
        .fold_into(&mut folded_projection, extent.last_seq)
        .await
        .expect("catch up");
    let fold_time = started.elapsed();
    // The rate counts the membership events, whatever else fold_into reads.
    let folded = sizes.events as u64;
    let fold_rate = rate(folded, fold_time);
    assert_eq!(reference, folded_projection, "both folds agree");
    // `load_projection` also names the stream epoch its projection is of.
    folded_projection.epoch = Some(log.epoch().to_string());
    let (members, banned, deleted) = folded_projection.len();
    println!(
        "  catch_up: {} events folded ({} messages read) in {:.3} s = {} events/s (target >= 200,000); {} memberships, {} bans, {} deleted",
        thousands(folded as f64),
        thousands(read as f64),
        fold_time.as_secs_f64(),
        thousands(fold_rate),
        thousands(members as f64),
        thousands(banned as f64),
        deleted
    );
    println!("    {}", cpu.line());
    let fold_cpu = cpu.json();

    // Start-up without a snapshot: a full fold.
    let store = Store::temporary().expect("store");
    let started = Instant::now();
    let cold = switchboard::server::load_projection(&log, &store)
        .await
        .expect("load without a snapshot");
    let cold_time = started.elapsed();
    assert_eq!(cold, folded_projection);

    // A snapshot, then a small tail, then start-up again.
    let started = Instant::now();
    let snapshot = cold.snapshot();
    let snapshot_bytes = serde_json::to_vec(&snapshot).map_or(0, |b| b.len());
    store.put_snapshot(&snapshot).expect("snapshot written");
    let snapshot_time = started.elapsed();
    store_membership(&log, sizes.tail, &channels, &users).await;
    let last = log.extent().await.expect("extent").last_seq;
    let started = Instant::now();
    let warm = switchboard::server::load_projection(&log, &store)
        .await
        .expect("load from a snapshot");
    let warm_time = started.elapsed();
    assert_eq!(warm.last_seq, last);
    if !common::full() {
        // The snapshot path ends where a fresh fold does.
        let mut fresh = Projection::default();
        fresh.epoch = Some(log.epoch().to_string());
        log.fold_into(&mut fresh, last).await.expect("fresh fold");
        assert_eq!(fresh, warm, "snapshot + tail equals a fresh fold");
    }
    println!(
        "  start-up (load_projection): no snapshot {:.3} s; snapshot + {} tail events {:.3} s ({:.0}x faster)",
        cold_time.as_secs_f64(),
        thousands(sizes.tail as f64),
        warm_time.as_secs_f64(),
        cold_time.as_secs_f64() / warm_time.as_secs_f64().max(1e-9)
    );
    println!(
        "  snapshot: {:.1} MiB JSON, built and written in {:.3} s",
        snapshot_bytes as f64 / 1048576.0,
        snapshot_time.as_secs_f64()
    );
    common::verdict("fold", fold_rate >= 200_000.0, ">= 200,000 events/s");
    common::print_json(
        "projection",
        json!({
            "events": sizes.events,
            "channels": sizes.channels,
            "users": sizes.users,
            "stored_per_s": rate(sizes.events as u64, stored).round(),
            "folded": folded,
            "catch_up_read": read,
            "fold_s": common::round3(fold_time.as_secs_f64()),
            "fold_per_s": fold_rate.round(),
            "reference_unfiltered_fold_per_s": reference_rate.round(),
            "cpu_fold": fold_cpu,
            "cpu_reference": reference_cpu,
            "members": members,
            "banned": banned,
            "startup_no_snapshot_s": common::round3(cold_time.as_secs_f64()),
            "startup_snapshot_s": common::round3(warm_time.as_secs_f64()),
            "snapshot_tail_events": sizes.tail,
            "snapshot_bytes": snapshot_bytes,
            "snapshot_write_s": common::round3(snapshot_time.as_secs_f64()),
            "target_fold_per_s": 200_000,
        }),
    );
}
