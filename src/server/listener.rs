//! The accept loop: every client socket, HTTP and WebSocket alike, from
//! `accept` to its end, within bounds no client can stretch.
//!
//! - **A budget of sockets.** Each socket holds one slot of a budget sized
//!   from the process's open-file limit minus a reserve ([`socket_budget`])
//!   for its whole life; the slot travels inside the socket into a
//!   WebSocket after an upgrade. The node's own files, its NATS connection
//!   and the local nats-server's pipes therefore always find a descriptor,
//!   and `accept` does not fail with "too many open files".
//! - **Idle sockets give way.** A socket still speaking HTTP (not
//!   upgraded) is *pending*. At most `max_pending_connections` are (a
//!   bound on what unauthenticated clients can hold: about 20–30 KiB each),
//!   and when that many are open, or every slot is taken, the socket
//!   *waiting for a request head* (new, or idle between requests) whose
//!   wait began first is closed to admit the new one. A socket in the
//!   middle of a request (its body being read, its response being written
//!   or still in hyper's buffer) is never chosen: its request has bounds of
//!   its own. With none waiting (every slot a WebSocket or a request in
//!   flight), the new socket is closed at once.
//!   So half-finished heads and idle sockets can never lock out `/healthz`,
//!   `/readyz` or a real client: they are the first to go ([`pending`]
//!   keeps the line; a socket's writes tell it when a response is written
//!   whole: `SocketWatch`).
//! - **Bounded time.** HTTP/1.1 only, each head within `http_head_timeout`
//!   (the same bound closes an idle keep-alive connection) and of at most
//!   [`MAX_HEAD_BYTES`]; the body's bound is the route's (`http`). A client
//!   that takes none of a response for `stall_timeout` (it pipelines
//!   requests and reads nothing, or stops reading a history page) is
//!   closed, as a stalled WebSocket is.
//! - **Quiet about clients.** A connection error the client caused is logged
//!   at debug and counted (`switchboard_http_client_errors_total`), never at
//!   error.
//! - **Shutdown.** The loop stops accepting and drops the listener first.
//!   Then an HTTP connection that has received nothing, or sits idle
//!   between requests, closes at once; one with a request in flight (or a
//!   head still arriving) gets [`HTTP_DRAIN_TIMEOUT`] to finish it.
//!   WebSockets close on their own (1001), as before.
//!
//! Invariant: the loop never waits on a client; only on a slot being freed
//! by a connection it told to close, for at most [`SHED_WAIT`].

use std::convert::Infallible;
use std::io;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use warp::reply::Response;
use warp::Filter;

use crate::gateway::Node;
use crate::metrics::Metrics;

mod pending;

use pending::{Pending, PendingEntry};

/// Open files kept out of the socket budget for the node itself: sled's
/// files, NATS, the local nats-server's pipes, logs. A quarter of the limit
/// when the limit is small (under 1024).
pub const FD_RESERVE: u64 = 256;

/// The largest request head (its line and headers), and the read buffer's
/// cap: a longer head, or one still incomplete at this size, is answered
/// 431 and the connection closed.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

/// At shutdown, how long an HTTP connection's request in flight gets to
/// finish; a head still arriving, or a longer response, is cut.
pub const HTTP_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// How long the accept loop waits for the slot of a pending socket it told
/// to close; past it the new socket is closed instead.
pub const SHED_WAIT: Duration = Duration::from_millis(100);

/// The pause after `accept` fails for lack of resources (the process or the
/// system is out of descriptors), so the loop does not spin.
pub const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

/// The limits the accept loop applies.
#[derive(Clone, Copy, Debug)]
pub struct Bounds {
    /// See the `http_head_timeout` setting.
    pub head_timeout: Duration,
    /// Client sockets open at once (see [`socket_budget`]).
    pub sockets: usize,
    /// Pending sockets at once (the `max_pending_connections` setting).
    pub pending: usize,
    /// How long a response may wait on a socket that takes nothing (the
    /// `stall_timeout` setting).
    pub write_stall: Duration,
}

/// Client sockets allowed for a process allowed `open_files` descriptors:
/// the limit minus [`FD_RESERVE`] (a quarter of the limit if that is less).
pub fn socket_budget(open_files: u64) -> usize {
    let reserve = FD_RESERVE.min(open_files / 4);
    usize::try_from(open_files.saturating_sub(reserve))
        .unwrap_or(usize::MAX)
        .max(1)
}

/// Raises the soft open-file limit to the hard one (as Go programs do), and
/// returns the soft limit in force; `None` if it cannot be read.
pub fn raise_open_file_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read or write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return None;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
    }
    #[allow(clippy::unnecessary_cast)] // `rlim_t` is not `u64` everywhere.
    Some(limit.rlim_cur as u64)
}

/// Accepts and serves `routes` (the API's, [`crate::http::routes`], or
/// the metrics address's, [`crate::http::operations::routes`]) until the
/// node shuts down, then drops the listener; connections still open finish
/// as the module documentation says. Every connection is a task of `node`.
pub async fn run<R>(listener: TcpListener, node: Arc<Node>, routes: R, bounds: Bounds)
where
    R: Filter<Extract = (Response,), Error = Infallible> + Clone + Send + Sync + 'static,
{
    let metrics = Metrics::get();
    let slots = Arc::new(Semaphore::new(bounds.sockets));
    let pending = Arc::new(Pending::default());
    let routes = TowerToHyperService::new(warp::service(routes));
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(bounds.head_timeout)
        .max_buf_size(MAX_HEAD_BYTES)
        .max_header_size(MAX_HEAD_BYTES)
        .keep_alive(true);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = node.shutting_down() => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                accept_failed(&e, &pending).await;
                continue;
            }
        };
        let Some(slot) = admit(&slots, &pending, bounds.pending).await else {
            metrics.shed_full.increment(1);
            drop(stream);
            continue;
        };
        // Inherited from the listener on Linux; set again for other systems.
        let _ = stream.set_nodelay(true);
        let entry = pending.enter();
        let watch = Arc::new(SocketWatch {
            stall: WriteStall::default(),
            responses_ended: AtomicUsize::new(0),
            entry: Arc::downgrade(&entry),
        });
        let socket = TokioIo::new(Admitted {
            stream,
            watch: Some(watch.clone()),
            _slot: slot,
        });
        let service_entry = entry.clone();
        let service_watch = watch.clone();
        let routes = routes.clone();
        // The routes' future is boxed: inline, its size (that of the largest
        // handler) would be paid by every idle connection.
        let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            service_entry.request_began();
            let watch = service_watch.clone();
            let call = hyper::service::Service::call(&routes, request);
            Box::pin(async move {
                let response = call.await?;
                Ok::<_, Infallible>(response.map(|body| ResponseBody { body, watch }))
            })
        });
        let connection = http.serve_connection(socket, service).with_upgrades();
        let task_node = node.clone();
        node.spawn(async move {
            let mut connection = pin!(connection);
            let ended = tokio::select! {
                ended = connection.as_mut() => ended,
                _ = entry.close.cancelled() => {
                    metrics.shed_pending.increment(1);
                    return;
                }
                _ = watch.stall.exceeds(bounds.write_stall) => {
                    metrics.http_client_errors.write_stall.increment(1);
                    tracing::debug!("HTTP client stalled: it takes no response");
                    return;
                }
                _ = task_node.shutting_down() => {
                    connection.as_mut().graceful_shutdown();
                    match tokio::time::timeout(HTTP_DRAIN_TIMEOUT, connection.as_mut()).await {
                        Ok(ended) => ended,
                        Err(_) => return,
                    }
                }
            };
            if let Err(e) = ended {
                connection_failed(&e, metrics);
            }
        });
    }
    drop(listener);
    tracing::debug!("the listener is closed");
}

/// Makes room for a new socket: at the pending cap, the socket waiting
/// longest for a request head is told to close (none waiting: no room).
/// Then a slot: a free one, else the one of the socket waiting longest for
/// a head, told to close.
async fn admit(
    slots: &Arc<Semaphore>,
    pending: &Pending,
    max_pending: usize,
) -> Option<OwnedSemaphorePermit> {
    if pending.len() >= max_pending && !pending.shed_oldest() {
        return None;
    }
    if let Ok(slot) = slots.clone().try_acquire_owned() {
        return Some(slot);
    }
    if !pending.shed_oldest() {
        return None;
    }
    tokio::time::timeout(SHED_WAIT, slots.clone().acquire_owned())
        .await
        .ok()?
        .ok()
}

async fn accept_failed(e: &io::Error, pending: &Pending) {
    match e.raw_os_error() {
        // Out of descriptors anyway (another part of the process, or the
        // system): free one and pause.
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM) => {
            tracing::warn!(error = %e, "accept failed; closing the oldest pending HTTP connection");
            pending.shed_oldest();
            tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
        }
        // A connection that failed before it was accepted.
        _ => tracing::debug!(error = %e, "accept failed"),
    }
}

/// Logs and counts how an HTTP connection failed: at debug when the client
/// caused it (almost always), at warn otherwise.
fn connection_failed(e: &hyper::Error, metrics: &Metrics) {
    let errors = &metrics.http_client_errors;
    let counter = if e.is_timeout() {
        &errors.head_timeout
    } else if e.is_incomplete_message() {
        &errors.incomplete
    } else if e.is_parse() || e.is_parse_too_large() || e.is_parse_version_h2() {
        &errors.malformed
    } else if e.is_user() {
        tracing::warn!(error = %e, "HTTP connection failed");
        return;
    } else {
        &errors.io
    };
    counter.increment(1);
    tracing::debug!(error = %e, "HTTP connection ended by the client");
}

/// An admitted socket: the stream, what its writes tell the accept loop,
/// and its slot of the budget, freed when the socket is dropped. After an
/// upgrade hyper hands this whole value to the WebSocket, so the slot lives
/// as long as the socket.
struct Admitted {
    stream: TcpStream,
    /// Shared with the HTTP connection's task; let go once that task is
    /// gone (the socket was upgraded), see [`Admitted::watch`].
    watch: Option<Arc<SocketWatch>>,
    _slot: OwnedSemaphorePermit,
}

impl Admitted {
    /// The socket's watch while its HTTP connection runs. Once the socket
    /// is a WebSocket nobody reads the watch: the first write after the
    /// upgrade lets it go, and the pending entry's memory with it (96
    /// bytes of every idle connection).
    fn watch(&mut self) -> Option<&SocketWatch> {
        if self
            .watch
            .as_ref()
            .is_some_and(|w| Arc::strong_count(w) == 1)
        {
            self.watch = None;
        }
        self.watch.as_deref()
    }
}

/// What a socket's writes tell the accept loop: whether they are stalled,
/// and when a response has left hyper's buffer.
struct SocketWatch {
    stall: WriteStall,
    /// Responses whose body hyper has finished with (a [`ResponseBody`]
    /// dropped) since the socket was last flushed. hyper flushes the socket
    /// only once its own buffer is empty, so at that flush each of them is
    /// written whole to the kernel.
    responses_ended: AtomicUsize,
    /// The socket's place among the pending ones (gone after an upgrade).
    entry: Weak<PendingEntry>,
}

impl SocketWatch {
    /// The socket was flushed: responses that had ended are written.
    fn flushed(&self) {
        if self.responses_ended.load(Ordering::Relaxed) == 0 {
            return;
        }
        let written = self.responses_ended.swap(0, Ordering::Relaxed);
        if let Some(entry) = self.entry.upgrade() {
            entry.responses_written(written);
        }
    }
}

/// A response's body as hyper writes it, unchanged; dropped once hyper has
/// taken all of it into its buffer (or the connection ended).
struct ResponseBody<B> {
    body: B,
    watch: Arc<SocketWatch>,
}

impl<B: Body + Unpin> Body for ResponseBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl<B> Drop for ResponseBody<B> {
    fn drop(&mut self) {
        self.watch.responses_ended.fetch_add(1, Ordering::Relaxed);
    }
}

/// Since when a socket has taken nothing written to it: milliseconds after
/// [`WriteStall::epoch`], plus one; 0 while writes go through.
#[derive(Default)]
struct WriteStall(AtomicU64);

impl WriteStall {
    fn epoch() -> Instant {
        static EPOCH: OnceLock<Instant> = OnceLock::new();
        *EPOCH.get_or_init(Instant::now)
    }

    /// Notes how a write (or flush) went.
    fn note<T>(&self, polled: &Poll<T>) {
        if polled.is_pending() {
            if self.0.load(Ordering::Relaxed) == 0 {
                let now = Self::epoch().elapsed().as_millis() as u64 + 1;
                self.0.store(now, Ordering::Relaxed);
            }
        } else {
            self.0.store(0, Ordering::Relaxed);
        }
    }

    /// Since when writes are stalled, if they are.
    fn since(&self) -> Option<Instant> {
        match self.0.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(Self::epoch() + Duration::from_millis(ms - 1)),
        }
    }

    /// Resolves once writes have been stalled for `bound` (noticed within a
    /// quarter of it).
    async fn exceeds(&self, bound: Duration) {
        loop {
            match self.since() {
                None => tokio::time::sleep(bound / 4).await,
                Some(since) => {
                    let deadline = since + bound;
                    if Instant::now() >= deadline {
                        return;
                    }
                    tokio::time::sleep_until(deadline.into()).await;
                }
            }
        }
    }
}

impl AsyncRead for Admitted {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Admitted {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.stream).poll_write(cx, buf);
        if let Some(watch) = this.watch() {
            watch.stall.note(&polled);
        }
        polled
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
        if let Some(watch) = this.watch() {
            watch.stall.note(&polled);
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.stream).poll_flush(cx);
        if let Poll::Ready(Ok(())) = polled {
            if let Some(watch) = this.watch() {
                watch.flushed();
            }
        }
        polled
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_keeps_a_reserve() {
        assert_eq!(socket_budget(20_000), 20_000 - 256);
        assert_eq!(socket_budget(1024), 768);
        assert_eq!(socket_budget(256), 192);
        assert_eq!(socket_budget(0), 1);
    }
}
