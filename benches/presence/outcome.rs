//! The figures of the presence bench: each run's, printed as it ends with
//! the verdicts against the targets (full runs only), the smoke run's
//! assertions, and the JSON line.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use switchboard::presence::node::BATCH_INTERVAL;
use switchboard_harness::bench::{self, ms, percentile, round1, thousands};

use super::heap::Held;
use super::observer::Storm;
use super::Sizes;

/// Bytes of presence per present user per node, beyond the connection.
pub const MEMORY_TARGET: f64 = 100.0;

/// Presence frames per observer per batch interval during a storm.
pub const FRAMES_TARGET: usize = 1;

/// From a change to both nodes' observers having seen it, p99.
pub const AGREEMENT_TARGET: Duration = Duration::from_secs(1);

/// Resident memory around the users coming online.
pub struct Memory {
    pub users: usize,
    /// Connecting and subscribing them all.
    pub connect: Duration,
    /// From the last one subscribed to B listing them all.
    pub listed: Duration,
    /// (before, after) RSS in bytes.
    pub a: (u64, u64),
    pub b: (u64, u64),
    /// Whether both readings settled (else: the last readings).
    pub settled: bool,
    /// The peak RSS (`VmHWM`) of A and B once settled: the joins'
    /// transient memory, when above the settled figure.
    pub peaks: (u64, u64),
    /// B's `switchboard_presence_users` after.
    pub b_gauge: Option<f64>,
}

impl Memory {
    fn per_user((before, after): (u64, u64), users: usize) -> f64 {
        (after as f64 - before as f64) / users as f64
    }

    pub fn b_per_user(&self) -> f64 {
        Memory::per_user(self.b, self.users)
    }

    pub fn a_per_user(&self) -> f64 {
        Memory::per_user(self.a, self.users)
    }
}

/// Sorted latencies in nanoseconds, and the size of the last answer.
#[derive(Default)]
pub struct Latencies {
    pub samples: Vec<u64>,
    pub bytes: usize,
}

impl Latencies {
    fn line(&self) -> String {
        format!(
            "p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms  ({} bytes)",
            ms(percentile(&self.samples, 50.0)),
            ms(percentile(&self.samples, 99.0)),
            ms(self.samples.last().copied().unwrap_or(0)),
            thousands(self.bytes as f64)
        )
    }

    fn json(&self) -> Value {
        json!({
            "p50_ms": bench::round3(ms(percentile(&self.samples, 50.0))),
            "p99_ms": bench::round3(ms(percentile(&self.samples, 99.0))),
            "max_ms": bench::round3(ms(self.samples.last().copied().unwrap_or(0))),
            "bytes": self.bytes,
            "requests": self.samples.len(),
        })
    }
}

/// The snapshot times on both nodes.
pub struct Snapshots {
    pub count: usize,
    pub members: usize,
    pub frame_a: Latencies,
    pub frame_b: Latencies,
    pub http_a: Latencies,
    pub http_b: Latencies,
}

/// A storm as the observers saw it.
pub struct StormOutcome {
    /// The count before and after.
    pub base: i64,
    pub target: i64,
    pub users: usize,
    /// From the storm's start to its first and last user's `subscribed`.
    pub first_subscribed: Duration,
    pub last_subscribed: Duration,
    pub storm: Storm,
    /// The last user's `subscribed`.
    pub reached_after: Instant,
}

/// Agreement times in nanoseconds, sorted.
#[derive(Default)]
pub struct Agreement {
    pub both: Vec<u64>,
    pub a: Vec<u64>,
    pub b: Vec<u64>,
    pub missed: usize,
}

/// One run's figures.
pub struct Outcome {
    pub present: usize,
    pub memory: Option<Memory>,
    pub snapshot: Option<Snapshots>,
    pub storm: StormOutcome,
    pub agreement: Option<Agreement>,
    /// Log lines about presence (the bench's gateways log warnings and
    /// above), on A and B.
    pub warnings: [usize; 2],
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / 1_048_576.0)
}

fn dist(xs: &[u64]) -> String {
    format!(
        "p50 {:.0} ms  p99 {:.0} ms  max {:.0} ms",
        ms(percentile(xs, 50.0)),
        ms(percentile(xs, 99.0)),
        ms(xs.last().copied().unwrap_or(0))
    )
}

fn dist_json(xs: &[u64]) -> Value {
    json!({
        "p50_ms": round1(ms(percentile(xs, 50.0))),
        "p99_ms": round1(ms(percentile(xs, 99.0))),
        "max_ms": round1(ms(xs.last().copied().unwrap_or(0))),
        "n": xs.len(),
    })
}

pub fn print_header(sizes: &Sizes, held: &[Held]) {
    println!(
        "presence ({} mode): gateways A (every connection) and B (none) on one nats-server; one channel; storms of {} users over {:.1} s; {} observers; batch interval {} ms",
        bench::mode(),
        thousands(sizes.storm as f64),
        sizes.spread.as_secs_f64(),
        sizes.observers,
        BATCH_INTERVAL.as_millis()
    );
    for h in held {
        println!(
            "  in process, {} users of one channel: a view holding them {:.0} bytes per user ({:.1} allocations); the node holding them (its own holdings and its view) {:.0} bytes per user",
            thousands(h.users as f64),
            h.view_bytes,
            h.view_allocations,
            h.holder_bytes
        );
        let shares: Vec<String> = h
            .view_shares
            .iter()
            .filter(|s| s.bytes_per_user.abs() >= 1.0)
            .map(|s| match s.size {
                Some(size) => format!("{:.0} in {size}-byte allocations", s.bytes_per_user),
                None => format!("{:.0} in larger ones (tables)", s.bytes_per_user),
            })
            .collect();
        println!("    the view's bytes per user: {}", shares.join(", "));
    }
}

impl Outcome {
    pub fn print(&self) {
        if let Some(m) = &self.memory {
            println!(
                "  connected {} users to A in {:.1} s; B listed them all {:.2} s later",
                thousands(m.users as f64),
                m.connect.as_secs_f64(),
                m.listed.as_secs_f64()
            );
            println!(
                "  memory ({}):",
                if m.settled {
                    "settled"
                } else {
                    "NOT settled: the last readings"
                }
            );
            println!(
                "    B (no connections): {} -> {} (peak {}): {:+.0} bytes per present user{}",
                mib(m.b.0),
                mib(m.b.1),
                mib(m.peaks.1),
                m.b_per_user(),
                bench::target_note(&format!("<= {MEMORY_TARGET:.0} bytes"))
            );
            println!(
                "    A (the connections): {} -> {} (peak {}): {:+.0} bytes per connection (socket, session, presence)",
                mib(m.a.0),
                mib(m.a.1),
                mib(m.peaks.0),
                m.a_per_user()
            );
            if let Some(gauge) = m.b_gauge {
                println!("    B's switchboard_presence_users: {gauge}");
            }
            bench::verdict(
                &format!(
                    "presence memory on B at {} users",
                    thousands(m.users as f64)
                ),
                m.b_per_user() <= MEMORY_TARGET,
                &format!("<= {MEMORY_TARGET:.0} bytes per present user per node"),
            );
        }
        if let Some(s) = &self.snapshot {
            println!(
                "  snapshot of {} users ({} members listed):",
                thousands(s.count as f64),
                thousands(s.members as f64)
            );
            println!("    `presence` frame on A   {}", s.frame_a.line());
            println!("    `presence` frame on B   {}", s.frame_b.line());
            println!("    GET /v1/presence on A   {}", s.http_a.line());
            println!("    GET /v1/presence on B   {}", s.http_b.line());
        }
        self.print_storm();
        if let Some(g) = &self.agreement {
            println!(
                "  agreement, {} changes of one user on A (subscribe, unsubscribe, ...):",
                g.both.len() + g.missed
            );
            println!("    seen on A and on B   {}", dist(&g.both));
            println!("    seen on A            {}", dist(&g.a));
            println!("    seen on B            {}", dist(&g.b));
            if g.missed > 0 {
                println!("    MISSED (not seen on both within 10 s): {}", g.missed);
            }
            bench::verdict(
                "agreement",
                g.missed == 0
                    && Duration::from_nanos(percentile(&g.both, 99.0)) <= AGREEMENT_TARGET,
                &format!("p99 <= {} ms on both nodes", AGREEMENT_TARGET.as_millis()),
            );
        }
        if self.warnings != [0, 0] {
            println!(
                "  gateway log lines about presence (warnings): A {}, B {}",
                self.warnings[0], self.warnings[1]
            );
        }
    }

    fn print_storm(&self) {
        let s = &self.storm;
        let storm = &s.storm;
        let on = |node| storm.watched.iter().filter(|w| w.node == node).count();
        println!(
            "  storm {} -> {} present: {} users subscribed on A {:.2}-{:.2} s after its start; {} observers ({} on A, {} on B)",
            thousands(s.base as f64),
            thousands(s.target as f64),
            thousands(s.users as f64),
            s.first_subscribed.as_secs_f64(),
            s.last_subscribed.as_secs_f64(),
            storm.watched.len(),
            on("A"),
            on("B")
        );
        println!(
            "    presence frames per observer per {} ms interval: at most {} (intervals from the storm's start), {} (intervals aligned to the arrivals){}",
            BATCH_INTERVAL.as_millis(),
            storm.most_per_interval(),
            storm.most_aligned(),
            bench::target_note(&format!("<= {FRAMES_TARGET}"))
        );
        let (early, late) = storm.largest_bursts_at().unwrap_or_default();
        println!(
            "    frames in one burst (one batch): at most {}, of them {} `user_presence` (each observer's largest burst {:.0}-{:.0} ms after the start); bursts at least {:.0} ms apart",
            storm.most_in_burst(),
            storm.most_events_in_burst(),
            early.as_secs_f64() * 1e3,
            late.as_secs_f64() * 1e3,
            storm
                .shortest_burst_gap()
                .map_or(0.0, |d| d.as_secs_f64() * 1e3)
        );
        let spread: Vec<String> = storm
            .distribution()
            .iter()
            .map(|(frames, n)| format!("{frames}: {}", thousands(*n as f64)))
            .collect();
        println!(
            "    intervals (observer x interval) by frames in them: {}",
            spread.join(", ")
        );
        let (f0, fm, f1) = storm.spread(|w| w.frames);
        let (s0, sm, s1) = storm.spread(|w| w.snapshots);
        let (b0, bm, b1) = storm.spread(|w| w.bytes);
        println!(
            "    per observer: {f0}-{f1} frames (mean {fm:.1}), of them {s0}-{s1} snapshots (mean {sm:.1}); {}-{} bytes (mean {})",
            thousands(b0 as f64),
            thousands(b1 as f64),
            thousands(bm)
        );
        for node in ["A", "B"] {
            let reached = storm.reached_after(node, s.reached_after);
            println!(
                "    observers on {node} counted {}, after the last user subscribed: {}",
                thousands(s.target as f64),
                if reached.is_empty() {
                    "none".to_string()
                } else {
                    dist(&reached)
                }
            );
        }
        if storm.short() > 0 {
            println!("    {} observers NEVER counted {}", storm.short(), s.target);
        }
        bench::verdict(
            &format!("storm frames ({} present before)", thousands(s.base as f64)),
            storm.short() == 0 && storm.most_aligned() <= FRAMES_TARGET,
            &format!(
                "<= {FRAMES_TARGET} presence frame per observer per {} ms batch interval, intervals aligned to the arrivals",
                BATCH_INTERVAL.as_millis()
            ),
        );
    }

    /// A smoke run's checks: every step completed.
    pub fn assert_complete(&self) {
        assert_eq!(
            self.storm.storm.short(),
            0,
            "every observer counted the storm"
        );
        if let Some(g) = &self.agreement {
            assert_eq!(g.missed, 0, "every change seen on both nodes");
        }
    }

    fn json(&self) -> Value {
        let s = &self.storm;
        let storm = &s.storm;
        let (f0, fm, f1) = storm.spread(|w| w.frames);
        let (b0, bm, b1) = storm.spread(|w| w.bytes);
        let (_, sm, _) = storm.spread(|w| w.snapshots);
        let distribution: serde_json::Map<String, Value> = storm
            .distribution()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.into()))
            .collect();
        let mut out = json!({
            "present": self.present,
            "storm": {
                "before": s.base,
                "after": s.target,
                "first_subscribed_s": bench::round3(s.first_subscribed.as_secs_f64()),
                "last_subscribed_s": bench::round3(s.last_subscribed.as_secs_f64()),
                "max_frames_per_interval": storm.most_per_interval(),
                "max_frames_per_aligned_interval": storm.most_aligned(),
                "max_frames_per_burst": storm.most_in_burst(),
                "max_events_per_burst": storm.most_events_in_burst(),
                "largest_burst_at_ms": storm.largest_bursts_at().map(|(early, late)| json!({
                    "min": round1(early.as_secs_f64() * 1e3),
                    "max": round1(late.as_secs_f64() * 1e3),
                })),
                "min_burst_gap_ms": storm.shortest_burst_gap().map(|d| round1(d.as_secs_f64() * 1e3)),
                "intervals_by_frames": distribution,
                "frames_per_observer": {"min": f0, "mean": round1(fm), "max": f1},
                "snapshots_per_observer_mean": round1(sm),
                "bytes_per_observer": {"min": b0, "mean": bm.round(), "max": b1},
                "reached_on_a": dist_json(&storm.reached_after("A", s.reached_after)),
                "reached_on_b": dist_json(&storm.reached_after("B", s.reached_after)),
                "observers_short": storm.short(),
            },
            "log_warnings": self.warnings,
        });
        if let Some(m) = &self.memory {
            out["memory"] = json!({
                "connect_s": bench::round3(m.connect.as_secs_f64()),
                "b_listed_after_s": bench::round3(m.listed.as_secs_f64()),
                "a_before_bytes": m.a.0,
                "a_after_bytes": m.a.1,
                "b_before_bytes": m.b.0,
                "b_after_bytes": m.b.1,
                "a_peak_bytes": m.peaks.0,
                "b_peak_bytes": m.peaks.1,
                "b_bytes_per_user": m.b_per_user().round(),
                "a_bytes_per_connection": m.a_per_user().round(),
                "settled": m.settled,
                "b_presence_users": m.b_gauge,
            });
        }
        if let Some(sn) = &self.snapshot {
            out["snapshot"] = json!({
                "count": sn.count,
                "members": sn.members,
                "frame_a": sn.frame_a.json(),
                "frame_b": sn.frame_b.json(),
                "http_a": sn.http_a.json(),
                "http_b": sn.http_b.json(),
            });
        }
        if let Some(g) = &self.agreement {
            out["agreement"] = json!({
                "both": dist_json(&g.both),
                "a": dist_json(&g.a),
                "b": dist_json(&g.b),
                "missed": g.missed,
            });
        }
        out
    }
}

pub fn print_json(sizes: &Sizes, held: &[Held], runs: &[Outcome]) {
    bench::print_json(
        "presence",
        json!({
            "storm_users": sizes.storm,
            "storm_spread_s": sizes.spread.as_secs_f64(),
            "observers": sizes.observers,
            "requests": sizes.requests,
            "changes": sizes.changes,
            "batch_interval_ms": BATCH_INTERVAL.as_millis() as u64,
            "heap": held.iter().map(|h| json!({
                "users": h.users,
                "view_bytes_per_user": h.view_bytes.round(),
                "view_bytes_per_user_by_allocation_size": h.view_shares.iter()
                    .filter(|s| s.bytes_per_user.abs() >= 1.0)
                    .map(|s| json!({
                        "size": s.size.map_or_else(|| format!(">{}", super::heap::SMALL), |n| n.to_string()),
                        "bytes_per_user": s.bytes_per_user.round(),
                    }))
                    .collect::<Vec<_>>(),
                "view_allocations_per_user": bench::round3(h.view_allocations),
                "holder_bytes_per_user": h.holder_bytes.round(),
            })).collect::<Vec<_>>(),
            "runs": runs.iter().map(Outcome::json).collect::<Vec<_>>(),
            "targets": {
                "bytes_per_present_user_per_node": MEMORY_TARGET,
                "frames_per_observer_per_interval": FRAMES_TARGET,
                "agreement_p99_ms": AGREEMENT_TARGET.as_millis() as u64,
            },
        }),
    );
}
