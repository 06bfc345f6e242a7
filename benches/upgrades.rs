//! Upgrades per second by token algorithm: how much a WebSocket upgrade
//! (handshake, token verification, session, `hello`) costs with an HS256
//! token against RS256, ES256 and EdDSA ones, side by side on one gateway,
//! and the pure CPU cost of verifying each (`Verifier::verify_cached` in
//! this process, the same keys).
//!
//! One nats-server, one gateway (the real binary) verifying with the
//! harness's secret and the RSA, P-256 and Ed25519 test keys' PEM files.
//! Every token is minted before the clock starts, one per connection (a
//! user each). A round connects `UPGRADES` clients per algorithm,
//! `CONCURRENCY` connecting at once, each reading its `hello`; they stay
//! open until the round's figure is taken, then close, and the next
//! algorithm waits for the node to have no connection left. The rounds
//! interleave the algorithms, so a drift of the machine hits them all; the
//! best round of each is its figure. The gateway's CPU per upgrade is
//! printed too: its difference from HS256's is the verification's share.
//!
//! `cargo bench --bench upgrades`: 5,000 upgrades per algorithm, 64 at
//! once, 3 rounds; 5,000 verifications per algorithm in process. Without
//! `--bench` (as `cargo test --all-targets` runs it): 40 upgrades, 8 at
//! once, one round, 100 verifications; it checks every upgrade got its
//! `hello`. There is no target: the figures are for the operator choosing
//! an algorithm, and for noticing a regression.

use switchboard_harness::bench;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use futures::StreamExt;
use jsonwebtoken::Algorithm;
use serde_json::json;
use switchboard::channel::Id;
use switchboard::token::{dev_claims, Grant, KeySources, Signer, Verifier};
use switchboard_harness::{keys_dir, SECRET};

use bench::{thousands, CpuMeter, Ws};

/// The algorithms compared, with the test key that signs each (`None`: the
/// harness's secret).
const ALGORITHMS: [(Algorithm, Option<&str>); 4] = [
    (Algorithm::HS256, None),
    (Algorithm::RS256, Some("rsa-a")),
    (Algorithm::ES256, Some("ec256")),
    (Algorithm::EdDSA, Some("ed25519")),
];

/// A hello read into a small buffer: the bench's clients read nothing else.
const READ_BUFFER: usize = 4 * 1024;

struct Sizes {
    upgrades: usize,
    concurrency: usize,
    rounds: usize,
    verifications: usize,
}

fn main() {
    let sizes = if bench::full() {
        Sizes {
            upgrades: 5_000,
            concurrency: bench::delivery::CONNECT_CONCURRENCY,
            rounds: 3,
            verifications: 5_000,
        }
    } else {
        Sizes {
            upgrades: 40,
            concurrency: 8,
            rounds: 1,
            verifications: 100,
        }
    };
    bench::raise_open_files_limit();
    bench::runtime().block_on(run(sizes));
}

fn name(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::HS256 => "HS256",
        Algorithm::RS256 => "RS256",
        Algorithm::ES256 => "ES256",
        Algorithm::EdDSA => "EdDSA",
        _ => unreachable!("not compared here"),
    }
}

fn signer(alg: Algorithm, key: Option<&str>) -> Signer {
    match key {
        None => Signer::secret(SECRET.as_bytes(), alg).expect("an HS signer"),
        Some(key) => Signer::private_pem(&keys_dir().join(format!("{key}.pem")), Some(alg))
            .expect("a private key signer"),
    }
}

fn public_keys() -> Vec<PathBuf> {
    ALGORITHMS
        .iter()
        .filter_map(|(_, key)| *key)
        .map(|key| keys_dir().join(format!("{key}.pub.pem")))
        .collect()
}

/// `n` tokens of `alg`, each for a user of its own, valid for an hour.
fn tokens(alg: Algorithm, key: Option<&str>, n: usize) -> Vec<String> {
    let signer = signer(alg, key);
    (0..n)
        .map(|_| {
            let claims = dev_claims(
                Id::new_v4(),
                Duration::from_secs(3600),
                None,
                Grant::All,
                vec![],
            );
            signer.mint(&claims).expect("mint")
        })
        .collect()
}

/// Connects one client per token, `concurrency` at once, each reading its
/// `hello`; the open sockets and how long it took.
async fn upgrade_all(
    gateway: &bench::Gateway,
    tokens: &[String],
    concurrency: usize,
) -> (Vec<Ws>, Duration) {
    let urls: Vec<String> = tokens.iter().map(|t| gateway.ws_url(t)).collect();
    let started = Instant::now();
    let sockets: Vec<Ws> = futures::stream::iter(urls)
        .map(|url| async move { bench::connect_gateway(&url, READ_BUFFER).await })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    (sockets, started.elapsed())
}

async fn close_all(gateway: &bench::Gateway, sockets: Vec<Ws>) {
    futures::stream::iter(sockets)
        .for_each_concurrent(256, |mut ws| async move {
            let _ = ws.close(None).await;
        })
        .await;
    gateway.wait_for_no_connections().await;
}

/// One algorithm's best round.
#[derive(Default, Clone, Copy)]
struct Figure {
    per_s: f64,
    /// The gateway's CPU per upgrade in that round, in microseconds.
    gateway_cpu_us: f64,
}

async fn run(sizes: Sizes) {
    let nats = bench::nats();
    let keys: Vec<String> = public_keys()
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    let gateway = bench::gateway_with(
        &nats.url(),
        bench::BENCH_LOG,
        &["--jwt-public-keys", &keys.join(",")],
    );
    println!(
        "upgrades ({}): {} upgrades per algorithm, {} connecting at once, {} round(s)",
        bench::mode(),
        thousands(sizes.upgrades as f64),
        sizes.concurrency,
        sizes.rounds
    );

    // Warm-up: the node's first connections pay for lazy setup.
    let warm = tokens(Algorithm::HS256, None, sizes.concurrency);
    let (sockets, _) = upgrade_all(&gateway, &warm, sizes.concurrency).await;
    close_all(&gateway, sockets).await;

    let mut best = [Figure::default(); ALGORITHMS.len()];
    let mut rounds_json = Vec::new();
    for round in 1..=sizes.rounds {
        for (i, &(alg, key)) in ALGORITHMS.iter().enumerate() {
            let tokens = tokens(alg, key, sizes.upgrades);
            let cpu = CpuMeter::start(&[("gateway", gateway.pid())]);
            let gateway_cpu = bench::cpu_seconds(gateway.pid());
            let (sockets, elapsed) = upgrade_all(&gateway, &tokens, sizes.concurrency).await;
            let used = (bench::cpu_seconds(gateway.pid()) - gateway_cpu).max(0.0);
            assert_eq!(sockets.len(), sizes.upgrades, "every upgrade got its hello");
            let figure = Figure {
                per_s: bench::rate(sizes.upgrades as u64, elapsed),
                gateway_cpu_us: used * 1e6 / sizes.upgrades as f64,
            };
            println!(
                "  round {round} {:<5} {:>8} upgrades/s  gateway cpu {:>6.0} µs/upgrade  ({})",
                name(alg),
                thousands(figure.per_s),
                figure.gateway_cpu_us,
                cpu.line()
            );
            rounds_json.push(json!({
                "round": round, "alg": name(alg),
                "upgrades_per_s": figure.per_s.round(),
                "gateway_cpu_us_per_upgrade": bench::round1(figure.gateway_cpu_us),
            }));
            if figure.per_s > best[i].per_s {
                best[i] = figure;
            }
            close_all(&gateway, sockets).await;
        }
    }

    // The pure CPU cost of verifying, in this process, with the same keys.
    let verifier = Verifier::load(&KeySources {
        secrets: vec![SECRET.to_string()],
        public_keys: public_keys(),
        ..KeySources::default()
    })
    .await
    .expect("the keys load");
    let mut verify_us = [0.0f64; ALGORITHMS.len()];
    for (i, &(alg, key)) in ALGORITHMS.iter().enumerate() {
        let tokens = tokens(alg, key, 16);
        for token in &tokens {
            verifier.verify_cached(token).expect("verifies");
        }
        let started = Instant::now();
        for n in 0..sizes.verifications {
            let claims = verifier.verify_cached(&tokens[n % tokens.len()]);
            std::hint::black_box(claims.expect("verifies"));
        }
        verify_us[i] = started.elapsed().as_secs_f64() * 1e6 / sizes.verifications as f64;
    }

    println!("upgrades results (best of {} round(s)):", sizes.rounds);
    let hs = best[0];
    let mut figures = serde_json::Map::new();
    for (i, &(alg, _)) in ALGORITHMS.iter().enumerate() {
        let f = best[i];
        println!(
            "  {:<5} {:>8} upgrades/s = {:>5.1}% of HS256   gateway cpu {:>6.0} µs/upgrade ({:+.0} µs vs HS256)   verify_cached {:>7.1} µs/token",
            name(alg),
            thousands(f.per_s),
            100.0 * f.per_s / hs.per_s,
            f.gateway_cpu_us,
            f.gateway_cpu_us - hs.gateway_cpu_us,
            verify_us[i]
        );
        figures.insert(
            name(alg).to_string(),
            json!({
                "upgrades_per_s": f.per_s.round(),
                "vs_hs256": bench::round3(f.per_s / hs.per_s),
                "gateway_cpu_us_per_upgrade": bench::round1(f.gateway_cpu_us),
                "verify_cached_us": bench::round3(verify_us[i]),
            }),
        );
    }
    bench::print_json(
        "upgrades",
        json!({
            "upgrades": sizes.upgrades,
            "concurrency": sizes.concurrency,
            "rounds": sizes.rounds,
            "verifications": sizes.verifications,
            "algorithms": figures,
            "all_rounds": rounds_json,
        }),
    );
}
