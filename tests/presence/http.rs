//! `GET /v1/presence/{channel}` across two gateways on one NATS (work in
//! progress, issue 23): a subscription on one gateway is seen on the
//! other, tabs are counted, dropped connections leave after the grace, and
//! the route wants `auditor` or `admin`.

use std::time::Duration;

use serde_json::{json, Value};
use switchboard::channel::{Channel, Id};
use switchboard::token::{Grant, Role};
use switchboard_harness::*;

async fn presence(gateway: &Gateway, channel: &str, token: &str) -> (u16, Value) {
    let response = http()
        .get(gateway.http(&format!("/v1/presence/{channel}")))
        .bearer_auth(token)
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn presence_is_the_same_on_both_gateways_counts_tabs_and_ends_after_the_grace() {
    let nats = nats();
    let dirs = [
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    ];
    let args = ["--session-store", "kv", "--presence-grace", "1s"];
    let a = Gateway::spawn(&nats.url(), dirs[0].path(), &args);
    let b = Gateway::spawn(&nats.url(), dirs[1].path(), &args);
    let (user, c) = (Id::new_v4(), Id::new_v4());
    let channel = format!("channel:{c}");
    let auditor = token(Id::new_v4(), Grant::None, &[Role::Auditor]);
    let user_token = token_named(user, Grant::All, &[], Some("ann"), Duration::from_secs(600));

    let mut here = Client::connect(&a, &user_token).await;
    here.subscribe(Channel::Chat(c)).await;
    let want_one = json!({"channel": channel, "count": 1, "truncated": false,
        "members": [{"user_id": user.to_string(), "username": "ann", "connections": 1}]});
    wait_until("b to see the subscription on a", || async {
        presence(&b, &channel, &auditor).await == (200, want_one.clone())
    })
    .await;

    let mut there = Client::connect(&b, &user_token).await;
    there.subscribe(Channel::Chat(c)).await;
    wait_until("a to count both tabs", || async {
        presence(&a, &channel, &auditor).await.1["members"][0]["connections"] == 2
    })
    .await;

    // Both drop (a reset, not a close): gone on both after the grace.
    here.abort();
    there.abort();
    for gateway in [&a, &b] {
        wait_until("the user to be gone", || async {
            presence(gateway, &channel, &auditor).await.1["count"] == 0
        })
        .await;
    }

    let (status, _) = presence(&a, &channel, &user_token).await;
    assert_eq!(status, 403, "neither auditor nor admin");
    let admin = token(Id::new_v4(), Grant::None, &[Role::Admin]);
    assert_eq!(presence(&a, &channel, &admin).await.0, 200);
    assert_eq!(presence(&a, "global", &auditor).await.0, 400);
}
