//! A bench's figures and how it prints them: percentiles, rates, rounded
//! numbers, the CPU each process used, the verdict against a target (full
//! runs only) and the machine-readable last line.

use std::time::Duration;

use super::{full, mode};
use crate::process::cpu_seconds;

/// The `p`-th percentile (0..=100, nearest rank) of sorted samples.
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub fn ms(nanos: u64) -> f64 {
    nanos as f64 / 1e6
}

/// Events per second.
pub fn rate(events: u64, elapsed: Duration) -> f64 {
    events as f64 / elapsed.as_secs_f64().max(1e-9)
}

/// `12345678.9` → `12,345,679`.
pub fn thousands(x: f64) -> String {
    let n = x.round() as u64;
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Rounds for the JSON line.
pub fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Says whether a figure meets its target, in a full run. A smoke run's
/// sizes say nothing about a target, so it prints nothing.
pub fn verdict(what: &str, met: bool, target: &str) {
    if full() {
        let word = if met { "meets" } else { "MISSES" };
        println!("  verdict: {what} {word} the target ({target})");
    }
}

/// `" (target …)"` after a figure in a full run; nothing in a smoke run,
/// whose sizes say nothing about the target.
pub fn target_note(target: &str) -> String {
    if full() {
        format!(" (target {target})")
    } else {
        String::new()
    }
}

/// The last line every bench prints: all its figures, machine-readable.
pub fn print_json(bench: &str, figures: serde_json::Value) {
    let mut line = serde_json::json!({"bench": bench, "mode": mode()});
    if let (Some(out), serde_json::Value::Object(figures)) = (line.as_object_mut(), figures) {
        out.extend(figures);
    }
    println!("{line}");
}

/// CPU used by named processes over a stretch of wall time: shows which
/// process a figure was bound by (2 cores: 2 s of CPU per wall second).
pub struct CpuMeter {
    procs: Vec<(&'static str, u32, f64)>,
    started: std::time::Instant,
}

impl CpuMeter {
    /// Starts measuring the given processes and this one (`bench`).
    pub fn start(procs: &[(&'static str, u32)]) -> CpuMeter {
        let mut all: Vec<(&'static str, u32)> = procs.to_vec();
        all.push(("bench", std::process::id()));
        CpuMeter {
            procs: all
                .into_iter()
                .map(|(name, pid)| (name, pid, cpu_seconds(pid)))
                .collect(),
            started: std::time::Instant::now(),
        }
    }

    fn used(&self) -> Vec<(&'static str, f64)> {
        self.procs
            .iter()
            .map(|(name, pid, at)| (*name, (cpu_seconds(*pid) - at).max(0.0)))
            .collect()
    }

    /// `cpu: gateway 0.41 s, nats-server 0.12 s, bench 0.30 s in 0.42 s`.
    pub fn line(&self) -> String {
        let parts: Vec<String> = self
            .used()
            .iter()
            .map(|(name, s)| format!("{name} {s:.2} s"))
            .collect();
        format!(
            "cpu: {} in {:.2} s wall",
            parts.join(", "),
            self.started.elapsed().as_secs_f64()
        )
    }

    pub fn json(&self) -> serde_json::Value {
        let mut out = serde_json::Map::new();
        for (name, s) in self.used() {
            out.insert(format!("{name}_cpu_s"), round3(s).into());
        }
        out.insert(
            "wall_s".into(),
            round3(self.started.elapsed().as_secs_f64()).into(),
        );
        serde_json::Value::Object(out)
    }
}
