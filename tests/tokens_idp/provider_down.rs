//! The identity provider down: the last good key set keeps verifying while
//! every refresh fails (connection refused, 503, garbage, too slow), its
//! growing age is reported by `/readyz` and `/metrics`, the failed fetches
//! are counted; a gateway restarted (kill -9) meanwhile starts with the set
//! it kept in its data directory; one with a fresh data directory refuses
//! to start and names the URL.

use std::time::Instant;

use jsonwebtoken::Algorithm;

use super::*;

const KID: &str = "ec256";

/// The provider's failures, each for long enough that several refreshes
/// fail (`Slow` beyond the gateway's 5 s fetch timeout, so each of its
/// fetches fails by timing out).
fn failures() -> [(JwksMode, f64); 4] {
    [
        (JwksMode::Down, 3.0),
        (JwksMode::Unavailable, 3.0),
        (JwksMode::Garbage, 3.0),
        (JwksMode::Slow(Duration::from_secs(30)), 2.0),
    ]
}

/// A new user's token signed with the key the JWKS published.
fn fresh_token() -> (Id, String) {
    let user = Id::new_v4();
    let token = TestKey::Ec256.sign(Algorithm::ES256, Some(KID), &payload(user, json!({})));
    (user, token)
}

/// The provider stays unreachable for the whole test, in four ways one
/// after the other. With `--jwks-refresh 1s` a failed refresh is retried
/// after 1 s (`min(refresh, 30 s)`), so each second here is one failed
/// refresh: the ~25 s of this test hold as many failed refreshes as
/// 12 minutes at the default 5 min refresh, which retries every 30 s after
/// a failure (the minute down is 2 of them).
#[tokio::test]
async fn a_provider_down_leaves_the_kept_keys_serving_across_a_restart() {
    let nats = nats();
    let server = JwksServer::start(vec![TestKey::Ec256.jwk(Algorithm::ES256, KID)]);
    let url = server.jwks_url();
    let data = tempfile::tempdir().expect("data dir");
    let serve = Serve::new(&nats.url()).without_secret().args(&[
        "--jwks-url",
        &url,
        "--jwks-refresh",
        "1s",
    ]);
    let mut gateway = serve.clone().start_in(data.path());
    let (user, token) = fresh_token();
    let mut connected = vec![connects(&gateway, &token, user).await];
    assert!(
        data.path().join("jwks.json").is_file(),
        "the key set is kept in the data directory"
    );
    let (_, first_age) = jwks_line(&gateway, &url).await;

    let down_since = Instant::now();
    let mut age = first_age;
    for (mode, failed) in failures() {
        server.set_mode(mode);
        let failed_before = fetches(&gateway, "failed").await;
        wait_until(
            &format!("{failed} failed refreshes in {mode:?}"),
            || async { fetches(&gateway, "failed").await >= failed_before + failed },
        )
        .await;
        // New upgrades go on with the kept keys.
        let (user, token) = fresh_token();
        connected.push(connects(&gateway, &token, user).await);
        let (keys, now) = jwks_line(&gateway, &url).await;
        assert_eq!(keys, 1, "{mode:?}: the kept set serves");
        assert!(now > age, "{mode:?}: the age grows ({age} s, then {now} s)");
        age = now;
    }
    assert!(
        age + 1 >= down_since.elapsed().as_secs(),
        "the age ({age} s) counts from the last good fetch, before the provider went down {:?} ago",
        down_since.elapsed()
    );
    let gauge = gateway.metric("switchboard_jwks_age_seconds ").await;
    assert!(
        gauge >= age as f64,
        "the age gauge {gauge} s, /readyz {age} s"
    );
    assert_eq!(gateway.metric("switchboard_jwks_keys ").await, 1.0);
    assert_eq!(fetches(&gateway, "ok").await, 0.0, "no refresh succeeded");
    everyone_receives(&nats, &mut connected).await;
    drop(connected);

    // A crash while the provider is down: the restart serves the set kept
    // on disk, as old as it is.
    server.set_mode(JwksMode::Down);
    gateway.kill9();
    let gateway = serve.clone().start_in(data.path());
    assert!(
        gateway.log_text().contains("serving the cached key set"),
        "the restart says it serves the kept set"
    );
    let (user, token) = fresh_token();
    connects(&gateway, &token, user).await.close().await;
    let (keys, restarted_age) = jwks_line(&gateway, &url).await;
    assert_eq!(keys, 1);
    assert!(
        restarted_age >= age,
        "the kept set's age goes on ({age} s before, {restarted_age} s after the restart)"
    );
    drop(gateway);

    // With no kept set the gateway cannot verify a token, and says so.
    let fresh = tempfile::tempdir().expect("fresh data dir");
    let output = tokio::time::timeout(
        PATIENCE,
        switchboard()
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--nats-url",
                &nats.url(),
            ])
            .arg("--data-dir")
            .arg(fresh.path())
            .args(["--jwks-url", &url])
            .output(),
    )
    .await
    .expect("serve gives up in time")
    .expect("the binary runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "serve started without keys: {stderr}"
    );
    assert!(
        String::from_utf8_lossy(&output.stdout).is_empty(),
        "it never listened"
    );
    assert!(stderr.contains(&format!("cannot fetch {url}")), "{stderr}");
    assert!(stderr.contains("no usable cached key set"), "{stderr}");
    assert!(
        stderr.contains("without keys no token can be verified"),
        "{stderr}"
    );
}

/// Slow (about 30 s): a gateway that started on its kept set (the provider
/// down) tries the provider again after a failure's retry delay (30 s),
/// not after a whole `--jwks-refresh` (here an hour), so its set is fresh
/// again soon after the provider is back.
#[tokio::test]
async fn slow_a_restart_on_the_kept_set_retries_the_provider_soon() {
    let nats = nats();
    let server = JwksServer::start(vec![TestKey::Ec256.jwk(Algorithm::ES256, KID)]);
    let url = server.jwks_url();
    let data = tempfile::tempdir().expect("data dir");
    let serve = Serve::new(&nats.url()).without_secret().args(&[
        "--jwks-url",
        &url,
        "--jwks-refresh",
        "1h",
    ]);
    let mut gateway = serve.clone().start_in(data.path());
    server.set_mode(JwksMode::Down);
    let killed = Instant::now();
    gateway.kill9();
    let gateway = serve.start_in(data.path());
    let (user, token) = fresh_token();
    connects(&gateway, &token, user).await.close().await;

    server.set_mode(JwksMode::Serve);
    let fetched = server.fetches();
    wait_until("a refresh once the provider is back", || async {
        fetches(&gateway, "ok").await >= 1.0
    })
    .await;
    assert!(server.fetches() > fetched);
    let (keys, age) = jwks_line(&gateway, &url).await;
    assert_eq!(keys, 1);
    // The kept set was fetched before the kill; the new one after it.
    let since_kill = killed.elapsed().as_secs();
    assert!(
        age < since_kill,
        "the set is fresh again: {age} s old, the kill {since_kill} s ago"
    );
}
