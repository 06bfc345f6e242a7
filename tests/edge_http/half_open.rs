//! Half-open sockets: closed within the head timeout, never locking out
//! `/healthz` or a real client (even at the process's open-file limit), the
//! oldest shed past the pending cap.

use super::*;

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
