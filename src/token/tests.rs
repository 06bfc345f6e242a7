//! Unit tests of token verification: every form of every claim, every clock
//! rule, and that no refusal names an internal type or quotes much.

use super::*;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

const SECRET: &[u8] = b"test-secret";
const NOW: i64 = 1_800_000_000;
const CHANNEL: &str = "0b6f2c1e-3d4a-4f5b-8c9d-0e1f2a3b4c5d";
const OTHER: &str = "1c7f3d2f-4e5b-4a6c-9d0e-1f2a3b4c5d6e";

fn keys() -> Verifier {
    lenient(0)
}

fn lenient(leeway: u64) -> Verifier {
    Verifier::secrets(&[SECRET], Duration::from_secs(leeway))
}

/// A token signed with the test secret over an arbitrary payload.
fn signed(payload: &Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        payload,
        &EncodingKey::from_secret(SECRET),
    )
    .unwrap()
}

/// A valid payload at [`NOW`], with `extra` merged in (`null` removes).
fn payload(extra: Value) -> Value {
    let mut p = json!({"sub": OTHER, "exp": NOW + 600});
    for (k, v) in extra.as_object().unwrap() {
        if v.is_null() {
            p.as_object_mut().unwrap().remove(k);
        } else {
            p[k] = v.clone();
        }
    }
    p
}

fn verify(extra: Value) -> Result<Claims, TokenError> {
    keys().verify_at(&signed(&payload(extra)), NOW)
}

fn id(s: &str) -> Id {
    Id::parse(s).unwrap()
}

/// No refusal may carry a parser's or a library's internal names.
fn assert_plain(e: &TokenError) {
    let text = e.to_string();
    for word in [
        "untagged", "enum", "variant", "Raw", "Error(", "Json", "HS384", "line 1",
    ] {
        assert!(!text.contains(word), "`{word}` in {text}");
    }
    assert!(text.len() < 400, "too long: {text}");
}

#[track_caller]
fn assert_bad_claim(result: Result<Claims, TokenError>, claim: &str) -> String {
    match result {
        Err(e @ TokenError::BadClaim { claim: c, .. }) if c == claim => {
            assert_plain(&e);
            e.to_string()
        }
        other => panic!("expected claim `{claim}` malformed, got {other:?}"),
    }
}

#[test]
fn round_trip_with_grants_and_roles() {
    let sub = Id::new_v4();
    let c = Id::new_v4();
    for grant in [Grant::None, Grant::All, Grant::Some(vec![c])] {
        let claims = dev_claims(
            sub,
            Duration::from_secs(60),
            Some("ann".into()),
            grant.clone(),
            vec![Role::Auditor],
        );
        let token = Signer::hs256(SECRET).mint(&claims).unwrap();
        let back = keys()
            .verify_at(&token, chrono::Utc::now().timestamp())
            .unwrap();
        assert_eq!(back, claims);
        assert_eq!(back.channels.allows(c), grant != Grant::None);
    }
}

#[test]
fn every_form_of_the_channels_claim() {
    let c = id(CHANNEL);
    let d = id(OTHER);
    let prefixed = format!("channel:{CHANNEL}");
    for (channels, want) in [
        (Value::Null, Grant::None),
        (json!("*"), Grant::All),
        (json!([]), Grant::Some(vec![])),
        (json!([CHANNEL]), Grant::Some(vec![c])),
        (json!([prefixed]), Grant::Some(vec![c])),
        (json!([prefixed, OTHER]), Grant::Some(vec![c, d])),
        (json!(["*"]), Grant::All),
        (json!([CHANNEL, "*"]), Grant::All),
        (json!(["*", prefixed]), Grant::All),
    ] {
        let got = verify(json!({ "channels": channels.clone() }));
        assert_eq!(got.map(|c| c.channels), Ok(want), "{channels}");
    }
    // `null` written out is no grant either.
    let mut p = payload(json!({}));
    p["channels"] = Value::Null;
    let claims = keys().verify_at(&signed(&p), NOW).unwrap();
    assert_eq!(claims.channels, Grant::None);
}

#[test]
fn a_malformed_channels_claim_is_named_with_what_was_expected() {
    for (channels, found) in [
        (json!("all"), "the string `all`"),
        (json!(CHANNEL), "the string"),
        (json!(7), "a number"),
        (json!({"a": 1}), "an object"),
        (json!(true), "true"),
        (json!([7]), "item 1"),
        (
            json!(["*", "nope"]),
            "item 2: `nope` is not a hyphenated UUID",
        ),
        (json!([CHANNEL, "user:x"]), "item 2"),
        (json!([""]), "item 1"),
    ] {
        let text = assert_bad_claim(verify(json!({ "channels": channels.clone() })), "channels");
        assert!(text.contains(found), "{channels}: {text}");
        assert!(
            text.contains("expected \"*\" or a list of channel ids"),
            "{text}"
        );
    }
    // A long item is quoted as an excerpt only.
    let long = "x".repeat(10_000);
    let text = assert_bad_claim(verify(json!({ "channels": [long] })), "channels");
    assert!(text.len() < 400, "{text}");
}

#[test]
fn sub_exp_name_and_roles_forms() {
    // sub: required, a UUID string.
    assert_eq!(
        verify(json!({"sub": null})),
        Err(TokenError::missing("sub", claims::SUB_EXPECTED))
    );
    let text = assert_bad_claim(verify(json!({"sub": "ann"})), "sub");
    assert!(text.contains("`ann` is not a hyphenated UUID"), "{text}");
    assert_bad_claim(verify(json!({"sub": 5})), "sub");
    let text = assert_bad_claim(verify(json!({"sub": "y".repeat(5000)})), "sub");
    assert!(text.len() < 400);

    // exp: required, a number; a fraction is rounded down.
    assert!(matches!(
        verify(json!({"exp": null})),
        Err(TokenError::MissingClaim { claim: "exp", .. })
    ));
    assert_bad_claim(verify(json!({"exp": "tomorrow"})), "exp");
    assert_eq!(
        verify(json!({"exp": NOW as f64 + 10.7})).unwrap().exp,
        NOW + 10
    );
    assert_eq!(verify(json!({"exp": u64::MAX})).unwrap().exp, i64::MAX);

    // name: optional string.
    assert_eq!(
        verify(json!({"name": "ann"})).unwrap().name.as_deref(),
        Some("ann")
    );
    assert_bad_claim(verify(json!({"name": ["ann"]})), "name");

    // roles: optional list; unknown names ignored.
    let claims = verify(json!({"roles": ["publisher", "owner", "admin", "auditor"]})).unwrap();
    assert_eq!(
        claims.roles,
        vec![Role::Publisher, Role::Admin, Role::Auditor]
    );
    assert!(verify(json!({})).unwrap().roles.is_empty());
    assert_bad_claim(verify(json!({"roles": "publisher"})), "roles");
    let text = assert_bad_claim(verify(json!({"roles": ["publisher", 3]})), "roles");
    assert!(text.contains("item 2"), "{text}");

    // Claims this gateway does not read are ignored.
    assert!(verify(json!({"iss": "idp", "jti": 9, "scope": {"x": 1}})).is_ok());
}

#[test]
fn expiry_is_exact() {
    assert!(verify(json!({"exp": NOW + 1})).is_ok());
    assert_eq!(
        verify(json!({"exp": NOW})),
        Err(TokenError::Expired { seconds_ago: 0 })
    );
    let e = verify(json!({"exp": NOW - 60})).unwrap_err();
    assert_eq!(e, TokenError::Expired { seconds_ago: 60 });
    assert!(e.to_string().contains("expired"), "{e}");
    // The leeway is for the issuer's clock running ahead, not for expiry.
    let lenient = lenient(30);
    let token = signed(&payload(json!({"exp": NOW - 5})));
    assert!(matches!(
        lenient.verify_at(&token, NOW),
        Err(TokenError::Expired { .. })
    ));
}

#[test]
fn nbf_and_iat_in_the_future_are_refused_beyond_the_leeway() {
    let strict = keys();
    let lenient = lenient(5);
    for claim in ["nbf", "iat"] {
        let at = |t: i64| signed(&payload(json!({ claim: t })));
        // Past and present are fine.
        assert!(strict.verify_at(&at(NOW - 100), NOW).is_ok(), "{claim}");
        assert!(strict.verify_at(&at(NOW), NOW).is_ok(), "{claim}");
        // A second ahead: refused without leeway, accepted within it.
        let e = strict.verify_at(&at(NOW + 1), NOW).unwrap_err();
        assert_plain(&e);
        assert!(e.to_string().contains(claim), "{e}");
        assert!(lenient.verify_at(&at(NOW + 5), NOW).is_ok(), "{claim}");
        // Beyond the leeway: refused, saying by how much.
        let e = lenient.verify_at(&at(NOW + 600), NOW).unwrap_err();
        let want = if claim == "nbf" {
            TokenError::NotYetValid {
                ahead: 600,
                leeway: 5,
            }
        } else {
            TokenError::IssuedInFuture {
                ahead: 600,
                leeway: 5,
            }
        };
        assert_eq!(e, want);
        assert!(e.to_string().contains("600 s ahead"), "{e}");
        assert!(e.to_string().contains("5 s leeway"), "{e}");
        // Malformed: named.
        assert_bad_claim(
            strict.verify_at(&signed(&payload(json!({ claim: "soon" }))), NOW),
            claim,
        );
        // Far in the future cannot overflow.
        assert!(strict.verify_at(&at(i64::MAX), NOW).is_err());
        assert!(strict.verify_at(&at(i64::MIN), NOW).is_ok());
    }
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

#[test]
fn foreign_unsigned_and_garbled_tokens_say_why() {
    let body = b64(payload(json!({})).to_string().as_bytes());
    let refusal = |token: &str| {
        let e = keys().verify_at(token, NOW).unwrap_err();
        assert_plain(&e);
        e
    };

    let foreign = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &payload(json!({})),
        &EncodingKey::from_secret(b"other"),
    )
    .unwrap();
    let e = refusal(&foreign);
    assert!(matches!(e, TokenError::BadSignature { .. }), "{e}");
    assert!(e.to_string().contains("1 HS secret"), "{e}");

    // alg: none, no signature.
    let unsigned = format!("{}.{body}.", b64(br#"{"alg":"none","typ":"JWT"}"#));
    assert_eq!(refusal(&unsigned), TokenError::Unsigned);
    assert!(refusal(&unsigned).to_string().contains("none"));
    let with = |alg: &str| {
        let header = b64(format!(r#"{{"alg":"{alg}"}}"#).as_bytes());
        refusal(&format!("{header}.{body}.c2ln"))
    };
    // Another HS algorithm: the secret is tried, the signature is wrong.
    assert!(matches!(with("HS384"), TokenError::BadSignature { .. }));
    // A public-key algorithm never meets a secret (algorithm confusion).
    for alg in ["RS256", "ES256", "EdDSA"] {
        let e = with(alg);
        assert!(matches!(e, TokenError::NoKeyFor { .. }), "{e}");
        assert!(e.to_string().contains(alg), "{e}");
    }
    assert_eq!(
        with("whatever"),
        TokenError::UnsupportedAlgorithm("whatever".into())
    );
    // A signed token whose signature is cut off.
    let good = signed(&payload(json!({})));
    let cut = &good[..good.rfind('.').unwrap() + 1];
    assert!(matches!(refusal(cut), TokenError::BadSignature { .. }));

    for garbage in [
        "",
        "garbage",
        "not.a.jwt",
        "a.b",
        "a.b.c.d",
        &format!("{}.{body}.x", b64(b"[1]")),
        &format!("{}.{body}.x", b64(b"{}")),
        &format!("{}.!!!.x", b64(br#"{"alg":"HS256"}"#)),
    ] {
        assert!(
            matches!(refusal(garbage), TokenError::Malformed(_)),
            "{garbage}"
        );
    }

    // A payload that is not an object, correctly signed.
    let list = signed(&json!([1, 2]));
    assert!(matches!(refusal(&list), TokenError::Malformed(_)));

    // A token meant for an audience.
    let aimed = signed(&payload(json!({"aud": "billing"})));
    assert_eq!(refusal(&aimed), TokenError::Audience);
}

#[test]
fn any_of_several_secrets_verifies_and_the_kid_does_not_matter() {
    let both = Verifier::secrets(&[b"old", SECRET], Duration::ZERO);
    let claims = payload(json!({}));
    for (secret, kid) in [(&b"old"[..], None), (SECRET, Some("2026-12"))] {
        let mut header = Header::new(Algorithm::HS512);
        header.kid = kid.map(str::to_string);
        let token =
            jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(secret)).unwrap();
        assert!(both.verify_at(&token, NOW).is_ok());
    }
    let retired = Verifier::secrets(&[SECRET], Duration::ZERO);
    let old = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(b"old"),
    )
    .unwrap();
    assert!(matches!(
        retired.verify_at(&old, NOW),
        Err(TokenError::BadSignature { .. })
    ));
}

#[test]
fn issuer_and_audience_are_checked_when_configured() {
    let sources = KeySources {
        issuer: Some("https://idp.example/".into()),
        audience: vec!["chat".into(), "chat-staging".into()],
        ..KeySources::default()
    };
    let checked = Verifier::new(vec![keys::Key::secret(SECRET, 1)], None, &sources);
    let check = |extra: Value| checked.verify_at(&signed(&payload(extra)), NOW);
    assert!(check(json!({"iss": "https://idp.example/", "aud": "chat"})).is_ok());
    assert!(check(json!({"iss": "https://idp.example/", "aud": ["x", "chat-staging"]})).is_ok());
    let e = check(json!({"aud": "chat"})).unwrap_err();
    assert!(
        matches!(e, TokenError::MissingClaim { claim: "iss", .. }),
        "{e}"
    );
    let e = check(json!({"iss": "https://evil/", "aud": "chat"})).unwrap_err();
    assert!(matches!(e, TokenError::WrongIssuer { .. }), "{e}");
    let e = check(json!({"iss": "https://idp.example/"})).unwrap_err();
    assert!(
        matches!(e, TokenError::MissingClaim { claim: "aud", .. }),
        "{e}"
    );
    let e = check(json!({"iss": "https://idp.example/", "aud": ["billing"]})).unwrap_err();
    assert!(matches!(e, TokenError::WrongAudience { .. }), "{e}");
    assert!(e.to_string().contains("`chat` or `chat-staging`"), "{e}");
    assert_plain(&e);
}

#[test]
fn the_user_id_may_come_from_another_claim() {
    let sources = KeySources {
        user_claim: "https://chat.example/user_id".into(),
        ..KeySources::default()
    };
    let custom = Verifier::new(vec![keys::Key::secret(SECRET, 1)], None, &sources);
    let check = |extra: Value| custom.verify_at(&signed(&payload(extra)), NOW);
    // An Auth0-style `sub` is not a UUID: the custom claim is the user.
    let claims =
        check(json!({"sub": "auth0|5f7c8ec7", "https://chat.example/user_id": CHANNEL})).unwrap();
    assert_eq!(claims.sub, id(CHANNEL));
    for (extra, found) in [
        (json!({"sub": "auth0|5f7c8ec7"}), "missing"),
        (
            json!({"https://chat.example/user_id": "auth0|5f7c8ec7"}),
            "UUID",
        ),
        (json!({"https://chat.example/user_id": 7}), "a number"),
    ] {
        let e = check(extra).unwrap_err();
        assert!(matches!(e, TokenError::UserClaim { .. }), "{e}");
        let text = e.to_string();
        assert!(
            text.contains("https://chat.example/user_id") && text.contains(found),
            "{text}"
        );
        assert_plain(&e);
    }
}

/// The public-key checks (on `ring`, `token::crypto`): each algorithm
/// verifies its own key's tokens, and refuses another key's and a changed
/// payload. The keys are the harness's test fixtures.
#[test]
fn public_key_tokens_verify_with_their_key_only() {
    let keys_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("harness/keys");
    let cases = [
        ("rsa-a", "rsa-b", Algorithm::RS256),
        ("rsa-a", "rsa-b", Algorithm::RS512),
        ("rsa-a", "rsa-b", Algorithm::PS256),
        ("rsa-a", "rsa-b", Algorithm::PS384),
        ("ec256", "rsa-a", Algorithm::ES256),
        ("ec384", "ec256", Algorithm::ES384),
        ("ed25519", "ec256", Algorithm::EdDSA),
    ];
    let now = chrono::Utc::now().timestamp();
    let claims = dev_claims(
        id(OTHER),
        Duration::from_secs(600),
        None,
        Grant::All,
        vec![],
    );
    for (key, other, alg) in cases {
        let sources = KeySources {
            public_keys: vec![keys_dir.join(format!("{key}.pub.pem"))],
            ..KeySources::default()
        };
        let mut loaded = vec![];
        for path in &sources.public_keys {
            loaded.push(keys::Key::public_pem(path).unwrap());
        }
        let verifier = Verifier::new(loaded, None, &sources);
        let signer = Signer::private_pem(&keys_dir.join(format!("{key}.pem")), Some(alg)).unwrap();
        let token = signer.mint(&claims).unwrap();
        assert_eq!(
            verifier.verify_at(&token, now).unwrap().sub,
            claims.sub,
            "{alg:?}"
        );

        // Another key's token of a fitting algorithm, or of none.
        let foreign = Signer::private_pem(&keys_dir.join(format!("{other}.pem")), None).unwrap();
        let e = verifier
            .verify_at(&foreign.mint(&claims).unwrap(), now)
            .unwrap_err();
        assert!(
            matches!(
                e,
                TokenError::BadSignature { .. } | TokenError::NoKeyFor { .. }
            ),
            "{alg:?}: {e}"
        );
        // The payload changed under the signature.
        let mut parts: Vec<&str> = token.split('.').collect();
        let forged = b64(payload(json!({"sub": CHANNEL})).to_string().as_bytes());
        parts[1] = &forged;
        let e = verifier.verify_at(&parts.join("."), now).unwrap_err();
        assert!(matches!(e, TokenError::BadSignature { .. }), "{alg:?}: {e}");
    }
}
