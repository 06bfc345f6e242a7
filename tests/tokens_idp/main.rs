//! Tokens from an identity provider, against real nats-servers and the real
//! binary: every algorithm from PEM files and from a JWKS, HS secrets
//! rotated, a real OpenID Connect provider rotating and retiring its keys
//! under connected clients, a provider that is down (the kept key set
//! serves, also across a restart), a key removed from the JWKS, a burst of
//! unknown `kid`s that must not hammer the provider, and every refusal in
//! words.
//!
//! Each module is one concept; what they share is here.

mod algorithms;
mod provider_down;
mod refusals;
mod rotation;
mod unknown_kid;

use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use switchboard::channel::{Channel, Id};
use switchboard::event::Event;
use switchboard_harness::*;

/// How long the tokens the tests mint are valid.
const TTL: Duration = Duration::from_secs(3600);

/// Words from the verifier's types and the JWT library that no refusal may
/// carry: a refusal says what is wrong in a person's words.
const INTERNAL: &[&str] = &[
    "TokenError",
    "Unsigned",
    "NoKeyFor",
    "WrongAlgorithm",
    "UnknownKid",
    "BadSignature",
    "WrongIssuer",
    "WrongAudience",
    "InvalidSignature",
    "InvalidAlgorithm",
    "InvalidKeyFormat",
    "ErrorKind",
    "Error(",
];

/// The unknown-`kid` refusal, as its message starts and ends.
const UNKNOWN_KID: &str = "names no key of this gateway";

/// Claims for `user` (`sub`, `iat`, `exp` in [`TTL`], `channels: "*"`)
/// with `extra` merged in.
fn payload(user: Id, extra: Value) -> Value {
    let mut claims = claims(user, TTL);
    for (k, v) in extra.as_object().expect("extra claims are an object") {
        claims[k] = v.clone();
    }
    claims
}

/// A token of `payload` signed with an HS algorithm and `secret`.
fn hs(alg: Algorithm, secret: &[u8], kid: Option<&str>, payload: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_string);
    jsonwebtoken::encode(&header, payload, &EncodingKey::from_secret(secret)).expect("mint")
}

/// A gateway that verifies with `args` alone (no harness secret).
fn keys_only(nats: &NatsServer, args: &[&str]) -> Gateway {
    Serve::new(&nats.url()).without_secret().args(args).start()
}

/// `token` opens a WebSocket as `user`: `hello` arrives and names them.
async fn connects(gateway: &Gateway, token: &str, user: Id) -> Client {
    let client = Client::try_connect_url(&gateway.ws_url(token))
        .await
        .unwrap_or_else(|e| {
            panic!(
                "upgrade refused ({e}); the HTTP answer: {}",
                refusal_text(gateway, token)
            )
        });
    assert_eq!(client.hello["data"]["user_id"], user.to_string());
    client
}

/// What the gateway says to `token` on a plain GET of the upgrade route
/// (for a failure's report).
fn refusal_text(gateway: &Gateway, token: &str) -> String {
    let url = gateway.http(&format!("/v1/ws?token={token}"));
    std::thread::spawn(move || {
        tokio::runtime::Runtime::new()
            .expect("runtime")
            .block_on(async {
                match http().get(&url).send().await {
                    Ok(r) => format!("{} {}", r.status(), r.text().await.unwrap_or_default()),
                    Err(e) => e.to_string(),
                }
            })
    })
    .join()
    .expect("joined")
}

/// `GET /v1/history/global` with `token`: its status and body.
async fn history(gateway: &Gateway, token: &str) -> (u16, String) {
    let reply = http()
        .get(gateway.http("/v1/history/global"))
        .bearer_auth(token)
        .send()
        .await
        .expect("history request");
    let status = reply.status().as_u16();
    (status, reply.text().await.expect("history body"))
}

/// The 401 message for `token`, the same on the upgrade route and on the
/// HTTP API, after checking it is a JSON `unauthorized` error in words.
async fn refusal(gateway: &Gateway, token: &str) -> String {
    let upgrade = http()
        .get(gateway.http(&format!("/v1/ws?token={token}")))
        .send()
        .await
        .expect("upgrade request");
    assert_eq!(upgrade.status(), 401, "upgrade with {token}");
    let upgrade = message_of(&upgrade.text().await.expect("body"));
    let (status, body) = history(gateway, token).await;
    assert_eq!(status, 401, "history with {token}: {body}");
    assert_eq!(message_of(&body), upgrade, "one reason on both routes");
    upgrade
}

/// The message of a JSON `unauthorized` body, which names no internal type.
#[track_caller]
fn message_of(body: &str) -> String {
    for word in INTERNAL {
        assert!(!body.contains(word), "`{word}` in {body}");
    }
    let value: Value =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("the body is not JSON ({e}): {body}"));
    assert_eq!(value["error"]["code"], "unauthorized", "{body}");
    value["error"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("no message: {body}"))
        .to_string()
}

/// `/readyz`'s body.
async fn readyz(gateway: &Gateway) -> String {
    http()
        .get(gateway.http("/readyz"))
        .send()
        .await
        .expect("readyz")
        .text()
        .await
        .expect("readyz body")
}

/// The key count and age `/readyz` reports: `jwks: N keys from URL,
/// fetched S s ago`.
async fn jwks_line(gateway: &Gateway, url: &str) -> (usize, u64) {
    let body = readyz(gateway).await;
    let line = body
        .lines()
        .find(|l| l.starts_with("jwks: "))
        .unwrap_or_else(|| panic!("no jwks line in /readyz: {body}"));
    let rest = line.strip_prefix("jwks: ").expect("prefix");
    let (keys, rest) = rest.split_once(" keys from ").expect("N keys from");
    let (from, rest) = rest.split_once(", fetched ").expect(", fetched");
    assert_eq!(from, url, "{line}");
    let age = rest.strip_suffix(" s ago").expect("S s ago");
    (
        keys.parse().expect("a key count"),
        age.parse().expect("an age in seconds"),
    )
}

/// The `switchboard_jwks_fetches_total` of `result` (`ok`, `failed`).
async fn fetches(gateway: &Gateway, result: &str) -> f64 {
    gateway
        .metric(&format!(
            "switchboard_jwks_fetches_total{{result=\"{result}\"}}"
        ))
        .await
}

/// Publishes a chat message in a fresh channel to which every client
/// subscribed first, and checks each one receives it.
async fn everyone_receives(nats: &NatsServer, clients: &mut [Client]) {
    let c = Id::new_v4();
    for client in clients.iter_mut() {
        client.subscribe(Channel::Chat(c)).await;
    }
    let log = log(nats).await;
    let event: Event = message(c, "still here");
    log.publish(&event).await.expect("published");
    for client in clients.iter_mut() {
        let frame = client.next().await;
        assert_eq!(frame["id"], event.id.to_string(), "{frame}");
    }
}

/// The `kid` of a token's header.
fn kid_of(token: &str) -> String {
    jsonwebtoken::decode_header(token)
        .expect("a JWT header")
        .kid
        .expect("a kid")
}
