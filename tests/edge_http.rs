//! The HTTP edge under slow, half-open and greedy clients (issue 9, part 1;
//! issue 20, parts 3 and 6): half-finished requests are closed within the
//! head timeout and never lock out `/healthz` or a real client, even at the
//! process's open-file limit; a response in flight is never shed to admit
//! new sockets; a head over 64 KiB gets 431; a trickled body is cut; an idle
//! keep-alive connection is closed; one user's WebSockets are capped with
//! 429; `OPTIONS` and `HEAD` answer as the routes do. Black-box, against the
//! binary.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use switchboard::channel::Id;
use switchboard::token::{Grant, Role};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use switchboard_harness::*;

/// The head and body timeouts the tests set.
const TIMEOUT: Duration = Duration::from_secs(2);
const TIMEOUT_FLAG: &str = "2s";

/// What a busy two-core test machine may add to a bound.
const SLACK: Duration = Duration::from_secs(8);

/// Half-open sockets opened at once.
const HALF_OPEN: usize = 3_000;

/// Sockets the attack opens in all (the first [`HALF_OPEN`], then one every
/// [`REOPEN_EVERY`] while the real clients are tried).
const MAX_OPENED: usize = 12_000;
const REOPEN_EVERY: Duration = Duration::from_millis(2);

/// The gateway's open-file limit in the lock-out test: well under
/// [`HALF_OPEN`], as in the report (the budget is 768 sockets).
const GATEWAY_OPEN_FILES: u64 = 1024;

/// How much the gateway's memory may grow while it is attacked.
const RSS_GROWTH_KIB: u64 = 64 * 1024;

/// The start of an upgrade request, never finished.
fn partial_upgrade() -> Vec<u8> {
    let token = token(Id::new_v4(), Grant::All, &[]);
    format!("GET /v1/ws?token={token} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConn")
        .into_bytes()
}

/// Raises this process's open-file limit to its hard limit: the attack
/// needs thousands of sockets.
fn raise_own_open_file_limit() {
    let limit = switchboard::server::listener::raise_open_file_limit().unwrap_or(0);
    assert!(
        limit >= (HALF_OPEN as u64) + 1_000,
        "this test needs an open-file limit over {} (it is {limit})",
        HALF_OPEN + 1_000
    );
}

/// Opens a socket, sends `bytes` and then nothing; a task reports how long
/// the socket lived until the server closed it (`None`: never, within
/// [`PATIENCE`]).
async fn half_open(
    addr: SocketAddr,
    bytes: &[u8],
    lifetimes: &mpsc::UnboundedSender<Option<Duration>>,
) -> bool {
    let Ok(mut socket) = TcpStream::connect(addr).await else {
        return false;
    };
    let opened = Instant::now();
    // The server may already have closed it to admit a newer one.
    let _ = socket.write_all(bytes).await;
    let lifetimes = lifetimes.clone();
    tokio::spawn(async move {
        let mut buf = [0u8; 1024];
        let closed = tokio::time::timeout(PATIENCE, async {
            loop {
                match socket.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => continue,
                }
            }
        })
        .await;
        let _ = lifetimes.send(closed.ok().map(|()| opened.elapsed()));
    });
    true
}

/// Reads until the server closes the socket; the bytes read and when.
async fn read_to_close(socket: &mut (impl AsyncRead + Unpin)) -> (Vec<u8>, Instant) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(PATIENCE, async {
        loop {
            match socket.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .expect("the server closes the socket");
    (got, Instant::now())
}

fn chat_message(c: Id, text: &str) -> Value {
    json!({"type": "channel_message", "data": {
        "channel_id": c.to_string(),
        "message_id": Id::new_v4().to_string(),
        "user_id": Id::new_v4().to_string(),
        "username": null,
        "content": text,
    }})
}

/// What a real client does: `/healthz`, `/readyz`, a WebSocket that
/// subscribes, and an event published over HTTP that reaches it.
async fn serve_real_clients(gateway: &Gateway, http: &reqwest::Client, text: &str) {
    for path in ["/healthz", "/readyz"] {
        let status = http
            .get(gateway.http(path))
            .send()
            .await
            .expect(path)
            .status();
        assert_eq!(status, 200, "{path}");
    }
    let c = Id::new_v4();
    let mut client = Client::connect(gateway, &token(Id::new_v4(), Grant::All, &[])).await;
    client.subscribe(chat(c)).await;
    let publisher = token(Id::new_v4(), Grant::None, &[Role::Publisher]);
    let reply = http
        .post(gateway.http("/v1/events"))
        .bearer_auth(&publisher)
        .json(&chat_message(c, text))
        .send()
        .await
        .expect("publish");
    assert_eq!(reply.status(), 200);
    let event = client.next().await;
    assert_eq!(event["data"]["content"], text, "{event}");
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_sockets_are_closed_in_time_and_lock_nobody_out() {
    raise_own_open_file_limit();
    let nats = nats();
    let gateway = Gateway::start_with_open_files(
        &nats,
        &["--http-head-timeout", TIMEOUT_FLAG],
        GATEWAY_OPEN_FILES,
    );
    let addr = gateway.addr;
    // A new connection for every request: a pooled one could be the oldest
    // pending socket, shed just as it is reused.
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(PATIENCE)
        .build()
        .expect("http client");
    // Warm: the schemas compiled, a WebSocket and a publish served once.
    serve_real_clients(&gateway, &http, "before").await;
    let baseline = gateway.rss_kib().expect("the gateway's RSS");

    // The attack: HALF_OPEN sockets at once, then a steady trickle of new
    // ones, each sending the start of an upgrade and then nothing.
    let (lifetimes_tx, mut lifetimes) = mpsc::unbounded_channel();
    let stop = Arc::new(AtomicBool::new(false));
    let (ready_tx, ready) = tokio::sync::oneshot::channel();
    let attack = {
        let stop = stop.clone();
        let bytes = partial_upgrade();
        tokio::spawn(async move {
            let mut opened = 0;
            for _ in 0..HALF_OPEN {
                opened += usize::from(half_open(addr, &bytes, &lifetimes_tx).await);
            }
            let _ = ready_tx.send(opened);
            while !stop.load(Ordering::Relaxed) && opened < MAX_OPENED {
                opened += usize::from(half_open(addr, &bytes, &lifetimes_tx).await);
                tokio::time::sleep(REOPEN_EVERY).await;
            }
            opened
        })
    };
    let first = ready.await.expect("the attack starts");
    assert!(first > HALF_OPEN * 9 / 10, "only {first} sockets connected");

    // Meanwhile the gateway's memory is sampled…
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let sampling = sampling.clone();
        let pid = gateway.pid();
        tokio::spawn(async move {
            let mut peak = 0;
            while sampling.load(Ordering::Relaxed) {
                peak = peak.max(rss_kib(pid).unwrap_or(0));
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            peak
        })
    };

    // …and real clients get through.
    let started = Instant::now();
    serve_real_clients(&gateway, &http, "through the siege").await;
    let checks_took = started.elapsed();

    stop.store(true, Ordering::Relaxed);
    let opened = attack.await.expect("the attack ends");
    sampling.store(false, Ordering::Relaxed);
    let peak = sampler.await.expect("sampler");

    // Every half-open socket was closed by the server within the bound.
    let mut longest = Duration::ZERO;
    for n in 0..opened {
        let lifetime = tokio::time::timeout(PATIENCE, lifetimes.recv())
            .await
            .expect("every socket reports")
            .expect("reports");
        let Some(lifetime) = lifetime else {
            panic!("socket {n} of {opened} was never closed by the server");
        };
        longest = longest.max(lifetime);
    }
    assert!(
        longest <= TIMEOUT + SLACK,
        "a half-open socket lived {longest:?}; the head timeout is {TIMEOUT:?}"
    );
    assert!(
        peak <= baseline + RSS_GROWTH_KIB,
        "RSS grew from {baseline} KiB to {peak} KiB under {opened} half-open sockets"
    );
    eprintln!(
        "{opened} half-open sockets; longest lived {longest:?}; real clients served in {checks_took:?}; \
         RSS {baseline} → {peak} KiB"
    );

    // The sheds and the timeouts were counted, and not logged as errors.
    assert!(
        gateway
            .metric("switchboard_connections_shed_total{reason=\"pending_evicted\"}")
            .await
            > 0.0
    );
    wait_until("head timeouts to be counted", || async {
        gateway
            .metric("switchboard_http_client_errors_total{reason=\"head_timeout\"}")
            .await
            > 0.0
    })
    .await;
    let log = gateway.log_text();
    assert!(
        !log.contains("ERROR"),
        "client errors are not logged as errors:\n{}",
        log.lines()
            .filter(|l| l.contains("ERROR"))
            .take(5)
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        !log.contains("Too many open files"),
        "the gateway ran out of descriptors"
    );

    // Real clients are still served after the attack.
    serve_real_clients(&gateway, &http, "after").await;
}

#[tokio::test]
async fn past_the_pending_cap_the_oldest_half_open_socket_goes() {
    const CAP: usize = 50;
    const OPENED: usize = 200;
    let nats = nats();
    let gateway = Gateway::start_with(
        &nats,
        &[
            "--max-pending-connections",
            "50",
            "--http-head-timeout",
            "1h",
        ],
    );
    let bytes = partial_upgrade();
    let (tx, mut lifetimes) = mpsc::unbounded_channel();
    for _ in 0..OPENED {
        assert!(half_open(gateway.addr, &bytes, &tx).await, "connects");
    }
    // The head timeout is an hour: only the cap closes them, at once.
    for _ in 0..OPENED - CAP {
        let lifetime = tokio::time::timeout(PATIENCE, lifetimes.recv())
            .await
            .expect("sockets past the cap are closed")
            .expect("reports")
            .expect("closed");
        assert!(lifetime <= SLACK, "a shed socket lived {lifetime:?}");
    }
    serve_real_clients(&gateway, &http(), "past the cap").await;
    assert!(
        gateway
            .metric("switchboard_connections_shed_total{reason=\"pending_evicted\"}")
            .await
            >= (OPENED - CAP) as f64
    );
}

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

/// Reads one response head (up to its blank line), and nothing after it.
async fn read_head(socket: &mut (impl AsyncRead + Unpin)) -> String {
    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    while !got.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(PATIENCE, socket.read(&mut byte))
            .await
            .expect("a response head in time")
            .expect("read");
        assert!(n > 0, "closed after {:?}", String::from_utf8_lossy(&got));
        got.push(byte[0]);
    }
    String::from_utf8_lossy(&got).into_owned()
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

#[tokio::test]
async fn options_and_head_answer_as_the_routes_do() {
    let nats = nats();
    let gateway = Gateway::start(&nats);
    let http = http();

    // OPTIONS on a path no route serves: the same 404 as any other method.
    for path in ["/nope", "/v1/nope", "/console/nope"] {
        let reply = http
            .request(reqwest::Method::OPTIONS, gateway.http(path))
            .send()
            .await
            .expect("options");
        assert_eq!(reply.status(), 404, "OPTIONS {path}");
        let body: Value = reply.json().await.expect("a JSON error");
        assert_eq!(body["error"]["code"], "not_found", "{body}");
    }
    // Another method on an unknown path is a 404 too, not a 405.
    let post = http
        .post(gateway.http("/nope"))
        .body("{}")
        .send()
        .await
        .expect("post");
    assert_eq!(post.status(), 404);

    // On a route's path: a preflight.
    for path in ["/v1/events", "/v1/history/global", "/healthz", "/console"] {
        let reply = http
            .request(reqwest::Method::OPTIONS, gateway.http(path))
            .send()
            .await
            .expect("options");
        assert_eq!(reply.status(), 204, "OPTIONS {path}");
        assert!(
            reply.headers().contains_key("access-control-allow-methods"),
            "OPTIONS {path}"
        );
    }

    // HEAD /metrics answers as GET does, without the body.
    let get = http
        .get(gateway.http("/metrics"))
        .send()
        .await
        .expect("get");
    let head = http
        .head(gateway.http("/metrics"))
        .send()
        .await
        .expect("head");
    assert_eq!(head.status(), 200);
    assert_eq!(
        head.headers().get("content-type"),
        get.headers().get("content-type")
    );
    assert!(head.bytes().await.expect("no body").is_empty());
}
