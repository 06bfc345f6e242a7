//! `GET /console`: the embedded page, its script and style sheet, served
//! without a token under a strict Content-Security-Policy; the development
//! token route exists in `--dev` only. Real nats-server, real binary. (The
//! page itself is driven in Chromium by clients/typescript/test/browser.test.mjs.)

use switchboard_harness::*;

fn header<'a>(response: &'a reqwest::Response, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

#[tokio::test]
async fn the_console_loads_without_a_token_under_a_strict_policy() {
    let nats = nats();
    let gateway = Gateway::start(&nats);
    for path in ["/console", "/console/"] {
        let page = http().get(gateway.http(path)).send().await.expect("page");
        assert_eq!(page.status(), 200, "{path}");
        assert!(
            header(&page, "content-type").starts_with("text/html"),
            "{path}"
        );
        let policy = header(&page, "content-security-policy").to_string();
        assert!(policy.contains("default-src 'none'"), "{policy}");
        assert!(policy.contains("script-src 'self'"), "{policy}");
        assert!(!policy.contains("unsafe-inline"), "{policy}");
        let body = page.text().await.expect("body");
        assert!(body.contains("<html"), "{body}");
        if switchboard::console::BUILT {
            assert!(body.contains("/console/console.js"), "{body}");
        } else {
            assert!(body.contains("just sdk"), "{body}");
        }
    }
    let script = http()
        .get(gateway.http("/console/console.js"))
        .send()
        .await
        .expect("script");
    assert_eq!(script.status(), 200);
    assert!(header(&script, "content-type").starts_with("text/javascript"));
    let style = http()
        .get(gateway.http("/console/console.css"))
        .send()
        .await
        .expect("style");
    assert_eq!(style.status(), 200);
    assert!(header(&style, "content-type").starts_with("text/css"));

    // No development tokens outside --dev.
    let dev = http()
        .get(gateway.http("/console/dev-token"))
        .send()
        .await
        .expect("dev token");
    assert_eq!(dev.status(), 404);
}

#[tokio::test]
async fn dev_mode_mints_a_token_for_the_console() {
    let nats = nats();
    let gateway = Gateway::start_with(&nats, &["--dev"]);
    let response = http()
        .get(gateway.http("/console/dev-token"))
        .send()
        .await
        .expect("dev token");
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "cache-control"), "no-store");
    let body: serde_json::Value = response.json().await.expect("json");
    let token = body["token"].as_str().expect("a token").to_string();

    // Signed with the gateway's secret, for every channel, with both roles.
    let claims =
        switchboard::token::Verifier::secrets(&[SECRET.as_bytes()], std::time::Duration::ZERO)
            .verify_cached(&token)
            .expect("the gateway's own token");
    assert_eq!(claims.channels, switchboard::token::Grant::All);
    assert!(claims.has_role(switchboard::token::Role::Publisher));
    assert!(claims.has_role(switchboard::token::Role::Auditor));
    let client = Client::connect(&gateway, &token).await;
    assert_eq!(client.hello["type"], "hello", "{}", client.hello);
    client.close().await;
}
