//! The session threads' priorities, read back from `/proc`.

use super::*;
use crate::store::Store;

/// The nice value in a `/proc/.../stat` line (its 19th field).
fn nice_in(stat: &str) -> Option<i32> {
    let after_name = &stat[stat.rfind(')')? + 2..];
    after_name.split(' ').nth(16)?.parse().ok()
}

/// The nice values of this process's threads named `name`.
fn nices_of(name: &str) -> Vec<i32> {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter(|task| {
            std::fs::read_to_string(task.path().join("comm")).is_ok_and(|c| c.trim() == name)
        })
        .filter_map(|task| nice_in(&std::fs::read_to_string(task.path().join("stat")).ok()?))
        .collect()
}

/// Every thread of that name (other tests start theirs too) at `nice`.
fn all_at(name: &str, nice: i32) -> bool {
    let nices = nices_of(name);
    !nices.is_empty() && nices.iter().all(|&n| n == nice)
}

#[tokio::test]
async fn writes_and_the_sweep_yield_to_the_connections_and_reads_do_not() {
    let process = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|stat| nice_in(&stat))
        .expect("the process's nice value");
    // A process already nicer than that cannot be made less nice.
    let background = BACKGROUND_NICE.max(process);
    let store = Store::temporary().unwrap();
    let (_queue, threads) = start(SledSessions::open(&store).unwrap(), 64).unwrap();
    // Names are cut to 15 bytes.
    let (writing, reading, sweeping) = ("sessions-sled", "sessions-sled-r", "sessions-sled-s");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !(all_at(writing, background) && all_at(sweeping, background) && all_at(reading, process))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "writing {:?}, sweeping {:?}, reading {:?}; the process {process}",
            nices_of(writing),
            nices_of(sweeping),
            nices_of(reading)
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    threads.close().await.unwrap();
}
