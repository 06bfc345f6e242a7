//! A NATS proxy that can hold back some of a client's requests: the fault
//! of a JetStream API that answers late (a cluster electing a leader, a
//! server under load) while core NATS, and so live delivery, goes on.
//!
//! It speaks just enough of the NATS client protocol to find message
//! boundaries in what the client sends (`PUB` and `HPUB` carry a payload of
//! a stated size; every other operation is one line). A message whose
//! subject starts with a held prefix is forwarded only once the hold ends;
//! everything else, and everything the server sends, passes at once.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// A proxy in front of one nats-server, on a loopback port of its own. It
/// runs on a thread and runtime of its own, so a test that blocks its own
/// runtime (starting the gateway waits for its first line) does not stop it.
pub struct StallProxy {
    pub url: String,
    hold: Arc<Mutex<Option<(String, Instant)>>>,
    /// Messages held back so far.
    held: Arc<AtomicUsize>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl StallProxy {
    /// Listens on a free loopback port and forwards to `upstream`
    /// (`nats://host:port`).
    pub fn start(upstream: &str) -> StallProxy {
        let upstream = upstream
            .trim_start_matches("nats://")
            .trim_end_matches('/')
            .to_string();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let url = format!("nats://{}", listener.local_addr().expect("addr"));
        let hold: Arc<Mutex<Option<(String, Instant)>>> = Arc::default();
        let rule = hold.clone();
        let held: Arc<AtomicUsize> = Arc::default();
        let counted = held.clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let listener = TcpListener::from_std(listener).expect("listener");
                let accept = async {
                    while let Ok((client, _)) = listener.accept().await {
                        let Ok(server) = TcpStream::connect(&upstream).await else {
                            continue;
                        };
                        tokio::spawn(pipe(client, server, rule.clone(), counted.clone()));
                    }
                };
                tokio::select! {
                    _ = accept => {}
                    _ = stopped => {}
                }
            });
        });
        StallProxy {
            url,
            hold,
            held,
            stop: Some(stop),
        }
    }

    /// From now until `duration` has passed, client messages on subjects
    /// starting with `prefix` wait, then go on in order.
    pub fn hold(&self, prefix: &str, duration: Duration) {
        let until = Instant::now() + duration;
        *self.hold.lock().expect("hold") = Some((prefix.to_string(), until));
    }

    /// How many messages have been held back so far.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::SeqCst)
    }
}

impl Drop for StallProxy {
    /// Stops the proxy; its runtime, and every connection, ends with it.
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn pipe(
    client: TcpStream,
    server: TcpStream,
    hold: Arc<Mutex<Option<(String, Instant)>>>,
    held: Arc<AtomicUsize>,
) {
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let down = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
    });
    // One writer to the server: held messages join it when their hold ends.
    let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
    let up = tokio::spawn(async move {
        while let Some(bytes) = rx.recv().await {
            if server_write.write_all(&bytes).await.is_err() {
                return;
            }
        }
    });
    let mut input: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    'read: loop {
        let n = match client_read.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        input.extend_from_slice(&buf[..n]);
        while let Some((len, subject)) = next_message(&input) {
            let message: Vec<u8> = input.drain(..len).collect();
            let until = match (&*hold.lock().expect("hold"), subject) {
                (Some((prefix, until)), Some(subject))
                    if subject.starts_with(prefix.as_str()) && *until > Instant::now() =>
                {
                    Some(*until)
                }
                _ => None,
            };
            match until {
                Some(until) => {
                    held.fetch_add(1, Ordering::SeqCst);
                    let tx = tx.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep_until(until.into()).await;
                        let _ = tx.send(message);
                    });
                }
                None => {
                    if tx.send(message).is_err() {
                        break 'read;
                    }
                }
            }
        }
    }
    drop(tx);
    let _ = up.await;
    down.abort();
}

/// The length of the first whole client message in `input`, and its
/// subject if it is a `PUB` or `HPUB`; `None` until it is all there.
fn next_message(input: &[u8]) -> Option<(usize, Option<String>)> {
    let line_end = input.windows(2).position(|w| w == b"\r\n")?;
    let line = std::str::from_utf8(&input[..line_end]).ok()?;
    let mut words = line.split_ascii_whitespace();
    let op = words.next().unwrap_or("").to_ascii_uppercase();
    let rest: Vec<&str> = words.collect();
    let payload = match op.as_str() {
        // PUB <subject> [reply] <size>; HPUB <subject> [reply] <hdr> <total>
        "PUB" | "HPUB" => rest.last()?.parse::<usize>().ok()?,
        _ => return Some((line_end + 2, None)),
    };
    let total = line_end + 2 + payload + 2;
    if input.len() < total {
        return None;
    }
    Some((total, rest.first().map(|s| s.to_string())))
}
