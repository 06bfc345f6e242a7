//! Every refusal of a token from an identity provider's world is a 401
//! that says why in words: `alg: none`, an HS256 token signed with the RSA
//! public key's PEM as its secret (the classic algorithm confusion), an
//! HS256 token whose `kid` names an RSA key, a `kid` naming no key, and
//! the wrong or a missing issuer or audience.

use jsonwebtoken::Algorithm;

use super::*;

const ISSUER: &str = "https://idp.example.com/";
const AUDIENCE: &str = "https://chat.example.com";

/// A token with no signature (`alg: none`).
fn unsigned(payload: &Value) -> String {
    use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
    format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(payload.to_string())
    )
}

#[tokio::test]
async fn refusals_of_unsigned_confused_unknown_and_misaddressed_tokens_say_why() {
    let nats = nats();
    let server = JwksServer::start(vec![TestKey::RsaB.jwk(Algorithm::RS256, "rsa-b")]);
    let rsa_pem = TestKey::RsaA.public_pem_path().display().to_string();
    // RSA keys only: a PEM file and a JWKS; an issuer and an audience.
    let gateway = keys_only(
        &nats,
        &[
            "--jwt-public-keys",
            &rsa_pem,
            "--jwks-url",
            &server.jwks_url(),
            "--jwt-issuer",
            ISSUER,
            "--jwt-audience",
            AUDIENCE,
        ],
    );
    let user = Id::new_v4();
    let good = payload(user, json!({"iss": ISSUER, "aud": AUDIENCE}));
    // Each refusal below differs from this accepted token in one respect.
    let accepted = TestKey::RsaB.sign(Algorithm::RS256, Some("rsa-b"), &good);
    connects(&gateway, &accepted, user).await.close().await;
    let from_pem = TestKey::RsaA.sign(Algorithm::RS256, None, &good);
    connects(&gateway, &from_pem, user).await.close().await;

    let message = refusal(&gateway, &unsigned(&good)).await;
    assert!(message.contains("not signed (`alg: none`)"), "{message}");

    // The RSA public key's PEM, as an HMAC secret: a verifier that took
    // the key for a secret would accept this.
    let confused = hs(Algorithm::HS256, &TestKey::RsaA.public_pem(), None, &good);
    let message = refusal(&gateway, &confused).await;
    assert!(
        message.contains("signed with HS256, and no key of this gateway is for HS256"),
        "{message}"
    );
    assert!(
        message.contains("never checked with a key of another kind"),
        "{message}"
    );
    // The same, naming the JWKS's RSA key.
    let jwk_pem = TestKey::RsaB.public_pem();
    let confused = hs(Algorithm::HS256, &jwk_pem, Some("rsa-b"), &good);
    let message = refusal(&gateway, &confused).await;
    assert!(
        message.contains("its `kid` `rsa-b` names a key that is not for HS256"),
        "{message}"
    );

    // A kid nobody has, of an algorithm no unnamed key verifies.
    let unknown = TestKey::Ec256.sign(Algorithm::ES256, Some("no-such-key"), &good);
    let message = refusal(&gateway, &unknown).await;
    assert!(message.contains("`no-such-key`"), "{message}");
    assert!(message.contains(UNKNOWN_KID), "{message}");

    let sign = |claims: &Value| TestKey::RsaB.sign(Algorithm::RS256, Some("rsa-b"), claims);
    let mut other_issuer = good.clone();
    other_issuer["iss"] = json!("https://elsewhere.example.com/");
    let message = refusal(&gateway, &sign(&other_issuer)).await;
    assert!(
        message.contains("from another issuer (claim `iss`: `https://elsewhere.example.com/`)"),
        "{message}"
    );
    assert!(message.contains(ISSUER), "{message}");

    let mut no_issuer = good.clone();
    no_issuer.as_object_mut().expect("claims").remove("iss");
    let message = refusal(&gateway, &sign(&no_issuer)).await;
    assert!(message.contains("claim `iss` is missing"), "{message}");

    let mut other_audience = good.clone();
    other_audience["aud"] = json!(["https://other.example.com", "https://more.example.com"]);
    let message = refusal(&gateway, &sign(&other_audience)).await;
    assert!(message.contains("for another audience"), "{message}");
    assert!(message.contains("`https://other.example.com`"), "{message}");
    assert!(message.contains(AUDIENCE), "{message}");

    let mut no_audience = good.clone();
    no_audience.as_object_mut().expect("claims").remove("aud");
    let message = refusal(&gateway, &sign(&no_audience)).await;
    assert!(message.contains("claim `aud` is missing"), "{message}");

    // An audience list that names this gateway among others is fine.
    let mut among = good.clone();
    among["aud"] = json!(["https://other.example.com", AUDIENCE]);
    connects(&gateway, &sign(&among), user).await.close().await;
}

#[tokio::test]
async fn a_token_for_an_audience_is_refused_where_none_is_configured() {
    let nats = nats();
    let gateway = Gateway::start(&nats);
    let user = Id::new_v4();
    let token = hs(
        Algorithm::HS256,
        SECRET.as_bytes(),
        None,
        &payload(user, json!({"aud": AUDIENCE})),
    );
    let message = refusal(&gateway, &token).await;
    assert!(message.contains("token meant for an audience"), "{message}");
    assert!(message.contains("SWITCHBOARD_JWT_AUDIENCE"), "{message}");
    // Without `aud` it is accepted.
    let token = hs(
        Algorithm::HS256,
        SECRET.as_bytes(),
        None,
        &payload(user, json!({})),
    );
    connects(&gateway, &token, user).await.close().await;
}

/// A provider whose `sub` is not a UUID (Auth0's `auth0|…`): the user's id
/// comes from the claim `--jwt-user-claim` names, on the upgrade and on a
/// refresh, and a token without it is refused in words.
#[tokio::test]
async fn the_user_id_comes_from_the_configured_claim() {
    const USER_CLAIM: &str = "https://chat.example.com/user_id";
    let nats = nats();
    let gateway = Serve::new(&nats.url())
        .args(&["--jwt-user-claim", USER_CLAIM])
        .start();
    let user = Id::new_v4();
    let sign = |extra: Value| {
        let mut claims = payload(user, extra);
        claims["sub"] = json!("auth0|5f7c8ec7a1b2");
        hs(Algorithm::HS256, SECRET.as_bytes(), None, &claims)
    };
    let mut client = connects(
        &gateway,
        &sign(json!({ USER_CLAIM: user.to_string() })),
        user,
    )
    .await;
    client
        .send(json!({"type": "refresh", "token": sign(json!({ USER_CLAIM: user.to_string() })), "request_id": "r"}))
        .await;
    assert_eq!(client.next().await["type"], "refreshed");
    let other = Id::new_v4().to_string();
    client
        .send(json!({"type": "refresh", "token": sign(json!({ USER_CLAIM: other })), "request_id": "o"}))
        .await;
    let refused = client.next().await;
    assert_eq!(refused["data"]["code"], "forbidden", "{refused}");
    let message = refusal(&gateway, &sign(json!({}))).await;
    assert!(
        message.contains(USER_CLAIM) && message.contains("missing"),
        "{message}"
    );
}
