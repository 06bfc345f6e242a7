//! `token`: a JWT with the asked claims, signed with the given, the
//! environment's or `--dev`'s secret; bad input and a token born expired
//! refused with exit 2.

use switchboard::channel::Id;
use switchboard::token::{Grant, Role, Verifier};

use crate::{run, switchboard, temp};

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

#[test]
fn token_mints_a_jwt_with_the_asked_claims() {
    let dir = temp();
    let sub = Id::new_v4();
    let before = now();
    let out = run(
        switchboard(dir.path()).args([
            "token",
            "--sub",
            &sub.to_string(),
            "--channels",
            "*",
            "--roles",
            "publisher",
            "--jwt-secret",
            "s",
        ]),
        None,
    )
    .ok();
    let jwt = out.stdout.trim();
    assert_eq!(out.stdout.lines().count(), 1);
    let claims = Verifier::secrets(&[b"s"], std::time::Duration::ZERO)
        .verify_cached(jwt)
        .expect("a valid token");
    assert_eq!(claims.sub, sub);
    assert_eq!(claims.channels, Grant::All);
    assert_eq!(claims.roles, [Role::Publisher]);
    assert_eq!(claims.name, None);
    assert!(
        (before + 3600..=now() + 3600).contains(&claims.exp),
        "one hour by default"
    );
    assert!(
        Verifier::secrets(&[b"other"], std::time::Duration::ZERO)
            .verify_cached(jwt)
            .is_err(),
        "signed with the given secret only"
    );

    let (c1, c2) = (Id::new_v4(), Id::new_v4());
    let channels = format!("channel:{c1}, {}", c2.to_string().to_uppercase());
    let before = now();
    let out = run(
        switchboard(dir.path())
            .args(["token", "--sub", &sub.to_string().to_uppercase()])
            .args(["--channels", &channels, "--roles", "publisher,auditor"])
            .args(["--name", "ann", "--ttl", "2h"])
            .env("SWITCHBOARD_JWT_SECRET", "from-env"),
        None,
    )
    .ok();
    let claims = Verifier::secrets(&[b"from-env"], std::time::Duration::ZERO)
        .verify_cached(out.stdout.trim())
        .expect("a valid token");
    assert_eq!(claims.sub, sub);
    assert_eq!(claims.channels, Grant::Some(vec![c1, c2]));
    assert_eq!(claims.roles, [Role::Publisher, Role::Auditor]);
    assert_eq!(claims.name.as_deref(), Some("ann"));
    assert!((before + 7200..=now() + 7200).contains(&claims.exp));

    let out = run(
        switchboard(dir.path()).args(["token", "--sub", &sub.to_string(), "--dev"]),
        None,
    )
    .ok();
    let claims = Verifier::secrets(
        &[switchboard::settings::DEV_SECRET.as_bytes()],
        std::time::Duration::ZERO,
    )
    .verify_cached(out.stdout.trim())
    .expect("--dev signs with the development secret");
    assert_eq!(claims.channels, Grant::None);
    assert!(claims.roles.is_empty());
}

#[test]
fn token_with_bad_input_exits_2() {
    let dir = temp();
    let sub = Id::new_v4().to_string();
    for (args, words) in [
        (
            vec!["--sub", "nope", "--jwt-secret", "s"],
            vec!["--sub", "nope"],
        ),
        (
            vec!["--sub", &sub.replace('-', ""), "--jwt-secret", "s"],
            vec!["--sub"],
        ),
        (
            vec![
                "--sub",
                &sub,
                "--roles",
                "publisher,owner",
                "--jwt-secret",
                "s",
            ],
            vec!["--roles", "owner"],
        ),
        (
            vec!["--sub", &sub, "--alg", "RS256", "--jwt-secret", "s"],
            vec!["--alg", "RS256", "--key"],
        ),
        (
            vec!["--sub", &sub, "--alg", "HS999", "--jwt-secret", "s"],
            vec!["--alg", "HS999"],
        ),
        (
            vec!["--sub", &sub, "--key", "/nonexistent/key.pem"],
            vec!["--key", "/nonexistent/key.pem"],
        ),
        (
            vec!["--sub", &sub, "--channels", "general", "--jwt-secret", "s"],
            vec!["--channels", "general"],
        ),
        (
            vec!["--sub", &sub, "--ttl", "forever", "--jwt-secret", "s"],
            vec!["ttl", "forever"],
        ),
        (vec!["--sub", &sub], vec!["SWITCHBOARD_JWT_SECRET"]),
        (vec!["--jwt-secret", "s"], vec!["--sub"]),
    ] {
        let out = run(switchboard(dir.path()).arg("token").args(&args), None);
        out.usage_error(&words);
        assert!(out.stdout.is_empty(), "no token printed for {args:?}");
    }
}

#[test]
fn a_token_born_expired_is_refused() {
    let dir = temp();
    let sub = Id::new_v4().to_string();
    for ttl in ["0s", "0ms"] {
        let out = run(
            switchboard(dir.path()).args(["token", "--dev", "--sub", &sub, "--ttl", ttl]),
            None,
        );
        out.usage_error(&["--ttl", "minimum 1s"]);
        assert!(!out.stderr.contains("SWITCHBOARD_TTL"), "{}", out.stderr);
        assert!(out.stdout.is_empty());
    }
}
