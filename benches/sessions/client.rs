//! The session bench's clients: light WebSocket clients, one task each, live
//! on one channel; they answer the gateway's pings (tungstenite does while
//! reading), half of them also `ack` every second, and each keeps every
//! `seq` it received for the comparison with the receipts.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::json;
use switchboard::channel::{Channel, Id};
use switchboard::token::Grant;
use tokio::sync::{watch, Semaphore};
use tokio_tungstenite::tungstenite::Message;

use switchboard_harness::bench;

/// A small read buffer keeps thousands of clients in one process.
pub const READ_BUFFER: usize = 4 * 1024;

/// Clients in their TCP connect and upgrade at once.
pub const CONNECT_CONCURRENCY: usize = 256;

/// How often an acking client acks its last `seq`.
pub const ACK_EVERY: Duration = Duration::from_secs(1);

/// How long a client waits for the server's answer to its Close.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// The last `seq` stored per channel (by index), and the moment every
/// client stops waiting for it.
pub type Finish = Option<(Arc<Vec<u64>>, Instant)>;

/// What every client shares with the run.
pub struct Shared {
    pub connecting: Semaphore,
    /// Clients subscribed.
    pub ready: AtomicUsize,
    /// Events received, by everyone.
    pub delivered: AtomicU64,
    /// Pings received, by everyone.
    pub pings: AtomicU64,
    /// `ack` frames sent, by everyone.
    pub acks: AtomicU64,
    pub finish: watch::Receiver<Finish>,
}

/// What one client saw.
#[derive(Default)]
pub struct Record {
    /// Every `seq` received, in arrival order.
    pub seqs: Vec<u64>,
    /// `error` frames received.
    pub errors: u32,
    /// The socket ended (close, error, EOF) before the client was done.
    pub dropped: bool,
    /// The finish deadline passed before the channel's last event came.
    pub late: bool,
}

/// One client: connects, subscribes live to `channels[index]`, then reads
/// (and acks, when `acks`) until it has the channel's last `seq` or the
/// finish deadline passes.
pub async fn client(
    url: String,
    channel: Id,
    index: usize,
    acks: bool,
    shared: Arc<Shared>,
) -> Record {
    let name = Channel::Chat(channel).to_string();
    let token = bench::token(Id::new_v4(), Grant::Some(vec![channel]), &[]);
    let mut record = Record::default();

    let permit = shared.connecting.acquire().await.expect("semaphore");
    let mut ws = bench::connect_gateway(&format!("{url}?token={token}"), READ_BUFFER).await;
    drop(permit);
    bench::subscribe_live(&mut ws, Channel::Chat(channel)).await;
    shared.ready.fetch_add(1, Ordering::Relaxed);

    // Acks spread over the second, not all at once.
    let first_ack = Instant::now() + ACK_EVERY.mul_f64(fastrand::f64());
    let mut ack_tick = tokio::time::interval_at(first_ack.into(), ACK_EVERY);
    ack_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut acked = 0;
    let mut last = 0;
    let mut finish = shared.finish.clone();
    let mut give_up: Option<Instant> = None;
    loop {
        if let Some((targets, at)) = &*finish.borrow_and_update() {
            if last >= targets.get(index).copied().unwrap_or(0) {
                break;
            }
            give_up = Some(*at);
        }
        let until = give_up.unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400));
        tokio::select! {
            message = ws.next() => match message {
                Some(Ok(Message::Text(frame))) => match bench::control_type(&frame).as_deref() {
                    None => {
                        if let Some(seq) = bench::frame_u64(&frame, "\"seq\":") {
                            record.seqs.push(seq);
                            last = last.max(seq);
                            shared.delivered.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Some("error") => record.errors += 1,
                    _ => {}
                },
                Some(Ok(Message::Ping(_))) => {
                    shared.pings.fetch_add(1, Ordering::Relaxed);
                }
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => {
                    record.dropped = true;
                    return record;
                }
                Some(Ok(_)) => {}
            },
            _ = ack_tick.tick(), if acks => {
                if last > acked {
                    let frame = json!({"type": "ack", "channel": name, "seq": last});
                    if ws.send(Message::Text(frame.to_string().into())).await.is_err() {
                        record.dropped = true;
                        return record;
                    }
                    acked = last;
                    shared.acks.fetch_add(1, Ordering::Relaxed);
                }
            }
            changed = finish.changed() => {
                if changed.is_err() {
                    break;
                }
            }
            _ = tokio::time::sleep_until(until.into()) => {
                record.late = true;
                break;
            }
        }
    }
    // A real close handshake: send Close, read until the server's answer.
    let _ = tokio::time::timeout(CLOSE_GRACE, async {
        let _ = ws.close(None).await;
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
    record
}
