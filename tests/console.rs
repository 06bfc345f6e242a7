//! `GET /console`: the embedded page, its script and style sheet, served
//! without a token under a strict Content-Security-Policy; the development
//! token route exists in `--dev` only, and the page says whether it does.
//! `GET /`: a page naming the gateway and linking its routes, and the icon,
//! under the same policy; other unknown paths stay JSON 404s. Real
//! nats-server, real binary. (The pages themselves are driven in Chromium
//! by clients/typescript/test/browser.test.mjs.)

use std::process::Command;

use switchboard_harness::*;

/// The console's `--dev` marker, as the page is served in and out of `--dev`.
const NOT_DEV: &str = r#"<meta name="switchboard-dev" content="false">"#;
const DEV: &str = r#"<meta name="switchboard-dev" content="true">"#;

/// A strict policy: nothing from elsewhere, no inline script.
fn assert_strict_policy(response: &reqwest::Response, what: &str) {
    let policy = header(response, "content-security-policy");
    assert!(policy.contains("default-src 'none'"), "{what}: {policy}");
    assert!(policy.contains("script-src 'self'"), "{what}: {policy}");
    assert!(!policy.contains("unsafe-inline"), "{what}: {policy}");
}

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
            // Not in --dev: the page does not ask for a development token.
            assert!(body.contains(NOT_DEV), "{body}");
            assert!(!body.contains(DEV), "{body}");
            assert!(
                body.contains(r#"<link rel="icon" href="/favicon.svg""#),
                "{body}"
            );
        } else {
            assert!(body.contains("not built"), "{body}");
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
    if switchboard::console::BUILT {
        let page = http()
            .get(gateway.http("/console"))
            .send()
            .await
            .expect("page");
        let body = page.text().await.expect("body");
        assert!(body.contains(DEV), "the page says --dev: {body}");
        assert!(!body.contains(NOT_DEV), "{body}");
    }
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

#[tokio::test]
async fn the_home_page_names_the_gateway_and_links_its_routes() {
    let nats = nats();
    let gateway = Gateway::start(&nats);
    let page = http().get(gateway.http("/")).send().await.expect("page");
    assert_eq!(page.status(), 200);
    assert!(header(&page, "content-type").starts_with("text/html"));
    assert_strict_policy(&page, "/");
    assert_eq!(header(&page, "x-content-type-options"), "nosniff");
    let body = page.text().await.expect("body");
    let version = env!("CARGO_PKG_VERSION");
    assert!(
        body.contains(&format!("<title>switchboard {version}</title>")),
        "{body}"
    );
    for link in [
        r#"href="/console""#,
        r#"href="/metrics""#,
        r#"href="/healthz""#,
        r#"href="/readyz""#,
        r#"href="/favicon.svg""#,
    ] {
        assert!(body.contains(link), "{link} in {body}");
    }
    for named in ["/v1/ws", "docs/protocol.md", "README.md"] {
        assert!(body.contains(named), "{named} in {body}");
    }
    assert!(!body.contains("<script"), "no script: {body}");
    assert!(!body.contains("style="), "no inline style: {body}");

    let head = http().head(gateway.http("/")).send().await.expect("head");
    assert_eq!(head.status(), 200);
    assert!(header(&head, "content-type").starts_with("text/html"));

    // Any other unknown path is still a JSON 404 that lists the routes.
    for path in ["/index.html", "/nothing/here", "/console/nothing"] {
        let missing = http().get(gateway.http(path)).send().await.expect("404");
        assert_eq!(missing.status(), 404, "{path}");
        assert!(
            header(&missing, "content-type").starts_with("application/json"),
            "{path}"
        );
        let error: serde_json::Value = missing.json().await.expect("json");
        assert_eq!(error["error"]["code"], "not_found", "{error}");
        let message = error["error"]["message"].as_str().unwrap_or("");
        assert!(message.contains("GET /console"), "{message}");
        assert!(message.contains("GET /favicon.ico"), "{message}");
    }
}

#[tokio::test]
async fn the_icon_is_served_at_both_usual_paths() {
    let nats = nats();
    let gateway = Gateway::start(&nats);
    for path in ["/favicon.svg", "/favicon.ico"] {
        let icon = http().get(gateway.http(path)).send().await.expect("icon");
        assert_eq!(icon.status(), 200, "{path}");
        assert_eq!(header(&icon, "content-type"), "image/svg+xml", "{path}");
        assert_strict_policy(&icon, path);
        let body = icon.text().await.expect("body");
        assert!(body.starts_with("<svg "), "{path}: {body}");
        assert!(!body.contains("<script"), "{path}: {body}");
        let head = http().head(gateway.http(path)).send().await.expect("head");
        assert_eq!(head.status(), 200, "{path}");
    }
}

/// The major version of the Node.js on PATH, if any.
fn node_major() -> Option<u32> {
    let out = Command::new("node").arg("--version").output().ok()?;
    let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
    version.strip_prefix('v')?.split('.').next()?.parse().ok()
}

/// The build embeds the console itself whenever Node.js >= 20 is on PATH
/// (build.rs), whether or not `npm run build` ran first: the binary serves
/// the bundled script. Without Node, the page says why it is missing and
/// `serve` warns at startup.
#[tokio::test]
async fn the_binary_has_the_console_when_node_is_available() {
    let nats = nats();
    let gateway = Gateway::start(&nats);
    let page = http()
        .get(gateway.http("/console"))
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("body");
    let script = http()
        .get(gateway.http("/console/console.js"))
        .send()
        .await
        .expect("script")
        .text()
        .await
        .expect("body");
    let built = page.contains("/console/console.js");
    assert_eq!(built, switchboard::console::BUILT, "{page}");
    let node = node_major();
    if node.is_some_and(|major| major >= 20) {
        assert!(
            built,
            "node {node:?} is on PATH, yet the console was not built: {}",
            switchboard::console::MISSING
        );
    }
    if built {
        assert!(switchboard::console::MISSING.is_empty());
        assert!(page.contains("/console/console.js"), "{page}");
        // The bundle: the console and the client, minified into one script.
        assert!(script.len() > 10_000, "{} bytes", script.len());
        assert!(script.contains("WebSocket"), "the bundled client");
    } else {
        assert!(!switchboard::console::MISSING.is_empty());
        assert!(page.contains("not built"), "{page}");
        assert!(page.contains("Node.js"), "{page}");
        assert!(script.is_empty());
        // `serve` says so at startup, with the reason.
        let log = gateway.log_text();
        assert!(log.contains("this binary has no console"), "{log}");
        assert!(log.contains(switchboard::console::MISSING), "{log}");
    }
}
