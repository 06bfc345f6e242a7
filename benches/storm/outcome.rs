//! The figures of one storm run: the table, the Bars with
//! pass/fail, the smoke run's assertions and the JSON line.

use serde_json::json;

use super::{Cpu, Resume, Sizes, CONSUMERS_METRIC, SESSION_DUPLICATE_BOUND};
use switchboard_harness::bench::{self, ms, percentile, thousands};

/// The figures of one run.
pub struct Outcome {
    pub resume: Resume,
    pub subscriptions: usize,
    pub replayed: Vec<u64>,
    pub never_replayed: usize,
    pub hello: Vec<u64>,
    /// Reconnect start -> the bench's connect turn, and -> the 101.
    pub turn: Vec<u64>,
    pub upgraded: Vec<u64>,
    pub lost: u64,
    pub duplicates: u64,
    /// Session runs: duplicates published more than the bound before the kill.
    pub duplicates_beyond_bound: u64,
    pub subscriptions_with_loss: usize,
    pub unexpected: u64,
    pub cutoff: u64,
    pub expected: u64,
    pub attempts: u64,
    pub refused: u64,
    pub errors: u64,
    pub closes_1011: u64,
    pub dropped: u64,
    pub not_hello_first: u64,
    pub incomplete: u64,
    pub not_resumed: u64,
    pub publish_failed: u64,
    pub b_rss_before: u64,
    pub b_rss_peak: u64,
    pub b_hwm: u64,
    pub consumers: Option<f64>,
    pub consumer_limit_lines: usize,
    pub window_events: Option<f64>,
    pub window_bytes: Option<f64>,
    pub gap_events: u64,
    pub control_before: Vec<u64>,
    pub control_during: Vec<u64>,
    pub control_errors: u64,
    pub control_closes: u64,
    pub storm_s: f64,
    pub all_live: bool,
    /// CPU used from the first reconnect until every subscription was live.
    pub cpu: Option<Cpu>,
}

pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / 1_048_576.0)
}

pub fn pct_ms(sorted: &[u64], p: f64) -> f64 {
    ms(percentile(sorted, p))
}

impl Outcome {
    fn control_ratio(&self) -> f64 {
        pct_ms(&self.control_during, 99.0) / pct_ms(&self.control_before, 99.0).max(1e-9)
    }

    pub fn print(&self, sizes: &Sizes) {
        let row = |what: &str, value: String| println!("  {what:<44} {value}");
        let dist = |xs: &[u64]| {
            if xs.is_empty() {
                "n/a".to_string()
            } else {
                format!(
                    "p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms  (n = {})",
                    pct_ms(xs, 50.0),
                    pct_ms(xs, 99.0),
                    ms(xs.last().copied().unwrap_or(0)),
                    thousands(xs.len() as f64)
                )
            }
        };
        println!("  ------------------------------------------------------------");
        row(
            "resumed subscriptions",
            format!(
                "{} ({} never got `replayed`)",
                thousands(self.subscriptions as f64),
                self.never_replayed
            ),
        );
        row("reconnect start -> connect turn (bench)", dist(&self.turn));
        row("reconnect start -> upgraded (101)", dist(&self.upgraded));
        row("reconnect start -> `hello`", dist(&self.hello));
        row("reconnect start -> `replayed`", dist(&self.replayed));
        if self.resume == Resume::Session {
            row(
                "subscriptions the session did not restore",
                self.not_resumed.to_string(),
            );
        }
        row(
            "all live again after the first reconnect",
            if self.all_live {
                format!("{:.2} s", self.storm_s)
            } else {
                format!("NOT within {:.0} s", sizes.storm_patience.as_secs_f64())
            },
        );
        if let Some(cpu) = self.cpu {
            row(
                "CPU in the storm: B / load tool / nats-server",
                format!(
                    "{:.2} / {:.2} / {:.2} s over {:.2} s (2 cores)",
                    cpu.b, cpu.bench, cpu.nats, cpu.wall
                ),
            );
        }
        row(
            "cut-off seq / events expected (all subs)",
            format!("{} / {}", self.cutoff, thousands(self.expected as f64)),
        );
        row(
            "lost events (subscriptions with a loss)",
            format!("{} ({})", self.lost, self.subscriptions_with_loss),
        );
        let dups = if self.resume == Resume::Session {
            format!(
                "{} ({} published over {} s before the kill)",
                self.duplicates,
                self.duplicates_beyond_bound,
                SESSION_DUPLICATE_BOUND.as_secs()
            )
        } else {
            self.duplicates.to_string()
        };
        row("duplicate events", dups);
        row("events with no receipt", self.unexpected.to_string());
        row(
            "connect attempts on B (refused or failed)",
            format!("{} ({})", self.attempts, self.refused),
        );
        row(
            "`error` frames / closes 1011 / other drops",
            format!("{} / {} / {}", self.errors, self.closes_1011, self.dropped),
        );
        row(
            "first frame not `hello` / `complete: false`",
            format!("{} / {}", self.not_hello_first, self.incomplete),
        );
        row(
            "B resident memory: before / peak in storm",
            format!(
                "{} / {} (VmHWM {})",
                mib(self.b_rss_before),
                mib(self.b_rss_peak),
                mib(self.b_hwm)
            ),
        );
        row(
            "JetStream consumers B created (storm)",
            self.consumers
                .map_or("n/a".to_string(), |c| format!("{c:.0}")),
        );
        row(
            "B log lines with `10026` (consumer limit)",
            self.consumer_limit_lines.to_string(),
        );
        row(
            "B window: events / bytes (gap to resume)",
            format!(
                "{} / {} ({} events)",
                self.window_events
                    .map_or("n/a".to_string(), |v| format!("{v:.0}")),
                self.window_bytes
                    .map_or("n/a".to_string(), |v| format!("{v:.0}")),
                self.gap_events
            ),
        );
        row("control live latency before", dist(&self.control_before));
        row("control live latency during", dist(&self.control_during));
        row(
            "control `error` frames / drops",
            format!("{} / {}", self.control_errors, self.control_closes),
        );
        if self.publish_failed > 0 {
            row("publishes failed", self.publish_failed.to_string());
        }
        println!("  Bars ({}):", self.resume.name());
        let p99 = pct_ms(&self.replayed, 99.0);
        self.sized_bar(
            "p99 reconnect -> `replayed` <= 1 s",
            self.never_replayed == 0 && p99 <= 1_000.0,
            format!("{p99:.1} ms, {} never", self.never_replayed),
        );
        self.sized_bar(
            "control p99 during <= 2x before",
            self.control_ratio() <= 2.0,
            format!(
                "{:.1} ms vs {:.1} ms = {:.2}x",
                pct_ms(&self.control_during, 99.0),
                pct_ms(&self.control_before, 99.0),
                self.control_ratio()
            ),
        );
        match self.consumers {
            Some(c) => {
                self.bar(
                    "consumers <= one per resumed subscription",
                    c <= self.subscriptions as f64,
                    format!("{c:.0} for {} subscriptions", self.subscriptions),
                );
                if let Some(held) = self.window_events {
                    if held >= self.gap_events as f64 {
                        self.bar(
                            "no consumer for a gap the window holds",
                            c == 0.0,
                            format!("{c:.0}; window {held:.0} events >= gap {}", self.gap_events),
                        );
                    }
                }
            }
            None => println!("    n/a   consumers <= one per resumed subscription ({CONSUMERS_METRIC} not reported)"),
        }
        let (clean, what) = match self.resume {
            Resume::SinceSeq => (
                self.lost == 0 && self.duplicates == 0,
                "0 lost, 0 duplicates",
            ),
            Resume::Session => (
                self.lost == 0 && self.duplicates_beyond_bound == 0 && self.not_resumed == 0,
                "0 lost, duplicates only within the bound, every subscription restored",
            ),
        };
        self.bar(
            what,
            clean,
            format!("{} lost, {} duplicates", self.lost, self.duplicates),
        );
    }

    /// A Bar that holds at any size (exactness, consumers): judged in every
    /// run.
    fn bar(&self, what: &str, met: bool, figure: String) {
        let word = if met { "pass" } else { "FAIL" };
        println!("    {word:<5} {what}: {figure}");
    }

    /// A Bar whose figure depends on the run's size (latency): judged in a
    /// full run only, since a smoke run's sizes say nothing about it.
    fn sized_bar(&self, what: &str, met: bool, figure: String) {
        if bench::full() {
            self.bar(what, met, figure);
        }
    }

    /// The smoke run's checks: exactness holds at any size.
    pub fn assert_clean(&self) {
        let name = self.resume.name();
        assert_eq!(
            self.never_replayed, 0,
            "{name}: subscriptions never replayed"
        );
        assert_eq!(self.lost, 0, "{name}: lost events");
        assert_eq!(self.unexpected, 0, "{name}: events with no receipt");
        assert_eq!(self.publish_failed, 0, "{name}: failed publishes");
        assert!(self.expected > 0, "{name}: nothing was published");
        match self.resume {
            Resume::SinceSeq => assert_eq!(self.duplicates, 0, "{name}: duplicates"),
            Resume::Session => {
                assert_eq!(self.not_resumed, 0, "{name}: subscriptions not restored");
                assert_eq!(
                    self.duplicates_beyond_bound, 0,
                    "{name}: duplicates beyond the bound"
                );
            }
        }
    }

    pub fn json(&self) -> serde_json::Value {
        let r3 = bench::round3;
        let mut json = json!({
            "resume": self.resume.name(),
            "subscriptions": self.subscriptions,
            "replayed_p50_ms": r3(pct_ms(&self.replayed, 50.0)),
            "replayed_p99_ms": r3(pct_ms(&self.replayed, 99.0)),
            "replayed_max_ms": r3(ms(self.replayed.last().copied().unwrap_or(0))),
            "never_replayed": self.never_replayed,
            "hello_p50_ms": r3(pct_ms(&self.hello, 50.0)),
            "hello_p99_ms": r3(pct_ms(&self.hello, 99.0)),
            "all_live": self.all_live,
            "storm_s": r3(self.storm_s),
            "cutoff_seq": self.cutoff,
            "expected": self.expected,
            "lost": self.lost,
            "subscriptions_with_loss": self.subscriptions_with_loss,
            "duplicates": self.duplicates,
            "duplicates_beyond_bound": self.duplicates_beyond_bound,
            "unexpected": self.unexpected,
            "attempts": self.attempts,
            "refused": self.refused,
            "errors": self.errors,
            "closes_1011": self.closes_1011,
            "dropped": self.dropped,
            "not_hello_first": self.not_hello_first,
            "incomplete": self.incomplete,
            "not_resumed": self.not_resumed,
            "publish_failed": self.publish_failed,
            "b_rss_before_bytes": self.b_rss_before,
            "b_rss_peak_bytes": self.b_rss_peak,
            "b_vmhwm_bytes": self.b_hwm,
            "consumers_created": self.consumers,
            "consumer_limit_log_lines": self.consumer_limit_lines,
            "window_events": self.window_events,
            "window_bytes": self.window_bytes,
            "gap_events": self.gap_events,
            "control_before_p50_ms": r3(pct_ms(&self.control_before, 50.0)),
            "control_before_p99_ms": r3(pct_ms(&self.control_before, 99.0)),
            "control_during_p50_ms": r3(pct_ms(&self.control_during, 50.0)),
            "control_during_p99_ms": r3(pct_ms(&self.control_during, 99.0)),
            "control_p99_ratio": r3(self.control_ratio()),
            "control_errors": self.control_errors,
            "control_drops": self.control_closes,
        });
        // Apart: one `json!` of every key passes the macro's recursion limit.
        if let Some(cpu) = self.cpu {
            json["storm_cpu_s"] = json!({
                "b": r3(cpu.b),
                "load_tool": r3(cpu.bench),
                "nats_server": r3(cpu.nats),
                "wall": r3(cpu.wall),
            });
        }
        json["phases_ms"] = json!({
            "turn_p50": r3(pct_ms(&self.turn, 50.0)),
            "turn_p99": r3(pct_ms(&self.turn, 99.0)),
            "upgraded_p50": r3(pct_ms(&self.upgraded, 50.0)),
            "upgraded_p99": r3(pct_ms(&self.upgraded, 99.0)),
        });
        json
    }
}
