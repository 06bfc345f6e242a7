//! Every algorithm the gateway verifies is accepted: HS256/384/512 with a
//! secret, RS256/384/512, PS256/384/512, ES256, ES384 and EdDSA from PEM
//! public keys (tokens minted by `switchboard token --key` and by the test
//! keys) and from a JWKS; each token opens a WebSocket (`hello` names its
//! user) and, with the auditor role, reads history over HTTP.

use jsonwebtoken::Algorithm;

use super::*;

/// Every algorithm of an asymmetric key, with the test key that signs it.
fn asymmetric() -> Vec<(TestKey, Algorithm)> {
    use Algorithm::*;
    [
        RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA,
    ]
    .into_iter()
    .map(|alg| (TestKey::for_algorithm(alg), alg))
    .collect()
}

const HMAC: [Algorithm; 3] = [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512];

/// `token` connects as `user` and, having the auditor role, reads history.
async fn accepted(gateway: &Gateway, token: &str, user: Id, what: &str) {
    connects(gateway, token, user).await.close().await;
    let (status, body) = history(gateway, token).await;
    assert_eq!(status, 200, "{what}: history: {body}");
}

/// `switchboard token` with `args`: the token it prints.
async fn cli_token(args: &[&str]) -> String {
    run(switchboard().arg("token").args(args))
        .await
        .trim()
        .to_string()
}

#[tokio::test]
async fn every_algorithm_from_a_secret_or_a_pem_file_is_accepted() {
    let nats = nats();
    let pems: Vec<String> = [
        TestKey::RsaA,
        TestKey::Ec256,
        TestKey::Ec384,
        TestKey::Ed25519,
    ]
    .iter()
    .map(|k| k.public_pem_path().display().to_string())
    .collect();
    let gateway = Serve::new(&nats.url())
        .args(&["--jwt-public-keys", &pems.join(",")])
        .start();

    for alg in HMAC {
        let name = algorithm_name(alg);
        let user = Id::new_v4();
        let token = hs(
            alg,
            SECRET.as_bytes(),
            None,
            &payload(user, json!({"roles": ["auditor"]})),
        );
        accepted(&gateway, &token, user, &name).await;

        let user = Id::new_v4();
        let sub = user.to_string();
        let token = cli_token(&[
            "--sub",
            &sub,
            "--channels",
            "*",
            "--roles",
            "auditor",
            "--jwt-secret",
            SECRET,
            "--alg",
            &name,
        ])
        .await;
        assert_eq!(
            jsonwebtoken::decode_header(&token).expect("header").alg,
            alg
        );
        accepted(&gateway, &token, user, &format!("{name} from the CLI")).await;
    }

    for (key, alg) in asymmetric() {
        let name = algorithm_name(alg);
        let user = Id::new_v4();
        let token = key.sign(alg, None, &payload(user, json!({"roles": ["auditor"]})));
        accepted(&gateway, &token, user, &name).await;

        let user = Id::new_v4();
        let sub = user.to_string();
        let private = key.private_pem_path().display().to_string();
        let token = cli_token(&[
            "--sub",
            &sub,
            "--channels",
            "*",
            "--roles",
            "auditor",
            "--key",
            &private,
            "--alg",
            &name,
        ])
        .await;
        assert_eq!(
            jsonwebtoken::decode_header(&token).expect("header").alg,
            alg
        );
        accepted(&gateway, &token, user, &format!("{name} from the CLI")).await;
    }
}

#[tokio::test]
async fn every_algorithm_from_a_jwks_is_accepted() {
    let nats = nats();
    // One JWK per algorithm (an RSA key is listed once per algorithm, under
    // a kid of its own, as a JWK names one `alg`).
    let keys: Vec<(TestKey, Algorithm, String)> = asymmetric()
        .into_iter()
        .map(|(key, alg)| (key, alg, format!("{}-{}", key.name(), algorithm_name(alg))))
        .collect();
    let server = JwksServer::start(
        keys.iter()
            .map(|(key, alg, kid)| key.jwk(*alg, kid))
            .collect(),
    );
    let gateway = keys_only(&nats, &["--jwks-url", &server.jwks_url()]);
    let (count, _) = jwks_line(&gateway, &server.jwks_url()).await;
    assert_eq!(count, keys.len(), "every JWK is used");

    for (key, alg, kid) in &keys {
        let user = Id::new_v4();
        let token = key.sign(
            *alg,
            Some(kid),
            &payload(user, json!({"roles": ["auditor"]})),
        );
        accepted(&gateway, &token, user, kid).await;

        // The CLI names the kid too.
        let user = Id::new_v4();
        let sub = user.to_string();
        let private = key.private_pem_path().display().to_string();
        let name = algorithm_name(*alg);
        let token = cli_token(&[
            "--sub",
            &sub,
            "--channels",
            "*",
            "--roles",
            "auditor",
            "--key",
            &private,
            "--alg",
            &name,
            "--kid",
            kid,
        ])
        .await;
        assert_eq!(kid_of(&token), *kid);
        accepted(&gateway, &token, user, &format!("{kid} from the CLI")).await;
    }
}
