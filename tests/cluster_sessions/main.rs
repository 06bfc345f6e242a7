//! Sessions on any node: with `--session-store kv` the sessions live in a
//! JetStream key-value bucket, so a client whose gateway died or restarted
//! resumes its session (`?session=`) on another gateway: every event
//! arrives, in order; events after its last written cursor may come again
//! (a few seconds' worth at most), never a gap.
//!
//! The gateways of a test are started by [`start_gateways`], given a NATS
//! URL (a comma-separated list for a cluster). The crash and the rolling
//! restart run on a three-node NATS cluster with an R3 stream and an R3
//! session bucket, each gateway on another server ([`on_cluster`]).
//!
//! This file holds the deployments and what the modules share; each module
//! is one concept.

mod bucket;
mod roaming;
mod writes;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use switchboard::channel::{Channel, Id};
use switchboard::session::kv::{Bucket, BucketSettings};
use switchboard::session::record::{Change, Cursor};
use switchboard::session::{Background, Sessions};
use switchboard::token::Grant;
use switchboard_harness::*;

/// The connections' flush interval in these tests (the default).
const FLUSH: Duration = Duration::from_secs(2);

/// Gateways sharing one deployment: the same NATS (one server or a
/// cluster), the same stream and session bucket, each with its own data
/// directory. Dropped: the gateways are killed, then the directories go.
struct Deployment {
    gateways: Vec<Gateway>,
    _dirs: Vec<tempfile::TempDir>,
}

/// Starts `n` gateways on `nats_url` with sessions in the bucket.
fn start_gateways(nats_url: &str, n: usize, extra: &[&str]) -> Deployment {
    let mut args = vec!["--session-store", "kv"];
    args.extend_from_slice(extra);
    let mut gateways = Vec::new();
    let mut dirs = Vec::new();
    for _ in 0..n {
        let dir = tempfile::tempdir().expect("temp dir");
        gateways.push(Gateway::spawn(nats_url, dir.path(), &args));
        dirs.push(dir);
    }
    Deployment {
        gateways,
        _dirs: dirs,
    }
}

/// `n` gateways on a three-node cluster, gateway `i` on server `i` (it
/// learns the others from it), with the stream and the bucket at R3; and
/// a publisher's log on every server.
async fn on_cluster(cluster: &NatsCluster, n: usize) -> (Deployment, switchboard::log::Log) {
    let mut gateways = Vec::new();
    let mut dirs = Vec::new();
    for i in 0..n {
        let dir = tempfile::tempdir().expect("temp dir");
        let args = ["--session-store", "kv", "--replicas", "3"];
        gateways.push(Gateway::spawn(&cluster.url(i % 3), dir.path(), &args));
        dirs.push(dir);
    }
    let settings = switchboard::log::StreamSettings {
        replicas: 3,
        ..Default::default()
    };
    let log = log_named(&cluster.urls(), "publisher", settings).await;
    let deployment = Deployment {
        gateways,
        _dirs: dirs,
    };
    (deployment, log)
}

/// Publishes to `channels` in turn, one event every `every`, until told to
/// stop; returns each channel's published seqs.
fn publish_steadily(
    log: switchboard::log::Log,
    channels: Vec<Id>,
    every: Duration,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<BTreeMap<Id, Vec<u64>>>,
) {
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let mut published: BTreeMap<Id, Vec<u64>> = BTreeMap::new();
        let mut tick = tokio::time::interval(every);
        for n in 0..1_000_000usize {
            tokio::select! {
                _ = &mut stopped => break,
                _ = tick.tick() => {}
            }
            let c = channels[n % channels.len()];
            let receipt = log
                .publish(&message(c, format!("m{n}")))
                .await
                .expect("published");
            published.entry(c).or_default().push(receipt.stored.seq);
        }
        published
    });
    (stop, task)
}

fn at(seq: u64) -> Cursor {
    Cursor {
        seq,
        epoch: Some("e1".into()),
        presence: false,
    }
}
