//! The HTTP API beside the WebSocket.

use super::*;

#[tokio::test]
async fn the_http_api() {
    let nats = nats();
    let gateway = Gateway::start(&nats);
    let http = http();
    let c = Id::new_v4();
    let u = Id::new_v4();
    let publisher = token(Id::new_v4(), Grant::None, &[Role::Publisher]);
    let auditor = token(Id::new_v4(), Grant::None, &[Role::Auditor]);
    let nobody = token(Id::new_v4(), Grant::All, &[]);

    let get = |path: &str| http.get(gateway.http(path)).send();
    assert_eq!(get("/healthz").await.expect("healthz").status(), 200);
    assert_eq!(get("/readyz").await.expect("readyz").status(), 200);

    let post = |token: &str, body: Value| {
        http.post(gateway.http("/v1/events"))
            .bearer_auth(token)
            .json(&body)
            .send()
    };
    let created = json!({"type": "channel_created", "data": {"channel_id": c.to_string(), "channel_name": "general"}});
    assert_eq!(
        http.post(gateway.http("/v1/events"))
            .json(&created)
            .send()
            .await
            .expect("post")
            .status(),
        401
    );
    assert_eq!(
        post(&nobody, created.clone()).await.expect("post").status(),
        403
    );
    let reply = post(&publisher, created).await.expect("post");
    assert_eq!(reply.status(), 200);
    let reply: Value = reply.json().await.expect("json");
    assert!(
        reply["seq"].as_u64().is_some()
            && reply["timestamp"].is_string()
            && reply["id"].is_string()
    );

    let id = Id::new_v4().to_string();
    let ban = json!({"type": "user_banned", "id": id,
        "data": {"channel_id": c.to_string(), "user_id": u.to_string(), "motive": "spam"}});
    let first: Value = post(&publisher, ban.clone())
        .await
        .expect("post")
        .json()
        .await
        .expect("json");
    let again: Value = post(&publisher, ban)
        .await
        .expect("post")
        .json()
        .await
        .expect("json");
    assert!(first["user_seq"].as_u64().is_some());
    assert_eq!(first["seq"], again["seq"], "same id, stored once");
    assert_eq!(first["user_seq"], again["user_seq"]);

    for (body, needle) in [
        (
            json!({"type": "channel_deleted", "data": {"channel_id": "nope"}}),
            "channel_id",
        ),
        (
            json!({"type": "member_joined", "data": {"channel_id": c.to_string(), "user_id": u.to_string()}}),
            "username",
        ),
        (json!({"type": "user_typing", "data": {}}), "ephemeral"),
        (json!({"type": "made_up", "data": {}}), "type"),
        (json!({"data": {}}), "type"),
    ] {
        let reply = post(&publisher, body.clone()).await.expect("post");
        assert_eq!(reply.status(), 400, "{body}");
        let text = reply.text().await.expect("body");
        assert!(text.contains(needle), "{body} → {text}");
    }

    for i in 0..5 {
        let body = json!({"type": "message_deleted", "data": {"channel_id": c.to_string(), "message_id": Id::new_v4().to_string()}});
        assert_eq!(
            post(&publisher, body).await.expect("post").status(),
            200,
            "message {i}"
        );
    }
    let history = |token: &str, query: &str| {
        http.get(gateway.http(&format!("/v1/history/channel:{c}{query}")))
            .bearer_auth(token)
            .send()
    };
    assert_eq!(history(&nobody, "").await.expect("get").status(), 403);
    let lines = |text: String| -> Vec<Value> {
        text.lines()
            .map(|l| serde_json::from_str(l).expect("NDJSON"))
            .collect()
    };
    let all = lines(
        history(&auditor, "")
            .await
            .expect("get")
            .text()
            .await
            .expect("text"),
    );
    assert_eq!(all.len(), 6, "the ban and five deletions");
    all.iter().for_each(assert_schema);
    let page1 = lines(
        history(&auditor, "?limit=4")
            .await
            .expect("get")
            .text()
            .await
            .expect("text"),
    );
    assert_eq!(page1, all[..4]);
    let after = page1[3]["seq"].as_u64().expect("seq");
    let page2 = lines(
        history(&auditor, &format!("?limit=4&after_seq={after}"))
            .await
            .expect("get")
            .text()
            .await
            .expect("text"),
    );
    assert_eq!(page2, all[4..]);
    let t = all[2]["timestamp"].as_str().expect("ts").to_string();
    let since = lines(
        history(&auditor, &format!("?since={t}"))
            .await
            .expect("get")
            .text()
            .await
            .expect("text"),
    );
    assert!(since
        .iter()
        .all(|e| e["timestamp"].as_str() >= Some(t.as_str())));
    assert!(since.contains(&all[2]));
    let until = lines(
        history(&auditor, &format!("?until={t}"))
            .await
            .expect("get")
            .text()
            .await
            .expect("text"),
    );
    assert!(until
        .iter()
        .all(|e| e["timestamp"].as_str() < Some(t.as_str())));
    for query in [
        "?limit=0",
        "?limit=10001",
        "?after_seq=-1",
        "?since=yesterday",
    ] {
        assert_eq!(
            history(&auditor, query).await.expect("get").status(),
            400,
            "{query}"
        );
    }

    let metrics = get("/metrics")
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    for series in [
        "switchboard_connections",
        "switchboard_subscriptions",
        "switchboard_events_in_total",
        "switchboard_events_out_total",
        "switchboard_events_replayed_total",
        "switchboard_events_dropped_total",
        "switchboard_invalid_events_total",
        "switchboard_slow_consumer_closes_total",
        "switchboard_publish_latency_seconds",
        "switchboard_delivery_latency_seconds",
    ] {
        assert!(
            metrics.contains(series),
            "metrics lack {series}:\n{metrics}"
        );
    }
}
