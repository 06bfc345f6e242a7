//! The operator's disconnect on a two-gateway deployment: the time from
//! `POST /v1/users/{id}/disconnect` on one gateway to the moment the last of
//! the user's sockets, on both gateways, has its 4003 close frame, while
//! other users' sockets stay connected on both. The target: within 1 s.
//!
//! `cargo bench --bench disconnect`: the user holds 64 sockets on each
//! gateway (the default per-node cap), 1,000 other users one each, ten
//! rounds. Without `--bench` (as `cargo test --all-targets` runs it): 4
//! sockets per gateway, 20 bystanders, two rounds.

use switchboard_harness::bench;

use std::time::{Duration, Instant};

use serde_json::json;
use switchboard::channel::{Channel, Id};
use switchboard::token::{Grant, Role};
use switchboard_harness::{Client, Gateway};

/// The deployment's longest time from the request to the last 4003.
const TARGET: Duration = Duration::from_secs(1);

fn main() {
    let (per_gateway, bystanders, rounds) = if bench::full() {
        (64, 1_000, 10)
    } else {
        (4, 20, 2)
    };
    bench::runtime().block_on(run(per_gateway, bystanders, rounds));
}

async fn run(per_gateway: usize, bystanders: usize, rounds: usize) {
    bench::raise_open_files_limit();
    let nats = bench::nats();
    let kv = ["--session-store", "kv"];
    let gateways = [
        bench::gateway_with(&nats.url(), bench::BENCH_LOG, &kv),
        bench::gateway_with(&nats.url(), bench::BENCH_LOG, &kv),
    ];
    let mut others = Vec::with_capacity(bystanders);
    for n in 0..bystanders {
        let token = bench::token(Id::new_v4(), Grant::None, &[]);
        others.push(Client::connect(&gateways[n % 2], &token).await);
    }
    let admin = bench::token(Id::new_v4(), Grant::None, &[Role::Admin]);
    let http = reqwest::Client::new();
    let mut took = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let user = Id::new_v4();
        let token = bench::token(user, Grant::All, &[]);
        let mut sockets = Vec::with_capacity(2 * per_gateway);
        for gateway in &gateways {
            for _ in 0..per_gateway {
                let mut client = Client::connect(gateway, &token).await;
                client.subscribe(Channel::User(user)).await;
                sockets.push(client);
            }
        }
        let started = Instant::now();
        let asked = disconnect(&http, &gateways[0], user, &admin);
        let closes = futures::future::join_all(sockets.iter_mut().map(|c| async {
            let (code, _) = c.closed_with_reason().await;
            (code, started.elapsed())
        }));
        let (answer, closes) = tokio::join!(asked, closes);
        assert_eq!(
            answer, per_gateway as u64,
            "the first gateway closed its own"
        );
        assert!(
            closes.iter().all(|(code, _)| *code == 4003),
            "every socket got 4003"
        );
        let last = closes.iter().map(|(_, at)| *at).max().unwrap_or_default();
        took.push(last);
    }
    // The bystanders were not touched.
    for client in others.iter_mut().take(50) {
        client
            .send(json!({"type": "ping", "request_id": "p"}))
            .await;
        assert_eq!(client.next().await["type"], "pong");
    }
    took.sort();
    let nanos: Vec<u64> = took.iter().map(|d| d.as_nanos() as u64).collect();
    let (p50, max) = (bench::percentile(&nanos, 50.0), *nanos.last().unwrap_or(&0));
    println!(
        "disconnect ({} mode): {} sockets of one user on 2 gateways, {bystanders} other users connected, {rounds} rounds",
        bench::mode(),
        2 * per_gateway
    );
    println!(
        "  request to the last 4003: p50 {:.1} ms, max {:.1} ms{}",
        bench::ms(p50),
        bench::ms(max),
        bench::target_note(&format!("<= {} ms", TARGET.as_millis()))
    );
    bench::verdict(
        "disconnect",
        Duration::from_nanos(max) <= TARGET,
        &format!("every socket closed within {} ms", TARGET.as_millis()),
    );
    bench::print_json(
        "disconnect",
        json!({
            "sockets": 2 * per_gateway,
            "bystanders": bystanders,
            "rounds": rounds,
            "p50_ms": bench::round1(bench::ms(p50)),
            "max_ms": bench::round1(bench::ms(max)),
            "target_ms": TARGET.as_millis() as u64,
        }),
    );
}

/// Asks `gateway` to disconnect `user`; the sockets it closed itself.
async fn disconnect(http: &reqwest::Client, gateway: &Gateway, user: Id, admin: &str) -> u64 {
    let response = http
        .post(gateway.http(&format!("/v1/users/{user}/disconnect")))
        .bearer_auth(admin)
        .json(&json!({"reason": "bench"}))
        .send()
        .await
        .expect("disconnect");
    assert_eq!(response.status().as_u16(), 200);
    let body: serde_json::Value = response.json().await.expect("json");
    body["closed"].as_u64().expect("closed")
}
