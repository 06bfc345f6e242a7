//! Tokens and HTTP answers at the edge, against the real binary: every
//! refused token gets a 401 that says why in a person's words, every form of
//! the `channels` claim works, the clock rules and their leeway setting
//! hold, 404/405/411/413/400 bodies name no internal type and quote no whole
//! body, a repeated publish id answers `duplicate`, and `HEAD` works on the
//! health routes.

use std::net::SocketAddr;

use serde_json::{json, Value};
use switchboard::channel::{Channel, Id};
use switchboard::token::{Grant, Role};
use switchboard_harness::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Words from parsers and frameworks that no answer may carry.
const INTERNAL: &[&str] = &[
    "untagged",
    "enum",
    "variant",
    "Raw",
    "JSON error",
    "Rejection",
    "PayloadTooLarge",
    "MethodNotAllowed",
    "LengthRequired",
    "HS384",
];

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// A token signed with the gateway's secret over `payload`, whatever it holds.
fn signed(payload: &Value) -> String {
    signed_with(payload, SECRET.as_bytes())
}

fn signed_with(payload: &Value, secret: &[u8]) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        payload,
        &jsonwebtoken::EncodingKey::from_secret(secret),
    )
    .expect("mint")
}

/// A valid payload for `user`, with `extra` merged in.
fn payload(user: Id, extra: Value) -> Value {
    let mut p = json!({"sub": user.to_string(), "exp": now() + 3600});
    for (k, v) in extra.as_object().expect("an object") {
        p[k] = v.clone();
    }
    p
}

fn unsigned(payload: &Value) -> String {
    headed(br#"{"alg":"none","typ":"JWT"}"#, payload, "")
}

/// A token with this header and a made-up signature.
fn headed(header: &[u8], payload: &Value, signature: &str) -> String {
    use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
    format!(
        "{}.{}.{signature}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(payload.to_string())
    )
}

#[track_caller]
fn assert_no_internal_names(what: &str, body: &str) {
    for word in INTERNAL {
        assert!(!body.contains(word), "{what}: `{word}` in {body}");
    }
}

/// The error message of a JSON error body, after checking its shape.
#[track_caller]
fn message_of(what: &str, body: &str, code: &str) -> String {
    assert_no_internal_names(what, body);
    let value: Value = serde_json::from_str(body)
        .unwrap_or_else(|e| panic!("{what}: the body is not JSON ({e}): {body}"));
    assert_eq!(value["error"]["code"], code, "{what}: {body}");
    value["error"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("{what}: no message: {body}"))
        .to_string()
}

/// The upgrade's 401 body (a plain GET: the token is checked first) and the
/// publish route's, which must say the same.
async fn refusal(gateway: &Gateway, token: &str) -> String {
    let http = http();
    let ws = http
        .get(gateway.http(&format!("/v1/ws?token={token}")))
        .send()
        .await
        .expect("upgrade request");
    assert_eq!(ws.status(), 401, "upgrade with {token}");
    let challenge = ws
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(challenge.starts_with("Bearer"), "{challenge}");
    let ws_message = message_of("upgrade", &ws.text().await.expect("body"), "unauthorized");

    let publish = http
        .post(gateway.http("/v1/events"))
        .bearer_auth(token)
        .json(&json!({"type": "channel_deleted", "data": {"channel_id": Id::new_v4().to_string()}}))
        .send()
        .await
        .expect("publish request");
    assert_eq!(publish.status(), 401, "publish with {token}");
    let publish_message = message_of(
        "publish",
        &publish.text().await.expect("body"),
        "unauthorized",
    );
    assert_eq!(ws_message, publish_message, "one reason for both routes");
    ws_message
}

#[tokio::test]
async fn every_refused_token_gets_a_401_saying_why() {
    let nats = nats();
    let gateway = Gateway::start(&nats);
    let user = Id::new_v4();
    let publisher = |extra: Value| {
        let mut p = payload(user, extra);
        p["roles"] = json!(["publisher"]);
        p
    };
    let cases: Vec<(&str, String, &[&str])> = vec![
        (
            "expired",
            signed(&publisher(json!({"exp": now() - 120}))),
            &["expired"],
        ),
        (
            "bad signature",
            signed_with(&publisher(json!({})), b"another secret"),
            &["bad signature", "secret"],
        ),
        (
            "channels a word",
            signed(&publisher(json!({"channels": "all"}))),
            &["claim `channels` is malformed", "expected \"*\" or a list"],
        ),
        (
            "channels with a bad item",
            signed(&publisher(json!({"channels": ["*", 42]}))),
            &["claim `channels` is malformed", "item 2"],
        ),
        (
            "sub not a UUID",
            signed(&publisher(json!({"sub": "ann"}))),
            &["claim `sub` is malformed", "UUID"],
        ),
        (
            "nbf in the future",
            signed(&publisher(json!({"nbf": now() + 3600}))),
            &["not valid yet", "nbf", "leeway"],
        ),
        (
            "iat in the future",
            signed(&publisher(json!({"iat": now() + 3600}))),
            &["iat", "ahead", "leeway"],
        ),
        (
            "alg none",
            unsigned(&publisher(json!({}))),
            &["none", "not signed"],
        ),
        (
            "a public-key algorithm with only a secret configured",
            headed(br#"{"alg":"RS256"}"#, &publisher(json!({})), "c2ln"),
            &["RS256", "no key", "1 HS secret"],
        ),
        (
            "an algorithm the gateway does not know",
            headed(br#"{"alg":"XS256"}"#, &publisher(json!({})), "c2ln"),
            &["XS256", "does not verify"],
        ),
        (
            "an audience with none configured",
            signed(&publisher(json!({"aud": "billing"}))),
            &["audience", "SWITCHBOARD_JWT_AUDIENCE"],
        ),
        ("not a JWT", "not.a.jwt".to_string(), &["not a JWT"]),
    ];
    for (name, token, needles) in cases {
        let message = refusal(&gateway, &token).await;
        for needle in needles {
            assert!(
                message.contains(needle),
                "{name}: `{needle}` not in {message}"
            );
        }
        assert!(message.len() < 400, "{name}: {message}");
    }

    // No token at all.
    let missing = http()
        .get(gateway.http("/v1/ws"))
        .send()
        .await
        .expect("request");
    assert_eq!(missing.status(), 401);
    let message = message_of(
        "missing",
        &missing.text().await.expect("body"),
        "unauthorized",
    );
    assert!(message.contains("no token"), "{message}");
    assert!(
        message.contains("?token="),
        "the upgrade takes ?token=: {message}"
    );
    // The HTTP API takes the header only, and says so.
    let missing = http()
        .get(gateway.http("/v1/history/global"))
        .send()
        .await
        .expect("request");
    assert_eq!(missing.status(), 401);
    let message = message_of(
        "missing on history",
        &missing.text().await.expect("body"),
        "unauthorized",
    );
    assert!(
        message.contains("only for `/v1/ws`"),
        "history does not take ?token=: {message}"
    );

    // A long claim is quoted as an excerpt, never whole.
    let long = signed(&publisher(json!({"channels": ["x".repeat(3000)]})));
    assert!(refusal(&gateway, &long).await.len() < 400);
}

#[tokio::test]
async fn every_form_of_the_channels_claim_subscribes() {
    let nats = nats();
    let gateway = Gateway::start(&nats);
    let d = Id::new_v4();
    let publisher = token(Id::new_v4(), Grant::None, &[Role::Publisher]);

    // `["*"]`, and a `"*"` among ids, mean every channel.
    for channels in [json!(["*"]), json!([d.to_string(), "*"]), json!("*")] {
        let star = signed(&payload(Id::new_v4(), json!({ "channels": channels })));
        let c = Id::new_v4();
        let mut client = Client::connect(&gateway, &star).await;
        client.subscribe(chat(c)).await;
        let reply = http()
            .post(gateway.http("/v1/events"))
            .bearer_auth(&publisher)
            .json(&json!({"type": "message_deleted",
                "data": {"channel_id": c.to_string(), "message_id": Id::new_v4().to_string()}}))
            .send()
            .await
            .expect("publish");
        assert_eq!(reply.status(), 200);
        let event = client.next().await;
        assert_eq!(event["type"], "message_deleted", "{channels}: {event}");
        assert_eq!(event["data"]["channel_id"], c.to_string());
        client.close().await;
    }

    // Ids with and without the `channel:` prefix grant those channels only.
    let e = Id::new_v4();
    let listed = signed(&payload(
        Id::new_v4(),
        json!({ "channels": [format!("channel:{d}"), e.to_string()] }),
    ));
    let mut client = Client::connect(&gateway, &listed).await;
    client.subscribe(chat(d)).await;
    client.subscribe(chat(e)).await;
    client
        .send(json!({"type": "subscribe", "channel": Channel::Chat(Id::new_v4()).to_string(), "request_id": "no"}))
        .await;
    let refused = client.next().await;
    assert_eq!(refused["type"], "error", "{refused}");
    assert_eq!(refused["data"]["code"], "forbidden", "{refused}");
}

#[tokio::test]
async fn nbf_and_iat_are_allowed_the_configured_leeway_only() {
    let nats = nats();
    let strict = Gateway::start(&nats);
    let lenient = Gateway::start_with(&nats, &["--token-leeway", "2m"]);
    for claim in ["nbf", "iat"] {
        let ahead = signed(&payload(
            Id::new_v4(),
            json!({ claim: now() + 60, "channels": "*" }),
        ));
        // The default leeway (5 s) refuses a minute ahead...
        let message = refusal_of_upgrade(&strict, &ahead).await;
        assert!(message.contains(claim), "{message}");
        assert!(message.contains("5 s leeway"), "{message}");
        // ...the configured two minutes accept it.
        let mut client = Client::connect(&lenient, &ahead).await;
        client.subscribe(Channel::Global).await;
        // A claim in the past is fine everywhere.
        let past = signed(&payload(Id::new_v4(), json!({ claim: now() - 60 })));
        Client::connect(&strict, &past).await.close().await;
    }
}

async fn refusal_of_upgrade(gateway: &Gateway, token: &str) -> String {
    let reply = http()
        .get(gateway.http(&format!("/v1/ws?token={token}")))
        .send()
        .await
        .expect("request");
    assert_eq!(reply.status(), 401);
    message_of(
        "upgrade",
        &reply.text().await.expect("body"),
        "unauthorized",
    )
}

/// Writes `request` on a fresh connection and reads the answer to its end.
async fn exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut socket = tokio::net::TcpStream::connect(addr).await.expect("connect");
    socket.write_all(request).await.expect("write");
    let mut answer = Vec::new();
    tokio::time::timeout(PATIENCE, socket.read_to_end(&mut answer))
        .await
        .expect("an answer in time")
        .expect("read");
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn http_refusals_say_what_to_do_in_plain_words() {
    let nats = nats();
    let gateway = Gateway::start(&nats);
    let http = http();
    let publisher = token(Id::new_v4(), Grant::None, &[Role::Publisher]);

    // 413: a body over the limit.
    let big = json!({"type": "channel_deleted", "data": {"channel_id": "x".repeat(300 * 1024)}});
    let reply = http
        .post(gateway.http("/v1/events"))
        .bearer_auth(&publisher)
        .json(&big)
        .send()
        .await
        .expect("post");
    assert_eq!(reply.status(), 413);
    let message = message_of("413", &reply.text().await.expect("body"), "too_large");
    assert!(message.contains("256 KiB"), "{message}");

    // 404 and 405 list the routes.
    let reply = http.get(gateway.http("/nope")).send().await.expect("get");
    assert_eq!(reply.status(), 404);
    let message = message_of("404", &reply.text().await.expect("body"), "not_found");
    assert!(message.contains("POST /v1/events"), "{message}");
    for (method, path) in [
        (reqwest::Method::PUT, "/healthz"),
        (reqwest::Method::DELETE, "/v1/events"),
        (reqwest::Method::POST, "/v1/ws"),
    ] {
        let reply = http
            .request(method.clone(), gateway.http(path))
            .send()
            .await
            .expect("request");
        assert_eq!(reply.status(), 405, "{method} {path}");
        let message = message_of(
            "405",
            &reply.text().await.expect("body"),
            "method_not_allowed",
        );
        assert!(message.contains("GET /healthz"), "{message}");
    }

    // 411: a chunked publish (no Content-Length) is refused before reading.
    let answer = exchange(
        gateway.addr,
        format!(
            "POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {publisher}\r\n\
             Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n0\r\n\r\n"
        )
        .as_bytes(),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 411"), "{answer}");
    let body = &answer[answer.find("\r\n\r\n").expect("a head") + 4..];
    let message = message_of("411", body, "length_required");
    assert!(message.contains("Content-Length"), "{message}");

    // 400: the schema error names the field and quotes only an excerpt.
    let long_id = "y".repeat(200 * 1024);
    for body in [
        json!({"type": "channel_deleted", "data": {"channel_id": long_id}}),
        json!({"type": long_id, "data": {}}),
        json!({"type": "channel_deleted", "data": {}, long_id.clone(): true}),
    ] {
        let reply = http
            .post(gateway.http("/v1/events"))
            .bearer_auth(&publisher)
            .json(&body)
            .send()
            .await
            .expect("post");
        assert_eq!(reply.status(), 400);
        let text = reply.text().await.expect("body");
        assert!(text.len() < 2048, "{} bytes: {}…", text.len(), &text[..300]);
        message_of("400", &text, "bad_request");
    }
    let reply = http
        .post(gateway.http("/v1/events"))
        .bearer_auth(&publisher)
        .body(format!("{{\"type\": \"{long_id}"))
        .send()
        .await
        .expect("post");
    assert_eq!(reply.status(), 400);
    let text = reply.text().await.expect("body");
    assert!(text.len() < 2048, "{} bytes", text.len());
    let message = message_of("400", &text, "bad_request");
    assert!(message.contains("not JSON"), "{message}");
}

#[tokio::test]
async fn a_repeated_publish_id_answers_duplicate_with_the_original_seq() {
    let nats = nats();
    let gateway = Gateway::start(&nats);
    let publisher = token(Id::new_v4(), Grant::None, &[Role::Publisher]);
    let post = |body: Value| {
        let request = http()
            .post(gateway.http("/v1/events"))
            .bearer_auth(&publisher)
            .json(&body);
        async move {
            let reply = request.send().await.expect("post");
            assert_eq!(reply.status(), 200);
            reply.json::<Value>().await.expect("json")
        }
    };
    let c = Id::new_v4();
    let id = Id::new_v4().to_string();
    let message = json!({"type": "message_deleted", "id": id,
        "data": {"channel_id": c.to_string(), "message_id": Id::new_v4().to_string()}});
    let first = post(message.clone()).await;
    assert!(first.get("duplicate").is_none(), "{first}");
    // Something else in between: the repeat's seq is not simply the latest.
    let other = post(json!({"type": "message_deleted",
        "data": {"channel_id": c.to_string(), "message_id": Id::new_v4().to_string()}}))
    .await;
    assert!(other["seq"].as_u64() > first["seq"].as_u64());
    let again = post(message).await;
    assert_eq!(again["duplicate"], true, "{again}");
    assert_eq!(again["seq"], first["seq"], "the original seq");
    assert_eq!(again["id"], first["id"]);
    assert_eq!(again["timestamp"], first["timestamp"], "the original time");

    // A moderation event repeats its user copy's seq too.
    let ban = json!({"type": "user_banned", "id": Id::new_v4().to_string(),
        "data": {"channel_id": c.to_string(), "user_id": Id::new_v4().to_string(), "motive": "spam"}});
    let first = post(ban.clone()).await;
    let again = post(ban).await;
    assert_eq!(again["duplicate"], true, "{again}");
    assert_eq!(
        (&again["seq"], &again["user_seq"]),
        (&first["seq"], &first["user_seq"])
    );
}

#[tokio::test]
async fn head_on_the_health_routes_answers_like_get_without_a_body() {
    let nats = nats();
    let gateway = Gateway::start(&nats);
    for (path, text) in [("/healthz", "ok"), ("/readyz", "ready")] {
        let head = http().head(gateway.http(path)).send().await.expect("head");
        assert_eq!(head.status(), 200, "HEAD {path}");
        let get = http().get(gateway.http(path)).send().await.expect("get");
        assert_eq!(get.status(), 200, "GET {path}");
        assert_eq!(
            head.headers().get("content-length"),
            get.headers().get("content-length"),
            "{path}"
        );

        // On one connection: HEAD, then GET. Had HEAD sent a body, it would
        // come before the GET's status line.
        let mut socket = tokio::net::TcpStream::connect(gateway.addr)
            .await
            .expect("connect");
        let request = format!("HEAD {path} HTTP/1.1\r\nHost: x\r\n\r\n");
        socket.write_all(request.as_bytes()).await.expect("write");
        let mut seen = Vec::new();
        let mut buf = [0u8; 1024];
        while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = tokio::time::timeout(PATIENCE, socket.read(&mut buf))
                .await
                .expect("HEAD answered in time")
                .expect("read");
            assert!(n > 0, "closed after {:?}", String::from_utf8_lossy(&seen));
            seen.extend_from_slice(&buf[..n]);
        }
        let head_end = seen
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("end of head")
            + 4;
        let head_text = String::from_utf8_lossy(&seen[..head_end]).into_owned();
        assert!(head_text.starts_with("HTTP/1.1 200"), "{head_text}");
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        socket.write_all(request.as_bytes()).await.expect("write");
        let mut rest = seen[head_end..].to_vec();
        tokio::time::timeout(PATIENCE, socket.read_to_end(&mut rest))
            .await
            .expect("GET answered in time")
            .expect("read");
        let rest = String::from_utf8_lossy(&rest);
        assert!(
            rest.starts_with("HTTP/1.1 200"),
            "after HEAD {path}: {rest}"
        );
        assert!(rest.ends_with(text), "{rest}");
    }
}
