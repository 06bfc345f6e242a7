//! The storm's clients: the storm clients (on A until it dies, then back
//! on B with `since_seq` or `?session=`, retrying with a back-off) and the
//! control group (live on B, timing each delivery).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::json;
use switchboard::channel::{Channel, Id};
use switchboard::token::Grant;
use tokio::sync::{watch, Semaphore};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

use super::Resume;
use switchboard_harness::bench::{self, now_nanos, Ws};

/// Storm clients read little at a time: a small buffer keeps thousands of
/// them in one process.
pub const READ_BUFFER: usize = 4 * 1024;

/// Clients in their TCP connect and upgrade at once.
pub const CONNECT_CONCURRENCY: usize = 256;

/// How long one connect (TCP and upgrade) may take before it counts as
/// refused and is retried.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The first reconnect back-off; doubled per failed attempt up to
/// [`BACKOFF_MAX`], plus up to half of it again at random.
pub const BACKOFF_FIRST: Duration = Duration::from_millis(200);
pub const BACKOFF_MAX: Duration = Duration::from_secs(3);

/// How long a client on A waits for its socket to end after the kill.
pub const KILL_GRACE: Duration = Duration::from_secs(5);

/// How long after an `error` frame a client waits for the close that
/// usually follows, before it closes and reconnects itself.
pub const ERROR_GRACE: Duration = Duration::from_secs(2);

/// What every storm client shares with the run.
pub struct Shared {
    pub b_addr: std::net::SocketAddr,
    pub resume: Resume,
    pub connecting: Semaphore,
    /// Storm clients subscribed on A.
    pub ready: AtomicUsize,
    /// Subscriptions that got `replayed` on B (the first time each).
    pub live: AtomicUsize,
    /// When A was killed (nanoseconds since the epoch).
    pub killed: watch::Receiver<Option<u64>>,
    /// The cut-off `seq` and the moment every client gives up passing it.
    pub cutoff: watch::Receiver<Option<(u64, Instant)>>,
    pub sizes_offline: Duration,
    pub sizes_spread: Duration,
    pub clients: usize,
}

/// What one storm client saw, over both gateways.
#[derive(Default)]
pub struct Record {
    /// Every `seq` received per subscription, in arrival order.
    pub seqs: [Vec<u64>; 2],
    /// The `since_seq` of the first resume on B (the last `seq` from A).
    pub resumed_from: [u64; 2],
    /// From the start of the reconnect to each subscription's `replayed`.
    pub to_replayed: [Option<Duration>; 2],
    /// From the start of the reconnect to B's `hello`.
    pub to_hello: Option<Duration>,
    /// From the start of the reconnect to the first connect's turn (the
    /// bench's own queue: [`CONNECT_CONCURRENCY`] connect at once).
    pub to_turn: Option<Duration>,
    /// From the start of the reconnect to B's answer to the first upgrade
    /// that held (TCP connect and the 101).
    pub to_upgraded: Option<Duration>,
    /// Connect attempts on B (1 when the first one held).
    pub attempts: u32,
    /// Connects refused, failed or timed out.
    pub refused: u32,
    /// `error` frames received.
    pub errors: u32,
    /// Closes with 1011.
    pub closes_1011: u32,
    /// Other closes or drops on B before the client was done.
    pub dropped: u32,
    /// A first frame on B that was not `hello`.
    pub not_hello_first: u32,
    /// `subscribed` with `complete: false`.
    pub incomplete: u32,
    /// Session runs: subscriptions B did not restore (`hello.resumed`
    /// false, or the channel missing from `hello.channels`); the client
    /// subscribed to them again with `since_seq`.
    pub not_resumed: u32,
}

/// Which of the client's channels a frame's `channel` names.
pub fn channel_index(frame: &str, names: &[String; 2]) -> Option<usize> {
    const KEY: &str = "\"channel\":\"";
    let start = frame.find(KEY)? + KEY.len();
    let rest = &frame[start..];
    let end = rest.find('"')?;
    names.iter().position(|n| n == &rest[..end])
}

pub fn parse(frame: &str) -> serde_json::Value {
    serde_json::from_str(frame).unwrap_or(serde_json::Value::Null)
}

pub async fn send_subscribe(ws: &mut Ws, channel: &str, since: Option<u64>) -> bool {
    let mut frame = json!({"type": "subscribe", "channel": channel});
    if let Some(seq) = since {
        frame["since_seq"] = seq.into();
    }
    ws.send(Message::Text(frame.to_string().into()))
        .await
        .is_ok()
}

pub fn last_seq(seqs: &[u64]) -> u64 {
    seqs.iter().copied().max().unwrap_or(0)
}

/// An instant no wait reaches.
pub fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86_400)
}

/// A storm client: on A until it dies, then back on B.
pub async fn storm_client(
    index: usize,
    a_url: String,
    channels: [Id; 2],
    user: Id,
    shared: Arc<Shared>,
) -> Record {
    let names = channels.map(|c| Channel::Chat(c).to_string());
    let token = bench::token(user, Grant::Some(channels.to_vec()), &[]);
    let mut record = Record::default();

    // On A: subscribe live (the publisher starts once everyone is).
    let permit = shared.connecting.acquire().await.expect("semaphore");
    let mut ws = bench::connect(&format!("{a_url}?token={token}"), READ_BUFFER).await;
    drop(permit);
    let hello = parse(&bench::next_text(&mut ws).await);
    assert_eq!(hello["type"], "hello", "{hello}");
    let session = hello["data"]["session_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    for name in &names {
        assert!(send_subscribe(&mut ws, name, None).await, "subscribe sent");
    }
    let mut subscribed = 0;
    while subscribed < 2 {
        let frame = bench::next_text(&mut ws).await;
        match bench::control_type(&frame).as_deref() {
            Some("subscribed") => subscribed += 1,
            Some("error") => panic!("subscribe refused on A: {frame}"),
            None => record_event(&frame, &names, &mut record),
            _ => {}
        }
    }
    shared.ready.fetch_add(1, Ordering::Relaxed);

    // Until A dies (its sockets end with it; a grace bounds the wait).
    let mut killed = shared.killed.clone();
    let mut grace: Option<Instant> = None;
    loop {
        let until = grace.unwrap_or_else(far_future);
        tokio::select! {
            message = ws.next() => match message {
                Some(Ok(Message::Text(frame))) => record_event(&frame, &names, &mut record),
                Some(Ok(_)) => {}
                Some(Err(_)) | None => break,
            },
            _ = killed.changed(), if grace.is_none() => {
                grace = Some(Instant::now() + KILL_GRACE);
            }
            _ = tokio::time::sleep_until(until.into()), if grace.is_some() => break,
        }
    }
    drop(ws);
    let killed_at = loop {
        if let Some(at) = *killed.borrow_and_update() {
            break at;
        }
        if killed.changed().await.is_err() {
            return record;
        }
    };
    record.resumed_from = [last_seq(&record.seqs[0]), last_seq(&record.seqs[1])];

    // Offline, then back on B at this client's place in the spread.
    let offset = shared.sizes_offline
        + shared
            .sizes_spread
            .mul_f64(index as f64 / shared.clients.max(1) as f64);
    let wake = Duration::from_nanos(killed_at).saturating_add(offset);
    let now = Duration::from_nanos(now_nanos());
    tokio::time::sleep(wake.saturating_sub(now)).await;
    let started = Instant::now();
    let mut backoff = BACKOFF_FIRST;
    let mut cutoff = shared.cutoff.clone();
    loop {
        let done = on_b(
            &shared,
            &token,
            &session,
            &names,
            started,
            &mut cutoff,
            &mut record,
        )
        .await;
        if done {
            return record;
        }
        let give_up = cutoff.borrow().map(|(_, at)| at);
        if give_up.is_some_and(|at| Instant::now() >= at) {
            return record;
        }
        let jitter = backoff.mul_f64(fastrand::f64() / 2.0);
        tokio::time::sleep(backoff + jitter).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

pub fn record_event(frame: &str, names: &[String; 2], record: &mut Record) {
    if let (Some(i), Some(seq)) = (
        channel_index(frame, names),
        bench::frame_u64(frame, "\"seq\":"),
    ) {
        record.seqs[i].push(seq);
    }
}

/// Whether every subscription has passed the cut-off.
pub fn passed(record: &Record, cutoff: u64) -> bool {
    record.seqs.iter().all(|seqs| last_seq(seqs) > cutoff)
}

/// One connection to B. Returns true when the client is done (past the
/// cut-off, or out of time), false to reconnect after a back-off.
pub async fn on_b(
    shared: &Shared,
    token: &str,
    session: &str,
    names: &[String; 2],
    started: Instant,
    cutoff: &mut watch::Receiver<Option<(u64, Instant)>>,
    record: &mut Record,
) -> bool {
    record.attempts += 1;
    let mut url = format!("ws://{}/v1/ws?token={token}", shared.b_addr);
    if shared.resume == Resume::Session {
        url.push_str("&session=");
        url.push_str(session);
    }
    let permit = shared.connecting.acquire().await.expect("semaphore");
    record.to_turn.get_or_insert(started.elapsed());
    let connected = bench::try_connect(&url, READ_BUFFER, CONNECT_TIMEOUT).await;
    drop(permit);
    let mut ws = match connected {
        Ok(ws) => {
            record.to_upgraded.get_or_insert(started.elapsed());
            ws
        }
        Err(_) => {
            record.refused += 1;
            return false;
        }
    };
    let mut first = true;
    let mut give_up = cutoff.borrow().map(|(_, at)| at);
    let mut errored: Option<Instant> = None;
    loop {
        let current = *cutoff.borrow_and_update();
        if let (Some((seq, _)), false) = (current, first) {
            if passed(record, seq) {
                let _ = ws.close(None).await;
                return true;
            }
        }
        let deadline = match (give_up, errored) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b).unwrap_or_else(far_future),
        };
        let message = tokio::select! {
            message = ws.next() => message,
            changed = cutoff.changed() => {
                if changed.is_ok() {
                    give_up = cutoff.borrow().map(|(_, at)| at);
                }
                continue;
            }
            _ = tokio::time::sleep_until(deadline.into()) => {
                let _ = ws.close(None).await;
                // Out of time, or an `error` without a close: reconnect.
                return give_up.is_some_and(|at| Instant::now() >= at);
            }
        };
        let frame = match message {
            Some(Ok(Message::Text(frame))) => frame,
            Some(Ok(Message::Close(close))) => {
                if close.is_some_and(|c| c.code == CloseCode::Error) {
                    record.closes_1011 += 1;
                } else {
                    record.dropped += 1;
                }
                return false;
            }
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => {
                record.dropped += 1;
                return false;
            }
        };
        let kind = bench::control_type(&frame);
        if first {
            first = false;
            if kind.as_deref() != Some("hello") {
                record.not_hello_first += 1;
                if kind.as_deref() == Some("error") {
                    record.errors += 1;
                }
                let _ = ws.close(None).await;
                return false;
            }
            record.to_hello.get_or_insert(started.elapsed());
            // With a session, B restores what `hello.channels` lists; a
            // subscription it does not restore is counted and subscribed
            // again with `since_seq`, so the other figures stay meaningful.
            let hello = parse(&frame);
            let session = shared.resume == Resume::Session && hello["data"]["resumed"] == true;
            let listed = |name: &String| {
                session
                    && hello["data"]["channels"]
                        .as_array()
                        .is_some_and(|list| list.iter().any(|c| c == name.as_str()))
            };
            for (i, name) in names.iter().enumerate() {
                if listed(name) {
                    continue;
                }
                if shared.resume == Resume::Session {
                    record.not_resumed += 1;
                }
                let since = last_seq(&record.seqs[i]);
                if !send_subscribe(&mut ws, name, Some(since)).await {
                    record.dropped += 1;
                    return false;
                }
            }
            continue;
        }
        match kind.as_deref() {
            None => record_event(&frame, names, record),
            Some("replayed") => {
                if let Some(i) = channel_index(&frame, names) {
                    if record.to_replayed[i].is_none() {
                        record.to_replayed[i] = Some(started.elapsed());
                        shared.live.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            Some("subscribed") if parse(&frame)["data"]["complete"] == false => {
                record.incomplete += 1;
            }
            Some("error") => {
                // Usually followed by close 1011; if not, the subscription
                // it names is gone: reconnect after the grace.
                record.errors += 1;
                errored.get_or_insert(Instant::now() + ERROR_GRACE);
            }
            _ => {}
        }
    }
}

/// What one control client saw: `(receive nanos, latency nanos)` per event.
#[derive(Default)]
pub struct ControlRecord {
    pub samples: Vec<(u64, u64)>,
    pub errors: u32,
    pub closes: u32,
}

/// A control client on B: live on one channel until `stop`.
pub async fn control_client(
    url: String,
    channel: Id,
    ready: Arc<AtomicUsize>,
    mut stop: watch::Receiver<bool>,
) -> ControlRecord {
    let mut record = ControlRecord::default();
    let mut announced = false;
    while !*stop.borrow() {
        let mut ws = match bench::try_connect(&url, READ_BUFFER, CONNECT_TIMEOUT).await {
            Ok(ws) => ws,
            Err(_) => {
                record.closes += 1;
                tokio::time::sleep(BACKOFF_FIRST).await;
                continue;
            }
        };
        let hello = bench::next_text(&mut ws).await;
        if bench::control_type(&hello).as_deref() != Some("hello") {
            record.errors += 1;
            continue;
        }
        bench::subscribe_live(&mut ws, Channel::Chat(channel)).await;
        if !announced {
            ready.fetch_add(1, Ordering::Relaxed);
            announced = true;
        }
        loop {
            let message = tokio::select! {
                message = ws.next() => message,
                _ = stop.changed() => break,
            };
            match message {
                Some(Ok(Message::Text(frame))) => match bench::control_type(&frame).as_deref() {
                    None => {
                        if let Some(sent) = bench::frame_u64(&frame, "\"content\":") {
                            let now = now_nanos();
                            record.samples.push((now, now.saturating_sub(sent)));
                        }
                    }
                    Some("error") => record.errors += 1,
                    _ => {}
                },
                Some(Ok(_)) => {}
                Some(Err(_)) | None => {
                    record.closes += 1;
                    break;
                }
            }
        }
    }
    record
}
