//! Keys that change: two HS secrets during a rotation, then the old one
//! removed; a real OpenID Connect provider rotating to a new key (verified
//! at once through the unknown-`kid` refetch) and retiring the old one
//! (refused after a refresh) while clients stay connected; a key removed
//! from a JWKS, refused after the next refresh.

use jsonwebtoken::Algorithm;

use super::*;

const OLD_SECRET: &str = "the-secret-being-retired";
const NEW_SECRET: &str = "the-secret-taking-over";

#[tokio::test]
async fn hs_secrets_rotate_by_adding_the_new_one_then_removing_the_old() {
    let nats = nats();
    let data = tempfile::tempdir().expect("data dir");
    let (old_user, new_user) = (Id::new_v4(), Id::new_v4());
    let old = hs(
        Algorithm::HS256,
        OLD_SECRET.as_bytes(),
        None,
        &payload(old_user, json!({})),
    );
    let new = hs(
        Algorithm::HS256,
        NEW_SECRET.as_bytes(),
        None,
        &payload(new_user, json!({})),
    );

    // During the rotation: both secrets, tokens of either accepted.
    let mut gateway = Serve::new(&nats.url())
        .jwt_secret(&format!("{OLD_SECRET},{NEW_SECRET}"))
        .start_in(data.path());
    connects(&gateway, &old, old_user).await.close().await;
    connects(&gateway, &new, new_user).await.close().await;
    gateway.kill9();

    // After it, restarted with the new secret alone.
    let gateway = Serve::new(&nats.url())
        .jwt_secret(NEW_SECRET)
        .start_in(data.path());
    connects(&gateway, &new, new_user).await.close().await;
    let message = refusal(&gateway, &old).await;
    assert!(message.starts_with("bad signature"), "{message}");
    assert!(message.contains("1 HS secret"), "{message}");
}

/// A provider's tokens for `user`, who may read every channel.
async fn provider_token(provider: &OidcProvider, user: Id, alg: Algorithm) -> String {
    provider
        .token(user, json!({"channels": "*"}), TTL, alg)
        .await
}

#[tokio::test]
async fn an_openid_provider_rotates_and_retires_its_key_under_connected_clients() {
    let nats = nats();
    let provider = OidcProvider::start(Algorithm::RS256);
    let discovery = provider.discovery_url();
    let oidc_args = |refresh: &'static str| {
        vec![
            "--jwks-url".to_string(),
            discovery.clone(),
            "--jwt-issuer".to_string(),
            provider.issuer().to_string(),
            "--jwt-audience".to_string(),
            OIDC_AUDIENCE.to_string(),
            "--jwks-refresh".to_string(),
            refresh.to_string(),
        ]
    };
    let start = |refresh| {
        let args = oidc_args(refresh);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        keys_only(&nats, &args)
    };
    // `steady` refreshes once an hour: within this test only the
    // unknown-kid refetch can bring it a new key. `brisk` refreshes every
    // 2 s: it sees a retired key go.
    let steady = start("1h");
    let brisk = start("2s");

    let mut connected = Vec::new();
    let old_user = Id::new_v4();
    let old = provider_token(&provider, old_user, Algorithm::RS256).await;
    let old_kid = kid_of(&old);
    for gateway in [&steady, &brisk] {
        connected.push(connects(gateway, &old, old_user).await);
    }

    // Rotation: the new key beside the old, and the provider signs with it.
    let new_kid = provider.rotate(Algorithm::RS256).await;
    assert_ne!(new_kid, old_kid);
    let new_user = Id::new_v4();
    let new = provider_token(&provider, new_user, Algorithm::RS256).await;
    assert_eq!(kid_of(&new), new_kid);
    let refetches = r#"switchboard_jwks_refetches_total{reason="unknown_kid"}"#;
    assert_eq!(steady.metric(refetches).await, 0.0);
    // At the first try: the unknown kid makes `steady` fetch the JWKS again.
    connected.push(connects(&steady, &new, new_user).await);
    assert_eq!(steady.metric(refetches).await, 1.0);
    connected.push(connects(&brisk, &new, new_user).await);
    // The old key is still published: its tokens still verify.
    connects(&steady, &old, old_user).await.close().await;
    everyone_receives(&nats, &mut connected).await;

    // Retirement: the old key leaves the JWKS. After `brisk`'s next
    // refresh its tokens name an unknown kid.
    let retired = provider.retire().await;
    assert_eq!(retired, vec![old_kid.clone()]);
    let ok_before = fetches(&brisk, "ok").await;
    wait_until("two refreshes after the retirement", || async {
        fetches(&brisk, "ok").await >= ok_before + 2.0
    })
    .await;
    let message = refusal(&brisk, &old).await;
    assert!(message.contains(UNKNOWN_KID), "{message}");
    assert!(message.contains(&old_kid), "{message}");
    connects(&brisk, &new, new_user).await.close().await;
    let (keys, _) = jwks_line(&brisk, &discovery).await;
    assert_eq!(keys, 1, "the retired key is gone");
    // Every client connected with the retired key's token is still there.
    everyone_receives(&nats, &mut connected).await;
}

#[tokio::test]
async fn a_key_removed_from_the_jwks_is_refused_after_the_next_refresh() {
    let nats = nats();
    let leaving = (TestKey::RsaA, Algorithm::RS256, "leaving");
    let staying = (TestKey::Ec256, Algorithm::ES256, "staying");
    let server = JwksServer::start(vec![
        leaving.0.jwk(leaving.1, leaving.2),
        staying.0.jwk(staying.1, staying.2),
    ]);
    let gateway = keys_only(
        &nats,
        &["--jwks-url", &server.jwks_url(), "--jwks-refresh", "1s"],
    );
    let (a, b) = (Id::new_v4(), Id::new_v4());
    let leaving_token = leaving
        .0
        .sign(leaving.1, Some(leaving.2), &payload(a, json!({})));
    let staying_token = staying
        .0
        .sign(staying.1, Some(staying.2), &payload(b, json!({})));
    let mut connected = vec![
        connects(&gateway, &leaving_token, a).await,
        connects(&gateway, &staying_token, b).await,
    ];

    server.set_keys(vec![staying.0.jwk(staying.1, staying.2)]);
    // A refresh may have been under way with the old set: wait for two.
    let ok_before = fetches(&gateway, "ok").await;
    wait_until("two refreshes after the removal", || async {
        fetches(&gateway, "ok").await >= ok_before + 2.0
    })
    .await;
    let message = refusal(&gateway, &leaving_token).await;
    assert!(message.contains(UNKNOWN_KID), "{message}");
    assert!(message.contains("`leaving`"), "{message}");
    connects(&gateway, &staying_token, b).await.close().await;
    assert_eq!(jwks_line(&gateway, &server.jwks_url()).await.0, 1);
    // A connection is not cut when its key leaves.
    everyone_receives(&nats, &mut connected).await;
}
