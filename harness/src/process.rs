//! A process's figures from `/proc`: resident memory, CPU time, and this
//! process's nats-server children. Linux only, as the tests and benches
//! are; a figure that cannot be read is `None` or 0, never a panic.

/// A field of `/proc/<pid>/status` given in kB (`VmRSS:`, `VmHWM:`), in KiB.
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|line| line.strip_prefix(field))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// A process's resident memory in KiB (`VmRSS`).
pub fn rss_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "VmRSS:")
}

/// A field of `/proc/<pid>/status` given in kB, in bytes (0 when unreadable).
pub fn vm_bytes(pid: u32, field: &str) -> u64 {
    status_kib(pid, field).map_or(0, |kib| kib * 1024)
}

/// CPU time (user + system) a process has used, in seconds (0 when gone).
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the `(comm)`: state is the 1st, utime the 12th, stime the 13th.
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (ticks(11) + ticks(12)) as f64 / 100.0
}

/// This process's nats-server children, oldest first, with whether each
/// was started with a configuration file (`-c`).
pub fn nats_children() -> Vec<(u32, bool)> {
    let me = std::process::id().to_string();
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let parent = stat
            .rsplit(')')
            .next()
            .and_then(|rest| rest.split_whitespace().nth(1));
        if stat.contains("(nats-server)") && parent == Some(me.as_str()) {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let with_config = cmdline.split(|b| *b == 0).any(|arg| arg == b"-c");
            out.push((pid, with_config));
        }
    }
    out.sort_unstable();
    out
}

/// The first nats-server this process started without a configuration file.
pub fn nats_pid() -> u32 {
    nats_children()
        .into_iter()
        .find(|(_, with_config)| !with_config)
        .map_or(0, |(pid, _)| pid)
}
