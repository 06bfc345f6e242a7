//! A hand-made identity provider's key endpoint for fault cases
//! ([`JwksServer`]): a loopback HTTP/1.1 server with a discovery document
//! and a JWKS whose keys and behaviour a test changes while it runs
//! (unavailable, garbage, slow, down and back on the same port), counting
//! the JWKS requests that reach it.
//!
//! It speaks just enough HTTP/1.1 for a client's `GET`: one request per
//! connection, answered with `Connection: close`, so `Down` leaves no
//! kept-alive connection behind. It runs on a thread and runtime of its
//! own (as [`StallProxy`](crate::StallProxy) does), so a test that blocks
//! its runtime, as starting a gateway does, does not stop it.

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::PATIENCE;

/// The JWKS path of a [`JwksServer`].
pub const JWKS_PATH: &str = "/jwks.json";

/// The discovery document's path (OpenID Connect Discovery).
pub const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";

/// The largest request head read; a longer one gets `431` and the close.
const MAX_REQUEST_HEAD: usize = 16 * 1024;

/// The body served in [`JwksMode::Garbage`]: `200` and this, not JSON.
pub const GARBAGE: &str = "<html>this is not a key set {";

/// How a [`JwksServer`] answers, on every path (discovery too).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JwksMode {
    /// `200` with the discovery document or the current key set.
    Serve,
    /// `503 Service Unavailable`.
    Unavailable,
    /// `200` with a body that is not JSON ([`GARBAGE`]).
    Garbage,
    /// As `Serve`, after the delay (the key set as it is then).
    Slow(Duration),
    /// No listener: connections are refused (requests in flight are cut).
    /// Any other mode opens it again on the same port.
    Down,
}

/// What the server answers with, shared with its thread.
#[derive(Default)]
struct Shared {
    keys: Vec<Value>,
    fetches: usize,
    discoveries: usize,
}

/// Whether the server thread has a listener open, for [`JwksServer::set_mode`]
/// to wait on.
type Listening = Arc<(Mutex<bool>, Condvar)>;

/// A running JWKS server on a loopback port of its own; stopped on drop.
pub struct JwksServer {
    port: u16,
    shared: Arc<Mutex<Shared>>,
    mode: watch::Sender<JwksMode>,
    listening: Listening,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl JwksServer {
    /// Serves `keys` (public JWKs) on a free loopback port.
    pub fn start(keys: Vec<Value>) -> JwksServer {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a JWKS port");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("its address").port();
        let shared = Arc::new(Mutex::new(Shared {
            keys,
            ..Shared::default()
        }));
        let (mode, modes) = watch::channel(JwksMode::Serve);
        let listening: Listening = Arc::new((Mutex::new(true), Condvar::new()));
        let thread = {
            let shared = shared.clone();
            let listening = listening.clone();
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                runtime.block_on(run(listener, port, shared, modes, listening));
            })
        };
        JwksServer {
            port,
            shared,
            mode,
            listening,
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The discovery document's `issuer`: [`url`](Self::url).
    pub fn issuer(&self) -> String {
        self.url()
    }

    /// Where the key set is: the discovery document's `jwks_uri`.
    pub fn jwks_url(&self) -> String {
        format!("{}{JWKS_PATH}", self.url())
    }

    /// The discovery document's URL.
    pub fn discovery_url(&self) -> String {
        format!("{}{DISCOVERY_PATH}", self.url())
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Replaces the key set (a key is removed by a set without it).
    pub fn set_keys(&self, keys: Vec<Value>) {
        self.shared.lock().expect("jwks state").keys = keys;
    }

    /// The key set served now.
    pub fn keys(&self) -> Vec<Value> {
        self.shared.lock().expect("jwks state").keys.clone()
    }

    /// Changes how it answers; returns once the listener is closed (`Down`)
    /// or open again (any other mode), so the next connection sees it.
    pub fn set_mode(&self, mode: JwksMode) {
        self.mode.send_replace(mode);
        let open = mode != JwksMode::Down;
        let (lock, changed) = &*self.listening;
        let guard = lock.lock().expect("listening state");
        let (_guard, timeout) = changed
            .wait_timeout_while(guard, PATIENCE, |listening| *listening != open)
            .expect("listening state");
        assert!(
            !timeout.timed_out(),
            "the JWKS server did not {} port {} within {PATIENCE:?}",
            if open { "reopen" } else { "close" },
            self.port
        );
    }

    pub fn mode(&self) -> JwksMode {
        *self.mode.borrow()
    }

    /// How many JWKS requests arrived, in every mode but `Down` (a slow one
    /// is counted when it arrives).
    pub fn fetches(&self) -> usize {
        self.shared.lock().expect("jwks state").fetches
    }

    /// How many discovery requests arrived, in every mode but `Down`.
    pub fn discoveries(&self) -> usize {
        self.shared.lock().expect("jwks state").discoveries
    }
}

impl Drop for JwksServer {
    /// Stops the server: its thread ends with its runtime, which cuts every
    /// connection.
    fn drop(&mut self) {
        // Closing the mode channel is the stop signal.
        let (closed, _) = watch::channel(JwksMode::Down);
        drop(std::mem::replace(&mut self.mode, closed));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The server thread: accepts while the mode is not `Down`, closes the
/// listener (and cuts the connections) when it is, and rebinds the same
/// port when it is not any more; ends when the [`JwksServer`] is dropped.
async fn run(
    first: std::net::TcpListener,
    port: u16,
    shared: Arc<Mutex<Shared>>,
    mut modes: watch::Receiver<JwksMode>,
    listening: Listening,
) {
    let mut first = Some(first);
    loop {
        let mode = *modes.borrow_and_update();
        if mode == JwksMode::Down {
            set_listening(&listening, false);
            if modes.changed().await.is_err() {
                return;
            }
            continue;
        }
        let listener = match first.take() {
            Some(listener) => TcpListener::from_std(listener).expect("listener"),
            None => rebind(port).await,
        };
        set_listening(&listening, true);
        let mut connections = JoinSet::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    if let Ok((stream, _)) = accepted {
                        connections.spawn(answer(stream, shared.clone(), modes.clone()));
                    }
                }
                changed = modes.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    if *modes.borrow() == JwksMode::Down {
                        break;
                    }
                }
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
        // Down: no listener, and no connection left (the JoinSet aborts them).
        drop(listener);
        drop(connections);
    }
}

/// Binds `port` again (tokio sets `SO_REUSEADDR`, so connections the
/// server closed in `TIME_WAIT` do not stand in the way), retrying while
/// something else briefly holds it; a failure after [`PATIENCE`].
async fn rebind(port: u16) -> TcpListener {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        match TcpListener::bind(("127.0.0.1", port)).await {
            Ok(listener) => return listener,
            Err(e) => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the JWKS server cannot reopen port {port}: {e}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

fn set_listening(listening: &Listening, open: bool) {
    let (lock, changed) = &**listening;
    *lock.lock().expect("listening state") = open;
    changed.notify_all();
}

/// Reads one request head and answers it per the mode, then closes.
async fn answer(
    mut stream: TcpStream,
    shared: Arc<Mutex<Shared>>,
    modes: watch::Receiver<JwksMode>,
) {
    let Some(path) = read_request_path(&mut stream).await else {
        let _ = stream
            .write_all(&response(
                "431 Request Header Fields Too Large",
                "text/plain",
                "",
            ))
            .await;
        return;
    };
    let port = stream.local_addr().map(|a| a.port()).unwrap_or(0);
    let base = format!("http://127.0.0.1:{port}");
    {
        let mut shared = shared.lock().expect("jwks state");
        match path.as_str() {
            JWKS_PATH => shared.fetches += 1,
            DISCOVERY_PATH => shared.discoveries += 1,
            _ => {}
        }
    }
    let mode = *modes.borrow();
    let bytes = match mode {
        JwksMode::Unavailable => response("503 Service Unavailable", "text/plain", "unavailable"),
        JwksMode::Garbage => response("200 OK", "application/json", GARBAGE),
        JwksMode::Serve | JwksMode::Slow(_) | JwksMode::Down => {
            if let JwksMode::Slow(delay) = mode {
                tokio::time::sleep(delay).await;
            }
            match path.as_str() {
                JWKS_PATH => {
                    let keys = shared.lock().expect("jwks state").keys.clone();
                    let body = json!({ "keys": keys }).to_string();
                    response("200 OK", "application/json", &body)
                }
                DISCOVERY_PATH => {
                    let body = json!({
                        "issuer": base,
                        "jwks_uri": format!("{base}{JWKS_PATH}"),
                    })
                    .to_string();
                    response("200 OK", "application/json", &body)
                }
                _ => response("404 Not Found", "text/plain", "not found"),
            }
        }
    };
    let _ = stream.write_all(&bytes).await;
    let _ = stream.shutdown().await;
}

/// The path of the request whose head arrives on `stream` (query string
/// removed); `None` when the head does not end within [`MAX_REQUEST_HEAD`]
/// bytes or the connection ends first.
async fn read_request_path(stream: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut buf = [0u8; 2048];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await.ok()?;
        if n == 0 || head.len() + n > MAX_REQUEST_HEAD {
            return None;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = head.split(|&b| b == b'\r').next()?;
    let target = std::str::from_utf8(line).ok()?.split(' ').nth(1)?;
    Some(target.split('?').next().unwrap_or(target).to_string())
}

fn response(status: &str, content_type: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}
