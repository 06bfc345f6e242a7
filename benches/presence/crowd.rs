//! The present users: one WebSocket each, on node A, subscribed to the
//! channel without asking for presence (every subscription to a `channel:`
//! makes its user present), then read until the run ends so that pings are
//! answered. Also the storm: users coming online spread over a stretch of
//! time, each at its own moment.

use std::time::{Duration, Instant};

use futures::StreamExt;
use switchboard::channel::{Channel, Id};
use switchboard::token::Grant;
use switchboard_harness::bench::{self, Gateway, Ws};
use switchboard_harness::{token_named, TOKEN_TTL};
use tokio::task::JoinHandle;

use super::heap::username;

/// Present users read nothing but pings: a small buffer keeps ten
/// thousand of them in the bench process.
pub const READ_BUFFER: usize = 4 * 1024;

/// Users connecting at once while the crowd fills.
pub const CONNECT_CONCURRENCY: usize = 128;

/// A token for user `i` (named as [`username`] says) allowed `channel`.
pub fn user_token(user: Id, i: usize, channel: Id) -> String {
    token_named(
        user,
        Grant::Some(vec![channel]),
        &[],
        Some(&username(i)),
        TOKEN_TTL,
    )
}

/// Connects user `i` to `gateway` and subscribes it to `channel` (no
/// presence asked).
pub async fn connect_user(gateway: &Gateway, channel: Id, i: usize, read_buffer: usize) -> Ws {
    let token = user_token(Id::new_v4(), i, channel);
    let mut ws = bench::connect_gateway(&gateway.ws_url(&token), read_buffer).await;
    bench::subscribe_live(&mut ws, Channel::Chat(channel)).await;
    ws
}

/// Reads a socket until it ends (tungstenite answers the pings).
fn keep_reading(mut ws: Ws) -> JoinHandle<()> {
    tokio::spawn(async move { while let Some(Ok(_)) = ws.next().await {} })
}

/// Connected users, each read by a task; dropped, every socket closes.
#[derive(Default)]
pub struct Crowd {
    readers: Vec<JoinHandle<()>>,
}

impl Crowd {
    /// A connected user joins the crowd.
    pub fn adopt(&mut self, ws: Ws) {
        self.readers.push(keep_reading(ws));
    }

    /// Users `first..first + n` come online on `gateway`, as fast as
    /// [`CONNECT_CONCURRENCY`] lets them.
    pub async fn fill(&mut self, gateway: &Gateway, channel: Id, first: usize, n: usize) {
        let sockets: Vec<Ws> = futures::stream::iter(first..first + n)
            .map(|i| connect_user(gateway, channel, i, READ_BUFFER))
            .buffer_unordered(CONNECT_CONCURRENCY)
            .collect()
            .await;
        self.readers.extend(sockets.into_iter().map(keep_reading));
    }

    /// Users `first..first + n` come online on `gateway`, user `k` of them
    /// starting at `start + k × spread / n`; when each one's `subscribed`
    /// arrived, in no order. The sockets join the crowd.
    pub async fn storm(
        &mut self,
        gateway: &Gateway,
        channel: Id,
        first: usize,
        n: usize,
        spread: Duration,
    ) -> Vec<Instant> {
        let start = tokio::time::Instant::now() + Duration::from_millis(50);
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        for k in 0..n {
            let url = gateway.ws_url(&user_token(Id::new_v4(), first + k, channel));
            let at = start + spread.mul_f64(k as f64 / n as f64);
            let tx = tx.clone();
            self.readers.push(tokio::spawn(async move {
                tokio::time::sleep_until(at).await;
                let mut ws = bench::connect_gateway(&url, READ_BUFFER).await;
                bench::subscribe_live(&mut ws, Channel::Chat(channel)).await;
                let _ = tx.send(Instant::now());
                while let Some(Ok(_)) = ws.next().await {}
            }));
        }
        drop(tx);
        let mut subscribed = Vec::with_capacity(n);
        let deadline = tokio::time::Instant::now() + bench::PATIENCE;
        while subscribed.len() < n {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(at)) => subscribed.push(at),
                Ok(None) => panic!("a storm user failed to connect or subscribe"),
                Err(_) => panic!("the storm's users did not all subscribe in time"),
            }
        }
        subscribed
    }
}

impl Drop for Crowd {
    fn drop(&mut self) {
        for reader in &self.readers {
            reader.abort();
        }
    }
}
