//! Greedy clients: one user's WebSockets capped with 429, a head over
//! 64 KiB answered with 431.

use super::*;

/// Tries one upgrade: `Ok` with the client, or `Err` with the refusal's
/// status and body.
async fn try_connect(url: &str) -> Result<Client, (u16, Value)> {
    use tokio_tungstenite::tungstenite::Error;
    match Client::try_connect_url(url).await {
        Ok(client) => Ok(client),
        Err(Error::Http(response)) => {
            let body = response
                .body()
                .as_deref()
                .and_then(|b| serde_json::from_slice(b).ok())
                .unwrap_or(Value::Null);
            Err((response.status().as_u16(), body))
        }
        Err(e) => panic!("the upgrade failed otherwise: {e}"),
    }
}

#[tokio::test]
async fn one_users_connections_are_capped_with_429() {
    const CAP: usize = 3;
    let nats = nats();
    let gateway = Gateway::start_with(&nats, &["--max-connections-per-user", "3"]);
    let user = token(Id::new_v4(), Grant::All, &[]);
    let url = gateway.ws_url(&user);
    let mut open = Vec::new();
    for _ in 0..CAP {
        open.push(Client::connect(&gateway, &user).await);
    }
    for _ in 0..3 {
        let Err((status, body)) = try_connect(&url).await else {
            panic!("connection {} was let in", CAP + 1);
        };
        assert_eq!(status, 429);
        assert_eq!(body["error"]["code"], "rate_limited", "{body}");
    }
    // Another user is not affected.
    let other = Client::connect(&gateway, &token(Id::new_v4(), Grant::All, &[])).await;
    // A closed connection gives its slot back.
    open.pop().expect("a client").close().await;
    let deadline = Instant::now() + PATIENCE;
    let again = loop {
        match try_connect(&url).await {
            Ok(client) => break client,
            Err((429, _)) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(refused) => panic!("no slot came back: {refused:?}"),
        }
    };
    assert!(try_connect(&url).await.is_err(), "still capped");
    assert!(
        gateway
            .metric("switchboard_connections_shed_total{reason=\"user_cap\"}")
            .await
            >= 4.0
    );
    drop((again, other, open));
}

#[tokio::test]
async fn a_head_over_64_kib_gets_431() {
    let nats = nats();
    let gateway = Gateway::start(&nats);
    let ask = |header_bytes: usize| {
        let addr = gateway.addr;
        async move {
            let mut socket = TcpStream::connect(addr).await.expect("connect");
            let head = format!(
                "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
                "a".repeat(header_bytes)
            );
            // Sent at once: the gateway may read it in one go.
            let _ = socket.write_all(head.as_bytes()).await;
            let (got, _) = read_to_close(&mut socket).await;
            String::from_utf8_lossy(&got).into_owned()
        }
    };
    // One header line of 70 KB: the head is over the bound.
    let too_large = ask(70_000).await;
    assert!(too_large.starts_with("HTTP/1.1 431"), "{too_large:?}");
    // Just under the bound: served.
    let under = ask(60_000).await;
    assert!(
        under.starts_with("HTTP/1.1 200"),
        "{:?}",
        &under[..under.len().min(200)]
    );
    assert!(
        gateway
            .metric("switchboard_http_client_errors_total{reason=\"malformed\"}")
            .await
            >= 1.0
    );
}
