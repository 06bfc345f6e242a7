//! The membership projection: how fast it folds the log, and what a
//! snapshot saves at gateway start-up.
//!
//! 1_000_000 membership events (`member_joined`, `member_left`,
//! `user_banned`) across 1_000 channels and 10_000 users are stored; then
//! `Log::fold_into` folds them all, `server::load_projection` starts
//! from an empty store (a full fold), and again from a snapshot with a
//! small tail. Without `--bench`: a few thousand events.
//!
//! Then live delivery while snapshots are written: memberships are topped
//! up to 1_000_000, the gateway binary starts on that log, and for
//! `LIVE_SECS` a WebSocket client receives chat events published at
//! `LIVE_PACE` while `member_joined` events trickle in on other channels, so
//! the gateway writes a whole snapshot every `SNAPSHOT_INTERVAL`. The
//! gateway logs each write with its duration; each event's
//! publish-to-receive latency is counted as during a write when the two
//! overlap, else outside, and p50/p99/max are printed for both. Without
//! `--bench`: 2,000 memberships and a few seconds.

use switchboard_harness::bench;

use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use serde_json::json;
use switchboard::channel::{Channel, Id};
use switchboard::event::{BanChange, Event, EventData, Member};
use switchboard::log::Log;
use switchboard::projection::{Projection, FOLDED};
use switchboard::store::Store;

use bench::{ms, now_nanos, percentile, rate, thousands, Gateway, IN_FLIGHT, PATIENCE};
use switchboard::token::Grant;
use tokio_tungstenite::tungstenite::Message;

struct Sizes {
    events: usize,
    channels: usize,
    users: usize,
    tail: usize,
    /// Memberships in the projection while live latency is measured.
    live_memberships: usize,
    /// How long live latency is measured.
    live_secs: u64,
}

/// Chat events per second to the measured client.
const LIVE_PACE: f64 = 200.0;

/// `member_joined` events per second on other channels, so that every
/// snapshot tick has changes to write.
const LIVE_JOINS: f64 = 20.0;

fn main() {
    let sizes = if bench::full() {
        Sizes {
            events: 1_000_000,
            channels: 1_000,
            users: 10_000,
            tail: 1_000,
            live_memberships: 1_000_000,
            live_secs: 30,
        }
    } else {
        Sizes {
            events: 2_000,
            channels: 20,
            users: 200,
            tail: 50,
            live_memberships: 2_000,
            live_secs: 7,
        }
    };
    bench::runtime().block_on(run(sizes));
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
    let nats = bench::nats();
    let log = bench::log(&nats).await;
    let channels: Vec<Id> = (0..sizes.channels).map(|_| Id::new_v4()).collect();
    let users: Vec<Id> = (0..sizes.users).map(|_| Id::new_v4()).collect();
    println!(
        "projection: {} membership events (60% member_joined, 30% member_left, 10% user_banned) over {} channels and {} users [{} mode]",
        thousands(sizes.events as f64),
        thousands(sizes.channels as f64),
        thousands(sizes.users as f64),
        bench::mode()
    );
    let stored = store_membership(&log, sizes.events, &channels, &users).await;
    let extent = log.extent().await.expect("extent");
    println!(
        "  stored in {:.1} s ({} events/s, {} stream messages with the bans' user copies)",
        stored.as_secs_f64(),
        thousands(rate(sizes.events as u64, stored)),
        thousands(extent.messages as f64)
    );

    let procs = [("nats-server", bench::nats_pid())];

    // Reference first: the same events through an unfiltered reader.
    let cpu = bench::CpuMeter::start(&procs);
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
    let cpu = bench::CpuMeter::start(&procs);
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
    folded_projection.epoch = Some(log.epoch());
    let (members, banned, deleted) = folded_projection.len();
    println!(
        "  catch_up: {} events folded ({} messages read) in {:.3} s = {} events/s{}; {} memberships, {} bans, {} deleted",
        thousands(folded as f64),
        thousands(read as f64),
        fold_time.as_secs_f64(),
        thousands(fold_rate),
        bench::target_note(">= 200,000"),
        thousands(members as f64),
        thousands(banned as f64),
        deleted
    );
    println!("    {}", cpu.line());
    let fold_cpu = cpu.json();

    // Start-up without a snapshot: a full fold.
    let store_dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(store_dir.path()).expect("store");
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
    if !bench::full() {
        // The snapshot path ends where a fresh fold does.
        let mut fresh = Projection::default();
        fresh.epoch = Some(log.epoch());
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
    let live = live_during_snapshots(&nats, &log, &sizes, &channels, members).await;
    bench::verdict("fold", fold_rate >= 200_000.0, ">= 200,000 events/s");
    bench::print_json(
        "projection",
        json!({
            "events": sizes.events,
            "channels": sizes.channels,
            "users": sizes.users,
            "stored_per_s": rate(sizes.events as u64, stored).round(),
            "folded": folded,
            "catch_up_read": read,
            "fold_s": bench::round3(fold_time.as_secs_f64()),
            "fold_per_s": fold_rate.round(),
            "reference_unfiltered_fold_per_s": reference_rate.round(),
            "cpu_fold": fold_cpu,
            "cpu_reference": reference_cpu,
            "members": members,
            "banned": banned,
            "startup_no_snapshot_s": bench::round3(cold_time.as_secs_f64()),
            "startup_snapshot_s": bench::round3(warm_time.as_secs_f64()),
            "snapshot_tail_events": sizes.tail,
            "snapshot_bytes": snapshot_bytes,
            "snapshot_write_s": bench::round3(snapshot_time.as_secs_f64()),
            "target_fold_per_s": 200_000,
            "live": live,
        }),
    );
}

// ------------------------------------------- live delivery during snapshots

/// The log filter that puts the snapshot writer's lines in the gateway's log.
const SNAPSHOT_LOG: &str = "warn,switchboard::gateway::housekeeping=debug";

/// Whole snapshot writes so far: (start, end) in wall-clock nanoseconds,
/// from the writer's `projection snapshot written … whole=true ms=…`.
fn whole_writes(gateway: &Gateway) -> Vec<(u64, u64)> {
    let text = std::fs::read_to_string(gateway.log_path()).unwrap_or_default();
    text.lines()
        .filter(|l| l.contains("projection snapshot written") && l.contains("whole=true"))
        .filter_map(|line| {
            let at = chrono::DateTime::parse_from_rfc3339(line.split_whitespace().next()?);
            let end = at.ok()?.timestamp_nanos_opt()? as u64;
            let ms: u64 = line
                .split(" ms=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()?;
            Some((end.saturating_sub(ms * 1_000_000), end))
        })
        .collect()
}

/// A `member_joined` of a fresh user on one of `channels`.
fn fresh_join(channels: &[Id]) -> Event {
    Event::new(EventData::MemberJoined(Member {
        channel_id: channels[fastrand::usize(..channels.len())],
        user_id: Id::new_v4(),
        username: None,
    }))
}

/// Reads `expected` stamped events: (sent, received) wall-clock nanoseconds.
async fn read_stamped(mut ws: bench::Ws, expected: usize) -> Vec<(u64, u64)> {
    let mut got = Vec::with_capacity(expected);
    let mut deadline = bench::deadline();
    while got.len() < expected {
        match bench::next_before(&mut ws, &mut deadline).await {
            Some(Message::Text(text)) => {
                if let Some(sent) = bench::delivery::content_nanos(&text) {
                    got.push((sent, now_nanos()));
                }
            }
            Some(_) => {}
            None => break,
        }
    }
    let _ = ws.close(None).await;
    got
}

/// `n samples, p50 … p99 … max …` of latencies in nanoseconds.
fn latency_figures(mut latencies: Vec<u64>) -> (String, serde_json::Value) {
    latencies.sort_unstable();
    let (p50, p99) = (
        ms(percentile(&latencies, 50.0)),
        ms(percentile(&latencies, 99.0)),
    );
    let max = ms(latencies.last().copied().unwrap_or(0));
    (
        format!(
            "{:>6} events, latency p50 {p50:>7.2} ms  p99 {p99:>7.2} ms  max {max:>7.2} ms",
            latencies.len()
        ),
        json!({"events": latencies.len(), "p50_ms": bench::round3(p50),
               "p99_ms": bench::round3(p99), "max_ms": bench::round3(max)}),
    )
}

async fn live_during_snapshots(
    nats: &bench::NatsServer,
    log: &Log,
    sizes: &Sizes,
    channels: &[Id],
    members: usize,
) -> serde_json::Value {
    let missing = sizes.live_memberships.saturating_sub(members);
    let started = Instant::now();
    futures::stream::iter(0..missing)
        .map(|_| {
            let event = fresh_join(channels);
            async move { log.store(&event).await.map(|_| ()) }
        })
        .buffer_unordered(IN_FLIGHT)
        .try_for_each(|()| async { Ok(()) })
        .await
        .expect("store");
    let memberships = members + missing;
    println!(
        "  live delivery during snapshots: {} member_joined stored in {:.1} s for {} memberships",
        thousands(missing as f64),
        started.elapsed().as_secs_f64(),
        thousands(memberships as f64)
    );
    let started = Instant::now();
    let gateway = bench::gateway_logging(&nats.url(), SNAPSHOT_LOG);
    println!(
        "    gateway started (a full fold) in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let channel = Id::new_v4();
    let token = bench::token(Id::new_v4(), Grant::Some(vec![channel]), &[]);
    let url = format!("ws://{}/v1/ws?token={token}", gateway.addr);
    let mut ws = bench::connect_gateway(&url, 64 * 1024).await;
    bench::subscribe_live(&mut ws, Channel::Chat(channel)).await;
    let events = (LIVE_PACE * sizes.live_secs as f64) as usize;
    let joins = (LIVE_JOINS * sizes.live_secs as f64) as usize;
    let reader = tokio::spawn(read_stamped(ws, events));
    let cpu = bench::CpuMeter::start(&[
        ("gateway", gateway.pid()),
        ("nats-server", bench::nats_pid()),
    ]);
    let from = now_nanos();
    tokio::join!(
        bench::store_paced(log, events, LIVE_PACE, || bench::message(
            channel,
            now_nanos().to_string()
        )),
        bench::store_paced(log, joins, LIVE_JOINS, || fresh_join(channels)),
    );
    let samples = reader.await.expect("reader");
    let to = now_nanos();
    let cpu_line = cpu.line();
    let cpu_json = cpu.json();
    assert_eq!(samples.len(), events, "every live event delivered");

    // A write still running at the end is logged when it ends.
    let waited = Instant::now();
    while waited.elapsed() < PATIENCE
        && !whole_writes(&gateway).iter().any(|(_, end)| *end >= to)
        && bench::full()
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let writes: Vec<(u64, u64)> = whole_writes(&gateway)
        .into_iter()
        .filter(|(start, end)| *start <= to && *end >= from)
        .collect();
    let (during, outside): (Vec<_>, Vec<_>) = samples
        .iter()
        .map(|(sent, received)| {
            let overlaps = writes
                .iter()
                .any(|(start, end)| *sent <= *end && *received >= *start);
            (overlaps, received.saturating_sub(*sent))
        })
        .partition(|(overlaps, _)| *overlaps);
    let durations: Vec<u64> = writes.iter().map(|(s, e)| e - s).collect();
    let write_ms_max = ms(durations.iter().copied().max().unwrap_or(0));
    let write_ms_avg = ms(durations.iter().sum::<u64>() / durations.len().max(1) as u64);
    let (during_line, during_json) = latency_figures(during.into_iter().map(|(_, l)| l).collect());
    let (outside_line, outside_json) =
        latency_figures(outside.into_iter().map(|(_, l)| l).collect());
    println!(
        "    {} s of {LIVE_PACE} chat events/s to one client and {LIVE_JOINS} member_joined/s elsewhere: {} whole snapshot writes (avg {write_ms_avg:.0} ms, max {write_ms_max:.0} ms, on a blocking thread)",
        sizes.live_secs,
        writes.len()
    );
    println!("      during a snapshot write:  {during_line}");
    println!("      outside snapshot writes:  {outside_line}");
    println!("    {cpu_line}");
    let p99 = |figures: &serde_json::Value| figures["p99_ms"].as_f64().unwrap_or(0.0);
    bench::verdict(
        "live delivery during snapshot writes",
        !writes.is_empty() && p99(&during_json) <= 2.0 * p99(&outside_json) + 10.0,
        "p99 during writes <= 2 x p99 outside + 10 ms",
    );
    json!({
        "memberships": memberships,
        "secs": sizes.live_secs,
        "pace": LIVE_PACE,
        "joins_per_s": LIVE_JOINS,
        "whole_writes": writes.len(),
        "write_ms_avg": bench::round1(write_ms_avg),
        "write_ms_max": bench::round1(write_ms_max),
        "during_writes": during_json,
        "outside_writes": outside_json,
        "cpu": cpu_json,
    })
}
