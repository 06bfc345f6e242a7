//! Slow clients: a trickled body is cut, an idle or silent connection
//! closed, a client that takes no response closed, and a response in
//! flight never shed for new sockets.

use super::*;

#[tokio::test]
async fn a_trickled_body_is_cut() {
    let nats = nats();
    let gateway = Gateway::start_with(&nats, &["--http-body-timeout", TIMEOUT_FLAG]);
    let publisher = token(Id::new_v4(), Grant::None, &[Role::Publisher]);
    let body = chat_message(Id::new_v4(), "slow").to_string();
    let mut socket = TcpStream::connect(gateway.addr).await.expect("connect");
    let head = format!(
        "POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {publisher}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    socket.write_all(head.as_bytes()).await.expect("head");
    let started = Instant::now();
    let (mut reader, mut writer) = socket.into_split();
    // One byte a second: the whole body would take minutes.
    let trickle = tokio::spawn(async move {
        let mut sent = 0;
        for byte in body.as_bytes() {
            if writer.write_all(&[*byte]).await.is_err() {
                break;
            }
            sent += 1;
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        sent
    });
    let (got, closed) = read_to_close(&mut reader).await;
    let took = closed - started;
    trickle.abort();
    let reply = String::from_utf8_lossy(&got);
    assert!(reply.starts_with("HTTP/1.1 408"), "got {reply:?}");
    assert!(reply.contains("\"timeout\""), "a JSON error: {reply:?}");
    assert!(
        took <= TIMEOUT + SLACK,
        "the trickled body was cut after {took:?}; the body timeout is {TIMEOUT:?}"
    );
    wait_until("the body timeout to be counted", || async {
        gateway
            .metric("switchboard_http_client_errors_total{reason=\"body_timeout\"}")
            .await
            > 0.0
    })
    .await;
}

#[tokio::test]
async fn idle_and_silent_connections_are_closed() {
    let nats = nats();
    let gateway = Gateway::start_with(&nats, &["--http-head-timeout", TIMEOUT_FLAG]);

    // A keep-alive connection after its response.
    let mut kept = TcpStream::connect(gateway.addr).await.expect("connect");
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("request");
    let mut response = Vec::new();
    let mut buf = [0u8; 1024];
    while !response.ends_with(b"ok") {
        let n = tokio::time::timeout(PATIENCE, kept.read(&mut buf))
            .await
            .expect("a response in time")
            .expect("read");
        assert!(n > 0, "closed before the response");
        response.extend_from_slice(&buf[..n]);
    }
    assert!(response.starts_with(b"HTTP/1.1 200"));
    let idle_since = Instant::now();

    // A connection that never sends a byte.
    let mut silent = TcpStream::connect(gateway.addr).await.expect("connect");
    let silent_since = Instant::now();

    let (rest, closed) = read_to_close(&mut kept).await;
    assert!(rest.is_empty(), "nothing more was sent: {rest:?}");
    let idle = closed - idle_since;
    assert!(
        idle >= TIMEOUT / 2 && idle <= TIMEOUT + SLACK,
        "the idle keep-alive connection was closed after {idle:?}; the bound is {TIMEOUT:?}"
    );
    let (_, closed) = read_to_close(&mut silent).await;
    let silent_for = closed - silent_since;
    assert!(
        silent_for <= TIMEOUT + SLACK,
        "the silent connection was closed after {silent_for:?}"
    );
}

#[tokio::test]
async fn a_client_that_takes_no_response_is_closed() {
    const REQUESTS: usize = 2_000;
    let nats = nats();
    let gateway = Gateway::start_with(
        &nats,
        &["--stall-timeout", TIMEOUT_FLAG, "--http-head-timeout", "1h"],
    );
    // A small receive buffer, so that the responses fill it soon.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("buffer size");
    let socket = socket.connect(gateway.addr).await.expect("connect");
    let request = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
    let pipelined: Vec<u8> = request
        .iter()
        .copied()
        .cycle()
        .take(request.len() * REQUESTS)
        .collect();
    let (mut reader, mut writer) = socket.into_split();
    let sending = tokio::spawn(async move {
        // The server stops reading too once its writes are stuck.
        let _ = writer.write_all(&pipelined).await;
        writer
    });
    // Nothing is read until the gateway has given up on the client.
    wait_until("the stall to be counted", || async {
        gateway
            .metric("switchboard_http_client_errors_total{reason=\"write_stall\"}")
            .await
            > 0.0
    })
    .await;
    let mut got = Vec::new();
    let mut buf = [0u8; 64 * 1024];
    tokio::time::timeout(PATIENCE, async {
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .expect("the server closed the connection");
    let answered = got.windows(12).filter(|w| w == b"HTTP/1.1 200").count();
    assert!(
        answered < REQUESTS,
        "all {REQUESTS} responses were written: the client was not cut"
    );
    sending.abort();
}

/// Reads a chunked body to its last chunk; `Err` with what was read if the
/// server closes the socket first.
async fn read_chunked(socket: &mut (impl AsyncRead + Unpin)) -> Result<Vec<u8>, Vec<u8>> {
    let mut raw = Vec::new();
    let mut body = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut at = 0;
    loop {
        // Every whole chunk in `raw[at..]`.
        while let Some(end) = raw[at..].windows(2).position(|w| w == b"\r\n") {
            let line = String::from_utf8_lossy(&raw[at..at + end]).into_owned();
            let size = usize::from_str_radix(line.trim(), 16)
                .unwrap_or_else(|_| panic!("not a chunk size: {line:?}"));
            let data = at + end + 2;
            if raw.len() < data + size + 2 {
                break;
            }
            if size == 0 {
                return Ok(body);
            }
            body.extend_from_slice(&raw[data..data + size]);
            at = data + size + 2;
        }
        let n = tokio::time::timeout(PATIENCE, socket.read(&mut buf))
            .await
            .expect("the page goes on in time")
            .unwrap_or(0);
        if n == 0 {
            return Err(body);
        }
        raw.extend_from_slice(&buf[..n]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_in_flight_is_never_shed_for_new_sockets() {
    /// A page far larger than the socket buffers between the gateway and
    /// the slow reader.
    const EVENTS: usize = 3_000;
    const CAP: usize = 50;
    /// Idle sockets opened while the page is in flight: each past the cap
    /// sheds the socket waiting longest for a head.
    const IDLE: usize = 300;
    let nats = nats();
    let gateway = Gateway::start_with(
        &nats,
        &[
            "--max-pending-connections",
            &CAP.to_string(),
            "--http-head-timeout",
            "1h",
        ],
    );
    let c = Id::new_v4();
    let log = log(&nats).await;
    let text = "x".repeat(1000);
    let events: Vec<_> = (0..EVENTS).map(|_| message(c, &text)).collect();
    let stored: Vec<_> = {
        use futures::StreamExt;
        futures::stream::iter(&events)
            .map(|event| log.store(event))
            .buffer_unordered(256)
            .collect()
            .await
    };
    assert!(stored.iter().all(Result::is_ok), "every event is stored");

    // A slow reader asks for the whole page, and reads only its head.
    let auditor = token(Id::new_v4(), Grant::None, &[Role::Auditor]);
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("buffer size");
    let mut reader = socket.connect(gateway.addr).await.expect("connect");
    let request = format!(
        "GET /v1/history/{}?limit={EVENTS} HTTP/1.1\r\nHost: x\r\n\
         Authorization: Bearer {auditor}\r\n\r\n",
        chat(c)
    );
    reader.write_all(request.as_bytes()).await.expect("request");
    let head = read_head(&mut reader).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head:?}");

    // Meanwhile, a stranger opens idle sockets, many more than the cap.
    let mut idle = Vec::new();
    for _ in 0..IDLE {
        idle.push(TcpStream::connect(gateway.addr).await.expect("connect"));
    }
    let shed = (IDLE - CAP + 1) as f64;
    wait_until("the idle sockets past the cap to be shed", || async {
        gateway
            .metric("switchboard_connections_shed_total{reason=\"pending_evicted\"}")
            .await
            >= shed
    })
    .await;

    // The page arrives whole.
    let body = match read_chunked(&mut reader).await {
        Ok(body) => body,
        Err(partial) => panic!(
            "the page was cut after {} bytes ({} lines of {EVENTS})",
            partial.len(),
            partial.iter().filter(|b| **b == b'\n').count()
        ),
    };
    let lines: Vec<Value> = body
        .split(|b| *b == b'\n')
        .filter(|line| !line.is_empty())
        .map(|line| serde_json::from_slice(line).expect("NDJSON"))
        .collect();
    assert_eq!(lines.len(), EVENTS);
    drop(idle);
}
