//! Forged `kid`s cannot make the gateway hammer the provider: 10,000
//! tokens naming random kids, many at once, are all refused, while the
//! JWKS is fetched again at most once per `UNKNOWN_KID_REFETCH`; valid
//! tokens of other clients go on connecting meanwhile.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use jsonwebtoken::Algorithm;
use switchboard::token::UNKNOWN_KID_REFETCH;

use super::*;

const FORGED: usize = 10_000;
const IN_FLIGHT: usize = 64;
const KID: &str = "ed25519";

/// Periodic refreshes of the gateway in this test (the default 5 min).
const REFRESH: Duration = Duration::from_secs(300);

#[tokio::test]
async fn a_burst_of_unknown_kids_refetches_the_jwks_at_most_once_per_window() {
    let nats = nats();
    let server = JwksServer::start(vec![TestKey::Ed25519.jwk(Algorithm::EdDSA, KID)]);
    let started = Instant::now();
    let gateway = Arc::new(keys_only(&nats, &["--jwks-url", &server.jwks_url()]));
    assert_eq!(server.fetches(), 1, "the start's fetch");

    // Well signed, with the right algorithm, but naming kids nobody has.
    let forged: Vec<String> = (0..FORGED)
        .map(|_| {
            let kid = Id::new_v4().to_string();
            TestKey::Ed25519.sign(
                Algorithm::EdDSA,
                Some(&kid),
                &payload(Id::new_v4(), json!({"roles": ["auditor"]})),
            )
        })
        .collect();

    // Meanwhile, other clients with valid tokens connect one after another.
    let burst_over = Arc::new(AtomicBool::new(false));
    let others = tokio::spawn({
        let gateway = gateway.clone();
        let burst_over = burst_over.clone();
        async move {
            let mut connected = 0usize;
            while !burst_over.load(Ordering::Relaxed) || connected < 3 {
                let user = Id::new_v4();
                let token =
                    TestKey::Ed25519.sign(Algorithm::EdDSA, Some(KID), &payload(user, json!({})));
                connects(&gateway, &token, user).await.close().await;
                connected += 1;
            }
            connected
        }
    });

    let burst = Instant::now();
    let client = http();
    let answers: Vec<(u16, String)> = futures::stream::iter(forged)
        .map(|token| {
            let client = client.clone();
            let url = gateway.http("/v1/history/global");
            async move {
                let reply = client
                    .get(url)
                    .bearer_auth(token)
                    .send()
                    .await
                    .expect("history request");
                let status = reply.status().as_u16();
                (status, reply.text().await.expect("body"))
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;
    let elapsed = burst.elapsed();
    let since_start = started.elapsed();
    burst_over.store(true, Ordering::Relaxed);
    let connected = others.await.expect("the other clients' task");

    for (status, body) in &answers {
        assert_eq!(*status, 401, "{body}");
        let message = message_of(body);
        assert!(message.contains(UNKNOWN_KID), "{message}");
    }
    // The start's fetch; one refetch per window the burst touched (the
    // first may come at its very start, then one per full window); and the
    // periodic refreshes since the gateway started.
    let windows = (elapsed.as_secs_f64() / UNKNOWN_KID_REFETCH.as_secs_f64()).floor() as usize + 1;
    let refreshes = (since_start.as_secs_f64() / REFRESH.as_secs_f64()).floor() as usize;
    let bound = 1 + windows + refreshes;
    let fetched = server.fetches();
    assert!(
        fetched <= bound,
        "{fetched} JWKS fetches for {FORGED} forged kids in {elapsed:?} (at most {bound})"
    );
    assert!(fetched >= 2, "an unknown kid is looked up once at least");
    let refetches = gateway
        .metric(r#"switchboard_jwks_refetches_total{reason="unknown_kid"}"#)
        .await;
    assert!(
        refetches >= 1.0 && (refetches as usize) < fetched,
        "{refetches} refetches for an unknown kid, {fetched} fetches"
    );
    assert!(
        connected >= 3,
        "valid tokens connected meanwhile: {connected}"
    );
}
