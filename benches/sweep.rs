//! How cost grows with the work (issue 14, section 4): delivered events/s
//! and latency as subscribers and channels grow, and resident memory as
//! idle connections grow; a table on stdout and in
//! `target/bench-report/sweep.txt`, and a chart of it in
//! `target/bench-report/sweep.png`.
//!
//! `cargo bench --bench sweep` (a couple of minutes on 2 cores):
//! - one channel with 10, 100, 1,000 and 10,000 subscribers (a connection
//!   each);
//! - 1, 100 and 10,000 channels with 10 subscribers each. 10,000 × 10 =
//!   100,000 subscriptions as one connection each would need 100,000 open
//!   files in this process and as many in the gateway (the limit here is
//!   20,000 per process), so there 10,000 connections each subscribe to 10
//!   channels (the table's `conns` column says so); 1 and 100 channels use
//!   a connection per subscription;
//! - 1,000, 5,000 and 15,000 idle connections, each subscribed to a channel
//!   of its own, on a fresh gateway: RSS per connection above the
//!   gateway's idle baseline, and the RSS once they have all left.
//!
//! Each throughput point runs twice on the same subscribers. Flood: events
//! worth 2,000,000 deliveries, round-robin over the channels, stored as
//! fast as `Log::store` goes; delivered/s = receipts / (last receipt -
//! first publish). At flood the latency is mostly the backlog the bench
//! itself piles up, so the latency figure that tells the fan-out cost is
//! the second run: paced to 100,000 deliveries/s for 2 s (100 clients ×
//! 1,000 events/s, as in `fanout`, and 10 events/s for 10,000
//! subscribers), p50/p99 of publish → client over every delivery. At 10
//! subscribers per event the flood is bound by the publisher (`Log::store`
//! acks), not by the fan-out.
//!
//! Without `--bench` (`cargo test --benches`): the same steps with tens of
//! clients, a few thousand deliveries and tens of idle connections; it
//! asserts that every event reached every subscriber with no `error`
//! frame, and still writes the table and the PNG.
//!
//! Here: the sizes, the runs, the table; `sweep/chart.rs`: the PNG.

#[path = "sweep/chart.rs"]
mod chart;
#[path = "plot/font.rs"]
mod font;
use switchboard_harness::bench;

use std::time::{Duration, Instant};

use serde_json::json;
use switchboard::log::Log;

use bench::delivery::{self, Figures, Layout, Subscribers};
use bench::{thousands, Gateway, PATIENCE};

/// The sizes of one run.
struct Sizes {
    /// Subscribers of the one channel, per point.
    one_channel: Vec<usize>,
    /// (channels, channels per connection), per point.
    channels: Vec<(usize, usize)>,
    /// Subscribers per channel in the channel sweep.
    per_channel: usize,
    /// Deliveries a flood point's events make.
    flood_deliveries: usize,
    /// Deliveries per second of a light-load point, and for how long.
    light_per_s: f64,
    light_for: Duration,
    /// Idle connections at each memory step.
    idle: Vec<usize>,
    /// How long connections settle before the memory is read.
    settle: Duration,
}

impl Sizes {
    fn full() -> Sizes {
        Sizes {
            one_channel: vec![10, 100, 1_000, 10_000],
            channels: vec![(1, 1), (100, 1), (10_000, 10)],
            per_channel: 10,
            flood_deliveries: 2_000_000,
            light_per_s: 100_000.0,
            light_for: Duration::from_secs(2),
            idle: vec![1_000, 5_000, 15_000],
            settle: Duration::from_secs(2),
        }
    }

    fn smoke() -> Sizes {
        Sizes {
            one_channel: vec![2, 10, 40],
            channels: vec![(1, 1), (5, 1), (30, 3)],
            per_channel: 2,
            flood_deliveries: 4_000,
            light_per_s: 4_000.0,
            light_for: Duration::from_millis(500),
            idle: vec![10, 20, 40],
            settle: Duration::from_millis(500),
        }
    }

    /// The most connections open at once.
    fn most_connections(&self) -> usize {
        let one = self.one_channel.iter().copied().max().unwrap_or(0);
        let spread = self
            .channels
            .iter()
            .map(|&(channels, per)| channels * self.per_channel / per)
            .max()
            .unwrap_or(0);
        let idle = self.idle.iter().copied().max().unwrap_or(0);
        one.max(spread).max(idle)
    }
}

fn main() {
    let sizes = if bench::full() {
        Sizes::full()
    } else {
        Sizes::smoke()
    };
    bench::raise_open_files_limit();
    delivery::require_open_files(sizes.most_connections(), "sweep");
    let font = font::load_font();
    let mut table = Table::default();
    table.line(format!(
        "sweep: how cost grows, gateway binary on one nats-server [{} mode]",
        bench::mode()
    ));
    table.line(format!(
        "  flood: events worth {} deliveries stored as fast as Log::store goes ({} acks in flight); delivered/s = receipts / (last receipt - first publish)",
        thousands(sizes.flood_deliveries as f64),
        bench::IN_FLIGHT
    ));
    table.line(format!(
        "  light: paced to {} deliveries/s for {:.1} s; latency = publish -> client, every delivery",
        thousands(sizes.light_per_s),
        sizes.light_for.as_secs_f64()
    ));
    let runtime = bench::runtime();
    let points = runtime.block_on(throughput(&sizes, &mut table));
    let memory = runtime.block_on(idle_memory(&sizes, &mut table));

    let dir = bench::report_dir("bench-report");
    let png = dir.join("sweep.png");
    let txt = dir.join("sweep.txt");
    let text = match &font {
        Ok(path) => {
            table.line(format!(
                "chart: {} (font {})",
                png.display(),
                path.display()
            ));
            true
        }
        Err(tried) => {
            table.line(format!(
                "chart: {} WITHOUT any text: no TrueType font found (tried {tried}); install one \
                 (Debian: apt-get install fonts-dejavu-core) or set SWITCHBOARD_BENCH_FONT to a .ttf",
                png.display()
            ));
            false
        }
    };
    table.line(format!("table: {}", txt.display()));
    if let Err(e) = std::fs::create_dir_all(&dir) {
        panic!("cannot create {}: {e}", dir.display());
    }
    if let Err(e) = std::fs::write(&txt, table.text()) {
        panic!("cannot write {}: {e}", txt.display());
    }
    if let Err(e) = chart::draw(&png, &panels(&sizes, &points, &memory), text) {
        panic!("cannot draw {}: {e}", png.display());
    }
    bench::print_json(
        "sweep",
        json!({
            "points": points.iter().map(Point::json).collect::<Vec<_>>(),
            "idle": memory.json(),
            "png": png.display().to_string(),
        }),
    );
    if !bench::full() {
        for point in &points {
            assert!(
                point.flood.complete() && point.light.complete(),
                "{} {}: flood {} of {} delivered, {} errors; light {} of {}, {} errors",
                point.sweep,
                point.layout.subscriptions(),
                point.flood.delivered,
                point.flood.expected,
                point.flood.errors,
                point.light.delivered,
                point.light.expected,
                point.light.errors
            );
        }
        assert!(memory.baseline > 0, "the gateway's RSS was read");
        let written = std::fs::metadata(&png).map(|m| m.len()).unwrap_or(0);
        assert!(written > 0, "{} written", png.display());
    }
}

/// Lines printed as they come and kept for sweep.txt.
#[derive(Default)]
struct Table {
    lines: Vec<String>,
}

impl Table {
    fn line(&mut self, line: String) {
        println!("{line}");
        self.lines.push(line);
    }

    fn text(&self) -> String {
        let mut out = self.lines.join("\n");
        out.push('\n');
        out
    }
}

// ------------------------------------------------------------ throughput

/// One throughput point: its sweep, its layout, and both runs.
struct Point {
    sweep: &'static str,
    layout: Layout,
    connect_s: f64,
    flood_events: usize,
    flood: Figures,
    light_events_per_s: f64,
    light: Figures,
}

impl Point {
    fn row(&self) -> String {
        let mark = |f: &Figures| f.shortfall().map_or(String::new(), |s| format!("  {s}"));
        format!(
            "{:<12} {:>7} {:>8} {:>7} {:>9.2} | {:>9} {:>11} {:>11} {:>9.1} | {:>9} {:>8.2} {:>8.2}{}{}",
            self.sweep,
            thousands(self.layout.subscriptions() as f64),
            thousands(self.layout.channels as f64),
            thousands(self.layout.connections() as f64),
            self.connect_s,
            thousands(self.flood_events as f64),
            thousands(self.flood.published_per_s),
            thousands(self.flood.delivered_per_s),
            self.flood.p99_ms,
            thousands(self.light_events_per_s),
            self.light.p50_ms,
            self.light.p99_ms,
            mark(&self.flood),
            mark(&self.light),
        )
    }

    fn json(&self) -> serde_json::Value {
        json!({
            "sweep": self.sweep,
            "subscriptions": self.layout.subscriptions(),
            "channels": self.layout.channels,
            "connections": self.layout.connections(),
            "channels_per_connection": self.layout.per_connection,
            "connect_s": bench::round3(self.connect_s),
            "flood_events": self.flood_events,
            "flood": self.flood.json(),
            "light_events_per_s": bench::round1(self.light_events_per_s),
            "light": self.light.json(),
        })
    }
}

const HEADER: &str = "sweep          subs    chans   conns connect s |    events published/s delivered/s   p99 ms | events/s   p50 ms   p99 ms";

async fn throughput(sizes: &Sizes, table: &mut Table) -> Vec<Point> {
    let nats = bench::nats();
    let log = bench::log(&nats).await;
    let gateway = bench::gateway(&nats.url());
    table.line(String::new());
    table.line(format!(
        "{:<48}| {:<44}| light",
        "throughput (connect s: connecting + subscribing)", "flood"
    ));
    table.line(HEADER.to_string());
    let mut layouts: Vec<(&'static str, Layout)> = sizes
        .one_channel
        .iter()
        .map(|&n| ("one channel", Layout::one_channel(n)))
        .collect();
    layouts.extend(sizes.channels.iter().map(|&(channels, per_connection)| {
        let layout = Layout {
            channels,
            per_channel: sizes.per_channel,
            per_connection,
        };
        ("channels", layout)
    }));
    let mut points = Vec::new();
    for (sweep, layout) in layouts {
        let point = run_point(&gateway, &log, sizes, sweep, layout).await;
        table.line(point.row());
        points.push(point);
        wait_disconnected(&gateway).await;
    }
    points
}

async fn run_point(
    gateway: &Gateway,
    log: &Log,
    sizes: &Sizes,
    sweep: &'static str,
    layout: Layout,
) -> Point {
    let connecting = Instant::now();
    let mut subscribers = Subscribers::connect(gateway, layout).await;
    let connect_s = connecting.elapsed().as_secs_f64();
    // Every event reaches `per_channel` subscribers.
    let flood_events = (sizes.flood_deliveries / layout.per_channel).max(layout.channels);
    let flood = subscribers.deliver(log, flood_events, None).await;
    let light_events_per_s = sizes.light_per_s / layout.per_channel as f64;
    let light_events =
        ((light_events_per_s * sizes.light_for.as_secs_f64()).ceil() as usize).max(1);
    let light = subscribers
        .deliver(log, light_events, Some(light_events_per_s))
        .await;
    subscribers.close().await;
    Point {
        sweep,
        layout,
        connect_s,
        flood_events,
        flood,
        light_events_per_s,
        light,
    }
}

/// Waits until the gateway counts no connection (`switchboard_connections`
/// on /metrics), so that one point's leaving clients do not weigh on the
/// next; gives up quietly after [`PATIENCE`].
async fn wait_disconnected(gateway: &Gateway) {
    let until = Instant::now() + PATIENCE;
    while Instant::now() < until {
        match gateway.metric_sum("switchboard_connections").await {
            Some(n) if n > 0.0 => tokio::time::sleep(Duration::from_millis(50)).await,
            _ => return,
        }
    }
}

// ----------------------------------------------------------------- memory

/// The gateway's RSS idle, at each step of idle connections, and after
/// they all left.
struct Memory {
    baseline: u64,
    steps: Vec<(usize, u64)>,
    after: u64,
}

impl Memory {
    fn per_connection(&self, (connections, rss): (usize, u64)) -> f64 {
        rss.saturating_sub(self.baseline) as f64 / connections.max(1) as f64
    }

    fn json(&self) -> serde_json::Value {
        json!({
            "rss_baseline_bytes": self.baseline,
            "steps": self.steps.iter().map(|&(n, rss)| json!({
                "connections": n,
                "rss_bytes": rss,
                "bytes_per_connection": self.per_connection((n, rss)).round(),
            })).collect::<Vec<_>>(),
            "rss_after_leaving_bytes": self.after,
        })
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / 1048576.0
}

async fn idle_memory(sizes: &Sizes, table: &mut Table) -> Memory {
    let nats = bench::nats();
    let gateway = bench::gateway(&nats.url());
    table.line(String::new());
    table.line(
        "idle connections, each subscribed to a channel of its own (a fresh gateway):".to_string(),
    );
    table.line(format!(
        "{:>12} {:>10} {:>16}",
        "connections", "RSS MiB", "per connection"
    ));
    tokio::time::sleep(sizes.settle).await;
    let baseline = gateway.rss_bytes();
    table.line(format!("{:>12} {:>10.1}", "0", mib(baseline)));
    let mut memory = Memory {
        baseline,
        steps: Vec::new(),
        after: 0,
    };
    let mut sockets = Vec::new();
    for &n in &sizes.idle {
        let more = n.saturating_sub(sockets.len());
        sockets.extend(delivery::connect_idle(&gateway, more, false).await);
        tokio::time::sleep(sizes.settle).await;
        let step = (sockets.len(), gateway.rss_bytes());
        let per = memory.per_connection(step);
        table.line(format!(
            "{:>12} {:>10.1} {:>9} B ({:.1} KiB)",
            thousands(step.0 as f64),
            mib(step.1),
            thousands(per),
            per / 1024.0
        ));
        memory.steps.push(step);
    }
    drop(sockets);
    wait_disconnected(&gateway).await;
    tokio::time::sleep(sizes.settle).await;
    memory.after = gateway.rss_bytes();
    let peak = memory.steps.last().map_or(baseline, |s| s.1);
    let kept =
        memory.after.saturating_sub(baseline) as f64 / peak.saturating_sub(baseline).max(1) as f64;
    table.line(format!(
        "{:>12} {:>10.1}   after all left: {:.1} MiB above the idle gateway, {:.0}% of the growth kept",
        "all left",
        mib(memory.after),
        mib(memory.after.saturating_sub(baseline)),
        kept * 100.0
    ));
    memory
}

// ------------------------------------------------------------------ chart

fn panels(sizes: &Sizes, points: &[Point], memory: &Memory) -> Vec<chart::Panel> {
    let curve = |sweep: &str, name: String, y: &dyn Fn(&Point) -> f64| chart::Series {
        name,
        points: points
            .iter()
            .filter(|p| p.sweep == sweep)
            .map(|p| (p.layout.subscriptions() as f64, y(p)))
            .collect(),
        reference: false,
    };
    let one = "1 channel × N subscribers".to_string();
    let spread = format!("N/{0} channels × {0} subscribers", sizes.per_channel);
    let delivered = chart::Panel {
        title: "Delivered events/s (flood)".into(),
        x_desc: "subscriptions N (log)".into(),
        y_desc: "events/s".into(),
        log_y: false,
        series: vec![
            curve("one channel", one.clone(), &|p| p.flood.delivered_per_s),
            curve("channels", spread.clone(), &|p| p.flood.delivered_per_s),
        ],
    };
    let latency = chart::Panel {
        title: format!(
            "p99 publish → client at {} deliveries/s",
            thousands(sizes.light_per_s)
        ),
        x_desc: "subscriptions N (log)".into(),
        y_desc: "p99 ms (log)".into(),
        log_y: true,
        series: vec![
            curve("one channel", one, &|p| p.light.p99_ms),
            curve("channels", spread, &|p| p.light.p99_ms),
        ],
    };
    let per_connection: Vec<(f64, f64)> = memory
        .steps
        .iter()
        .map(|&step| (step.0 as f64, memory.per_connection(step) / 1024.0))
        .collect();
    let xs: Vec<f64> = per_connection.iter().map(|p| p.0).collect();
    let memory_panel = chart::Panel {
        title: "RSS per idle subscribed connection".into(),
        x_desc: "idle connections (log)".into(),
        y_desc: "KiB per connection".into(),
        log_y: false,
        series: vec![
            chart::Series {
                name: "RSS above the idle gateway ÷ connections".into(),
                points: per_connection,
                reference: false,
            },
            chart::Series {
                name: "goal: 4 KiB".into(),
                points: xs.iter().map(|&x| (x, 4.0)).collect(),
                reference: true,
            },
        ],
    };
    vec![delivered, latency, memory_panel]
}
