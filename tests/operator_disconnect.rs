//! The operator's disconnect (`POST /v1/users/{user_id}/disconnect`, the
//! `admin` role) against real gateways: every socket of the user closes
//! with 4003 and the operator's reason, on the node that took the request
//! and on another node of the deployment (through NATS); other users stay;
//! the user's sessions are gone, so a `?session=` resume starts fresh;
//! without the role, 403.

use std::time::Duration;

use serde_json::{json, Value};
use switchboard::channel::{Channel, Id};
use switchboard::token::{Grant, Role};
use switchboard_harness::*;

async fn disconnect(
    gateway: &Gateway,
    user: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = http()
        .post(gateway.http(&format!("/v1/users/{user}/disconnect")))
        .bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// A client of `user` whose session is stored with a subscription to
/// `channel`: it subscribed, dropped abruptly, and resumed it.
async fn with_stored_session(gateway: &Gateway, token: &str, channel: Channel) -> Client {
    let mut first = Client::connect(gateway, token).await;
    first.subscribe(channel).await;
    let session = first.session_id();
    first.abort();
    // The resume reads the session as stored (the store is read after the
    // connection's own writes): resumed, with its subscription.
    let mut resumed = loop {
        let client = Client::connect_session(gateway, token, &session).await;
        if client.hello["data"]["resumed"] == true {
            break client;
        }
        client.close().await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        resumed.hello["data"]["channels"],
        json!([channel.to_string()])
    );
    let restored = resumed.next().await;
    assert_eq!(restored["type"], "subscribed", "{restored}");
    resumed
}

/// Two gateways of one deployment (sessions in the bucket); the user has a
/// socket on each, another user one on the first. The disconnect, asked of
/// the first, closes both of the user's sockets with 4003 and the reason;
/// the other user stays; the session resumes fresh on either node.
#[tokio::test]
async fn disconnect_closes_every_socket_of_the_user_on_every_node_and_drops_their_sessions() {
    let nats = nats();
    let dirs = [
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    ];
    let args = ["--session-store", "kv"];
    let first = Gateway::spawn(&nats.url(), dirs[0].path(), &args);
    let second = Gateway::spawn(&nats.url(), dirs[1].path(), &args);
    let (user, bystander) = (Id::new_v4(), Id::new_v4());
    let user_token = token(user, Grant::All, &[]);
    let mut here = Client::connect(&first, &user_token).await;
    let mut there = with_stored_session(&second, &user_token, Channel::User(user)).await;
    let session = there.session_id();
    let mut other = Client::connect(&first, &token(bystander, Grant::All, &[])).await;

    let admin = token(Id::new_v4(), Grant::None, &[Role::Admin]);
    let (status, body) = disconnect(
        &first,
        &user.to_string(),
        &admin,
        Some(json!({"reason": "password changed"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"closed": 1}),
        "this node closed its one socket"
    );
    for client in [&mut here, &mut there] {
        let (code, reason) = client.closed_with_reason().await;
        assert_eq!((code, reason.as_str()), (4003, "password changed"));
    }
    other.send(json!({"type": "ping", "request_id": "p"})).await;
    assert_eq!(other.next().await["type"], "pong", "another user stays");

    // The session is gone, on both nodes: a resume starts fresh.
    for gateway in [&first, &second] {
        let back = Client::connect_session(gateway, &user_token, &session).await;
        assert_eq!(back.hello["data"]["resumed"], false, "{}", back.hello);
        assert_eq!(back.hello["data"]["channels"], json!([]));
        back.close().await;
    }
}

/// One node with sessions in sled: the same, and the default reason.
#[tokio::test]
async fn disconnect_on_one_node_drops_the_sled_session_too() {
    let nats = nats();
    let gateway = Gateway::start(&nats);
    let user = Id::new_v4();
    let user_token = token(user, Grant::All, &[]);
    let mut client = with_stored_session(&gateway, &user_token, Channel::Global).await;
    let session = client.session_id();
    let mut second = Client::connect(&gateway, &user_token).await;
    let admin = token(Id::new_v4(), Grant::None, &[Role::Admin]);
    let (status, body) = disconnect(&gateway, &user.to_string(), &admin, None).await;
    assert_eq!((status, body), (200, json!({"closed": 2})));
    for c in [&mut client, &mut second] {
        let (code, reason) = c.closed_with_reason().await;
        assert_eq!(
            (code, reason.as_str()),
            (4003, "disconnected by the operator")
        );
    }
    let back = Client::connect_session(&gateway, &user_token, &session).await;
    assert_eq!(back.hello["data"]["resumed"], false, "{}", back.hello);
    // The user may come back (with a token); the disconnect is not a ban.
    let (status, body) = disconnect(&gateway, &user.to_string(), &admin, None).await;
    assert_eq!((status, body), (200, json!({"closed": 1})));
}

#[tokio::test]
async fn disconnect_needs_the_admin_role() {
    let nats = nats();
    let gateway = Gateway::start(&nats);
    let user = Id::new_v4();
    let mut client = Client::connect(&gateway, &token(user, Grant::All, &[])).await;
    let target = user.to_string();
    let publisher = token(Id::new_v4(), Grant::All, &[Role::Publisher, Role::Auditor]);
    let (status, body) = disconnect(&gateway, &target, &publisher, None).await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("`admin`")),
        "{body}"
    );
    let (status, _) = disconnect(&gateway, &target, "not.a.jwt", None).await;
    assert_eq!(status, 401);
    let admin = token(Id::new_v4(), Grant::None, &[Role::Admin]);
    let (status, body) = disconnect(&gateway, "not-a-user", &admin, None).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = disconnect(&gateway, &target, &admin, Some(json!({"reason": 7}))).await;
    assert_eq!(status, 400, "{body}");
    // None of these closed anything.
    client
        .send(json!({"type": "ping", "request_id": "p"}))
        .await;
    assert_eq!(client.next().await["type"], "pong");
}
