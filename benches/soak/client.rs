//! The soak's clients: each follows two channels for the whole run over
//! any number of connections, on its home gateway when that one is up and
//! on the other otherwise, and checks every event of its channels by
//! `seq`.
//!
//! Three kinds, in turn: `since_seq` clients resume each subscription from
//! the last `seq` they received; session clients reconnect with
//! `?session=` (both gateways keep sessions in the bucket), one half
//! acking what they received every [`ACK_EVERY`], the other never acking
//! (their cursors move by the gateway's ping confirmation). A subscription
//! a session does not restore is subscribed again with `since_seq`.
//!
//! Per channel a client keeps the last `seq` it accepted and how many it
//! accepted: an event at or below the last one is a redelivery after a
//! reconnect (allowed, dropped, counted), unless it comes twice on one
//! connection (a duplicate or out of order: never allowed). What is lost
//! is told at the end, against the publisher's receipts: every client
//! subscribed before the first event, so each must have accepted exactly
//! the stored events of its channels.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::json;
use switchboard::channel::{Channel, Id};
use switchboard::token::Grant;
use switchboard_harness::bench::{self, now_nanos, Ws};
use tokio::sync::{watch, Notify, Semaphore};
use tokio_tungstenite::tungstenite::Message;

/// A client's socket read buffer: small, the events are small.
const READ_BUFFER: usize = 8 * 1024;

/// Connects (TCP and upgrade) in flight at once, over all clients.
pub const CONNECT_CONCURRENCY: usize = 128;

/// How long one connect may take before it counts as failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a connection may wait for `hello`.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// How often an acking client acks the last `seq` of each channel.
pub const ACK_EVERY: Duration = Duration::from_millis(500);

/// After a failed connect: the first back-off, doubled per failure up to
/// the last one, each plus up to half again at random.
const BACKOFF_FIRST: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(3);

/// A dropped client (churn or storm) is back within this (at random).
pub const BACK_WITHIN: Duration = Duration::from_secs(1);

/// How a client resumes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    SinceSeq,
    SessionAcking,
    Session,
}

impl Kind {
    pub fn of(i: usize) -> Kind {
        match i % 3 {
            0 => Kind::SinceSeq,
            1 => Kind::SessionAcking,
            _ => Kind::Session,
        }
    }
}

/// The two gateways as the clients see them: their addresses (a restart
/// gets a new port) and whether each is up.
pub struct Gateways {
    pub addrs: Mutex<[SocketAddr; 2]>,
    pub up: [AtomicBool; 2],
}

impl Gateways {
    fn addr(&self, i: usize) -> SocketAddr {
        self.addrs.lock().unwrap_or_else(|e| e.into_inner())[i]
    }
}

/// What the run and every client share.
pub struct Shared {
    pub gateways: Gateways,
    pub connecting: Semaphore,
    /// Clients subscribed on their first connection.
    pub ready: AtomicUsize,
    /// Events accepted (new, not redelivered) since the sampler last took it.
    pub delivered: AtomicU64,
    /// Live latencies (publish → receipt, nanoseconds) since the sampler
    /// last took them.
    pub latencies: Mutex<Vec<u64>>,
    /// The end: the last `seq` stored in each channel once the publisher
    /// stopped (a client is done when it has reached both of its
    /// channels'), and when the clients give up reaching it.
    pub last_stored: watch::Receiver<Option<(Arc<Vec<u64>>, Instant)>>,
}

/// The run's handle on one client: drop it (an RST) while connected, or
/// send it to its home gateway.
#[derive(Default)]
pub struct Control {
    pub connected: AtomicBool,
    /// Which gateway it is on now.
    pub on: AtomicUsize,
    pub drop: Notify,
}

/// What one client saw over the whole run.
#[derive(Default, Debug)]
pub struct Record {
    /// Channel indices (of the run's channels).
    pub channels: [usize; 2],
    /// Per channel: the last `seq` accepted, and how many were accepted.
    pub last: [u64; 2],
    pub accepted: [u64; 2],
    /// Events at or below the last accepted `seq`, on a later connection
    /// (a resume replaying what was already had): dropped.
    pub redelivered: u64,
    /// Events at or below one already received on the same connection.
    pub duplicated: u64,
    pub connections: u64,
    pub failed_connects: u64,
    /// Drops the run asked for (RST).
    pub dropped: u64,
    /// Connections that ended otherwise (a gateway killed, a close frame).
    pub ended: u64,
    pub errors: u64,
    /// Session subscriptions not restored (subscribed again with `since_seq`).
    pub not_restored: u64,
    pub incomplete: u64,
    /// Reached the last stored `seq` of both channels at the end.
    pub finished: bool,
}

/// One client, until it has every event of its channels (or gives up).
pub async fn client(
    index: usize,
    channel_ids: [Id; 2],
    channels: [usize; 2],
    shared: Arc<Shared>,
    control: Arc<Control>,
) -> Record {
    let kind = Kind::of(index);
    let home = index % 2;
    let names = channel_ids.map(|c| Channel::Chat(c).to_string());
    let token = bench::token(Id::new_v4(), Grant::Some(channel_ids.to_vec()), &[]);
    let mut record = Record {
        channels,
        ..Record::default()
    };
    let mut session = String::new();
    let mut backoff = BACKOFF_FIRST;
    let mut target = home;
    let mut first = true;
    loop {
        if finished(&shared, &record) || given_up(&shared) {
            record.finished = finished(&shared, &record);
            return record;
        }
        if !shared.gateways.up[target].load(Ordering::Relaxed) {
            target = 1 - target;
        }
        let mut url = format!("ws://{}/v1/ws?token={token}", shared.gateways.addr(target));
        if kind != Kind::SinceSeq && !session.is_empty() {
            url.push_str("&session=");
            url.push_str(&session);
        }
        let permit = shared.connecting.acquire().await.expect("semaphore");
        let connected = bench::try_connect(&url, READ_BUFFER, CONNECT_TIMEOUT).await;
        drop(permit);
        let Ok(ws) = connected else {
            record.failed_connects += 1;
            let jitter = backoff.mul_f64(fastrand::f64() / 2.0);
            tokio::time::sleep(backoff + jitter).await;
            backoff = (backoff * 2).min(BACKOFF_MAX);
            // Try the other gateway next (the home one again after it).
            target = 1 - target;
            continue;
        };
        backoff = BACKOFF_FIRST;
        record.connections += 1;
        control.on.store(target, Ordering::Relaxed);
        let end = connection(
            ws,
            kind,
            &names,
            &mut session,
            &shared,
            &control,
            &mut record,
            &mut first,
        )
        .await;
        control.connected.store(false, Ordering::Relaxed);
        match end {
            End::Done => {}
            End::Dropped => {
                record.dropped += 1;
                tokio::time::sleep(BACK_WITHIN.mul_f64(fastrand::f64())).await;
            }
            End::Ended => {
                record.ended += 1;
                tokio::time::sleep(BACK_WITHIN.mul_f64(fastrand::f64())).await;
            }
        }
        // Home again when it is up.
        target = home;
    }
}

/// How a connection ended.
enum End {
    /// Every event up to the end was received, or time is up.
    Done,
    /// The run dropped it (an RST).
    Dropped,
    /// The gateway or the network ended it.
    Ended,
}

fn finished(shared: &Shared, record: &Record) -> bool {
    shared
        .last_stored
        .borrow()
        .as_ref()
        .is_some_and(|(last, _)| (0..2).all(|k| record.last[k] >= last[record.channels[k]]))
}

fn given_up(shared: &Shared) -> bool {
    give_up_at(shared).is_some_and(|at| Instant::now() >= at)
}

fn give_up_at(shared: &Shared) -> Option<Instant> {
    shared.last_stored.borrow().as_ref().map(|(_, at)| *at)
}

/// One connection: hello, the subscriptions (restored or sent), then
/// events until it ends, the run drops it, or the client is done.
#[allow(clippy::too_many_arguments)]
async fn connection(
    mut ws: Ws,
    kind: Kind,
    names: &[String; 2],
    session: &mut String,
    shared: &Shared,
    control: &Control,
    record: &mut Record,
    first: &mut bool,
) -> End {
    let hello = match tokio::time::timeout(HELLO_TIMEOUT, next_text(&mut ws)).await {
        Ok(Some(text)) => parse(&text),
        _ => return End::Ended,
    };
    if hello["type"] != "hello" {
        record.errors += 1;
        return End::Ended;
    }
    if let Some(id) = hello["data"]["session_id"].as_str() {
        *session = id.to_string();
    }
    let restored = |name: &String| {
        kind != Kind::SinceSeq
            && hello["data"]["resumed"] == true
            && hello["data"]["channels"]
                .as_array()
                .is_some_and(|list| list.iter().any(|c| c == name.as_str()))
    };
    // Per channel: live (the replay, if any, is over), and the last seq
    // this connection received.
    let mut live = [false; 2];
    let mut here = [0u64; 2];
    let mut asked_live = [false; 2];
    let mut subscribed_live = 0;
    for (k, name) in names.iter().enumerate() {
        if restored(name) {
            continue;
        }
        if kind != Kind::SinceSeq && !*first {
            record.not_restored += 1;
        }
        let since = (!*first).then_some(record.last[k]);
        asked_live[k] = since.is_none();
        let mut frame = json!({"type": "subscribe", "channel": name});
        if let Some(seq) = since {
            frame["since_seq"] = seq.into();
        }
        if ws
            .send(Message::Text(frame.to_string().into()))
            .await
            .is_err()
        {
            return End::Ended;
        }
    }
    control.connected.store(true, Ordering::Relaxed);
    let mut acked = record.last;
    let mut ack_tick = tokio::time::interval(ACK_EVERY);
    ack_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_stored = shared.last_stored.clone();
    let mut ending = false;
    let far = Instant::now() + Duration::from_secs(86_400);
    let give_up = tokio::time::sleep_until(give_up_at(shared).unwrap_or(far).into());
    tokio::pin!(give_up);
    loop {
        let message = tokio::select! {
            message = ws.next() => message,
            _ = control.drop.notified() => {
                reset(ws);
                return End::Dropped;
            }
            _ = ack_tick.tick(), if kind == Kind::SessionAcking => {
                for k in 0..2 {
                    if record.last[k] > acked[k] && here[k] > 0 {
                        let frame = json!({"type": "ack", "channel": names[k], "seq": record.last[k]});
                        if ws.send(Message::Text(frame.to_string().into())).await.is_err() {
                            return End::Ended;
                        }
                        acked[k] = record.last[k];
                    }
                }
                continue;
            }
            changed = last_stored.changed(), if !ending => {
                ending = changed.is_err();
                if finished(shared, record) {
                    let _ = ws.close(None).await;
                    return End::Done;
                }
                if let Some(at) = give_up_at(shared) {
                    give_up.as_mut().reset(at.into());
                }
                continue;
            }
            _ = &mut give_up => {
                let _ = ws.close(None).await;
                return End::Done;
            }
        };
        let text = match message {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return End::Ended,
            Some(Ok(_)) => continue,
        };
        let Some(k) = channel_index(&text, names) else {
            if bench::control_type(&text).as_deref() == Some("error") {
                record.errors += 1;
            }
            continue;
        };
        // An event has a top-level `seq`; a control frame has none.
        match bench::frame_u64(&text, "\"seq\":") {
            Some(seq) => {
                if seq <= here[k] {
                    record.duplicated += 1;
                    continue;
                }
                here[k] = seq;
                if seq <= record.last[k] {
                    record.redelivered += 1;
                    continue;
                }
                record.last[k] = seq;
                record.accepted[k] += 1;
                shared.delivered.fetch_add(1, Ordering::Relaxed);
                if live[k] {
                    if let Some(sent) = bench::frame_u64(&text, "\"content\":") {
                        let latency = now_nanos().saturating_sub(sent);
                        shared
                            .latencies
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push(latency);
                    }
                }
                if finished(shared, record) {
                    let _ = ws.close(None).await;
                    return End::Done;
                }
            }
            _ => match bench::control_type(&text).as_deref() {
                Some("subscribed") => {
                    if parse(&text)["data"]["complete"] == false {
                        record.incomplete += 1;
                    }
                    if asked_live[k] {
                        live[k] = true;
                        subscribed_live += 1;
                        if *first && subscribed_live == 2 {
                            *first = false;
                            shared.ready.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                Some("replayed") => live[k] = true,
                Some("error") => record.errors += 1,
                _ => {}
            },
        }
    }
}

/// Which of the client's channels a frame names (`"channel":"…"`).
fn channel_index(frame: &str, names: &[String; 2]) -> Option<usize> {
    const KEY: &str = "\"channel\":\"";
    let start = frame.find(KEY)? + KEY.len();
    let rest = &frame[start..];
    let end = rest.find('"')?;
    names.iter().position(|n| n == &rest[..end])
}

fn parse(frame: &str) -> serde_json::Value {
    serde_json::from_str(frame).unwrap_or(serde_json::Value::Null)
}

/// The next text frame; `None` when the socket ends.
async fn next_text(ws: &mut Ws) -> Option<String> {
    loop {
        match ws.next().await? {
            Ok(Message::Text(text)) => return Some(text.to_string()),
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

/// Drops the connection as a network failure would: no close frame, a TCP
/// reset (SO_LINGER 0).
fn reset(ws: Ws) {
    if let tokio_tungstenite::MaybeTlsStream::Plain(tcp) = ws.get_ref() {
        let _ = tcp.set_zero_linger();
    }
}
