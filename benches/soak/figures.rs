//! The soak's figures over time: a sample every second (each gateway's
//! resident memory, open files and connections, the events delivered and
//! the live p99 in that second), the faults' marks, and what the summary
//! computes from them (least-squares slopes, ranges).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use switchboard_harness::bench;
use switchboard_harness::process;

use crate::client::Shared;

/// How often a sample is taken.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// How long one `/metrics` scrape may take before the sample goes without
/// that gateway's connection count.
const SCRAPE_TIMEOUT: Duration = Duration::from_millis(800);

/// One second of the run.
#[derive(Clone, Debug)]
pub struct Sample {
    /// Seconds since the run started.
    pub t: f64,
    /// Per gateway: its process id, resident memory (KiB), open files and
    /// connections (`switchboard_connections`; `None` when the scrape
    /// failed, as while the gateway is down).
    pub pid: [u32; 2],
    pub rss_kib: [Option<u64>; 2],
    pub fds: [Option<u64>; 2],
    pub connections: [Option<u64>; 2],
    /// Events accepted by the clients in this second, per second.
    pub delivered_per_s: f64,
    /// The live p99 (publish → receipt) of this second's events, ms.
    pub p99_ms: Option<f64>,
    /// The machine's 1-minute load average.
    pub load: f64,
}

/// A fault, when it began (seconds since the start), and its label.
#[derive(Clone, Debug)]
pub struct Mark {
    pub t: f64,
    pub kind: Fault,
    pub label: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    Storm,
    NatsRestart,
    GatewayKill,
}

impl Fault {
    pub fn name(self) -> &'static str {
        match self {
            Fault::Storm => "storm",
            Fault::NatsRestart => "NATS node restarted",
            Fault::GatewayKill => "gateway killed",
        }
    }
}

/// What the sampler reads the gateways by: their current process ids and
/// HTTP addresses (both change when one restarts).
pub struct Probe {
    pub pids: [AtomicU32; 2],
    pub shared: Arc<Shared>,
}

/// Samples every [`SAMPLE_EVERY`] until `stop`.
pub async fn sample(
    started: Instant,
    probe: Arc<Probe>,
    samples: Arc<Mutex<Vec<Sample>>>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let http = reqwest::Client::builder()
        .timeout(SCRAPE_TIMEOUT)
        .build()
        .expect("HTTP client");
    let mut tick = tokio::time::interval(SAMPLE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    let mut last = Instant::now();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let now = Instant::now();
        let elapsed = (now - last).as_secs_f64().max(1e-3);
        last = now;
        let delivered = probe.shared.delivered.swap(0, Ordering::Relaxed);
        let mut latencies = std::mem::take(
            &mut *probe
                .shared
                .latencies
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        );
        latencies.sort_unstable();
        let p99_ms =
            (!latencies.is_empty()).then(|| bench::ms(bench::percentile(&latencies, 99.0)));
        let pid = [0, 1].map(|g| probe.pids[g].load(Ordering::Relaxed));
        let addrs = *probe
            .shared
            .gateways
            .addrs
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let scrape = |g: usize| {
            let http = http.clone();
            let up = probe.shared.gateways.up[g].load(Ordering::Relaxed);
            let url = format!("http://{}/metrics", addrs[g]);
            async move {
                if !up {
                    return None;
                }
                let text = http.get(url).send().await.ok()?.text().await.ok()?;
                switchboard_harness::prometheus_sum(&text, "switchboard_connections")
                    .map(|v| v as u64)
            }
        };
        let (c0, c1) = tokio::join!(scrape(0), scrape(1));
        let sample = Sample {
            t: (now - started).as_secs_f64(),
            pid,
            rss_kib: pid.map(|p| (p != 0).then(|| process::rss_kib(p)).flatten()),
            fds: pid.map(|p| (p != 0).then(|| open_files(p)).flatten()),
            connections: [c0, c1],
            delivered_per_s: delivered as f64 / elapsed,
            p99_ms,
            load: load_average(),
        };
        samples
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(sample);
    }
}

/// How many files a process has open (`/proc/PID/fd`).
pub fn open_files(pid: u32) -> Option<u64> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64)
}

/// The 1-minute load average (`/proc/loadavg`), 0 when unreadable.
pub fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

/// A least-squares slope pooled over segments: each segment (one process's
/// life) has its own level, and they share one slope. `(t, y)` points per
/// segment; `None` with fewer than two points in all.
pub fn pooled_slope(segments: &[Vec<(f64, f64)>]) -> Option<f64> {
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for points in segments.iter().filter(|p| p.len() >= 2) {
        let n = points.len() as f64;
        let tm = points.iter().map(|p| p.0).sum::<f64>() / n;
        let ym = points.iter().map(|p| p.1).sum::<f64>() / n;
        for (t, y) in points {
            sxy += (t - tm) * (y - ym);
            sxx += (t - tm) * (t - tm);
        }
    }
    (sxx > 0.0).then(|| sxy / sxx)
}

/// The samples of one gateway's process lives, each from `warm_up` after
/// it started: `(t, value)` per segment.
pub fn segments(
    samples: &[Sample],
    gateway: usize,
    warm_up: f64,
    value: impl Fn(&Sample) -> Option<f64>,
) -> Vec<Vec<(f64, f64)>> {
    let mut out: Vec<Vec<(f64, f64)>> = Vec::new();
    let mut current: Option<(u32, f64)> = None;
    for s in samples {
        let pid = s.pid[gateway];
        if current.is_none_or(|(p, _)| p != pid) {
            current = Some((pid, s.t));
            out.push(Vec::new());
        }
        let (_, since) = current.unwrap_or((pid, s.t));
        if s.t - since < warm_up {
            continue;
        }
        if let (Some(points), Some(y)) = (out.last_mut(), value(s)) {
            points.push((s.t, y));
        }
    }
    out.retain(|p| !p.is_empty());
    out
}

/// Smallest, median and largest of `values` (`None` when empty).
pub fn range(mut values: Vec<f64>) -> Option<(f64, f64, f64)> {
    values.retain(|v| v.is_finite());
    values.sort_by(f64::total_cmp);
    Some((*values.first()?, values[values.len() / 2], *values.last()?))
}
