//! Authorization: the three channel kinds, bad tokens refused with 401 and
//! no socket, an expiring token closing the socket with 4001.

use super::*;

#[tokio::test]
async fn the_three_channel_kinds_are_authorized() {
    let nats = nats();
    let gateway = Gateway::start(&nats);
    let (u, granted, other) = (Id::new_v4(), Id::new_v4(), Id::new_v4());
    let mut client = Client::connect(&gateway, &token(u, Grant::Some(vec![granted]), &[])).await;

    for allowed in [chat(granted), Channel::User(u), Channel::Global] {
        let reply = client.subscribe(allowed).await;
        assert_schema(&reply);
        assert_eq!(reply["data"]["request_id"], "sub");
        assert_eq!(reply["data"]["complete"], true);
    }
    for (channel, code) in [
        (format!("channel:{other}"), "forbidden"),
        (format!("user:{other}"), "forbidden"),
        (format!("channel:{granted}"), "bad_request"),
        ("channel:not-a-uuid".to_string(), "bad_request"),
        ("room:1".to_string(), "bad_request"),
    ] {
        client
            .send(json!({"type": "subscribe", "channel": channel, "request_id": "r"}))
            .await;
        let reply = client.next().await;
        assert_schema(&reply);
        assert_eq!(reply["type"], "error", "{channel}");
        assert_eq!(reply["data"]["code"], code, "{channel}: {reply}");
        assert_eq!(reply["data"]["request_id"], "r");
    }
    client
        .send(json!({"type": "unsubscribe", "channel": format!("channel:{other}"), "request_id": "u"}))
        .await;
    let reply = client.next().await;
    assert_eq!(reply["data"]["code"], "not_found");
    client
        .send(json!({"type": "unsubscribe", "channel": "global", "request_id": "u2"}))
        .await;
    let reply = client.next().await;
    assert_schema(&reply);
    assert_eq!(reply["type"], "unsubscribed");
    assert_eq!(reply["data"]["reason"], "requested");
    assert_eq!(reply["data"]["request_id"], "u2");
    client
        .send(json!({"type": "ping", "request_id": "p"}))
        .await;
    let pong = client.next().await;
    assert_schema(&pong);
    assert_eq!(pong["data"]["request_id"], "p");
}

#[tokio::test]
async fn bad_tokens_get_401_and_no_socket() {
    use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
    let nats = nats();
    let gateway = Gateway::start(&nats);
    let user = Id::new_v4();
    let expired = {
        let mut claims =
            switchboard::token::dev_claims(user, Duration::ZERO, None, Grant::All, vec![]);
        claims.exp -= 60;
        switchboard::token::Signer::hs256(SECRET.as_bytes())
            .mint(&claims)
            .expect("mint")
    };
    let foreign = {
        let claims =
            switchboard::token::dev_claims(user, Duration::from_secs(60), None, Grant::All, vec![]);
        switchboard::token::Signer::hs256(b"another secret")
            .mint(&claims)
            .expect("mint")
    };
    let unsigned = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(
            json!({"sub": user.to_string(), "exp": chrono::Utc::now().timestamp() + 600})
                .to_string()
        )
    );
    for (name, url) in [
        ("missing", format!("ws://{}/v1/ws", gateway.addr)),
        ("malformed", gateway.ws_url("not.a.jwt")),
        ("expired", gateway.ws_url(&expired)),
        ("wrongly signed", gateway.ws_url(&foreign)),
        ("alg none", gateway.ws_url(&unsigned)),
    ] {
        match tokio_tungstenite::connect_async(url).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                assert_eq!(response.status().as_u16(), 401, "{name}")
            }
            Err(other) => panic!("{name}: expected HTTP 401, got {other}"),
            Ok(_) => panic!("{name}: the upgrade was accepted"),
        }
    }
    // The header works as well as the query parameter.
    let request = {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut request = format!("ws://{}/v1/ws", gateway.addr)
            .into_client_request()
            .expect("request");
        let bearer = format!("Bearer {}", token(user, Grant::All, &[]));
        request
            .headers_mut()
            .insert("authorization", bearer.parse().expect("header"));
        request
    };
    let (mut ws, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("upgrade");
    use futures::StreamExt;
    let hello = ws.next().await.expect("frame").expect("ok");
    assert!(hello.to_text().expect("text").contains("\"hello\""));
}

#[tokio::test]
async fn an_expiring_token_closes_the_socket_with_4001() {
    let nats = nats();
    let gateway = Gateway::start(&nats);
    let short = token_named(Id::new_v4(), Grant::All, &[], None, Duration::from_secs(2));
    let mut client = Client::connect(&gateway, &short).await;
    assert_eq!(client.closed_with().await, 4001);
}
