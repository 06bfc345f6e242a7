//! Browsers on other origins (`allowed_origins`): CORS answers for the HTTP
//! API, preflights included, and WebSocket upgrades refused with 403 before
//! any socket exists when the page's origin is not allowed. The gateway's
//! own origins (from its listen address, never from the request's `Host`:
//! DNS rebinding) are always allowed; `--dev` allows any when none is set;
//! requests without an `Origin` (not from a page) are never refused for it.
//! Real nats-server, real binary.

use serde_json::json;
use switchboard::channel::Id;
use switchboard::token::{Grant, Role};
use switchboard_harness::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// A WebSocket upgrade from a page of `origin`: the HTTP status it got
/// (101 when it became a WebSocket, whose first frame is then `hello`).
async fn upgrade_from(gateway: &Gateway, origin: &str) -> u16 {
    let token = token(Id::new_v4(), Grant::All, &[]);
    let mut request = gateway
        .ws_url(&token)
        .into_client_request()
        .expect("request");
    request
        .headers_mut()
        .insert("origin", origin.parse().expect("header"));
    match tokio_tungstenite::connect_async(request).await {
        Ok((mut ws, response)) => {
            use futures::StreamExt;
            let first = ws.next().await.expect("a frame").expect("a frame");
            assert!(
                first.to_text().unwrap_or("").contains("\"hello\""),
                "{first:?}"
            );
            response.status().as_u16()
        }
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(e) => panic!("upgrade from {origin}: {e}"),
    }
}

/// A preflight for `POST /v1/events` from `origin`.
async fn preflight(gateway: &Gateway, origin: &str) -> reqwest::Response {
    http()
        .request(reqwest::Method::OPTIONS, gateway.http("/v1/events"))
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization, content-type",
        )
        .send()
        .await
        .expect("preflight")
}

/// `POST /v1/events` with a publisher token, from a page of `origin` (or
/// from no page).
async fn publish_from(gateway: &Gateway, origin: Option<&str>) -> reqwest::Response {
    let publisher = token(Id::new_v4(), Grant::None, &[Role::Publisher]);
    let data = json!({"channel_id": Id::new_v4(), "channel_name": "general"});
    let mut request = http().post(gateway.http("/v1/events"));
    if let Some(origin) = origin {
        request = request.header("origin", origin);
    }
    request
        .bearer_auth(&publisher)
        .json(&json!({"type": "channel_created", "data": data}))
        .send()
        .await
        .expect("post")
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    response.headers().get(name).and_then(|v| v.to_str().ok())
}

#[tokio::test]
async fn only_the_gateways_own_origin_by_default() {
    let nats = nats();
    let gateway = Gateway::start(&nats);
    let own = format!("http://{}", gateway.addr);

    assert_eq!(upgrade_from(&gateway, "http://evil.test").await, 403);
    assert_eq!(upgrade_from(&gateway, &own).await, 101);

    let refused = preflight(&gateway, "http://evil.test").await;
    assert_eq!(refused.status(), 403);
    assert!(header(&refused, "access-control-allow-origin").is_none());
    let body = refused.text().await.expect("body");
    assert!(body.contains("allowed_origins"), "{body}");

    let post = publish_from(&gateway, Some("http://evil.test")).await;
    assert_eq!(post.status(), 403, "a refused origin's request never runs");

    let same = http()
        .get(gateway.http("/healthz"))
        .header("origin", own.as_str())
        .send()
        .await
        .expect("healthz");
    assert_eq!(same.status(), 200);
    assert_eq!(
        header(&same, "access-control-allow-origin"),
        Some(own.as_str())
    );

    // Not from a page: no Origin, never refused for it.
    let plain = publish_from(&gateway, None).await;
    assert_eq!(plain.status(), 200);
    assert!(header(&plain, "access-control-allow-origin").is_none());
}

#[tokio::test]
async fn listed_origins_get_cors_answers_and_websockets() {
    let nats = nats();
    let gateway = Gateway::start_with(
        &nats,
        &[
            "--allowed-origins",
            "http://app.test,https://other.test:8443",
        ],
    );
    let app = "http://app.test";

    let allowed = preflight(&gateway, app).await;
    assert_eq!(allowed.status(), 204);
    assert_eq!(header(&allowed, "access-control-allow-origin"), Some(app));
    let methods = header(&allowed, "access-control-allow-methods").unwrap_or("");
    assert!(methods.contains("POST"), "{methods}");
    let headers = header(&allowed, "access-control-allow-headers").unwrap_or("");
    assert!(headers.contains("authorization") && headers.contains("content-type"));

    let post = publish_from(&gateway, Some(app)).await;
    assert_eq!(post.status(), 200);
    assert_eq!(header(&post, "access-control-allow-origin"), Some(app));
    assert_eq!(header(&post, "vary"), Some("Origin"));

    assert_eq!(upgrade_from(&gateway, app).await, 101);
    assert_eq!(upgrade_from(&gateway, "https://other.test:8443").await, 101);
    assert_eq!(upgrade_from(&gateway, "https://app.test").await, 403);
    assert_eq!(preflight(&gateway, "http://evil.test").await.status(), 403);
}

#[tokio::test]
async fn dev_mode_allows_any_origin_unless_told_otherwise() {
    let nats = nats();
    let dev = Gateway::start_with(&nats, &["--dev"]);
    assert_eq!(upgrade_from(&dev, "http://anything.test").await, 101);
    let answer = preflight(&dev, "null").await;
    assert_eq!(answer.status(), 204);
    assert_eq!(header(&answer, "access-control-allow-origin"), Some("null"));

    let strict = Gateway::start_with(&nats, &["--dev", "--allowed-origins", "http://app.test"]);
    assert_eq!(upgrade_from(&strict, "http://anything.test").await, 403);
    assert_eq!(upgrade_from(&strict, "http://app.test").await, 101);
}

#[tokio::test]
async fn a_malformed_setting_stops_serve_and_names_it() {
    let nats = nats();
    let data = tempfile::tempdir().expect("temp dir");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--nats-url",
            &nats.url(),
        ])
        .arg("--data-dir")
        .arg(data.path())
        .args(["--jwt-secret", SECRET, "--allowed-origins", "app.test"])
        .output()
        .expect("serve runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("allowed_origins") || stderr.contains("allowed-origins"),
        "{stderr}"
    );
}

/// Sends `request` (a whole head, and a body if any) over a new socket and
/// returns the status of the answer.
async fn raw_status(gateway: &Gateway, request: &str) -> u16 {
    let mut socket = TcpStream::connect(gateway.addr).await.expect("connect");
    socket.write_all(request.as_bytes()).await.expect("request");
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.windows(2).any(|w| w == b"\r\n") {
        let n = tokio::time::timeout(PATIENCE, socket.read(&mut buf))
            .await
            .expect("an answer in time")
            .expect("read");
        assert!(n > 0, "closed without an answer");
        got.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&got);
    text.get(9..12)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {text:?}"))
}

#[tokio::test]
async fn the_requests_host_never_makes_an_origin_the_gateways_own() {
    let nats = nats();
    let gateway = Gateway::start(&nats);
    let port = gateway.addr.port();
    let user = token(Id::new_v4(), Grant::All, &[]);
    let publisher = token(Id::new_v4(), Grant::None, &[Role::Publisher]);
    let body = json!({"type": "channel_created", "data": {
        "channel_id": Id::new_v4(), "channel_name": "general"}})
    .to_string();
    let requests = |host: &str, origin: &str| {
        [
            format!(
                "GET /v1/ws?token={user} HTTP/1.1\r\nHost: {host}\r\nOrigin: {origin}\r\n\
                 Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
                 Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
            ),
            format!(
                "POST /v1/events HTTP/1.1\r\nHost: {host}\r\nOrigin: {origin}\r\n\
                 Authorization: Bearer {publisher}\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\n\r\n{body}",
                body.len()
            ),
            format!("GET /healthz HTTP/1.1\r\nHost: {host}\r\nOrigin: {origin}\r\n\r\n"),
            format!(
                "OPTIONS /v1/events HTTP/1.1\r\nHost: {host}\r\nOrigin: {origin}\r\n\
                 Access-Control-Request-Method: POST\r\n\r\n"
            ),
        ]
    };

    // DNS rebinding: a page of evil.test, its name resolved to the gateway,
    // sends a `Host` that matches its `Origin`.
    let rebound = [
        ("evil.test".to_string(), "http://evil.test".to_string()),
        (
            format!("evil.test:{port}"),
            format!("http://evil.test:{port}"),
        ),
        // The gateway's own name, but another scheme or port.
        (
            format!("127.0.0.1:{port}"),
            format!("https://127.0.0.1:{port}"),
        ),
        (
            format!("localhost:{port}"),
            format!("http://localhost:{}", port.wrapping_add(1)),
        ),
    ];
    for (host, origin) in &rebound {
        for request in requests(host, origin) {
            let line = request.lines().next().unwrap_or_default().to_string();
            assert_eq!(
                raw_status(&gateway, &request).await,
                403,
                "{line} from {origin} with Host {host}"
            );
        }
    }

    // Its own origins: the loopback names with its port, whatever the Host.
    let own = [
        format!("http://127.0.0.1:{port}"),
        format!("http://localhost:{port}"),
    ];
    for origin in &own {
        let [upgrade, publish, health, preflight] = requests(&format!("127.0.0.1:{port}"), origin);
        assert_eq!(raw_status(&gateway, &upgrade).await, 101, "{origin}");
        assert_eq!(raw_status(&gateway, &publish).await, 200, "{origin}");
        assert_eq!(raw_status(&gateway, &health).await, 200, "{origin}");
        assert_eq!(raw_status(&gateway, &preflight).await, 204, "{origin}");
        assert_eq!(upgrade_from(&gateway, origin).await, 101, "{origin}");
    }
}
