//! The figures of one sessions run: the line and the table, the bound on
//! writes per connection, the smoke run's assertions and the JSON line.

use super::*;

pub struct Outcome {
    pub name: String,
    pub flush: Duration,
    pub flush_note: &'static str,
    pub connections: usize,
    pub channels: usize,
    pub connect_s: f64,
    pub measured: Duration,
    /// Session records written in the measured period; `None` when the
    /// gateway has no such counter.
    pub writes: Option<f64>,
    pub delivered: u64,
    pub pings: u64,
    pub acks: u64,
    /// Events the publisher stored in the measured period.
    pub stored: u64,
    pub gateway_cpu: f64,
    pub cpu_json: serde_json::Value,
    pub rss: u64,
    pub hwm: u64,
    pub expected: u64,
    pub lost: u64,
    pub duplicates: u64,
    pub unexpected: u64,
    pub dropped: u64,
    /// Clients still short of their channel's last event at the deadline
    /// (their missing events count as lost).
    pub late: u64,
    pub errors: u64,
    pub errors_logged: usize,
    pub publish_failed: u64,
}

impl Outcome {
    pub fn seconds(&self) -> f64 {
        self.measured.as_secs_f64().max(1e-9)
    }

    pub fn writes_per_s(&self) -> Option<f64> {
        self.writes.map(|w| w / self.seconds())
    }

    pub fn writes_per_conn_s(&self) -> Option<f64> {
        self.writes_per_s()
            .map(|w| w / self.connections.max(1) as f64)
    }

    /// At most one write per connection per flush interval, with the
    /// allowance and the slack.
    pub fn bound(&self) -> f64 {
        self.connections as f64 / self.flush.as_secs_f64() * BOUND_FACTOR + BOUND_SLACK
    }

    pub fn within_bound(&self) -> Option<bool> {
        self.writes_per_s().map(|w| w <= self.bound())
    }

    pub fn delivered_per_s(&self) -> f64 {
        self.delivered as f64 / self.seconds()
    }

    /// What the clients should get: every connection its channel's share.
    pub fn delivery_target(&self) -> f64 {
        self.connections as f64 * self.stored as f64 / self.channels as f64 / self.seconds()
    }

    pub fn print_line(&self) {
        match (self.writes_per_s(), self.within_bound()) {
            (Some(w), Some(ok)) => println!(
                "  session writes: {} in {:.1} s = {}/s, {:.3} per connection per second \
                 (one per interval would be {:.3}); bound {}/s: {}",
                thousands(self.writes.unwrap_or(0.0)),
                self.seconds(),
                thousands(w),
                self.writes_per_conn_s().unwrap_or(0.0),
                1.0 / self.flush.as_secs_f64(),
                thousands(self.bound()),
                if ok { "within" } else { "EXCEEDED" }
            ),
            _ => println!("  session writes: n/a (no {WRITES_METRIC} on /metrics)"),
        }
        println!(
            "  delivered {}/s (the publisher's {}/s x {} connections / {} channels = {}/s); \
             {:.2} pings and {:.2} acks per connection per second",
            thousands(self.delivered_per_s()),
            thousands(self.stored as f64 / self.seconds()),
            thousands(self.connections as f64),
            self.channels,
            thousands(self.delivery_target()),
            self.pings as f64 / self.connections as f64 / self.seconds(),
            self.acks as f64 / self.connections as f64 / self.seconds(),
        );
        println!(
            "  gateway: {:.2} s CPU in {:.1} s ({:.0}% of a core), RSS {:.1} MiB (peak {:.1} MiB)",
            self.gateway_cpu,
            self.seconds(),
            self.gateway_cpu / self.seconds() * 100.0,
            mib(self.rss),
            mib(self.hwm)
        );
        println!(
            "  events: {} expected, {} lost, {} duplicates, {} unexpected; {} sockets dropped, \
             {} clients late, {} error frames, {} ERROR log lines, {} publishes failed",
            thousands(self.expected as f64),
            self.lost,
            self.duplicates,
            self.unexpected,
            self.dropped,
            self.late,
            self.errors,
            self.errors_logged,
            self.publish_failed
        );
    }

    pub fn json(&self) -> serde_json::Value {
        let mut out = json!({
            "store": self.name,
            "flush_interval_s": self.flush.as_secs_f64(),
            "flush_interval": self.flush_note,
            "connect_s": round1(self.connect_s),
            "measured_s": round3(self.seconds()),
            "session_writes": self.writes,
            "session_writes_per_s": self.writes_per_s().map(round1),
            "session_writes_per_conn_s": self.writes_per_conn_s().map(round3),
            "bound_per_s": round1(self.bound()),
            "within_bound": self.within_bound(),
            "delivered_per_s": round1(self.delivered_per_s()),
            "stored_per_s": round1(self.stored as f64 / self.seconds()),
            "pings_per_conn_s": round3(self.pings as f64 / self.connections as f64 / self.seconds()),
            "acks_per_conn_s": round3(self.acks as f64 / self.connections as f64 / self.seconds()),
            "gateway_cpu_s": round3(self.gateway_cpu),
            "gateway_rss_bytes": self.rss,
            "gateway_peak_rss_bytes": self.hwm,
            "expected": self.expected,
            "lost": self.lost,
            "duplicates": self.duplicates,
            "unexpected": self.unexpected,
            "dropped": self.dropped,
            "late": self.late,
            "errors": self.errors,
            "errors_logged": self.errors_logged,
            "publish_failed": self.publish_failed,
        });
        if let (Some(out), serde_json::Value::Object(cpu)) = (out.as_object_mut(), &self.cpu_json) {
            out.insert("cpu".into(), serde_json::Value::Object(cpu.clone()));
        }
        out
    }

    /// The smoke run's checks.
    pub fn assert_clean(&self) {
        let name = &self.name;
        assert_eq!(self.publish_failed, 0, "{name}: publishes failed");
        assert_eq!(
            self.lost, 0,
            "{name}: clients missed events of their channel"
        );
        assert_eq!(self.duplicates, 0, "{name}: clients got an event twice");
        assert_eq!(
            self.unexpected, 0,
            "{name}: clients got events never stored"
        );
        assert_eq!(self.dropped, 0, "{name}: sockets ended early");
        assert_eq!(
            self.late, 0,
            "{name}: clients still waiting at the deadline"
        );
        assert!(self.expected > 0, "{name}: nothing was published");
        if let Some(writes) = self.writes_per_s() {
            assert!(
                writes > 0.0,
                "{name}: no session record written while cursors moved"
            );
            assert!(
                writes <= self.bound(),
                "{name}: {writes:.1} session writes/s for {} connections with a {} flush \
                 interval: more than {:.1}/s (one per connection per interval x {BOUND_FACTOR} \
                 + {BOUND_SLACK})",
                self.connections,
                humantime::format_duration(self.flush),
                self.bound()
            );
        }
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

pub fn print_table(outcomes: &[Outcome]) {
    println!(
        "\n{:<10} {:>12} {:>10} {:>13} {:>10} {:>12} {:>9} {:>9} {:>8} {:>6}",
        "store",
        "flush",
        "writes/s",
        "per conn/s",
        "bound/s",
        "delivered/s",
        "gw cpu s",
        "gw cpu %",
        "gw MiB",
        "lost"
    );
    for o in outcomes {
        let na = || "n/a".to_string();
        println!(
            "{:<10} {:>12} {:>10} {:>13} {:>10} {:>12} {:>9.2} {:>9.0} {:>8.1} {:>6}",
            o.name,
            format!("{} {}", humantime::format_duration(o.flush), o.flush_note),
            o.writes_per_s().map_or_else(na, thousands),
            o.writes_per_conn_s().map_or_else(na, |w| format!("{w:.3}")),
            thousands(o.bound()),
            thousands(o.delivered_per_s()),
            o.gateway_cpu,
            o.gateway_cpu / o.seconds() * 100.0,
            mib(o.rss),
            o.lost
        );
    }
}
