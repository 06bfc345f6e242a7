//! The harness's identity providers work as the gateway's tests rely on:
//! the committed test keys load, sign and verify; oidc-provider issues JWT
//! access tokens that verify against the JWKS its discovery document points
//! to, and rotates and retires keys while it runs; the hand-made JWKS
//! server counts its fetches and fails as told.

use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
use serde_json::{json, Value};
use switchboard_harness::*;

const USER: &str = "0190a9a4-5b1c-7c3e-9d2a-4f6b8e1c2d3a";

/// The claims of `token` once verified with the key of its `kid` in
/// `jwks`, with `iss` and `aud` checked when given.
fn verify(token: &str, jwks: &Value, iss: Option<&str>, aud: Option<&str>) -> Value {
    let header = decode_header(token).expect("a JWT header");
    let kid = header.kid.expect("a kid");
    let set: JwkSet = serde_json::from_value(jwks.clone()).expect("a JWK set");
    let jwk = set
        .find(&kid)
        .unwrap_or_else(|| panic!("kid {kid} is not in {jwks}"));
    let key = DecodingKey::from_jwk(jwk).expect("a decoding key from the JWK");
    let mut validation = Validation::new(header.alg);
    match iss {
        Some(iss) => validation.set_issuer(&[iss]),
        None => validation.iss = None,
    }
    match aud {
        Some(aud) => validation.set_audience(&[aud]),
        None => validation.validate_aud = false,
    }
    validation.set_required_spec_claims(&["exp", "sub"]);
    decode::<Value>(token, &key, &validation)
        .unwrap_or_else(|e| panic!("token with kid {kid} verifies: {e}"))
        .claims
}

fn kids(jwks: &Value) -> Vec<String> {
    let mut kids: Vec<String> = jwks["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|k| k["kid"].as_str().expect("a kid").to_string())
        .collect();
    kids.sort();
    kids
}

fn kid_of(token: &str) -> String {
    decode_header(token).expect("header").kid.expect("a kid")
}

#[test]
fn test_keys_load_sign_and_verify_as_pem_and_jwk() {
    for key in TestKey::ALL {
        let pem = String::from_utf8(key.private_pem()).expect("PEM text");
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"), "{key:?}");
        let public = String::from_utf8(key.public_pem()).expect("PEM text");
        assert!(public.starts_with("-----BEGIN PUBLIC KEY-----"), "{key:?}");
        for &alg in key.algorithms() {
            let token = key.sign(alg, Some("k1"), &claims(USER, PATIENCE));
            let mut validation = Validation::new(alg);
            validation.validate_aud = false;
            let claims = decode::<Value>(&token, &key.decoding_key(), &validation)
                .unwrap_or_else(|e| panic!("{key:?} {alg:?} verifies with its PEM: {e}"))
                .claims;
            assert_eq!(claims["sub"], USER);
            assert_eq!(claims["channels"], "*");

            let jwk = key.jwk(alg, "k1");
            for private in ["d", "p", "q", "dp", "dq", "qi"] {
                assert!(jwk.get(private).is_none(), "{key:?}'s JWK has {private}");
            }
            assert_eq!(jwk["use"], "sig");
            assert_eq!(jwk["alg"], algorithm_name(alg));
            let verified = verify(&token, &json!({ "keys": [jwk] }), None, None);
            assert_eq!(verified["sub"], USER);
        }
    }
    assert_eq!(TestKey::for_algorithm(Algorithm::PS256), TestKey::RsaA);
    assert_eq!(TestKey::for_algorithm(Algorithm::EdDSA), TestKey::Ed25519);
}

#[tokio::test]
async fn oidc_provider_tokens_verify_against_its_discovered_jwks() {
    let idp = OidcProvider::start(Algorithm::RS256);
    let discovery = idp.discovery().await;
    assert_eq!(discovery["issuer"], idp.issuer());
    let jwks_uri = discovery["jwks_uri"].as_str().expect("a jwks_uri");
    assert_eq!(jwks_uri, idp.jwks_uri());
    let jwks: Value = reqwest::get(jwks_uri)
        .await
        .expect("JWKS")
        .json()
        .await
        .expect("JWKS JSON");
    // Node's PEM -> JWK and the harness's agree.
    assert_eq!(
        jwks["keys"][0]["n"],
        TestKey::RsaA.jwk(Algorithm::RS256, "rsa-a")["n"]
    );

    let ttl = Duration::from_secs(300);
    let extra = json!({ "channels": "*", "roles": ["publisher"], "name": "Ann" });
    let token = idp.token(USER, extra, ttl, Algorithm::RS256).await;
    let header = decode_header(&token).expect("header");
    assert_eq!(header.alg, Algorithm::RS256);
    assert_eq!(header.kid.as_deref(), Some("rsa-a"));
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));

    let claims = verify(&token, &jwks, Some(idp.issuer()), Some(OIDC_AUDIENCE));
    assert_eq!(claims["sub"], USER);
    assert_eq!(claims["iss"], idp.issuer());
    assert_eq!(claims["aud"], OIDC_AUDIENCE);
    assert_eq!(claims["channels"], "*");
    assert_eq!(claims["roles"], json!(["publisher"]));
    assert_eq!(claims["name"], "Ann");
    let lifetime = claims["exp"].as_i64().expect("exp") - claims["iat"].as_i64().expect("iat");
    assert_eq!(lifetime, 300);

    // Another audience is another `aud`: it fails where the first is expected.
    let other = idp
        .token_for(
            "https://elsewhere.test",
            USER,
            json!({}),
            ttl,
            Algorithm::RS256,
        )
        .await;
    assert_eq!(
        verify(&other, &jwks, Some(idp.issuer()), None)["aud"],
        "https://elsewhere.test"
    );
}

#[tokio::test]
async fn oidc_provider_signs_with_every_key_algorithm() {
    let algs = [
        Algorithm::RS256,
        Algorithm::PS256,
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::EdDSA,
    ];
    let idp = OidcProvider::start_with(&algs);
    let jwks = idp.jwks().await;
    assert_eq!(kids(&jwks), ["ec256", "ec384", "ed25519", "rsa-a", "rsa-b"]);
    for alg in algs {
        let token = idp
            .token(USER, json!({ "channels": "*" }), PATIENCE, alg)
            .await;
        assert_eq!(decode_header(&token).expect("header").alg, alg);
        let claims = verify(&token, &jwks, Some(idp.issuer()), Some(OIDC_AUDIENCE));
        assert_eq!(claims["sub"], USER, "{alg:?}");
    }
}

#[tokio::test]
async fn oidc_provider_rotates_then_retires_its_signing_key() {
    let idp = OidcProvider::start(Algorithm::RS256);
    let old = idp.token(USER, json!({}), PATIENCE, Algorithm::RS256).await;
    assert_eq!(kid_of(&old), "rsa-a");

    let new_kid = idp.rotate(Algorithm::RS256).await;
    assert_eq!(new_kid, "rsa-b");
    assert_eq!(idp.signer().await.kid, "rsa-b");
    let issuer_after = idp.discovery().await["issuer"].clone();
    assert_eq!(issuer_after, idp.issuer(), "same issuer after a rotation");
    let jwks = idp.jwks().await;
    assert_eq!(kids(&jwks), ["rsa-a", "rsa-b"]);
    let new = idp.token(USER, json!({}), PATIENCE, Algorithm::RS256).await;
    assert_eq!(kid_of(&new), "rsa-b");
    verify(&new, &jwks, Some(idp.issuer()), Some(OIDC_AUDIENCE));
    verify(&old, &jwks, Some(idp.issuer()), Some(OIDC_AUDIENCE));

    assert_eq!(idp.retire().await, ["rsa-a"]);
    let jwks = idp.jwks().await;
    assert_eq!(kids(&jwks), ["rsa-b"]);
    verify(&new, &jwks, Some(idp.issuer()), Some(OIDC_AUDIENCE));
    let set: JwkSet = serde_json::from_value(jwks).expect("a JWK set");
    assert!(set.find(&kid_of(&old)).is_none(), "the retired key is gone");

    // A rotation to another algorithm uses another key type.
    assert_eq!(idp.rotate(Algorithm::EdDSA).await, "ed25519");
    let ed = idp.token(USER, json!({}), PATIENCE, Algorithm::EdDSA).await;
    let jwks = idp.jwks().await;
    assert_eq!(kids(&jwks), ["ed25519", "rsa-b"]);
    verify(&ed, &jwks, Some(idp.issuer()), Some(OIDC_AUDIENCE));
}

/// One GET on a fresh connection: the status and the body.
async fn get(url: &str) -> (u16, String) {
    let client = reqwest::Client::builder()
        .timeout(PATIENCE)
        .build()
        .expect("client");
    let response = client.get(url).send().await.expect("an answer");
    let status = response.status().as_u16();
    (status, response.text().await.expect("a body"))
}

#[tokio::test]
async fn jwks_server_serves_counts_and_fails_as_told() {
    let key = TestKey::Ec256;
    let jwks = JwksServer::start(vec![key.jwk(Algorithm::ES256, "one")]);

    let (status, body) = get(&jwks.discovery_url()).await;
    assert_eq!(status, 200);
    let discovery: Value = serde_json::from_str(&body).expect("discovery JSON");
    assert_eq!(discovery["issuer"], jwks.issuer());
    assert_eq!(discovery["jwks_uri"], jwks.jwks_url());
    assert_eq!(jwks.discoveries(), 1);
    assert_eq!(jwks.fetches(), 0);

    let (status, body) = get(&jwks.jwks_url()).await;
    assert_eq!(status, 200);
    let set: Value = serde_json::from_str(&body).expect("JWKS JSON");
    assert_eq!(kids(&set), ["one"]);
    let mut token_claims = claims(USER, PATIENCE);
    token_claims["iss"] = jwks.issuer().into();
    let token = key.sign(Algorithm::ES256, Some("one"), &token_claims);
    verify(&token, &set, Some(&jwks.issuer()), None);
    assert_eq!(jwks.fetches(), 1);

    jwks.set_keys(vec![
        key.jwk(Algorithm::ES256, "one"),
        TestKey::Ed25519.jwk(Algorithm::EdDSA, "two"),
    ]);
    let (_, body) = get(&jwks.jwks_url()).await;
    assert_eq!(
        kids(&serde_json::from_str(&body).expect("JSON")),
        ["one", "two"]
    );
    assert_eq!(jwks.fetches(), 2);

    jwks.set_mode(JwksMode::Unavailable);
    assert_eq!(get(&jwks.jwks_url()).await.0, 503);
    assert_eq!(jwks.fetches(), 3);

    jwks.set_mode(JwksMode::Garbage);
    let (status, body) = get(&jwks.jwks_url()).await;
    assert_eq!(status, 200);
    assert!(serde_json::from_str::<Value>(&body).is_err(), "{body}");
    assert_eq!(jwks.fetches(), 4);

    let delay = Duration::from_millis(400);
    jwks.set_mode(JwksMode::Slow(delay));
    let started = Instant::now();
    let (status, _) = get(&jwks.jwks_url()).await;
    assert_eq!(status, 200);
    assert!(started.elapsed() >= delay, "answered before the delay");
    assert_eq!(jwks.fetches(), 5);

    jwks.set_mode(JwksMode::Down);
    let refused = tokio::net::TcpStream::connect(("127.0.0.1", jwks.port())).await;
    assert_eq!(
        refused.expect_err("down refuses connections").kind(),
        std::io::ErrorKind::ConnectionRefused
    );
    assert_eq!(jwks.fetches(), 5);

    jwks.set_mode(JwksMode::Serve);
    let (status, body) = get(&jwks.jwks_url()).await;
    assert_eq!(status, 200, "back on the same port");
    assert_eq!(
        kids(&serde_json::from_str(&body).expect("JSON")),
        ["one", "two"]
    );
    assert_eq!(jwks.fetches(), 6);

    // Down cuts a request in flight too.
    jwks.set_mode(JwksMode::Slow(PATIENCE));
    let url = jwks.jwks_url();
    let in_flight = tokio::spawn(async move {
        reqwest::Client::new()
            .get(&url)
            .send()
            .await
            .map(|r| r.status())
    });
    wait_until("the slow request to arrive", || async {
        jwks.fetches() == 7
    })
    .await;
    jwks.set_mode(JwksMode::Down);
    let cut = tokio::time::timeout(PATIENCE, in_flight)
        .await
        .expect("the request ends")
        .expect("the task");
    assert!(cut.is_err(), "a request in flight is cut by Down: {cut:?}");
}
